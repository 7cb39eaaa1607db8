"""One typed settings object, read once from the environment and the data directory's `.env`.

Where things live: the data directory, `TICKERBELL_HOME` (default `~/.tickerbell`), holds `.env`
and the database, whatever the current folder. The layout before it still works: when the data
directory has no `.env` (or no database), a `.env` (or `tickerbell.db`) in the current folder is
used, and `load` leaves a note saying so and how to move it. A bad value is one `SettingsError`
line per variable: its name, its value and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic_settings
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path("~/.tickerbell")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_POLL_SECONDS = {"poll_crypto_seconds": 1.0, "poll_yahoo_seconds": 15.0}
_TELEGRAM_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")  # Telegram allows 1 to 256 of these
WEBHOOK_PORTS = (None, 443, 80, 88, 8443)  # the ports Telegram posts to (None: https's 443)
_CHAT_IDS = r"^\s*(-?\d+\s*(,\s*-?\d+\s*)*,?)?\s*$"
_HTTP_URL = r"^https?://\S+$"
_URLS = r"^\s*(https?://[^\s,]+\s*(,\s*https?://[^\s,]+\s*)*,?)?\s*$"


class SettingsError(Exception):
    """Settings that cannot be used: one line per problem, fit to show as they are."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """Every setting Tickerbell reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="TICKERBELL_",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    # Each description says what is allowed: a bad value is reported as
    # `NAME=value: expected <description>`.
    telegram_bot_token: SecretStr | None = Field(
        None,
        validation_alias="TELEGRAM_BOT_TOKEN",
        description="a token from @BotFather, like 123456789:AA...",
    )
    telegram_api_base_url: str = Field(
        "https://api.telegram.org/bot",
        validation_alias="TELEGRAM_API_BASE_URL",
        pattern=_HTTP_URL,
        description="an http(s) URL",
    )
    telegram_allowed_chats: str = Field(
        "",
        validation_alias="TELEGRAM_ALLOWED_CHATS",
        pattern=_CHAT_IDS,
        description="comma-separated integer chat ids, e.g. 12345678,-1001234567890",
    )
    telegram_overall_per_second: float = Field(
        30.0,
        validation_alias="TELEGRAM_OVERALL_PER_SECOND",
        gt=0,
        allow_inf_nan=False,
        description="a number of messages > 0",
    )
    telegram_chat_per_second: float = Field(
        1.0,
        validation_alias="TELEGRAM_CHAT_PER_SECOND",
        gt=0,
        allow_inf_nan=False,
        description="a number of messages > 0",
    )
    telegram_group_per_minute: float = Field(
        20.0,
        validation_alias="TELEGRAM_GROUP_PER_MINUTE",
        gt=0,
        allow_inf_nan=False,
        description="a number of messages > 0",
    )
    # Webhook mode (several processes behind a load balancer) instead of polling.
    telegram_webhook_url: str = Field(
        "",
        validation_alias="TELEGRAM_WEBHOOK_URL",
        description="an https URL on port 443, 80, 88 or 8443 that reaches this bot, "
        "e.g. https://bot.example.com/telegram",
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None,
        validation_alias="TELEGRAM_WEBHOOK_SECRET",
        description="16 to 256 letters, digits, _ or -, e.g. from openssl rand -hex 32",
    )
    telegram_webhook_host: str = Field(
        "0.0.0.0",
        validation_alias="TELEGRAM_WEBHOOK_HOST",
        description="an address, e.g. 0.0.0.0 or 127.0.0.1",
    )
    telegram_webhook_port: int = Field(
        8443,
        validation_alias="TELEGRAM_WEBHOOK_PORT",
        ge=1,
        le=65535,
        description="a port number from 1 to 65535",
    )
    discord_bot_token: SecretStr | None = Field(
        None, validation_alias="DISCORD_BOT_TOKEN", description="a bot token"
    )
    discord_guild_id: int | None = Field(
        None, validation_alias="DISCORD_GUILD_ID", gt=0, description="a server id (an integer)"
    )
    discord_admin_role: str = Field("", validation_alias="DISCORD_ADMIN_ROLE")
    discord_api_base_url: str = Field(
        "https://discord.com/api/v10",
        validation_alias="DISCORD_API_BASE_URL",
        pattern=_HTTP_URL,
        description="an http(s) URL",
    )
    discord_gateway_url: str = Field(
        "wss://gateway.discord.gg/",
        validation_alias="DISCORD_GATEWAY_URL",
        pattern=r"^wss?://\S+$",
        description="a ws(s) URL",
    )

    # `load` makes both absolute: a relative db is inside home.
    home: Path = Field(DEFAULT_HOME, description="a folder")
    db: Path = Field(Path("tickerbell.db"), description="a file path")
    # PostgreSQL instead of the SQLite file `db` (a SecretStr: the URL may hold a password).
    database_url: SecretStr | None = Field(
        None,
        description="a PostgreSQL URL, postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description=f"one of {', '.join(LOG_LEVELS)}"
    )

    exchange: str = Field("binance", description="a ccxt exchange id")
    quote_currency: str = Field(
        "USDT", pattern=r"^[A-Za-z0-9]{2,10}$", description="a currency code such as USDT or USD"
    )
    exchange_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='a JSON object keyed by exchange id, e.g. {"binance": {"apiKey": "..."}}',
    )
    venue_mode: dict[str, Literal["stream", "poll"]] = Field(
        default_factory=dict,
        description='a JSON object of exchange id to "stream" or "poll", e.g. {"kraken": "poll"}',
    )
    stream_silence_seconds: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="a number of seconds > 0"
    )
    metals: Literal["futures", "spot"] = Field("spot", description="spot or futures")
    swissquote_url: str = Field(
        "https://forex-data-feed.swissquote.com/public-quotes/bboquotes/instrument",
        pattern=_HTTP_URL,
        description="an http(s) URL",
    )
    spread_baseline_hours: float = Field(
        24.0, gt=0, allow_inf_nan=False, description="a number of hours > 0"
    )

    # The minimum poll intervals (MIN_POLL_SECONDS) bind what a person sets; code may poll a
    # local fake faster (the tests do).
    poll_crypto_seconds: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="a number of seconds >= 1"
    )
    poll_yahoo_seconds: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="a number of seconds >= 15 (Yahoo rate-limits faster polling)",
    )
    max_quote_age_seconds: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="a number of seconds > 0"
    )
    max_quote_age_yahoo_seconds: float = Field(
        1800.0, gt=0, allow_inf_nan=False, description="a number of seconds > 0"
    )
    max_jump_pct: float = Field(15.0, gt=0, allow_inf_nan=False, description="a percentage > 0")
    hysteresis_pct: float = Field(
        0.25, ge=0, le=50, allow_inf_nan=False, description="a percentage from 0 to 50"
    )

    rules_per_chat: int = Field(50, ge=1, description="a whole number >= 1")
    commands_per_minute: int = Field(20, ge=1, description="a whole number >= 1")
    outbox_retention_days: int = Field(
        90, ge=0, description="a whole number of days >= 0 (0 keeps every alert)"
    )

    metrics_port: int = Field(0, ge=0, le=65535, description="a port number from 0 (off) to 65535")
    metrics_host: str = Field("127.0.0.1", description="an address, e.g. 127.0.0.1 or 0.0.0.0")

    webhooks: str = Field(
        "",
        pattern=_URLS,
        description="comma-separated http(s) URLs, e.g. https://hooks.slack.com/services/...",
    )
    webhook_secret: SecretStr | None = Field(
        None, min_length=16, description="a secret of at least 16 characters"
    )
    webhook_allow_networks: str = Field(
        "", description="comma-separated networks or addresses, e.g. 10.0.0.0/8,127.0.0.1"
    )
    webhook_port: int = Field(0, ge=0, le=65535, description="a port number from 0 (off) to 65535")
    webhook_host: str = Field("0.0.0.0", description="an address, e.g. 0.0.0.0 or 127.0.0.1")
    webhook_public_url: str = Field(
        "", pattern=r"^(https?://\S+)?$", description="an http(s) URL, e.g. https://bot.example.com"
    )
    webhook_in_per_minute: int = Field(30, ge=1, description="a whole number >= 1")

    _read_from: Path | None = PrivateAttr(None)
    _notes: tuple[str, ...] = PrivateAttr(())

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """`debug` is DEBUG; anything else is left for the check to report as typed."""
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        return value

    @field_validator("poll_crypto_seconds", "poll_yahoo_seconds", mode="before")
    @classmethod
    def _polite_polling(cls, value: Any, info: ValidationInfo) -> Any:
        """A poll interval typed by a person (a string) respects the venue's minimum."""
        if isinstance(value, str):
            seconds = float(value)
            least = MIN_POLL_SECONDS[str(info.field_name)]
            if not (math.isfinite(seconds) and seconds >= least):
                raise ValueError("too frequent")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_TOKEN.fullmatch(value.get_secret_value().strip()):
            raise ValueError("not a Telegram bot token")
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        """What Telegram accepts in setWebhook: https, a host, one of its four ports."""
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "https" or not parts.hostname or port not in WEBHOOK_PORTS:
            raise ValueError("not an https URL Telegram posts to")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("not a webhook secret token")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("not a PostgreSQL URL")
        return value

    @property
    def database_url_value(self) -> str | None:
        """The PostgreSQL URL in clear, for the driver only (never for a log line)."""
        return None if self.database_url is None else self.database_url.get_secret_value().strip()

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names it
        return value

    @property
    def webhook_urls(self) -> list[str]:
        """TICKERBELL_WEBHOOKS as a list: the console's webhooks."""
        return [url.strip() for url in self.webhooks.split(",") if url.strip()]

    @property
    def inbound_url(self) -> str | None:
        """Where TradingView posts arrive, as `/webhook in` tells it (None: not served)."""
        if not self.webhook_port:
            return None
        if self.webhook_public_url:
            return self.webhook_public_url.rstrip("/")
        host = self.webhook_host if self.webhook_host not in ("0.0.0.0", "::") else "HOST"
        return f"http://{host}:{self.webhook_port}"

    @property
    def allowed_chats(self) -> frozenset[str]:
        """Telegram chat ids that may use the bot; empty means every chat."""
        return frozenset(c.strip() for c in self.telegram_allowed_chats.split(",") if c.strip())

    @property
    def max_quote_age(self) -> timedelta:
        return timedelta(seconds=self.max_quote_age_seconds)

    @property
    def max_quote_age_by_source(self) -> dict[str, timedelta]:
        return {"yahoo": timedelta(seconds=self.max_quote_age_yahoo_seconds)}

    @property
    def settings_file(self) -> Path | None:
        """The `.env` file these settings were read from, if any."""
        return self._read_from

    @property
    def notes(self) -> tuple[str, ...]:
        """What a person should know about where things were found (the old layout)."""
        return self._notes


def data_home() -> Path:
    """The data directory: `TICKERBELL_HOME`, else ~/.tickerbell, as an absolute path."""
    return Path(os.environ.get("TICKERBELL_HOME") or DEFAULT_HOME).expanduser().resolve()


def load(cwd: Path | None = None) -> Settings:
    """The settings of this run: the environment over `<home>/.env`, paths made absolute.

    `TICKERBELL_HOME` itself is read from the environment only (it says where `.env` is).
    Raises SettingsError naming every bad variable.
    """
    here = (cwd or Path.cwd()).resolve()
    home = data_home()
    notes: list[str] = []
    env_file = next((f for f in (home / ".env", here / ".env") if f.is_file()), None)
    if env_file is not None and env_file.parent != home:
        notes.append(
            f"settings read from {env_file}, the old place; move the file to {home / '.env'} "
            "so that Tickerbell finds it from any folder"
        )
    try:
        settings = Settings(_env_file=env_file, home=home)
    except ValidationError as err:
        raise SettingsError([_problem(error) for error in err.errors()]) from None
    except pydantic_settings.SettingsError as err:  # a JSON setting that does not parse
        found = re.search(r'field "(\w+)"', str(err))
        name = _env_name(found.group(1)) if found else "a setting"
        field = Settings.model_fields.get(found.group(1) if found else "")
        expected = field.description if field is not None else "valid JSON"
        raise SettingsError([f"{name} is not valid JSON: expected {expected}"]) from None
    db = settings.db.expanduser()
    if not db.is_absolute():
        new, old = home / db, here / db
        if old.exists() and not new.exists():
            notes.append(
                f"using the database {old} in the current folder, the old default; to find it "
                f"from any folder, stop the bot and move it: mv {old}* {home}/"
            )
            db = old
        else:
            db = new
    if settings.webhook_secret is None and _signed_webhooks(settings):
        raise SettingsError(
            [
                "TICKERBELL_WEBHOOK_SECRET is empty: expected a secret of at least 16 characters "
                "to sign the JSON posts to TICKERBELL_WEBHOOKS, e.g. from openssl rand -hex 32"
            ]
        )
    if settings.telegram_webhook_url and settings.telegram_bot_token is None:
        raise SettingsError(
            [
                "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_BOT_TOKEN is empty: set the bot's "
                "token, e.g. TELEGRAM_BOT_TOKEN=123456789:AA..., or leave the URL empty"
            ]
        )
    settings = settings.model_copy(update={"db": db})
    settings._read_from, settings._notes = env_file, tuple(notes)
    return settings


def check_exchanges(settings: Settings) -> None:
    """Raise SettingsError when TICKERBELL_EXCHANGE or a key of TICKERBELL_EXCHANGE_OPTIONS or
    TICKERBELL_VENUE_MODE is not a ccxt exchange id. Imports ccxt (most of a second): call it
    only where prices are fetched."""
    import ccxt

    venues = [("TICKERBELL_EXCHANGE", settings.exchange)]
    venues += [("TICKERBELL_EXCHANGE_OPTIONS key", key) for key in settings.exchange_options]
    venues += [("TICKERBELL_VENUE_MODE key", key) for key in settings.venue_mode]
    problems = []
    for name, venue in venues:
        if venue.lower() not in ccxt.exchanges:
            close = difflib.get_close_matches(venue.lower(), ccxt.exchanges, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{name}={venue}: expected a ccxt exchange id{hint}")
    if problems:
        raise SettingsError(problems)


def _signed_webhooks(settings: Settings) -> bool:
    """Whether TICKERBELL_WEBHOOKS lists a URL posted as signed JSON (not Slack's, Discord's)."""
    from bot.webhook_urls import Kind, kind_of

    return any(kind_of(url) is Kind.JSON for url in settings.webhook_urls)


def _env_name(field_name: str) -> str:
    """The environment variable a field is read from."""
    field = Settings.model_fields.get(field_name)
    alias = field.validation_alias if field is not None else None
    return alias if isinstance(alias, str) else f"TICKERBELL_{field_name.upper()}"


def _problem(error: ErrorDetails) -> str:
    """One line for one validation error: `NAME=value: expected ...`."""
    loc = [str(part) for part in error["loc"]]
    fields = Settings.model_fields
    by_alias = {f.validation_alias: n for n, f in fields.items() if f.validation_alias}
    field_name = by_alias.get(loc[0], loc[0]) if loc else ""
    field = fields.get(field_name)
    name = ".".join([_env_name(field_name), *loc[1:]])
    value = error.get("input")
    if field is not None and "SecretStr" in str(field.annotation):
        shown = "(hidden)"
    else:
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
    expected = field.description if field is not None and field.description else error["msg"]
    return f"{name}={shown}: expected {expected}"

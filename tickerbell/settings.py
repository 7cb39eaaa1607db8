"""One typed settings object, read once from the environment and `.env`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Tickerbell reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="TICKERBELL_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base_url: str = Field(
        "https://api.telegram.org/bot", validation_alias="TELEGRAM_API_BASE_URL"
    )
    telegram_allowed_chats: str = Field("", validation_alias="TELEGRAM_ALLOWED_CHATS")
    telegram_overall_per_second: float = Field(30.0, validation_alias="TELEGRAM_OVERALL_PER_SECOND")
    telegram_chat_per_second: float = Field(1.0, validation_alias="TELEGRAM_CHAT_PER_SECOND")
    telegram_group_per_minute: float = Field(20.0, validation_alias="TELEGRAM_GROUP_PER_MINUTE")
    discord_bot_token: SecretStr | None = Field(None, validation_alias="DISCORD_BOT_TOKEN")
    discord_guild_id: int | None = Field(None, validation_alias="DISCORD_GUILD_ID")
    discord_admin_role: str = Field("", validation_alias="DISCORD_ADMIN_ROLE")
    discord_api_base_url: str = Field(
        "https://discord.com/api/v10", validation_alias="DISCORD_API_BASE_URL"
    )
    discord_gateway_url: str = Field(
        "wss://gateway.discord.gg/", validation_alias="DISCORD_GATEWAY_URL"
    )

    db: Path = Path("tickerbell.db")
    log_level: str = "INFO"

    exchange: str = "binance"
    quote_currency: str = "USDT"
    exchange_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metals: Literal["futures", "spot"] = "futures"

    poll_crypto_seconds: float = 10.0
    poll_yahoo_seconds: float = 60.0
    max_quote_age_seconds: float = 600.0
    max_quote_age_yahoo_seconds: float = 1800.0
    max_jump_pct: float = 15.0
    hysteresis_pct: float = 0.25

    rules_per_chat: int = 50
    commands_per_minute: int = 20

    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

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

"""Settings: one line per bad value, and where `.env` and the database are found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickerbell.settings import SettingsError, check_exchanges, load

SET_BY_TESTS = ("TICKERBELL_", "TELEGRAM_", "DISCORD_")


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Tickerbell variable from outside; the data directory and the current folder are
    fresh folders under tmp_path."""
    for name in list(os.environ):
        if name.startswith(SET_BY_TESTS):
            monkeypatch.delenv(name)
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("TICKERBELL_HOME", str(home))
    monkeypatch.chdir(here)
    return tmp_path


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load()
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("TICKERBELL_POLL_CRYPTO_SECONDS", "abc", "expected a number of seconds >= 1"),
        ("TICKERBELL_POLL_CRYPTO_SECONDS", "0.5", "expected a number of seconds >= 1"),
        ("TICKERBELL_POLL_CRYPTO_SECONDS", "nan", "expected a number of seconds >= 1"),
        ("TICKERBELL_POLL_YAHOO_SECONDS", "5", "expected a number of seconds >= 15"),
        ("TICKERBELL_LOG_LEVEL", "verbose", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("TELEGRAM_ALLOWED_CHATS", "12,abc", "expected comma-separated integer chat ids"),
        ("DISCORD_GUILD_ID", "my-server", "expected a server id (an integer)"),
        ("TICKERBELL_METRICS_PORT", "70000", "expected a port number from 0 (off) to 65535"),
        ("TICKERBELL_MAX_JUMP_PCT", "-1", "expected a percentage > 0"),
        ("TICKERBELL_HYSTERESIS_PCT", "80", "expected a percentage from 0 to 50"),
        ("TICKERBELL_RULES_PER_CHAT", "0", "expected a whole number >= 1"),
        ("TICKERBELL_OUTBOX_RETENTION_DAYS", "-3", "expected a whole number of days >= 0"),
        ("TICKERBELL_METALS", "bars", "expected spot or futures"),
        ("TELEGRAM_API_BASE_URL", "api.telegram.org", "expected an http(s) URL"),
        ("TICKERBELL_QUOTE_CURRENCY", "US DOLLAR", "expected a currency code"),
        ("TICKERBELL_STREAM_SILENCE_SECONDS", "0", "expected a number of seconds > 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    [problem] = problems(monkeypatch, **{name: value})
    assert problem.startswith(f"{name}={value}: {line}")


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(
        monkeypatch,
        TICKERBELL_POLL_CRYPTO_SECONDS="abc",
        TICKERBELL_LOG_LEVEL="loud",
        TELEGRAM_ALLOWED_CHATS="me",
    )
    assert sorted(line.split("=")[0] for line in found) == [
        "TELEGRAM_ALLOWED_CHATS",
        "TICKERBELL_LOG_LEVEL",
        "TICKERBELL_POLL_CRYPTO_SECONDS",
    ]


def test_a_bad_token_is_named_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = problems(monkeypatch, TELEGRAM_BOT_TOKEN="my-secret-bot-name")
    assert problem.startswith("TELEGRAM_BOT_TOKEN=(hidden): expected a token from @BotFather")
    assert "my-secret" not in problem


def test_a_database_url_that_is_not_postgresql_is_named_but_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [problem] = problems(monkeypatch, TICKERBELL_DATABASE_URL="mysql://bot:pw-secret@db/tb")
    assert problem == (
        "TICKERBELL_DATABASE_URL=(hidden): expected a PostgreSQL URL, "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )
    monkeypatch.setenv("TICKERBELL_DATABASE_URL", "postgresql://bot:pw-secret@db/tb")
    assert load().database_url_value == "postgresql://bot:pw-secret@db/tb"
    monkeypatch.delenv("TICKERBELL_DATABASE_URL")
    assert load().database_url_value is None  # SQLite, the default


def test_json_that_does_not_parse_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = problems(monkeypatch, TICKERBELL_EXCHANGE_OPTIONS="{binance: 1}")
    assert problem.startswith("TICKERBELL_EXCHANGE_OPTIONS is not valid JSON: expected a JSON")


def test_values_at_the_bounds_and_in_any_case_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKERBELL_POLL_CRYPTO_SECONDS", "1")
    monkeypatch.setenv("TICKERBELL_POLL_YAHOO_SECONDS", "15")
    monkeypatch.setenv("TICKERBELL_LOG_LEVEL", "debug")
    monkeypatch.setenv("TELEGRAM_ALLOWED_CHATS", "12345678, -1001234567890,")
    settings = load()
    assert (settings.poll_crypto_seconds, settings.poll_yahoo_seconds) == (1, 15)
    assert settings.log_level == "DEBUG"
    assert settings.allowed_chats == {"12345678", "-1001234567890"}


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"TICKERBELL_EXCHANGE": "binanse"}, "TICKERBELL_EXCHANGE=binanse: expected a ccxt "
         "exchange id (did you mean binance?)"),
        ({"TICKERBELL_EXCHANGE_OPTIONS": '{"krakken": {}}'}, "TICKERBELL_EXCHANGE_OPTIONS key="
         "krakken: expected a ccxt exchange id (did you mean kraken?)"),
        ({"TICKERBELL_VENUE_MODE": '{"krakken": "poll"}'}, "TICKERBELL_VENUE_MODE key="
         "krakken: expected a ccxt exchange id (did you mean kraken?)"),
    ],
)  # fmt: skip
def test_exchange_ids_are_checked_against_ccxt_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, str], line: str
) -> None:
    for name, value in options.items():
        monkeypatch.setenv(name, value)
    settings = load()  # ccxt is imported only by the check, where prices are fetched
    with pytest.raises(SettingsError) as caught:
        check_exchanges(settings)
    assert caught.value.problems == [line]
    monkeypatch.setenv("TICKERBELL_EXCHANGE", "Kraken")
    monkeypatch.delenv("TICKERBELL_EXCHANGE_OPTIONS", raising=False)
    monkeypatch.delenv("TICKERBELL_VENUE_MODE", raising=False)
    check_exchanges(load())


def test_a_venue_streams_or_polls_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKERBELL_VENUE_MODE", '{"kraken": "poll", "binance": "stream"}')
    assert load().venue_mode == {"kraken": "poll", "binance": "stream"}
    [problem] = problems(monkeypatch, TICKERBELL_VENUE_MODE='{"kraken": "push"}')
    assert problem.startswith("TICKERBELL_VENUE_MODE.kraken=push: expected a JSON object of")


# --- where .env and the database are ---


def test_env_and_database_live_in_the_data_directory_whatever_the_folder(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = clean / "home"
    (home / ".env").write_text("TICKERBELL_RULES_PER_CHAT=7\nTICKERBELL_LOG_LEVEL=WARNING\n")
    monkeypatch.setenv("TICKERBELL_LOG_LEVEL", "ERROR")  # the environment beats .env
    for folder in (clean / "here", clean, Path("/")):
        monkeypatch.chdir(folder)
        settings = load()
        assert settings.db == home / "tickerbell.db" and settings.db.is_absolute()
        assert settings.settings_file == home / ".env"
        assert (settings.rules_per_chat, settings.log_level) == (7, "ERROR")
        assert settings.notes == ()


def test_home_defaults_to_a_folder_in_the_users_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKERBELL_HOME")
    settings = load()
    assert settings.home == Path.home().resolve() / ".tickerbell"
    assert settings.db == settings.home / "tickerbell.db"


@pytest.mark.parametrize(
    ("db", "expected"),
    [("other.db", "home/other.db"), ("sub/x.db", "home/sub/x.db"), ("/abs/x.db", "/abs/x.db")],
)
def test_a_relative_database_path_is_inside_the_data_directory(
    clean: Path, monkeypatch: pytest.MonkeyPatch, db: str, expected: str
) -> None:
    monkeypatch.setenv("TICKERBELL_DB", db)
    assert load().db == clean / expected


def test_the_data_directory_is_set_by_the_environment_only(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean / "home" / ".env").write_text(f"TICKERBELL_HOME={clean / 'elsewhere'}\n")
    assert load().home == clean / "home"


def test_the_old_layout_in_the_current_folder_still_works_and_says_how_to_move(
    clean: Path,
) -> None:
    here, home = clean / "here", clean / "home"
    (here / ".env").write_text("TICKERBELL_RULES_PER_CHAT=9\n")
    (here / "tickerbell.db").write_bytes(b"")
    settings = load()
    assert settings.rules_per_chat == 9 and settings.settings_file == here / ".env"
    assert settings.db == here / "tickerbell.db"
    env_note, db_note = settings.notes
    assert f"move the file to {home / '.env'}" in env_note
    assert f"mv {here / 'tickerbell.db'}* {home}/" in db_note
    # once moved, the data directory wins and nothing is said
    (home / ".env").write_text("TICKERBELL_RULES_PER_CHAT=11\n")
    (home / "tickerbell.db").write_bytes(b"")
    settings = load()
    assert settings.rules_per_chat == 11 and settings.db == home / "tickerbell.db"
    assert settings.notes == ()


def test_the_command_line_prints_one_line_and_exits_2(clean: Path) -> None:
    env = {**os.environ, "TICKERBELL_POLL_CRYPTO_SECONDS": "abc"}
    tickerbell = Path(sys.executable).with_name("tickerbell")
    done = subprocess.run(
        [str(tickerbell), "alerts"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr == "TICKERBELL_POLL_CRYPTO_SECONDS=abc: expected a number of seconds >= 1\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("TICKERBELL_WEBHOOKS", "hooks.example/x", "expected comma-separated http(s) URLs"),
        ("TICKERBELL_WEBHOOK_SECRET", "short", "expected a secret of at least 16 characters"),
        ("TICKERBELL_WEBHOOK_ALLOW_NETWORKS", "10.0.0.0/8,lan", "expected comma-separated"),
        ("TICKERBELL_WEBHOOK_PORT", "-1", "expected a port number from 0 (off) to 65535"),
        ("TICKERBELL_WEBHOOK_PUBLIC_URL", "bot.example.com", "expected an http(s) URL"),
        ("TICKERBELL_WEBHOOK_IN_PER_MINUTE", "0", "expected a whole number >= 1"),
    ],
)
def test_bad_webhook_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    [problem] = problems(monkeypatch, **{name: value})
    assert problem.startswith(f"{name}=") and line in problem
    assert "short" not in problem  # a secret is never shown


def test_signed_webhooks_need_a_secret_and_slack_or_discord_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = "https://hooks.slack.com/services/T0/B0/X"
    monkeypatch.setenv("TICKERBELL_WEBHOOKS", slack)
    assert load().webhook_urls == [slack]
    [problem] = problems(monkeypatch, TICKERBELL_WEBHOOKS=f"{slack}, https://hooks.example/in")
    assert problem.startswith("TICKERBELL_WEBHOOK_SECRET is empty: expected a secret")
    monkeypatch.setenv("TICKERBELL_WEBHOOK_SECRET", "0123456789abcdef")
    assert load().webhook_urls == [slack, "https://hooks.example/in"]


def test_the_inbound_url_is_the_public_one_or_says_where_to_put_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load().inbound_url is None  # off by default
    monkeypatch.setenv("TICKERBELL_WEBHOOK_PORT", "8081")
    assert load().inbound_url == "http://HOST:8081"
    monkeypatch.setenv("TICKERBELL_WEBHOOK_PUBLIC_URL", "https://bot.example.com/")
    assert load().inbound_url == "https://bot.example.com"


TELEGRAM_URL = "an https URL on port 443, 80, 88 or 8443 that reaches this bot, e.g. https://"


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("TELEGRAM_WEBHOOK_URL", "http://bot.example.com/tg", TELEGRAM_URL),
        ("TELEGRAM_WEBHOOK_URL", "https://bot.example.com:8080/tg", TELEGRAM_URL),
        ("TELEGRAM_WEBHOOK_URL", "https://bot.example.com:x/tg", TELEGRAM_URL),
        ("TELEGRAM_WEBHOOK_URL", "bot.example.com", TELEGRAM_URL),
        ("TELEGRAM_WEBHOOK_SECRET", "short", "expected 16 to 256 letters, digits, _ or -, e.g."),
        ("TELEGRAM_WEBHOOK_SECRET", "a secret with spaces", "expected 16 to 256 letters"),
        ("TELEGRAM_WEBHOOK_PORT", "0", "expected a port number from 1 to 65535"),
        ("TELEGRAM_WEBHOOK_PORT", "https", "expected a port number from 1 to 65535"),
    ],
)
def test_bad_telegram_webhook_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAF-token")
    [problem] = problems(monkeypatch, **{name: value})
    assert problem.startswith(f"{name}=") and line in problem
    assert "short" not in problem and "spaces" not in problem  # a secret is never shown


def test_a_telegram_webhook_needs_the_token_and_listens_on_8443_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [problem] = problems(monkeypatch, TELEGRAM_WEBHOOK_URL="https://bot.example.com/tg")
    assert problem.startswith("TELEGRAM_WEBHOOK_URL is set but TELEGRAM_BOT_TOKEN is empty")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAF-token")
    settings = load()
    assert settings.telegram_webhook_url == "https://bot.example.com/tg"
    assert (settings.telegram_webhook_host, settings.telegram_webhook_port) == ("0.0.0.0", 8443)
    assert settings.telegram_webhook_secret is None  # derived from the token
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example.com:88")
    assert load().telegram_webhook_url == "https://bot.example.com:88"

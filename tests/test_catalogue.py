"""The symbol catalogue: bare tickers, metals, explicit venue:PAIR and yf: forms, and errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from alerts.models import RuleError
from feeds.catalogue import COMMON_CRYPTO, Catalogue, Instrument
from tickerbell.settings import Settings


def catalogue(**settings: Any) -> Catalogue:
    chosen = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
    return Catalogue(chosen.exchange, chosen.quote_currency, chosen.metals)


@pytest.mark.parametrize(
    ("text", "symbol", "source", "native"),
    [
        ("BTC", "BTC", "ccxt:binance", "BTC/USDT"),
        ("btc", "BTC", "ccxt:binance", "BTC/USDT"),
        (" eth ", "ETH", "ccxt:binance", "ETH/USDT"),
        ("SOL", "SOL", "ccxt:binance", "SOL/USDT"),
        ("PAXG", "PAXG", "ccxt:binance", "PAXG/USDT"),
        ("XAUT", "XAUT", "ccxt:binance", "XAUT/USDT"),
        ("XAU", "XAU", "swissquote", "XAU/USD"),
        ("gold", "XAU", "swissquote", "XAU/USD"),
        ("XAG", "XAG", "swissquote", "XAG/USD"),
        ("Silver", "XAG", "swissquote", "XAG/USD"),
        ("platinum", "XPT", "swissquote", "XPT/USD"),
        ("binance:XAG/USDT:USDT", "binance:XAG/USDT:USDT", "ccxt:binance", "XAG/USDT:USDT"),
        ("binance:SOL/USDT", "binance:SOL/USDT", "ccxt:binance", "SOL/USDT"),
        ("Binance:sol/usdt", "binance:SOL/USDT", "ccxt:binance", "SOL/USDT"),
        ("kraken:XBT/EUR", "kraken:XBT/EUR", "ccxt:kraken", "XBT/EUR"),
        ("yf:^GSPC", "yf:^GSPC", "yahoo", "^GSPC"),
        ("YF:^gspc", "yf:^GSPC", "yahoo", "^GSPC"),
        ("yf:EURUSD=X", "yf:EURUSD=X", "yahoo", "EURUSD=X"),
        ("yf:BRK-B", "yf:BRK-B", "yahoo", "BRK-B"),
    ],
)
def test_resolves_with_default_settings(text: str, symbol: str, source: str, native: str) -> None:
    assert catalogue().resolve(text) == Instrument(symbol, source, native)


@pytest.mark.parametrize(
    ("text", "native"), [("XAU", "GC=F"), ("GOLD", "GC=F"), ("XAG", "SI=F"), ("XPD", "PA=F")]
)
def test_futures_metals_setting(text: str, native: str) -> None:
    instrument = catalogue(metals="futures").resolve(text)
    assert (instrument.source, instrument.native) == ("yahoo", native)


def test_venue_and_quote_currency_come_from_settings() -> None:
    cat = catalogue(exchange="Kraken", quote_currency="eur")
    assert cat.resolve("BTC") == Instrument("BTC", "ccxt:kraken", "BTC/EUR")
    assert cat.resolve("ETH").venue == "kraken"
    assert cat.resolve("XAU").venue is None


def test_unknown_venue_in_settings_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="not a ccxt exchange"):
        catalogue(exchange="nosuchexchange")


def test_the_documented_error_message() -> None:
    with pytest.raises(RuleError) as info:
        catalogue().resolve("BTX")
    assert str(info.value) == (
        "unknown symbol 'BTX' — did you mean BTC, TRX? "
        "e.g. BTC, ETH, XAU, XAG, binance:SOL/USDT, yf:^GSPC"
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("GLOD", ["unknown symbol 'GLOD'", "did you mean GOLD?"]),
        ("SILVR", ["did you mean SILVER?"]),
        ("ETHH", ["did you mean ETH"]),
        ("QQQQQQ", ["unknown symbol 'QQQQQQ' — e.g. BTC"]),
        ("", ["empty symbol"]),
        ("   ", ["empty symbol"]),
        ("SOL/USDT", ["needs a venue", "binance:SOL/USDT"]),
        ("binanse:SOL/USDT", ["unknown exchange 'binanse'", "did you mean binance"]),
        ("binance:SOL", ["not a pair", "binance:BASE/QUOTE"]),
        ("binance:SOL/USDT:USDT:X", ["not a pair"]),
        ("binance:", ["not a pair"]),
        ("yf:", ["not a Yahoo Finance ticker"]),
        ("yf:^GS PC", ["not a Yahoo Finance ticker"]),
        ("B$C", ["unknown symbol 'B$C'"]),
    ],
)
def test_errors_are_rule_errors_with_help(text: str, fragments: list[str]) -> None:
    with pytest.raises(RuleError) as info:
        catalogue().resolve(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "e.g. BTC, ETH, XAU, XAG, binance:SOL/USDT, yf:^GSPC" in message


def test_examples_follow_the_configured_venue() -> None:
    with pytest.raises(RuleError, match="kraken:SOL/EUR"):
        catalogue(exchange="kraken", quote_currency="EUR").resolve("NOPE")


def test_known_names_start_with_the_common_ones() -> None:
    known = catalogue().known()
    assert known[:3] == ["BTC", "ETH", "SOL"]
    assert {"XAU", "XAG", "GOLD", "SILVER", "PAXG", "XAUT"} <= set(known)


def test_a_custom_crypto_list_widens_or_narrows_what_bare_words_mean() -> None:
    cat = Catalogue(crypto=["btc", "WIF"])
    assert cat.resolve("wif") == Instrument("WIF", "ccxt:binance", "WIF/USDT")
    with pytest.raises(RuleError):
        cat.resolve("ETH")


def test_every_common_ticker_resolves_to_the_venue() -> None:
    cat = catalogue()
    for ticker in COMMON_CRYPTO:
        assert cat.resolve(ticker).native == f"{ticker}/USDT"


def test_instrument_is_frozen() -> None:
    instrument = catalogue().resolve("BTC")
    with pytest.raises(dataclasses.FrozenInstanceError):
        instrument.symbol = "ETH"  # type: ignore[misc]

"""The symbol catalogue: what people type (`BTC`, `gold`, `yf:^GSPC`) -> where its price comes from.

Accepted forms, case-insensitive:

- a bare crypto ticker from the known list (`BTC`, `ETH`, `PAXG`, ...): the configured venue's
  pair against the configured quote currency (`BTC` -> `binance`, `BTC/USDT`);
- a metal, `XAU`/`GOLD`, `XAG`/`SILVER`, `XPT`/`PLATINUM`, `XPD`/`PALLADIUM`: spot with a bid and
  an ask from Swissquote (`XAG/USD`; the default, `metals="spot"`) or Yahoo Finance's COMEX/NYMEX
  front-month futures (`GC=F`, `SI=F`, `PL=F`, `PA=F`; `metals="futures"`);
- `venue:BASE/QUOTE:SETTLE`: a perpetual swap on a ccxt venue (`binance:XAG/USDT:USDT`);
- `venue:BASE/QUOTE`: any spot pair on any ccxt exchange (`binance:SOL/USDT`, `kraken:XBT/EUR`);
- `yf:TICKER`: any Yahoo Finance ticker (`yf:^GSPC`, `yf:EURUSD=X`).

A "known" crypto ticker is one in the built-in list `COMMON_CRYPTO` (or the list passed to
`Catalogue`): a bare word outside it is refused with suggestions rather than guessed at, so a
typo like `BTX` gets "did you mean BTC?" instead of a pair that fails at the exchange. Anything
else listed on a venue can always be named explicitly with `venue:PAIR`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import ccxt

from alerts.models import Rule, RuleError

YAHOO = "yahoo"
YAHOO_PREFIX = "yf"

COMMON_CRYPTO: tuple[str, ...] = (
    "BTC", "ETH", "SOL", "XRP", "BNB", "DOGE", "ADA", "TRX", "AVAX", "LINK", "DOT", "LTC",
    "BCH", "TON", "XLM", "NEAR", "UNI", "ATOM", "ETC", "FIL", "APT", "ARB", "OP", "SUI",
    "SHIB", "PEPE", "AAVE", "HBAR", "ICP", "POL", "PAXG", "XAUT",
)  # fmt: skip

METAL_ALIASES: dict[str, str] = {
    "GOLD": "XAU",
    "SILVER": "XAG",
    "PLATINUM": "XPT",
    "PALLADIUM": "XPD",
}
# metal -> Yahoo Finance futures ticker; spot is Swissquote's `<metal>/USD`
METALS: dict[str, str] = {"XAU": "GC=F", "XAG": "SI=F", "XPT": "PL=F", "XPD": "PA=F"}
SPOT = "swissquote"

_TICKER = re.compile(r"[A-Z0-9]{1,20}")
_PAIR = re.compile(r"([A-Z0-9]{1,20})/([A-Z0-9]{1,20})(:[A-Z0-9]{1,20})?")
_YAHOO_TICKER = re.compile(r"[A-Z0-9^=.\-]{1,20}")


@dataclass(frozen=True, slots=True)
class Instrument:
    """A resolved symbol: where a name people use in rules gets its price.

    `symbol` is the canonical name used in rules (`XAU`, `binance:SOL/USDT`), `source` the feed
    (`ccxt:<venue>` or `yahoo`), `native` what that feed is asked for (`GC=F`, `SOL/USDT`).
    """

    symbol: str
    source: str
    native: str

    @property
    def venue(self) -> str | None:
        """The ccxt exchange id for ccxt instruments, else None."""
        return self.source.removeprefix("ccxt:") if self.source.startswith("ccxt:") else None


class Catalogue:
    """Resolves user-typed symbols to instruments: bare crypto tickers on `exchange` against
    `quote_currency`, metals as `metals` says ("spot": Swissquote, "futures": Yahoo)."""

    def __init__(
        self,
        exchange: str = "binance",
        quote_currency: str = "USDT",
        metals: str = "spot",
        crypto: Iterable[str] = COMMON_CRYPTO,
    ) -> None:
        self.venue = exchange.lower()
        if self.venue not in ccxt.exchanges:
            raise ValueError(f"TICKERBELL_EXCHANGE {exchange!r} is not a ccxt exchange id")
        self.quote = quote_currency.upper()
        self.metals_spot = metals == "spot"
        self.crypto = tuple(dict.fromkeys(c.upper() for c in crypto))

    def known(self) -> list[str]:
        """Every bare name the catalogue accepts, most common first (for help and suggestions)."""
        return [*self.crypto, *METALS, *METAL_ALIASES]

    def examples(self) -> str:
        """A short list of valid symbols, one of each form."""
        return f"BTC, ETH, XAU, XAG, {self.venue}:SOL/{self.quote}, {YAHOO_PREFIX}:^GSPC"

    def resolve(self, text: str) -> Instrument:
        """Map what a user typed to an instrument, or raise RuleError with suggestions."""
        raw = text.strip()
        if not raw:
            raise RuleError(f"empty symbol — e.g. {self.examples()}")
        prefix, colon, rest = raw.partition(":")
        if colon:
            if prefix.lower() == YAHOO_PREFIX:
                return self._yahoo(raw, rest)
            return self._pair(raw, prefix, rest)
        name = raw.upper()
        metal = METAL_ALIASES.get(name, name)
        if metal in METALS:
            if self.metals_spot:
                return Instrument(metal, SPOT, f"{metal}/USD")
            return Instrument(metal, YAHOO, METALS[metal])
        if name in self.crypto:
            return Instrument(name, f"ccxt:{self.venue}", f"{name}/{self.quote}")
        if _PAIR.fullmatch(name):
            raise RuleError(
                f"'{raw}' needs a venue: write {self.venue}:{name} "
                f"(A/B between two symbols is a ratio rule) — e.g. {self.examples()}"
            )
        hint = _suggest(name, self.known()) if _TICKER.fullmatch(name) else ""
        raise RuleError(f"unknown symbol '{raw}' — {hint}e.g. {self.examples()}")

    def _pair(self, raw: str, venue_text: str, pair_text: str) -> Instrument:
        venue = venue_text.strip().lower()
        if venue not in ccxt.exchanges:
            hint = _suggest(venue, ccxt.exchanges)
            raise RuleError(f"unknown exchange '{venue_text}' — {hint}e.g. {self.examples()}")
        pair = pair_text.strip().upper()
        if not _PAIR.fullmatch(pair):
            raise RuleError(
                f"'{raw}' is not a pair: write {venue}:BASE/QUOTE (a perpetual swap: "
                f"{venue}:BASE/QUOTE:SETTLE) — e.g. {self.examples()}"
            )
        return Instrument(f"{venue}:{pair}", f"ccxt:{venue}", pair)

    def _yahoo(self, raw: str, ticker_text: str) -> Instrument:
        ticker = ticker_text.strip().upper()
        if not _YAHOO_TICKER.fullmatch(ticker):
            raise RuleError(f"'{raw}' is not a Yahoo Finance ticker — e.g. {self.examples()}")
        return Instrument(f"{YAHOO_PREFIX}:{ticker}", YAHOO, ticker)


def canonical_rule(rule: Rule, resolve: Callable[[str], Instrument]) -> Rule:
    """The rule with its symbols named as `resolve` names them (GOLD -> XAU); raises
    RuleError for a symbol it does not know."""
    other = resolve(rule.other).symbol if rule.other else None
    return replace(rule, symbol=resolve(rule.symbol).symbol, other=other)


def _suggest(word: str, choices: Iterable[str]) -> str:
    """'did you mean A, B? ' for up to three close matches, or '' when none is close.

    Ties go to the choice with the same first letter, then to the earlier (more common) one.
    """
    scored = []
    for rank, choice in enumerate(choices):
        ratio = difflib.SequenceMatcher(None, word, choice).ratio()
        if ratio >= 0.6:
            scored.append((-ratio, choice[:1] != word[:1], rank, choice))
    matches = [choice for *_, choice in sorted(scored)[:3]]
    return f"did you mean {', '.join(matches)}? " if matches else ""

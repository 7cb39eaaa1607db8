"""The platform-neutral command layer: one place that parses a chat command, checks who may run
it, does it, and answers with a `Reply` that each platform renders its own way.

Every input gets a reply: a malformed or unknown command gets a short one saying what was wrong
with a valid example, and nothing is written. Telegram, Discord and the console (`tickerbell
cmd`) are thin adapters over `Commands.handle`.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from alerts import rules
from alerts.engine import evaluate
from alerts.indicators import Market, observe
from alerts.models import Candle, Quote, Rule, RuleError, RuleState
from alerts.text import count, money, number, pct, printable
from bot.charts import RANGES, ChartCache, Level, minute_key, price_spec, rotation_spec
from storage.db import Chat, LimitReached, Store, StoredRule, utcnow

RULE_ID = re.compile(r"#?[0-9]{1,12}", re.ASCII)
WRITE_KINDS = frozenset({"group", "supergroup", "guild"})
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, from where. `is_admin` is the adapter's answer for group chats;
    unknown means no (an adapter that forgets to ask cannot open a group to everyone)."""

    platform: str
    chat_id: str
    chat_kind: str = "private"
    user_id: str = ""
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A platform-neutral answer: a title, plain lines, an optional table, and whether it is
    an error. Renderers escape and mark it up per platform."""

    lines: tuple[str, ...]
    title: str | None = None
    table: tuple[tuple[str, ...], ...] = ()
    ok: bool = True
    image: bytes | None = None


def error(message: str) -> Reply:
    return Reply((message,), ok=False)


class MarketView(Protocol):
    """What commands need from the running service (tickerbell.service.Service provides it)."""

    market: Market

    def canonical(self, rule: Rule) -> Rule:
        """The rule with its symbols resolved (raises RuleError for unknown symbols)."""
        ...

    async def fresh_quote(self, symbol: str) -> Quote | None:
        """The symbol's current quote, fetched now if the service does not watch it."""
        ...

    async def daily(self, symbol: str, days: int) -> list[Candle]:
        """Daily bars of the last `days` days."""
        ...

    def currency(self, symbol: str) -> str:
        """The currency the symbol is priced in (USD, USDT, ...)."""
        ...

    def feed_note(self, symbol: str) -> str:
        """One line on where the symbol's price comes from and how fresh it is."""
        ...


Handler = Callable[["Commands", Caller, list[str]], Awaitable[Reply]]
_HANDLERS: dict[str, tuple[Handler, bool]] = {}


def command(name: str, writes: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler; `writes` commands need an admin in group chats."""

    def register(handler: Handler) -> Handler:
        _HANDLERS[name] = (handler, writes)
        return handler

    return register


class Commands:
    """Answers chat commands for every platform."""

    def __init__(
        self,
        store: Store,
        view: MarketView,
        *,
        rules_per_chat: int = 50,
        commands_per_minute: int = 20,
        clock: Callable[[], datetime] = utcnow,
        charts: ChartCache | None = None,
    ) -> None:
        self.store = store
        self.view = view
        self.rules_per_chat = rules_per_chat
        self.commands_per_minute = commands_per_minute
        self.clock = clock
        self.charts = charts or ChartCache()
        self._recent: dict[tuple[str, str], deque[datetime]] = defaultdict(deque)

    async def handle(self, caller: Caller, text: str) -> Reply:
        """Answer one message. Never raises for any input."""
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return error("commands start with '/'. Try /help, e.g. /status BTC")
        name = words[0][1:].split("@", 1)[0].lower()
        found = _HANDLERS.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(_HANDLERS), n=1)
            hint = f" — did you mean /{close[0]}?" if close else ""
            return error(f"unknown command '/{printable(name)}'{hint} Try /help.")
        if self._too_fast(caller):
            return error(f"slow down: at most {self.commands_per_minute} commands a minute.")
        handler, writes = found
        if writes and caller.chat_kind in WRITE_KINDS and not caller.is_admin:
            return error(
                "only admins change alerts in a group; everyone can use /status and /alerts."
            )
        try:
            return await handler(self, caller, words[1:])
        except RuleError as err:
            return error(str(err))

    def _too_fast(self, caller: Caller) -> bool:
        now = self.clock()
        recent = self._recent[(caller.platform, caller.user_id or caller.chat_id)]
        while recent and now - recent[0] > timedelta(minutes=1):
            recent.popleft()
        if len(recent) >= self.commands_per_minute:
            return True
        recent.append(now)
        return False

    async def _chat(self, caller: Caller) -> Chat:
        return await self.store.chat(caller.platform, caller.chat_id, caller.chat_kind)

    async def _rules(self, caller: Caller) -> list[StoredRule]:
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        return [] if chat is None else await self.store.rules(chat.id)


HELP = (
    "Commands:",
    "/status SYM — price, day change, spread, nearest alerts (e.g. /status XAG)",
    "/alert RULE — add an alert (e.g. /alert XAG above 50)",
    "/alerts — this chat's alerts with ids",
    "/remove ID — remove one (/remove all removes every alert)",
    "/mute [DURATION] — pause alerts (e.g. /mute 2h); /unmute",
    "/subscribe SYM|all — notable moves of a symbol; /unsubscribe [SYM]",
    "/chart SYM [1d|1w|1m|3m|1y] — a price chart (e.g. /chart XAU 3m)",
    "/rotation — gold, silver, BTC and ETH side by side",
    "/charts on|off — charts with this chat's alerts",
    "",
    "Rules:",
    *(f"  {example}" for example in rules.EXAMPLES),
    "Also: XAG > 50 (above), BTC < 85k (below), gold/silver ratio below 80.",
    "Options: confirm N, cooldown 1h, once, expires 2026-12-31.",
    "Symbols: BTC, ETH, XAU (gold), XAG (silver), binance:SOL/USDT, yf:^GSPC.",
)


@command("start")
async def _start(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Greet and show the commands."""
    return Reply(("I watch gold, silver and crypto and tell you when a rule fires.", *HELP))


@command("help")
async def _help(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """The commands and the rule language with examples."""
    return Reply(HELP, title="Tickerbell help")


@command("status")
async def _status(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Price, day change, book, this chat's nearest levels, N-day range and feed freshness."""
    if len(args) != 1:
        return error("usage: /status SYM, e.g. /status BTC")
    symbol = _symbol(cmds, args[0])
    quote = await cmds.view.fresh_quote(symbol)
    note = cmds.view.feed_note(symbol)
    if quote is None:
        return Reply((f"no price for {symbol} yet.", note), title=symbol)
    now, market = cmds.clock(), cmds.view.market
    price = quote.price
    lines = []
    ago = market.price_ago(symbol, timedelta(days=1), now)
    day = f" ({pct((price / ago - 1) * 100)} today)" if ago else ""
    lines.append(f"{number(price)}{day}")
    if quote.bid is not None and quote.ask is not None and quote.spread_pct is not None:
        book = (
            f"bid {number(quote.bid)} / ask {number(quote.ask)}, "
            f"spread {money(quote.ask - quote.bid)} ({pct(quote.spread_pct, signed=False)})"
        )
        median = market.spread_baseline(symbol)
        if median is not None:
            book += f", median {money(median * price / 100)}"
        lines.append(book)
    high, low = market.prior_high(symbol, 20, now.date()), market.prior_low(symbol, 20, now.date())
    if high is not None and low is not None:
        lines.append(f"20-day range {number(low)} – {number(high)}")
    nearest = sorted(await _levels(cmds, caller, symbol), key=lambda r: abs(r.value / price - 1))
    for rule in nearest[:3]:
        lines.append(f"alert {rules.format(rule)}: {pct((rule.value / price - 1) * 100)} away")
    lines.append(note)
    return Reply(tuple(lines), title=symbol)


@command("alert", writes=True)
async def _alert(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Add a rule; refuse a duplicate, ask before storing a level far from the price, and say
    so when its condition already holds. A last word `confirm` (no number) confirms."""
    confirmed = bool(args) and args[-1].lower() == "confirm"
    if confirmed:
        args = args[:-1]
    if not args:
        return error("usage: /alert RULE, e.g. /alert XAG above 50")
    rule = cmds.view.canonical(rules.parse(" ".join(args)))
    text = rules.format(rule)
    if rule.expired(cmds.clock()):
        return error(
            f"that rule expired on {rule.expires}; give a later day, e.g. "
            f"/alert {rules.format(replace(rule, expires=None))} expires "
            f"{cmds.clock().year + 1}-12-31"
        )
    for stored in await cmds._rules(caller):
        if _canonical_text(stored.text) == text and not (stored.state and stored.state.done):
            return error(f"alert #{stored.id} here is already {text} (see /alerts).")
    if not confirmed:
        doubt = await _implausible(cmds, rule)
        if doubt is not None:
            again = (
                f'tickerbell alert add "{text} confirm"'
                if caller.platform == "console"
                else f"/alert {text} confirm"
            )
            return Reply((f"{doubt}, so nothing is stored yet. If you mean it, send {again}",))
    chat = await cmds._chat(caller)
    try:
        rule_id = await cmds.store.add_rule(chat.id, text, caller.user_id, cmds.rules_per_chat)
    except LimitReached as err:
        return error(f"{err}; remove one first, e.g. /remove 3 (see /alerts).")
    lines = [f"Alert #{rule_id} set: {text}"]
    now = cmds.clock()
    obs = observe(rule, cmds.view.market, now)
    if obs is not None:
        state, _ = evaluate(rule, RuleState(), obs, now)
        if state.armed is False:
            lines.append(
                f"That is already true now ({number(obs.value)}): it fires on the next crossing."
            )
    return Reply(tuple(lines))


def _canonical_text(text: str) -> str:
    """A stored rule's canonical text as this version writes it."""
    try:
        return rules.format(rules.parse(text))
    except RuleError:
        return text


PLAUSIBLE = 10.0  # a level over 10x or under a tenth of the price is probably a typo


async def _implausible(cmds: Commands, rule: Rule) -> str | None:
    """Why a price or ratio level looks like a typo (`XAG above 50k` with silver at 50), or
    None when it looks fine or there is no price to compare with."""
    if not rule.is_price_level:
        return None
    quotes = [await cmds.view.fresh_quote(symbol) for symbol in rule.symbols]
    prices = [q.price for q in quotes if q is not None]
    if len(prices) < len(quotes):
        return None
    now = prices[0] if rule.other is None else prices[0] / prices[1]
    if 1 / PLAUSIBLE <= rule.value / now <= PLAUSIBLE:
        return None
    far = f"more than {PLAUSIBLE:g}x" if rule.value > now else "less than a tenth of"
    what = f"{rule.pair} ratio" if rule.other else rule.pair
    return f"{what} is {number(now)} now and {number(rule.value)} is {far} that"


@command("alerts")
async def _alerts(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """This chat's rules with ids and state."""
    stored = await cmds._rules(caller)
    if not stored:
        return Reply(("No alerts yet. Add one, e.g. /alert XAG above 50",))
    rows = tuple((f"#{r.id}", r.text, _state_text(r.state)) for r in stored)
    return Reply((), title=count(len(stored), "alert"), table=rows)


def _state_text(state: RuleState | None) -> str:
    if state is None or state.armed is None:
        return "new"
    if state.done:
        return "done"
    return "armed" if state.armed else "fired, waiting to re-arm"


@command("remove", writes=True)
async def _remove(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Remove one rule by id, or all of them after a confirmation."""
    if [a.lower() for a in args] == ["all"]:
        stored = count(len(await cmds._rules(caller)), "alert")
        confirm = (
            "tickerbell alert remove all confirm"
            if caller.platform == "console"
            else "/remove all confirm"
        )
        return Reply((f"This removes all {stored} here. Send {confirm} to do it.",))
    if [a.lower() for a in args] == ["all", "confirm"]:
        chat = await cmds.store.find_chat(caller.platform, caller.chat_id)
        removed = 0 if chat is None else await cmds.store.remove_all_rules(chat.id)
        return Reply((f"Removed {count(removed, 'alert')}.",))
    if len(args) != 1 or not RULE_ID.fullmatch(args[0]):
        return error("usage: /remove ID (see /alerts), e.g. /remove 3")
    rule_id = int(args[0].lstrip("#"))
    chat = await cmds.store.find_chat(caller.platform, caller.chat_id)
    if chat is None or not await cmds.store.remove_rule(chat.id, rule_id):
        return error(f"no alert #{rule_id} here — see /alerts.")
    return Reply((f"Removed alert #{rule_id}.",))


@command("mute", writes=True)
async def _mute(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Pause this chat's alerts for a while, or until /unmute."""
    if len(args) > 1:
        return error("usage: /mute [DURATION], e.g. /mute 2h")
    until = FOREVER if not args else cmds.clock() + rules.parse_duration(args[0])
    chat = await cmds._chat(caller)
    await cmds.store.set_muted(chat.id, until)
    when = "until you /unmute" if until == FOREVER else f"until {until:%Y-%m-%d %H:%M} UTC"
    return Reply((f"Muted {when}. Alerts meanwhile are kept in the history, not sent.",))


@command("unmute", writes=True)
async def _unmute(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Resume alerts."""
    if args:
        return error("usage: /unmute (no arguments)")
    chat = await cmds._chat(caller)
    await cmds.store.set_muted(chat.id, None)
    return Reply(("Alerts are on again.",))


@command("subscribe", writes=True)
async def _subscribe(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Follow a symbol's notable moves (or all watched symbols)."""
    if len(args) != 1:
        return error("usage: /subscribe SYM|all, e.g. /subscribe XAU")
    symbol = "all" if args[0].lower() == "all" else _symbol(cmds, args[0])
    chat = await cmds._chat(caller)
    added = await cmds.store.subscribe(chat.id, symbol)
    return Reply((f"Subscribed to {symbol}." if added else f"Already subscribed to {symbol}.",))


@command("unsubscribe", writes=True)
async def _unsubscribe(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Stop following one symbol, or all."""
    if len(args) > 1:
        return error("usage: /unsubscribe [SYM], e.g. /unsubscribe XAU")
    chat = await cmds.store.find_chat(caller.platform, caller.chat_id)
    symbol = None if not args or args[0].lower() == "all" else _symbol(cmds, args[0])
    removed = 0 if chat is None else await cmds.store.unsubscribe(chat.id, symbol)
    return Reply((f"Unsubscribed ({removed})." if removed else "No such subscription here.",))


def _symbol(cmds: Commands, text: str) -> str:
    """A symbol as the catalogue names it; the rule parser vets the token's characters."""
    return cmds.view.canonical(rules.parse(f"{text} above 1")).symbol


@command("chart")
async def _chart(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """A price chart over a range with this chat's levels on it, and a one-line summary."""
    if not 1 <= len(args) <= 2 or (len(args) == 2 and args[1].lower() not in RANGES):
        return error(f"usage: /chart SYM [{'|'.join(RANGES)}], e.g. /chart XAU 3m")
    symbol = _symbol(cmds, args[0])
    span = args[1].lower() if len(args) == 2 else "1m"
    now = cmds.clock()
    await cmds.view.fresh_quote(symbol)
    candles = await cmds.view.daily(symbol, RANGES[span])
    since = now - timedelta(days=1)
    ticks = [(ts, p) for ts, p in cmds.view.market.history(symbol).ticks if ts >= since]
    levels = [Level(r.value, rules.format(r)) for r in await _levels(cmds, caller, symbol)]
    spec = price_spec(symbol, span, candles, ticks, levels, unit=cmds.view.currency(symbol))
    if spec is None:
        return error(f"no price history for {symbol} yet; try again in a minute.")
    image = await cmds.charts.get(
        minute_key("chart", symbol, span, tuple(levels), now=now), lambda: spec
    )
    prices = (
        [p for _, p in ticks] if span == "1d" and len(ticks) >= 2 else [c.close for c in candles]
    )
    summary = f"{symbol} {span}: {number(prices[0])} → {number(prices[-1])}"
    if prices[0] > 0:
        summary += f" ({pct((prices[-1] / prices[0] - 1) * 100)})"
    return Reply((summary,), image=image)


ROTATION = ("XAU", "XAG", "BTC", "ETH")
ROTATION_WINDOWS = (("1d", 1), ("1w", 7), ("1m", 30))


@command("rotation")
async def _rotation(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Gold, silver, BTC and ETH side by side: changes, the gold ratios and a normalised chart."""
    if args:
        return error("usage: /rotation (no arguments)")
    now = cmds.clock()
    year_start = now.date().replace(month=1, day=1)
    days = max(35, (now.date() - year_start).days + 7)  # the last close of last year too
    closes: dict[str, list[Candle]] = {}
    last: dict[str, float] = {}
    rows = [("", *(w for w, _ in ROTATION_WINDOWS), "YTD")]
    for symbol in ROTATION:
        bars = await cmds.view.daily(symbol, days)
        quote = await cmds.view.fresh_quote(symbol)
        if quote is None or not bars:
            rows.append((symbol, *("–" for _ in ROTATION_WINDOWS), "–"))
            continue
        last[symbol] = quote.price
        closes[symbol] = [c for c in bars if c.day >= year_start] or bars[-30:]
        cells = [
            _change(cmds, symbol, quote.price, timedelta(days=d), now) for _, d in ROTATION_WINDOWS
        ]
        before_year = [c for c in bars if c.day < year_start]
        ytd = pct((quote.price / before_year[-1].close - 1) * 100) if before_year else "–"
        rows.append((symbol, *cells, ytd))
    lines = []
    for a, b in (("XAU", "XAG"), ("XAU", "BTC")):
        if a in last and b in last:
            lines.append(f"{a}/{b} ratio {number(last[a] / last[b])}")
    image = None
    if closes:
        since = min(bars[0].day for bars in closes.values())
        spec = rotation_spec(closes, f"gold, silver, BTC and ETH since {since}, start = 100")
        if spec is not None:
            image = await cmds.charts.get(minute_key("rotation", now=now), lambda: spec)
    return Reply(tuple(lines), title="Rotation", table=tuple(rows), image=image)


def _change(cmds: Commands, symbol: str, price: float, window: timedelta, now: datetime) -> str:
    ago = cmds.view.market.price_ago(symbol, window, now)
    return pct((price / ago - 1) * 100) if ago else "–"


@command("charts", writes=True)
async def _charts(cmds: Commands, caller: Caller, args: list[str]) -> Reply:
    """Turn charts on this chat's alerts on or off."""
    if len(args) != 1 or args[0].lower() not in ("on", "off"):
        return error("usage: /charts on|off, e.g. /charts off")
    on = args[0].lower() == "on"
    chat = await cmds._chat(caller)
    await cmds.store.set_charts(chat.id, on)
    return Reply(("Alerts here come with a chart." if on else "Alerts here are text only.",))


async def _levels(cmds: Commands, caller: Caller, symbol: str) -> list[Rule]:
    """This chat's single-symbol level rules on `symbol`."""
    found = []
    for stored in await cmds._rules(caller):
        rule = rules.parse(stored.text)
        if rule.symbol == symbol and rule.other is None and rule.is_price_level:
            found.append(rule)
    return found

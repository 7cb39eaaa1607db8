"""The platform-neutral command layer: typed operations that check who may run them, do them,
and return typed results (bot.results) that each platform puts into words.

Discord calls the operations with its typed slash-command options; Telegram and the console
(`tickerbell cmd`) send chat text to `Commands.handle`, which parses it, calls the same
operations and answers with a `Reply`. Every operation passes the same gate first: the
commands-per-minute limit, then, for changes, the admin check in group chats. Every input gets
an answer: malformed arguments get the command's usage with a valid example, and nothing is
written.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec, Protocol, TypeAlias

from alerts import rules
from alerts.indicators import Market
from alerts.models import Alert, Candle, Quote, Rule, RuleError, RuleState
from alerts.text import fold
from bot import actions, chat_text, digest, views
from bot.actions import Ref, Signer
from bot.charts import RANGES, AlertCharts, ChartCache
from bot.replies import CHAT, WEBHOOK_EXAMPLE, Reply, Spelling, reply
from bot.results import (
    FOREVER,
    Action,
    AdminsOnly,
    AlertAdded,
    AlertList,
    AlertState,
    AlreadyDone,
    AtLimit,
    BadButton,
    ChartsSet,
    Command,
    CommandError,
    DigestOff,
    DigestPlan,
    Duplicate,
    Expired,
    Help,
    InboundOff,
    InboundStopped,
    InboundUrl,
    Listed,
    ListedWebhook,
    Muted,
    NeedsConfirmation,
    NoSuchAlert,
    NoSuchWebhook,
    Pressed,
    Problem,
    RemoveAllAsked,
    Removed,
    RemovedAll,
    Result,
    Snoozed,
    StaleButton,
    Subscribed,
    TooFast,
    Typed,
    Unmuted,
    Unsubscribed,
    Usage,
    WebhookAdded,
    WebhookList,
    WebhookRemoved,
    Woken,
)
from bot.webhook_urls import Kind, Targets, kind_of, shown
from storage.api import (
    Chat,
    DigestSetting,
    LimitReached,
    OutboxRow,
    Storage,
    StoredRule,
    utcnow,
)

RULE_ID = re.compile(r"#?[0-9]{1,12}", re.ASCII)
WRITE_KINDS = frozenset({"group", "supergroup", "guild"})
PLAUSIBLE = 10.0  # a level over 10x or under a tenth of the price is probably a typo
MUTE_EXAMPLE = Typed(Command.MUTE, ("2h",))  # shown with a duration /mute cannot read


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, from where. `is_admin` is the adapter's answer for group chats;
    unknown means no (an adapter that forgets to ask cannot open a group to everyone)."""

    platform: str
    chat_id: str
    chat_kind: str = "private"
    user_id: str = ""
    is_admin: bool = False


class MarketView(Protocol):
    """What commands need from the running service (tickerbell.service.Service provides it)."""

    market: Market

    def canonical(self, rule: Rule) -> Rule:
        """The rule with its symbols resolved (raises RuleError for unknown symbols)."""
        ...

    def symbol(self, text: str) -> str:
        """One symbol as the catalogue names it (gold -> XAU); RuleError for a malformed,
        unknown or paired one."""
        ...

    def first_look(self, rule: Rule) -> tuple[RuleState, float | None] | None:
        """The state a new rule takes at the current price, or a price level at the last price
        traded while its market is closed (armed, or waiting for the next crossing when its
        condition already holds), and the value it saw (None when not a current price); None
        without a price."""
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


P = ParamSpec("P")
Operation: TypeAlias = Callable[Concatenate["Commands", Caller, P], Awaitable[Result]]
_WRITES: dict[str, bool] = {}  # operation name -> whether it needs an admin in a group


def operation(*, writes: bool = False) -> Callable[[Operation[P]], Operation[P]]:
    """Make a method a typed operation: it runs behind `Commands.gate` (rate limit, and for
    `writes` the admin check in groups), a RuleError becomes a Problem, and its text
    arguments arrive folded (alerts.text.fold: full-width `ＢＴＣ` is `BTC`) from every
    platform."""

    def gated(op: Operation[P]) -> Operation[P]:
        _WRITES[op.__name__] = writes

        @functools.wraps(op)
        async def run(cmds: Commands, caller: Caller, /, *args: P.args, **kw: P.kwargs) -> Result:
            # P.args cannot be rebuilt in a way mypy follows; the values keep their types
            args = tuple(_fold(a) for a in args)  # type: ignore[assignment]
            kw = {k: _fold(v) for k, v in kw.items()}  # type: ignore[assignment]
            return await cmds.gate(caller, writes, lambda: op(cmds, caller, *args, **kw))

        return run

    return gated


def _fold(value: object) -> object:
    return fold(value) if isinstance(value, str) else value


class Commands:
    """Answers commands for every platform: typed operations, and chat text over them."""

    def __init__(
        self,
        store: Storage,
        view: MarketView,
        *,
        rules_per_chat: int = 50,
        commands_per_minute: int = 20,
        clock: Callable[[], datetime] = utcnow,
        charts: ChartCache | None = None,
        changed: Callable[[], None] = lambda: None,
        webhook_targets: Targets | None = None,
        inbound_url: str | None = None,
    ) -> None:
        """`changed` is called after every operation that may have written (the service
        then brings its rule book in line at once). `webhook_targets` are where `/webhook add`
        may post; `inbound_url` is where TradingView posts arrive (None: nowhere)."""
        self.store = store
        self.webhook_targets = webhook_targets or Targets()
        self.inbound_url = inbound_url.rstrip("/") if inbound_url else None
        self.changed = changed
        self.view = view
        self.rules_per_chat = rules_per_chat
        self.commands_per_minute = commands_per_minute
        self.clock = clock
        self.charts = charts or ChartCache()
        self._recent: dict[tuple[str, str], deque[datetime]] = defaultdict(deque)
        self._signer: Signer | None = None

    # --- chat text ---

    async def handle(self, caller: Caller, text: str, spelling: Spelling = CHAT) -> Reply:
        """Answer one chat message (bot.chat_text parses it into an operation), commands
        written as `spelling` says. Never raises."""
        return reply(await chat_text.answer(self, caller, text), spelling)

    # --- the gate ---

    async def gate(
        self, caller: Caller, writes: bool, work: Callable[[], Awaitable[Result]]
    ) -> Result:
        """Do `work` unless the caller is over the rate limit, or `writes` and not an admin of
        the group; a RuleError it raises is answered as a Problem."""
        if self._too_fast(caller):
            return TooFast(self.commands_per_minute)
        if writes and caller.chat_kind in WRITE_KINDS and not caller.is_admin:
            return AdminsOnly()
        try:
            return await work()
        except CommandError as err:
            return Problem(err.message, err.example)
        except RuleError as err:
            return Problem(str(err))
        finally:
            if writes:
                self.changed()

    async def invalid(
        self, caller: Caller, op: Callable[..., Awaitable[Result]], command: Command
    ) -> Result:
        """Malformed arguments for `op`: its usage, behind the same gate as `op` (so it counts
        toward the rate limit, and a member of a group hears first that only admins may)."""

        async def usage() -> Result:
            return Usage(command)

        return await self.gate(caller, _WRITES[op.__name__], usage)

    def _too_fast(self, caller: Caller) -> bool:
        now = self.clock()
        recent = self._recent[(caller.platform, caller.user_id or caller.chat_id)]
        while recent and now - recent[0] > timedelta(minutes=1):
            recent.popleft()
        if len(recent) >= self.commands_per_minute:
            return True
        recent.append(now)
        return False

    # --- operations ---

    @operation()
    async def help(self, caller: Caller, greeting: bool = False) -> Result:
        """The commands and the rule language with examples (and a greeting, for /start)."""
        return Help(greeting)

    @operation()
    async def status(self, caller: Caller, symbol: str) -> Result:
        """Price, day change, book, this chat's nearest levels, N-day range and feed freshness."""
        if len(symbol.split()) != 1:
            return Usage(Command.STATUS)
        symbol = self._symbol(symbol)
        levels = await self._levels(caller, symbol)
        return await views.status(self.view, symbol, levels, self.clock())

    @operation(writes=True)
    async def add_alert(self, caller: Caller, rule: Rule | str, confirmed: bool = False) -> Result:
        """Add a rule; refuse a duplicate, ask before storing a level far from the price, and
        say so when its condition already holds. A rule's text may end in the word `confirm`
        (no number), which confirms."""
        if isinstance(rule, str):
            words = rule.split()
            if words and words[-1].lower() == "confirm":
                confirmed, words = True, words[:-1]
            if not words:
                return Usage(Command.ALERT)
            rule = rules.parse(" ".join(words))
        rule = self.view.canonical(rule)
        text = rules.format(rule)
        if rule.expired(self.clock()) and rule.expires is not None:
            plain = rules.format(replace(rule, expires=None))
            return Expired(plain, rule.expires, self.clock().year + 1)
        for stored in await self._rules(caller):
            if _canonical_text(stored.text) == text and not (stored.state and stored.state.done):
                return Duplicate(stored.id, text)
        if not confirmed:
            doubt = await self._implausible(rule)
            if doubt is not None:
                return doubt
        chat = await self._chat(caller)
        # The rule is saved with what it learns from the price the person sees now, so that
        # the reply ("set", or "already true: waits for the next crossing") holds even if the
        # price crosses before the engine's next tick.
        look = self.view.first_look(rule)
        state = look[0] if look is not None else None
        try:
            rule_id = await self.store.add_rule(
                chat.id, text, caller.user_id, self.rules_per_chat, state
            )
        except LimitReached as err:
            return AtLimit(str(err))
        holds = look[1] if look is not None and look[0].armed is False else None  # now only
        return AlertAdded(rule_id, text, already_true=holds)

    async def _implausible(self, rule: Rule) -> NeedsConfirmation | None:
        """A price or ratio level that looks like a typo (`XAG above 50k` with silver at 50),
        or None when it looks fine or there is no price to compare with."""
        if not rule.is_price_level:
            return None
        quotes = [await self.view.fresh_quote(symbol) for symbol in rule.symbols]
        prices = [q.price for q in quotes if q is not None]
        if len(prices) < len(quotes):
            return None
        now = prices[0] if rule.other is None else prices[0] / prices[1]
        if 1 / PLAUSIBLE <= rule.value / now <= PLAUSIBLE:
            return None
        subject = f"{rule.pair} ratio" if rule.other else rule.pair
        return NeedsConfirmation(rules.format(rule), subject, now, rule.value, PLAUSIBLE)

    @operation()
    async def list_alerts(self, caller: Caller) -> Result:
        """This chat's rules with ids and state."""
        stored = await self._rules(caller)
        now = self.clock()
        return AlertList(
            tuple(
                Listed(r.id, r.text, _state(r.state), _snoozed(r.snoozed_until, now))
                for r in stored
            )
        )

    async def remove(self, caller: Caller, target: str) -> Result:
        """Remove what a person names: an id (`3`, `#3`), `all` (asks first) or `all confirm`."""
        words = target.lower().split()
        if words == ["all"]:
            return await self.remove_all(caller)
        if words == ["all", "confirm"]:
            return await self.remove_all(caller, confirmed=True)
        return await self.remove_alert(caller, target)

    @operation(writes=True)
    async def remove_alert(self, caller: Caller, rule_id: int | str) -> Result:
        """Remove one rule by its id (as a number, or as typed: `3`, `#3`)."""
        number = _rule_id(rule_id) if isinstance(rule_id, str) else rule_id
        if number is None:
            return Usage(Command.REMOVE)
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        if chat is None or not await self.store.remove_rule(chat.id, number):
            return NoSuchAlert(number)
        return Removed(number)

    @operation(writes=True)
    async def remove_all(self, caller: Caller, confirmed: bool = False) -> Result:
        """Remove every rule of the chat; unconfirmed, only say how many that would be."""
        if not confirmed:
            return RemoveAllAsked(len(await self._rules(caller)))
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        return RemovedAll(0 if chat is None else await self.store.remove_all_rules(chat.id))

    @operation(writes=True)
    async def mute(self, caller: Caller, duration: timedelta | str | None = None) -> Result:
        """Pause this chat's alerts for a while (a timedelta, or as typed: `2h`), or until
        unmuted (None)."""
        if isinstance(duration, str):
            words = duration.split()
            if len(words) > 1:
                return Usage(Command.MUTE)
            duration = _duration(words[0]) if words else None
        until = FOREVER if duration is None else self.clock() + duration
        chat = await self._chat(caller)
        await self.store.set_muted(chat.id, until)
        return Muted(None if until == FOREVER else until)

    @operation(writes=True)
    async def snooze(
        self, caller: Caller, rule_id: int | str, duration: timedelta | str | None
    ) -> Result:
        """Quiet one rule for a while (a timedelta, or as typed: `1h`), until woken (None,
        or `forever`: muted), or wake it (`off`). It then waits for a fresh crossing."""
        number = _rule_id(rule_id) if isinstance(rule_id, str) else rule_id
        if isinstance(duration, str):
            word = duration.strip().lower()
            if word == "off":
                until: datetime | None = None
            elif word == "forever":
                until = FOREVER
            else:
                try:
                    until = self.clock() + rules.parse_duration(word)
                except RuleError:
                    return Usage(Command.SNOOZE)
        else:
            until = FOREVER if duration is None else self.clock() + duration
        if number is None:
            return Usage(Command.SNOOZE)
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        if chat is None or not await self.store.snooze_rule(chat.id, number, until):
            return NoSuchAlert(number)
        return Woken(number) if until is None else Snoozed(number, until)

    @operation(writes=True)
    async def unmute(self, caller: Caller) -> Result:
        """Resume alerts."""
        chat = await self._chat(caller)
        was_muted = chat.muted_until is not None and chat.muted_until > self.clock()
        await self.store.set_muted(chat.id, None)
        return Unmuted(was_muted)

    @operation(writes=True)
    async def subscribe(self, caller: Caller, symbol: str) -> Result:
        """Follow a symbol's notable moves (`all`: every watched symbol)."""
        if len(symbol.split()) != 1:
            return Usage(Command.SUBSCRIBE)
        symbol = "all" if symbol.strip().lower() == "all" else self._symbol(symbol)
        chat = await self._chat(caller)
        return Subscribed(symbol, await self.store.subscribe(chat.id, symbol))

    @operation(writes=True)
    async def unsubscribe(self, caller: Caller, symbol: str | None = None) -> Result:
        """Stop following one symbol, or (None, empty or `all`) every one."""
        words = (symbol or "").split()
        if len(words) > 1:
            return Usage(Command.UNSUBSCRIBE)
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        which = None if not words or words[0].lower() == "all" else self._symbol(words[0])
        return Unsubscribed(0 if chat is None else await self.store.unsubscribe(chat.id, which))

    @operation()
    async def chart(self, caller: Caller, symbol: str, span: str = "1m") -> Result:
        """A price chart over a span of RANGES with this chat's levels on it."""
        span = span.strip().lower()
        if len(symbol.split()) != 1 or span not in RANGES:
            return Usage(Command.CHART)
        symbol = self._symbol(symbol)
        levels = await self._levels(caller, symbol)
        return await views.chart(self.view, self.charts, symbol, span, levels, self.clock())

    @operation()
    async def rotation(self, caller: Caller) -> Result:
        """Gold, silver, BTC and ETH side by side: changes, the gold ratios, a normalised chart."""
        return await views.rotation(self.view, self.charts, self.clock())

    @operation(writes=True)
    async def set_charts(self, caller: Caller, on: bool) -> Result:
        """Turn charts on this chat's alerts on or off."""
        chat = await self._chat(caller)
        await self.store.set_charts(chat.id, on)
        return ChartsSet(on)

    # --- the buttons under alerts ---

    async def buttons(
        self,
        chat: Chat,
        ref: Ref,
        alert: Alert,
        has_chart: bool,
        used: frozenset[Action] = frozenset(),
    ) -> list[tuple[Action, str]]:
        """The buttons an alert message shows (bot.actions.offered), each with its signed
        data; none under a TradingView post (no rule of ours to act on, no chart of ours)."""
        if alert.note is not None:
            return []
        signer = await self._sign()
        return [
            (action, signer.data(chat.platform, chat.chat_id, ref.row, action, alert.time))
            for action in actions.offered(ref.rule, has_chart, used)
        ]

    async def press(self, caller: Caller, data: str, by: str) -> Result:
        """Do what a pressed button says, once per message and button, authorised like the
        command it stands for (Snooze 1h: `/snooze ID 1h`, Mute rule: `/snooze ID forever`,
        Remove: `/remove ID`, Chart: `/chart`); `by` names who pressed it."""
        parsed = actions.parse(data)
        if parsed is None:
            return BadButton()
        writes = parsed.action is not Action.CHART

        async def work() -> Result:
            row = await self.store.outbox_row(parsed.row)
            if row is None:
                return StaleButton()
            alert = row.alert
            if not isinstance(alert, Alert) or alert.note is not None:
                return BadButton()  # a daily digest and a TradingView post have no buttons
            signer = await self._sign()
            if row.chat.chat_id != caller.chat_id or row.chat.platform != caller.platform:
                return BadButton()
            if not signer.valid(caller.platform, caller.chat_id, parsed, alert.time):
                return BadButton()
            if self.clock() - alert.time > actions.FRESH_FOR:
                return StaleButton()
            if writes and row.rule is None:
                return BadButton()  # a `/subscribe` alert has no rule buttons
            if not await self.store.mark_action(row.id, parsed.action.value):
                return AlreadyDone(parsed.action)
            return await self._do(row, alert, parsed.action, by)

        return await self.gate(caller, writes, work)

    async def _do(self, row: OutboxRow, alert: Alert, action: Action, by: str) -> Result:
        """A button's action on its row (`alert`: the row's), once its data checked out and
        it was claimed."""
        used = frozenset(Action(code) for code in row.actions) | {action}
        done = functools.partial(Pressed, action, row.id, row.rule, alert, used, by)
        if action is Action.CHART:
            return done()  # drawn by `alert_chart`, once the press is answered
        assert row.rule is not None
        if action is Action.REMOVE:
            if not await self.store.remove_rule(row.chat.id, row.rule):
                return NoSuchAlert(row.rule)
            return done()
        until = FOREVER if action is Action.MUTE else self.clock() + actions.SNOOZE_FOR
        if not await self.store.snooze_rule(row.chat.id, row.rule, until):
            return NoSuchAlert(row.rule)
        return done(until=until)

    async def alert_chart(self, alert: Alert) -> bytes | None:
        """The chart an alert goes with (what delivery attaches), for its Chart button; None
        when there is nothing to draw."""
        return await AlertCharts(self.view.market, self.charts, self.view.currency).for_alert(alert)

    async def pressed_chart(self, pressed: Pressed) -> bytes | None:
        """The chart a Chart press asks for; None when there is nothing to draw yet, and then
        the button counts as unused: still offered, and kept by a later Remove."""
        image = None
        try:
            image = await self.alert_chart(pressed.alert)
        finally:
            if image is None:
                await self.store.unmark_action(pressed.row, Action.CHART.value)
        return image

    async def _sign(self) -> Signer:
        if self._signer is None:
            key = await self.store.secret(actions.SECRET_NAME)
            self._signer = Signer(bytes.fromhex(key))
        return self._signer

    async def digest(self, caller: Caller, text: str = "") -> Result:
        """What people type after /digest: nothing (show the setting), `off`, or
        `HH:MM ZONE [weekdays]`."""
        words = text.split()
        if not words:
            return await self.show_digest(caller)
        if len(words) == 1 and words[0].lower() == "off":
            return await self.digest_off(caller)
        if len(words) not in (2, 3):
            return await self.invalid(caller, self.set_digest, Command.DIGEST)
        return await self.set_digest(caller, *words)

    @operation()
    async def show_digest(self, caller: Caller) -> Result:
        """This chat's daily digest: when, and when the next one is due."""
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        found = [] if chat is None else await self.store.digests(chat.id)
        if not found:
            return DigestOff()
        return _plan(found[0].setting, self.clock())

    @operation(writes=True)
    async def set_digest(self, caller: Caller, at: str, zone: str, days: str = "daily") -> Result:
        """Send this chat a daily digest at a local time (`08:00`) in an IANA zone
        (`Europe/London`), every day or on `weekdays` only."""
        wanted = digest.setting(at, zone, days)
        chat = await self._chat(caller)
        await self.store.set_digest(chat.id, wanted)
        return _plan(wanted, self.clock(), changed=True)

    @operation(writes=True)
    async def digest_off(self, caller: Caller) -> Result:
        """Stop this chat's daily digest."""
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        if chat is None or not await self.store.digests(chat.id):
            return DigestOff()
        await self.store.set_digest(chat.id, None)
        return DigestOff(was_on=True)

    @operation(writes=True)
    async def add_webhook(self, caller: Caller, url: str) -> Result:
        """Post this chat's alerts to a URL too (Slack, Discord, or signed JSON), once it is
        a permitted target (http(s), a public address unless allowed)."""
        url = url.strip()
        if not url or len(url.split()) != 1:
            return Usage(Command.WEBHOOK)
        problem = await self.webhook_targets.check(url)
        if problem is not None:
            return Problem(
                f"can't post there: {problem}. A webhook is a public http(s) URL, ",
                Typed(Command.WEBHOOK, ("add", WEBHOOK_EXAMPLE)),
            )
        kind = kind_of(url)
        chat = await self._chat(caller)
        hook, added = await self.store.add_webhook(chat.id, url, secrets.token_urlsafe(24))
        secret = hook.secret if kind is Kind.JSON else None
        return WebhookAdded(hook.id, kind.value, shown(url), secret, added)

    @operation()
    async def list_webhooks(self, caller: Caller) -> Result:
        """This chat's webhooks (where they post, never their whole URL)."""
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        hooks = [] if chat is None else await self.store.webhooks(chat.id)
        listed = []
        for hook in hooks:
            working = (await self.store.get_chat(hook.id)).active
            listed.append(ListedWebhook(hook.id, kind_of(hook.url).value, shown(hook.url), working))
        return WebhookList(tuple(listed))

    @operation(writes=True)
    async def remove_webhook(self, caller: Caller, webhook_id: int | str) -> Result:
        """Stop one of this chat's webhooks (its alerts not yet posted are dropped)."""
        if isinstance(webhook_id, str):
            words = webhook_id.split()
            if len(words) != 1 or not RULE_ID.fullmatch(words[0]):
                return Usage(Command.WEBHOOK)
            webhook_id = int(words[0].lstrip("#"))
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        if chat is None or not await self.store.remove_webhook(chat.id, webhook_id):
            return NoSuchWebhook(webhook_id)
        return WebhookRemoved(webhook_id)

    @operation(writes=True)
    async def inbound(self, caller: Caller, action: str = "") -> Result:
        """The URL TradingView posts to for this chat (made on first ask); `new` makes
        another (the old one stops working), `off` stops it."""
        action = action.strip().lower()
        if action not in ("", "new", "off"):
            return Usage(Command.WEBHOOK)
        chat = await self._chat(caller)
        secret = await self.store.inbound_secret(chat.id)
        if action == "off":
            await self.store.set_inbound_secret(chat.id, None)
            return InboundStopped(secret is not None)
        if self.inbound_url is None:
            return InboundOff()
        new = secret is None or action == "new"
        if new:
            secret = secrets.token_urlsafe(18)
            await self.store.set_inbound_secret(chat.id, secret)
        return InboundUrl(f"{self.inbound_url}/tv/{secret}", new)

    # --- helpers ---

    def _symbol(self, text: str) -> str:
        return self.view.symbol(text)

    async def _chat(self, caller: Caller) -> Chat:
        return await self.store.chat(caller.platform, caller.chat_id, caller.chat_kind)

    async def _rules(self, caller: Caller) -> list[StoredRule]:
        chat = await self.store.find_chat(caller.platform, caller.chat_id)
        return [] if chat is None else await self.store.rules(chat.id)

    async def _levels(self, caller: Caller, symbol: str) -> list[Rule]:
        """This chat's single-symbol level rules on `symbol`."""
        found = []
        for stored in await self._rules(caller):
            rule = rules.parse(stored.text)
            if rule.symbol == symbol and rule.other is None and rule.is_price_level:
                found.append(rule)
        return found


def _canonical_text(text: str) -> str:
    """A stored rule's canonical text as this version writes it."""
    try:
        return rules.format(rules.parse(text))
    except RuleError:
        return text


def _duration(text: str) -> timedelta:
    """A duration for /mute; its error shows /mute's example, spelled per platform."""
    try:
        return rules.parse_duration(text)
    except RuleError as err:  # the house style: the message, then `e.g. ` and an example
        said = str(err)
        raise CommandError(said.rpartition("e.g. ")[0] or said, MUTE_EXAMPLE) from None


def _rule_id(text: str) -> int | None:
    """A rule id as typed (`3`, `#3`), or None when it is none."""
    words = text.split()
    if len(words) != 1 or not RULE_ID.fullmatch(words[0]):
        return None
    return int(words[0].lstrip("#"))


def _snoozed(until: datetime | None, now: datetime) -> datetime | None:
    """A snooze still running, or None."""
    return until if until is not None and until > now else None


def _plan(setting: DigestSetting, now: datetime, changed: bool = False) -> DigestPlan:
    next_at = digest.next_due(setting, now)
    return DigestPlan(setting.at, setting.zone, setting.weekdays_only, next_at, changed)


def _state(state: RuleState | None) -> AlertState:
    if state is None or state.armed is None:
        return AlertState.NEW
    if state.done:
        return AlertState.DONE
    if state.armed:
        return AlertState.ARMED
    return AlertState.WAITING if state.fired_count else AlertState.HOLDS

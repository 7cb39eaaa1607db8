"""`tickerbell migrate-db`: an installation's SQLite data copied into PostgreSQL, as the
stores themselves read it back (needs TICKERBELL_TEST_DATABASE_URL; skips without it)."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import pytest
from support.scripted import T0, Clock

from alerts import rules
from alerts.models import Alert, Direction, Quote, RuleState
from storage.api import DigestDue, DigestSetting, RuleChanges, Storage
from storage.db import Store
from storage.postgres import PostgresStore
from tickerbell.cli import main


def alert(price: float) -> Alert:
    rule = rules.parse("XAG above 50")
    return Alert("XAG above 50", rule, Direction.UP, price, 50.0, price, T0, price - 0.01, price)


async def an_installation(store: Storage, clock: Clock) -> None:
    """A little of everything: chats muted, gone and without charts; rules kept, removed,
    fired and snoozed; alerts delivered (a button used on it), failed, waiting for a retry and
    pending; daily digests on and off, one sent; webhooks kept and removed, hearing alerts;
    an inbound secret; subscriptions; quotes; the buttons' key."""
    one, two = await store.chat("telegram", "42"), await store.chat("discord", "7", "channel")
    gone, console = (
        await store.chat("telegram", "-100", "group"),
        await store.chat("console", "console"),
    )
    await store.set_muted(two.id, T0 + timedelta(days=2))
    await store.set_chat_active(gone.id, False)
    await store.set_charts(one.id, False)
    kept = await store.add_rule(one.id, "XAG above 50", "u1", limit=50)
    removed = await store.add_rule(one.id, "XAG above 60", "u1", limit=50)
    await store.import_rules(
        [(console.id, "BTC below 85000", "cli"), (two.id, "XAU above 4000", "")]
    )
    clock.tick(60)
    fired = RuleState(armed=False, last_fired=T0, fired_count=1)
    await store.commit_tick(
        {kept: fired, removed: RuleState(armed=True)},
        [(kept, one.id, alert(50.1 + i / 10)) for i in range(4)]
        + [(None, two.id, alert(51.0)), (None, gone.id, alert(52.0))],
    )
    first, second, third, _ = await store.pending()
    await store.mark_delivered(first.id, "m-1")
    await store.mark_failed(second.id, "chat not found")
    await store.mark_retry(third.id, "timeout", T0 + timedelta(minutes=5))
    await store.add_webhook(one.id, "https://example.com/hook", "signing")
    dropped, _ = await store.add_webhook(two.id, "https://example.com/other", "s2")
    await store.remove_webhook(two.id, dropped.id)
    await store.commit_tick({}, [(kept, one.id, alert(53.0))])  # for the chat and its webhook
    await store.set_inbound_secret(one.id, "tv-secret")
    await store.remove_rule(one.id, removed)
    await store.mark_action(first.id, "s")
    await store.snooze_rule(one.id, kept, T0 + timedelta(hours=1))
    await store.set_digest(one.id, DigestSetting(time(8, 0), "Europe/London", weekdays_only=True))
    await store.set_digest(two.id, DigestSetting(time(18, 30), "Asia/Tokyo"))
    await store.enqueue_digest(two.id, DigestDue(date(2026, 3, 2), T0))
    await store.set_digest(two.id, None)
    await store.secret("actions")
    await store.subscribe(one.id, "XAG")
    await store.subscribe(two.id, "BTC")
    await store.save_quotes(
        [Quote("BTC", 86000.0 + i, T0 + timedelta(minutes=i), 85999.0, 86001.0, "ccxt:binance")
         for i in range(3)] + [Quote("XAG", 50.5, T0, source="swissquote")]
    )  # fmt: skip


async def everything(store: Storage, chats: int) -> list[object]:
    """All a store tells, read through the contract."""
    seen: list[object] = [
        await store.rules(),
        await store.subscriptions(),
        await store.pending(),
        await store.outbox_counts(),
        await store.recent_quotes("BTC"),
        await store.recent_quotes("XAG"),
        await store.digests(),
        await store.secret("actions"),
        await store.webhooks(),
        await store.inbound_chat("tv-secret"),
    ]
    for chat in range(1, chats + 1):
        seen += [await store.get_chat(chat), await store.history(chat, limit=100)]
    for row in range(1, 12):
        seen.append(await store.outbox_row(row))
    return seen


async def test_migrate_db_copies_an_installation_as_its_stores_read_it(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock, path = Clock(), tmp_path / "old.db"
    async with Store.open(path, clock=clock) as sqlite:
        await an_installation(sqlite, clock)
        before = await everything(sqlite, chats=6)

    assert await main_async(["migrate-db", "--from", f"sqlite:{path}", "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert (
        "6 chats, 2 subscriptions, 2 webhooks, 1 inbound, 4 rules, 2 rule_state, 9 outbox,"
        " 2 digests, 4 quotes, 1 secrets" in out
    )

    async with PostgresStore.open(postgres_url, clock=clock) as postgres:
        assert await everything(postgres, chats=6) == before
        # a reader of the new store reads all rules once; ids go on after the copied ones
        revision = await postgres.rules_revision()
        assert await postgres.rule_changes(revision - 1) is None
        assert await postgres.rule_changes(revision) == RuleChanges(revision)
        assert await postgres.add_rule(1, "XAG above 70", "u1", limit=50) == 5
        assert await postgres.rule_changes(revision) is not None
        assert await postgres.commit_tick({}, [(None, 4, alert(70.1))]) == 1
        assert [r.id for r in await postgres.pending() if r.chat.id == 4] == [10]
        # a digest turned off keeps its last day: it comes back without a second for that day
        await postgres.set_digest(2, DigestSetting(time(18, 30), "Asia/Tokyo"))
        assert not await postgres.enqueue_digest(2, DigestDue(date(2026, 3, 2), T0))
        assert (await postgres.chat("telegram", "new")).id == 7


async def test_migrate_db_copies_into_an_empty_database_only(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    async with Store.open(path) as sqlite:
        await sqlite.chat("telegram", "42")
    argv = ["migrate-db", "--from", f"sqlite:{path}", "--to", postgres_url]
    assert await main_async(argv) == 0
    assert await main_async(argv) == 2
    assert "nothing copied: the target already holds 1 chats" in capsys.readouterr().err
    async with PostgresStore.open(postgres_url) as postgres:
        assert [c.chat_id for c in await postgres.import_chats("telegram", ["42"], "")] == ["42"]


@pytest.mark.parametrize(
    ("source", "target", "needle"),
    [
        ("old.db", "postgresql://x@127.0.0.1/tb", "--from takes sqlite:PATH"),
        ("sqlite:old.db", "mysql://x@db/tb", "--to takes a PostgreSQL URL"),
        ("sqlite:missing.db", "postgresql://x@127.0.0.1/tb", "no database at"),
    ],
)
def test_migrate_db_arguments_are_checked_first(
    source: str, target: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate-db", "--from", source, "--to", target]) == 2
    assert needle in capsys.readouterr().err


async def main_async(argv: list[str]) -> int:
    """`main` runs its own event loop: from a test's loop, in a thread."""
    import asyncio

    return await asyncio.to_thread(main, argv)

"""Outgoing webhooks (bot.webhook) over real HTTP on 127.0.0.1: a receiver that records what it
was posted, through the real outbox and delivery worker; Slack's and Discord's formats; and the
guard against posting to private, loopback and link-local targets."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fake_dns import FakeDns
from support.local_server import serve_locally
from support.scripted import T0, Clock

from alerts import rules
from alerts.models import Alert, Condition, Direction, Rule
from bot.notifier import DeliveryError
from bot.webhook import WebhookNotifier
from bot.webhook_urls import SIGNATURE, TIMESTAMP, Kind, Targets, kind_of, shown
from storage.api import Webhook
from storage.db import Store
from tickerbell.delivery import ConsoleNotifier, Delivery

LOCAL = Targets.parse("127.0.0.1/32")
SECRET = "s3cret-for-tests"


def alert(price: float = 84_000.0) -> Alert:
    rule = rules.parse("BTC below 85000")
    return Alert("BTC below 85000", rule, Direction.DOWN, price, 85_000.0, price, T0)


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers each post with the next scripted status (then 200)."""

    port: int = 0
    posts: list[Posted] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(Posted(request.path, dict(request.headers), await request.read()))
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", made.handle)
    runner, made.port = await serve_locally(app)
    try:
        yield made
    finally:
        await runner.cleanup()


def verified(post: Posted, secret: str = SECRET) -> bool:
    """What a receiver does with our signature: HMAC-SHA256 of `<timestamp>.<body>`."""
    signed = post.headers[TIMESTAMP].encode() + b"." + post.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(post.headers[SIGNATURE], expected)


async def test_a_receiver_that_fails_then_succeeds_gets_the_alert_once_signed(
    receiver: Receiver, tmp_path: Path
) -> None:
    clock = Clock()
    receiver.script = [(500, {}), (503, {})]
    async with Store.open(tmp_path / "t.db", clock=clock) as store:
        owner = await store.chat("console", "console")
        rule = await store.add_rule(owner.id, "BTC below 85000", "cli", 50)
        await store.add_webhook(owner.id, receiver.url(), SECRET)
        printed: list[str] = []
        notifier = WebhookNotifier(store, LOCAL, clock=lambda: clock.now.timestamp())
        delivery = Delivery(
            store, {"console": ConsoleNotifier(printed.append), "webhook": notifier}, clock=clock
        )
        try:
            await store.commit_tick({}, [(rule, owner.id, alert())])
            for _ in range(4):  # two failures, each retried after its backoff, then success
                await delivery.drain()
                clock.tick(30)
            await delivery.drain()
        finally:
            await notifier.close()
        assert len(printed) == 1
        assert len(receiver.posts) == 3
        assert await store.outbox_counts() == {"delivered": 2}
    first, _, last = receiver.posts
    assert all(verified(post) for post in receiver.posts)
    assert not verified(last, "another secret")
    assert first.json()["id"] == last.json()["id"]  # one alert: the receiver can drop repeats
    assert last.headers["Content-Type"] == "application/json"
    assert last.json() == {
        "version": 1,
        "id": last.json()["id"],
        "source": "rule",
        "symbol": "BTC",
        "kind": "below",
        "direction": "down",
        "rule": "BTC below 85000",
        "price": 84000.0,
        "reference": 85000.0,
        "observed": 84000.0,
        "bid": None,
        "ask": None,
        "time": "2026-03-02T12:00:00+00:00",
        "text": "BTC fell below 85,000 (now 84,000)",
    }


@pytest.mark.parametrize(
    ("status", "headers", "verdict"),
    [
        (429, {"Retry-After": "7"}, (False, False, 7.0)),
        (502, {}, (False, False, 0.0)),
        (400, {}, (True, False, 0.0)),
        (404, {}, (True, True, 0.0)),
        (410, {}, (True, True, 0.0)),
        (401, {}, (True, True, 0.0)),
        (302, {"Location": "/elsewhere"}, (True, False, 0.0)),
    ],
)
async def test_what_each_answer_means_for_the_row(
    receiver: Receiver,
    status: int,
    headers: dict[str, str],
    verdict: tuple[bool, bool, float],
    tmp_path: Path,
) -> None:
    receiver.script = [(status, headers)]
    async with Store.open(tmp_path / "t.db") as store:
        owner = await store.chat("console", "console")
        hook, _ = await store.add_webhook(owner.id, receiver.url("/x/SECRET-PATH"), SECRET)
        notifier = WebhookNotifier(store, LOCAL)
        try:
            with pytest.raises(DeliveryError) as raised:
                await notifier.send(await store.get_chat(hook.id), alert())
        finally:
            await notifier.close()
    err = raised.value
    assert (err.permanent, err.chat_gone, err.retry_after) == verdict
    assert "SECRET-PATH" not in str(err) and f"webhook #{hook.id}" in str(err)
    assert len(receiver.posts) == 1  # a 302 is not followed: it would turn the post into a GET


async def test_slack_and_discord_urls_are_sent_in_their_format(
    receiver: Receiver, tmp_path: Path
) -> None:
    slack = receiver.url("/services/T000/B000/XXXX", host="hooks.slack.com")
    discord = receiver.url("/api/webhooks/123456/tok-en_1", host="discord.com")
    assert (kind_of(slack), kind_of(discord)) == (Kind.SLACK, Kind.DISCORD)
    assert kind_of(receiver.url("/services/T000/B000/XXXX")) is Kind.JSON
    outside = Alert(
        "TradingView",
        Rule("BTCUSDT", Condition.MOVE),
        Direction.EITHER,
        0.0,
        None,
        0.0,
        T0,
        note="Long <BTCUSDT> @ 84000 & @everyone",
    )
    async with Store.open(tmp_path / "t.db") as store:
        owner = await store.chat("telegram", "42")
        hooks = [(await store.add_webhook(owner.id, url, SECRET))[0] for url in (slack, discord)]
        notifier = WebhookNotifier(store, Targets.parse("127.0.0.1", FakeDns("127.0.0.1")))
        try:
            for hook in hooks:
                chat = await store.get_chat(hook.id)
                await notifier.send(chat, alert())
                await notifier.send(chat, outside)
        finally:
            await notifier.close()
    slack_posts, discord_posts = receiver.posts[:2], receiver.posts[2:]
    assert [p.path for p in slack_posts] == ["/services/T000/B000/XXXX"] * 2
    assert slack_posts[0].json() == {
        "text": "🔴▼ *BTC* fell below 85,000 (now 84,000)\n_BTC below 85000_ · 2026-03-02 12:00 UTC"
    }
    assert (
        slack_posts[1]
        .json()["text"]
        .startswith("🔔 *BTCUSDT* Long &lt;BTCUSDT&gt; @ 84000 &amp; @everyone\n")
    )
    assert SIGNATURE not in slack_posts[0].headers
    embed = discord_posts[0].json()["embeds"][0]
    assert (embed["title"], embed["description"], embed["color"]) == (
        "BTC",
        "BTC fell below 85,000 (now 84,000)",
        0xE74C3C,
    )
    assert embed["footer"]["text"] == "BTC below 85000"
    said = discord_posts[1].json()
    assert said["allowed_mentions"] == {"parse": []}  # a note's @everyone pings nobody
    assert said["embeds"][0]["description"].startswith("BTCUSDT Long <BTCUSDT> @ 84000")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "starts with https://"),
        ("example.com/hook", "starts with https://"),
        ("https:///nohost", "starts with https://"),
        ("http://127.0.0.1:8080/hook", "private, loopback or link-local"),
        ("http://10.1.2.3/hook", "private, loopback or link-local"),
        ("http://192.168.1.1/hook", "private, loopback or link-local"),
        ("http://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
        ("http://[::1]:80/hook", "private, loopback or link-local"),
        ("http://[fe80::1]/hook", "private, loopback or link-local"),
        ("http://[::ffff:127.0.0.1]/hook", "private, loopback or link-local"),
        ("http://0.0.0.0/hook", "private, loopback or link-local"),
        ("http://localhost:8080/hook", "localhost resolves to a private"),
        ("http://2130706433/hook", "2130706433 resolves to a private"),  # 127.0.0.1 in disguise
        ("http://127.1/hook", "127.1 resolves to a private"),
        ("https://user:pw@example.com/hook", "user name or password"),
        ("https://example.com/" + "x" * 2000, "over 2000 characters"),
    ],
)
async def test_refused_targets(url: str, why: str) -> None:
    found = await Targets().check(url)
    assert found is not None and why in found


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    assert await Targets().check("https://8.8.8.8/hook") is None
    public = Targets(resolver=FakeDns("93.184.215.14"))
    assert await public.check("https://hooks.example/x") is None
    mixed = await Targets(resolver=FakeDns("93.184.215.14", "10.0.0.9")).check("https://a.example/")
    assert mixed is not None and "private" in mixed
    assert await LOCAL.check("http://127.0.0.1:9/x") is None  # allowed by the setting
    assert await LOCAL.check("http://127.0.0.2:9/x") is not None  # only that one address
    with pytest.raises(ValueError):
        Targets.parse("10.0.0.0/8, not-a-network")


async def test_a_post_never_reaches_a_refused_target(receiver: Receiver, tmp_path: Path) -> None:
    """The guard holds when the request is made, not only when the URL was added: a name that
    now resolves to a loopback address, a literal loopback address, and a redirect there."""
    async with Store.open(tmp_path / "t.db") as store:
        owner = await store.chat("console", "console")
        by_name, _ = await store.add_webhook(owner.id, receiver.url(host="hooks.example"), "s")
        literal, _ = await store.add_webhook(owner.id, receiver.url(), "s")
        public = WebhookNotifier(store, Targets(resolver=FakeDns("127.0.0.1")))
        try:
            for hook in (by_name, literal):
                with pytest.raises(DeliveryError, match="refused") as raised:
                    await public.send(await store.get_chat(hook.id), alert())
                assert raised.value.chat_gone
        finally:
            await public.close()
        assert receiver.posts == []
        receiver.script = [(307, {"Location": receiver.url("/moved", host="127.0.0.2")})]
        local = WebhookNotifier(store, LOCAL)
        try:
            with pytest.raises(DeliveryError, match="refused"):
                await local.send(await store.get_chat(literal.id), alert())
            assert [p.path for p in receiver.posts] == ["/hook"]
            receiver.script = [(308, {"Location": "/moved"})]  # allowed: followed, same post
            await local.send(await store.get_chat(literal.id), alert())
        finally:
            await local.close()
    assert [p.path for p in receiver.posts] == ["/hook", "/hook", "/moved"]
    assert receiver.posts[1].body == receiver.posts[2].body


def test_a_webhook_is_shown_without_its_path() -> None:
    assert shown("https://hooks.slack.com/services/T0/B0/SECRET") == "https://hooks.slack.com/…"
    assert shown("http://10.0.0.5:8080/x?token=1") == "http://10.0.0.5:8080/…"


def test_the_schema_id_is_per_alert_and_webhook() -> None:
    from bot.webhook import payload

    one, two = Webhook(1, 9, "https://a.example/", "s"), Webhook(2, 9, "https://a.example/", "s")
    assert payload(one, alert())["id"] == payload(one, alert())["id"]
    assert payload(one, alert())["id"] != payload(two, alert())["id"]
    assert payload(one, alert())["id"] != payload(one, alert(83_000))["id"]

"""Webhooks in (tickerbell.webhook_in): TradingView-style posts over real HTTP on 127.0.0.1 into
a real SQLite outbox; refusals (400, 403, 413, 429) store nothing, whatever the body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.local_server import serve_locally
from support.scripted import T0, Clock

from bot.wording import sentence
from storage.api import Chat
from storage.db import Store
from tickerbell.webhook_in import MAX_BODY, MAX_TEXT, Inbound

SECRET = "tv-secret-of-chat-42"
OTHER = "tv-secret-of-chat-43"


@dataclass
class Endpoint:
    base: str
    store: Store
    chat: Chat
    http: aiohttp.ClientSession
    woken: list[None]
    ticks: list[float]

    async def post(
        self, path: str, body: bytes | str, content_type: str = "text/plain; charset=utf-8"
    ) -> tuple[int, str, dict[str, str]]:
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type}
        async with self.http.post(self.base + path, data=data, headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)

    async def stored(self) -> list[tuple[int, str, str | None]]:
        return [
            (row.chat.id, row.alert.symbol, row.alert.note) for row in await self.store.pending()
        ]


async def endpoint_for(tmp_path: Path, per_minute: int) -> AsyncIterator[Endpoint]:
    clock, ticks, woken = Clock(), [0.0], []
    async with Store.open(tmp_path / "in.db", clock=clock) as store:
        chat = await store.chat("telegram", "42")
        await store.set_inbound_secret(chat.id, SECRET)
        other = await store.chat("telegram", "43")
        await store.set_inbound_secret(other.id, OTHER)
        inbound = Inbound(
            store,
            lambda: woken.append(None),
            per_minute=per_minute,
            clock=clock,
            monotonic=lambda: ticks[0],
        )
        runner, port = await serve_locally(inbound.app(), access_log=None)
        try:
            async with aiohttp.ClientSession() as http:
                yield Endpoint(f"http://127.0.0.1:{port}", store, chat, http, woken, ticks)
        finally:
            await runner.cleanup()


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    async for made in endpoint_for(tmp_path, per_minute=3):
        yield made


async def test_plain_text_with_the_secret_in_the_url_reaches_the_chat_as_sent(
    endpoint: Endpoint,
) -> None:
    text = "BTCUSDT crossed 90000.5 on 1h (close 90012.25)"
    assert (await endpoint.post(f"/tv/{SECRET}", text))[:2] == (200, "ok")
    assert await endpoint.stored() == [(endpoint.chat.id, "TradingView", text)]
    assert endpoint.woken  # delivery is told at once
    (row,) = await endpoint.store.pending()
    assert sentence(row.alert) == f"TradingView {text}"
    assert row.alert.time == T0 and row.rule is None


@pytest.mark.parametrize(
    ("body", "subject", "text"),
    [
        ('{"message": "Long {{BTC}} @ 90000", "ticker": "BTCUSDT"}', "BTCUSDT",
         "Long {{BTC}} @ 90000"),
        ('{"text": "XAU broke 4200", "symbol": "XAUUSD"}', "XAUUSD", "XAU broke 4200"),
        ('{"ticker": "ETHUSD", "close": 4012.5, "action": "buy"}', "ETHUSD",
         '{"ticker": "ETHUSD", "close": 4012.5, "action": "buy"}'),
        ('{"message": 90000}', "TradingView", "90000"),
        ("  line one\n\x07line two\u202e  ", "TradingView", "line one\nline two"),
    ],
)  # fmt: skip
async def test_json_messages_and_subjects(
    endpoint: Endpoint, body: str, subject: str, text: str
) -> None:
    assert (await endpoint.post(f"/tv/{SECRET}", body))[0] == 200
    assert await endpoint.stored() == [(endpoint.chat.id, subject, text)]


async def test_the_secret_may_come_in_the_body_and_is_never_shown(endpoint: Endpoint) -> None:
    body = f'{{"secret": "{SECRET}", "ticker": "BTCUSDT", "close": 1}}'
    assert (await endpoint.post("/tv", body, "application/json"))[0] == 200
    assert await endpoint.stored() == [
        (endpoint.chat.id, "BTCUSDT", '{"ticker": "BTCUSDT", "close": 1}')
    ]


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/tv/not-a-secret", "hello", "unknown secret"),
        ("/tv", "hello", "no secret"),
        ("/tv", '{"message": "hi"}', "no secret"),
        ("/tv", '{"secret": "nope", "message": "hi"}', "unknown secret"),
        (f"/tv/{SECRET}", f'{{"secret": "{OTHER}", "message": "hi"}}', "not the one in the URL"),
        ("/tv/not-a-secret", "{malformed", "unknown secret"),  # the secret is checked first
    ],
)
async def test_a_bad_secret_is_403_and_stores_nothing(
    endpoint: Endpoint, path: str, body: str, reason: str
) -> None:
    status, text, _ = await endpoint.post(path, body)
    assert status == 403 and reason in text
    assert await endpoint.stored() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the body is empty"),
        (b"   \n ", "the body is empty"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b'{"message": "unclosed', "malformed JSON: Unterminated string"),
        (b"[1, 2]", "JSON must be an object"),
        (b'{"message": {"nested": 1}}', '"message" must be text'),
        (b'{"message": "\\u0007"}', "the message is empty"),
        (b"x" * (MAX_TEXT + 1), f"over {MAX_TEXT} characters"),
        (b"[" * 5000, "malformed JSON: nested too deep"),
        (b"{" * 5000, "malformed JSON"),
    ],
)
async def test_a_malformed_body_is_400_with_a_reason(
    endpoint: Endpoint, body: bytes, reason: str
) -> None:
    content_type = "application/json" if body.startswith(b"[") else "text/plain"
    status, text, _ = await endpoint.post(f"/tv/{SECRET}", body, content_type)
    assert status == 400 and reason in text
    assert "Traceback" not in text
    assert await endpoint.stored() == []


async def test_a_body_over_the_limit_is_413(endpoint: Endpoint) -> None:
    status, text, _ = await endpoint.post(f"/tv/{SECRET}", b"x" * (MAX_BODY + 1))
    assert status == 413 and "over" in text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off while reading
        for _ in range(10):
            yield b"y" * 1024

    url = f"{endpoint.base}/tv/{SECRET}"
    async with endpoint.http.post(url, data=chunks()) as response:
        assert response.status == 413
    assert await endpoint.stored() == []


async def test_posts_past_the_rate_are_429_per_chat(endpoint: Endpoint) -> None:
    for n in range(3):
        assert (await endpoint.post(f"/tv/{SECRET}", f"alert {n}"))[0] == 200
    status, text, headers = await endpoint.post(f"/tv/{SECRET}", "one too many")
    assert status == 429 and "over 3 posts a minute" in text and headers["Retry-After"] == "20"
    assert (await endpoint.post(f"/tv/{OTHER}", "another chat"))[0] == 200
    endpoint.ticks[0] += 60
    assert (await endpoint.post(f"/tv/{SECRET}", "a minute later"))[0] == 200
    notes = [note for chat, _, note in await endpoint.stored() if chat == endpoint.chat.id]
    assert notes == ["alert 0", "alert 1", "alert 2", "a minute later"]


async def test_only_posts_are_taken(endpoint: Endpoint) -> None:
    async with endpoint.http.get(f"{endpoint.base}/tv/{SECRET}") as response:
        assert response.status == 405
    async with endpoint.http.post(f"{endpoint.base}/elsewhere", data=b"x") as response:
        assert response.status == 404
    assert await endpoint.stored() == []


# --- fuzzed ---

bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "message": st.text(max_size=50) | st.integers() | st.none(),
            "ticker": st.text(max_size=50) | st.lists(st.integers(), max_size=2),
            "secret": st.sampled_from([SECRET, OTHER, "", "wrong"]) | st.integers(),
        },
    ).map(lambda value: json.dumps(value).encode()),
)  # fmt: skip
paths = st.sampled_from(["/tv", f"/tv/{SECRET}", f"/tv/{OTHER}", "/tv/wrong", "/tv/%00", "/tv/ "])
types = st.sampled_from(["text/plain", "application/json", "application/x-www-form-urlencoded", ""])


@pytest.fixture
async def open_endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    async for made in endpoint_for(tmp_path, per_minute=1_000_000):
        yield made


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=paths, body=bodies, content_type=types)
async def test_any_post_is_answered_without_a_traceback_and_a_refused_one_stores_nothing(
    open_endpoint: Endpoint, path: str, body: bytes, content_type: str
) -> None:
    before = await open_endpoint.store.outbox_counts()
    status, text, _ = await open_endpoint.post(path, body, content_type or "text/plain")
    assert status in (200, 400, 403, 404), (status, text)
    assert "Traceback" not in text and "Error" not in text
    after = await open_endpoint.store.outbox_counts()
    if status == 200:
        assert after.get("pending", 0) == before.get("pending", 0) + 1
        (*_, last) = await open_endpoint.store.pending(limit=10_000)
        assert last.alert.note and len(last.alert.note) <= MAX_TEXT
    else:
        assert after == before

"""A fake Discord over real HTTP on 127.0.0.1: the REST calls and the gateway discord.py needs.

REST (under `/api/v10`, answered with `Content-Type: application/json` exactly, as discord.py
wants): `GET /users/@me` and `GET /oauth2/applications/@me` (login), `POST
/channels/{id}/messages` (JSON, or multipart with `payload_json` and `files[n]`), `PUT` of the
application's global and guild commands (sync; checked like Discord checks them), the
interaction callback, follow-ups and the original response's edit and delete. Every request is
recorded; accepted messages, callbacks and syncs separately.

Faults are injected per channel: 429 with `retry_after` and `X-RateLimit-*` headers (plus `Via`,
without which discord.py takes a 429 for a Cloudflare ban), 403 Missing Access, 404 Unknown
Channel, 500 and 503. Outages: `rest_down` answers every REST call 503, `gateway_down` refuses
websocket upgrades with 503, `drop_gateway()` closes the connected websockets, and `unplug()`
stops listening altogether (connection refused) until `plug_in()`. Changing `token` makes the
bot's token refused (401 over REST, close code 4004 on the gateway).

The gateway (`/gateway`, a websocket) says HELLO, answers IDENTIFY with READY and one
GUILD_CREATE per configured guild (with its roles), RESUME with RESUMED, acknowledges
heartbeats, and dispatches whatever the test pushes (`INTERACTION_CREATE`). Interaction payloads
are built here too, as Discord builds them, so tests can hand them to a `CommandTree` directly
or over the gateway: slash commands (`interaction`) and presses of the buttons under a message
the bot posted (`press`). Message components are checked like Discord checks them (custom_id
up to 100 characters, labels up to 80, five buttons a row); an interaction's answer that
updates its message (callback type 7, or a PATCH of `@original` after a deferral) changes the
message, whose buttons and embeds `current` shows.

    async with FakeDiscord(TOKEN) as fake:
        settings = Settings(DISCORD_API_BASE_URL=fake.base_url,
                            DISCORD_GATEWAY_URL=fake.gateway_url, ...)
        with fake.pointed_at():  # or discord.py's globals directly, restored after
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web
from discord.gateway import DiscordWebSocket
from support.local_server import serve_locally

API = "/api/v10"
BOT_ID = 910_000_000_000_000_001
APP_ID = 910_000_000_000_000_002
OWNER_ID = 910_000_000_000_000_003
BOT_USER = {
    "id": str(BOT_ID),
    "username": "Tickerbell",
    "discriminator": "0",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "flags": 0,
}
EPHEMERAL = 64
# what a bot invited with the README's permissions has in a channel
APP_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
).value
MEMBER_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True).value
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | discord.Permissions(manage_guild=True).value
_NAME = re.compile(r"^[-_\w]{1,32}$")


class Fault(Enum):
    """What the fake answers a channel's next message instead of success."""

    RATE_LIMITED = 429
    FORBIDDEN = 403  # 50001 Missing Access
    NOT_FOUND = 404  # 10003 Unknown Channel
    SERVER_ERROR = 500  # discord.py retries these itself
    UNAVAILABLE = 503  # and not these


@dataclass
class Request:
    """One HTTP request as received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    at: float


@dataclass
class Posted:
    """A message the fake accepted (in a channel, or as an interaction's answer)."""

    channel_id: int
    payload: dict[str, Any]
    files: list[tuple[str, bytes]]
    id: int

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.payload.get("flags") or 0) & EPHEMERAL)


@dataclass
class Callback:
    """An interaction callback: type 4 message, 5 deferred, 8 autocomplete choices."""

    interaction_id: int
    type: int
    data: dict[str, Any]
    files: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.data.get("embeds") or [])

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & EPHEMERAL)


@dataclass
class _Injection:
    fault: Fault
    times: int | None
    retry_after: float


@dataclass
class Guild:
    """A server the bot is in, with its roles (name -> id) for GUILD_CREATE."""

    id: int
    roles: dict[str, int] = field(default_factory=dict)


class FakeDiscord:
    """A local Discord for one bot token. Use as an async context manager."""

    def __init__(self, token: str, guilds: list[Guild] | None = None) -> None:
        self.token = token
        self.guilds = {g.id: g for g in guilds or []}
        self.requests: list[Request] = []
        self.messages: list[Posted] = []
        self.callbacks: list[Callback] = []
        self.followups: list[Posted] = []
        self.edits: list[Posted] = []
        self.deleted: list[str] = []  # interaction tokens whose original answer was deleted
        self.syncs: list[tuple[str, list[dict[str, Any]]]] = []  # ("global" | guild id, body)
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.identified: list[dict[str, Any]] = []
        self._current: dict[int, dict[str, Any]] = {}  # message id -> the message as it is now
        self._pressed: dict[int, int] = {}  # a button interaction's id -> its message's id
        self._faults: dict[int, _Injection] = {}
        self._ids = itertools.count(1_000_000_000_000_000_000)
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.rest_down = False
        self.gateway_down = False
        self.gateway_refusals = 0

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API + "/{path:.*}", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What `discord.http.Route.BASE` should be."""
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @contextlib.contextmanager
    def pointed_at(self) -> Iterator[None]:
        """Send discord.py's REST calls and gateway connections here; restore them after."""
        base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.base_url
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = base
            DiscordWebSocket.DEFAULT_GATEWAY = gateway

    # --- what tests do ---

    def fail_channel(
        self, channel_id: int, fault: Fault, times: int | None = 1, retry_after: float = 0.2
    ) -> None:
        """Answer the next `times` messages to this channel (None: all) with `fault`."""
        self._faults[channel_id] = _Injection(fault, times, retry_after)

    def heal(self) -> None:
        """Stop every injected fault."""
        self._faults.clear()

    def logins(self) -> int:
        """How many login requests (`GET /users/@me`) arrived, answered or not."""
        return sum(1 for r in self.requests if r.method == "GET" and r.path == f"{API}/users/@me")

    def open_gateways(self) -> int:
        """Gateway connections open now."""
        return sum(1 for socket in self._sockets if not socket.closed)

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection with this close code."""
        for socket in list(self._sockets):
            await socket.close(code=code)

    async def unplug(self) -> None:
        """Stop listening: new connections are refused (open ones are left alone)."""
        assert self._runner is not None
        for site in list(self._runner.sites):
            await site.stop()

    async def plug_in(self) -> None:
        """Listen again on the same port."""
        assert self._runner is not None
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def posted(self, channel_id: int) -> list[Posted]:
        """The messages this channel received, in order."""
        return [m for m in self.messages if m.channel_id == channel_id]

    def attempts(self, channel_id: int) -> int:
        """How many message requests reached this channel (accepted or not)."""
        path = f"{API}/channels/{channel_id}/messages"
        return sum(1 for r in self.requests if r.method == "POST" and r.path == path)

    def answers(self, interaction: dict[str, Any]) -> list[Callback]:
        """The callbacks for one interaction payload."""
        return [c for c in self.callbacks if c.interaction_id == int(interaction["id"])]

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds (checked after each request and gateway message)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    def interaction(
        self,
        command: str,
        *path: str,
        options: dict[str, str] | None = None,
        channel_id: int,
        guild_id: int | None = None,
        user_id: int = 42,
        permissions: int = MEMBER_PERMISSIONS,
        roles: tuple[str, ...] = (),
        app_permissions: int = APP_PERMISSIONS,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload as Discord sends it: `/command [sub] opt:value ...`.

        `focused` makes it an autocomplete interaction for that option.
        """
        leaf: list[dict[str, Any]] = [
            {
                "type": 3,
                "name": name,
                "value": value,
                **({"focused": True} if name == focused else {}),
            }
            for name, value in (options or {}).items()
        ]
        for name in reversed(path):
            leaf = [{"type": 1, "name": name, "options": leaf}]
        scope = (
            str(guild_id) if guild_id is not None and str(guild_id) in self.commands else "global"
        )
        ids = {c["name"]: c["id"] for c in self.commands.get(scope, [])}
        data: dict[str, Any] = {
            "id": ids.get(command, str(next(self._ids))),
            "name": command,
            "type": 1,
            "options": leaf,
        }
        if scope != "global":
            data["guild_id"] = scope
        interaction_id = next(self._ids)
        user = {**BOT_USER, "id": str(user_id), "username": f"user{user_id}", "bot": False}
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": 4 if focused else 2,
            "token": f"interaction-token-{interaction_id}",
            "version": 1,
            "channel_id": str(channel_id),
            "data": data,
            "app_permissions": str(app_permissions),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10_485_760,
        }
        if guild_id is None:
            payload["channel"] = {"id": str(channel_id), "type": 1, "recipients": [user]}
            payload["user"] = user
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {}
        else:
            guild = self.guilds.get(guild_id, Guild(guild_id))
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["channel"] = {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(guild_id),
                "name": "alerts",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
            }
            payload["member"] = {
                "user": user,
                "roles": [str(guild.roles[name]) for name in roles],
                "permissions": str(permissions),
                "joined_at": _now(),
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        return payload

    def press(
        self,
        message: Posted,
        label: str,
        *,
        guild_id: int | None = None,
        user_id: int = 42,
        permissions: int = MEMBER_PERMISSIONS,
        custom_id: str | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload for a press of the button `label` under a message the
        bot posted (`custom_id` instead of the button's own: tampered data)."""
        shown = self.current(message.id)
        if custom_id is None:
            custom_id = dict(_buttons(shown))[label]
        payload = self.interaction(
            "button", channel_id=message.channel_id, guild_id=guild_id, user_id=user_id,
            permissions=permissions,
        )  # fmt: skip
        payload["type"] = 3
        payload["data"] = {"custom_id": custom_id, "component_type": 2}
        payload["message"] = shown
        self._pressed[int(payload["id"])] = message.id
        return payload

    def current(self, message_id: int) -> dict[str, Any]:
        """A message the bot posted, as it is now (after edits by interaction answers)."""
        return self._current[message_id]

    def buttons(self, message_id: int) -> list[tuple[str, str]]:
        """The (label, custom_id) of the buttons under a message now."""
        return _buttons(self._current[message_id])

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway DISPATCH (e.g. INTERACTION_CREATE) to every connected client."""
        for socket in list(self._sockets):
            await self._send(socket, event, data)

    # --- the gateway ---

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            self.gateway_refusals += 1
            await self._notify()
            return web.Response(status=503, text="upstream connect error")
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.add(socket)
        try:
            await socket.send_json({"op": 10, "d": {"heartbeat_interval": 41_250}})
            async for message in socket:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["op"] == 1:
                    await socket.send_json({"op": 11})
                elif frame["op"] in (2, 6):  # IDENTIFY, RESUME
                    if frame["d"].get("token") != self.token:
                        await socket.close(code=4004, message=b"Authentication failed.")
                        break
                    if frame["op"] == 2:
                        await self._ready(socket, frame["d"])
                    else:
                        await self._send(socket, "RESUMED", {})
                        await self._notify()
        finally:
            self._sockets.discard(socket)
        return socket

    async def _ready(self, socket: web.WebSocketResponse, identify: dict[str, Any]) -> None:
        self.identified.append(identify)
        await self._send(
            socket,
            "READY",
            {
                "v": 10,
                "user": BOT_USER,
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": "fake-session",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(APP_ID), "flags": 0},
            },
        )
        for guild in self.guilds.values():
            await self._send(socket, "GUILD_CREATE", _guild_payload(guild))
        await self._notify()

    async def _send(self, socket: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await socket.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    # --- REST ---

    async def _handle(self, request: web.Request) -> web.Response:
        body, files = await _body(request)
        path = request.path
        self.requests.append(
            Request(request.method, path, dict(request.headers), body, files, time.perf_counter())
        )
        try:
            return await self._route(request, path.removeprefix(API), body, files)
        finally:
            await self._notify()

    async def _route(
        self, request: web.Request, path: str, body: Any, files: list[tuple[str, bytes]]
    ) -> web.Response:
        if self.rest_down:
            return web.Response(status=503, text="upstream connect error")
        parts = path.strip("/").split("/")
        method = request.method
        if parts[0] in ("interactions", "webhooks"):
            return self._webhook(method, parts, body, files)  # authorised by their token
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        if method == "GET" and path == "/users/@me":
            return _json(BOT_USER)
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json(_application())
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "channels"
            and parts[2] == "messages"
        ):
            return self._message(int(parts[1]), body, files)
        if method == "PUT" and parts[:3] == ["applications", str(APP_ID), "commands"]:
            return self._sync("global", body)
        if method == "PUT" and len(parts) == 5 and parts[2] == "guilds" and parts[4] == "commands":
            return self._sync(parts[3], body)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _message(self, channel_id: int, body: Any, files: list[tuple[str, bytes]]) -> web.Response:
        fault = self._take(channel_id)
        if fault is not None:
            return _fault(fault)
        problem = _message_problem(body, files)
        if problem:
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problem}, 400)
        posted = Posted(channel_id, body, files, next(self._ids))
        self.messages.append(posted)
        self._current[posted.id] = _message(posted)
        return _json(_message(posted), headers=_bucket(remaining=4, reset_after=5.0))

    def _take(self, channel_id: int) -> _Injection | None:
        injection = self._faults.get(channel_id)
        if injection is None:
            return None
        if injection.times is not None:
            injection.times -= 1
            if injection.times <= 0:
                del self._faults[channel_id]
        return injection

    def _sync(self, scope: str, body: Any) -> web.Response:
        problem = _commands_problem(body)
        if problem:
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problem}, 400)
        if scope != "global" and int(scope) not in self.guilds:
            return _json({"message": "Missing Access", "code": 50001}, 403)
        self.syncs.append((scope, body))
        known = {c["name"]: c["id"] for c in self.commands.get(scope, [])}
        self.commands[scope] = [
            {
                **command,
                "id": known.get(command["name"], str(next(self._ids))),
                "application_id": str(APP_ID),
                "version": str(next(self._ids)),
                **({"guild_id": scope} if scope != "global" else {}),
            }
            for command in body
        ]
        return _json(self.commands[scope])

    def _webhook(
        self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes]]
    ) -> web.Response:
        if parts[0] == "interactions" and method == "POST" and parts[3:] == ["callback"]:
            interaction_id = int(parts[1])
            if body["type"] == 7:  # UPDATE_MESSAGE: the button's message changes
                problem = self._update(self._pressed.get(interaction_id), body.get("data"), files)
                if problem is not None:
                    return problem
            self.callbacks.append(
                Callback(interaction_id, body["type"], body.get("data") or {}, files)
            )
            answer = {
                "id": str(interaction_id),
                "type": body["type"],
                "response_message_loading": body["type"] == 5,
                "response_message_ephemeral": bool(
                    int((body.get("data") or {}).get("flags") or 0) & EPHEMERAL
                ),
            }
            if body["type"] in (4, 5):
                answer["response_message_id"] = str(next(self._ids))
            return _json({"interaction": answer})
        if parts[0] == "webhooks" and parts[1] == str(APP_ID):
            if method == "POST" and len(parts) == 3:
                posted = Posted(0, body, files, next(self._ids))
                self.followups.append(posted)
                return _json(_message(posted, webhook=True))
            if parts[3:] == ["messages", "@original"]:
                if method == "DELETE":
                    self.deleted.append(parts[2])
                    return web.Response(status=204)
                if method == "PATCH":
                    suffix = parts[2].rsplit("-", 1)[-1]
                    interaction_id = int(suffix) if suffix.isdigit() else 0
                    if interaction_id in self._pressed:  # a button's deferred update
                        problem = self._update(self._pressed[interaction_id], body, files)
                        if problem is not None:
                            return problem
                    posted = Posted(0, body, files, next(self._ids))
                    self.edits.append(posted)
                    return _json(_message(posted, webhook=True))
        return _json({"message": "Unknown Webhook", "code": 10015}, 404)

    def _update(
        self, message_id: int | None, body: Any, files: list[tuple[str, bytes]]
    ) -> web.Response | None:
        """Change a posted message as an interaction's answer says; an error answer, or None."""
        if message_id is None or message_id not in self._current:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        problem = _components_problem(body)
        if problem:
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problem}, 400)
        message = dict(self._current[message_id])
        for key in ("embeds", "components"):
            if key in body:
                message[key] = body[key] or []
        if files:
            message["attachments"] = [
                {"id": str(i + 1), "filename": name, "size": len(data),
                 "url": f"https://cdn.example/{name}", "proxy_url": f"https://cdn.example/{name}"}
                for i, (name, data) in enumerate(files)
            ]  # fmt: skip
        message["edited_timestamp"] = _now()
        self._current[message_id] = message
        return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with the exact Content-Type discord.py parses."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _bucket(remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": "fake-channel-messages",
    }


def _fault(injection: _Injection) -> web.Response:
    fault = injection.fault
    if fault is Fault.RATE_LIMITED:
        wait = injection.retry_after
        headers = {
            **_bucket(remaining=0, reset_after=wait),
            "X-RateLimit-Scope": "user",
            "Retry-After": str(max(1, round(wait))),
            "Via": "1.1 google",
        }
        body = {"message": "You are being rate limited.", "retry_after": wait, "global": False}
        return _json(body, 429, headers)
    if fault is Fault.FORBIDDEN:
        return _json({"message": "Missing Access", "code": 50001}, 403)
    if fault is Fault.NOT_FOUND:
        return _json({"message": "Unknown Channel", "code": 10003}, 404)
    if fault is Fault.SERVER_ERROR:
        return _json({"message": "500: Internal Server Error", "code": 0}, 500)
    return web.Response(status=503, text="upstream connect error", content_type="text/plain")


async def _body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """The JSON body, or a multipart body's payload_json and files."""
    if request.content_type == "application/json":
        return await request.json(), []
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            data = await part.read()
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                files.append((part.filename or "", bytes(data)))
        return body, files
    return None, []


def _message(posted: Posted, webhook: bool = False) -> dict[str, Any]:
    body = posted.payload or {}
    attachments = [
        {
            "id": str(i + 1),
            "filename": name,
            "size": len(data),
            "url": f"https://cdn.example/{name}",
            "proxy_url": f"https://cdn.example/{name}",
        }
        for i, (name, data) in enumerate(posted.files)
    ]
    message = {
        "id": str(posted.id),
        "channel_id": str(posted.channel_id or 1),
        "type": 0,
        "content": body.get("content") or "",
        "author": BOT_USER,
        "attachments": attachments,
        "embeds": body.get("embeds") or [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": _now(),
        "edited_timestamp": None,
        "flags": int(body.get("flags") or 0),
        "components": body.get("components") or [],
    }
    if webhook:
        message["webhook_id"] = str(APP_ID)
    return message


def _message_problem(body: Any, files: list[tuple[str, bytes]]) -> dict[str, Any] | None:
    """What Discord would reject in a message body (empty, or an embed over its limits)."""
    if not isinstance(body, dict):
        return {"_errors": [{"code": "BASE_TYPE_REQUIRED"}]}
    embeds = body.get("embeds") or []
    if not (body.get("content") or embeds or files):
        return {"_errors": [{"code": "50006", "message": "Cannot send an empty message"}]}
    if len(embeds) > 10:
        return {"embeds": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
    total = 0
    for embed in embeds:
        title, description = embed.get("title") or "", embed.get("description") or ""
        footer = (embed.get("footer") or {}).get("text") or ""
        if len(title) > 256 or len(description) > 4096 or len(footer) > 2048:
            return {"embeds": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
        total += len(title) + len(description) + len(footer)
    if total > 6000:
        return {"embeds": {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED"}]}}
    return _components_problem(body)


def _components_problem(body: Any) -> dict[str, Any] | None:
    """What Discord would reject in a message's buttons: up to five action rows of up to five
    buttons, a custom_id of 1 to 100 characters, a label of up to 80."""
    rows = (body or {}).get("components") or []
    if len(rows) > 5:
        return {"components": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
    for row in rows:
        buttons = row.get("components") or []
        if row.get("type") != 1 or not 1 <= len(buttons) <= 5:
            return {"components": {"_errors": [{"code": "COMPONENT_LAYOUT_WIDTH_EXCEEDED"}]}}
        for button in buttons:
            custom_id, label = button.get("custom_id") or "", button.get("label") or ""
            if button.get("type") != 2 or not 1 <= len(custom_id) <= 100 or len(label) > 80:
                return {"components": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH"}]}}
    return None


def _buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    """A message's buttons as (label, custom_id), row by row."""
    return [
        (button.get("label") or "", button.get("custom_id") or "")
        for row in message.get("components") or []
        for button in row.get("components") or []
    ]


def _commands_problem(body: Any) -> dict[str, Any] | None:
    """What Discord would reject in a bulk command overwrite."""
    if not isinstance(body, list) or len(body) > 100:
        return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}
    for index, command in enumerate(body):
        problem = _option_problem(command, top=True)
        if problem:
            return {str(index): problem}
    return None


def _option_problem(item: dict[str, Any], top: bool = False) -> dict[str, Any] | None:
    name, description = item.get("name", ""), item.get("description", "")
    if not _NAME.fullmatch(name) or name != name.lower():
        return {"name": {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME"}]}}
    if not 1 <= len(description) <= 100:
        return {"description": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH"}]}}
    options = item.get("options") or []
    if len(options) > 25:
        return {"options": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
    required = [bool(o.get("required")) for o in options if o.get("type") not in (1, 2)]
    if required != sorted(required, reverse=True):
        return {"options": {"_errors": [{"code": "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"}]}}
    for option in options:
        problem = _option_problem(option)
        if problem:
            return {"options": problem}
    return None


def _application() -> dict[str, Any]:
    owner = {**BOT_USER, "id": str(OWNER_ID), "username": "owner", "bot": False}
    return {
        "id": str(APP_ID),
        "name": "Tickerbell",
        "description": "",
        "icon": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": owner,
        "team": None,
        "verify_key": "0" * 64,
        "flags": 0,
        "bot": BOT_USER,
        "summary": "",
        "interactions_endpoint_url": None,
    }


def _guild_payload(guild: Guild) -> dict[str, Any]:
    def role(name: str, role_id: int, position: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": "0",
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    roles = [role("@everyone", guild.id, 0)]
    roles += [role(name, rid, i + 1) for i, (name, rid) in enumerate(guild.roles.items())]
    return {
        "id": str(guild.id),
        "name": f"Server {guild.id}",
        "unavailable": False,
        "owner_id": str(OWNER_ID),
        "roles": roles,
        "channels": [],
        "threads": [],
        "members": [],
        "voice_states": [],
        "presences": [],
        "emojis": [],
        "stickers": [],
        "features": [],
        "member_count": 2,
        "large": False,
        "joined_at": _now(),
        "premium_tier": 0,
        "preferred_locale": "en-US",
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def as_typed(spelled: str) -> tuple[list[str], dict[str, str]]:
    """What a person types in Discord's box (`/snooze alert: 3 duration: 1h`, an optional
    option in brackets) as Discord reads it: the command's name and subcommand, then its options
    with their values in order (the name words go to `interaction`, the options as `options`).
    """
    head, *rest = re.split(r" \[?(\w+): ", spelled)
    values = [value.removesuffix("]") for value in rest[1::2]]
    return head.removeprefix("/").split(), dict(zip(rest[0::2], values, strict=True))

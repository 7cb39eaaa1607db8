"""A throwaway schema on the PostgreSQL server the tests are pointed at, per test.

`TICKERBELL_TEST_DATABASE_URL` names the server (a database the user may create schemas in;
CI sets it to the machine's server); unset or unreachable, the PostgreSQL tests skip and say
how to enable them. Each test gets a new schema, reached through the URL's `options`
(search_path), and drops it after: parallel workers and runs never meet.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg

from storage.postgres import LEASE_CLASS, LEASE_KEY
from support.local_server import hold_a_port

SETTING = "TICKERBELL_TEST_DATABASE_URL"
HOW = (
    f"set {SETTING}=postgresql://USER@HOST:PORT/DATABASE (a server where USER may create "
    "schemas, e.g. postgresql://postgres@127.0.0.1:5432/test) to run them"
)


def lease_sessions(url: str, role: str) -> list[int]:
    """The server pids of the sessions holding a role's lease in this schema (none or one)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            f" AND objid = {LEASE_KEY}::oid AND granted",
            (LEASE_CLASS, role),
        ).fetchall()
    return [int(row[0]) for row in rows]


def end_lease_session(url: str, name: str) -> None:
    """End the session holding a lease (as the server does to a connection it drops), leaving
    the process that held it running."""
    [pid] = lease_sessions(url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        ended = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    assert ended == (True,)


def server_url() -> tuple[str | None, str]:
    """The test server's URL, or None and why the PostgreSQL tests skip."""
    url = os.environ.get(SETTING, "").strip()
    if not url:
        return None, f"PostgreSQL tests: {SETTING} is not set; {HOW}"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"PostgreSQL tests: cannot reach {SETTING} ({reason}); {HOW}"
    return url, ""


def with_schema(url: str, schema: str) -> str:
    """The URL with its search_path set to `schema` (libpq's `options` parameter)."""
    parts = urlsplit(url)
    query = "&".join(
        q
        for q in (parts.query, urlencode({"options": f"-c search_path={schema}"}, quote_via=quote))
        if q
    )
    return urlunsplit(parts._replace(query=query))


@contextmanager
def throwaway_schema(url: str) -> Iterator[str]:
    """A new empty schema on the server, dropped with everything in it on exit; yields a URL
    that works in it."""
    schema = f"tickerbell_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


class Relay:
    """A TCP relay on a loopback port to the test server: the network between the bot and
    PostgreSQL, which a test can cut (every connection dropped, new ones refused) and restore."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._url = parts
        self._holder = hold_a_port()
        self.port: int = self._holder.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The URL, through the relay."""
        user = f"{self._url.username}@" if self._url.username else ""
        return urlunsplit(self._url._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    async def __aenter__(self) -> Relay:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()
        self._holder.close()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._pipes |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}

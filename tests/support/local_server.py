"""Serving a fake's aiohttp application on a loopback port that no other process can take.

The tests run in several processes at once (pytest-xdist), and every process on the machine
shares the ports. A port that is closed and reopened later, or found free and used later, could
be taken in between by another process: a fake that stops listening (to refuse connections) and
listens again, or a test that wants a port nobody listens on. So each port here is held by a
bound socket that never listens: the OS gives a held port to nobody who asks for a free one,
while we may still listen on it ourselves (both sockets allow address reuse).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web


def hold_a_port() -> socket.socket:
    """A socket bound to a loopback port the OS picked, not listening: connections to the port
    are refused until someone listens on it, and no free-port request is given it."""
    holder = socket.socket()
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
    except OSError:
        holder.close()
        raise
    return holder


@contextmanager
def held_port() -> Iterator[int]:
    """A loopback port nobody listens on and no other process is given, for the block; an aiohttp
    site (or our own metrics server) may listen on it meanwhile."""
    with hold_a_port() as holder:
        yield holder.getsockname()[1]


async def serve_locally(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1 at a port held until the runner is cleaned up; return the runner
    and the port (a fake may stop listening on it and listen again: it stays ours)."""
    holder = hold_a_port()

    async def release(_: web.Application) -> None:
        holder.close()

    app.on_cleanup.append(release)
    runner = web.AppRunner(app, **runner_options)
    port = holder.getsockname()[1]
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except BaseException:
        holder.close()
        raise
    return runner, port

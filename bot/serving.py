"""HTTP endpoints of our own (metrics, TradingView posts, Telegram's webhook), served alike."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port; the caller awaits `runner.cleanup()` on shutdown. Raises
    OSError when it cannot listen (the port is taken). No access log: a path may hold a
    secret (a chat's TradingView URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner

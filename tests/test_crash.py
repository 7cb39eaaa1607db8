"""Kill -9 and SIGTERM against the real service in a subprocess, delivering over real HTTP.

The price series is synthetic (silver-like numbers, made up): it crosses 50 once, which fires
40 `once` rules in one tick; the receiver answers each alert slowly, so the kill lands in the
middle of the burst.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from support.local_server import serve_locally
from support.waiting import until

from alerts import rules
from storage.db import Store
from tickerbell.app import CONSOLE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RULES = [rules.format(rules.parse(f"XAG above {50 + i / 100:.2f} once")) for i in range(1, 41)]


class SlowReceiver:
    """A webhook-like endpoint that takes `delay` seconds per alert and records each one."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.delay)
        self.received.append(body["rule"])
        return web.json_response({"ok": True})


async def start_receiver(receiver: SlowReceiver) -> tuple[web.AppRunner, str]:
    application = web.Application()
    application.router.add_post("/alert", receiver.handle)
    runner, port = await serve_locally(application)
    return runner, f"http://127.0.0.1:{port}/alert"


def synthetic_csv(path: Path, days: int = 6) -> Path:
    rows = ["date,open,high,low,close"]
    for day in range(1, days + 1):
        price = 49.0 if day < 3 else 51.0
        rows.append(f"2026-01-{day:02d},{price},{price},{price},{price}")
    path.write_text("\n".join(rows) + "\n")
    return path


async def add_rules(db: Path) -> None:
    async with Store.open(db) as store:
        console = await store.chat(*CONSOLE)
        for text in RULES:
            await store.add_rule(console.id, text, "test", limit=100)


async def spawn(db: Path, url: str, csv: Path, speed: float) -> asyncio.subprocess.Process:
    script = ROOT / "tests" / "support" / "run_service.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(db), url, str(csv), str(speed),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip


async def test_kill_9_mid_delivery_then_restart(tmp_path: Path) -> None:
    db, csv = tmp_path / "crash.db", synthetic_csv(tmp_path / "xag.csv")
    await add_rules(db)
    receiver = SlowReceiver(delay=0.1)
    runner, url = await start_receiver(receiver)
    try:
        first = await spawn(db, url, csv, speed=20)
        await until(lambda: len(receiver.received) >= 8, timeout=60)
        first.kill()  # SIGKILL: no clean-up of any kind
        await first.wait()
        delivered_before = len(receiver.received)
        assert delivered_before < len(RULES)  # the kill really landed mid-burst
        second = await spawn(db, url, csv, speed=20)
        _, err = await asyncio.wait_for(second.communicate(), timeout=90)
        assert second.returncode == 0, err.decode()[-2000:]
    finally:
        await runner.cleanup()
    counts = Counter(receiver.received)
    assert set(counts) == set(RULES)  # every decided alert arrived
    assert sum(counts.values()) - len(RULES) <= 1  # at most the one in flight came twice
    async with Store.open(db) as store:
        assert (await store.outbox_counts()) == {"delivered": len(RULES)}


async def test_sigterm_stops_quickly_and_keeps_pending_rows(tmp_path: Path) -> None:
    db, csv = tmp_path / "term.db", synthetic_csv(tmp_path / "xag.csv")
    await add_rules(db)
    receiver = SlowReceiver(delay=0.3)
    runner, url = await start_receiver(receiver)
    try:
        proc = await spawn(db, url, csv, speed=20)
        await until(lambda: len(receiver.received) >= 2, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=8)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "shutting down" in err.decode()
    finally:
        await runner.cleanup()
    async with Store.open(db) as store:
        counts = await store.outbox_counts()
    assert counts.get("pending", 0) > 0
    assert counts["delivered"] + counts["pending"] == len(RULES)


async def test_cli_run_over_replay_prints_alerts_on_the_console(tmp_path: Path) -> None:
    csv = synthetic_csv(tmp_path / "xag.csv")
    env = {**os.environ, "TICKERBELL_DB": str(tmp_path / "cli.db")}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    env.pop("DISCORD_BOT_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickerbell.cli", "run", "--feed", "replay",
        "--data", f"XAG={csv}", "--rule", "XAG above 50", "--speed", "50",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert lines == ["[2026-01-03 00:00:00 UTC] ALERT XAG rose above 50 (now 51)  (XAG above 50)"]
    assert "watching 1 rules over XAG" in err.decode()

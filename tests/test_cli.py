"""The console chat through the real CLI: `tickerbell cmd` and the `alert` wrappers."""

from __future__ import annotations

import asyncio
import os
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_telegram import FakeTelegram

from storage.db import Store
from storage.postgres import PostgresStore
from tickerbell.cli import main

TOKEN = "123456789:AAF-fake_SECRET_cli_token"


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unused_port: int) -> None:
    monkeypatch.setenv("TICKERBELL_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("TICKERBELL_HOME", str(tmp_path))  # no stray .env is read
    # The metals' spot source on a port nobody listens on: the console's commands ask it for
    # prices, and a test never reaches the internet (it used to reach Swissquote and, through
    # it, Yahoo: that changed yfinance's process-wide cookie handling for later tests).
    url = f"http://127.0.0.1:{unused_port}/instrument"
    monkeypatch.setenv("TICKERBELL_SWISSQUOTE_URL", url)
    monkeypatch.chdir(tmp_path)


def test_console_chat_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alert", "add", "silver", "above", "50", "cooldown", "120m"]) == 0
    assert capsys.readouterr().out == "Alert #1 set: XAG above 50 cooldown 2h\n"
    assert main(["cmd", "/alert", "XAU/XAG below 80"]) == 0
    assert main(["alerts"]) == 0
    out = capsys.readouterr().out
    assert "#1  XAG above 50 cooldown 2h  new" in out and "#2  XAU/XAG below 80" in out
    assert main(["alert", "remove", "1"]) == 0
    assert capsys.readouterr().out == "Removed alert #1.\n"


def test_console_chat_commands_on_postgresql(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICKERBELL_DATABASE_URL", postgres_url)
    assert main(["alert", "add", "XAG", "above", "50"]) == 0
    assert main(["alerts"]) == 0
    assert "#1  XAG above 50  new" in capsys.readouterr().out
    assert not Path("cli.db").exists()  # nothing went to SQLite
    assert main(["backup", "copy.db"]) == 2
    assert "pg_dump" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["alerts"], ["migrate-db", "--from", "sqlite:cli.db"]])
def test_a_database_server_that_does_not_answer_is_one_line(
    command: list[str], tmp_path: Path, unused_port: int
) -> None:
    """In the real process: psycopg_pool's own warning for each try to connect (four, with
    libpq's two-line reason) used to come before the line."""
    url = f"postgresql://bot:pw-secret@127.0.0.1:{unused_port}/tb"
    args = [*command, "--to", url] if command[0] == "migrate-db" else command
    asyncio.run(_create(tmp_path / "cli.db"))
    env = {**os.environ, "TICKERBELL_DATABASE_URL": url}
    tickerbell = Path(sys.executable).with_name("tickerbell")
    done = subprocess.run(
        [tickerbell, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line == (
        f"tickerbell: cannot connect to postgresql://bot:***@127.0.0.1:{unused_port}/tb:"
        " Connection refused"
    )
    assert "pw-secret" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("make", "told"),
    [
        (lambda at: at.write_text("notes, not a database\n"), "cannot open {db}: file is not a"),
        (lambda at: at.mkdir(), "cannot open {db}: Is a directory"),
        (
            lambda at: at.parent.joinpath("file").write_text(""),
            "cannot create the folder {folder} for the database {db}: a file of that name",
        ),
    ],
    ids=["some other file", "a folder", "a file where its folder should be"],
)
def test_a_database_path_that_cannot_be_used_is_one_line(
    make: Callable[[Path], object],
    told: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "x.db"
    make(db)
    if "folder" in told:
        db = tmp_path / "file" / "x.db"
    monkeypatch.setenv("TICKERBELL_DB", str(db))
    assert main(["alerts"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert told.format(db=db, folder=db.parent) in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["alert", "add", "BTX", "above", "5"], "unknown symbol 'BTX'"),
        (["alert", "remove", "x"], "usage: tickerbell alert remove ID (see tickerbell alerts)"),
        (["cmd", "/nope"], "unknown command '/nope'"),
    ],
)
def test_console_errors_exit_2_and_write_nothing(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
    assert main(["alerts"]) == 0
    assert "No alerts yet" in capsys.readouterr().out


def test_remove_all_names_the_cli_form_and_the_cli_accepts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["alert", "add", "XAG", "above", "50"])
    capsys.readouterr()
    assert main(["alert", "remove", "all"]) == 0
    assert "Send tickerbell alert remove all confirm" in capsys.readouterr().out
    assert main(["alert", "remove", "all", "confirm"]) == 0
    assert capsys.readouterr().out == "Removed 1 alert.\n"


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    tickerbell = Path(sys.executable).with_name("tickerbell")
    shell = f"'{tickerbell}' cmd /help | head -c 1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stderr == "" and done.returncode == 0


def test_a_price_source_down_is_told_in_the_reply_alone(tmp_path: Path) -> None:
    """Offline (the spot source's port refuses), `/status XAG` answers in one short reply that
    says so; no log lines from the feeds or yfinance beside it, no traceback."""
    tickerbell = Path(sys.executable).with_name("tickerbell")
    done = subprocess.run(
        [str(tickerbell), "cmd", "/status", "XAG"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0 and done.stderr == ""
    first, note = done.stdout.splitlines()[1:3]
    assert first == "no price for XAG yet."
    assert note.startswith("swissquote is unreachable since ")
    assert note.endswith(" UTC — check the network or proxy; retrying.")


def synthetic_silver(path: Path) -> Path:
    """Made-up daily bars climbing from 45 to 54.5 (synthetic, not market data)."""
    lines = ["date,open,high,low,close"]
    for i in range(20):
        price = 45 + i / 2
        lines.append(f"2025-09-{i + 1:02d},{price},{price + 0.2},{price - 0.2},{price + 0.1}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
async def test_replay_run_never_touches_the_real_database_or_a_chat(tmp_path: Path) -> None:
    real = tmp_path / "cli.db"
    async with Store.open(real) as store:
        chat = await store.chat("telegram", "4242")
        await store.add_rule(chat.id, "XAG above 50", "u1", limit=50)
        console = await store.chat("console", "console")
        await store.add_rule(console.id, "XAG above 48", "console", limit=50)
        await store.add_rule(console.id, "BTC below 85000", "console", limit=50)
    before = _dump(real)
    csv = synthetic_silver(tmp_path / "silver.csv")
    async with FakeTelegram(TOKEN, poll_cap=0.2) as telegram:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TICKERBELL_DB": str(real)}
        env["TELEGRAM_API_BASE_URL"] = telegram.base_url
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("tickerbell")),
            *("run", "--feed", "replay", "--data", f"XAG={csv}", "--speed", "200"),
            "--rule",
            "XAG above 52",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert telegram.calls == []  # no chat platform was even started
    lines = out.decode().splitlines()
    assert {line.split("(")[-1] for line in lines} == {"XAG above 48)", "XAG above 52)"}
    assert "skipping console rule" in err.decode() and "BTC" in err.decode()
    assert _dump(real) == before


@pytest.mark.slow
async def test_replay_run_reads_console_rules_from_postgresql_and_never_writes_it(
    tmp_path: Path, postgres_url: str
) -> None:
    async with PostgresStore.open(postgres_url) as store:
        console = await store.chat("console", "console")
        await store.add_rule(console.id, "XAG above 48", "console", limit=50)
        before = (await store.rules(), await store.rules_revision(), await store.outbox_counts())
    csv = synthetic_silver(tmp_path / "silver.csv")
    env = {**os.environ, "TICKERBELL_DATABASE_URL": postgres_url}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("tickerbell")),
        *("run", "--feed", "replay", "--data", f"XAG={csv}", "--speed", "200"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert {line.split("(")[-1] for line in out.decode().splitlines()} == {"XAG above 48)"}
    async with PostgresStore.open(postgres_url) as store:
        after = (await store.rules(), await store.rules_revision(), await store.outbox_counts())
    assert after == before


async def _create(path: Path) -> None:
    async with Store.open(path):
        pass


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("speed", ["0", "-1", "inf", "fast"])
def test_a_replay_speed_that_would_never_end_is_refused(
    speed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--speed -1` used to make the scheduler spin and eat memory (18 GB in 10 s); `0`
    polled every 10 s and never moved."""
    csv = synthetic_silver(tmp_path / "silver.csv")
    with pytest.raises(SystemExit) as exit:
        main(["run", "--feed", "replay", "--data", f"XAG={csv}", "--speed", speed])
    assert exit.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"argument --speed: expected a number more than 0, e.g. 50, not '{speed}'")


def test_a_replay_speed_past_what_the_scheduler_keeps_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--speed 1000000` never finished (the scheduler thrashed on a poll every 0.25 us), and
    100,000 ended in an APScheduler traceback."""
    csv = synthetic_silver(tmp_path / "silver.csv")
    with pytest.raises(SystemExit) as exit:
        main(["run", "--feed", "replay", "--data", f"XAG={csv}", "--speed", "100000"])
    assert exit.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(
        "argument --speed: expected at most 1000 bars a second, not '100000'"
        " (for every bar at once: tickerbell replay)"
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tickerbell import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"tickerbell {__version__}\n"


def test_the_replay_jump_default_is_the_live_one() -> None:
    from alerts.sanity import Limits
    from tickerbell.cli import REPLAY_MAX_JUMP_PCT

    assert Limits().max_jump_pct == REPLAY_MAX_JUMP_PCT


HEAVY = ("ccxt", "apscheduler", "matplotlib", "pydantic", "telegram", "discord", "yfinance")
HEAVY += ("asyncio", "aiohttp", "aiosqlite")


def _imported_by(argv: list[str], cwd: Path) -> set[str]:
    """The heavy libraries a command line imports (what makes a command slow to start)."""
    script = (
        "import sys\n"
        "from tickerbell.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=True
    )
    return set(done.stderr.split()) & set(HEAVY)


def test_help_and_version_import_no_heavy_library(tmp_path: Path) -> None:
    assert _imported_by(["--help"], tmp_path) == set()
    assert _imported_by(["--version"], tmp_path) == set()
    assert _imported_by(["backup", "--help"], tmp_path) == set()


def test_console_help_imports_no_market_library(tmp_path: Path) -> None:
    """`cmd /help` needs the settings and the database, not ccxt, APScheduler, matplotlib or a
    chat library."""
    needed = {"pydantic", "asyncio", "aiosqlite"}
    assert _imported_by(["cmd", "/help"], tmp_path) <= needed


def test_backup_command_copies_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["alert", "add", "XAG", "above", "50"]) == 0
    (tmp_path / "backups").mkdir()
    assert main(["backup", "backups/monday.db"]) == 0
    assert f"to {tmp_path / 'backups' / 'monday.db'}" in capsys.readouterr().out
    assert main(["backup", "backups/monday.db"]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["backup", "backups"]) == 0  # a folder: a dated file in it
    assert len(list((tmp_path / "backups").glob("tickerbell-*.db"))) == 1
    monkeypatch.setenv("TICKERBELL_DB", str(tmp_path / "backups" / "monday.db"))
    capsys.readouterr()
    assert main(["alerts"]) == 0
    assert "#1  XAG above 50" in capsys.readouterr().out


def test_backup_without_a_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", "copy.db"]) == 2
    assert capsys.readouterr().err == f"tickerbell: no database at {tmp_path / 'cli.db'}\n"


def tickerbell(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `tickerbell` process, in this test's home and database."""
    exe = Path(sys.executable).with_name("tickerbell")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)


def told(text: str, after: str = "e.g. ") -> list[str]:
    """The command a reply tells to type (after `e.g. `, to the end of its sentence), split as
    the shell would."""
    return shlex.split(text.rpartition(after)[2].strip().removesuffix("."))


def test_replies_name_the_cli_forms_and_each_runs_as_told() -> None:
    """What a console reply tells people to type is a shell command: run as given, it works."""
    empty = tickerbell("alerts")
    assert empty.stdout == 'No alerts yet. Add one, e.g. tickerbell alert add "XAG above 50"\n'
    add = told(empty.stdout)
    assert add == ["tickerbell", "alert", "add", "XAG above 50"]
    assert tickerbell(*add[1:]).stdout == "Alert #1 set: XAG above 50\n"

    bad = tickerbell("cmd", "/mute 2x")
    assert bad.returncode == 2
    assert bad.stderr.endswith('e.g. tickerbell cmd "/mute 2h"\n')
    assert tickerbell(*told(bad.stderr)[1:]).stdout.startswith("Muted until ")

    usage = tickerbell("cmd", "/snooze", "1")
    assert usage.stderr == (
        'usage: tickerbell cmd "/snooze ID DURATION|forever|off" (see tickerbell alerts), '
        'e.g. tickerbell cmd "/snooze 3 1h"\n'
    )
    forever = tickerbell("cmd", "/snooze 1 forever")
    assert forever.stdout == 'Alert #1 is muted until tickerbell cmd "/snooze 1 off".\n'
    assert tickerbell(*told(forever.stdout, "until ")[1:]).stdout == (
        "Alert #1 is on again; it waits for a fresh crossing.\n"
    )

    unknown = tickerbell("cmd", "/stauts BTC")
    assert unknown.stderr == (
        "unknown command '/stauts' — did you mean tickerbell cmd /status? Try tickerbell cmd "
        "/help.\n"
    )
    helped = tickerbell("cmd", "/help").stdout
    assert 'tickerbell alert add "RULE" — add an alert' in helped
    assert [line for line in helped.splitlines() if line.startswith("/")] == []

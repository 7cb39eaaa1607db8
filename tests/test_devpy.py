"""dev.py: what each command installs, and `run` stopping cleanly on Ctrl-C and SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dev = load_dev()


def pins(lock: Path) -> dict[str, str]:
    """name -> version pinned in a pip-compile lock file."""
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", lock.read_text(), re.MULTILINE)
    return {_norm(name): version for name, version in found}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in requirements}


def test_run_installs_the_bot_only_and_test_adds_the_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, tools = pins(dev.LOCKS["run"]), pins(dev.LOCKS["test"])
    assert _names(project["dependencies"]) <= set(runtime)
    assert not _names(project["optional-dependencies"]["dev"]) & set(runtime)
    assert _names(project["optional-dependencies"]["dev"]) <= set(tools)
    assert {name: tools[name] for name in runtime} == runtime  # the same versions in both
    for kind in ("run", "test"):
        [_, dependencies, project_itself] = dev.install_commands(kind)
        assert dependencies[-3:] == ["--require-hashes", "-r", str(dev.LOCKS[kind])]
        assert project_itself[-3:] == ["--no-deps", "-e", str(ROOT)]


def test_every_pin_carries_a_hash() -> None:
    for lock in dev.LOCKS.values():
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n\n")[-1])
        pinned = [block for block in blocks if "==" in block.split("\n")[0]]
        assert pinned and all("--hash=sha256:" in block for block in pinned)


def test_a_test_install_serves_run_but_not_the_reverse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev, "STAMP", tmp_path / ".installed")
    assert not dev.up_to_date("run") and not dev.up_to_date("test")
    dev.STAMP.write_text(dev.digest("run"))
    assert dev.up_to_date("run") and not dev.up_to_date("test")
    dev.STAMP.write_text(dev.digest("test"))
    assert dev.up_to_date("run") and dev.up_to_date("test")
    dev.STAMP.write_text("test:" + "0" * 64)  # a lock or pyproject.toml changed since
    assert not dev.up_to_date("run")


def synthetic_silver(path: Path) -> Path:
    """Made-up daily bars (not market data), replayed slowly enough to outlast the test."""
    lines = ["date,open,high,low,close"]
    lines += [f"2025-09-{i + 1:02d},{45 + i},{45.5 + i},{44.5 + i},{45 + i}" for i in range(20)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
@pytest.mark.parametrize(
    "when",
    [
        "watching",  # at once: the service has just started its jobs
        "XAG 45 from replay",  # later: the first good price has been logged
    ],
)
@pytest.mark.slow
def test_run_stops_cleanly_on_a_signal_and_leaves_no_process(
    tmp_path: Path, how: str, when: str
) -> None:
    if not dev.up_to_date("run"):
        pytest.skip(".venv is not installed from the current lock files: python3 dev.py test")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DISCORD_"))}
    env.update(TICKERBELL_HOME=str(tmp_path), TICKERBELL_DB=str(tmp_path / "bot.db"))
    (tmp_path / ".env").write_text("TICKERBELL_LOG_LEVEL=INFO\n")
    csv = synthetic_silver(tmp_path / "silver.csv")
    argv = ["run", "--feed", "replay", "--data", f"XAG={csv}", "--speed", "0.05"]
    argv += ["--rule", "XAG above 60"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "run", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    seen = []
    try:
        while not any(when in line for line in seen):
            seen.append(lines.get(timeout=120))  # a bound for a stuck start, not a timing
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        else:
            process.send_signal(signal.SIGTERM)  # what systemd or docker stop do
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    log = "".join(seen)
    assert code == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert "shutting down" in log
    assert f"settings from {tmp_path / '.env'}" in log  # the start-up block, absolute paths
    with pytest.raises(ProcessLookupError):  # nothing of the group is left running
        os.killpg(process.pid, 0)

"""Set-up and run commands that work on a machine with only Python 3.11+ and pip.

    python3 dev.py run    the bot (creates .venv and installs on first use)
    python3 dev.py test   ruff, mypy and the test suite (installs the test tools too), the
                          suite spread over one process per core (`-n 0`: in one process)
    python3 dev.py lock   re-pin requirements.lock and requirements-dev.lock after a change to
                          the dependencies in pyproject.toml

Extra arguments are passed through: `python3 dev.py run --help`, `python3 dev.py test -k replay`.
Installs come from the lock files (exact versions, checked against their hashes), so every
machine runs what CI tested; `run` installs the bot's dependencies only, `test` adds the tools.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"  # which lock the venv was installed from, and its digest
LOCKS = {"run": ROOT / "requirements.lock", "test": ROOT / "requirements-dev.lock"}


def digest(kind: str) -> str:
    """What an install of `kind` depends on: its lock file and pyproject.toml (the entry points)."""
    data = LOCKS[kind].read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    return f"{kind}:{hashlib.sha256(data).hexdigest()}"


def up_to_date(kind: str) -> bool:
    """Whether .venv holds what `kind` needs: the test install serves `run` as well."""
    have = STAMP.read_text() if STAMP.exists() else ""
    return have in {digest(k) for k in (("run", "test") if kind == "run" else ("test",))}


def install_commands(kind: str) -> list[list[str]]:
    """The pip commands that install `kind` into .venv: the pinned, hashed dependencies, then
    the project itself (editable, without dependencies, so nothing unpinned comes in)."""
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    return [
        [*pip, "--quiet", "--upgrade", "pip"],
        [*pip, "--require-hashes", "-r", str(LOCKS[kind])],
        [*pip, "--quiet", "--no-deps", "-e", str(ROOT)],
    ]


def ensure_venv(kind: str) -> None:
    """Create .venv and install from the lock file of `kind` unless it is already there."""
    if up_to_date(kind):
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    what = "the bot" if kind == "run" else "the bot and the test tools"
    print(
        f"installing {what} into .venv from {LOCKS[kind].name}; the first time takes a few "
        "minutes (60 to 75 packages) ...",
        flush=True,
    )
    STAMP.unlink(missing_ok=True)
    for command in install_commands(kind):
        subprocess.run(command, check=True, cwd=ROOT)
    STAMP.write_text(digest(kind))
    print("installed.", flush=True)


def run(*cmd: str) -> int:
    return subprocess.run(cmd, cwd=ROOT).returncode


def replace_with(*cmd: str) -> int:
    """Become `cmd` (same process: Ctrl-C and SIGTERM reach it, its exit code is ours, nothing
    is left behind); where exec is not how processes work (Windows), wait for it instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "nt":
        os.execv(cmd[0], cmd)
    child = subprocess.Popen(cmd)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the child got the Ctrl-C too: let it finish shutting down
            continue


def pytest_arguments(given: list[str], parallel: bool) -> list[str]:
    """The suite's arguments: the given ones, over one worker process per core when pytest-xdist
    is there (`parallel`) and the caller did not choose how to run (`-n 0`: in one process).
    Idle workers take queued tests from busy ones: the slow tests then finish together."""
    chosen = ("-n", "--numprocesses", "--dist", "--tx", "--maxprocesses")
    if not parallel or any(arg.startswith(chosen) or arg.endswith("no:xdist") for arg in given):
        return given
    return ["-n", "auto", "--dist", "worksteal", *given]


def has_xdist() -> bool:
    """Whether .venv has pytest-xdist, which runs the tests in several processes."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('xdist') is None)"
    return subprocess.run([str(BIN / "python"), "-c", probe], cwd=ROOT).returncode == 0


def lock() -> int:
    """Re-pin both lock files with pip-tools, installed in a throwaway venv."""
    with tempfile.TemporaryDirectory(prefix="tickerbell-lock-") as scratch:
        tools = Path(scratch)
        venv.create(tools, with_pip=True)
        python = str(tools / ("Scripts" if os.name == "nt" else "bin") / "python")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "pip-tools"], check=True)
        compile_ = [python, "-m", "piptools", "compile", "--quiet", "--generate-hashes"]
        compile_ += ["--strip-extras", "--no-emit-index-url", "--no-emit-find-links"]
        # The header's command: an environment variable, as pip-tools 7.6 has no option for it.
        env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 dev.py lock"}
        for kind, extras in (("run", []), ("test", ["--extra", "dev"])):
            out = LOCKS[kind].name
            print(f"pinning {out} ...", flush=True)
            command = [*compile_, *extras, "--output-file", out, "pyproject.toml"]
            subprocess.run(command, check=True, cwd=ROOT, env=env)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "lock"):
        print(__doc__)
        return 2
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs on any python3)
        print(f"Tickerbell needs Python 3.11 or newer; this is {sys.version.split()[0]}")
        return 2
    command, rest = argv[0], argv[1:]
    if command == "lock":
        return lock()
    ensure_venv(command)
    if command == "run":
        os.chdir(ROOT)  # as before: a .env or tickerbell.db of the old layout is found here
        return replace_with(str(BIN / "tickerbell"), *(rest or ["run"]))
    for check in ([str(BIN / "ruff"), "check", "."], [str(BIN / "mypy")]):
        if run(*check) != 0:
            return 1
    os.chdir(ROOT)
    return replace_with(str(BIN / "pytest"), *pytest_arguments(rest, has_xdist()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

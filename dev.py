"""Set-up and run commands that work on a machine with only Python 3.11+ and pip.

    python3 dev.py run    the bot (creates .venv and installs on first use)
    python3 dev.py test   ruff, mypy and the test suite

Extra arguments are passed through: `python3 dev.py run --help`, `python3 dev.py test -k replay`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    """Create .venv and (re)install the project whenever pyproject.toml changed."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing tickerbell and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", ".[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def run(*cmd: str) -> int:
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run(str(BIN / "tickerbell"), *(rest or ["run"]))
    for check in ([str(BIN / "ruff"), "check", "."], [str(BIN / "mypy")]):
        if run(*check) != 0:
            return 1
    return run(str(BIN / "pytest"), *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

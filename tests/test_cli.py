"""The console chat through the real CLI: `tickerbell cmd` and the `alert` wrappers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickerbell.cli import main


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKERBELL_DB", str(tmp_path / "cli.db"))
    monkeypatch.chdir(tmp_path)  # no stray .env is read


def test_console_chat_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alert", "add", "silver", "above", "50", "cooldown", "120m"]) == 0
    assert capsys.readouterr().out == "Alert #1 set: XAG above 50 cooldown 2h\n"
    assert main(["cmd", "/alert", "XAU/XAG below 80"]) == 0
    assert main(["alerts"]) == 0
    out = capsys.readouterr().out
    assert "#1  XAG above 50 cooldown 2h  new" in out and "#2  XAU/XAG below 80" in out
    assert main(["alert", "remove", "1"]) == 0
    assert capsys.readouterr().out == "Removed alert #1.\n"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["alert", "add", "BTX", "above", "5"], "unknown symbol 'BTX'"),
        (["alert", "remove", "x"], "usage: /remove ID"),
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

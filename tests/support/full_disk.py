"""A real full disk for tests: a small tmpfs mounted under the test's folder, filled on demand.

Mounting needs root (CI here runs as root); elsewhere the tests that use it skip and say so.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SIZE = "4m"


class SmallDisk:
    """A mounted tmpfs at `path`; `fill()` takes every free byte, `free()` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        with open(self._filler, "ab", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError:  # ENOSPC: the disk is full
                pass

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@contextmanager
def small_disk(where: Path) -> Iterator[SmallDisk]:
    """Mount a small tmpfs at `where` for the block (skip the test where that is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("a full-disk test needs root to mount a small tmpfs (run the tests as root)")
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        os.sync()

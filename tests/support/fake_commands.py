"""What the tests of the mocked schedulers share: running a fake command as the spawner would, and
waiting for a condition the fake's supervisor brings about."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def run(*argv: str, input: str | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One fake command (found on the fixture's PATH), its output as text, at most 30 s."""
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30,
                          cwd=cwd, env=env)


def wait_until(predicate: Callable[[], T], timeout: float = 10.0) -> T:
    """``predicate()``'s first true value, asked every 50 ms; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


__all__ = ["run", "wait_until"]

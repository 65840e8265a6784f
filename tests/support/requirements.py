"""Skip or fail a test whose real dependency (Slurm, a hub, a browser) is missing.

Outside CI a missing daemon or browser skips the test with the reason. In CI, or with
``PW_REQUIRE_ALL=1`` (``make test`` sets it), or ``PW_REQUIRE_<WHAT>=1`` for one kind, it fails the
test instead, so that a run cannot pass by skipping what it was meant to exercise.
"""

from __future__ import annotations

import os

import pytest


def strict_requirements() -> bool:
    """Whether a missing dependency must fail a test instead of skipping it (CI, PW_REQUIRE_ALL=1)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("PW_REQUIRE_ALL") == "1"


def require(what: str, ok: bool, why: str) -> None:
    """Skip a test whose real dependency is missing; in CI fail it instead, with the reason."""
    if ok:
        return
    if strict_requirements() or os.environ.get(f"PW_REQUIRE_{what.upper()}") == "1":
        pytest.fail(f"{what} is required here (CI or PW_REQUIRE_ALL=1) but unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")

"""The command environment of the executor: the hub's secrets stay behind, the fake scheduler's knobs pass."""

from __future__ import annotations

import re
from pathlib import Path

from pw_spawner.remote.executor import PASSED_ENV, LocalExecutor
from pw_spawner.testing import fake_scheduler, plugin


def test_every_fake_scheduler_knob_passes():
    read = set(re.findall(r"PW_FAKE_[A-Z_]+", Path(fake_scheduler.__file__).read_text()))
    assert read and read <= set(PASSED_ENV)
    assert read - {"PW_FAKE_SCHED_DIR"} <= set(plugin.KNOBS)


async def test_knob_reaches_the_command_and_secrets_do_not(monkeypatch):
    monkeypatch.setenv("PW_FAKE_PENDING_REASON", "QOSMaxJobsPerUserLimit")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "secret")
    result = await LocalExecutor().run(["env"])
    assert "PW_FAKE_PENDING_REASON=QOSMaxJobsPerUserLimit" in result.stdout.splitlines()
    assert "secret" not in result.stdout

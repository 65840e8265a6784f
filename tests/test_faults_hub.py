"""The fault suite against a real JupyterHub: killed hubs and a shared-account configuration.

- The hub is SIGKILLed while a user's job is still queued (start() had not returned, so no state was
  saved), then started again: the job is found by its name and cancelled (orphans 0).
- The hub is SIGKILLed while sessions run: after the restart every session is re-attached and
  answers through the proxy (lost sessions 0).
- A configuration in which every user's job runs as one account is refused at hub start.

The queued job comes from the mocked Slurm (pw_spawner.testing), whose jobs pend for as long as
PW_FAKE_PENDING_SECONDS says: a real queue that holds a job for minutes is what it stands for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.hub import HubProcess, hub_available
from support.requirements import require

from pw_spawner.scripts import job_name_for

pytestmark = [pytest.mark.faults, pytest.mark.hub]


@pytest.fixture(autouse=True)
def _needs_a_hub() -> None:
    ok, why = hub_available()
    require("hub", ok, why)


def kill_hub(hub: HubProcess) -> None:
    """SIGKILL the hub process alone (not its proxy or jobs), as a crash would."""
    assert hub.proc is not None
    os.kill(hub.proc.pid, signal.SIGKILL)
    hub.proc.wait()
    hub.proc = None


def spawn(hub: HubProcess, user: str) -> None:
    """Create ``user`` and ask for their default server (demo-small)."""
    made = hub.api("POST", f"/users/{user}")
    assert made.status in (201, 409), made.text
    response = hub.api("POST", f"/users/{user}/server", {"profile": "demo-small"})
    assert response.status in (201, 202), response.text


def active_jobs(fake_slurm, name: str) -> list[dict]:
    return [job for job in fake_slurm.jobs() if job["name"] == name
            and job["state"] in ("PENDING", "RUNNING")]


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def test_hub_killed_while_the_job_queues(tmp_path: Path, fake_slurm, faults) -> None:
    faults.case()
    fake_slurm.set_knobs(PW_FAKE_PENDING_SECONDS=600, PW_FAKE_PENDING_REASON="Resources")
    hub = HubProcess(tmp_path / "hub", extra_config='c.PWSpawner.scheduler = "slurm"\n'
                                                    'c.PWSpawner.status_interval = 0.5\n')
    user = "queued-user"
    name = job_name_for(user)
    try:
        hub.start()
        spawn(hub, user)
        wait_for("the job is queued", lambda: active_jobs(fake_slurm, name), 30)
        queued = active_jobs(fake_slurm, name)
        assert [job["state"] for job in queued] == ["PENDING"], queued
        kill_hub(hub)
        hub.stop(stop_servers=False)  # the proxy a killed hub leaves behind
        hub.start()
        # At start the hub polls the server it had; the spawner finds the job by its name.
        try:
            wait_for("the leftover job is cancelled", lambda: not active_jobs(fake_slurm, name), 30)
        except pytest.fail.Exception:
            pass
        left = active_jobs(fake_slurm, name)
        faults.record("orphans", len(left), f"queued job(s) {[j['id'] for j in left]} of a killed hub"
                                            if left else "")
        faults.check("orphans")
        assert hub.server_model(user) is None
    finally:
        hub.stop()


def test_hub_killed_mid_session_reattaches(tmp_path: Path, faults) -> None:
    faults.case()
    users = ["crash-a", "crash-b"]
    hub = HubProcess(tmp_path / "hub")
    try:
        hub.start()
        for user in users:
            spawn(hub, user)
        for user in users:
            hub.wait_ready(user)
        kill_hub(hub)
        hub.stop(stop_servers=False)
        hub.start()
        lost = []
        for user in users:
            model = hub.server_model(user)
            reply = hub.get(f"/user/{user}/api/status", token=hub.user_token(user)) if model else None
            if model is None or not model.get("ready") or reply is None or reply.status != 200:
                lost.append(user)
        faults.record("lost sessions", len(lost), f"not re-attached: {lost}" if lost else "")
        faults.check("lost sessions")
    finally:
        hub.stop()


SHARED_CONFIG = """\
from pw_spawner.cli import check_config
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "pw-local"
c.PWSpawner.profile_list = [{"slug": "p", "display_name": "P"}]
check_config(c)
"""


def test_shared_account_configuration_is_refused_at_hub_start(tmp_path: Path, faults) -> None:
    faults.case()
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(SHARED_CONFIG)
    result = subprocess.run([sys.executable, "-m", "jupyterhub", "-f", str(config), "--port=0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "users' jobs would share one account" in result.stderr + result.stdout
    assert "allow_shared_account" in result.stderr + result.stdout
    check = subprocess.run([sys.executable, "-m", "pw_spawner.cli", "check", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "allow_shared_account" in check.stderr


def test_shared_account_spawn_is_refused_without_check_config(tmp_path: Path, faults) -> None:
    """A config that skips check_config still never starts a job as the shared account."""
    faults.case()
    hub = HubProcess(tmp_path / "hub", extra_config="c.PWSpawner.allow_shared_account = False\n")
    try:
        hub.start()
        hub.api("POST", "/users/shared-user")
        hub.api("POST", "/users/shared-user/server", {"profile": "demo-small"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            model = hub.server_model("shared-user")
            if model is None:
                break
            time.sleep(0.3)
        assert hub.server_model("shared-user") is None
        assert not hub.job_dir("shared-user").exists()
        assert "users' jobs would share one account" in hub.log()
    finally:
        hub.stop()

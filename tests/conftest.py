"""Shared fixtures: spawners with the fake app as their single-user command."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from pw_spawner.testing.spawners import make_spawner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.requirements import require
from support.sge_cell import SGECell, sge_available
from support.slurm_cluster import SlurmCluster, slurm_available
from support.sshd import SSHServer, ensure_login_user, sshd_available

from pw_spawner.testing import fake_app

pytest_plugins = ["support.faults"]  # the fault suite's counters and summary table


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """One real single-node Slurm on loopback for the whole session, stopped at its end."""
    ok, why = slurm_available()
    require("slurm", ok, why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start(timeout=60)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sge_cell(tmp_path_factory):
    """One real single-host Grid Engine cell on loopback for the whole session, stopped at its end."""
    ok, why = sge_available()
    require("sge", ok, why)
    cell = SGECell(tmp_path_factory.mktemp("sge"))
    cell.start(timeout=60)
    try:
        yield cell
    finally:
        cell.stop()

@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory):
    """One real OpenSSH server on 127.0.0.1 for the session (tests may stop and restart it)."""
    ok, why = sshd_available()
    require("sshd", ok, why)
    server = SSHServer(tmp_path_factory.mktemp("sshd-session")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ssh_user(ssh_server) -> pwd.struct_passwd:
    """The account tests log in as over SSH: an ordinary one when running as root."""
    return ensure_login_user() if os.geteuid() == 0 else pwd.getpwuid(os.getuid())


@pytest.fixture(scope="session")
def fake_app_for_others():
    """The fake app as a script another user can run with the system's python3.

    The test venv's interpreter may live under /root (pyenv), which the job's user cannot read, as on a
    cluster where the hub's Python is not the nodes' Python.
    """
    shared = Path(tempfile.mkdtemp(prefix="pw-fake-app-"))
    yield fake_app.copy_for_other_accounts(shared)
    shutil.rmtree(shared, ignore_errors=True)


FAKE_APP = [sys.executable, "-m", "pw_spawner.testing.fake_app"]
SIMPLE_PROFILES = [{
    "slug": "small", "display_name": "Small", "default": True,
    "job": {"partition": "debug", "cores": 1, "memory": "512M", "walltime": "00:30:00"},
    "overrides": {"hours": {"max": 2}},
    "environments": [{"slug": "plain", "display_name": "no modules"}],
}]


@pytest.fixture
async def spawner_factory(tmp_path):
    """make(cls=..., username=..., **traits) -> a spawner with the fake app; all stopped at the end.

    Keyword arguments are those of :func:`pw_spawner.testing.spawners.make_spawner`.
    """
    made = []

    def make(**traits):
        defaults = dict(profile_list=SIMPLE_PROFILES, job_dir_root=str(tmp_path / "jobs" / "{username}"),
                        cmd=FAKE_APP, status_interval=0.2, stop_timeout=15, batch_window=0.05,
                        status_refresh_interval=0.5, allow_shared_account=True)
        spawner = make_spawner(**{**defaults, **traits})
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        if spawner.job is not None:
            try:
                await spawner.stop()
            except Exception as exc:
                print("teardown stop failed:", exc)

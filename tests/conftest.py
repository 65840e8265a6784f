"""Shared fixtures: spawners with the fake app as their single-user command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pw_spawner.testing.spawners import make_spawner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.requirements import require
from support.slurm_cluster import SlurmCluster, slurm_available


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
                        cmd=FAKE_APP, status_interval=0.2, stop_timeout=15, batch_window=0.05)
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

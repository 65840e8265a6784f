"""PWSpawner against a real single-host Grid Engine cell on loopback, submitting as an ordinary user.

The server is the fake app (a real HTTP server in a real Grid Engine job). The cell is the
``sge_cell`` fixture (tests/support/sge_cell.py); in CI a cell that cannot start fails the run.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import xml.etree.ElementTree as ElementTree

import pytest
from support.slurm_cluster import ensure_user

from pw_spawner.scripts import job_name_for

pytestmark = pytest.mark.sge
USER = "pwtestuser"

PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True,
     "job": {"partition": "all.q", "cores": 1, "memory": "256M", "walltime": "00:30:00"}},
    {"slug": "two", "display_name": "Both slots",
     "job": {"partition": "all.q", "cores": 2, "memory": "512M", "walltime": "00:30:00"}},
    # More slots than the cell has: accepted, and waits for ever.
    {"slug": "huge", "display_name": "More than the cell has", "job": {"cores": 64}},
    {"slug": "nowhere", "display_name": "No such queue", "job": {"partition": "nosuch.q"}},
]


@pytest.fixture
def sge_spawner(sge_cell, spawner_factory, fake_app_for_others):
    ensure_user(USER)
    # sudo resets the environment: the clients are told where this cell is.
    cell_env = [f"{name}={value}" for name, value in sge_cell.env.items()]

    def make(**traits):
        defaults = dict(
            scheduler="sge", profile_list=PROFILES, cmd=fake_app_for_others, bind_ip="127.0.0.1",
            status_interval=0.3, job_dir_root="~/.pw_spawner/jobs", stop_timeout=30,
            exec_prefix=["sudo", "-u", "{username}", "--", "env", *cell_env],
            # The hub (root, a manager of the cell) asks about every user's jobs.
            status_query_prefix=["env", *cell_env],
        )
        return spawner_factory(**{"username": USER, **defaults, **traits})

    return make


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def qstat_state(cell, job_id: str) -> str | None:
    """The job's qstat state letters, or None once qstat no longer lists it."""
    root = ElementTree.fromstring(cell.run("qstat", "-xml", "-u", "*").stdout)
    for job in root.iter("job_list"):
        if job.findtext("JB_job_number") == job_id:
            return job.findtext("state")
    return None


async def gone(cell, job_id: str, seconds: float = 20.0) -> bool:
    for _ in range(int(seconds / 0.2)):
        if qstat_state(cell, job_id) is None:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_spawn_reach_stop(sge_cell, sge_spawner):
    spawner = sge_spawner(user_options={"profile": "two"})
    started = time.monotonic()
    url = await asyncio.wait_for(spawner.start(), 90)
    took = time.monotonic() - started
    job_id = spawner.job.job_id
    # qstat may still say "t" (being started) for a moment after the app already answers.
    assert qstat_state(sge_cell, job_id) in ("t", "r")
    record = await asyncio.to_thread(fetch, url)
    assert record["user"] == USER and record["has_token"] is True
    assert await spawner.poll() is None
    messages = [e["message"] for e in spawner._events]
    assert f"Submitted job {job_id}" in messages
    assert any(m.startswith(f"Job {job_id} is running on ") for m in messages), messages
    print(f"real Grid Engine: submit to ready in {took:.1f} s")

    await spawner.stop()
    assert await gone(sge_cell, job_id)
    assert await spawner.poll() is not None


async def test_an_unknown_queue_is_shown_to_the_user(sge_spawner):
    spawner = sge_spawner(user_options={"profile": "nowhere"})
    with pytest.raises(Exception) as info:
        await spawner.start()
    message = info.value.jupyterhub_message
    assert message.startswith("Grid Engine refused the job: ") and "nosuch.q" in message, message
    assert spawner.job is None


async def test_stop_while_queued_cancels_the_job(sge_cell, sge_spawner):
    spawner = sge_spawner(user_options={"profile": "huge"})
    task = asyncio.ensure_future(spawner.start())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if any("is queued" in e["message"] for e in spawner._events):
            break
    assert any("is queued" in e["message"] for e in spawner._events), spawner._events
    job_id = spawner.job.job_id
    assert qstat_state(sge_cell, job_id) == "qw"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(sge_cell, job_id)
    assert spawner.job is None


async def test_restart_reattaches_and_finds_leftovers(sge_cell, sge_spawner):
    first = sge_spawner()
    await asyncio.wait_for(first.start(), 90)
    state = first.get_state()
    again = sge_spawner()
    again.load_state(state)
    assert await again.poll() is None
    # A hub that died before saving state: the next start finds the job by name and cancels it.
    orphan = first.job.job_id
    first.job = again.job = None
    fresh = sge_spawner()
    await asyncio.wait_for(fresh.start(), 90)
    assert fresh.job.job_id != orphan
    assert await gone(sge_cell, orphan)
    await fresh.stop()


async def test_a_job_that_left_qstat_is_ended_from_accounting(sge_cell, sge_spawner):
    spawner = sge_spawner()
    await asyncio.wait_for(spawner.start(), 90)
    job_id = spawner.job.job_id
    # The app ends on its own (as a user's server may): the job leaves qstat.
    sge_cell.run("qdel", job_id)
    assert await gone(sge_cell, job_id)
    cache = await spawner.status_cache()
    cache.forget(job_id)
    assert await spawner.poll() is not None
    assert spawner.job_name == job_name_for(USER)

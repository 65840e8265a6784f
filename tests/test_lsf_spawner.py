"""PWSpawner with ``scheduler = "lsf"`` on the hub host, against the fake LSF (the ``fake_lsf``
fixture): the job script LSFScheduler writes goes through the fake's bsub, runs the fake app, and is
followed with bjobs and ended with bkill, as on an LSF cluster."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from pw_spawner.schedulers.lsf import LSFScheduler
from pw_spawner.testing.plugin import FakeScheduler

# No queue: the fake's default one (normal). One core, memory and a run limit: -n, -R, -M and -W.
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True,
     "job": {"cores": 1, "memory": "512M", "walltime": "00:30:00"}},
    {"slug": "nowhere", "display_name": "No such queue", "job": {"partition": "nosuch"}},
]


@pytest.fixture(autouse=True)
def no_recent_submits():
    LSFScheduler._submitted_at.clear()
    yield
    LSFScheduler._submitted_at.clear()


@pytest.fixture
def lsf_spawner(fake_lsf: FakeScheduler, spawner_factory):
    def make(**traits):
        # The job runs on this host: the app binds loopback and is reached there.
        defaults = dict(scheduler="lsf", profile_list=PROFILES, bind_ip="127.0.0.1", connect_host="127.0.0.1")
        return spawner_factory(**{**defaults, **traits})

    return make


def known(fake: FakeScheduler, job_id: str) -> dict:
    job = fake.job(job_id)
    assert job is not None, job_id
    return job


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def test_spawn_reach_stop(fake_lsf: FakeScheduler, lsf_spawner):
    spawner = lsf_spawner()
    url = await asyncio.wait_for(spawner.start(), 60)
    job_id = spawner.job.job_id
    job = known(fake_lsf, job_id)
    assert job["state"] == "RUNNING" and job["name"] == spawner.job_name
    # The #BSUB lines LSFScheduler wrote took effect.
    assert (job["queue"], job["slots"], job["memlimit"], job["time_limit"]) == ("normal", 1, "512MB", 1800)
    assert job["out_file"] == f"{spawner.job.job_dir}/job.out"
    record = await asyncio.to_thread(fetch, url)
    assert record["user"] == "alice" and record["has_token"] is True
    assert await spawner.poll() is None
    messages = [e["message"] for e in spawner._events]
    assert f"Submitted job {job_id}" in messages
    assert f"Job {job_id} is running on localhost" in messages, messages

    await spawner.stop()
    assert spawner.job is None
    ended = known(fake_lsf, job_id)
    assert ended["state"] == "CANCELLED" and ended["exit_code"] is not None  # its processes are gone
    assert await spawner.poll() == 0


async def test_an_unknown_queue_is_shown_to_the_user(fake_lsf: FakeScheduler, lsf_spawner):
    spawner = lsf_spawner(user_options={"profile": "nowhere"})
    with pytest.raises(Exception) as info:
        await spawner.start()
    assert getattr(info.value, "jupyterhub_message", None) == "LSF refused the job: nosuch: No such queue"
    assert spawner.job is None and fake_lsf.jobs() == []


async def test_stop_while_pending_kills_the_job(fake_lsf: FakeScheduler, lsf_spawner):
    fake_lsf.set_knobs(PW_FAKE_PENDING_SECONDS=600)
    spawner = lsf_spawner()
    task = asyncio.ensure_future(spawner.start())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if any("is queued" in e["message"] for e in spawner._events):
            break
    assert any("New job is waiting for scheduling" in e["message"] for e in spawner._events), spawner._events
    job_id = spawner.job.job_id
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = known(fake_lsf, job_id)
    assert job["state"] == "CANCELLED" and job["pid"] is None  # never ran
    assert spawner.job is None

"""PWSpawner against a real single-node Slurm on loopback, submitting as an ordinary user via sudo.

The server is the fake app (a real HTTP server in a real Slurm job); jupyterhub-singleuser itself runs in
the hub tests. Skipped only outside CI when Slurm cannot run here; in CI a missing Slurm fails.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from conftest import SIMPLE_PROFILES
from support.slurm_cluster import ensure_user

from pw_spawner import PWSlurmSpawner
from pw_spawner.scripts import job_name_for

pytestmark = pytest.mark.slurm
USER = "pwtestuser"


@pytest.fixture
async def slurm_spawner(slurm_cluster, spawner_factory, fake_app_for_others):
    ensure_user(USER)
    def make(**traits):
        profiles = [{**SIMPLE_PROFILES[0]},
                    {"slug": "too-long", "display_name": "Over the partition's MaxTime",
                     "job": {"partition": "short", "walltime": "05:00:00"}},
                    {"slug": "nowhere", "display_name": "No such partition", "job": {"partition": "nope"}}]
        defaults = dict(
            profile_list=profiles, cmd=fake_app_for_others, bind_ip="127.0.0.1", status_interval=0.3,
            job_dir_root="~/.pw_spawner/jobs", stop_timeout=30,
            # sudo resets the environment: the client needs to be told where this cluster's conf is.
            exec_prefix=["sudo", "-u", "{username}", "--", "env", f"SLURM_CONF={slurm_cluster.conf_path}"],
        )
        return spawner_factory(cls=PWSlurmSpawner, **{"username": USER, **defaults, **traits})

    return make


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def squeue(cluster, job_id):
    return cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i|%T|%u|%j").stdout.strip()


async def wait_cancelled(cluster, job_id, seconds=15.0):
    """Slurm's view of a cancelled job once its COMPLETING (clean-up) phase is over."""
    for _ in range(int(seconds / 0.2)):
        line = squeue(cluster, job_id)
        if "CANCELLED" in line:
            return line
        await asyncio.sleep(0.2)
    return squeue(cluster, job_id)


async def test_spawn_reach_stop(slurm_cluster, slurm_spawner):
    spawner = slurm_spawner()
    started = time.monotonic()
    url = await spawner.start()
    took = time.monotonic() - started
    job_id = spawner.job.job_id
    line = squeue(slurm_cluster, job_id)
    assert line == f"{job_id}|RUNNING|{USER}|{spawner.job_name}", line
    assert spawner.job_name.startswith(f"pw-{USER}-")
    record = await asyncio.to_thread(fetch, url)
    assert record["user"] == USER and record["has_token"] is True
    assert await spawner.poll() is None
    messages = [e["message"] for e in spawner._events]
    assert f"Submitted job {job_id}" in messages
    assert any(m.startswith(f"Job {job_id} is running on ") for m in messages)
    print(f"real Slurm: submit to ready in {took:.1f} s")

    await spawner.stop()
    # stop() returns once Slurm counts the job as ending (COMPLETING or later).
    assert squeue(slurm_cluster, job_id).split("|")[1] in ("COMPLETING", "CANCELLED")
    assert "CANCELLED" in await wait_cancelled(slurm_cluster, job_id)
    assert await spawner.poll() == 0


async def test_invalid_partition_is_shown_to_the_user(slurm_spawner):
    spawner = slurm_spawner(user_options={"profile": "nowhere"})
    with pytest.raises(Exception) as info:
        await spawner.start()
    assert info.value.jupyterhub_message == ("Slurm refused the job: Invalid partition name specified "
                                             "(invalid partition specified: nope)")
    assert spawner.job is None


async def test_stop_while_queued_cancels_the_job(slurm_cluster, slurm_spawner):
    # Over the partition's MaxTime: Slurm accepts it and keeps it pending (PartitionTimeLimit).
    spawner = slurm_spawner(user_options={"profile": "too-long"})
    task = asyncio.ensure_future(spawner.start())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if any("is queued (Partition" in e["message"] for e in spawner._events):
            break
    queued = [e["message"] for e in spawner._events if "queued" in e["message"]]
    assert queued, spawner._events
    job_id = spawner.job.job_id
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "CANCELLED" in await wait_cancelled(slurm_cluster, job_id)
    assert spawner.job is None


async def test_restart_reattaches_and_finds_leftovers(slurm_cluster, slurm_spawner):
    first = slurm_spawner()
    await first.start()
    state = first.get_state()
    again = slurm_spawner()
    again.load_state(state)
    assert await again.poll() is None
    # A hub that died before saving state: the next start finds the job by name and cancels it.
    orphan = first.job.job_id
    first.job = again.job = None
    fresh = slurm_spawner()
    await fresh.start()
    assert fresh.job.job_id != orphan
    assert "CANCELLED" in await wait_cancelled(slurm_cluster, orphan)


async def test_another_accounts_job_with_the_same_name_is_left_alone(slurm_cluster, slurm_spawner):
    # Anyone on a cluster can name a job "pw-pwtestuser"; the leftover search must not touch it.
    submitted = slurm_cluster.run("sbatch", "--parsable", f"--job-name={job_name_for(USER)}",
                                  "--cpus-per-task=1", "--mem=64M", "--output=/dev/null", "--wrap=sleep 120")
    other = submitted.stdout.strip().split(";")[0]
    assert other.isdigit(), submitted
    try:
        spawner = slurm_spawner()
        await spawner.start()
        assert spawner.job.job_id != other
        assert squeue(slurm_cluster, other).split("|")[1] in ("RUNNING", "PENDING")
        await spawner.stop()
    finally:
        slurm_cluster.run("scancel", other)


async def test_servers_of_different_users_are_answered_by_one_squeue(slurm_cluster, slurm_spawner):
    """Jobs submitted as two accounts (sudo -u each; the test node has two cores), followed with one
    squeue run as the hub."""
    users = ["pwtestuser", "pwtestuser2"]
    for user in users:
        ensure_user(user)
    # The hub's own account asks (root sees every job); sudo reset SLURM_CONF for the submits only.
    query_prefix = ["env", f"SLURM_CONF={slurm_cluster.conf_path}"]
    spawners = [slurm_spawner(username=user, status_query_prefix=query_prefix) for user in users]
    urls = await asyncio.wait_for(asyncio.gather(*(s.start() for s in spawners)), 60)
    assert len(set(urls)) == len(users)
    owners = {squeue(slurm_cluster, s.job.job_id).split("|")[2] for s in spawners}
    assert owners == set(users)
    cache = await spawners[0].status_cache()
    assert all([await s.status_cache() is cache for s in spawners])
    await asyncio.sleep(cache.refresh_interval)
    before = cache.queries
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * len(users)
    assert cache.queries == before + 1
    await asyncio.gather(*(s.stop() for s in spawners))

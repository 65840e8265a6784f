"""Fault suite against the real single-node Slurm: queued jobs that nobody wants, a controller
restart, and an app that crashes.

Jobs are submitted as an ordinary account (``pwfaultuser``, through ``sudo -u``) and run the fake app.
To keep a job queued, a blocker job of root's holds every CPU of the node, so the spawner's job waits
for resources (reason ``Resources``) and would start as soon as the blocker ends: a job whose
cancellation was lost would show up running once the blocker is gone, and is then counted.

The hub's side is played as JupyterHub 6 plays it: a start timeout is ``asyncio.wait_for`` on
start(); Stop on the spawn-pending page cancels the start, waits a second, then stops the server if
poll() says it still runs; after a failed start, stop() is called only if poll() says it runs.
"Orphans" are this account's jobs squeue still lists as unfinished 15 s after the hub let go of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.slurm_cluster import SlurmCluster, ensure_user

from pw_spawner import PWSlurmSpawner

pytestmark = [pytest.mark.faults, pytest.mark.slurm]
USER = "pwfaultuser"
UNFINISHED = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING"
PROFILES = [{"slug": "small", "display_name": "Small", "default": True,
             "job": {"partition": "debug", "cores": 1, "memory": "256M", "walltime": "00:30:00"}}]


def unfinished(cluster: SlurmCluster) -> list[str]:
    """``id|state|name`` of the fault user's jobs that Slurm has not finished."""
    out = cluster.run("squeue", "-h", "-u", USER, "-t", UNFINISHED, "-o", "%i|%T|%j")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


async def orphans_after(cluster: SlurmCluster, seconds: float = 15) -> list[str]:
    """The fault user's unfinished jobs once ``seconds`` have passed without any being left."""
    for _ in range(int(seconds / 0.3)):
        if not (left := unfinished(cluster)):
            return left
        await asyncio.sleep(0.3)
    return unfinished(cluster)


def cancel_all(cluster: SlurmCluster) -> None:
    cluster.run("scancel", "-u", USER)


@pytest.fixture
def clean_queue(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster with none of the fault user's jobs, before and after the test."""
    ensure_user(USER)
    cancel_all(slurm_cluster)
    try:
        yield slurm_cluster
    finally:
        cancel_all(slurm_cluster)


@pytest.fixture
def blocker(clean_queue: SlurmCluster) -> Iterator[str]:
    """A running job of root's holding every CPU of the node; cancelled at the end (if not before)."""
    cluster = clean_queue
    out = cluster.run("sbatch", "--parsable", f"--cpus-per-task={cluster.cpus}", "--mem=64M",
                      "--job-name=pw-fault-blocker", "--output=/dev/null", "--wrap=sleep 600")
    job_id = out.stdout.strip().split(";")[0]
    assert out.returncode == 0 and job_id.isdigit(), out.stderr
    try:
        deadline = time.monotonic() + 20
        while cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() != "RUNNING":
            assert time.monotonic() < deadline, f"the blocker did not start:\n{cluster.logs()}"
            time.sleep(0.2)
        yield job_id
    finally:
        cluster.run("scancel", job_id)


@pytest.fixture
def fault_spawner(clean_queue: SlurmCluster, spawner_factory, fake_app_for_others):
    """make(**traits) -> a Slurm spawner of the fault user running the fake app."""
    def make(**traits: Any) -> PWSlurmSpawner:
        defaults = dict(
            profile_list=PROFILES, cmd=fake_app_for_others, bind_ip="127.0.0.1", connect_host="127.0.0.1",
            status_interval=0.3, job_dir_root="~/.pw_spawner/jobs", stop_timeout=30,
            exec_prefix=["sudo", "-u", "{username}", "--", "env", f"SLURM_CONF={clean_queue.conf_path}"],
        )
        return spawner_factory(cls=PWSlurmSpawner, username=USER, **{**defaults, **traits})

    return make


async def until_event(spawner: PWSlurmSpawner, words: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for event in spawner._events:
            if words in event["message"]:
                return event["message"]
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {words!r} among the progress events: {spawner._events}")


def submitted_id(spawner: PWSlurmSpawner) -> str:
    found = [e["message"].split()[-1] for e in spawner._events if e["message"].startswith("Submitted job ")]
    assert found, f"no job was submitted: {spawner._events}"
    return found[-1]


async def hub_stops_if_running(spawner: PWSlurmSpawner) -> None:
    """JupyterHub's user.stop(): stop() only for a server poll() says is still running."""
    if await spawner.poll() is None:
        await spawner.stop()


def fetch(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        return fetch(url, timeout=5).get("user") == USER
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- queued jobs


async def test_start_timeout_while_queued_cancels_the_job(clean_queue, blocker, fault_spawner,
                                                          faults) -> None:
    faults.case()
    spawner = fault_spawner()
    with pytest.raises(asyncio.TimeoutError):
        # JupyterHub's start_timeout: wait_for cancels start() when the time is up.
        await asyncio.wait_for(spawner.start(), timeout=6)
    await until_event(spawner, "is queued (Resources)", timeout=0)
    job_id = submitted_id(spawner)
    await hub_stops_if_running(spawner)
    clean_queue.run("scancel", blocker)  # a job left queued would start now
    await asyncio.sleep(2)
    left = await orphans_after(clean_queue)
    faults.record("orphans", len(left), f"start timeout while job {job_id} was queued: {left}")
    faults.check()


@pytest.mark.parametrize("phase", ["queued", "starting"])
async def test_stop_on_the_spawn_pending_page(phase: str, clean_queue, blocker, fault_spawner,
                                              fake_app_for_others, faults) -> None:
    """Stop while the job waits in the queue, and while it runs but its app is not up yet."""
    faults.case()
    # The app takes 60 s to listen: the job is RUNNING and its service.json says STARTING meanwhile.
    slow_app = ["/bin/sh", "-c", 'sleep 60; exec "$0" "$@"', *fake_app_for_others]
    spawner = fault_spawner(cmd=slow_app)
    if phase == "starting":
        clean_queue.run("scancel", blocker)
    task = asyncio.ensure_future(spawner.start())
    try:
        await until_event(spawner, "is queued (Resources)" if phase == "queued" else "Starting JupyterLab")
        job_id = submitted_id(spawner)
        # The hub's DELETE on a pending spawn: cancel it, give it a second, stop what still runs.
        task.cancel()
        await asyncio.sleep(1)
        await hub_stops_if_running(spawner)
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        if not task.done():
            task.cancel()
    clean_queue.run("scancel", blocker)
    await asyncio.sleep(2)
    left = await orphans_after(clean_queue)
    faults.record("orphans", len(left), f"Stop while job {job_id} was {phase}: {left}")
    faults.check()
    assert spawner.job is None, f"the spawner still holds job {spawner.job}"


async def test_stop_called_while_start_runs(clean_queue, fault_spawner, fake_app_for_others, faults) -> None:
    """stop() while start() follows a starting job, without cancelling start(): start ends with an
    error for the page, and no job is left."""
    faults.case()
    spawner = fault_spawner(cmd=["/bin/sh", "-c", 'sleep 60; exec "$0" "$@"', *fake_app_for_others])
    task = asyncio.ensure_future(spawner.start())
    try:
        await until_event(spawner, "Starting JupyterLab")
        job_id = submitted_id(spawner)
        await spawner.stop()
        with pytest.raises(Exception) as raised:
            await asyncio.wait_for(task, 30)
    finally:
        if not task.done():
            task.cancel()
    left = await orphans_after(clean_queue)
    faults.record("orphans", len(left), f"stop() during start() of job {job_id}: {left}")
    faults.check()
    message = getattr(raised.value, "jupyterhub_message", "")
    assert message, f"start ended without a message: {raised.value!r}"
    assert not re.search(r"NoneType|object has no attribute|Traceback|Error\b", message), \
        f"start ended with an internal error for the page: {message}"


# --------------------------------------------------------------------------- running sessions


def _restart_slurmctld(cluster: SlurmCluster, down: float) -> Iterator[float]:
    """Stop slurmctld (slurmd and the jobs stay), yield while it is down, start it again."""
    proc = cluster._procs["slurmctld"]
    proc.terminate()
    proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its slurmscriptd
    except ProcessLookupError:
        pass
    began = time.monotonic()
    try:
        yield down
    finally:
        cluster._spawn("slurmctld", ["-D", "-i", "-f", str(cluster.conf_path)])
        deadline = time.monotonic() + 60
        while cluster.run("squeue", "-h", "-o", "%i").returncode != 0:
            assert time.monotonic() < deadline, f"slurmctld did not come back:\n{cluster.logs()}"
            time.sleep(0.3)
        print(f"slurmctld was down {time.monotonic() - began:.1f} s")


async def test_slurmctld_restart_keeps_running_sessions(clean_queue, fault_spawner, faults) -> None:
    """Polls made while slurmctld is down (and answered once it is back) keep both sessions."""
    faults.case()
    # Polls ask slurmctld each time (no answer older than half a second), as a busy hub's would.
    spawners = [fault_spawner(status_refresh_interval=0.5),
                fault_spawner(server_name="second", status_refresh_interval=0.5)]
    urls = [await s.start() for s in spawners]
    jobs = [s.job.job_id for s in spawners]
    assert all(answers(u) for u in urls)

    restart = _restart_slurmctld(clean_queue, down=3)
    next(restart)
    try:
        began = time.monotonic()
        polls = asyncio.ensure_future(asyncio.gather(*(s.poll() for s in spawners)))
        await asyncio.sleep(3)
        reachable_while_down = [answers(u) for u in urls]
    finally:
        next(restart, None)
    during = await asyncio.wait_for(polls, 90)
    print(f"polls made while slurmctld was down answered after {time.monotonic() - began:.1f} s")
    after = [await s.poll() for s in spawners]
    reachable = [answers(u) for u in urls]
    states = [clean_queue.run("squeue", "-h", "-j", j, "-o", "%T").stdout.strip() for j in jobs]
    lost = [j for j, d, p, r, s, rd in zip(jobs, during, after, reachable, states, reachable_while_down,
                                           strict=True)
            if d is not None or p is not None or not r or not rd or s != "RUNNING"]
    faults.record("lost sessions", len(lost), f"after a slurmctld restart: jobs {lost}; polls while down "
                  f"{during}, after {after}, app answers {reachable_while_down} / {reachable}, "
                  f"Slurm says {states}")
    faults.check()


def _app_pid(spawner: PWSlurmSpawner) -> int:
    """The fake app's process of the spawner's job (its port is in service.json)."""
    port = spawner.service.port
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("fake_app.py") for a in argv) and f"--port={port}" in argv:
            return int(entry.name)
    raise AssertionError(f"no fake app process listening on port {port}")


async def test_app_crash_is_noticed_within_a_poll_interval(clean_queue, fault_spawner, faults) -> None:
    faults.case()
    interval = 2.0
    spawner = fault_spawner(poll_interval=interval)
    url = await spawner.start()
    job_id = spawner.job.job_id
    assert answers(url) and await spawner.poll() is None
    os.kill(_app_pid(spawner), signal.SIGKILL)
    killed = time.monotonic()
    # The hub polls every poll_interval; the first poll after the job ended must say so.
    status = None
    while status is None and time.monotonic() - killed < interval + 20:
        await asyncio.sleep(interval)
        status = await spawner.poll()
    noticed = time.monotonic() - killed
    print(f"app crash noticed by poll() after {noticed:.1f} s (poll interval {interval} s)")
    left = await orphans_after(clean_queue, seconds=10)
    faults.record("orphans", len(left), f"job {job_id} whose app crashed: {left}")
    faults.check()
    assert status is not None, f"poll() still says running {noticed:.0f} s after the app was killed"
    assert noticed <= interval + 5, f"the crash took {noticed:.1f} s to notice (poll interval {interval} s)"
    line = clean_queue.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
    assert line in ("", "FAILED", "COMPLETED"), f"Slurm says the job is {line}"


def test_helpers_count_what_they_should(clean_queue) -> None:
    """The orphan count sees a job of the fault user that nobody cancelled (so a case can fail)."""
    out = subprocess.run(["sudo", "-u", USER, "--", "env", f"SLURM_CONF={clean_queue.conf_path}", "sbatch",
                          "--parsable", "--mem=64M", "--output=/dev/null", "--wrap=sleep 60"],
                         capture_output=True, text=True, cwd="/")
    job_id = out.stdout.strip().split(";")[0]
    assert out.returncode == 0, out.stderr
    assert any(line.startswith(f"{job_id}|") for line in unfinished(clean_queue))

"""How a job ends, told by a real Slurm: a job past its one-minute walltime ends TIMEOUT, and one
that writes more than its ``--mem`` ends OUT_OF_MEMORY, each read by SlurmScheduler through the
per-cluster status cache, as the spawner reads it (as the job's user, behind ``sudo -u``).

The time limit needs the session's cluster (tests/conftest.py); slurmctld checks time limits every
30 s, so a one-minute job ends 60 to 90 s after it started. The memory limit needs a cluster that
confines jobs with cgroups (``SlurmCluster(memory_enforcement=True)``), started here for that test
alone when the host allows it (a writable cgroup v1 memory hierarchy), and skipped with the reason
when it does not. The time-limit job is submitted first, so that the memory test runs inside the
minute the other job must last: the module takes about as long as the time limit does.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from support.slurm_cluster import SlurmCluster, ensure_user, memory_enforcement_available

from pw_spawner.remote.executor import LocalExecutor
from pw_spawner.schedulers.base import JobInfo, JobRef
from pw_spawner.schedulers.cache import StatusCache
from pw_spawner.schedulers.reasons import job_words
from pw_spawner.schedulers.slurm import SlurmScheduler
from pw_spawner.status import JobState

pytestmark = pytest.mark.slurm
USER = "pwtestuser"
#: slurmctld's time-limit check every 30 s, its KillWait of 5 s, the first scheduling pass: the
#: one-minute job is over within about 97 s of its submission (more on a loaded machine).
TIME_LIMIT_BUDGET_S = 150.0


def user_executor(cluster: SlurmCluster) -> LocalExecutor:
    """The spawner's way to a cluster: the user's own account, told where the cluster's conf is."""
    return LocalExecutor(prefix=["sudo", "-u", USER, "--", "env", f"SLURM_CONF={cluster.conf_path}"])


def user_dir(prefix: str) -> Path:
    """A scratch directory the job's user owns, in its home (where its jobs write)."""
    account = ensure_user(USER)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=account.pw_dir))
    shutil.chown(path, account.pw_uid, account.pw_gid)
    return path


async def submit(cluster: SlurmCluster, job_dir: Path, directives: str, body: str) -> JobRef:
    scheduler = SlurmScheduler()
    script = f"#!/bin/sh\n#SBATCH --output={job_dir}/job.out\n{directives}{body}\n"
    job_id = await scheduler.submit(user_executor(cluster), script, name="pw-end", job_dir=str(job_dir))
    return JobRef(job_id, "pw-end", str(job_dir))


async def until_ended(cluster: SlurmCluster, job: JobRef, seconds: float) -> tuple[JobInfo, StatusCache]:
    """Poll through the status cache (a fresh answer each second) until the job has ended."""
    cache = StatusCache(SlurmScheduler(), user_executor(cluster), refresh_interval=1.0, window=0.01)
    deadline = time.monotonic() + seconds
    info = await cache.status(job, max_age=0)
    while not info.state.finished:
        assert time.monotonic() < deadline, f"job {job.job_id} had not ended after {seconds:g} s: {info}"
        await asyncio.sleep(1.0)
        info = await cache.status(job)
    return info, cache


@pytest.fixture(scope="module")
def time_limit_job(slurm_cluster):
    """A job with a one-minute walltime that would sleep ten, submitted before the other tests run."""
    job_dir = user_dir("pw-end-timeout-")
    job = asyncio.run(submit(slurm_cluster, job_dir, "#SBATCH --time=1\n#SBATCH --mem=64M\n", "sleep 600"))
    yield job, time.monotonic()
    slurm_cluster.run("scancel", job.job_id)
    shutil.rmtree(job_dir, ignore_errors=True)


async def test_a_job_over_its_memory_ends_out_of_memory(time_limit_job, tmp_path_factory):
    ok, why = memory_enforcement_available()
    if not ok:
        pytest.skip(f"this host cannot confine a Slurm job's memory: {why}")
    job_dir = user_dir("pw-end-oom-")
    # Job ids of its own: the host's cgroup tree is shared with any other cluster that confines memory.
    with SlurmCluster(tmp_path_factory.mktemp("slurm-mem"), memory_enforcement=True,
                      first_job_id=random.randint(100_000, 9_000_000)) as cluster:
        try:
            job = await submit(cluster, job_dir, "#SBATCH --mem=64M\n",
                               "exec /usr/bin/python3 -c 'x = b\"x\" * (256 << 20)'")
            info, _ = await until_ended(cluster, job, 60)
            shown = cluster.run("scontrol", "-o", "show", "job", job.job_id).stdout
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
    assert (info.state, info.raw_state) == (JobState.FAILED, "OUT_OF_MEMORY")
    assert info.end_reason == "OUT_OF_MEMORY"
    assert " JobState=OUT_OF_MEMORY Reason=OutOfMemory " in shown
    assert job_words("slurm", info) == "out of memory"


async def test_a_job_past_its_walltime_ends_timeout(slurm_cluster, time_limit_job):
    job, submitted = time_limit_job
    info, cache = await until_ended(slurm_cluster, job, TIME_LIMIT_BUDGET_S - (time.monotonic() - submitted))
    took = time.monotonic() - submitted
    print(f"real Slurm: the --time=1 job ended {info.raw_state} {took:.0f} s after its submission")
    assert (info.state, info.raw_state, info.end_reason) == (JobState.FAILED, "TIMEOUT", "TIMEOUT")
    assert info.reason == "TimeLimit"
    assert job_words("slurm", info) == "time limit reached"
    assert took >= 60
    # The cache keeps it, fresh or not.
    assert (await cache.status(job, max_age=0)).end_reason == "TIMEOUT"

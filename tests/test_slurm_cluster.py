"""The real single-node Slurm used by the integration tests works as the spawner expects.

Skipped when Slurm cannot be started here (not root, binaries missing), unless ``CI`` or
``PW_REQUIRE_SLURM=1`` is set: then it fails, so CI cannot silently lose this coverage.

Real output seen on Debian bookworm, slurm-wlm 22.05.8, node ``vm``
(``squeue -h -t all -j ID -o '%i|%T|%r|%N|%j'``)::

    2|PENDING|None||rootjob            right after sbatch (no node yet, reason None)
    2|COMPLETED|None|vm|rootjob        finished; kept for MinJobAge (300 s)
    1|RUNNING|None|vm|userjob
    1|CANCELLED|None|vm|userjob        after scancel; `scontrol show job 1` says
                                       "JobState=CANCELLED Reason=None" and "ExitCode=0:15"
    4|PENDING|JobHeldUser||held        sbatch --hold
    3|PENDING|PartitionConfig||sbatch  -p short -t 5:00:00 (over MaxTime, right after submit)
    3|PENDING|PartitionTimeLimit||sbatch   same job after the next scheduler pass

``sbatch -p nope`` exits 1 with stderr::

    sbatch: error: invalid partition specified: nope
    sbatch: error: Batch job submission failed: Invalid partition name specified

``squeue -j 999`` / ``scontrol show job 999`` for an unknown id: rc 1,
"slurm_load_jobs error: Invalid job id specified".

Timings here: ``start()`` ~1.1 s to idle; the first job after start goes PD->R in ~2 s
(the first scheduler pass), later ones in 0.3-1 s (``batch_sched_delay=0``); ``stop()``
~1-2 s; the whole module ~10 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from support.slurm_cluster import (
    CLUSTER_NAME,
    SlurmCluster,
    ensure_user,
    run_as,
)

pytestmark = pytest.mark.slurm

TEST_USER = "pwtestuser"
FINAL_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The session's cluster (tests/conftest.py starts one for every Slurm test)."""
    return slurm_cluster


def _squeue_line(cluster: SlurmCluster, job_id: str) -> str:
    r = cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i|%T|%r|%N|%j")
    return r.stdout.strip() if r.returncode == 0 else ""


def _state(cluster: SlurmCluster, job_id: str) -> str:
    line = _squeue_line(cluster, job_id)
    return line.split("|")[1] if line else ""


def _wait_for(cluster: SlurmCluster, job_id: str, wanted: set[str], timeout: float = 20):
    """Poll the job's state until it is in ``wanted``; return every distinct state seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _state(cluster, job_id)
        if st and (not seen or seen[-1] != st):
            seen.append(st)
        if st in wanted:
            return seen
        if st in FINAL_STATES:
            break
        time.sleep(0.1)
    info = cluster.run("scontrol", "show", "job", job_id).stdout
    pytest.fail(f"job {job_id} never reached {wanted}; seen {seen}\n{info}\n{cluster.logs()}")


def _sbatch(cluster: SlurmCluster, script: str, *args: str) -> str:
    r = cluster.run("sbatch", "--parsable", *args, input=script)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().split(";")[0]
    assert job_id.isdigit(), r.stdout
    return job_id


def test_sinfo_shows_both_partitions(cluster: SlurmCluster) -> None:
    r = cluster.run("sinfo", "-h", "-o", "%P|%a|%l|%D|%T|%N")
    assert r.returncode == 0, r.stderr
    # Real output: "debug*|up|infinite|1|idle|vm" and "short|up|4:00:00|1|idle|vm"
    rows = [line.split("|") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["debug*", "short"]
    assert [row[2] for row in rows] == ["infinite", "4:00:00"]
    assert all(row[1] == "up" and row[5] == cluster.nodename for row in rows)
    conf = cluster.run("scontrol", "show", "config").stdout
    assert f"ClusterName             = {CLUSTER_NAME}" in conf


def test_root_job_completes_with_output(cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = _sbatch(
        cluster,
        "#!/bin/sh\necho hello from $SLURM_JOB_ID on $(hostname -s)\n",
        f"--chdir={tmp_path}",
        "--job-name=rootjob",
    )
    seen = _wait_for(cluster, job_id, {"COMPLETED"})
    assert seen[0] in {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"}
    assert seen[-1] == "COMPLETED"
    line = _squeue_line(cluster, job_id)
    assert line == f"{job_id}|COMPLETED|None|{cluster.nodename}|rootjob"
    out = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert out.startswith(f"hello from {job_id} on ")


def test_user_job_runs_as_that_user(cluster: SlurmCluster) -> None:
    user = ensure_user(TEST_USER)
    workdir = Path(tempfile.mkdtemp(prefix="pwtest-", dir=user.pw_dir))
    try:
        os.chown(workdir, user.pw_uid, user.pw_gid)
        r = run_as(
            TEST_USER,
            ["sbatch", "--parsable", f"--chdir={workdir}", "--job-name=userjob"],
            env=cluster.env,
            input="#!/bin/sh\nid -un\npwd\n",
        )
        assert r.returncode == 0, r.stderr
        job_id = r.stdout.strip()
        _wait_for(cluster, job_id, {"COMPLETED"})
        show = cluster.run("scontrol", "show", "job", job_id).stdout
        assert f"UserId={TEST_USER}({user.pw_uid})" in show
        out_file = workdir / f"slurm-{job_id}.out"
        assert out_file.read_text().splitlines() == [TEST_USER, str(workdir)]
        assert out_file.stat().st_uid == user.pw_uid
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_scancel_leaves_job_cancelled(cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = _sbatch(cluster, "#!/bin/sh\nsleep 300\n", f"--chdir={tmp_path}", "-J", "sleeper")
    _wait_for(cluster, job_id, {"RUNNING"})
    r = cluster.run("scancel", job_id)
    assert r.returncode == 0, r.stderr
    _wait_for(cluster, job_id, {"CANCELLED"})
    show = cluster.run("scontrol", "show", "job", job_id)
    assert show.returncode == 0, show.stderr
    assert "JobState=CANCELLED" in show.stdout


def test_squeue_formats(cluster: SlurmCluster, tmp_path: Path) -> None:
    node = cluster.nodename
    running = _sbatch(cluster, "#!/bin/sh\nsleep 300\n", f"--chdir={tmp_path}", "-J", "fmt-run")
    held = _sbatch(cluster, "#!/bin/sh\ntrue\n", f"--chdir={tmp_path}", "-J", "fmt-held", "--hold")
    try:
        _wait_for(cluster, running, {"RUNNING"})
        assert _squeue_line(cluster, running) == f"{running}|RUNNING|None|{node}|fmt-run"
        # A pending job has an empty node list and a reason.
        assert _squeue_line(cluster, held) == f"{held}|PENDING|JobHeldUser||fmt-held"
        # Several ids at once, one line each.
        r = cluster.run("squeue", "-h", "-t", "all", "-j", f"{running},{held}", "-o", "%i|%T")
        assert sorted(r.stdout.split()) == sorted([f"{running}|RUNNING", f"{held}|PENDING"])
    finally:
        cluster.run("scancel", running, held)
    _wait_for(cluster, running, {"CANCELLED"})
    assert _squeue_line(cluster, running) == f"{running}|CANCELLED|None|{node}|fmt-run"
    # An unknown job id: rc 1 and an error, no lines.
    r = cluster.run("squeue", "-h", "-t", "all", "-j", "999999", "-o", "%i|%T")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "Invalid job id specified" in r.stderr


def test_invalid_partition_is_rejected(cluster: SlurmCluster) -> None:
    r = cluster.run("sbatch", "--parsable", "-p", "nosuchpartition", input="#!/bin/sh\ntrue\n")
    assert r.returncode == 1
    assert "Invalid partition name specified" in r.stderr

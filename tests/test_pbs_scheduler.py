"""PBSScheduler against the fake qsub/qstat/qdel, which print what PBS Pro 2022 and Torque 6 print."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime

import pytest

from pw_spawner.remote.executor import CommandResult, LocalExecutor
from pw_spawner.schedulers.base import JobRef
from pw_spawner.schedulers.pbs import (
    PBSScheduler,
    TorqueScheduler,
    job_complaints,
    parse_qstat_json,
    parse_qstat_text,
)
from pw_spawner.schedulers.reasons import job_words
from pw_spawner.status import JobState


class WithoutHistory(LocalExecutor):
    """Runs qstat without ``-x``, as on a PBS Pro site where history is not asked for."""

    async def run(self, argv: Sequence[str], **kwargs) -> CommandResult:
        return await super().run([a for a in argv if a != "-x"], **kwargs)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # PBS writes a job's output without -o to the submitting directory


async def _finished_job(sched, pbs: PBSScheduler, tmp_path) -> JobRef:
    executor = LocalExecutor()
    job_id = await pbs.submit(executor, "#!/bin/sh\ntrue\n", name="t", job_dir=str(tmp_path / "job"))
    sched.wait_for_state(job_id, "COMPLETED")
    return JobRef(job_id, "t", str(tmp_path / "job"))


@pytest.mark.parametrize("stderr", [
    "qstat: Unknown Job Id 123.srv\n",
    "qstat: Unknown Job Id Error 123.srv.example.org\n",
    "qdel: Unknown Job Id Error 123.srv\n",
    "qdel: nonexistent job id: 123.srv\n",
])
def test_gone_messages(stderr):
    assert job_complaints(stderr) == {"123": "gone"}


@pytest.mark.parametrize("stderr", [
    "qstat: 123.srv Job has finished, use -x or -H to obtain historical job information\n",
    "qdel: Job has finished 123.srv\n",
    "qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE 123.srv\n",
])
def test_finished_messages(stderr):
    assert job_complaints(stderr) == {"123": "finished"}


async def test_torque_forgotten_job_is_ended_not_unknown(fake_torque, tmp_path):
    pbs = TorqueScheduler()
    job = await _finished_job(fake_torque, pbs, tmp_path)
    executor = LocalExecutor()
    assert (await pbs.query(executor, [job]))[job.job_id].state is JobState.COMPLETED  # state C
    await pbs.cancel(executor, job)  # "Request invalid for state of job ... COMPLETE": nothing to do
    fake_torque.set_knobs(PW_FAKE_MIN_JOB_AGE=0)  # past keep_completed: "Unknown Job Id Error"
    info = (await pbs.query(executor, [job]))[job.job_id]
    assert (info.state, info.raw_state) == (JobState.COMPLETED, "GONE")
    await pbs.cancel(executor, job)


async def test_pbs_pro_finished_job_without_history(fake_pbs, tmp_path):
    pbs = PBSScheduler()
    job = await _finished_job(fake_pbs, pbs, tmp_path)
    other = JobRef("4242.fakepbs", "x", str(tmp_path))
    infos = await pbs.query(WithoutHistory(), [job, other])
    assert infos[job.job_id].state is JobState.COMPLETED  # "Job has finished, use -x ...", exit 35
    assert infos[other.job_id].raw_state == "GONE"
    await pbs.cancel(LocalExecutor(), job)  # "qdel: Job has finished"


async def test_pbs_pro_history_expired(fake_pbs, tmp_path):
    pbs = PBSScheduler()
    job = await _finished_job(fake_pbs, pbs, tmp_path)
    fake_pbs.set_knobs(PW_FAKE_JOB_HISTORY=0)
    info = (await pbs.query(LocalExecutor(), [job]))[job.job_id]
    assert (info.state, info.raw_state) == (JobState.COMPLETED, "GONE")
    await pbs.cancel(LocalExecutor(), job)


async def test_query_failure_is_unknown(fake_pbs, tmp_path):
    pbs = PBSScheduler()
    job = await _finished_job(fake_pbs, pbs, tmp_path)
    fake_pbs.set_knobs(PW_FAKE_QUERY_FAIL=1)
    assert (await pbs.query(LocalExecutor(), [job]))[job.job_id].state is JobState.UNKNOWN


# -- how a job ended (JobInfo.end_reason) -------------------------------------------------------------

def _pro_job(state: str = "F", **attrs) -> str:
    """``qstat -f -F json -x`` of one PBS Pro job, in the layout the fake and PBS Pro 2022 print."""
    job = {"Job_Name": "pw-alice", "job_state": state, "queue": "workq", "exec_host": "node1/0*2",
           "Resource_List": {"ncpus": 2, "nodect": 1, "walltime": "00:02:00"},
           "resources_used": {"walltime": "00:00:30"}, "comment": "Job run at Tue Nov 15 at 16:44 on "
           "(node1:ncpus=2) and finished", **attrs}
    return json.dumps({"timestamp": 1, "pbs_version": "2022.1.1", "pbs_server": "srv",
                       "Jobs": {"7.srv": job}})


@pytest.mark.parametrize(("attrs", "state", "end"), [
    ({"Exit_status": 0}, JobState.COMPLETED, "COMPLETED"),
    ({"Exit_status": 3}, JobState.FAILED, "FAILED"),
    ({"Exit_status": 137}, JobState.FAILED, "FAILED"),  # the script's own 128 + 9
    ({"Exit_status": -29, "resources_used": {"walltime": "00:02:01"}}, JobState.FAILED, "TIMEOUT"),
    ({"Exit_status": -27}, JobState.FAILED, "OUT_OF_MEMORY"),  # JOB_EXEC_KILL_MEM
    ({"Exit_status": -26}, JobState.FAILED, "OUT_OF_MEMORY"),  # JOB_EXEC_KILL_VMEM
    ({"Exit_status": -28}, JobState.FAILED, "CPU_LIMIT"),  # JOB_EXEC_KILL_CPUT
    ({"Exit_status": -25}, JobState.FAILED, "KILLED"),  # JOB_EXEC_KILL_NCPUS_SUM
    ({"Exit_status": -1}, JobState.FAILED, "LAUNCH_FAILED"),  # JOB_EXEC_FAIL1
    ({"Exit_status": -3}, JobState.CANCELLED, "LAUNCH_FAILED"),  # JOB_EXEC_RETRY; the state as before
    ({"Exit_status": 271}, JobState.CANCELLED, "CANCELLED"),  # qdel: 256 + SIGTERM
    ({"Exit_status": 265}, JobState.CANCELLED, "CANCELLED"),  # 256 + SIGKILL
    ({"Exit_status": 271, "resources_used": {"walltime": "00:02:00"}}, JobState.CANCELLED, "TIMEOUT"),
    ({"Exit_status": 262}, JobState.FAILED, "KILLED"),  # 256 + SIGABRT
    ({}, JobState.COMPLETED, ""),  # finished without an exit status: not said how
])
def test_pbs_pro_end_reasons(attrs, state, end):
    info = parse_qstat_json(_pro_job(**attrs))["7.srv"]
    assert (info.state, info.end_reason) == (state, end)


def test_pbs_pro_running_and_exiting_jobs():
    running = parse_qstat_json(_pro_job("R", comment="Job run at Tue Nov 15 at 16:44 on (node1:ncpus=2)"))
    assert running["7.srv"].end_reason == "" and job_words("pbs", running["7.srv"]) == ""
    queued = parse_qstat_json(_pro_job("Q", comment="Not Running: Insufficient amount of resource: ncpus "
                                                    "(R: 2 A: 0 T: 2)"))["7.srv"]
    assert (queued.end_reason, job_words("pbs", queued)) == ("", "waiting for free resources (ncpus)")
    exiting = parse_qstat_json(_pro_job("E", Exit_status=-29))["7.srv"]
    assert (exiting.state, exiting.end_reason) == (JobState.COMPLETED, "TIMEOUT")


TORQUE_JOB = """Job Id: 12.srv
    Job_Name = pw-alice
    resources_used.walltime = {used}
    job_state = C
    queue = batch
    exec_host = node1/0-1
    Resource_List.nodes = 1:ppn=2
    Resource_List.walltime = 00:02:00
    exit_status = {status}
"""


@pytest.mark.parametrize(("status", "used", "end"), [
    (0, "00:00:30", "COMPLETED"), (4, "00:00:30", "FAILED"),
    (-11, "00:02:01", "TIMEOUT"),  # JOB_EXEC_OVERLIMIT_WT (Torque 6)
    (-10, "00:00:30", "OUT_OF_MEMORY"),  # JOB_EXEC_OVERLIMIT_MEM
    (-12, "00:00:30", "CPU_LIMIT"),  # JOB_EXEC_OVERLIMIT_CPUT
    (-29, "00:00:30", "LAUNCH_FAILED"),  # not one of Torque's: PBS Pro's walltime code means nothing here
    (271, "00:02:05", "TIMEOUT"),  # "PBS: job killed: walltime 125 exceeded limit 120"
    (271, "00:00:30", "CANCELLED"),  # qdel
])
def test_torque_end_reasons(status, used, end):
    info = parse_qstat_text(TORQUE_JOB.format(status=status, used=used))["12.srv"]
    assert info.end_reason == end


@pytest.mark.parametrize("used", ["", "a:b", "99999999999:00", "-1", "1:2:3:4"])
def test_an_unreadable_walltime_is_no_time_limit(used):
    assert parse_qstat_text(TORQUE_JOB.format(status=271, used=used))["12.srv"].end_reason == "CANCELLED"


async def _ended(sched, pbs: PBSScheduler, tmp_path, script: str, state: str, walltime: str = "") -> str:
    executor = LocalExecutor()
    lines = f"#PBS -l walltime={walltime}\n" if walltime else ""
    job_dir = str(tmp_path / "job")
    job_id = await pbs.submit(executor, f"#!/bin/sh\n{lines}{script}\n", name="t", job_dir=job_dir)
    job = JobRef(job_id, "t", job_dir)
    if state == "CANCELLED":
        sched.wait_for_state(job_id, "RUNNING")
        await pbs.cancel(executor, job)
    sched.wait_for_state(job_id, state, timeout=10)
    for _ in range(100):  # until qstat shows it finished (E, then F or C)
        info = (await pbs.query(executor, [job]))[job_id]
        if info.raw_state in ("F", "C"):
            return info.end_reason
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never finished: {info}")


@pytest.mark.parametrize("flavor", ["pbs", "torque"])
async def test_the_fakes_end_reasons(flavor, request, tmp_path):
    sched = request.getfixturevalue(f"fake_{flavor}")
    pbs = PBSScheduler() if flavor == "pbs" else TorqueScheduler()
    assert await _ended(sched, pbs, tmp_path, "true", "COMPLETED") == "COMPLETED"
    assert await _ended(sched, pbs, tmp_path, "exit 3", "FAILED") == "FAILED"
    assert await _ended(sched, pbs, tmp_path, "sleep 30", "CANCELLED") == "CANCELLED"
    assert await _ended(sched, pbs, tmp_path, "sleep 30", "TIMEOUT", walltime="00:00:01") == "TIMEOUT"


def test_pbs_pro_estimated_start_of_a_queued_job():
    queued = parse_qstat_json(_pro_job("Q", comment="Not Running: Insufficient amount of resource",
                                       estimated={"exec_vnode": "(node1:ncpus=2)",
                                                  "start_time": "Wed Dec  2 14:05:00 2026"}))["7.srv"]
    assert queued.estimated_start is not None
    assert queued.estimated_start.replace(tzinfo=None) == datetime(2026, 12, 2, 14, 5)
    # The text form of qstat -f says it as estimated.start_time.
    torque_like = parse_qstat_text("Job Id: 8.srv\n    job_state = Q\n"
                                   "    estimated.start_time = Thu Dec  3 08:00:00 2026\n", flavor="pro")
    assert torque_like["8.srv"].estimated_start == datetime(2026, 12, 3, 8, 0).astimezone()
    # Not for a running job, nor from a value that is no time.
    running = parse_qstat_json(_pro_job("R", estimated={"start_time": "Wed Dec  2 14:05:00 2026"}))
    assert running["7.srv"].estimated_start is None
    for bad in ("soon", 1764684300, "Wed Dec 32 14:05:00 2026", "x" * 1000):
        info = parse_qstat_json(_pro_job("Q", estimated={"start_time": bad}))["7.srv"]
        assert info.estimated_start is None

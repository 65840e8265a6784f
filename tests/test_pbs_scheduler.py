"""PBSScheduler against the fake qsub/qstat/qdel, which print what PBS Pro 2022 and Torque 6 print."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pw_spawner.remote.executor import CommandResult, LocalExecutor
from pw_spawner.schedulers.base import JobRef
from pw_spawner.schedulers.pbs import PBSScheduler, TorqueScheduler, job_complaints
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

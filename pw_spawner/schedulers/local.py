"""The ``local`` target (the embedded default): jobs are process groups on the hub host.

No scheduler is needed: the runner (:mod:`pw_spawner.schedulers.local_runner`) starts the script
detached and keeps its pid and exit status in the job directory. The ``controller`` target uses the
same runner on a cluster's login node.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..remote.executor import Executor, ExecutorError
from ..status import JobState
from . import local_runner
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError

#: The runner's source, sent with each command of the ``controller`` target: read once, not at
#: every scheduler made for a poll.
RUNNER_SOURCE = Path(local_runner.__file__).read_text()

_STATES = {
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "LOST": JobState.FAILED,
    "NOT_FOUND": JobState.COMPLETED,
}


class LocalScheduler(Scheduler):
    """Jobs on the hub host itself, through the local runner."""

    kind = "local"
    summary = "runs the app on the hub host (no scheduler needed)"
    beside_the_hub = True
    on_resources = False
    submit_checks_job_dir = True
    job_id_variable = "PW_LOCAL_JOB_ID"  # set by the runner's wrapper: the process group's id

    def __init__(self, python: str = sys.executable, *, niceness: int = 0):
        #: How much lower than the hub's the jobs' CPU priority is (they share the host with it).
        self.niceness = niceness
        # -I: the runner must not import a "pw_spawner" planted in the hub's working directory
        # (it runs as every user who spawns).
        # By its path, and -S (no site-packages): the runner is standard library only, and
        # importing the package would cost every call (a spawn, a status refresh) tenths of a second.
        self.runner: tuple[str, ...] = (python, "-I", "-S", str(Path(local_runner.__file__)))

    @classmethod
    def _make(cls, *, job_niceness: int) -> LocalScheduler:
        # Its jobs share a host with the hub or a login node's users: they run below them.
        return cls(niceness=job_niceness)

    @classmethod
    def on_login_node(cls, python: str = "python3", *, niceness: int = 0) -> LocalScheduler:
        """The ``controller`` target (see :class:`ControllerScheduler`)."""
        return ControllerScheduler(python, niceness=niceness)

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        try:
            result = await executor.run([*self.runner, "submit", job_dir, str(self.niceness)], input=script)
        except ExecutorError as exc:
            raise SubmitError(str(exc)) from exc
        job_id = result.stdout.strip()
        if not result.ok or not job_id.isdigit():
            raise SubmitError(f"the job could not be started: {result.message()}")
        return job_id

    @staticmethod
    def _info(job: JobRef, record: dict) -> JobInfo:
        if str(record.get("pid")) != job.job_id and record.get("state") == "RUNNING":
            # The job dir now belongs to a later job: this one has ended.
            return JobInfo(job.job_id, JobState.COMPLETED, "REPLACED")
        raw = str(record.get("state"))
        return JobInfo(job.job_id, _STATES.get(raw, JobState.UNKNOWN), raw,
                       node="localhost" if raw == "RUNNING" else None,
                       exit_code=record.get("exit_code"))

    async def _records(self, executor: Executor, jobs: Sequence[JobRef]) -> list[dict] | str:
        """The runner's record of every job (one call), or why there are none."""
        if executor.in_hub_process:
            # The runner would run as the hub's own account on this host: its (standard-library)
            # status function runs in a thread instead, with no process start.
            try:
                return await asyncio.to_thread(
                    lambda: [local_runner.job_status(job.job_dir) for job in jobs])
            except OSError as exc:
                return f"cannot read the job directories: {exc}"
        try:
            result = await executor.run([*self.runner, "status", *(job.job_dir for job in jobs)])
        except ExecutorError as exc:
            return str(exc)
        if not result.ok:
            return result.message()
        try:
            records = [json.loads(line) for line in result.stdout.splitlines()]
        except json.JSONDecodeError as exc:
            return f"unreadable runner output: {exc}"
        if len(records) != len(jobs) or not all(isinstance(r, dict) for r in records):
            return "the runner answered for other jobs than asked"
        return records

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        if not jobs:
            return {}
        records = await self._records(executor, jobs)
        if isinstance(records, str):
            return {job.job_id: JobInfo.unknown(job.job_id, records) for job in jobs}
        return {job.job_id: self._info(job, record) for job, record in zip(jobs, records, strict=True)}

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        if executor.in_hub_process:
            try:
                await asyncio.to_thread(local_runner.cancel, job.job_dir)
            except OSError as exc:
                raise SchedulerError(f"could not stop the job: {exc}") from None
            return
        try:
            result = await executor.run([*self.runner, "cancel", job.job_dir], timeout=30)
        except ExecutorError as exc:
            raise SchedulerError(f"could not stop the job: {exc}") from exc
        if not result.ok:
            raise SchedulerError(f"could not stop the job: {result.message()}")

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        records = await self._records(executor, [JobRef("", name, job_dir)])
        if isinstance(records, str):
            raise SchedulerError(f"cannot list jobs: {records}")
        record = records[0]
        # Running, with a pid no hub state knows.
        return [str(record["pid"])] if record.get("state") == "RUNNING" and record.get("pid") else []


class ControllerScheduler(LocalScheduler):
    """The ``controller`` target: jobs on a resource's login node, through the same runner.

    The runner's source travels with each command, so a login node needs only a python3, not
    pw_spawner (the source is code, no secret, in argv).
    """

    kind = "controller"
    summary = "runs the app on a resource's login node, through SSH (no scheduler needed)"
    on_resources = True

    def __init__(self, python: str = "python3", *, niceness: int = 0):
        super().__init__(python, niceness=niceness)
        self.runner = (python, "-I", "-S", "-c", RUNNER_SOURCE)

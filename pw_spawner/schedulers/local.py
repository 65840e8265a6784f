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

_STATES = {
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "LOST": JobState.FAILED,
    "NOT_FOUND": JobState.COMPLETED,
}


class LocalScheduler(Scheduler):
    kind = "local"

    def __init__(self, python: str = sys.executable):
        # -I: the runner must not import a "pw_spawner" planted in the hub's working directory
        # (it runs as every user who spawns).
        self.runner: tuple[str, ...] = (python, "-I", "-m", "pw_spawner.schedulers.local_runner")

    @classmethod
    def on_login_node(cls, python: str = "python3") -> LocalScheduler:
        """The ``controller`` target: the runner's source travels with each command, so a login
        node needs only a python3, not pw_spawner (the source is code, no secret, in argv)."""
        scheduler = cls(python)
        scheduler.runner = (python, "-I", "-c", Path(local_runner.__file__).read_text())
        return scheduler

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        try:
            result = await executor.run([*self.runner, "submit", job_dir], input=script)
        except ExecutorError as exc:
            raise SubmitError(str(exc)) from exc
        job_id = result.stdout.strip()
        if not result.ok or not job_id.isdigit():
            raise SubmitError(f"the job could not be started: {result.message()}")
        return job_id

    async def _query_one(self, executor: Executor, job: JobRef) -> JobInfo:
        try:
            result = await executor.run([*self.runner, "status", job.job_dir])
            record = json.loads(result.stdout) if result.ok else None
        except (ExecutorError, json.JSONDecodeError) as exc:
            return JobInfo.unknown(job.job_id, str(exc))
        if record is None:
            return JobInfo.unknown(job.job_id, result.message())
        if str(record.get("pid")) != job.job_id and record.get("state") == "RUNNING":
            # The job dir now belongs to a later job: this one has ended.
            return JobInfo(job.job_id, JobState.COMPLETED, "REPLACED")
        raw = str(record.get("state"))
        return JobInfo(job.job_id, _STATES.get(raw, JobState.UNKNOWN), raw,
                       node="localhost" if raw == "RUNNING" else None,
                       exit_code=record.get("exit_code"))

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        infos = await asyncio.gather(*(self._query_one(executor, job) for job in jobs))
        return {info.job_id: info for info in infos}

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        try:
            result = await executor.run([*self.runner, "cancel", job.job_dir], timeout=30)
        except ExecutorError as exc:
            raise SchedulerError(f"could not stop the job: {exc}") from exc
        if not result.ok:
            raise SchedulerError(f"could not stop the job: {result.message()}")

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        info = await self._query_one(executor, JobRef("", name, job_dir))
        if info.raw_state == "REPLACED":  # running, with the pid we did not know
            result = await executor.run([*self.runner, "status", job_dir])
            return [str(json.loads(result.stdout)["pid"])]
        return []

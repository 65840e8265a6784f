"""One scheduler query for many spawners.

Every spawner in a hub polls its job; a hub with hundreds of servers would run hundreds of squeue
calls a minute. Queries that arrive within a short window are answered by one scheduler call per
(scheduler, executor) pair, which is what keeps a busy hub from loading slurmctld.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from ..remote.executor import Executor
from .base import JobInfo, JobRef, Scheduler


class StatusBatcher:
    """Coalesces :meth:`Scheduler.query` calls made within ``window`` seconds.

    The spawner shares one batcher per (scheduler, exec prefix after ``{username}`` is filled
    in). With a prefix such as ``sudo -u {username} --`` that is one batcher, and so one query
    per window, per *user*, not per cluster: the batching then only merges a user's own servers.
    That is deliberate. A query runs as the account of the prefix, and on sites with Slurm's
    ``PrivateData=jobs`` (or PBS's ``query_other_jobs = false``) an account sees only its own
    jobs, so a squeue run as alice would report bob's job as missing. Batching across users
    would need a query account that may see every job (a Slurm operator, or an empty prefix
    on a site without PrivateData), which the spawner cannot tell from here.
    """

    _shared: dict[Hashable, StatusBatcher] = {}

    def __init__(self, scheduler: Scheduler, executor: Executor, window: float = 0.2):
        self.scheduler, self.executor, self.window = scheduler, executor, window
        self._waiting: dict[str, tuple[JobRef, list[asyncio.Future]]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self.queries = 0  # how many scheduler calls were made, for tests and benchmarks

    @classmethod
    def shared(cls, key: Hashable, scheduler: Scheduler, executor: Executor,
               window: float = 0.2) -> StatusBatcher:
        """The batcher for ``key`` (one per cluster and account), made on first use."""
        loop = asyncio.get_running_loop()
        batcher = cls._shared.get((key, id(loop)))
        if batcher is None:
            batcher = cls._shared[(key, id(loop))] = cls(scheduler, executor, window)
        return batcher

    async def query(self, job: JobRef) -> JobInfo:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job.job_id, (job, []))[1].append(future)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(
                self.window, lambda: asyncio.ensure_future(self._run()))
        return await future

    async def _run(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, {}
        self.queries += 1
        try:
            infos = await self.scheduler.query(self.executor, [job for job, _ in waiting.values()])
        except Exception as exc:
            infos = {job_id: JobInfo.unknown(job_id, str(exc)) for job_id in waiting}
        for job_id, (_, futures) in waiting.items():
            info = infos.get(job_id) or JobInfo.unknown(job_id, "no answer for this job")
            for future in futures:
                if not future.done():
                    future.set_result(info)

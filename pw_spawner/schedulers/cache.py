"""One scheduler query per cluster per refresh interval, for every job the hub follows there.

A hub with a thousand servers polls a thousand jobs; slurmctld is shared with every batch user of
the cluster. :class:`StatusCache` keeps the last answer for every job of one cluster (one scheduler
reached through one query account) and refreshes all of them with one query when someone asks
for an answer older than they accept: ``poll()`` accepts the refresh interval, a start in progress
asks for fresher answers, so that spawns stay fast. Refreshes are coalesced: whoever asks while one
is being prepared or is in flight gets its answer, and every poll at hub start (JupyterHub polls
every server at once) is answered by one query.

A failed query makes every job of that cluster UNKNOWN (never "gone"); the scheduler module
itself confirms a job missing from its answer by a second source before it reports it ended.

How a job ended (``JobInfo.end_reason``) is kept: once a refresh has said it (``TIMEOUT``,
``OUT_OF_MEMORY``...), a later answer that says less (a job the scheduler has since forgotten,
"gone", or one with a bare exit code) does not replace that answer; a job that runs again
(requeued) starts over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable

from ..remote.executor import Executor
from .base import JobInfo, JobRef, Scheduler
from .reasons import GENERIC_END_REASONS

#: Jobs nobody asked about for this long are dropped (their spawner is gone).
IDLE_JOB_SECONDS = 900.0


class StatusCache:
    """The last answer for every followed job of one cluster; see the module docstring."""

    _shared: dict[asyncio.AbstractEventLoop, dict[Hashable, StatusCache]] = {}

    def __init__(self, scheduler: Scheduler, executor: Executor, *, refresh_interval: float = 15.0,
                 window: float = 0.05):
        self.scheduler, self.executor = scheduler, executor
        self.refresh_interval, self.window = refresh_interval, window
        self._jobs: dict[str, JobRef] = {}
        self._asked: dict[str, float] = {}
        self._answers: dict[str, tuple[float, JobInfo]] = {}
        self._ended: dict[str, JobInfo] = {}  # the answer that said how each ended job ended
        self._next: asyncio.Future[None] | None = None  # the refresh being prepared
        self._inflight: asyncio.Future[None] | None = None
        self._inflight_ids: set[str] = set()
        self._task: asyncio.Future[None] | None = None  # kept referenced while it runs
        #: Scheduler queries made, for tests and benchmarks.
        self.queries = 0

    @classmethod
    def shared(cls, key: Hashable, make: Callable[[], StatusCache]) -> StatusCache:
        """The running loop's cache for ``key`` (one cluster and query account), made on first use."""
        loop = asyncio.get_running_loop()
        for other in [other for other in cls._shared if other.is_closed()]:
            cls._shared.pop(other, None)
        caches = cls._shared.setdefault(loop, {})
        if key not in caches:
            caches[key] = make()
        return caches[key]

    def forget(self, job_id: str) -> None:
        """Stop following a job (its server stopped)."""
        for table in (self._jobs, self._asked, self._answers, self._ended):
            table.pop(job_id, None)

    def cached(self, job_id: str) -> tuple[float, JobInfo] | None:
        """(when, answer) of the last refresh that answered for ``job_id``."""
        return self._answers.get(job_id)

    async def status(self, job: JobRef, max_age: float | None = None) -> JobInfo:
        """The job's state, from an answer at most ``max_age`` seconds old (default: the interval)."""
        now = time.monotonic()
        self._jobs[job.job_id] = job
        self._asked[job.job_id] = now
        limit = self.refresh_interval if max_age is None else max_age
        answer = self._answers.get(job.job_id)
        if answer is not None and now - answer[0] <= limit:
            return answer[1]
        if self._inflight is not None and job.job_id in self._inflight_ids:
            await asyncio.shield(self._inflight)
        else:
            await asyncio.shield(self._schedule())
        answer = self._answers.get(job.job_id)
        return answer[1] if answer is not None else JobInfo.unknown(job.job_id, "no answer for this job")

    def _schedule(self) -> asyncio.Future[None]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._refresh(self._next))
        return self._next

    async def _refresh(self, done: asyncio.Future[None]) -> None:
        try:
            while self._inflight is not None:  # one query at a time per cluster
                await asyncio.wait([self._inflight])
            # A short wait gathers everyone who asks at about the same moment (hub start).
            await asyncio.sleep(self.window)
            self._next = None
            self._inflight, started = done, time.monotonic()
            self._drop_idle(started)
            jobs = list(self._jobs.values())
            self._inflight_ids = {job.job_id for job in jobs}
            self.queries += 1
            try:
                infos = await self.scheduler.query(self.executor, jobs)
            except Exception as exc:  # a failing query is an unknown state, not a dead job
                infos = {job.job_id: JobInfo.unknown(job.job_id, str(exc)) for job in jobs}
            for job in jobs:
                if job.job_id in self._jobs:
                    info = infos.get(job.job_id) or JobInfo.unknown(job.job_id, "no answer for this job")
                    self._answers[job.job_id] = (started, self._keeping_end_reason(info))
        finally:
            if self._next is done:
                self._next = None
            if self._inflight is done:
                self._inflight, self._inflight_ids = None, set()
            if not done.done():
                done.set_result(None)

    def _keeping_end_reason(self, info: JobInfo) -> JobInfo:
        """``info``, or the earlier answer that said how the job ended when ``info`` says less."""
        ended = self._ended.get(info.job_id)
        if info.state.active:  # requeued: it has not ended after all
            self._ended.pop(info.job_id, None)
        elif info.state.finished:
            says_less = not info.end_reason or (
                info.end_reason in GENERIC_END_REASONS and ended is not None
                and ended.end_reason not in GENERIC_END_REASONS)
            if ended is not None and says_less:
                return ended
            if info.end_reason:
                self._ended[info.job_id] = info
        return info

    def _drop_idle(self, now: float) -> None:
        idle = max(IDLE_JOB_SECONDS, 10 * self.refresh_interval)
        for job_id in [j for j, asked in self._asked.items() if now - asked > idle]:
            self.forget(job_id)

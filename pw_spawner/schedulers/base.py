"""The interface every scheduler module implements, and the records they return."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..remote.executor import Executor
from ..status import JobState


class SchedulerError(RuntimeError):
    """The scheduler refused or failed a command; ``message`` is fit to show the user."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class SubmitError(SchedulerError):
    """The job was not submitted (invalid partition, a QOS limit, no scheduler...)."""


@dataclass(frozen=True)
class JobRef:
    """What identifies a job to its scheduler and to the hub."""

    job_id: str
    name: str
    job_dir: str


@dataclass(frozen=True)
class JobInfo:
    """One answer about one job."""

    job_id: str
    state: JobState
    raw_state: str = ""
    reason: str = ""
    node: str | None = None
    exit_code: int | None = None

    @classmethod
    def unknown(cls, job_id: str, why: str) -> JobInfo:
        return cls(job_id, JobState.UNKNOWN, "UNKNOWN", why)


class Scheduler(abc.ABC):
    """Submit, follow and cancel jobs through an executor."""

    #: The ``scheduler`` kind for script rendering (``slurm``, ``pbs``, ``torque``, ``local``).
    kind: str = ""

    @abc.abstractmethod
    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        """Submit ``script`` (sent on stdin); returns the job id or raises :class:`SubmitError`."""

    @abc.abstractmethod
    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        """The state of every job in ``jobs`` (UNKNOWN where it cannot be told), keyed by id."""

    @abc.abstractmethod
    async def cancel(self, executor: Executor, job: JobRef) -> None:
        """Ask the scheduler to end the job; a job that already ended is not an error."""

    @abc.abstractmethod
    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        """Ids of unfinished jobs with this name (a hub that died before saving its state)."""

    async def shows_other_users_jobs(self, executor: Executor) -> bool | None:
        """Whether a query run by ``executor`` lists every user's jobs (None: cannot tell)."""
        return os.geteuid() == 0 and not getattr(executor, "prefix", ())

"""The interface every scheduler module implements, and the records they return."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from ..config_schema import Declared, first_error
from ..remote.executor import CommandResult, Executor, ExecutorError
from ..status import JobState

if TYPE_CHECKING:
    from ..profiles import JobSpec


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
    #: How a finished job ended, as a machine code of :data:`.reasons.END_REASONS` (``TIMEOUT``,
    #: ``OUT_OF_MEMORY``, ``CANCELLED``...), where the scheduler's answer says it; empty otherwise.
    end_reason: str = ""
    #: When the scheduler expects a queued job to start (timezone-aware), where it says: Slurm's
    #: backfill estimate; None for a job that is not queued or when the scheduler has no estimate.
    estimated_start: datetime | None = None

    @classmethod
    def unknown(cls, job_id: str, why: str) -> JobInfo:
        return cls(job_id, JobState.UNKNOWN, "UNKNOWN", why)


class NoSettings(Declared):
    """This scheduler has no site settings."""


class SettingsError(ValueError):
    """A scheduler's site settings are wrong: names the key and says why."""

    def __init__(self, kind: str, key: str, reason: str):
        self.kind, self.key, self.reason = kind, key, reason
        super().__init__(f"{key}: {reason}" if key else reason)


class Scheduler(abc.ABC):
    """Submit, follow and cancel jobs through an executor, and write the job script's directives.

    A class with a ``kind`` is registered under that name (see :mod:`pw_spawner.schedulers`):
    the ``scheduler`` setting, a resource's ``scheduler``, ``pw-spawner --scheduler`` and a
    profile's ``extra_directives`` keys all list the registered kinds.
    """

    #: The name admins give in ``c.PWSpawner.scheduler`` and a resource's ``scheduler``.
    kind: ClassVar[str] = ""
    #: What it is, for the ``scheduler`` option's help ("submits with sbatch").
    summary: ClassVar[str] = ""
    #: How its directive lines start in a job script (``#SBATCH``); empty: it reads none, and a
    #: profile's ``extra_directives`` has no key for it.
    directive_prefix: ClassVar[str] = ""
    #: Whether its jobs run on the host the app is reached from (the hub host, or the login node
    #: a tunnel starts from), so that the app listens on loopback; batch jobs run on other nodes.
    beside_the_hub: ClassVar[bool] = False
    #: Whether a resource (a cluster reached over SSH) may use it.
    on_resources: ClassVar[bool] = True
    #: Whether its submit checks the job directory as the job's account, just before the job
    #: starts (then the job script need not check it again).
    submit_checks_job_dir: ClassVar[bool] = False
    #: Variables its client commands need from the hub's environment (where the controller is):
    #: passed to them, never anything else of the hub's.
    client_environment: ClassVar[tuple[str, ...]] = ()
    #: The variable in which the job finds its own id (``SLURM_JOB_ID``); the job reports it in
    #: service.json, and the hub checks it is the job it submitted.
    job_id_variable: ClassVar[str] = ""
    #: Prefixes of the variables the scheduler sets in a job (``SLURM_``): a user may not set them.
    environment_prefixes: ClassVar[tuple[str, ...]] = ()
    #: The site settings this scheduler takes (``c.PWSpawner.scheduler_settings``, a resource's
    #: ``scheduler_settings``), declared as a model: validated, documented and in the JSON Schema.
    Settings: ClassVar[type[Declared]] = NoSettings

    #: This instance's site settings.
    settings: Declared = NoSettings()

    @classmethod
    def read_settings(cls, data: Mapping[str, Any] | None) -> Declared:
        """The site settings from the admin's mapping; :class:`SettingsError` names what is wrong."""
        try:
            return cls.Settings.model_validate(dict(data or {}))
        except ValidationError as exc:
            key, reason = first_error(exc)
            raise SettingsError(cls.kind, key, reason) from None

    @classmethod
    def configured(cls, *, job_niceness: int = 0, settings: Mapping[str, Any] | None = None) -> Scheduler:
        """An instance with the spawner's settings that apply to this scheduler and the site's own."""
        scheduler = cls._make(job_niceness=job_niceness)
        scheduler.settings = cls.read_settings(settings)
        return scheduler

    @classmethod
    def _make(cls, *, job_niceness: int) -> Scheduler:
        """An instance with the spawner's settings that apply to it (none by default)."""
        return cls()

    @classmethod
    def default_bind_ip(cls) -> str:
        """Where the app listens when the admin sets no ``bind_ip``: loopback where the app runs on
        the host that reaches it, all addresses on a compute node (reached from outside)."""
        return "127.0.0.1" if cls.beside_the_hub else "0.0.0.0"

    def directives(self, job: JobSpec, name: str, output: str) -> list[str]:
        """The directive lines for ``job`` (named ``name``, its output in ``output``), prefix included,
        with the profile's ``extra_directives`` for this kind at the end; none by default."""
        return []

    async def _submit_in(self, executor: Executor, job_dir: str, argv: Sequence[str], script: str,
                         scheduler_name: str) -> CommandResult:
        """Make the job directory (the scheduler opens the job's output file there), then run the
        submit command ``argv`` with the script on stdin; SubmitError when either cannot run."""
        try:
            made = await executor.run(["mkdir", "-p", "-m", "0700", "--", job_dir])
            if not made.ok:
                raise SubmitError(f"cannot create the job directory: {made.message()}")
            return await executor.run(argv, input=script, timeout=60)
        except ExecutorError as exc:
            raise SubmitError(f"{scheduler_name} could not be reached: {exc}") from exc

    #: Whether :meth:`warning_directives` asks this scheduler for a signal before the walltime ends.
    warns_before_walltime: ClassVar[bool] = False

    def warning_directives(self, job: JobSpec, seconds: int) -> list[str]:
        """Directive lines that ask the scheduler to send the job's shell ``SIGUSR1`` ``seconds``
        before its walltime ends (none where the scheduler has no such signal, or when the
        walltime is not longer than the warning)."""
        return []

    def _prefixed(self, lines: Sequence[str], job: JobSpec) -> list[str]:
        return [f"{self.directive_prefix} {line}" for line in (*lines, *job.extra_for(self.kind))]

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

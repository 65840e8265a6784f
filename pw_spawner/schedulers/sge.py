"""Grid Engine (Son of Grid Engine 8.1, Univa/Altair Grid Engine): ``qsub`` (script on stdin),
``qstat -xml``, ``qdel``, and ``qacct`` for jobs that have left ``qstat``.

Everything about Grid Engine is here: its ``#$`` directives (``-pe`` for cores, ``h_vmem`` per
slot, ``h_rt``), its job states, how its commands say that a job does not exist, and how a job
missing from ``qstat`` is told ended (``qacct`` where accounting has it, else gone).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import Annotated

from ..config_schema import Declared, matching
from ..profiles import JobSpec, format_walltime
from ..remote.executor import Executor, ExecutorError
from ..status import JobState
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError

#: ``qstat``'s state letters, one word per job: ``qw`` waiting, ``hqw`` held, ``r`` running,
#: ``t`` being transferred to its node, ``Eqw`` in error (it will not run), ``dr`` being deleted,
#: ``s``/``S``/``T`` suspended, ``R`` restarted, ``z`` finished (``qstat -s z`` only). The letter
#: that decides comes first here.
_DECIDING = (
    ("z", JobState.COMPLETED), ("E", JobState.FAILED), ("d", JobState.CANCELLED),
    ("r", JobState.RUNNING), ("t", JobState.STARTING), ("R", JobState.RUNNING),
    ("s", JobState.PENDING), ("S", JobState.PENDING), ("T", JobState.PENDING),
    ("h", JobState.PENDING), ("q", JobState.PENDING), ("w", JobState.PENDING),
)

#: Why a job waits, in words, from its state letters (qstat -xml gives no reason).
_WAITING = {"h": "held", "E": "in error (see qstat -j)", "s": "suspended", "S": "suspended",
            "T": "suspended (threshold)"}

_NO_SUCH_JOB = re.compile(r"do(es)? not exist|not found", re.IGNORECASE)


def sge_state(letters: str) -> JobState:
    """Our state for a ``qstat`` state word (``qw``, ``hqw``, ``r``, ``Eqw``...)."""
    for letter, state in _DECIDING:
        if letter in letters:
            return state
    return JobState.UNKNOWN


def parse_qstat_xml(text: str) -> dict[str, JobInfo]:
    """Every job of ``qstat -xml`` (running ones under ``queue_info``, waiting ones under
    ``job_info``); ValueError when the text is not qstat's XML."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"unreadable qstat -xml output: {exc}") from None
    infos: dict[str, JobInfo] = {}
    for job in root.iter("job_list"):
        job_id = (job.findtext("JB_job_number") or "").strip()
        letters = (job.findtext("state") or "").strip()
        if not job_id.isdigit():
            continue
        queue = (job.findtext("queue_name") or "").strip()
        node = queue.split("@", 1)[1] if "@" in queue else None
        reason = next((why for letter, why in _WAITING.items() if letter in letters), "")
        infos[job_id] = JobInfo(job_id, sge_state(letters), letters, reason=reason, node=node)
    return infos


def parse_qacct(text: str, job_id: str) -> JobInfo | None:
    """``qacct -j ID``: the job's last record (``failed``, ``exit_status``, ``hostname``)."""
    records = re.split(r"^=+\s*$", text, flags=re.MULTILINE)
    for record in reversed(records):
        fields = dict(re.findall(r"^(\w+)\s+(.*?)\s*$", record, flags=re.MULTILINE))
        if fields.get("jobnumber") != job_id:
            continue
        failed = fields.get("failed", "0").split()[0]
        code_text = fields.get("exit_status", "").split()[0] if fields.get("exit_status") else ""
        code = int(code_text) if code_text.isdigit() else None
        if failed != "0":
            state, raw = JobState.FAILED, f"FAILED {fields.get('failed')}"
        elif code not in (None, 0):
            state, raw = JobState.FAILED, f"EXIT {code}"
        else:
            state, raw = JobState.COMPLETED, "DONE"
        return JobInfo(job_id, state, raw, node=fields.get("hostname") or None, exit_code=code)
    return None


def submit_error_message(stderr: str, stdout: str = "") -> str:
    """The part of qsub's complaint a user can act on."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    refusals = [line for line in lines if line.startswith("Unable to run job")]
    picked = refusals[0] if refusals else (lines[-1] if lines else "")
    return picked.removeprefix("Unable to run job: ").strip() or "qsub failed without saying why"


_COMPLEX = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
ComplexName = Annotated[str, matching(_COMPLEX, "{value!r} is not a Grid Engine name")]


class GridEngineSettings(Declared):
    """What Grid Engine sites name differently (``c.PWSpawner.scheduler_settings`` or a resource's
    ``scheduler_settings``)."""

    parallel_environment: ComplexName = "smp"
    """The parallel environment that gives a job several slots on one host (`qconf -spl` lists
    them; sites name theirs `smp`, `threaded`, `shm`...)."""
    memory_resources: tuple[ComplexName, ...] = ("h_vmem",)
    """The consumables a job's memory is asked with, per slot: `h_vmem` (a hard limit), and/or
    `mem_free` or `virtual_free` where the site schedules on those."""
    gpu_resource: ComplexName = "gpu"
    """The consumable complex GPUs are asked with (`qconf -sc`)."""


class GridEngineScheduler(Scheduler):
    """Son of Grid Engine and its descendants."""

    kind = "sge"
    summary = "submits with qsub, Grid Engine (`#$ -pe` directives)"
    directive_prefix = "#$"
    job_id_variable = "JOB_ID"
    client_environment = ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT")
    environment_prefixes = ("SGE_",)
    Settings = GridEngineSettings
    settings: GridEngineSettings = GridEngineSettings()

    def directives(self, job: JobSpec, name: str, output: str) -> list[str]:
        # Grid Engine runs a script with the queue's shell (csh by default) unless told; the
        # job's output and error go to one file, appended to like Slurm's.
        lines = [f"-N {name}", f"-o {output}", "-j y", "-S /bin/bash"]
        if job.partition:
            lines.append(f"-q {job.partition}")
        if job.cores > 1:
            lines.append(f"-pe {self.settings.parallel_environment} {job.cores}")
        if job.memory_mb:
            # Memory requests are per slot: the job's memory divided among its cores.
            per_slot = -(-job.memory_mb // job.cores)
            lines += [f"-l {resource}={per_slot}M" for resource in self.settings.memory_resources]
        lines.append(f"-l h_rt={format_walltime(job.walltime_s)}")
        if job.gpus:
            lines.append(f"-l {self.settings.gpu_resource}={job.gpus}")
        if job.account:
            lines.append(f"-A {job.account}")
        return self._prefixed(lines, job)

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        # -terse: only the job id on stdout ("12", or "12.1-4:1" for an array).
        result = await self._submit_in(executor, job_dir, ["qsub", "-terse"], script, "Grid Engine")
        job_id = result.stdout.strip().split(".", 1)[0]
        if not result.ok or not job_id.isdigit():
            said = submit_error_message(result.stderr, result.stdout)
            raise SubmitError(f"Grid Engine refused the job: {said}")
        return job_id

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        ids = [job.job_id for job in jobs]
        if not ids:
            return {}
        # Every user's jobs in one call (filtered here): qstat takes no list of job ids.
        try:
            result = await executor.run(["qstat", "-xml", "-u", "*"])
        except ExecutorError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        if not result.ok:
            return {i: JobInfo.unknown(i, result.message()) for i in ids}
        try:
            listed = parse_qstat_xml(result.stdout)
        except ValueError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        infos = {i: listed[i] for i in ids if i in listed}
        for job_id in (i for i in ids if i not in listed):
            infos[job_id] = await self._confirm(executor, job_id)
        return infos

    async def _confirm(self, executor: Executor, job_id: str) -> JobInfo:
        """A job qstat did not list has ended: how, from accounting; gone where it has no record.

        ``qstat -j`` first: a job that qstat -xml missed but the master still holds (the two
        answers are moments apart) is not declared ended.
        """
        try:
            held = await executor.run(["qstat", "-j", job_id])
            if held.ok:
                return JobInfo.unknown(job_id, "qstat -j still knows the job")
            if not _NO_SUCH_JOB.search(held.stdout + held.stderr):
                return JobInfo.unknown(job_id, held.message())
            acct = await executor.run(["qacct", "-j", job_id])
        except ExecutorError as exc:
            return JobInfo.unknown(job_id, str(exc))
        found = parse_qacct(acct.stdout, job_id) if acct.ok else None
        return found or JobInfo(job_id, JobState.COMPLETED, "GONE", "no longer known to Grid Engine")

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        try:
            result = await executor.run(["qdel", job.job_id])
        except ExecutorError as exc:
            raise SchedulerError(f"could not cancel job {job.job_id}: {exc}") from exc
        if not result.ok and not _NO_SUCH_JOB.search(result.stdout + result.stderr):
            raise SchedulerError(f"could not cancel job {job.job_id}: {result.message()}")

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        # Only this account's jobs: anyone may name a job "pw-alice".
        result = await executor.run(["qstat", "-xml", "-u", executor.account])
        if not result.ok:
            raise SchedulerError(f"cannot list jobs: {result.message()}")
        try:
            root = ElementTree.fromstring(result.stdout)
        except ElementTree.ParseError as exc:
            raise SchedulerError(f"cannot list jobs: unreadable qstat -xml output: {exc}") from None
        return [(job.findtext("JB_job_number") or "").strip() for job in root.iter("job_list")
                if (job.findtext("JB_name") or "").strip() == name
                and not sge_state((job.findtext("state") or "").strip()).finished]

"""Grid Engine (Son of Grid Engine 8.1, Univa/Altair Grid Engine): ``qsub`` (script on stdin),
``qstat -xml``, ``qdel``, and ``qacct`` for jobs that have left ``qstat``.

Everything about Grid Engine is here: its ``#$`` directives (``-pe`` for cores, ``h_vmem`` per
slot, ``h_rt``), its job states, how its commands say that a job does not exist, and how a job
missing from ``qstat`` is told ended (``qacct`` where accounting has it, else gone).

How a job ended (``JobInfo.end_reason``) comes from its accounting record: ``failed`` 0 with exit 0
is COMPLETED, with another exit code FAILED; a killed job (``failed`` 37, "qmaster enforced h_rt,
h_cpu, or h_vmem limit", or an exit status above 128) is TIMEOUT, CPU_LIMIT or OUT_OF_MEMORY where
its record shows a limit its ``category`` asked for reached (``ru_wallclock``, ``cpu``,
``maxvmem``); else it is KILLED when Grid Engine killed it (37, or 100 "assumedly after job": a
``qdel`` looks so, with exit 137) and FAILED when its own process was; any other ``failed`` code is
a job that could not be started (LAUNCH_FAILED). Seen on the test cell (Son of Grid Engine 8.1.9):
``-l h_rt=5`` gave 37 and exit 137 after 6 s; ``-l h_vmem`` is a limit on the processes' address
space, so a job over it fails on its own (exit 1 of a Python MemoryError), not killed. While
``qstat`` still lists it, a job being deleted (``d``) is CANCELLED and one in error (``E``)
LAUNCH_FAILED.
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
from . import reasons
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

#: qacct's ``failed`` codes for a job Grid Engine ended itself: sge_qmaster enforced a limit
#: (SSTATE_QMASTER_ENFORCED_LIMIT), and the job ran but its shepherd wrote no usage (after a kill).
_FAILED_LIMIT, _FAILED_AFTER_JOB = 37, 100
#: Grid Engine's memory units (sge_types(5): k and m are 1000s, K and M 1024s) and qacct's (KB, MB...).
_SIZE_UNITS = {"": 1, "B": 1, "k": 1000, "K": 1024, "KB": 1024, "m": 1000**2, "M": 1024**2, "MB": 1024**2,
               "g": 1000**3, "G": 1024**3, "GB": 1024**3, "t": 1000**4, "T": 1024**4, "TB": 1024**4}
#: How a killed job's record is read for the limit that ended it: (limit asked with -l, the
#: record's field it is compared with, whether it is a size, the end reason).
_LIMITS = (
    ("h_rt", "ru_wallclock", False, reasons.TIMEOUT), ("s_rt", "ru_wallclock", False, reasons.TIMEOUT),
    ("h_cpu", "cpu", False, reasons.CPU_LIMIT), ("s_cpu", "cpu", False, reasons.CPU_LIMIT),
    ("h_vmem", "maxvmem", True, reasons.OUT_OF_MEMORY), ("s_vmem", "maxvmem", True, reasons.OUT_OF_MEMORY),
)


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
        state = sge_state(letters)
        end = {JobState.CANCELLED: reasons.CANCELLED, JobState.FAILED: reasons.LAUNCH_FAILED}.get(state, "")
        infos[job_id] = JobInfo(job_id, state, letters, reason=reason, node=node, end_reason=end)
    return infos


def _seconds(text: str) -> float | None:
    """Seconds of a Grid Engine time (``300``, ``0:5:0``, qacct's ``6s`` or ``0.014s``)."""
    text = text.strip().removesuffix("s")
    if re.fullmatch(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", text):
        return float(text)
    parts = re.fullmatch(r"([0-9]{1,9}):([0-9]{1,2}):([0-9]{1,2})", text)
    if parts:
        hours, minutes, seconds = (int(part) for part in parts.groups())
        return float(hours * 3600 + minutes * 60 + seconds)
    return None


def _bytes(text: str) -> float | None:
    """Bytes of a Grid Engine memory size (``1G``, ``100M``, qacct's ``3.332MB``)."""
    size = re.fullmatch(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([kKmMgGtT]?B?)", text.strip())
    if size is None or size.group(2) not in _SIZE_UNITS:
        return None
    return float(size.group(1)) * _SIZE_UNITS[size.group(2)]


def _requested(category: str) -> dict[str, str]:
    """The ``-l`` resources of qacct's ``category`` (``-l h_rt=300,h_vmem=1G -pe smp 2``)."""
    found: dict[str, str] = {}
    for group in re.findall(r"(?:^|\s)-l\s+(\S+)", category):
        for item in group.split(","):
            key, _, value = item.partition("=")
            found.setdefault(key.strip(), value.strip())
    return found


def _limit_reached(fields: dict[str, str]) -> str:
    """The end reason of the limit a killed job's record shows reached, or empty."""
    asked = _requested(fields.get("category", ""))
    slots = int(fields["slots"]) if fields.get("slots", "").isdigit() else 1
    for limit_name, used_name, is_size, reason in _LIMITS:
        if limit_name not in asked or not fields.get(used_name):
            continue
        read = _bytes if is_size else _seconds
        limit, used = read(asked[limit_name]), read(fields[used_name].split()[0])
        if limit is None or used is None or limit <= 0:
            continue
        if is_size:  # h_vmem is per slot; the shepherd counts the job's processes, a little late
            limit = limit * slots * 0.95
        if used >= limit:
            return reason
    return ""


def _qacct_end_reason(failed: int | None, code: int | None, fields: dict[str, str]) -> str:
    if fields.get("deleted_by", "NONE").split()[:1] not in ([], ["NONE"]):  # Univa/Altair: who ran qdel
        return reasons.CANCELLED
    killed = failed == _FAILED_LIMIT or (code is not None and code > 128)
    limit = _limit_reached(fields) if killed else ""
    if limit:
        return limit
    if failed == _FAILED_LIMIT or (failed == _FAILED_AFTER_JOB and code is not None and code > 128):
        return reasons.KILLED
    if failed not in (None, 0, _FAILED_AFTER_JOB):
        return reasons.LAUNCH_FAILED
    if failed == 0 and code in (None, 0):
        return reasons.COMPLETED
    return reasons.FAILED


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
        # "37  : qmaster enforced h_rt, h_cpu, or h_vmem limit": what Grid Engine says of its code.
        said = fields.get("failed", "").partition(":")[2].strip()
        if failed != "0":
            state, raw = JobState.FAILED, f"FAILED {fields.get('failed')}"
        elif code not in (None, 0):
            state, raw = JobState.FAILED, f"EXIT {code}"
        else:
            state, raw = JobState.COMPLETED, "DONE"
        end = _qacct_end_reason(int(failed) if failed.isdigit() else None, code, fields)
        return JobInfo(job_id, state, raw, reason=said, node=fields.get("hostname") or None, exit_code=code,
                       end_reason=end)
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

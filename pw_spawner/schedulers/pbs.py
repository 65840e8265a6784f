"""PBS Pro and Torque: ``qsub`` (script on stdin), ``qstat``, ``qdel``, ``qselect``.

PBS Pro answers ``qstat -f -F json -x`` (finished jobs included); Torque has only the text form of
``qstat -f`` and keeps finished jobs as state ``C`` for a while.

How a job ended (``JobInfo.end_reason``) is read from its ``Exit_status`` (``exit_status`` in
Torque): 0 is COMPLETED, the script's own code (1 to 255) FAILED. Above 256 is 256 + the signal
the job was killed with (qdel, or a limit: ``PBS: job killed: walltime 152 exceeded limit 120``
comes with 271): TIMEOUT where ``resources_used.walltime`` has reached ``Resource_List.walltime``,
else CANCELLED for SIGTERM or SIGKILL (as the job's state says) and KILLED for another signal.
Negative codes are PBS's own (OpenPBS's job.h ``JOB_EXEC_*``; Torque's manual, "Job Exit Status"),
and the two differ: PBS Pro -29 is the walltime, -27 and -26 memory (mem, vmem), -28 CPU time, -24
and -25 more CPUs than asked; Torque -11 is the walltime, -10 memory, -12 CPU time; the others
are a job that could not be started (LAUNCH_FAILED).

When a queued job is expected to start is PBS Pro's ``estimated.start_time`` (written by the
scheduler where it plans ahead: ``strict_ordering`` or a ``backfill_depth``), a time in the
``ctime`` form (``Wed Dec  2 14:05:00 2026``) in the server's local time, taken to be the hub's.
Torque has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..profiles import JobSpec, format_walltime
from ..remote.executor import Executor, ExecutorError
from ..status import JobState
from . import reasons
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError

_STATES = {
    "Q": JobState.PENDING, "H": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING,
    "S": JobState.PENDING, "U": JobState.PENDING, "B": JobState.RUNNING, "R": JobState.RUNNING,
    "E": JobState.COMPLETED, "X": JobState.COMPLETED, "F": JobState.COMPLETED, "C": JobState.COMPLETED,
}
# What qstat and qdel say on stderr about one job, the job id named in the line:
#   gone:     "Unknown Job Id 123.srv" (PBS Pro, Torque 4), "Unknown Job Id Error 123.srv" (Torque 6),
#             "nonexistent job id: 123.srv" (older Torque)
#   finished: "123.srv Job has finished, use -x or -H ..." (PBS Pro qstat without -x, exit 35),
#             "Job has finished 123.srv" (PBS Pro qdel),
#             "Request invalid for state of job MSG=invalid state for job - COMPLETE 123.srv" (Torque qdel)
_JOB_ID = r"(\d+(?:\[\d*\])?(?:\.[\w.-]+)?)"
_COMPLAINTS = (
    ("gone", re.compile(rf"(?:Unknown Job Id(?: Error)?|nonexistent job id):?\s+{_JOB_ID}", re.IGNORECASE)),
    ("finished", re.compile(rf"{_JOB_ID}\s+Job has finished")),
    ("finished", re.compile(rf"Job has finished\s+{_JOB_ID}")),
    ("finished", re.compile(rf"Request invalid for state of job\b.*\s{_JOB_ID}\s*$")),
)


def _sequence(job_id: str) -> str:
    """``123`` of ``123.server.domain``: servers print the suffix as they like, the number is the job."""
    return job_id.split(".", 1)[0]


def job_complaints(stderr: str) -> dict[str, str]:
    """Per-job messages of qstat/qdel, as job sequence number -> ``gone`` or ``finished``."""
    found: dict[str, str] = {}
    for line in stderr.splitlines():
        for kind, pattern in _COMPLAINTS:
            match = pattern.search(line)
            if match:
                found[_sequence(match.group(1))] = kind
                break
    return found


#: PBS's own negative exit statuses that say which limit ended a job, per flavor.
_LIMIT_STATUSES = {
    "pro": {-29: reasons.TIMEOUT, -27: reasons.OUT_OF_MEMORY, -26: reasons.OUT_OF_MEMORY,
            -28: reasons.CPU_LIMIT, -25: reasons.KILLED, -24: reasons.KILLED},
    "torque": {-11: reasons.TIMEOUT, -10: reasons.OUT_OF_MEMORY, -12: reasons.CPU_LIMIT},
}
_SIGTERM, _SIGKILL = 15, 9


def _walltime_seconds(value: object) -> int | None:
    """Seconds of a PBS walltime (``01:02:03``, ``62:03``, ``3723``), None if it is none."""
    text = str(value or "").strip()
    if not re.fullmatch(r"[0-9]{1,9}(?::[0-9]{1,2}){0,2}", text):
        return None
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def _resource(lower: dict, group: str, name: str) -> object:
    """``Resource_List.walltime`` of qstat's text form, or ``Resource_List: {walltime: ...}`` of JSON."""
    nested = lower.get(group.lower())
    if isinstance(nested, dict):
        return {k.lower(): v for k, v in nested.items()}.get(name)
    return lower.get(f"{group.lower()}.{name}")


def _end_reason(lower: dict, raw: str, exit_code: int | None, flavor: str) -> str:
    """How a finished job ended, from its exit status (see the module docstring)."""
    if raw not in ("E", "X", "F", "C") or exit_code is None:
        return ""
    if exit_code == 0:
        return reasons.COMPLETED
    if exit_code < 0:
        return _LIMIT_STATUSES.get(flavor, {}).get(exit_code, reasons.LAUNCH_FAILED)
    if exit_code <= 256:
        return reasons.FAILED
    used = _walltime_seconds(_resource(lower, "resources_used", "walltime"))
    limit = _walltime_seconds(_resource(lower, "Resource_List", "walltime"))
    if used is not None and limit and used >= limit:
        return reasons.TIMEOUT
    return reasons.CANCELLED if exit_code - 256 in (_SIGTERM, _SIGKILL) else reasons.KILLED


def parse_pbs_time(value: object) -> datetime | None:
    """A time as qstat prints it (``Wed Dec  2 14:05:00 2026``, the server's local time),
    timezone-aware; None for anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.strptime(value.strip(), "%a %b %d %H:%M:%S %Y").astimezone()
    except ValueError:
        return None


def _info(job_id: str, attrs: dict, flavor: str = "pro") -> JobInfo:
    """A JobInfo from one job's qstat attributes (keys as qstat spells them)."""
    lower = {k.lower(): v for k, v in attrs.items()}
    raw = str(lower.get("job_state", ""))
    state = _STATES.get(raw, JobState.UNKNOWN)
    exit_code = lower.get("exit_status")
    try:
        exit_code = int(exit_code) if exit_code is not None else None
    except ValueError:
        exit_code = None
    if state is JobState.COMPLETED and raw in ("F", "C") and exit_code not in (None, 0):
        # PBS marks a job that the scheduler killed (qdel, walltime) with a negative or >256 code.
        state = JobState.CANCELLED if exit_code in (-3, 271, 265) else JobState.FAILED
    host = str(lower.get("exec_host") or "").split("+")[0].split("/")[0] or None
    estimate = parse_pbs_time(_resource(lower, "estimated", "start_time")) \
        if state is JobState.PENDING else None
    return JobInfo(job_id, state, raw, reason=str(lower.get("comment") or ""), node=host,
                   exit_code=exit_code, end_reason=_end_reason(lower, raw, exit_code, flavor),
                   estimated_start=estimate)


def parse_qstat_json(text: str) -> dict[str, JobInfo]:
    """PBS Pro's ``qstat -f -F json``."""
    data = json.loads(text)
    return {job_id: _info(job_id, attrs, "pro") for job_id, attrs in (data.get("Jobs") or {}).items()}


def parse_qstat_text(text: str, flavor: str = "torque") -> dict[str, JobInfo]:
    """``qstat -f`` text: ``Job Id: ID`` then indented ``key = value`` lines (values may wrap);
    ``flavor`` (``torque`` or ``pro``) says whose negative exit statuses these are."""
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last_key = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            current = jobs.setdefault(line.split(":", 1)[1].strip(), {})
        elif current is not None and " = " in line:
            last_key, _, value = line.strip().partition(" = ")
            current[last_key] = value
        elif current is not None and last_key and line.startswith("\t"):
            current[last_key] += line.strip()
    return {job_id: _info(job_id, attrs, flavor) for job_id, attrs in jobs.items()}


def _mem_gb_or_mb(mb: int) -> str:
    return f"{mb // 1024}gb" if mb % 1024 == 0 else f"{mb}mb"


class PBSScheduler(Scheduler):
    """PBS Pro (OpenPBS): ``select=`` chunks, ``qstat -f -F json -x``."""

    kind = "pbs"
    summary = "submits with qsub, PBS Pro / OpenPBS (`select=` directives)"
    directive_prefix = "#PBS"
    job_id_variable = "PBS_JOBID"
    environment_prefixes = ("PBS_",)
    client_environment = ("PBS_CONF_FILE", "PBS_DEFAULT", "PBS_SERVER")
    flavor = "pro"

    def directives(self, job: JobSpec, name: str, output: str) -> list[str]:
        lines = [f"-N {name}", f"-o {output}", "-j oe", *self._resource_lines(job)]
        if job.partition:
            lines.append(f"-q {job.partition}")
        if job.account:
            lines.append(f"-A {job.account}")
        return self._prefixed(lines, job)

    def _resource_lines(self, job: JobSpec) -> list[str]:
        """The ``-l`` lines: PBS Pro's one ``select=`` chunk (memory and GPUs in it), walltime."""
        chunk = f"select={job.nodes}:ncpus={job.cores}"
        if job.memory_mb:
            chunk += f":mem={_mem_gb_or_mb(job.memory_mb)}"
        if job.gpus:
            chunk += f":ngpus={job.gpus}"
        return [f"-l {chunk}", f"-l walltime={format_walltime(job.walltime_s)}"]

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        result = await self._submit_in(executor, job_dir, ["qsub"], script, "PBS")
        job_id = result.stdout.strip()
        if not result.ok or not re.fullmatch(r"\d+(\[\d*\])?(\.[\w.-]+)?", job_id):
            said = result.stderr.strip().removeprefix("qsub: ") or job_id
            raise SubmitError(f"PBS refused the job: {said or 'qsub failed without saying why'}")
        return job_id

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        ids = [job.job_id for job in jobs]
        if not ids:
            return {}
        argv = ["qstat", "-f", "-F", "json", "-x", *ids] if self.flavor == "pro" else ["qstat", "-f", *ids]
        try:
            result = await executor.run(argv)
        except ExecutorError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        # qstat exits non-zero when any id is unknown or finished, yet still prints the others.
        complaints = job_complaints(result.stderr)
        if not result.ok and not complaints:
            return {i: JobInfo.unknown(i, result.message()) for i in ids}
        try:
            listed = parse_qstat_json(result.stdout) if self.flavor == "pro" and result.stdout.strip() \
                else parse_qstat_text(result.stdout, self.flavor)
        except (ValueError, AttributeError) as exc:
            return {i: JobInfo.unknown(i, f"unreadable qstat output: {exc}") for i in ids}
        by_sequence = {_sequence(job_id): info for job_id, info in listed.items()}
        infos = {}
        for job_id in ids:
            info = listed.get(job_id) or by_sequence.get(_sequence(job_id))
            said = complaints.get(_sequence(job_id))
            if info is not None:
                infos[job_id] = replace(info, job_id=job_id)
            elif said == "finished":
                # PBS Pro without -x (or without job history) knows the job ended, not how.
                infos[job_id] = JobInfo(job_id, JobState.COMPLETED, "F", "finished")
            elif said == "gone":
                # Confirmed by the server itself: with -x (Pro) even finished jobs would be listed.
                infos[job_id] = JobInfo(job_id, JobState.COMPLETED, "GONE", "no longer known to PBS")
            else:
                infos[job_id] = JobInfo.unknown(job_id, "qstat did not list the job")
        return infos

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        try:
            result = await executor.run(["qdel", job.job_id])
        except ExecutorError as exc:
            raise SchedulerError(f"could not cancel job {job.job_id}: {exc}") from exc
        # A job that already finished, or that the server forgot, is what qdel was asked for.
        if not result.ok and _sequence(job.job_id) not in job_complaints(result.stderr):
            raise SchedulerError(f"could not cancel job {job.job_id}: {result.message()}")

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        # Only this account's jobs (see SlurmScheduler.find).
        result = await executor.run(["qselect", "-N", name, "-u", executor.account])
        if not result.ok:
            raise SchedulerError(f"cannot list jobs: {result.message()}")
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]


class TorqueScheduler(PBSScheduler):
    """Torque: ``nodes=:ppn=`` resources, plain ``qstat -f`` (no JSON, no history)."""

    kind = "torque"
    summary = "submits with qsub, Torque (`nodes=:ppn=` directives)"
    flavor = "torque"

    def _resource_lines(self, job: JobSpec) -> list[str]:
        """Torque's ``nodes=:ppn=`` (GPUs in it), walltime, and memory on a line of its own."""
        nodes = f"nodes={job.nodes}:ppn={job.cores}"
        if job.gpus:
            nodes += f":gpus={job.gpus}"
        lines = [f"-l {nodes}", f"-l walltime={format_walltime(job.walltime_s)}"]
        if job.memory_mb:
            lines.append(f"-l mem={_mem_gb_or_mb(job.memory_mb)}")
        return lines

"""Slurm: ``sbatch --parsable`` (script on stdin), ``squeue``/``scontrol``/``sacct``, ``scancel``.

A job missing from squeue is not taken as ended until a second source (scontrol, then sacct)
confirms it: squeue can miss a job during a controller fail-over or a slow answer.

How a job ended (``JobInfo.end_reason``) is read from the same answers: Slurm's state word says it
(``TIMEOUT``, ``OUT_OF_MEMORY``, ``NODE_FAIL``, ``CANCELLED``... in squeue's ``%T``, scontrol's
``JobState=`` and sacct's ``State``), and while a job is ``COMPLETING`` its reason does
(``TimeLimit``, ``OutOfMemory``...).

When a queued job is expected to start comes from the same squeue call too (``%S``: the backfill
scheduler's estimate for a pending job, ``N/A`` while it has none). squeue prints it in the local
time of the host it runs on, which is taken to be the hub's time zone (a login node reached over
SSH is normally in the same one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from ..profiles import JobSpec, format_walltime
from ..remote.executor import Executor, ExecutorError
from ..status import JobState
from . import reasons
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError

#: Job id, state, reason, nodes, start time (expected, for a pending job), and the name last: a
#: name may hold the separator.
SQUEUE_FORMAT = "%i|%T|%r|%N|%S|%j"

_STATES = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "CONFIGURING": JobState.STARTING,
    "RUNNING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "COMPLETING": JobState.COMPLETED,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
}
_INVALID_JOB = "Invalid job id specified"

#: How a job ended, from the state word of a finished job.
_END_STATES = {
    "COMPLETED": reasons.COMPLETED, "FAILED": reasons.FAILED, "CANCELLED": reasons.CANCELLED,
    "REVOKED": reasons.CANCELLED, "TIMEOUT": reasons.TIMEOUT, "OUT_OF_MEMORY": reasons.OUT_OF_MEMORY,
    "NODE_FAIL": reasons.NODE_FAIL, "PREEMPTED": reasons.PREEMPTED, "DEADLINE": reasons.DEADLINE,
    "BOOT_FAIL": reasons.LAUNCH_FAILED, "SPECIAL_EXIT": reasons.FAILED,
}
#: How a COMPLETING job ended, from its reason (its state word says only that it is cleaning up).
_END_BY_REASON = {
    "TimeLimit": reasons.TIMEOUT, "OutOfMemory": reasons.OUT_OF_MEMORY, "NodeDown": reasons.NODE_FAIL,
    "NonZeroExitCode": reasons.FAILED, "JobLaunchFailure": reasons.LAUNCH_FAILED,
    "DeadLine": reasons.DEADLINE,
}


def _state_word(raw: str) -> str:
    return raw.strip().split()[0].upper().rstrip("+") if raw.strip() else ""


def slurm_state(raw: str) -> JobState:
    """Our state for a Slurm state word (``CANCELLED by 1000`` counts as CANCELLED)."""
    return _STATES.get(_state_word(raw), JobState.UNKNOWN)


def slurm_end_reason(raw: str, reason: str = "") -> str:
    """How a job ended (a code of :data:`.reasons.END_REASONS`), from its state word and, while it
    is COMPLETING, its reason; empty for a job that has not ended or whose answer does not say."""
    word = _state_word(raw)
    if word == "COMPLETING":
        return _END_BY_REASON.get(reason.strip(), "")
    return _END_STATES.get(word, "")


def parse_slurm_time(text: str) -> datetime | None:
    """A time as Slurm prints it (``2026-12-02T14:05:00``, the local time of the host that printed
    it), timezone-aware; None for ``N/A``, ``Unknown``, ``None`` or anything else."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S").astimezone()
    except ValueError:
        return None


#: A pending job's start further ahead than this is Slurm's way of saying it has no estimate: when
#: nothing it waits for has an end (a running job without a time limit), squeue shows the submit
#: time plus one year (seen on Slurm 22.05, tests/data/slurm).
NO_ESTIMATE_AFTER = timedelta(days=300)


def parse_squeue(text: str, now: datetime | None = None) -> dict[str, JobInfo]:
    """Lines of ``squeue -h -o '%i|%T|%r|%N|%S|%j'`` (:data:`SQUEUE_FORMAT`); ``now`` (default: the
    current time) tells an estimated start from Slurm's year-ahead "none"."""
    latest = (now or datetime.now(timezone.utc)) + NO_ESTIMATE_AFTER
    infos = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0]:
            continue
        job_id, raw, reason, node = parts[0], parts[1], parts[2], parts[3]
        reason = "" if reason in ("None", "(null)") else reason
        state = slurm_state(raw)
        start = parse_slurm_time(parts[4]) if len(parts) > 5 and state is JobState.PENDING else None
        if start is not None and start > latest:
            start = None
        infos[job_id] = JobInfo(job_id, state, raw, reason=reason,
                                node=None if node in ("", "(null)") else node,
                                end_reason=slurm_end_reason(raw, reason), estimated_start=start)
    return infos


def parse_scontrol(text: str) -> JobInfo | None:
    """``scontrol show job ID`` (``Key=Value`` words over several lines) or one line of
    ``scontrol -o show job``.

    The job's id is the record's first word. Its name, which any user chooses, runs up to the
    ``UserId=`` that Slurm prints next and is left out: a name such as ``x JobId=5 JobState=...``
    must not speak for another job (each key's first occurrence counts, after the name).
    """
    leading = re.match(r"\s*JobId=(\d+)\b", text)
    if leading is None:
        return None
    rest = text[leading.end():]
    # Up to the UserId= that follows it where Slurm printed one, else its first word.
    name = (re.search(r"\bJobName=.*?(?=\s+UserId=)", rest, flags=re.DOTALL)
            or re.search(r"\bJobName=\S*", rest))
    if name is not None:
        rest = rest[:name.start()] + rest[name.end():]
    fields: dict[str, str] = {"JobId": leading.group(1)}
    for key, value in re.findall(r"(\w+)=(\S*)", rest):
        fields.setdefault(key, value)
    if "JobState" not in fields:
        return None
    exit_code = None
    if re.fullmatch(r"\d+:\d+", fields.get("ExitCode", "")):
        exit_code = int(fields["ExitCode"].split(":")[0])
    node = fields.get("NodeList") or None
    reason = "" if fields.get("Reason") in (None, "None", "(null)") else fields["Reason"]
    return JobInfo(fields["JobId"], slurm_state(fields["JobState"]), fields["JobState"], reason=reason,
                   node=None if node in (None, "(null)") else node, exit_code=exit_code,
                   end_reason=slurm_end_reason(fields["JobState"], reason))


def parse_sacct(text: str, job_id: str) -> JobInfo | None:
    """``sacct -n -P -X -j ID -o JobID,State,ExitCode,NodeList``."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] == job_id:
            code = parts[2].split(":")[0]
            return JobInfo(job_id, slurm_state(parts[1]), parts[1],
                           node=(parts[3] or None) if len(parts) > 3 else None,
                           exit_code=int(code) if code.isdigit() else None,
                           end_reason=slurm_end_reason(parts[1]))
    return None


def parse_private_data(config: str) -> set[str]:
    """The ``PrivateData`` words of ``scontrol show config`` (``none`` gives an empty set)."""
    match = re.search(r"^PrivateData[ \t]*=[ \t]*(\S*)", config, re.MULTILINE)
    words = {w.strip().lower() for w in (match.group(1) if match else "").split(",")}
    return words - {"", "none", "(null)"}


def submit_error_message(stderr: str) -> str:
    """The part of sbatch's complaint a user can act on."""
    lines = [line.removeprefix("sbatch: error: ").strip() for line in stderr.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith("Batch job submission failed")]
    if not failed:
        return lines[-1] if lines else "sbatch failed without saying why"
    reason = failed[-1].split(":", 1)[-1].strip()
    # What sbatch said before its verdict names the cause ("Memory specification can not be
    # satisfied", the partition's name): kept, after the verdict.
    details = [line for line in lines if not line.startswith("Batch job submission failed")]
    return f"{reason} ({'; '.join(details)})" if details else (reason or "sbatch failed without saying why")


class SlurmScheduler(Scheduler):
    kind = "slurm"
    summary = "submits with sbatch"
    directive_prefix = "#SBATCH"
    job_id_variable = "SLURM_JOB_ID"
    environment_prefixes = ("SLURM_",)
    client_environment = ("SLURM_CONF",)

    def directives(self, job: JobSpec, name: str, output: str) -> list[str]:
        lines = [f"--job-name={name}", f"--output={output}", "--open-mode=append"]
        if job.partition:
            lines.append(f"--partition={job.partition}")
        lines += [f"--nodes={job.nodes}", "--ntasks=1", f"--cpus-per-task={job.cores}"]
        if job.memory_mb:
            lines.append(f"--mem={job.memory_mb}M")
        lines.append(f"--time={format_walltime(job.walltime_s)}")
        if job.gpus:
            lines.append(f"--gres=gpu:{job.gpus}")
        if job.account:
            lines.append(f"--account={job.account}")
        if job.qos:
            lines.append(f"--qos={job.qos}")
        return self._prefixed(lines, job)

    warns_before_walltime = True

    def warning_directives(self, job: JobSpec, seconds: int) -> list[str]:
        # B: to the batch shell only (the app is not told by a signal it may not handle); Slurm
        # takes up to 65535 s and sends it within about a minute of that moment.
        if not 0 < seconds < job.walltime_s:
            return []
        return [f"{self.directive_prefix} --signal=B:USR1@{min(seconds, 65535)}"]

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        result = await self._submit_in(executor, job_dir, ["sbatch", "--parsable"], script, "Slurm")
        if not result.ok:
            raise SubmitError(f"Slurm refused the job: {submit_error_message(result.stderr)}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SubmitError(f"sbatch answered something unexpected: {result.stdout.strip()[:200]!r}")
        return job_id

    async def _confirm(self, executor: Executor, ids: list[str]) -> dict[str, JobInfo]:
        """A second opinion on jobs squeue did not list, in one call: ended, or unknown.

        ``scontrol -o show job`` lists every job slurmctld still holds (finished ones for
        MinJobAge), one per line; jobs it no longer holds are looked up in accounting with one
        ``sacct -j a,b,...``, and a job neither knows is gone.
        """
        try:
            result = await executor.run(["scontrol", "-o", "show", "job"])
        except ExecutorError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        if not result.ok:
            return {i: JobInfo.unknown(i, result.message()) for i in ids}
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        parsed = [parse_scontrol(line) for line in lines]
        if any(info is None for info in parsed) and lines != ["No jobs in the system"]:
            # A banner, a cut-off or garbled answer: it cannot confirm that anything has gone.
            why = f"unreadable scontrol output: {lines[0][:80]!r}"
            return {i: JobInfo.unknown(i, why) for i in ids}
        held = {info.job_id: info for info in parsed if info is not None}
        infos = {i: held[i] for i in ids if i in held}
        purged = [i for i in ids if i not in held]
        if purged:
            try:
                acct = await executor.run(["sacct", "-n", "-P", "-X", "-j", ",".join(purged),
                                           "-o", "JobID,State,ExitCode,NodeList"])
                text = acct.stdout if acct.ok else ""
            except ExecutorError:
                text = ""
            for job_id in purged:
                infos[job_id] = parse_sacct(text, job_id) or JobInfo(
                    job_id, JobState.COMPLETED, "GONE", "no longer known to Slurm")
        return infos

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        ids = [job.job_id for job in jobs]
        if not ids:
            return {}
        try:
            result = await executor.run(
                ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT])
        except ExecutorError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        if not result.ok and _INVALID_JOB not in result.stderr:
            return {i: JobInfo.unknown(i, result.message()) for i in ids}
        listed = parse_squeue(result.stdout) if result.ok else {}
        missing = [i for i in ids if i not in listed]
        confirmed = await self._confirm(executor, missing) if missing else {}
        return {i: listed.get(i) or confirmed[i] for i in ids}

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        try:
            result = await executor.run(["scancel", job.job_id])
        except ExecutorError as exc:
            raise SchedulerError(f"could not cancel job {job.job_id}: {exc}") from exc
        if not result.ok and _INVALID_JOB not in result.stderr:
            raise SchedulerError(f"could not cancel job {job.job_id}: {result.message()}")

    async def shows_other_users_jobs(self, executor: Executor) -> bool | None:
        """False when ``PrivateData`` hides jobs (root and SlurmUser see them all the same)."""
        try:
            result = await executor.run(["scontrol", "show", "config"])
        except ExecutorError:
            return None
        if not result.ok:
            return None
        private = parse_private_data(result.stdout)
        return "jobs" not in private or await super().shows_other_users_jobs(executor) is True

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        # Only this account's jobs: anyone on the cluster may name a job "pw-alice", and cancelling
        # it would fail (or, run as a Slurm operator, succeed) and block alice's spawn.
        result = await executor.run(["squeue", "-h", "--me", "-n", name, "-o", SQUEUE_FORMAT])
        if not result.ok:
            raise SchedulerError(f"cannot list jobs: {result.message()}")
        return [i for i, info in parse_squeue(result.stdout).items() if not info.state.finished]

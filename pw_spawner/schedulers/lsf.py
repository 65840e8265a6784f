"""IBM Spectrum LSF 10.1: ``bsub`` (script on stdin), ``bjobs -o ... -json``, ``bkill``, and
``bhist`` for a job that ``bjobs`` no longer (or not yet) lists.

Written to IBM's documented command behaviour and output formats, not run against a real cluster
(tests/data/lsf/README.md names the page that documents each format). Everything about LSF is here:
its ``#BSUB`` directives, its job states, what its commands say about a job that does not exist,
and how a job missing from ``bjobs`` is told ended.

Memory is written with an explicit unit (``-M 16384MB``, ``rusage[mem=16384MB/host]``), so the
cluster's ``LSF_UNIT_FOR_LIMITS`` (KB by default) does not change what is asked for, and the
reservation names its method (``/host``), so neither does the site's ``RESOURCE_RESERVE_PER_TASK``
nor a ``ReservationUsage`` section: the job gets the profile's memory on its host, not that times
its cores.

``bjobs -a`` forgets a job ``CLEAN_PERIOD`` (lsb.params, one hour by default) after it finished,
and where queries are served by a child mbatchd (``LSB_QUERY_PORT``) it may not list a job
submitted less than ``MBD_REFRESH_TIME`` ago. So a job ``bjobs`` reports ``Job <N> is not found``
is not taken as ended until ``bhist``, which reads the event log, confirms it: ended there (with
its exit code), or not in the event log at all (then gone). A job this hub submitted moments ago
is not even asked about: it is unknown for ``new_job_grace`` seconds (a site setting), never gone.

How a job ended (``JobInfo.end_reason``): ``bjobs`` says only DONE (COMPLETED) or EXIT with an exit
code (FAILED); ``bhist -l`` ends a terminated job's log with LSF's termination reason
(``Completed <exit>; TERM_RUNLIMIT: job killed after reaching LSF run time limit``; IBM's
"Termination reasons displayed by bacct, bhist, and bjobs"), read as TIMEOUT (``TERM_RUNLIMIT``),
OUT_OF_MEMORY (``TERM_MEMLIMIT``, ``TERM_SWAP``), CPU_LIMIT, CANCELLED (``TERM_OWNER``,
``TERM_ADMIN``...), PREEMPTED, DEADLINE, LAUNCH_FAILED (``TERM_CWD_NOTEXIST``...) or KILLED (the
other ways LSF kills a job). ``bjobs -o exit_reason`` would say the same while bjobs still lists
the job; it is not asked for (the fake LSF of pw_spawner.testing does not have that field).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, StrictInt

from ..config_schema import Declared
from ..remote.executor import CommandResult, Executor, ExecutorError
from ..status import MAX_NESTING, JobState, _nesting, clean_message
from . import reasons
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError

if TYPE_CHECKING:
    from ..profiles import JobSpec

#: The fields of the status query (``bjobs -o`` names; the JSON keys are the same in upper case).
#: The job name is left out: it is the one field a user chooses, so it cannot speak for another
#: job where it is not printed at all.
BJOBS_FIELDS = "jobid stat exit_code exec_host pend_reason"
#: The fields of the search for leftover jobs, which must compare names.
FIND_FIELDS = "jobid stat job_name"
#: The most of ``bjobs -json``'s answer that is parsed (a job is about 150 bytes of it).
MAX_BJOBS_JSON = 4 * 1024 * 1024
#: LSF's longest job name (``bsub -J``).
MAX_JOB_NAME = 4094

#: ``bjobs``' STAT words. Suspended jobs (by their owner, an administrator or LSF's load
#: thresholds) count as queued, as Slurm's SUSPENDED does; a chunk job's WAIT too. PROV is a job
#: dispatched to a host that is being powered up. ZOMBI is a job killed while its host was
#: unreachable (it turns EXIT when LSF reaches the host). UNKWN is a job whose host LSF has lost
#: contact with: it may still run. PDONE and PERR are the post-execution states some versions show.
_STATES = {
    "PEND": JobState.PENDING, "PSUSP": JobState.PENDING, "WAIT": JobState.PENDING,
    "USUSP": JobState.PENDING, "SSUSP": JobState.PENDING,
    "PROV": JobState.STARTING,
    "RUN": JobState.RUNNING,
    "DONE": JobState.COMPLETED, "PDONE": JobState.COMPLETED,
    "EXIT": JobState.FAILED, "PERR": JobState.FAILED,
    "ZOMBI": JobState.CANCELLED,
    "UNKWN": JobState.UNKNOWN,
}
#: What the user is told where LSF gives no pending reason.
_STATE_REASONS = {
    "PSUSP": "held (suspended while pending)", "USUSP": "suspended by its owner or an administrator",
    "SSUSP": "suspended by LSF", "WAIT": "waiting for its turn in a job chunk",
    "PROV": "its host is being powered up", "UNKWN": "LSF has lost contact with the job's host",
    "ZOMBI": "killed while its host was unreachable",
}

_JOB_ID = re.compile(r"[0-9]{1,20}")
_STAT = re.compile(r"[A-Z]{2,8}")
_EXIT_CODE = re.compile(r"[0-9]{1,5}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
# A job name bsub takes as one plain name: no blank or quote (the directive parser splits and
# unquotes), no brackets or % (a job array, its slot limit), no * (bjobs -J and bkill -J match it
# as a wildcard), and no leading - (an option).
_JOB_NAME = re.compile(r"[A-Za-z0-9_.+@~][A-Za-z0-9_.+@~-]*")
# An output path bsub writes to as given: no blank or quote, and no % (bsub replaces %J and %I).
_OUTPUT = re.compile(r"[^\s\"'%\\]+")
_NOT_FOUND = re.compile(r"\bJob <([0-9]{1,20})> is not found\b")
_SUBMITTED = re.compile(r"(?:^|\s)Job <([0-9]{1,20})> is submitted to (?:default )?queue <([^<>\s]{1,256})>",
                        re.MULTILINE)
_NOT_SUBMITTED = "Job not submitted"
# What LSF's commands print while mbatchd is busy (LSB_MBD_BUSY_MSG and the query limit's
# message, their defaults): noise, not the answer.
_NOISE = re.compile(r"^(LSF is processing your request|Batch system concurrent (job )?query limit exceeded"
                    r"|LSF is down)", re.IGNORECASE)
_NO_JOBS = re.compile(r"No (unfinished |matching )?job found|is not found")
_NO_MATCHING = re.compile(r"No matching job found")
_SECURE_LEVEL = re.compile(r"^\s*SECURE_JOB_INFO_LEVEL\s*=\s*([0-9]{1,3})\s*$", re.MULTILINE)
_PARAMETER = re.compile(r"^\s*[A-Z][A-Z0-9_]{2,}\s*=", re.MULTILINE)
# bhist -l: each event starts at the beginning of a line with its time ("Tue May  6 15:45:10: ",
# with the year where LSB_DISPLAY_YEAR is set); long lines go on indented.
_EVENT = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                    r" +[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?: [0-9]{4})?: ")
_HEADER = re.compile(r"Job <([0-9]{1,20})>")
# Events after which the job is not (or no longer) ended: a requeued job runs again.
_NOT_ENDED = ("Submitted", "Dispatched", "Starting", "Running", "Pending")
#: LSF's termination reasons (bhist -l, bacct -l, bjobs -l), as end reasons; a TERM_ word not
#: listed (TERM_UNKNOWN...) says no more than the exit code.
_TERM_REASONS = {
    "TERM_RUNLIMIT": reasons.TIMEOUT,
    "TERM_MEMLIMIT": reasons.OUT_OF_MEMORY, "TERM_SWAP": reasons.OUT_OF_MEMORY,
    "TERM_CPULIMIT": reasons.CPU_LIMIT,
    "TERM_OWNER": reasons.CANCELLED, "TERM_ADMIN": reasons.CANCELLED, "TERM_FORCE_OWNER": reasons.CANCELLED,
    "TERM_FORCE_ADMIN": reasons.CANCELLED, "TERM_BUCKET_KILL": reasons.CANCELLED,
    "TERM_PREEMPT": reasons.PREEMPTED,
    "TERM_DEADLINE": reasons.DEADLINE,
    "TERM_CWD_NOTEXIST": reasons.LAUNCH_FAILED, "TERM_PRE_EXEC_FAIL": reasons.LAUNCH_FAILED,
    "TERM_DATA": reasons.LAUNCH_FAILED, "TERM_CSM_ALLOC": reasons.LAUNCH_FAILED,
    "TERM_KUBE": reasons.LAUNCH_FAILED,
    "TERM_LOAD": reasons.KILLED, "TERM_WINDOW": reasons.KILLED, "TERM_EXTERNAL_SIGNAL": reasons.KILLED,
    "TERM_PROCESSLIMIT": reasons.KILLED, "TERM_THREADLIMIT": reasons.KILLED, "TERM_ZOMBIE": reasons.KILLED,
    "TERM_REMOVE_HUNG_JOB": reasons.KILLED, "TERM_ORPHAN_SYSTEM": reasons.KILLED,
    "TERM_CHKPNT": reasons.KILLED, "TERM_CTRL_PID": reasons.KILLED, "TERM_MC_RECALL": reasons.KILLED,
    "TERM_RC_RECLAIM": reasons.KILLED,
}
_TERM = re.compile(r"TERM_[A-Z_]{2,30}")
#: How a job bjobs lists has ended, from its STAT.
_STAT_END = {"DONE": reasons.COMPLETED, "PDONE": reasons.COMPLETED, "EXIT": reasons.FAILED,
             "PERR": reasons.FAILED, "ZOMBI": reasons.CANCELLED}


def lsf_state(stat: str) -> JobState:
    """Our state for a ``bjobs`` STAT word (``PEND``, ``RUN``, ``DONE``, ``EXIT``...)."""
    return _STATES.get(stat.strip(), JobState.UNKNOWN)


def first_host(exec_host: str) -> str | None:
    """The first host of ``EXEC_HOST`` (``node1``, ``4*node1``, ``4*node1:4*node2``), if it is a name."""
    first = re.split(r"[\s:]+", exec_host.strip(), maxsplit=1)[0]
    first = re.sub(r"^[0-9]{1,6}\*", "", first)
    return first if _HOST.fullmatch(first) else None


def run_limit(seconds: int) -> str:
    """``bsub -W``'s ``[hour:]minute``: LSF counts minutes, so a part of one rounds up."""
    minutes = max(1, -(-seconds // 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys count once, at their first occurrence (see the parsers)."""
    fields: dict[str, Any] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def bjobs_records(text: str) -> list[dict[str, Any]]:
    """The ``RECORDS`` of ``bjobs -o ... -json``; ValueError when the text is not that document.

    Lines LSF prints before it while mbatchd is busy are skipped. The text is checked for its size
    and its nesting before it is parsed (as service.json is: a deep document would make the JSON
    parser recurse), and a key that appears twice in a record counts at its first place.
    """
    start = re.search(r"^\s*\{", text, re.MULTILINE)
    if start is None:
        said = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise ValueError(f"bjobs printed no JSON: {said[:120]!r}" if said else "bjobs printed nothing")
    document = text[start.start():]
    if len(document) > MAX_BJOBS_JSON:
        raise ValueError(f"bjobs printed more than {MAX_BJOBS_JSON} bytes of JSON")
    if _nesting(document) > MAX_NESTING:
        raise ValueError("bjobs' JSON is nested too deeply")
    document = document.lstrip()
    try:
        data, end = json.JSONDecoder(object_pairs_hook=_first_wins).raw_decode(document)
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable bjobs JSON: {exc.msg} at {exc.pos}") from None
    if document[end:].strip():
        raise ValueError("bjobs printed more after its JSON")
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list) or data.get("COMMAND", "bjobs") != "bjobs":
        raise ValueError("bjobs' JSON has no RECORDS list")
    return [record for record in records if isinstance(record, dict)]


def _field(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    return str(value).strip()


def _info(job_id: str, record: dict[str, Any]) -> JobInfo:
    """One job's JobInfo from its record; every field checked for the form LSF gives it."""
    raw = _field(record, "STAT")
    if not _STAT.fullmatch(raw):
        return JobInfo.unknown(job_id, f"bjobs gave no readable state ({clean_message(raw, 40)!r})")
    state = lsf_state(raw)
    code_text = _field(record, "EXIT_CODE")
    exit_code = int(code_text) if _EXIT_CODE.fullmatch(code_text) else None
    if raw in ("DONE", "PDONE") and exit_code is None:
        exit_code = 0
    reason = ""
    if state is JobState.PENDING or raw in _STATE_REASONS:
        pending = clean_message(_field(record, "PEND_REASON"), 300).strip().rstrip(";").strip()
        reason = pending if pending not in ("", "-") else _STATE_REASONS.get(raw, "")
    return JobInfo(job_id, state, raw, reason=reason, node=first_host(_field(record, "EXEC_HOST")),
                   exit_code=exit_code, end_reason=_STAT_END.get(raw, ""))


def parse_bjobs_json(text: str) -> tuple[dict[str, JobInfo], dict[str, str]]:
    """``bjobs -o 'jobid stat exit_code exec_host pend_reason' -json``: the jobs it listed, and what
    it said about the others (job id -> ``not found`` or its ERROR text); ValueError if unreadable.

    A job it asked about but cannot find is a record with ``ERROR: Job <N> is not found`` (its
    ``JOBID`` where LSF gives one, else the id the message names). A job listed twice with
    different answers is unknown.
    """
    listed: dict[str, JobInfo] = {}
    said: dict[str, str] = {}
    for record in bjobs_records(text):
        job_id = _field(record, "JOBID")
        error = _field(record, "ERROR")
        if error:
            named = _NOT_FOUND.search(error)
            if named and (not job_id or job_id == named.group(1)):
                said[named.group(1)] = "not found"
            elif _JOB_ID.fullmatch(job_id):
                said[job_id] = clean_message(error, 200)
            continue
        if not _JOB_ID.fullmatch(job_id):
            continue
        info = _info(job_id, record)
        if job_id in listed and listed[job_id] != info:
            info = JobInfo.unknown(job_id, "bjobs listed the job twice, with different answers")
        listed[job_id] = info
    return listed, said


def parse_bhist(text: str, job_id: str) -> JobInfo:
    """``bhist -l`` of one job (stdout and stderr): how it ended; unknown while its event log shows
    it not ended yet; gone where bhist says ``No matching job found`` and shows no job.

    Only event lines count: those that start with their time at the beginning of a line, with the
    indented lines that continue them. The job's header (its name and command, which its owner
    wrote) is indented where it runs on, so it can never start an event or a header of its own. The
    last event that changes the job's state decides; wrapped words are compared with blanks removed.
    """
    lines = text.splitlines()
    header = next((match for line in lines if (match := _HEADER.match(line))), None)
    if header is None:
        if _NO_MATCHING.search(text):
            return JobInfo(job_id, JobState.COMPLETED, "GONE", "no longer known to LSF")
        return JobInfo.unknown(job_id, "bhist did not show the job")
    if header.group(1) != job_id:
        return JobInfo.unknown(job_id, "bhist showed another job")
    events: list[str] = []
    in_event = False
    for line in lines:
        if event := _EVENT.match(line):
            events.append(line[event.end():])
            in_event = True
        elif in_event and line[:1].isspace() and line.strip():
            events[-1] += line
        else:
            in_event = False
    ended: JobInfo | None = None
    killed = False
    term = ""
    for event_text in events:
        flat = "".join(event_text.split())
        if re.search(r"TERM_(OWNER|ADMIN)|requestedbyuseroradministrator", flat):
            killed = True
        code = re.search(r"Exitedwithexitcode([0-9]{1,5})", flat)
        if flat.startswith(("Donesuccessfully", "Completed<done>")):
            ended, term = JobInfo(job_id, JobState.COMPLETED, "DONE", exit_code=0), ""
        elif code or flat.startswith(("Exited", "Completed<exit>")):
            exit_code = int(code.group(1)) if code else (ended.exit_code if ended else None)
            ended = JobInfo(job_id, JobState.FAILED, "EXIT", exit_code=exit_code)
            said = _TERM.search(flat)
            term = said.group(0) if said and said.group(0) in _TERM_REASONS else term
        elif flat.startswith(_NOT_ENDED) or "requeued" in flat.lower():
            ended, killed, term = None, False, ""
    if ended is None:
        return JobInfo.unknown(job_id, "bjobs does not list the job, and its event log shows it not ended")
    end = _TERM_REASONS.get(term) or (reasons.COMPLETED if ended.state is JobState.COMPLETED
                                      else reasons.CANCELLED if killed else reasons.FAILED)
    if killed and ended.state is JobState.FAILED:
        return JobInfo(job_id, JobState.CANCELLED, "EXIT", "killed", exit_code=ended.exit_code,
                       end_reason=end)
    return JobInfo(ended.job_id, ended.state, ended.raw_state, exit_code=ended.exit_code, end_reason=end)


def parse_secure_job_info_level(text: str) -> int | None:
    """``SECURE_JOB_INFO_LEVEL`` from ``bparams -a`` (0, its default, where the list leaves it out);
    None when the text is not a list of parameters."""
    match = _SECURE_LEVEL.search(text)
    if match:
        return int(match.group(1))
    return 0 if _PARAMETER.search(text) else None


def submit_error_message(stderr: str, stdout: str = "") -> str:
    """The part of bsub's complaint a user can act on: ``rhel7: No such queue``, ``Error in rusage
    section: ...``, without the ``Job not submitted.`` that ends every refusal.

    Lines are joined into messages (a line that does not end a sentence runs on into the next, so a
    refusal wrapped over several lines is whole again), busy messages are left out, and the last
    refusal counts; without one, the last message.
    """
    messages: list[str] = []
    for line in (stderr + "\n" + stdout).splitlines():
        line = line.strip()
        if not line or _NOISE.match(line):
            continue
        if messages and not messages[-1].endswith("."):
            messages[-1] += " " + line
        else:
            messages.append(line)
    refusals = [message for message in messages if _NOT_SUBMITTED in message]
    if refusals:
        picked = refusals[-1][:refusals[-1].rfind(_NOT_SUBMITTED)].strip().rstrip(".").strip()
    else:
        picked = messages[-1] if messages else ""
    picked = picked.removeprefix("bsub: ").strip()
    return clean_message(picked) or "bsub failed without saying why"


def _said(result: CommandResult) -> str:
    return result.stdout + "\n" + result.stderr


#: The longest ``new_job_grace`` a site may set: submit times are kept no longer.
MAX_NEW_JOB_GRACE = 3600


class LSFSettings(Declared):
    """What LSF sites set up differently (``c.PWSpawner.scheduler_settings`` or a resource's
    ``scheduler_settings``)."""

    memory_reservation_method: Literal["host", "cluster"] = "host"
    """How the memory reservation is counted: `host` writes `rusage[mem=<MiB>MB/host]`, the
    profile's memory on each of the job's hosts whatever the cluster's reservation method (needs
    LSF 10.1 Fix Pack 9); `cluster` writes `rusage[mem=<MiB>MB]` for older Fix Packs, and LSF's own
    method applies (per host, unless `RESOURCE_RESERVE_PER_TASK=Y` multiplies it by the cores)."""
    new_job_grace: Annotated[StrictInt, Field(ge=0, le=MAX_NEW_JOB_GRACE)] = 120
    """Seconds during which a job this hub has just submitted counts as unknown, not gone, when
    `bjobs` does not list it: at least the cluster's `MBD_REFRESH_TIME` (lsb.params; 5 s by
    default, at most 300), the age of the copy a query mbatchd answers from."""


class LSFScheduler(Scheduler):
    """IBM Spectrum LSF 10.1: Fix Pack 9 (10.1.0.9) or later for the reservation method in
    ``rusage`` (``mem=...MB/host``; see :class:`LSFSettings` for older ones), 10.1.0.2 for units."""

    kind = "lsf"
    summary = "submits with bsub, IBM Spectrum LSF (`#BSUB` directives)"
    directive_prefix = "#BSUB"
    job_id_variable = "LSB_JOBID"
    # The client commands find lsf.conf through LSF_ENVDIR (else /etc); profile.lsf also sets the
    # directories, which bsub uses to run a site's esub.
    client_environment = ("LSF_ENVDIR", "LSF_SERVERDIR", "LSF_BINDIR", "LSF_LIBDIR")
    #: What LSF sets in a job (LSB_JOBID, LSB_HOSTS, LSB_DJOB_NUMPROC...) and its clients read.
    environment_prefixes = ("LSB_", "LSF_")
    Settings = LSFSettings
    settings: LSFSettings = LSFSettings()
    #: When this process submitted each recent job (every instance shares it: the spawner makes
    #: one scheduler to submit and its status cache another to query).
    _submitted_at: ClassVar[dict[str, float]] = {}

    def directives(self, job: JobSpec, name: str, output: str) -> list[str]:
        if len(name) > MAX_JOB_NAME or not _JOB_NAME.fullmatch(name):
            raise ValueError(f"job name {name!r} is not one bsub takes as a plain name")
        if not _OUTPUT.fullmatch(output):
            raise ValueError(f"output path {output!r} must have no blanks, quotes or %")
        # -o without -e: LSF writes the job's output and error to one file, appended to as
        # Slurm's is (-oo would overwrite it), and puts its job report at the end of it instead
        # of mailing it.
        lines = [f"-J {name}", f"-o {output}"]
        if job.partition:
            lines.append(f"-q {job.partition}")
        # `cores` is per node, as PBS's ncpus and Torque's ppn: -n counts the slots of all hosts.
        lines.append(f"-n {job.nodes * job.cores}")
        span = "span[hosts=1]" if job.nodes == 1 else f"span[ptile={job.cores}]"
        if job.memory_mb:
            # Reserved per host, with its unit and method: neither LSF_UNIT_FOR_LIMITS nor a
            # per-task reservation set for the cluster multiplies it. -M is the limit LSF enforces.
            method = "/host" if self.settings.memory_reservation_method == "host" else ""
            lines.append(f'-R "rusage[mem={job.memory_mb}MB{method}] {span}"')
            lines.append(f"-M {job.memory_mb}MB")
        else:
            lines.append(f'-R "{span}"')
        lines.append(f"-W {run_limit(job.walltime_s)}")
        if job.gpus:
            lines.append(f'-gpu "num={job.gpus}"')
        if job.account:
            lines.append(f"-P {job.account}")
        return self._prefixed(lines, job)

    async def submit(self, executor: Executor, script: str, *, name: str, job_dir: str) -> str:
        # bsub without a command reads the job from standard input and takes its #BSUB lines.
        result = await self._submit_in(executor, job_dir, ["bsub"], script, "LSF")
        ids = {match.group(1) for match in _SUBMITTED.finditer(result.stdout)}
        # The "Job <N> is submitted" line is what says a job exists; bsub has been seen to exit 0
        # on a refusal, and 255 on every kind of error.
        if len(ids) != 1 or _NOT_SUBMITTED in _said(result):
            said = submit_error_message(result.stderr, result.stdout)
            raise SubmitError(f"LSF refused the job: {said}")
        job_id = ids.pop()
        now = time.monotonic()
        recent = LSFScheduler._submitted_at
        for old in [i for i, when in recent.items() if now - when > MAX_NEW_JOB_GRACE]:
            recent.pop(old, None)
        recent[job_id] = now
        return job_id

    async def query(self, executor: Executor, jobs: Sequence[JobRef]) -> dict[str, JobInfo]:
        ids = [job.job_id for job in jobs]
        if not ids:
            return {}
        # Every job asked about, finished ones included (-a), whoever submitted it (-u all).
        try:
            result = await executor.run(["bjobs", "-o", BJOBS_FIELDS, "-json", "-a", "-u", "all", *ids])
        except ExecutorError as exc:
            return {i: JobInfo.unknown(i, str(exc)) for i in ids}
        # bjobs exits non-zero when any job is not found, and still answers for the others.
        try:
            listed, said = parse_bjobs_json(result.stdout)
        except ValueError as exc:
            return {i: JobInfo.unknown(i, result.message() if not result.ok else str(exc)) for i in ids}
        infos: dict[str, JobInfo] = {}
        for job_id in ids:
            if job_id in listed:
                infos[job_id] = listed[job_id]
            elif said.get(job_id, "not found") != "not found":
                infos[job_id] = JobInfo.unknown(job_id, said[job_id])
            else:
                infos[job_id] = await self._confirm(executor, job_id)
        return infos

    async def _confirm(self, executor: Executor, job_id: str) -> JobInfo:
        """A job ``bjobs -a`` does not find: unknown if this hub submitted it moments ago, else as
        ``bhist`` tells from the event log (the current file and the one before it): ended, not
        ended yet (unknown), or not there (gone)."""
        submitted = LSFScheduler._submitted_at.get(job_id)
        if submitted is not None and time.monotonic() - submitted <= self.settings.new_job_grace:
            return JobInfo.unknown(job_id, "LSF does not list the job yet")
        try:
            result = await executor.run(["bhist", "-a", "-l", "-n", "2", "-u", "all", job_id])
        except ExecutorError as exc:
            return JobInfo.unknown(job_id, str(exc))
        info = parse_bhist(_said(result), job_id)
        if info.state is JobState.UNKNOWN and not result.ok:
            return JobInfo.unknown(job_id, result.message())
        return info

    async def cancel(self, executor: Executor, job: JobRef) -> None:
        try:
            result = await executor.run(["bkill", job.job_id])
        except ExecutorError as exc:
            raise SchedulerError(f"could not cancel job {job.job_id}: {exc}") from exc
        said = _said(result)
        this = re.escape(job.job_id)
        # "Job <N> is being terminated"; a job that ended, or that mbatchd has forgotten, is what
        # bkill was asked for: "Job <N>: Job has already finished", "Job <N>: No matching job found".
        if re.search(rf"Job <{this}> is being (terminated|signaled)", said) or re.search(
                rf"Job <{this}>: (Job has already finished|No matching job found)", said):
            return
        if result.ok and not said.strip():
            return
        raise SchedulerError(f"could not cancel job {job.job_id}: {result.message()}")

    async def find(self, executor: Executor, name: str, job_dir: str) -> list[str]:
        # Only this account's unfinished jobs (no -a), of this name: anyone may name a job
        # "pw-alice", and cancelling it would fail (or, as an LSF administrator, succeed).
        result = await executor.run(["bjobs", "-u", executor.account, "-J", name, "-o", FIND_FIELDS, "-json"])
        try:
            records = bjobs_records(result.stdout)
        except ValueError as exc:
            if _NO_JOBS.search(_said(result)):
                return []
            raise SchedulerError(f"cannot list jobs: {result.message() if not result.ok else exc}") from None
        found = []
        for record in records:
            job_id, stat = _field(record, "JOBID"), _field(record, "STAT")
            mine = _field(record, "JOB_NAME") == name and not _field(record, "ERROR")
            if mine and _JOB_ID.fullmatch(job_id) and not lsf_state(stat).finished and job_id not in found:
                found.append(job_id)
        return found

    async def shows_other_users_jobs(self, executor: Executor) -> bool | None:
        """Whether ``SECURE_JOB_INFO_LEVEL`` (lsb.params) is 0, which lets every user see every job.

        Levels 1 to 5 hide some of other users' jobs from everyone but the primary administrator,
        which this cannot tell the hub's account is: then False (one query per user, with a
        warning; set ``status_query_scope = "cluster"`` for an account that sees every job)."""
        try:
            result = await executor.run(["bparams", "-a"])
        except ExecutorError:
            return None
        level = parse_secure_job_info_level(result.stdout) if result.ok else None
        return None if level is None else level == 0

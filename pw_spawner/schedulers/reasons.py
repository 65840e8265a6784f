"""Why a job waits and why it ended, in plain words for the user (the sessions page).

Two things live here and nowhere else. First, what each scheduler says about a waiting job, as a
user can read it: Slurm's reason codes (``Resources``, ``Priority``, ``QOSMaxJobsPerUserLimit``...,
from SchedMD's list of job reason codes), PBS Pro's scheduler comments (``Not Running:
Insufficient amount of resource: ncpus``), Grid Engine's held and error states, and LSF's pending
reasons (``New job is waiting for scheduling;``). :func:`queue_words` turns the ``reason`` of a
:class:`~pw_spawner.schedulers.base.JobInfo` into words. Second, the ways a job ends: the codes the
scheduler modules put in ``JobInfo.end_reason`` (``TIMEOUT``, ``OUT_OF_MEMORY``...), which
:func:`end_words` turns into "time limit reached", "out of memory", "failed: exit code 3"...

Everything these functions are given comes from the cluster, where anyone can name a job or a
partition and a site can patch its scheduler's messages: a reason or a code that no table knows is
shown as itself, its control characters made blanks and cut to :data:`MAX_WORDS` characters, and
only the first :data:`MAX_INPUT` characters of any text are read at all.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING

from ..status import clean_message

if TYPE_CHECKING:
    from .base import JobInfo

#: The longest text these functions return.
MAX_WORDS = 200
#: The most of a scheduler's text that is read (a real reason is a few dozen characters).
MAX_INPUT = 1000

# -- how a job ended: the codes of JobInfo.end_reason -------------------------------------------------

COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMEOUT = "TIMEOUT"
OUT_OF_MEMORY = "OUT_OF_MEMORY"
NODE_FAIL = "NODE_FAIL"
PREEMPTED = "PREEMPTED"
DEADLINE = "DEADLINE"
CPU_LIMIT = "CPU_LIMIT"
LAUNCH_FAILED = "LAUNCH_FAILED"
KILLED = "KILLED"

#: Each end reason in words; ``FAILED``, ``KILLED`` and ``LAUNCH_FAILED`` get the exit code, the
#: signal or the scheduler's message added by :func:`end_words`.
END_REASONS: dict[str, str] = {
    COMPLETED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled",
    TIMEOUT: "time limit reached",
    OUT_OF_MEMORY: "out of memory",
    NODE_FAIL: "node failure",
    PREEMPTED: "preempted",
    DEADLINE: "deadline reached",
    CPU_LIMIT: "CPU time limit reached",
    LAUNCH_FAILED: "could not be started",
    KILLED: "killed",
}

#: End reasons that say less than the others: a later answer that gives only one of these does not
#: replace an earlier, more telling one (see :mod:`.cache`).
GENERIC_END_REASONS = frozenset({"", FAILED, KILLED})

# -- why a job waits ---------------------------------------------------------------------------------

#: Slurm's reason codes (squeue ``%r``, scontrol ``Reason=``), from SchedMD's "Job Reason Codes"
#: page (slurm.schedmd.com/job_reason_codes.html), and the descriptions squeue prints instead of a
#: code for some of them (``launch failed requeued held``).
SLURM_REASONS: dict[str, str] = {
    # Waiting its turn.
    "Resources": "waiting for free resources",
    "Priority": "waiting for jobs ahead of it",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "waiting for its start time",
    "Reservation": "waiting for its reservation to start",
    "Licenses": "waiting for a license",
    "Constraints": "waiting for nodes with the features it asks for",
    "ReqNodeNotAvail": "waiting for nodes that are not available (down, drained or reserved)",
    "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions":
        "waiting for nodes that are not available (down, drained or reserved)",
    "NodeDown": "a node it needs is down",
    "Cleaning": "being requeued, still cleaning up after its last run",
    "Prolog": "its start-up script (prolog) is running",
    "FedJobLock": "waiting for the clusters of the federation",
    "SchedDefer": "deferred by the scheduler",
    "JobArrayTaskLimit": "its job array runs as many tasks at once as it may",
    "BurstBufferResources": "waiting for burst buffer space",
    "BurstBufferStageIn": "its burst buffer is being staged in",
    "BurstBufferOperation": "a burst buffer operation failed",
    # Held.
    "JobHeldUser": "held by its owner",
    "JobHeldAdmin": "held by an administrator",
    "launch failed requeued held": "held after a failed start (ask the cluster's administrators)",
    "JobHoldMaxRequeue": "held after being requeued too many times",
    # Will not start as asked.
    "PartitionTimeLimit": "asks for more time than the partition allows",
    "PartitionNodeLimit": "asks for more nodes than the partition allows, or its nodes are down",
    "PartitionConfig": "asks for more than the partition allows",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "AccountNotAllowed": "its account may not use this partition",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
    "QOSNotAllowed": "its QOS may not be used with this account or partition",
    "BadConstraints": "what it asks for can never be met",
    "DependencyNeverSatisfied": "will never start: a job it depends on did not end as required",
    "ReservationDeleted": "its reservation no longer exists",
    "MaxMemPerLimit": "asks for more memory per CPU or per node than allowed",
    "DeadLine": "cannot meet its deadline",
    "AccountingPolicy": "an accounting limit holds it",
    # Limits of the QOS, per user or per job.
    "QOSMaxCpuPerUserLimit": "you are using all the CPUs your QOS allows per user",
    "QOSMaxJobsPerUserLimit": "you are running as many jobs as your QOS allows",
    "QOSMaxSubmitJobPerUserLimit": "you have as many jobs queued as your QOS allows",
    "QOSMaxNodePerUserLimit": "you are using all the nodes your QOS allows per user",
    "QOSMaxMemoryPerUser": "you are using all the memory your QOS allows per user",
    "QOSMaxGRESPerUser": "you are using all the GPUs (or other devices) your QOS allows per user",
    "QOSMaxCpuPerJobLimit": "asks for more CPUs than your QOS allows a job",
    "QOSMaxNodePerJobLimit": "asks for more nodes than your QOS allows a job",
    "QOSMaxMemoryPerJob": "asks for more memory than your QOS allows a job",
    "QOSMaxGRESPerJob": "asks for more GPUs (or other devices) than your QOS allows a job",
    "QOSMaxWallDurationPerJobLimit": "asks for more time than your QOS allows",
    "QOSMaxCpuMinutesPerJobLimit": "asks for more CPU time than your QOS allows a job",
    "QOSMinCpuNotSatisfied": "asks for fewer CPUs than its QOS requires",
    # Limits of the QOS, all its jobs together.
    "QOSGrpCpuLimit": "the jobs of its QOS use all the CPUs the QOS allows",
    "QOSGrpNodeLimit": "the jobs of its QOS use all the nodes the QOS allows",
    "QOSGrpMemLimit": "the jobs of its QOS use all the memory the QOS allows",
    "QOSGrpGRES": "the jobs of its QOS use all the GPUs (or other devices) the QOS allows",
    "QOSGrpJobsLimit": "its QOS runs as many jobs as it may",
    "QOSGrpSubmitJobsLimit": "its QOS has as many jobs queued as it may",
    "QOSGrpCPUMinutesLimit": "its QOS has used up its CPU time",
    "QOSGrpCPURunMinutesLimit": "the running jobs of its QOS hold all the CPU time it allows",
    "QOSGrpWallLimit": "the running jobs of its QOS hold all the time it allows",
    "QOSJobLimit": "its QOS runs as many jobs as it may",
    "QOSResourceLimit": "its QOS has reached a resource limit",
    "QOSTimeLimit": "its QOS has reached its time limit",
    "QOSUsageThreshold": "its QOS has used up its share",
    # Limits of the account (association).
    "AssocGrpCpuLimit": "the jobs of its account use all the CPUs the account allows",
    "AssocGrpNodeLimit": "the jobs of its account use all the nodes the account allows",
    "AssocGrpMemLimit": "the jobs of its account use all the memory the account allows",
    "AssocGrpGRES": "the jobs of its account use all the GPUs (or other devices) the account allows",
    "AssocGrpJobsLimit": "its account runs as many jobs as it may",
    "AssocGrpSubmitJobsLimit": "its account has as many jobs queued as it may",
    "AssocGrpCPUMinutesLimit": "its account has used up its CPU time",
    "AssocGrpCPURunMinutesLimit": "the running jobs of its account hold all the CPU time it allows",
    "AssocGrpBillingMinutes": "its account has used up its allocation",
    "AssocGrpWallLimit": "the running jobs of its account hold all the time it allows",
    "AssocMaxJobsLimit": "you are running as many jobs as your account allows",
    "AssocMaxSubmitJobLimit": "you have as many jobs queued as your account allows",
    "AssocMaxCpuPerJobLimit": "asks for more CPUs than your account allows a job",
    "AssocMaxNodePerJobLimit": "asks for more nodes than your account allows a job",
    "AssocMaxMemPerJob": "asks for more memory than your account allows a job",
    "AssocMaxWallDurationPerJobLimit": "asks for more time than your account allows",
    "AssociationJobLimit": "its account runs as many jobs as it may",
    "AssociationResourceLimit": "its account has reached a resource limit",
    "AssociationTimeLimit": "its account has reached its time limit",
    # Per-account limits of the QOS.
    "MaxCpuPerAccount": "its account uses all the CPUs its QOS allows an account",
    "MaxJobsPerAccount": "its account runs as many jobs as its QOS allows an account",
    "MaxSubmitJobsPerAccount": "its account has as many jobs queued as its QOS allows an account",
    "MaxNodePerAccount": "its account uses all the nodes its QOS allows an account",
    "MaxMemoryPerAccount": "its account uses all the memory its QOS allows an account",
    "MaxGRESPerAccount": "its account uses all the GPUs (or other devices) its QOS allows an account",
    # What a finished job's reason says.
    "TimeLimit": "time limit reached",
    "OutOfMemory": "out of memory",
    "NonZeroExitCode": "exited with a non-zero exit code",
    "JobLaunchFailure": "could not be launched",
    "SystemFailure": "a failure of the cluster (node, file system or network)",
    "InactiveLimit": "inactive for too long",
}

#: Families of Slurm codes (``QOSGrpBBMinutes``...), for the codes the table above leaves out.
_SLURM_FAMILIES: tuple[tuple[str, str], ...] = (
    ("QOSGrp", "the jobs of its QOS have reached one of the QOS's limits"),
    ("QOSMin", "asks for less than its QOS requires"),
    ("QOSMax", "over a per-user or per-job limit of its QOS"),
    ("AssocGrp", "the jobs of its account have reached one of the account's limits"),
    ("AssocMax", "over a per-user or per-job limit of its account"),
    ("BurstBuffer", "waiting for its burst buffer"),
)
_SLURM_PER_ACCOUNT = re.compile(r"Max\w+PerAccount")

#: PBS Pro's scheduler comments (the ``comment`` attribute of a queued job), after their ``Not
#: Running:`` or ``Can Never Run:``, from the scheduler's message table (OpenPBS src/scheduler).
#: A ``{0}`` takes the resource or queue named in the comment.
PBS_COMMENTS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern, re.IGNORECASE), words) for
                                                                pattern, words in (
    (r"^Insufficient amount of queue resource:?\s*([\w.-]*)",
     "the jobs of its queue use all the {0} it allows"),
    (r"^Insufficient amount of server resource:?\s*([\w.-]*)",
     "the jobs of the cluster use all the {0} it allows"),
    (r"^Insufficient amount of resource:?\s*([\w.-]*)", "waiting for free resources ({0})"),
    (r"^Not enough (?:free|total) nodes available|^Not enough of the right type of nodes",
     "waiting for free nodes"),
    (r"^No available resources on nodes|^Can't preempt enough work", "waiting for free resources"),
    (r"conflict with reservation or top job|interfere with a top job|strict sorted order|"
     r"starving job|^Draining system", "waiting for jobs ahead of it"),
    (r"interfere with a (?:confirmed )?reservation", "waiting for a reservation to end"),
    (r"^User has reached (?:queue \S+ |server )?running job limit|job limit reached for user",
     "you are running as many jobs as you may"),
    (r"per-user limit reached on resource\s+([\w.-]+)|exceed user \S+ limit on resource\s+([\w.-]+)",
     "you are using all the {0} you may"),
    (r"^Group has reached|job limit reached for group|per-group|exceed group",
     "your group is using all it may"),
    (r"^Project has reached|job limit reached for project|per-project|exceed project",
     "its project is using all it may"),
    (r"job limit has been reached|^Server job limit|exceed overall limit", "the queue is full"),
    (r"^Queue not started|^Queue \S+ is stopped", "its queue is stopped"),
    (r"dedicated time", "waiting for the end of a maintenance window"),
    (r"primetime", "waiting for its time window (prime time or non-prime time)"),
    (r"too many failed attempts to run", "held after too many failed starts"),
    (r"^Job held by|^job held", "held"),
    (r"depend", "waiting for another job to finish"),
    (r"job_sort_formula threshold", "its priority is below the scheduler's threshold"),
    (r"zero shares for fairshare", "its account has no share of the cluster"),
    (r"^Specified \S+ does not exist", "asks for something the cluster does not have"),
))
_PBS_NEVER = re.compile(r"^Can Never Run:\s*", re.IGNORECASE)
_PBS_NOT_RUNNING = re.compile(r"^Not Running:\s*", re.IGNORECASE)

#: Grid Engine: the words :mod:`.sge` gives a waiting job (from its state letters; ``qstat -xml``
#: gives no reason), and the state letters themselves.
_SGE_ERROR = "in an error state: it will not start until the error is cleared (qstat -j says why)"
SGE_REASONS: dict[str, str] = {
    "held": "held (qrls releases it)",
    "in error (see qstat -j)": _SGE_ERROR,
    "suspended": "suspended",
    "suspended (threshold)": "suspended while its host is busy",
    "qw": "waiting in the queue",
    "hqw": "held (qrls releases it)",
    "hRwq": "held, to be restarted",
    "Eqw": _SGE_ERROR,
}

#: LSF's pending reasons (``bjobs -o pend_reason``; several, each ending in ``;``), from IBM's
#: LSF 10.1 pages on pending reasons and OpenLava's message catalogue, and the words :mod:`.lsf`
#: gives a job LSF gives no reason for.
LSF_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern, re.IGNORECASE), words) for
                                                               pattern, words in (
    (r"^New job is waiting for scheduling", "waiting to be scheduled"),
    (r"requirements for reserving resource \(([\w.-]+)\) not satisfied", "waiting for free resources ({0})"),
    (r"^Not enough (?:job slot|processors|hosts)|^Not enough free|job slot limit reached on host",
     "waiting for free job slots"),
    (r"user has reached (?:his/her|the) (?:per-user )?job slot limit|user.*job slot limit",
     "you are running as many jobs as you may"),
    (r"queue has reached its (?:per-user )?job slot limit|queue.*job slot limit", "its queue is full"),
    (r"dependency condition not satisfied|depend", "waiting for another job to finish"),
    (r"suspended by (?:the )?user while pending", "held by its owner"),
    (r"suspended by (?:LSF admin|the LSF administrator|root|an administrator)", "held by an administrator"),
    (r"begin time|start time has not been reached", "waiting for its start time"),
    (r"queue is inactivated|queue .*closed|queue.*window", "its queue is closed"),
    (r"closed by LSF administrator|host is closed", "waiting for a host to be opened"),
    (r"Individual host-based reasons|host-based reasons", "waiting for a suitable host"),
    (r"resource limit|limit .*reached|limit has been reached", "a resource limit is reached"),
    (r"^(?:held|suspended|waiting|its host|LSF has lost|killed)", ""),  # :mod:`.lsf`'s own words
))
_LSF_HOSTS = re.compile(r":\s*\d+\s+hosts?\s*$", re.IGNORECASE)


def _clean(text: object, limit: int = MAX_WORDS) -> str:
    """Cluster text fit to show: bounded, control characters made blanks, runs of blanks one."""
    flat = clean_message(str(text)[:MAX_INPUT], MAX_INPUT)
    return clean_message(" ".join(flat.split()), limit)


def _slurm_words(reason: str) -> str:
    code = reason.strip("()").strip()
    if code in SLURM_REASONS:
        return SLURM_REASONS[code]
    # "ReqNodeNotAvail, UnavailableNodes:node[1-3]": the code, then what it names.
    head, _, detail = code.partition(",")
    if head.strip() in SLURM_REASONS:
        words = SLURM_REASONS[head.strip()]
        detail = detail.strip()
        return f"{words}: {detail}" if detail else words
    for prefix, words in _SLURM_FAMILIES:
        if code.startswith(prefix) and re.fullmatch(r"\w+", code):
            return f"{words} ({code})"
    if _SLURM_PER_ACCOUNT.fullmatch(code):
        return f"its account has reached a per-account limit of its QOS ({code})"
    return code


def _fill(words: str, match: re.Match[str]) -> str:
    named = next((group for group in match.groups() if group), "")
    if "{0}" not in words:
        return words
    if named:
        return words.replace("{0}", named)
    # No resource named: the words without the parentheses (or the blank) it would have filled.
    return words.replace(" ({0})", "").replace(" {0}", " resources")


def _pbs_words(comment: str) -> str:
    never = _PBS_NEVER.match(comment)
    text = comment[never.end():] if never else _PBS_NOT_RUNNING.sub("", comment)
    if text.startswith("Job run at"):  # the comment of a job that started: no reason to wait
        return ""
    if never:  # the scheduler's own words say what cannot be had
        return f"can never run as asked: {text}" if text else "can never run as asked"
    for pattern, words in PBS_COMMENTS:
        match = pattern.search(text)
        if match:
            return _fill(words, match)
    return text


def _sge_words(reason: str) -> str:
    if reason in SGE_REASONS:
        return SGE_REASONS[reason]
    if re.fullmatch(r"[a-zA-Z]{1,6}", reason):  # state letters the table does not list
        if "E" in reason:
            return SGE_REASONS["Eqw"]
        if "h" in reason:
            return SGE_REASONS["hqw"]
        if any(letter in reason for letter in "sST"):
            return "suspended"
    return reason


def _lsf_words(reason: str) -> str:
    said: list[str] = []
    for part in reason.split(";"):
        part = _LSF_HOSTS.sub("", part.strip()).strip()
        if not part:
            continue
        words = part
        for pattern, known in LSF_REASONS:
            match = pattern.search(part)
            if match:
                words = _fill(known, match) if known else part
                break
        if words not in said:
            said.append(words)
    return "; ".join(said)


_QUEUE_WORDS = {"slurm": _slurm_words, "pbs": _pbs_words, "torque": _pbs_words, "sge": _sge_words,
                "lsf": _lsf_words}


def queue_words(kind: str, reason: str) -> str:
    """Why a job of scheduler ``kind`` waits, in words, from the ``reason`` its scheduler gave;
    empty when it gave none. A reason no table knows is shown as itself, cleaned and capped."""
    text = _clean(reason or "", MAX_INPUT)
    if text in ("", "None", "(null)", "-"):
        return ""
    words = _QUEUE_WORDS.get(kind, lambda said: said)(text)
    return _clean(words)


def _signal_name(number: int) -> str:
    try:
        return f" ({signal.Signals(number).name})"
    except ValueError:
        return ""


def _killed_by(kind: str, exit_code: int | None) -> int | None:
    """The signal an exit status says the job died of: 128 + N from a shell; PBS writes 256 + N."""
    if exit_code is None:
        return None
    base = 256 if kind in ("pbs", "torque") else 128
    return exit_code - base if base < exit_code < base + 65 else None


def end_words(kind: str, end_reason: str, exit_code: int | None = None, message: str = "") -> str:
    """How a job of scheduler ``kind`` ended, in words: ``end_reason`` is one of the codes of
    :data:`END_REASONS` (``JobInfo.end_reason``), ``exit_code`` and ``message`` (the scheduler's
    reason or comment) what its answer also said. An empty code is an ended job the scheduler did
    not say how of; a code no table knows is shown as itself, cleaned and capped."""
    code = _clean(end_reason or "", 60).upper()
    said = queue_words(kind, message) if message else ""
    if code == "":
        return _clean(f"ended ({said})" if said else "ended")
    if code not in END_REASONS:
        return _clean(end_reason)
    words = END_REASONS[code]
    if code == FAILED:
        if exit_code not in (None, 0):
            return f"failed: exit code {exit_code}"
        return _clean(f"failed: {said}" if said else words)
    if code == KILLED:
        number = _killed_by(kind, exit_code)
        return f"killed by signal {number}{_signal_name(number)}" if number is not None else words
    if code == LAUNCH_FAILED and said:
        return _clean(f"{words}: {said}")
    return words


def job_words(kind: str, info: JobInfo) -> str:
    """Words for one answer about a job: how it ended if it did, else why it waits (or nothing)."""
    if info.state.finished:
        return end_words(kind, info.end_reason, info.exit_code, info.reason)
    return queue_words(kind, info.reason)

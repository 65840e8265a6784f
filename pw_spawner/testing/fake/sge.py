"""A fake Grid Engine: the ``qsub``, ``qstat``, ``qdel`` and ``qacct`` of Son of Grid Engine 8.1.9, for
:class:`pw_spawner.schedulers.sge.GridEngineScheduler`, answering as a one-host cell does.

The formats are those a real 8.1.9 cell printed (recorded in ``tests/data/sge``, see its
README): the layout of ``qstat -xml`` and of ``qstat -j``, the state words, qsub's ``-terse`` id line
and its "Unable to run job: ..." refusals (exit 1), "Following jobs do not exist" (exit 1), qdel's
lines on stdout, and qacct's records with their padding. The cell is one host (``PW_FAKE_HOSTNAME``,
``localhost`` by default) with the queues of ``PW_FAKE_QUEUES``; job ids count from 1000.

What is emulated is what the spawner runs, and a little more:

- ``qsub [options]`` with the script on stdin. Options come from every line of the script that
  starts with the directive prefix (``#$``, or ``-C PREFIX``; ``-C ''`` reads none), wherever it
  is in the script, split at blanks as qsub splits them, then from the command line, which wins.
  ``-N``, ``-o``/``-e`` (``[host:]path``, a directory, the pseudo variables ``$HOME $USER $JOB_ID
  $JOB_NAME $HOSTNAME $TASK_ID``; by default ``NAME.oID``/``NAME.eID`` in the job's working
  directory), ``-j y``, ``-S`` (the job runs under that shell; without it under ``/bin/sh``: a
  ``#!`` line counts for nothing, as with ``shell_start_mode posix_compliant``), ``-cwd``/``-wd``
  (else the job starts in the home directory), ``-q`` (an unknown queue is refused; a queue named
  ``full`` refuses the job as a per-user job limit does), ``-pe NAME SLOTS`` (a parallel
  environment outside ``PW_FAKE_SGE_PES`` is refused; ``NSLOTS`` is the slots), ``-l`` (an
  unknown complex is refused, a malformed time, memory or number too; ``h_rt`` is enforced:
  past it the job is killed), ``-h`` (held: ``hqw`` for ever), ``-v``, ``-A`` and ``-P`` (shown
  in qacct), ``-p`` and ``-terse`` take effect; requests after ``-soft`` are checked and shown, no
  more. ``-m``, ``-M``, ``-notify``, ``-r``, ``-R``, ``-V``, ``-w e|w|n``, ``-ac``/``-dc``/``-sc``,
  ``-js``, ``-pty`` and the ``n`` forms of ``-b``/``-now``/``-sync`` (``y`` of ``-shell``) are
  accepted and change nothing. Output files are appended to, as Grid Engine does.
- ``qstat [-xml] [-u USERS|'*'] [-s p|r|z|h|a...]``: the job table, or its XML with running jobs
  (``r``; ``dr`` once qdel'd, until the job's processes are gone) under ``queue_info`` and the
  others (``qw``, ``hqw``, and ``Eqw`` for a job that could not start: its output file cannot be
  opened, or its ``-wd`` does not exist) under ``job_info``; without ``-u`` the caller's jobs
  only. A job leaves qstat when it ends; ``-s z`` lists the last 100 that did.
- ``qstat -j IDS|NAMES``: the job's record as qstat prints it (the fields the fake knows),
  ``scheduling info`` included ("Job is in hold state", ``PW_FAKE_PENDING_REASON`` for a waiting
  job, fixed at submission); a job that is not there: "Following jobs do not exist: " and the ids,
  exit 1. With ``-xml`` only that answer (``<unknown_jobs>``, exit 0) is emulated.
- ``qdel [-f] IDS|NAMES``: a running job is "registered for deletion" (SIGTERM now, SIGKILL after
  the grace; Grid Engine sends SIGKILL at once), a waiting one deleted; ``denied: job "ID" does not
  exist`` (stdout, exit 1) for one that is not there.
- ``qacct -j [ID|NAME]``: a record per job that ran (or failed to start), once it has ended and
  ``PW_FAKE_SGE_ACCOUNTING_DELAY`` seconds have passed (``accounting_flush_time``; 0 by default, as
  in the recorded cell): ``failed 0`` and the script's exit status, or the shell's ``128 +
  signal`` for a job a signal ended; ``failed 100 : assumedly after job`` and 137 for one deleted
  while it ran, or killed past its ``h_rt``. A job deleted while it waited has no record: "error:
  job id ID not found", exit 1. qacct reads the accounting file, not the master, so it answers
  while ``PW_FAKE_QUERY_FAIL`` makes the other commands fail as with the master down.

The job's environment: the submitter's (inherited, as if ``-V``), then Grid Engine's variables:
``JOB_ID``, ``JOB_NAME``, ``JOB_SCRIPT``, ``REQUEST``, ``QUEUE``, ``NSLOTS``, ``NHOSTS``,
``NQUEUES``, ``PE`` (with ``-pe``), ``HOSTNAME``, ``SGE_ROOT``/``SGE_CELL`` (the submitter's, else
Debian's ``/var/lib/gridengine`` and ``default``), ``SGE_O_HOME``, ``SGE_O_HOST``, ``SGE_O_LOGNAME``,
``SGE_O_MAIL``, ``SGE_O_PATH``, ``SGE_O_SHELL``, ``SGE_O_WORKDIR``, ``SGE_STDOUT_PATH``,
``SGE_STDERR_PATH``, ``SGE_CWD_PATH``, ``SGE_TASK_ID=undefined``, ``ENVIRONMENT=BATCH``, and the
``-v`` variables.

Knobs (besides the shared ones of :mod:`.store`): ``PW_FAKE_QUEUES`` (the cluster queues, the first
takes a job that names none: ``all.q,short.q,long.q,gpu.q``), ``PW_FAKE_SGE_PES`` (the parallel
environments, ``qconf -spl``: ``smp``), ``PW_FAKE_SGE_COMPLEXES`` (the site's integer consumables
beside Grid Engine's built-in complexes: ``gpu``), ``PW_FAKE_SGE_ACCOUNTING_DELAY`` and
``PW_FAKE_PENDING_REASON``. ``PW_FAKE_MIN_JOB_AGE`` plays no part: Grid Engine forgets a job as soon
as it ends, and accounting keeps it.

Simplified: no request ever keeps a job waiting (``-pe smp 99`` or ``h_vmem=999G`` run at once;
``PW_FAKE_PENDING_SECONDS`` holds jobs back), and so ``-w e`` refuses nothing; ``JAT_prio`` is 0.5
shifted by a job's share of slots, 0 while held; no state ``t``, no suspension; projects, users'
rights (root may submit; anyone may qdel) and job names are not checked; qacct's usage figures
are zeros; no ``TMPDIR`` per job and no ``PE_HOSTFILE``; there is no ``qrls``, ``qhold`` or
``qalter``. Not from the recording, but from Grid Engine's sources and users' reports: the words of
option errors and their exit status (1), the memory and integer refusals, the per-user limit, the
``failed`` codes of a job that could not start (26, 1) and qacct's values for one killed at its
``h_rt``. Not emulated, and refused with a message saying so (exit 2): a script file instead of
stdin, ``-b y``, arrays (``-t``), dependencies (``-hold_jid``), ``-sync y``, ``-now y``, ``-a``,
``-ar``, ``-verify``, ``-w v|p``, ``-@``, ``-clear``, ``-binding``, checkpointing and JSV options,
qstat's other views (``-f``, ``-F``, ``-ext``, ``-r``, ``-t``, ``-g``, ``-explain``...) and the
detailed XML of ``qstat -xml -j`` for a job that exists, ``qdel -u``, and qacct without ``-j``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from xml.sax.saxutils import escape

from .processes import cancel, load_jobs, submit, supervisor_alive
from .store import (
    ACTIVE_STATES,
    FINISHED_STATES,
    CommandError,
    Handler,
    Job,
    JobStore,
    account,
    check_submit_fail,
    cwd,
    knob,
    knob_float,
    knob_list,
    new_job,
    node_name,
    out,
    query_fails,
    read_stdin,
)

#: Flavours (fixture ``fake_sge``, wrappers of ``install_fake_scheduler(dir, "sge")``) and the
#: settings their wrappers default: none.
FLAVORS: dict[str, dict[str, str]] = {"sge": {}}
KNOBS = ("PW_FAKE_QUEUES", "PW_FAKE_SGE_PES", "PW_FAKE_SGE_COMPLEXES", "PW_FAKE_SGE_ACCOUNTING_DELAY",
         "PW_FAKE_PENDING_REASON")
SGE_VERSION = "8.1.9"
DEFAULT_QUEUES = "all.q,short.q,long.q,gpu.q"
DEFAULT_PES = "smp"
DEFAULT_SITE_COMPLEXES = "gpu"
#: What Debian's packages set (the recorded cell's distribution), for a submitter without them.
DEFAULT_SGE_ROOT = "/var/lib/gridengine"
DEFAULT_CELL = "default"
#: The default shell of a queue (``qconf -sq``), which runs the script unless ``-S`` says.
DEFAULT_SHELL = "/bin/sh"
#: How many finished jobs ``qstat -s z`` lists (the master's ``finished_jobs``).
FINISHED_JOBS = 100

_XML_HEAD = "<?xml version='1.0'?>\n"
_XSD = "http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd"
_RULE = "=" * 62
_KILLED = (100, "assumedly after job")
#: Why a job could not start, as qacct's ``failed`` says it.
_FAILED_OUTPUT = "26 : opening input/output file"
_FAILED_BEFORE = "1 : assumedly before job"

#: Grid Engine's built-in complexes (``qconf -sc`` of a new cell): name -> (shortcut, type).
_BUILTIN_COMPLEXES: dict[str, tuple[str, str]] = {
    "arch": ("a", "string"), "calendar": ("c", "string"), "cpu": ("cpu", "double"),
    "display_win_gui": ("dwg", "bool"), "h_core": ("h_core", "memory"), "h_cpu": ("h_cpu", "time"),
    "h_data": ("h_data", "memory"), "h_fsize": ("h_fsize", "memory"), "h_rss": ("h_rss", "memory"),
    "h_rt": ("h_rt", "time"), "h_stack": ("h_stack", "memory"), "h_vmem": ("h_vmem", "memory"),
    "hostname": ("h", "string"), "load_avg": ("la", "double"), "load_long": ("ll", "double"),
    "load_medium": ("lm", "double"), "load_short": ("ls", "double"), "m_core": ("core", "int"),
    "m_socket": ("socket", "int"), "m_thread": ("thread", "int"), "m_topology": ("topo", "string"),
    "m_topology_inuse": ("utopo", "string"), "mem_free": ("mf", "memory"), "mem_total": ("mt", "memory"),
    "mem_used": ("mu", "memory"), "min_cpu_interval": ("mci", "time"), "np_load_avg": ("nla", "double"),
    "np_load_long": ("nll", "double"), "np_load_medium": ("nlm", "double"),
    "np_load_short": ("nls", "double"), "num_proc": ("p", "int"), "qname": ("q", "string"),
    "rerun": ("re", "bool"), "s_core": ("s_core", "memory"), "s_cpu": ("s_cpu", "time"),
    "s_data": ("s_data", "memory"), "s_fsize": ("s_fsize", "memory"), "s_rss": ("s_rss", "memory"),
    "s_rt": ("s_rt", "time"), "s_stack": ("s_stack", "memory"), "s_vmem": ("s_vmem", "memory"),
    "seq_no": ("seq", "int"), "slots": ("s", "int"), "swap_free": ("sf", "memory"),
    "swap_rate": ("sr", "memory"), "swap_rsvd": ("srsv", "memory"), "swap_total": ("st", "memory"),
    "swap_used": ("su", "memory"), "tmpdir": ("tmp", "string"), "virtual_free": ("vf", "memory"),
    "virtual_total": ("vt", "memory"), "virtual_used": ("vu", "memory"),
}

# qsub's options: how many words follow each. Those the fake would get wrong are refused.
_QSUB_OPTIONS: dict[str, int] = {
    "-A": 1, "-C": 1, "-M": 1, "-N": 1, "-P": 1, "-R": 1, "-S": 1, "-V": 0, "-ac": 1, "-b": 1,
    "-cwd": 0, "-dc": 1, "-e": 1, "-h": 0, "-hard": 0, "-j": 1, "-js": 1, "-l": 1, "-m": 1,
    "-notify": 0, "-now": 1, "-o": 1, "-p": 1, "-pe": 2, "-pty": 1, "-q": 1, "-r": 1, "-sc": 1,
    "-shell": 1, "-soft": 0, "-sync": 1, "-terse": 0, "-v": 1, "-w": 1, "-wd": 1,
    # Known to qsub, not emulated.
    "-@": 1, "-a": 1, "-ar": 1, "-binding": 1, "-c": 1, "-ckpt": 1, "-clear": 0, "-dl": 1, "-help": 0,
    "-hold_jid": 1, "-hold_jid_ad": 1, "-i": 1, "-jsv": 1, "-masterq": 1, "-t": 1, "-tc": 1,
    "-verify": 0,
}
_QSUB_NOT_EMULATED = {
    "-@": "option files (-@)", "-a": "start times (-a)", "-ar": "advance reservations (-ar)",
    "-binding": "core binding (-binding)", "-c": "checkpointing (-c)", "-ckpt": "checkpointing (-ckpt)",
    "-clear": "-clear", "-dl": "deadlines (-dl)", "-help": "-help", "-hold_jid": "dependencies (-hold_jid)",
    "-hold_jid_ad": "dependencies (-hold_jid_ad)", "-i": "an input file (-i)",
    "-jsv": "job submission verifiers (-jsv)",
    "-masterq": "-masterq", "-t": "array jobs (-t)", "-tc": "array jobs (-tc)", "-verify": "-verify",
}
#: Options whose value decides: only these values are emulated.
_QSUB_ONLY = {"-b": ("n", "no"), "-now": ("n", "no"), "-sync": ("n", "no"), "-shell": ("y", "yes"),
              "-w": ("e", "w", "n")}
_QSTAT_OPTIONS = {"-xml": 0, "-u": 1, "-j": 1, "-s": 1}
_QSTAT_NOT_EMULATED = ("-f", "-F", "-ext", "-r", "-t", "-g", "-pri", "-urg", "-explain", "-q", "-l",
                       "-pe", "-U", "-ne", "-help", "-qs", "-cb", "-ncb", "-xml_w")


def not_emulated(prog: str, what: str) -> CommandError:
    return CommandError(2, f"{prog}: {what} is not emulated by pw_spawner's fake Grid Engine")


def _invalid_option(word: str) -> str:
    return f'ERROR! invalid option argument "{word}"'


def _master_down() -> CommandError:
    """What a client says when sge_qmaster does not answer."""
    port = os.environ.get("SGE_QMASTER_PORT") or "6444"
    return CommandError(1, "error: commlib error: got select error (Connection refused)",
                        f'error: unable to send message to qmaster using port {port} on host '
                        f'"{node_name()}": got send error')


def _short_host(name: str) -> str:
    return name.split(".", 1)[0]


# --------------------------------------------------------------------------- qsub's options


@dataclass
class Request:
    """What one qsub asks for, its options merged (the command line last, so it wins)."""

    name: str = "STDIN"
    output: str | None = None
    error: str | None = None
    merge: bool = False
    shell: str | None = None
    queues: list[str] = field(default_factory=list)
    pe: str | None = None
    pe_range: str = ""
    hard: dict[str, str] = field(default_factory=dict)
    soft: dict[str, str] = field(default_factory=dict)
    account: str = "sge"
    project: str | None = None
    priority: int = 0
    held: bool = False
    terse: bool = False
    cwd: bool = False
    wd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    mail: str | None = None
    notify: bool = False


def script_words(script: str, prefix: str) -> list[list[str]]:
    """The words of every line that starts with ``prefix``, anywhere in the script, as qsub
    splits them: at blanks, each word losing its surrounding quotes (no shell quoting)."""
    if not prefix:
        return []
    found = []
    for line in script.splitlines():
        if line.startswith(prefix):
            words = [_unquote(word) for word in line[len(prefix):].split()]
            if words:
                found.append(words)
    return found


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        return word[1:-1]
    return word


def parse_options(words: Sequence[str], in_script: bool) -> list[tuple[str, list[str]]]:
    """(option, its words) pairs; CommandError as qsub words the complaint."""
    prefix = "Unable to read script file because of error: " if in_script else "qsub: "
    found: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word not in _QSUB_OPTIONS:
            if word.startswith("-") and word != "-":
                raise CommandError(1, prefix + _invalid_option(word))
            if in_script:
                raise not_emulated("qsub", f"the word {word!r} in a directive (not an option)")
            raise not_emulated("qsub", "a script file (give the script on stdin)")
        count = _QSUB_OPTIONS[word]
        values = list(words[i + 1:i + 1 + count])
        if len(values) < count:
            raise CommandError(1, f"{prefix}ERROR! {word} option must have argument")
        if word in _QSUB_NOT_EMULATED:
            raise not_emulated("qsub", _QSUB_NOT_EMULATED[word])
        if word in _QSUB_ONLY and values[0].lower() not in _QSUB_ONLY[word]:
            raise not_emulated("qsub", f"{word} {values[0]}")
        found.append((word, values))
        i += 1 + count
    return found


def _env_list(value: str, into: dict[str, str]) -> None:
    """``-v NAME[=VALUE],...``: a name alone takes the submitter's value."""
    for item in value.split(","):
        name, eq, setting = item.partition("=")
        if name:
            into[name] = setting if eq else os.environ.get(name, "")


def build_request(batches: Iterable[list[tuple[str, list[str]]]]) -> Request:
    """One request from option lists in order (the script's, then the command line's)."""
    req = Request()
    for batch in batches:
        soft = False
        for option, values in batch:
            value = values[0] if values else ""
            if option == "-N":
                req.name = value
            elif option in ("-o", "-e"):
                setattr(req, "output" if option == "-o" else "error", value)
            elif option == "-j":
                req.merge = value.lower() in ("y", "yes")
            elif option == "-S":
                req.shell = value.split(",", 1)[0].rpartition(":")[2]  # [[host]:]path[,...]
            elif option == "-q":
                req.queues = [q for q in value.split(",") if q]
            elif option == "-pe":
                req.pe, req.pe_range = values
            elif option == "-l":
                target = req.soft if soft else req.hard
                for item in value.split(","):
                    name, eq, setting = item.partition("=")
                    if name:
                        target[name] = setting if eq else "TRUE"
            elif option in ("-hard", "-soft"):
                soft = option == "-soft"
            elif option == "-A":
                req.account = value
            elif option == "-P":
                req.project = value
            elif option == "-p":
                req.priority = _priority(value)
            elif option == "-h":
                req.held = True
            elif option == "-terse":
                req.terse = True
            elif option == "-cwd":
                req.cwd, req.wd = True, None
            elif option == "-wd":
                req.cwd, req.wd = False, value
            elif option == "-v":
                _env_list(value, req.env)
            elif option == "-M":
                req.mail = value
            elif option == "-notify":
                req.notify = True
    return req


def _priority(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 2048
    if not -1023 <= number <= 1024:
        raise CommandError(1, "qsub: ERROR! invalid priority, must be an integer from -1023 to 1024")
    return number


# --------------------------------------------------------------------------- qsub's checks


def sge_seconds(value: str) -> int | None:
    """Seconds of a Grid Engine time (``[[H:]M:]S``, each part possibly empty, or ``INFINITY``);
    None for INFINITY; ValueError when it is not a time."""
    text = value.strip()
    if text.upper() in ("INFINITY", "INF"):
        return None
    parts = text.split(":")
    if len(parts) > 3 or not all(re.fullmatch(r"\d*", part) for part in parts) or not any(parts):
        raise ValueError(value)
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part or 0)
    return seconds


def _is_memory(value: str) -> bool:
    return value.upper() in ("INFINITY", "INF") or re.fullmatch(r"\d+(\.\d+)?[kKmMgGtT]?", value) is not None


def _complexes() -> dict[str, tuple[str, str]]:
    """Every complex the cell knows: the built-in ones and the site's (integers)."""
    known = dict(_BUILTIN_COMPLEXES)
    for name in knob_list("PW_FAKE_SGE_COMPLEXES", DEFAULT_SITE_COMPLEXES):
        known.setdefault(name, (name, "int"))
    return known


def check_resources(requested: dict[str, str]) -> dict[str, str]:
    """The requests under their complexes' names, times in seconds, as the master keeps them."""
    known = _complexes()
    shortcuts = {short: name for name, (short, _) in known.items()}
    checked: dict[str, str] = {}
    for given, value in requested.items():
        name = given if given in known else shortcuts.get(given)
        if name is None:
            raise CommandError(1, f'Unable to run job: unknown resource "{given}"', "Exiting.")
        kind = known[name][1]
        if kind == "time":
            try:
                seconds = sge_seconds(value)
            except ValueError:
                raise CommandError(1, f'Unable to run job: attribute "{name}" is not a time value',
                                   "Exiting.") from None
            value = "INFINITY" if seconds is None else str(seconds)
        elif (kind == "memory" and not _is_memory(value)) or (kind == "int" and not value.isdigit()):
            what = {"memory": "a memory", "int": "an integer"}[kind]
            raise CommandError(1, f'Unable to run job: attribute "{name}" is not {what} value', "Exiting.")
        checked[name] = value
    return checked


def _queue(req: Request, user: str, store: JobStore) -> str:
    """The cluster queue the job goes to; the master's refusals."""
    queues = knob_list("PW_FAKE_QUEUES", DEFAULT_QUEUES)
    chosen = []
    for wanted in req.queues or queues[:1]:
        matching = fnmatch.filter(queues, wanted.split("@", 1)[0])
        if not matching:
            raise CommandError(1, f'Unable to run job: Job was rejected because job requests unknown queue '
                                  f'"{wanted}"', "Exiting.")
        chosen += matching
    if "full" in chosen:
        count = sum(1 for job in load_jobs(store, "sge")
                    if job["user"] == user and job["state"] in ACTIVE_STATES)
        raise CommandError(1, f"Unable to run job: job rejected: only {count} jobs are allowed per user "
                              f"(current job count: {count})", "Exiting.")
    return chosen[0]


def _slots(req: Request) -> int:
    """The slots a job gets: one, or the most of its ``-pe`` range (the least if open-ended)."""
    if req.pe is None:
        return 1
    if not any(fnmatch.fnmatchcase(pe, req.pe) for pe in knob_list("PW_FAKE_SGE_PES", DEFAULT_PES)):
        raise CommandError(1, f'Unable to run job: job rejected: the requested parallel environment '
                              f'"{req.pe}" does not exist', "Exiting.")
    match = re.fullmatch(r"(\d*)(-?)(\d*)", req.pe_range)
    if not match or not (match.group(1) or match.group(3)):
        raise CommandError(1, f'qsub: ERROR! invalid slot range "{req.pe_range}" of -pe')
    low, dash, high = match.groups()
    if not dash:
        return max(1, int(low))
    return max(1, int(high) if high else int(low))


def _granted_pe(req: Request) -> str | None:
    """The parallel environment a job runs in: the first of the cell's that its -pe matches."""
    if req.pe is None:
        return None
    return next(pe for pe in knob_list("PW_FAKE_SGE_PES", DEFAULT_PES) if fnmatch.fnmatchcase(pe, req.pe))


# --------------------------------------------------------------------------- qsub


def _pseudo(path: str, job: Job) -> str:
    """Grid Engine's pseudo variables in -o, -e and -wd paths."""
    values = {"HOME": job["home"], "USER": job["user"], "JOB_ID": str(job["id"]), "JOB_NAME": job["name"],
              "HOSTNAME": node_name(), "TASK_ID": "undefined"}
    return re.sub(r"\$(HOME|USER|JOB_ID|JOB_NAME|HOSTNAME|TASK_ID)\b", lambda m: values[m.group(1)], path)


def _output_path(value: str | None, job: Job, letter: str) -> str:
    """Where ``-o`` (letter ``o``) or ``-e`` sends a stream: ``[host:]path``, a directory, or
    ``NAME.oID`` in the job's working directory."""
    default = f"{job['name']}.{letter}{job['id']}"
    if not value:
        return os.path.join(job["workdir"], default)
    first = value.split(",", 1)[0]
    if re.match(r"[A-Za-z0-9_.-]*:", first):
        first = first.split(":", 1)[1]  # host:path
    path = os.path.normpath(os.path.join(job["workdir"], _pseudo(first, job)))
    return os.path.join(path, default) if os.path.isdir(path) else path


def _runs_in_bash(shell: str) -> bool:
    return os.path.basename(shell) == "bash"


def cmd_qsub(args: list[str]) -> int:
    """``qsub [options]``, the script on stdin."""
    check_submit_fail()
    given = parse_options(args, in_script=False)
    prefix = "#$"
    for option, values in given:
        if option == "-C":
            prefix = values[0]
    script = read_stdin()
    if not script:
        raise CommandError(1, "Unable to read script file because of error: no input read from stdin")
    # -C in the script counts for nothing, as in qsub (build_request ignores it everywhere).
    in_script = [pair for words in script_words(script, prefix) for pair in parse_options(words, True)]
    req = build_request([in_script, given])
    store = JobStore.from_env()
    who, here = account(), cwd()
    queue = _queue(req, who["user"], store)
    slots = _slots(req)
    hard, soft = check_resources(req.hard), check_resources(req.soft)
    limit = hard.get("h_rt")
    if req.cwd:
        workdir = here
    elif req.wd:
        wd = req.wd.replace("$HOME", who["home"]).replace("$USER", who["user"])
        workdir = os.path.normpath(os.path.join(here, wd))
    else:
        workdir = who["home"]
    shell = req.shell or DEFAULT_SHELL
    job = new_job("sge", req.name, queue, workdir)
    host = _short_host(job["submit_host"])
    job.update(
        time_limit=int(limit) if limit and limit.isdigit() and int(limit) > 0 else None,
        open_mode="append",
        sge={**asdict(req), "hard": hard, "soft": soft, "slots": slots, "granted_pe": _granted_pe(req),
             "run_shell": shell, "pending_reason": knob("PW_FAKE_PENDING_REASON") or None,
             "mail": req.mail or f"{who['user']}@{host}", "deleted": False, "start_error": None,
             "submit_env": {
                 "SGE_O_HOME": who["home"], "SGE_O_LOGNAME": who["user"],
                 "SGE_O_PATH": os.environ.get("PATH", ""), "SGE_O_SHELL": who["shell"],
                 "SGE_O_MAIL": os.environ.get("MAIL", f"/var/mail/{who['user']}"),
                 "SGE_O_WORKDIR": here, "SGE_O_HOST": host},
             "sge_root": os.environ.get("SGE_ROOT") or DEFAULT_SGE_ROOT,
             "sge_cell": os.environ.get("SGE_CELL") or DEFAULT_CELL})
    if req.held:
        job["pending_seconds"] = 100 * 365 * 86400.0  # until qdel: qrls is not emulated
    # The supervisor runs the kept script with bash; under another shell it runs a line that hands
    # the script, kept beside it, to that shell (the line finds it from its own path).
    kept = script if _runs_in_bash(shell) else f'exec {shlex.quote(shell)} "${{0%.sh}}.job"\n'

    def resolve(new: Job) -> None:
        new["stdout"] = _output_path(req.output, new, "o")
        new["stderr"] = new["stdout"] if req.merge else _output_path(req.error, new, "e")
        new["sge"]["script"] = store.file(new["id"], ".sh")
        if kept is not script:
            path = store.file(new["id"], ".job")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(script)
            new["sge"]["script"] = path

    job = submit(store, job, kept, resolve)
    out(f"{job['id']}\n" if req.terse else f'Your job {job["id"]} ("{job["name"]}") has been submitted\n')
    return 0


def job_environment(job: Job) -> dict[str, str]:
    """The variables Grid Engine's shepherd gives a batch job (the usual ones).

    A working directory that does not exist stops the job before it starts (Grid Engine puts it
    in error, ``Eqw``): raised here, where the supervisor takes it as a job that could not start.
    """
    sge = job["sge"]
    if not os.path.isdir(job["workdir"]):
        sge["start_error"] = _FAILED_BEFORE
        sge["error_reason"] = f"error: can't chdir to {job['workdir']}: No such file or directory"
        raise OSError(sge["error_reason"])
    # What qstat -j says if the supervisor then cannot open the output file (the job's next step).
    sge["error_reason"] = f"error: can't open output file \"{job['stdout']}\": No such file or directory"
    env = dict(sge["env"])
    env.update(sge["submit_env"])
    env.update({
        "JOB_ID": str(job["id"]), "JOB_NAME": job["name"], "REQUEST": job["name"],
        "JOB_SCRIPT": sge["script"], "QUEUE": job["partition"], "NSLOTS": str(sge["slots"]),
        "NHOSTS": "1", "NQUEUES": "1", "HOSTNAME": job["node"], "SGE_ROOT": sge["sge_root"],
        "SGE_CELL": sge["sge_cell"], "SGE_ARCH": "lx-amd64", "SGE_ACCOUNT": sge["account"],
        "SGE_CWD_PATH": job["workdir"], "SGE_STDOUT_PATH": job["stdout"], "SGE_STDERR_PATH": job["stderr"],
        "SGE_STDIN_PATH": "/dev/null", "SGE_TASK_ID": "undefined", "SGE_TASK_FIRST": "undefined",
        "SGE_TASK_LAST": "undefined", "SGE_TASK_STEPSIZE": "undefined", "RESTARTED": "0",
        "ENVIRONMENT": "BATCH",
        # The execution host sets these from the account, whatever the submitter had.
        "HOME": job["home"], "USER": job["user"], "LOGNAME": job["user"], "SHELL": job["shell"],
    })
    if sge["granted_pe"]:
        env["PE"] = sge["granted_pe"]
    return env


# --------------------------------------------------------------------------- job states


def _deleting(job: Job) -> bool:
    """qdel'd while it ran, and its processes not yet gone: Grid Engine shows ``dr``."""
    return (job["state"] == "CANCELLED" and bool(job.get("pid")) and job.get("exit_code") is None
            and supervisor_alive(job))


def _in_error(job: Job) -> bool:
    """Could not start (no output file, no working directory): ``Eqw`` until qdel."""
    return job["state"] == "FAILED" and not job.get("pid") and not job["sge"].get("deleted")


def state_word(job: Job) -> str | None:
    """The job's qstat state word; None once it has ended (qstat no longer lists it)."""
    if job["state"] == "PENDING":
        return "hqw" if job["sge"]["held"] else "qw"
    if job["state"] == "RUNNING" or (job["state"] == "TIMEOUT" and job.get("exit_code") is None
                                     and supervisor_alive(job)):
        return "r"
    if _deleting(job):
        return "dr"
    if _in_error(job):
        return "Eqw"
    return None


def _priorities(jobs: Sequence[Job]) -> dict[int, float]:
    """``JAT_prio``: 0.5 for every job that waits or runs, moved by up to a quarter by its share of
    the cell's slots as the urgency of slots does; 0 while held or in error. A finished job keeps
    the priority it had when it was deleted while waiting (0 once it has run), as qstat -s z shows."""
    weighed = [job for job in jobs if state_word(job) in ("qw", "r", "dr")]
    slots = [job["sge"]["slots"] for job in weighed]
    low, high = (min(slots), max(slots)) if slots else (1, 1)
    prio = {job["id"]: float(job["sge"].get("last_prio") or 0.0) for job in jobs}
    for job in weighed:
        share = (job["sge"]["slots"] - low) / (high - low) if high > low else None
        prio[job["id"]] = 0.5 if share is None else 0.25 + 0.5 * share
    return prio


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp))


def _ctime(stamp: float | None) -> str:
    return time.ctime(stamp) if stamp else "-/-"


# --------------------------------------------------------------------------- qstat


def _words(value: str) -> list[str]:
    return [word for word in re.split(r"[,\s]+", value) if word]


def _selected(jobs: Sequence[Job], words: Sequence[str]) -> tuple[list[Job], list[str]]:
    """The jobs named by ids or names (patterns), and the words that name none."""
    found: list[Job] = []
    missing = []
    for word in words:
        hits = [job for job in jobs if (str(job["id"]) == word if word.isdigit()
                                        else fnmatch.fnmatchcase(job["name"], word))]
        if not hits:
            missing.append(word)
        found += [job for job in hits if job not in found]
    return found, missing


def _states_shown(letters: str) -> set[str]:
    """Which qstat state words ``-s`` lists: p (waiting, held, in error), r, s, z, h (held)."""
    shown: set[str] = set()
    for letter in letters.replace("a", "prs"):
        shown |= {"p": {"qw", "hqw", "Eqw"}, "r": {"r", "dr"}, "s": set(), "z": {"z"},
                  "h": {"hqw"}}.get(letter, set())
    return shown


def _listed(jobs: Sequence[Job], users: set[str] | None, shown: set[str]) -> list[tuple[Job, str]]:
    """(job, state word) as qstat lists them: running ones, then waiting ones, then finished ones."""
    mine = [job for job in jobs if users is None or job["user"] in users]
    live = [(job, word) for job in mine if (word := state_word(job)) is not None and word in shown]
    finished: list[tuple[Job, str]] = []
    if "z" in shown:
        ended = sorted((job for job in mine if state_word(job) is None and job["state"] in FINISHED_STATES),
                       key=lambda job: job.get("end_time") or 0)
        finished = [(job, "z") for job in ended[-FINISHED_JOBS:]]
    return live + finished


def _xml_job(job: Job, word: str, prio: float) -> str:
    running = word in ("r", "dr")
    list_state = "running" if running else "zombie" if word == "z" else "pending"
    when = ("JAT_start_time", job["start_time"]) if running else ("JB_submission_time", job["submit_time"])
    queue = f"{job['partition']}@{job['node']}" if running else ""
    fields = [("JB_job_number", str(job["id"])), ("JAT_prio", f"{prio:.5f}"), ("JB_name", job["name"]),
              ("JB_owner", job["user"]), ("state", word), (when[0], _iso(when[1])), ("queue_name", queue),
              ("slots", str(job["sge"]["slots"]))]
    inner = "".join(f"      <{tag}>{escape(value)}</{tag}>\n" for tag, value in fields)
    return f'    <job_list state="{list_state}">\n{inner}    </job_list>\n'


def qstat_xml(listed: Sequence[tuple[Job, str]], prio: dict[int, float]) -> str:
    running = sorted((pair for pair in listed if pair[1] in ("r", "dr")), key=lambda pair: pair[0]["id"])
    waiting = sorted((pair for pair in listed if pair[1] not in ("r", "dr", "z")),
                     key=lambda pair: (-prio[pair[0]["id"]], pair[0]["id"]))
    ended = [pair for pair in listed if pair[1] == "z"]
    queue_info = "".join(_xml_job(job, word, prio[job["id"]]) for job, word in running)
    job_info = "".join(_xml_job(job, word, prio[job["id"]]) for job, word in [*waiting, *ended])
    return (f'{_XML_HEAD}<job_info  xmlns:xsd="{_XSD}">\n  <queue_info>\n{queue_info}  </queue_info>\n'
            f"  <job_info>\n{job_info}  </job_info>\n</job_info>\n")


def qstat_table(listed: Sequence[tuple[Job, str]], prio: dict[int, float]) -> str:
    """qstat's job table; nothing at all when it lists no job."""
    if not listed:
        return ""
    def place(pair: tuple[Job, str]) -> tuple[int, float, int]:
        job, word = pair
        if word in ("r", "dr"):
            return 0, 0.0, job["id"]
        return (2, 0.0, 0) if word == "z" else (1, -prio[job["id"]], job["id"])

    rows = sorted(listed, key=place)
    lines = [f"{'job-ID':<7} {'prior':<7} {'name':<10} {'user':<12} {'state':<5} {'submit/start at':<19} "
             f"{'queue':<30} {'slots':<5} {'ja-task-ID':<10} ", "-" * 113]
    for job, word in rows:
        running = word in ("r", "dr")
        stamp = job["start_time"] if running else job["submit_time"]
        queue = f"{job['partition']}@{job['node']}" if running else ""
        when = time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(stamp))
        lines.append(f"{job['id']:>7} {prio[job['id']]:7.5f} {job['name']:<10.10} {job['user']:<12.12} "
                     f"{word:<5} {when} {queue:<30.30} {job['sge']['slots']:>5} {'':<7}")
    return "\n".join(lines) + "\n"


def _resources_text(resources: dict[str, str]) -> str:
    return ",".join(f"{name}={value}" for name, value in resources.items())


def qstat_j(job: Job, word: str | None) -> str:
    """One job as ``qstat -j`` prints it."""
    sge = job["sge"]
    env = sge["submit_env"]
    rows: list[tuple[str, str]] = [
        ("job_number", str(job["id"])), ("exec_file", f"job_scripts/{job['id']}"),
        ("submission_time", _ctime(job["submit_time"])), ("owner", job["user"]), ("uid", str(job["uid"])),
        ("group", job["group"]), ("gid", str(job["gid"])), ("sge_o_home", env["SGE_O_HOME"]),
        ("sge_o_log_name", env["SGE_O_LOGNAME"]), ("sge_o_path", env["SGE_O_PATH"]),
        ("sge_o_shell", env["SGE_O_SHELL"]), ("sge_o_workdir", env["SGE_O_WORKDIR"]),
        ("sge_o_host", env["SGE_O_HOST"]), ("account", sge["account"]),
    ]
    if sge["cwd"] or sge["wd"]:
        rows.append(("cwd", job["workdir"]))
    if sge["error"] and not sge["merge"]:
        rows.append(("stderr_path_list", f"NONE:NONE:{sge['error']}"))
    if sge["merge"]:
        rows.append(("merge", "y"))
    if sge["hard"]:
        rows.append(("hard resource_list", _resources_text(sge["hard"])))
    if sge["soft"]:
        rows.append(("soft resource_list", _resources_text(sge["soft"])))
    rows += [("mail_list", sge["mail"]), ("notify", "TRUE" if sge["notify"] else "FALSE"),
             ("job_name", job["name"])]
    if sge["output"]:
        rows.append(("stdout_path_list", f"NONE:NONE:{sge['output']}"))
    if sge["priority"]:
        rows.append(("priority", str(sge["priority"])))
    rows.append(("jobshare", "0"))
    if sge["queues"]:
        rows.append(("hard_queue_list", ",".join(sge["queues"])))
    if sge["shell"]:
        rows.append(("shell_list", f"NONE:{sge['shell']}"))
    rows.append(("env_list", ",".join(["TERM=NONE", *(f"{k}={v}" for k, v in sge["env"].items())])))
    rows.append(("script_file", "STDIN"))
    text = _RULE + "\n" + "".join(f"{key + ':':<28}{value}\n" for key, value in rows)
    if sge["pe"]:
        text += f"parallel environment:  {sge['pe']} range: {sge['pe_range']}\n"
    if sge["project"]:
        text += f"{'project:':<28}{sge['project']}\n"
    text += f"{'binding:':<28}NONE\n{'job_type:':<28}NONE\n"
    if word in ("r", "dr"):
        text += (f"{'usage         1:':<28}cpu=00:00:00, mem=0.00000 GB s, io=0.00000 GB, vmem=N/A, "
                 f"maxvmem=N/A\n{'binding       1:':<28}NONE\n")
    if word == "Eqw":
        stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(job.get("end_time") or job["submit_time"]))
        text += f"{'error reason    1:':<28}{stamp} [{job['uid']}:{job.get('supervisor_pid') or 0}]: " \
                f"{sge.get('error_reason') or 'error: the job could not start'}\n"
    reason = ("Job is in hold state" if word == "hqw" else sge["pending_reason"] if word == "qw"
              else "There are no messages available" if word in ("r", "dr") else None)
    if reason:
        text += f"{'scheduling info:':<28}{reason}\n"
    return text


def _qstat_options(args: list[str]) -> dict[str, list[str]]:
    given: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if word in _QSTAT_NOT_EMULATED:
            raise not_emulated("qstat", f"the option {word}")
        if word not in _QSTAT_OPTIONS:
            raise CommandError(1, _invalid_option(word))
        if i + 1 >= len(args) and _QSTAT_OPTIONS[word]:
            if word == "-j":
                raise not_emulated("qstat", "-j without a job list (the scheduler's messages)")
            raise CommandError(1, f"ERROR! {word} option must have argument")
        given.setdefault(word, []).extend(args[i + 1:i + 1 + _QSTAT_OPTIONS[word]])
        i += 1 + _QSTAT_OPTIONS[word]
    return given


def cmd_qstat(args: list[str]) -> int:
    """``qstat [-xml] [-u USERS] [-s STATES]`` and ``qstat [-xml] -j JOBS``."""
    given = _qstat_options(args)
    if query_fails():
        raise _master_down()
    jobs = load_jobs(JobStore.from_env(), "sge")
    if "-j" in given:
        words = [w for value in given["-j"] for w in _words(value)]
        shown = [job for job in jobs if state_word(job) is not None]
        found, missing = _selected(shown, words)
        if "-xml" in given:
            if found:
                raise not_emulated("qstat", "the detailed XML of a job (qstat -xml -j)")
            inner = "".join(f"    <ST_name>{escape(word)}</ST_name>\n" for word in missing)
            out(f"{_XML_HEAD}<unknown_jobs >\n{inner}</unknown_jobs>\n")
            return 0
        out("".join(qstat_j(job, state_word(job)) for job in found))
        if missing:
            raise CommandError(1, "Following jobs do not exist: ", ", ".join(missing))
        return 0
    users: set[str] | None = {account()["user"]}
    if "-u" in given:
        named = {u for value in given["-u"] for u in _words(value)}
        users = None if "*" in named else named
    shown_words = _states_shown("".join(given.get("-s", [])) or "prs")
    listed = _listed(jobs, users, shown_words)
    prio = _priorities(jobs)
    out(qstat_xml(listed, prio) if "-xml" in given else qstat_table(listed, prio))
    return 0


# --------------------------------------------------------------------------- qdel


def _keep_priority(prio: float) -> Callable[[Job], None]:
    """A record change that keeps the priority a waiting job had when it was deleted."""

    def change(job: Job) -> None:
        job["sge"]["last_prio"] = prio

    return change


def cmd_qdel(args: list[str]) -> int:
    """``qdel [-f] JOBS``: returns at once; a running job's processes get SIGTERM, then SIGKILL."""
    words: list[str] = []
    for arg in args:
        if arg == "-f":
            continue
        if arg in ("-u", "-help"):
            raise not_emulated("qdel", f"the option {arg}")
        if arg.startswith("-"):
            raise CommandError(1, _invalid_option(arg))
        words += _words(arg)
    if not words:
        raise not_emulated("qdel", "qdel without a job list (its usage text)")
    if query_fails():
        raise _master_down()
    store = JobStore.from_env()
    me = account()["user"]
    every = load_jobs(store, "sge")
    prio = _priorities(every)
    jobs = [job for job in every if state_word(job) is not None]
    rc = 0
    for word in words:
        found, _ = _selected(jobs, [word])
        if not found:
            out(f'denied: job "{word}" does not exist\n')
            rc = 1
        for job in found:
            current = state_word(job)
            if current == "dr":
                out(f"job {job['id']} is already in deletion\n")
            elif current == "r":
                cancel(store, job["id"])
                out(f"{me} has registered the job {job['id']} for deletion\n")
            elif current == "Eqw":
                store.update(job["id"], lambda j: j["sge"].update(deleted=True))
                out(f"{me} has deleted job {job['id']}\n")
            else:
                cancel(store, job["id"])
                store.update(job["id"], _keep_priority(prio[job["id"]]))
                out(f"{me} has deleted job {job['id']}\n")
    return rc


# --------------------------------------------------------------------------- qacct


def _accounted(job: Job, now: float) -> bool:
    """Whether accounting has the job: it ran, or failed to start, and it has ended."""
    if state_word(job) not in (None, "Eqw") or not (job.get("pid") or job["state"] == "FAILED"):
        return False
    delay = knob_float("PW_FAKE_SGE_ACCOUNTING_DELAY", 0.0)
    return now >= (job.get("end_time") or now) + delay


def _exit_fields(job: Job) -> tuple[str, str]:
    """qacct's ``failed`` and ``exit_status`` values."""
    if not job.get("pid"):
        return job["sge"].get("start_error") or _FAILED_OUTPUT, f"{0:<20}"
    code = job.get("exit_code")
    if job["state"] in ("CANCELLED", "TIMEOUT"):
        failed, code = f"{_KILLED[0]} : {_KILLED[1]}", 128 + signal.SIGKILL
    else:
        failed = "0    "
        code = 0 if code is None else code if code >= 0 else 128 - code
    try:
        name = signal.strsignal(code - 128) if code > 128 else None
    except ValueError:
        name = None
    return failed, f"{code:<20}" + (f" ({name})" if name else "")


def qacct_record(job: Job) -> str:
    """One job's accounting record as ``qacct -j`` prints it (usage figures are zeros)."""
    sge = job["sge"]
    failed, exit_status = _exit_fields(job)
    started = job.get("start_time") if job.get("pid") else None
    wall = int((job.get("end_time") or 0) - started) if started else 0
    category = []
    if sge["hard"]:
        category.append("-l " + ",".join(f"{k}={v}" for k, v in sorted(sge["hard"].items())))
    if sge["queues"]:
        category.append("-q " + ",".join(sge["queues"]))
    if sge["project"]:
        category.append(f"-P {sge['project']}")
    if sge["pe"]:
        category.append(f"-pe {sge['pe']} {sge['pe_range']}")
    padded = [("qname", job["partition"]), ("hostname", job.get("node") or node_name()),
              ("group", job["group"]), ("owner", job["user"]), ("project", sge["project"] or "NONE"),
              ("department", "defaultdepartment"), ("jobname", job["name"]), ("jobnumber", str(job["id"]))]
    lines = [f"{key:<13}{value:<20}" for key, value in padded]
    lines += [f"{'taskid':<13}undefined", f"{'account':<13}{sge['account']:<20}",
              f"{'priority':<13}{sge['priority']:<20}", f"{'qsub_time':<13}{_ctime(job['submit_time'])}",
              f"{'start_time':<13}{_ctime(started)}", f"{'end_time':<13}{_ctime(job.get('end_time'))}",
              f"{'granted_pe':<13}{sge['granted_pe'] or 'NONE':<20}", f"{'slots':<13}{sge['slots']:<20}",
              f"{'failed':<13}{failed}", f"{'exit_status':<13}{exit_status}", f"{'ru_wallclock':<13}{wall}s"]
    lines += [f"{key:<13}0.000s" for key in ("ru_utime", "ru_stime")]
    lines += [f"{key:<13}0.000B" for key in ("ru_maxrss", "ru_ixrss", "ru_ismrss", "ru_idrss", "ru_isrss")]
    counters = ("ru_minflt", "ru_majflt", "ru_nswap", "ru_inblock", "ru_oublock", "ru_msgsnd", "ru_msgrcv",
                "ru_nsignals", "ru_nvcsw", "ru_nivcsw")
    lines += [f"{key:<13}{0:<20}" for key in counters]
    lines += [f"{'cpu':<13}0.000s", f"{'mem':<13}0.000Bs", f"{'io':<13}0.000B", f"{'iow':<13}0.000s",
              f"{'maxvmem':<13}0.000B", f"{'arid':<13}undefined", f"{'ar_sub_time':<13}undefined",
              f"{'category':<13}{' '.join(category) or 'NONE'}"]
    return _RULE + "\n" + "\n".join(lines) + "\n"


def cmd_qacct(args: list[str]) -> int:
    """``qacct -j [ID|NAME]``: the records of finished jobs (all of them without a job)."""
    if not args or args[0] != "-j" or len(args) > 2:
        raise not_emulated("qacct", "qacct without -j, or with other options")
    now = time.time()
    jobs = sorted((job for job in load_jobs(JobStore.from_env(), "sge") if _accounted(job, now)),
                  key=lambda job: job.get("end_time") or 0)
    if len(args) == 2:
        word = args[1]
        jobs = [job for job in jobs if (str(job["id"]) == word if word.isdigit()
                                        else fnmatch.fnmatchcase(job["name"], word))]
        if not jobs:
            what = "id" if word.isdigit() else "name"
            raise CommandError(1, f"error: job {what} {word} not found")
    out("".join(qacct_record(job) for job in jobs))
    return 0


COMMANDS: dict[str, Handler] = {"qsub": cmd_qsub, "qstat": cmd_qstat, "qdel": cmd_qdel, "qacct": cmd_qacct}

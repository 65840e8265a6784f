"""A fake IBM Spectrum LSF 10.1: the ``bsub``, ``bjobs``, ``bkill``, ``bhist`` and ``bparams`` that
:class:`pw_spawner.schedulers.lsf.LSFScheduler` runs, answering as a one-host cluster does.

The formats are the ones tests/data/lsf holds (written to IBM's LSF 10.1 documentation; its README
names the pages); where IBM shows no example, the words are those of OpenLava, LSF's open-source
ancestor (its message catalogue, and bhist's 80-column line wrapping). Every error exits 255, as
LSF's commands do. What is emulated is what the spawner calls:

- ``bsub [options]`` with the script on stdin and ``#BSUB`` lines anywhere in it (LSF reads every
  line that starts with ``#BSUB``; the command line wins). ``-J``, ``-o``/``-oo`` (appended to,
  or overwritten; ``%J`` and ``%I``; a directory gets ``ID.out``), ``-e``/``-eo`` (without them,
  the job's stderr joins its ``-o`` file), ``-q``, ``-n``, ``-R`` (the ``span[]`` section counts
  the hosts), ``-M``, ``-W`` (the job is killed at its run limit), ``-gpu``, ``-P`` and ``-cwd``
  take effect or are recorded and shown; ``-app``, ``-x``, mail options and a few others are
  accepted and ignored. An unknown option, a malformed ``-n``, ``-W``, ``-M`` or ``-R``, an empty
  job, an unknown queue and a queue named ``full`` (at its job limit) are refused in LSF's words,
  ``... Job not submitted.``; the knob ``PW_FAKE_SUBMIT_FAIL`` is a refusal of its own words.
  Accepted: ``Job <1000> is submitted to queue <short>.`` (``default queue`` without ``-q``). Jobs
  start in the submitting directory (or ``-cwd``).
- ``bjobs -o "FIELDS" -json [-a] [-u USER|all] [-J NAME] [ID...]``: the JSON document of
  tests/data/lsf (``COMMAND``, ``JOBS``, ``RECORDS``; keys are the field names in upper case), with
  the fields ``jobid stat exit_code exec_host pend_reason job_name user queue proj_name from_host
  nexec_host slots``; an id it does not know is a record ``{"JOBID": ..., "ERROR": "Job <ID> is
  not found"}`` and exit 255. Without ids it lists unfinished jobs (``-a``: finished ones too) of
  the caller (``-u``); with ids, those jobs whatever their state. A search that finds nothing says
  ``No unfinished job found`` (``No job found`` with ``-a``) on stderr, exit 255, as
  tests/data/lsf has it (OpenLava words a ``-J`` search ``Job <NAME> is not found``).
- ``bkill ID...``: ``Job <ID> is being terminated``; the job ends at once (SIGTERM now, SIGKILL
  after the grace). ``Job <ID>: Job has already finished``, ``Job <ID>: No matching job found`` and
  ``Job <ID>: User permission denied`` (another account's job) exit 255.
- ``bhist -l [-a] [-n N] [-u USER|all] [ID...]``: the event log of ``bhist -l`` as tests/data/lsf
  lays it out (the header, then ``Submitted``, ``Dispatched``, ``Starting``, ``Running``, a kill's
  ``Signal <KILL> requested by user or administrator``, ``Done successfully`` or ``Exited with
  exit code N`` and ``Completed <exit>`` with ``TERM_OWNER`` or ``TERM_RUNLIMIT``, then the summary
  of times), wrapped at 80 columns as bhist's ``prtLine()`` wraps it. It keeps every job, long
  after ``bjobs`` forgot it; one it never had is ``No matching job found``, exit 255.
- ``bparams -a``: lsb.params as ``NAME = value`` lines, ``CLEAN_PERIOD`` and (if set)
  ``SECURE_JOB_INFO_LEVEL`` from the knobs.

States: ``PEND`` (for ``PW_FAKE_PENDING_SECONDS``, its reason ``New job is waiting for
scheduling;`` or ``PW_FAKE_PENDING_REASON``), ``RUN``, then ``DONE`` or ``EXIT`` with the script's
exit code (128 + the signal that ended it). A killed job shows ``RUN`` until its processes are
gone, then ``EXIT`` with exit code 130, what LSF reports for a job its ``bkill`` ended (bkill's
first signal is SIGINT); one killed while pending never ran and has no exit code. A job past its
``-W`` is ``EXIT`` 140 (``TERM_RUNLIMIT``). ``bjobs`` and ``bkill`` forget a finished job
``PW_FAKE_CLEAN_PERIOD`` seconds after it ended (lsb.params' CLEAN_PERIOD, one hour by default).

The job gets ``LSB_JOBID``, ``LSB_JOBNAME``, ``LSB_QUEUE``, ``LSB_HOSTS`` (the host once per slot),
``LSB_MCPU_HOSTS`` (``host slots``), ``LSB_DJOB_NUMPROC``, ``LSB_MAX_NUM_PROCESSORS``,
``LSB_JOBINDEX``, ``LSB_SUB_HOST``, ``LS_SUBCWD``, ``LSB_JOBFILENAME``, ``LSB_JOB_EXECUSER``,
``LSB_EXEC_CLUSTER`` and ``LSB_PROJECT_NAME``, with the submitter's environment.

Knobs (besides the shared ones of :mod:`.store`; ``PW_FAKE_QUERY_FAIL`` makes ``bjobs`` and
``bparams`` say ``LSF is down. Please wait...``, exit 255, while ``bhist`` still reads its log):
``PW_FAKE_QUEUES`` (the queues, the first is the default: ``normal,short,long,gpu``),
``PW_FAKE_PENDING_REASON``, ``PW_FAKE_CLEAN_PERIOD`` and ``PW_FAKE_SECURE_JOB_INFO_LEVEL``.

Simplified: one host runs every job, all its slots (``EXEC_HOST`` is ``4*localhost`` whatever
``span[]`` asked); output is written to the ``-o`` file as the job runs (as with
``LSB_STDOUT_DIRECT=Y``), without LSF's job report at its end; without ``-o`` it goes to
``job-ID.mail`` in the state directory instead of a mail. Memory, GPU and project requests are
recorded, never enforced; bhist's ``Effective RES_REQ`` is the request's sections as given, and it
does not measure CPU time (``The CPU time used is unknown``). A job's ``Command`` is its script,
lines joined with ``;``, cut at 4094 characters. ``bkill`` sends SIGTERM, not LSF's SIGINT,
SIGTERM, SIGKILL. ``SECURE_JOB_INFO_LEVEL`` is only printed: every account sees every job. A
child mbatchd that does not list a job submitted moments ago is not emulated: ``bjobs`` lists a
job from its submission.

Not emulated, and refused with a message saying so (exit 2): a job file or command instead of
stdin, interactive, held, blocking, array, dependent and pre-/post-execution jobs and the other
bsub options that would need them; bjobs without ``-o ... -json`` (the tables) and its other
options; bkill's signals and filters; bhist without ``-l`` and its filters; bparams without ``-a``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable

from .processes import cancel, load_jobs, submit, supervisor_alive
from .store import (
    ACTIVE_STATES,
    CommandError,
    Handler,
    Job,
    JobStore,
    account,
    cwd,
    err,
    knob,
    knob_float,
    knob_list,
    new_job,
    out,
    query_fails,
    read_stdin,
)

#: Flavours (fixture ``fake_lsf``, wrappers of ``install_fake_scheduler(dir, "lsf")``) and the
#: settings their wrappers default: none.
FLAVORS: dict[str, dict[str, str]] = {"lsf": {}}
KNOBS = ("PW_FAKE_QUEUES", "PW_FAKE_PENDING_REASON", "PW_FAKE_CLEAN_PERIOD", "PW_FAKE_SECURE_JOB_INFO_LEVEL")
LSF_VERSION = "10.1"
CLUSTER = "fakelsf"
DEFAULT_QUEUES = "normal,short,long,gpu"
#: lsb.params' CLEAN_PERIOD default: how long mbatchd keeps a finished job.
DEFAULT_CLEAN_PERIOD = 3600.0
#: What LSF reports for a job its bkill ended (SIGINT, the first of bkill's signals: 128 + 2).
KILLED_EXIT_CODE = 130
#: What LSF reports for a job it killed at its run limit (TERM_RUNLIMIT).
RUNLIMIT_EXIT_CODE = 140
#: LSF's longest job command (and job name): a stdin job's script is shown as that much of it.
MAX_COMMAND = 4094
PENDING_REASON = "New job is waiting for scheduling;"

_NOT_SUBMITTED = "Job not submitted."
_DOWN = "LSF is down. Please wait..."


def not_emulated(prog: str, what: str) -> CommandError:
    return CommandError(2, f"{prog}: {what} is not emulated by pw_spawner's fake LSF")


def refused(message: str) -> CommandError:
    """bsub's refusal: the reason, then ``. Job not submitted.`` (exit 255)."""
    return CommandError(255, f"{message}. {_NOT_SUBMITTED}")


def _clean_period() -> float:
    return knob_float("PW_FAKE_CLEAN_PERIOD", DEFAULT_CLEAN_PERIOD)


def _queues() -> list[str]:
    return knob_list("PW_FAKE_QUEUES", DEFAULT_QUEUES)


# --------------------------------------------------------------------------- job states

def _exiting(job: Job) -> bool:
    """Killed (or past its run limit) while running, and its processes not yet gone: still RUN."""
    return (job["state"] in ("CANCELLED", "TIMEOUT") and bool(job.get("pid"))
            and job.get("exit_code") is None and supervisor_alive(job))


def _ended(job: Job) -> bool:
    return job["state"] not in ACTIVE_STATES and not _exiting(job)


def _stat(job: Job) -> str:
    """The job's bjobs STAT word."""
    state = job["state"]
    if state == "PENDING":
        return "PEND"
    if state == "RUNNING" or _exiting(job):
        return "RUN"
    return "DONE" if state == "COMPLETED" else "EXIT"


def _exit_code(job: Job) -> int | None:
    """The exit code LSF reports for an ended job (None: DONE, or it never ran)."""
    state, code = job["state"], job.get("exit_code")
    if not _ended(job) or state == "COMPLETED":
        return None
    if state == "CANCELLED":
        return KILLED_EXIT_CODE if job.get("start_time") else None
    if state == "TIMEOUT":
        return RUNLIMIT_EXIT_CODE
    if code is None:
        return None
    return code if code >= 0 else 128 - code  # ended by a signal: as its shell reports it


def _ran(job: Job) -> bool:
    return bool(job.get("start_time")) and bool(job.get("node"))


def _known(job: Job, now: float) -> bool:
    """Whether mbatchd still has the job: unfinished, or finished within CLEAN_PERIOD."""
    return not _ended(job) or now - (job.get("end_time") or now) <= _clean_period()


def _exec_host(job: Job) -> str:
    if not _ran(job):
        return ""
    slots = job["slots"]
    return job["node"] if slots == 1 else f"{slots}*{job['node']}"


# --------------------------------------------------------------------------- bsub

#: bsub's options in LSF 10.1: True where one takes an argument.
_BSUB_OPTIONS: dict[str, bool] = {
    **dict.fromkeys(
        "a alloc_flags app b C c clusters cn_cu cn_mem core_isolation csm cwd D data datagrp E Ep e "
        "env eo eptl F f freq G g gpu hostfile i is J Jd jsdl jsdl_strict jsm k L Lp ln_mem ln_slots "
        "M m mig n notify network o oo outdir P p pack ptl Q q R rcacct rnc S s sla smt sp stage "
        "step_cgroup T t U u v W We w wa wt json yaml".split(), True),
    **dict.fromkeys("B H I Ip IS ISp ISs Is IX K N Ne r rn ti tty ul x Zs h V hl ar datachk XF".split(),
                    False),
}
#: The options that take effect (or are recorded and shown).
_BSUB_EMULATED = frozenset("J o oo e eo q n R M W gpu P cwd".split())
#: Accepted and ignored: nothing a one-host fake could do with them.
_BSUB_IGNORED = frozenset("a app B C c D F G g hl Jd L Lp m N Ne notify p r rn S s sla sp T u ul v We x "
                          "env".split())
#: The first of these counts, among the #BSUB lines as on the command line (LSF keeps a limit once set).
_FIRST_WINS = frozenset("n W M".split())
_RES_SECTIONS = frozenset("select order rusage span same cu affinity".split())


def _bsub_options(words: list[str]) -> list[tuple[str, str | None]]:
    """(name, value) pairs as LSF's my_getopt() reads them: each option a word of its own, or one
    that takes an argument with the value attached (``-n4``). The first word that is no option
    ends them (the job's command)."""
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word == "-":
            break
        if word == "--":
            i += 1
            break
        name = word[1:]
        if name in _BSUB_OPTIONS:
            if _BSUB_OPTIONS[name]:
                if i + 1 >= len(words):
                    raise CommandError(255, f"bsub: option requires an argument -- {name}",
                                       f". {_NOT_SUBMITTED}")
                found.append((name, words[i + 1]))
                i += 2
                continue
            found.append((name, None))
            i += 1
            continue
        attached = sorted((key for key in _BSUB_OPTIONS if name.startswith(key)), key=len, reverse=True)
        if not attached:
            raise CommandError(255, f"bsub: illegal option -- {name}", f". {_NOT_SUBMITTED}")
        if not _BSUB_OPTIONS[attached[0]]:
            raise CommandError(255, f"bsub: option cannot have an argument -- {attached[0]}",
                               f". {_NOT_SUBMITTED}")
        found.append((attached[0], name[len(attached[0]):]))
        i += 1
    if i < len(words):
        raise not_emulated("bsub", "a job command or file on the command line (give the script on stdin)")
    return found


def _directive_lines(script: str) -> list[list[str]]:
    """The words of every ``#BSUB`` line of the script (LSF reads them wherever they are); a line
    ending in a backslash goes on on the next one, and a word starting with ``#`` ends the line."""
    found = []
    lines = iter(script.splitlines())
    for line in lines:
        if not re.match(r"\s*#BSUB(\s|$)", line):
            continue
        while line.endswith("\\"):
            line = line[:-1] + next(lines, "")
        body = line.lstrip()[len("#BSUB"):]
        try:
            words = shlex.split(body, comments=True)
        except ValueError:
            words = body.split()
        found.append(words)
    return found


def _has_command(script: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in script.splitlines())


def _merged_options(given: list[tuple[str, str | None]],
                    embedded: list[list[tuple[str, str | None]]]) -> tuple[dict[str, str | None], list[str]]:
    """The options in effect, and the ``-R`` strings: the command line wins over ``#BSUB`` lines;
    among those the last counts, but for a limit (``-n``, ``-W``, ``-M``) the first."""
    options: dict[str, str | None] = {}
    for batch in embedded:
        for name, value in batch:
            if name not in (_FIRST_WINS & set(options)):
                options[name] = value
    resreqs = [value or "" for name, value in given if name == "R"]
    if not resreqs:
        resreqs = [value or "" for batch in embedded for name, value in batch if name == "R"]
    options.update(given)
    for name in options:
        if name not in _BSUB_EMULATED and name not in _BSUB_IGNORED:
            raise not_emulated("bsub", f"-{name}")
    return options, resreqs


def _slots(value: str | None) -> int:
    """``-n min[,max]``: the slots the job gets (its minimum)."""
    if value is None:
        return 1
    match = re.fullmatch(r"\s*(\d*)\s*(?:,\s*(\d*)\s*)?", value)
    if match is None or not (match.group(1) or match.group(2)):
        raise refused("Bad argument for option -n")
    low = int(match.group(1)) if match.group(1) else 1
    high = int(match.group(2)) if match.group(2) else low
    if low <= 0 or high <= 0:
        raise refused("The number of processors must be a positive integer")
    if low > high:
        raise refused("Bad argument for option -n")
    return low


def _run_limit(value: str | None) -> int | None:
    """Seconds of ``-W [hour:]minute[/host]``."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)(?::(\d+))?(?:/\S+)?", value.strip())
    if match is None:
        raise refused(f"{value}: Bad RUNLIMIT specification")
    if match.group(2) is None:
        return int(match.group(1)) * 60
    return (int(match.group(1)) * 60 + int(match.group(2))) * 60


def _check_memory(value: str | None) -> None:
    unit = r"\d+(?:\.\d+)?\s*(?:[KMGTPEZ]B?)?"
    if value is not None and not re.fullmatch(unit, value.strip(), re.IGNORECASE):
        raise refused(f"{value}: MEMLIMIT value should be a positive integer")


def _check_resreq(text: str) -> None:
    """What bsub checks of a ``-R`` string here: balanced brackets, known section names."""
    depth = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise refused("Bad resource requirement syntax")
    if depth:
        raise refused("Bad resource requirement syntax")
    for name in re.findall(r"([A-Za-z_]\w*)\s*\[", text):
        if name not in _RES_SECTIONS:
            raise refused("Bad resource requirement syntax")


def _hosts(slots: int, resreqs: list[str]) -> int:
    """How many hosts ``span[]`` asks for (the fake runs them all on one)."""
    span = next((m.group(1) for r in resreqs if (m := re.search(r"span\s*\[([^\]]*)\]", r))), "")
    ptile = re.search(r"ptile\s*=\s*(\d+)", span)
    if ptile and int(ptile.group(1)) > 0:
        return max(1, -(-slots // int(ptile.group(1))))
    return 1


def _queue(options: dict[str, str | None]) -> str:
    queues = _queues()
    wanted = (options.get("q") or "").split()
    if not wanted:
        if not queues:
            raise refused("Queue name must be specified")
        return queues[0]
    for queue in wanted:
        if queue not in queues:
            raise refused(f"{queue}: No such queue")
    if "full" in wanted:
        raise refused("The destination queue has reached its job limit")
    return wanted[0]


def _check_name(name: str | None) -> None:
    if name is None:
        return
    if not name or len(name) > MAX_COMMAND:
        raise refused("Bad job name")
    if "[" in name:
        raise not_emulated("bsub", "job arrays (-J NAME[...])")


def _output_path(value: str, job: Job, suffix: str) -> str:
    """Where ``-o``/``-e`` writes: ``%J`` the job id, ``%I`` its array index (0), relative to the
    job's directory; a directory gets ``ID.out`` (``ID.err``)."""
    path = value.replace("%J", str(job["id"])).replace("%I", "0")
    path = os.path.normpath(os.path.join(job["workdir"], os.path.expanduser(path)))
    if value.endswith("/") or os.path.isdir(path):
        path = os.path.join(path, f"{job['id']}.{suffix}")
    return path


def _command(script: str) -> str:
    """The job's command as bjobs and bhist show a stdin job's: its lines joined by ``;``."""
    return script.rstrip("\n").replace("\n", ";")[:MAX_COMMAND]


def cmd_bsub(args: list[str]) -> int:
    """``bsub [options]``, the script on stdin."""
    given = _bsub_options(args)
    failure = knob("PW_FAKE_SUBMIT_FAIL")
    if failure:
        raise CommandError(255, failure)
    script = read_stdin()
    embedded = [_bsub_options(words) for words in _directive_lines(script)]
    options, resreqs = _merged_options(given, embedded)
    if not _has_command(script):
        raise refused("No command is specified")
    _check_name(options.get("J"))
    slots = _slots(options.get("n"))
    time_limit = _run_limit(options.get("W"))
    _check_memory(options.get("M"))
    for resreq in resreqs:
        _check_resreq(resreq)
    queue = _queue(options)

    here = cwd()
    chdir = options.get("cwd")
    workdir = os.path.normpath(os.path.join(here, os.path.expanduser(chdir))) if chdir else here
    command = _command(script)
    job = new_job("lsf", options.get("J") or command, queue, workdir)
    job.update(
        queue=queue, queue_given="q" in options, options=options, command=command,
        project=options.get("P") or "default", slots=slots, hosts_asked=_hosts(slots, resreqs),
        resreq=" ".join(r.strip() for r in resreqs if r.strip()), memlimit=options.get("M"),
        gpu=options.get("gpu"), time_limit=time_limit,
        pend_reason=knob("PW_FAKE_PENDING_REASON") or PENDING_REASON,
        open_mode="truncate" if "oo" in options else "append",
    )
    store = JobStore.from_env()

    def resolve(new: Job) -> None:
        output = options.get("oo") or options.get("o")
        error = options.get("eo") or options.get("e")
        new["out_file"] = _output_path(output, new, "out") if output else None
        new["err_file"] = _output_path(error, new, "err") if error else None
        new["stdout"] = new["out_file"] or store.file(new["id"], ".mail")
        new["stderr"] = new["err_file"] or new["stdout"]

    job = submit(store, job, script, resolve)
    where = f"queue <{queue}>" if job["queue_given"] else f"default queue <{queue}>"
    out(f"Job <{job['id']}> is submitted to {where}.\n")
    return 0


def job_environment(job: Job) -> dict[str, str]:
    """The variables LSF's sbatchd gives a batch job (the usual ones)."""
    node, slots, job_id = job["node"], job["slots"], str(job["id"])
    return {
        "LSB_JOBID": job_id, "LSB_JOBNAME": job["name"], "LSB_QUEUE": job["queue"],
        "LSB_HOSTS": " ".join([node] * slots), "LSB_MCPU_HOSTS": f"{node} {slots}",
        "LSB_DJOB_NUMPROC": str(slots), "LSB_MAX_NUM_PROCESSORS": str(slots), "LSB_JOBINDEX": "0",
        "LSB_SUB_HOST": job["submit_host"], "LS_SUBCWD": job["submit_dir"],
        "LSB_JOBFILENAME": job["script"], "LSB_JOB_EXECUSER": job["user"], "LSB_EXEC_CLUSTER": CLUSTER,
        "LSB_PROJECT_NAME": job["project"],
    }


# --------------------------------------------------------------------------- bjobs

def _pend_reason(job: Job) -> str:
    if job["state"] != "PENDING":
        return ""
    return job.get("pend_reason") or PENDING_REASON


#: The ``-o`` fields: name -> the job's value (the JSON key is the name in upper case).
_FIELDS: dict[str, Callable[[Job], str]] = {
    "jobid": lambda job: str(job["id"]),
    "stat": _stat,
    "exit_code": lambda job: "" if (code := _exit_code(job)) is None else str(code),
    "exec_host": _exec_host,
    "pend_reason": _pend_reason,
    "job_name": lambda job: job["name"],
    "user": lambda job: job["user"],
    "queue": lambda job: job["queue"],
    "proj_name": lambda job: job["project"],
    "from_host": lambda job: job["submit_host"],
    "nexec_host": lambda job: "1" if _ran(job) else "",
    "slots": lambda job: str(job["slots"]) if _ran(job) else "",
}
#: bjobs' options that this fake knows but does not emulate (True: takes an argument).
_BJOBS_OTHERS = {**dict.fromkeys("app G g m N P q sla U UF W Wf Wl Wp".split(), True),
                 **dict.fromkeys("A aff aps cname d hms l N noheader p r s sum w X x".split(), False)}


def _fields(text: str) -> list[str]:
    """The field names of ``-o "f1 f2:width ..."`` (widths and units do not matter to JSON)."""
    names = []
    for word in text.split():
        name = word.split(":", 1)[0].lower()
        if name not in _FIELDS:
            raise not_emulated("bjobs", f"the field {name} (fields: {' '.join(_FIELDS)})")
        names.append(name)
    if not names:
        raise CommandError(255, "bjobs: -o: no field specified")
    return names


def _parse_ids(prog: str, words: list[str]) -> list[int]:
    ids: list[int] = []
    for word in words:
        if not re.fullmatch(r"\d{1,20}", word):
            if "[" in word:
                raise not_emulated(prog, "job arrays")
            raise CommandError(255, f"{word}: Illegal job ID.")
        if int(word) not in ids:
            ids.append(int(word))
    return ids


def _word_options(prog: str, args: list[str], takes: dict[str, bool],
                  others: dict[str, bool]) -> tuple[dict[str, str | None], list[str]]:
    """Options that are words of their own (LSF's ``-json``, ``-u all``), then operands."""
    options: dict[str, str | None] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        name = word[1:]
        if not word.startswith("-") or word == "-":
            rest.append(word)
        elif name in takes:
            if takes[name]:
                if i + 1 >= len(args):
                    raise CommandError(255, f"{prog}: option requires an argument -- {name}")
                options[name] = args[i + 1]
                i += 1
            else:
                options[name] = None
        elif name in others or name in ("h", "V"):
            raise not_emulated(prog, f"the option {word}")
        else:
            raise CommandError(255, f"{prog}: illegal option -- {name}")
        i += 1
    return options, rest


def _name_matches(pattern: str | None, name: str) -> bool:
    """``-J NAME``, where ``*`` matches anything."""
    if pattern is None:
        return True
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None


def _document(records: list[dict[str, str]]) -> str:
    data = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
    return json.dumps(data, indent=2, separators=(",", ":"), ensure_ascii=False) + "\n"


def cmd_bjobs(args: list[str]) -> int:
    """``bjobs -o "FIELDS" -json [-a] [-u USER|all] [-J NAME] [ID...]``."""
    options, rest = _word_options("bjobs", args, {"o": True, "json": False, "a": False, "u": True, "J": True},
                                  _BJOBS_OTHERS)
    if "o" not in options or "json" not in options:
        raise not_emulated("bjobs", "output without -o FIELDS -json (the tables)")
    fields = _fields(options["o"] or "")
    ids = _parse_ids("bjobs", rest)
    if query_fails():
        raise CommandError(255, _DOWN)
    now = time.time()
    user = options.get("u")
    everyone = user == "all" or (user is None and bool(ids))
    who = user if user not in (None, "all") else account()["user"]
    known = [job for job in load_jobs(JobStore.from_env(), "lsf") if _known(job, now)]

    def listed(job: Job) -> bool:
        return (everyone or job["user"] == who) and _name_matches(options.get("J"), job["name"])

    records: list[dict[str, str]] = []
    missing: list[int] = []
    if ids:
        by_id = {job["id"]: job for job in known if listed(job)}
        for job_id in ids:
            if job_id in by_id:
                records.append({field.upper(): _FIELDS[field](by_id[job_id]) for field in fields})
            else:
                missing.append(job_id)
    else:
        chosen = [job for job in known if listed(job) and ("a" in options or not _ended(job))]
        if not chosen:
            raise CommandError(255, "No job found" if "a" in options else "No unfinished job found")
        records = [{field.upper(): _FIELDS[field](job) for field in fields} for job in chosen]
    records += [{"JOBID": str(job_id), "ERROR": f"Job <{job_id}> is not found"} for job_id in missing]
    out(_document(records))
    return 255 if missing else 0


# --------------------------------------------------------------------------- bkill

def cmd_bkill(args: list[str]) -> int:
    """``bkill ID...``: returns at once."""
    _, rest = _word_options("bkill", args, {}, {**dict.fromkeys("app g J m q s sla u C l".split(), True),
                                                **dict.fromkeys("b d r stat".split(), False)})
    if not rest:
        raise CommandError(255, "Usage: bkill [-h] [-V] [-l] [-b] [-d] [-r] [-s signal] [jobId ...]")
    if "0" in rest:
        raise not_emulated("bkill", "job id 0 (every job)")
    ids = _parse_ids("bkill", rest)
    store = JobStore.from_env()
    now = time.time()
    jobs = {job["id"]: job for job in load_jobs(store, "lsf") if _known(job, now)}
    me = account()
    rc = 0
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None:
            err(f"Job <{job_id}>: No matching job found")
            rc = 255
        elif job["uid"] != me["uid"] and me["uid"] != 0:
            err(f"Job <{job_id}>: User permission denied")
            rc = 255
        elif _ended(job):
            err(f"Job <{job_id}>: Job has already finished")
            rc = 255
        else:
            if job["state"] in ACTIVE_STATES:
                after = cancel(store, job_id)
                if after is None or after["state"] != "CANCELLED":
                    err(f"Job <{job_id}>: Job has already finished")
                    rc = 255
                    continue
                store.update(job_id, lambda j: j.update(killed_by=me["user"]))
            out(f"Job <{job_id}> is being terminated\n")
    return rc


# --------------------------------------------------------------------------- bhist

#: bhist's lines: 80 columns (the cursor counts from 1), continued after 21 blanks.
_WIDTH = 80
_BLANKS = 21


class _Lines:
    """bhist's ``prtLine()``: text wrapped at the 80th column onto lines indented by 21 blanks; a
    blank where a line is cut is dropped."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.cursor = 1

    def put(self, text: str) -> None:
        if text.startswith("\n"):
            self.cursor = 0
        i = 0
        while i < len(text):
            if self.cursor == _WIDTH:
                self.parts.append("\n" + " " * _BLANKS)
                self.cursor = _BLANKS + 1
                if text[i] == " ":
                    i += 1
                    if i >= len(text):
                        break
            char = text[i]
            self.parts.append(char)
            self.cursor = 0 if char == "\n" else self.cursor
            self.cursor += 1
            i += 1

    def raw(self, text: str) -> None:
        """Printed as is (bhist's printf), a line or more."""
        self.parts.append(text)
        self.cursor = 1

    def text(self) -> str:
        return "".join(self.parts)


def _stamp(when: float) -> str:
    return time.ctime(when)[:19]


def _home_relative(path: str, home: str) -> str:
    if home and home != "/" and (path == home or path.startswith(home.rstrip("/") + "/")):
        return "$HOME" + path[len(home.rstrip("/")):]
    return path


def _effective_resreq(job: Job) -> str:
    sections = re.findall(r"(?:rusage|span|same|cu|affinity)\s*\[[^\]]*\]", job.get("resreq") or "")
    return " ".join(["select[type == local] order[r15s:pg]", *sections, ""])


def _events(job: Job) -> list[tuple[float, str]]:
    """The job's events as bhist -l words them: (time, text)."""
    slots, node = job["slots"], job.get("node")
    files = ""
    if job.get("out_file"):
        files += f", Output File{' (overwrite)' if 'oo' in job['options'] else ''} <{job['out_file']}>"
    if job.get("err_file"):
        files += f", Error File{' (overwrite)' if 'eo' in job['options'] else ''} <{job['err_file']}>"
    requested = f", Requested Resources <{job['resreq']}>" if job.get("resreq") else ""
    events = [(job["submit_time"],
               f"Submitted from host <{job['submit_host']}>, to Queue <{job['queue']}>, CWD "
               f"<{_home_relative(job['submit_dir'], job['home'])}>{files}, {slots} Task(s){requested}")]
    if _ran(job):
        hosts = " ".join([f"<{node}>"] * slots)
        start, pid = job["start_time"], job.get("pid") or 0
        events += [
            (start, f"Dispatched {slots} Task(s) on Host(s) {hosts}, Allocated {slots} Slot(s) on Host(s) "
                    f"{hosts}, Effective RES_REQ <{_effective_resreq(job)}>"),
            (start, f"Starting (Pid {pid})"),
            (start, f"Running with execution home <{job['home']}>, Execution CWD <{job['workdir']}>, "
                    f"Execution Pid <{pid}>"),
        ]
    end = job.get("end_time") or time.time()
    if job["state"] == "CANCELLED":
        events.append((end, "Signal <KILL> requested by user or administrator "
                            f"<{job.get('killed_by') or job['user']}>"))
    if not _ended(job):
        return events
    cpu = ". The CPU time used is unknown" if _ran(job) else ""
    if job["state"] == "COMPLETED":
        return [*events, (end, f"Done successfully{cpu}"), (end, "Post job process done successfully")]
    code = _exit_code(job)
    events.append((end, (f"Exited with exit code {code}" if code else "Exited") + cpu))
    reasons = {"CANCELLED": "; TERM_OWNER: job killed by owner",
               "TIMEOUT": "; TERM_RUNLIMIT: job killed after reaching LSF run time limit"}
    reason = reasons.get(job["state"], "")
    return [*events, (end, f"Completed <exit>{reason}")]


def _summary(job: Job, now: float) -> str:
    """bhist's time summary: seconds pending, running and in all."""
    end = job.get("end_time") if _ended(job) else None
    until = end or now
    if _ran(job):
        pend, run = job["start_time"] - job["submit_time"], until - job["start_time"]
    else:
        pend, run = until - job["submit_time"], 0.0
    pend, run = max(0, round(pend)), max(0, round(run))
    values = "".join(f"{value:<9}" for value in (pend, 0, run, 0, 0, 0)) + f"{pend + run:<12}"
    return (f"\nSummary of time in seconds spent in various states by  {_stamp(until)}\n"
            "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL\n"
            f"  {values}".rstrip() + "\n")


def _bhist_long(jobs: Iterable[Job], now: float) -> str:
    lines = _Lines()
    for index, job in enumerate(jobs):
        if index:
            lines.put("-" * 78 + "\n")
        name = f" Job Name <{job['name']}>," if "J" in job["options"] else ""
        lines.put(f"Job <{job['id']}>,{name} User <{job['user']}>, Project <{job['project']}>, "
                  f"Command <{job['command']}>\n")
        for when, text in _events(job):
            lines.put(f"{_stamp(when)}: {text}")
            lines.put(";\n")
        lines.raw(_summary(job, now))
    lines.raw("\n")
    return lines.text()


def cmd_bhist(args: list[str]) -> int:
    """``bhist -l [-a] [-n N] [-u USER|all] [ID...]``: every job the event log has."""
    options, rest = _word_options(
        "bhist", args, {"a": False, "l": False, "n": True, "u": True},
        {**dict.fromkeys("C D f J m N P q S T cname".split(), True),
         **dict.fromkeys("b d e p r s t w x UF aff data gpu".split(), False)})
    if "l" not in options:
        raise not_emulated("bhist", "output without -l (the table)")
    ids = _parse_ids("bhist", rest)
    now = time.time()
    user = options.get("u")
    everyone = user == "all" or (user is None and bool(ids))
    who = user if user not in (None, "all") else account()["user"]
    jobs = [job for job in load_jobs(JobStore.from_env(), "lsf")
            if (not ids or job["id"] in ids) and (everyone or job["user"] == who)
            and (ids or "a" in options or not _ended(job))]
    if not jobs:
        raise CommandError(255, "No matching job found")
    if ids:
        jobs.sort(key=lambda job: ids.index(job["id"]))
    out(_bhist_long(jobs, now))
    return 0


# --------------------------------------------------------------------------- bparams

def cmd_bparams(args: list[str]) -> int:
    """``bparams -a``: lsb.params, one ``NAME = value`` a line."""
    if args != ["-a"]:
        raise not_emulated("bparams", f"'bparams {shlex.join(args)}' (only bparams -a is)")
    if query_fails():
        raise CommandError(255, _DOWN)
    queues = _queues()
    params = [("DEFAULT_QUEUE", queues[0] if queues else ""), ("MBD_SLEEP_TIME", "10"),
              ("SBD_SLEEP_TIME", "7"), ("JOB_ACCEPT_INTERVAL", "0"), ("MAX_JOB_NUM", "1000"),
              ("CLEAN_PERIOD", f"{_clean_period():g}"), ("MBD_REFRESH_TIME", "5"), ("NEWJOB_REFRESH", "N"),
              ("RESOURCE_RESERVE_PER_TASK", "N"), ("SECURE_INFODIR_USER_ACCESS", "N")]
    level = knob("PW_FAKE_SECURE_JOB_INFO_LEVEL")
    if level:
        params.append(("SECURE_JOB_INFO_LEVEL", level))
    out(f"lsb.params configuration at {time.ctime()}\n" + "".join(f"    {k} = {v}\n" for k, v in params))
    return 0


COMMANDS: dict[str, Handler] = {"bsub": cmd_bsub, "bjobs": cmd_bjobs, "bkill": cmd_bkill, "bhist": cmd_bhist,
                                "bparams": cmd_bparams}

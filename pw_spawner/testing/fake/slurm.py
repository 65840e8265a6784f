"""A fake Slurm 22.05: the ``sbatch``, ``squeue``, ``scontrol``, ``scancel`` and ``sacct`` that
:class:`pw_spawner.schedulers.slurm.SlurmScheduler` runs, answering as a single-node cluster without
slurmdbd does.

What is emulated is what the spawner calls, with the real tools' exit codes and messages:

- ``sbatch [--parsable] [options]`` with the script on stdin and ``#SBATCH`` lines in its leading
  comment block (the command line wins); every sbatch option is recognised (a misspelt one fails
  as on a real cluster). Partitions, ``--job-name``, ``--output``/``--error`` patterns
  (``%j %x %u %N %%``...), ``--open-mode``, ``--chdir`` and ``--time`` (the job is killed at its
  limit: TIMEOUT) take effect; node, CPU and memory requests are recorded and otherwise ignored.
  The script checks (empty, DOS line breaks, no ``#!``), an unknown partition and, for a
  partition named ``full``, a QOS submit limit fail with sbatch's own words.
- ``squeue -h [-t all|STATES] [-j IDS] [-n NAMES] [--me] -o FORMAT`` with the fields ``%i %T %r %N
  %j %B %u``; one unknown id in ``-j`` is "Invalid job id specified" (exit 1), as slurmctld
  answers a query for one job; several are no error. Finished jobs are listed (``-t all``) for
  ``PW_FAKE_MIN_JOB_AGE`` seconds (MinJobAge), then forgotten by every command. A pending job waits
  for ``Resources`` if it is the oldest pending one of its partition, else for ``Priority``.
- ``scontrol [-o] show job [ID]`` (the fields the spawner reads, in Slurm's order, ``JobName``
  followed by ``UserId``) and ``scontrol show config`` (``PrivateData = none``).
- ``scancel ID...``: returns at once; SIGTERM now, SIGKILL after the grace.
- ``sacct``: "Slurm accounting storage is disabled", exit 1, whatever it is asked.

Knobs (besides the shared ones of :mod:`.store`): ``PW_FAKE_PARTITIONS`` (the partitions, the
first is the default: ``debug,short,long,gpu``) and ``PW_FAKE_PENDING_REASON`` (a fixed pending
reason instead of Resources/Priority, fixed at submission).

Not emulated, and refused with a message saying so (exit 2): a script file or ``--wrap`` instead
of stdin, ``--hold``, ``--array``, ``--test-only``, ``--wait``, help and version output, squeue
without ``-h`` or ``-o`` (the default table), field widths and other fields, scancel's filters
and signals, other scontrol entities. ``--export`` is accepted and ignored: jobs get the
submitter's environment.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable

from .processes import cancel, load_jobs, submit
from .store import (
    ACTIVE_STATES,
    FIRST_JOB_ID,
    CommandError,
    Handler,
    Job,
    JobStore,
    OptError,
    account,
    check_submit_fail,
    cwd,
    directives,
    err,
    flag_spec,
    getopt_long,
    knob,
    knob_list,
    min_job_age,
    new_job,
    node_name,
    out,
    query_fails,
    read_stdin,
)

#: Flavours (fixtures ``fake_slurm``, wrappers of ``install_fake_scheduler(dir, "slurm")``) and
#: the settings their wrappers default: none.
FLAVORS: dict[str, dict[str, str]] = {"slurm": {}}
KNOBS = ("PW_FAKE_PARTITIONS", "PW_FAKE_PENDING_REASON")
SLURM_VERSION = "22.05.8"
DEFAULT_PARTITIONS = "debug,short,long,gpu"

_INVALID_JOB = "slurm_load_jobs error: Invalid job id specified"
_QUERY_FAIL = "slurm_load_jobs error: Socket timed out on send/recv operation"
_INVALID_PARTITION = "sbatch: error: Batch job submission failed: Invalid partition name specified"


def not_emulated(prog: str, what: str) -> CommandError:
    return CommandError(2, f"{prog}: error: {what} is not emulated by pw_spawner's fake Slurm")


def _getopt(prog: str, args: list[str], short: dict[str, str], spec: dict[str, int],
            permute: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    try:
        return getopt_long(args, short, spec, permute)
    except OptError as exc:
        raise CommandError(1, f"{prog}: {exc}", f'Try "{prog} --help" for more information') from None


def _jobs(store: JobStore) -> list[Job]:
    """Jobs slurmctld still knows: finished ones are purged after MinJobAge."""
    now, age = time.time(), min_job_age()
    return [job for job in load_jobs(store, "slurm")
            if job["state"] in ACTIVE_STATES or now - (job.get("end_time") or now) <= age]


def _parse_ids(prog: str, text: str) -> list[int]:
    ids = []
    for word in re.split(r"[,\s]+", text.strip()):
        if word and not word.isdigit():
            raise CommandError(1, f"{prog}: error: Invalid job id: {word}")
        if word:
            ids.append(int(word))
    return ids


# --------------------------------------------------------------------------- sbatch

_SBATCH_SHORT = {
    "A": "account", "a": "array", "b": "begin", "C": "constraint", "c": "cpus-per-task",
    "D": "chdir", "d": "dependency", "e": "error", "F": "nodefile", "G": "gpus", "H": "hold",
    "h": "help", "i": "input", "J": "job-name", "k": "no-kill", "L": "licenses", "M": "clusters",
    "m": "distribution", "N": "nodes", "n": "ntasks", "O": "overcommit", "o": "output",
    "p": "partition", "Q": "quiet", "q": "qos", "S": "core-spec", "s": "oversubscribe",
    "t": "time", "V": "version", "v": "verbose", "W": "wait", "w": "nodelist", "x": "exclude",
}
#: Every option of sbatch 22.05, so that one it does not know fails as it would.
_SBATCH_LONG = flag_spec(
    "account array begin constraint cpus-per-task chdir dependency error nodefile gpus input "
    "job-name licenses clusters cluster distribution nodes ntasks output partition qos core-spec "
    "time nodelist exclude export export-file mem mem-per-cpu mem-per-gpu gres gres-flags "
    "gpus-per-node gpus-per-task gpus-per-socket cpus-per-gpu ntasks-per-node ntasks-per-core "
    "ntasks-per-socket ntasks-per-gpu signal mail-type mail-user open-mode comment wckey tmp "
    "reservation time-min deadline uid gid wrap hint cluster-constraint mcs-label network "
    "profile sockets-per-node cores-per-socket threads-per-core extra-node-info container "
    "kill-on-invalid-dep batch delay-boot gpu-bind gpu-freq cpu-freq mincpus switches "
    "thread-spec tres-per-task acctg-freq bb bbf prefer power priority het-group",
    "exclusive get-user-env nice propagate no-kill",
    "hold help parsable quiet verbose version wait overcommit oversubscribe contiguous "
    "test-only ignore-pbs requeue no-requeue use-min-nodes spread-job reboot usage",
)
#: Options whose effect the fake would get wrong: refused rather than ignored.
_SBATCH_NOT_EMULATED = ("wrap", "hold", "array", "test-only", "wait", "help", "usage", "version")


def _slurm_time(value: str) -> int | None:
    """Seconds of a Slurm time limit (``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``).

    None means unlimited; a malformed value raises ValueError.
    """
    text = value.strip().lower()
    if text in ("unlimited", "infinite", "-1"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")]
        if not 1 <= len(parts) <= 3:
            raise ValueError(value)
        parts += [0] * (3 - len(parts))
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    parts = [int(p) for p in text.split(":")]
    if len(parts) > 3:
        raise ValueError(value)
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def _count(options: dict[str, str | None], key: str) -> int:
    value = (options.get(key) or "").strip()
    match = re.match(r"\d+", value) if value else None
    if value and not match:
        raise CommandError(1, f'sbatch: error: Invalid numeric value "{value}" for --{key}.')
    return max(1, int(match.group())) if match else 1


def _filename(pattern: str, job: Job) -> str:
    """Expand ``%j %x %u %N %A %a %%`` in an --output/--error pattern, relative to the workdir."""
    replace = {"j": str(job["id"]), "A": str(job["id"]), "x": job["name"], "u": job["user"],
               "N": node_name(), "a": "4294967294", "s": "batch", "t": "0", "n": "0"}

    def expand(match: re.Match[str]) -> str:
        letter = match.group(1)
        return "%" if letter == "%" else replace.get(letter, match.group(0))

    path = re.sub(r"%(?:\d+)?([%jAxuNasnt])", expand, pattern)
    return os.path.normpath(os.path.join(job["workdir"], os.path.expanduser(path)))


def _check_script(script: str) -> None:
    if not script:
        raise CommandError(1, "sbatch: error: Batch script is empty!")
    if not script.strip():
        raise CommandError(1, "sbatch: error: Batch script contains only whitespace!")
    if "\r\n" in script:
        raise CommandError(1, "sbatch: error: Batch script contains DOS line breaks (\\r\\n)",
                           "sbatch: error: instead of expected UNIX line breaks (\\n).")
    if not script.startswith("#!"):
        raise CommandError(1, "sbatch: error: This does not look like a batch script.  The first",
                           "sbatch: error: line must start with #! followed by the path to an interpreter.",
                           "sbatch: error: For instance: #!/bin/sh")


def _partition(options: dict[str, str | None]) -> str:
    partitions = knob_list("PW_FAKE_PARTITIONS", DEFAULT_PARTITIONS)
    wanted = [p for p in (options.get("partition") or "").split(",") if p]
    if not wanted:
        if not partitions:
            raise CommandError(1, "sbatch: error: No partition specified or system default partition",
                               _INVALID_PARTITION)
        wanted = [partitions[0]]
    for part in wanted:
        if part not in partitions:
            raise CommandError(1, f"sbatch: error: invalid partition specified: {part}", _INVALID_PARTITION)
    if "full" in wanted:
        raise CommandError(1, "sbatch: error: QOSMaxSubmitJobPerUserLimit",
                           "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
                           "(job submit limit, user's size and/or time limits)")
    return wanted[0]


def cmd_sbatch(args: list[str]) -> int:
    """``sbatch [--parsable] [options]``, the script on stdin."""
    check_submit_fail()
    given, rest = _getopt("sbatch", args, _SBATCH_SHORT, _SBATCH_LONG, permute=False)
    if rest:
        raise not_emulated("sbatch", "a batch script file (give the script on stdin)")
    script = read_stdin()
    options: dict[str, str | None] = {}
    for words in directives(script, "#SBATCH"):
        options.update(_getopt("sbatch", words, _SBATCH_SHORT, _SBATCH_LONG, True)[0])
    options.update(given)  # the command line wins over #SBATCH lines, as with the real sbatch
    for name in _SBATCH_NOT_EMULATED:
        if name in options:
            raise not_emulated("sbatch", f"--{name}")
    _check_script(script)
    partition = _partition(options)
    cpus_per_task, ntasks, nodes = (_count(options, key) for key in ("cpus-per-task", "ntasks", "nodes"))
    try:
        time_limit = _slurm_time(limit) if (limit := options.get("time")) else None
    except ValueError:
        raise CommandError(1, "sbatch: error: Invalid --time specification") from None

    here = cwd()
    chdir = options.get("chdir")
    workdir = os.path.normpath(os.path.join(here, os.path.expanduser(chdir))) if chdir else here
    job = new_job("slurm", options.get("job-name") or "sbatch", partition, workdir)
    job.update(time_limit=time_limit, options=options, reason_override=knob("PW_FAKE_PENDING_REASON") or None,
               cpus_per_task=cpus_per_task, ntasks=ntasks, nodect=nodes, ncpus=cpus_per_task * ntasks,
               open_mode="append" if options.get("open-mode") == "append" else "truncate")

    def resolve(new: Job) -> None:
        new["stdout"] = _filename(options.get("output") or "slurm-%j.out", new)
        error = options.get("error")
        new["stderr"] = _filename(error, new) if error else new["stdout"]

    job = submit(JobStore.from_env(), job, script, resolve)
    out(f"{job['id']}\n" if "parsable" in options else f"Submitted batch job {job['id']}\n")
    return 0


def job_environment(job: Job) -> dict[str, str]:
    """The variables slurmstepd gives a batch job (the usual ones)."""
    node, job_id = job["node"], str(job["id"])
    return {
        "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id, "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_NODELIST": node, "SLURM_NODELIST": node, "SLURMD_NODENAME": node,
        "SLURM_JOB_PARTITION": job["partition"], "SLURM_SUBMIT_DIR": job["submit_dir"],
        "SLURM_SUBMIT_HOST": job["submit_host"], "SLURM_JOB_USER": job["user"],
        "SLURM_JOB_NUM_NODES": str(job["nodect"]), "SLURM_NTASKS": str(job["ntasks"]),
        "SLURM_CPUS_PER_TASK": str(job["cpus_per_task"]), "SLURM_CPUS_ON_NODE": str(job["ncpus"]),
        "ENVIRONMENT": "BATCH",
    }


# --------------------------------------------------------------------------- job states

def _first_pending(jobs: Iterable[Job]) -> set[int]:
    """The oldest pending job of each partition: it waits for Resources, the rest for Priority."""
    first: dict[str, int] = {}
    for job in jobs:
        if job["state"] == "PENDING":
            first[job["partition"]] = min(first.get(job["partition"], job["id"]), job["id"])
    return set(first.values())


def _reason(job: Job, first_pending: set[int]) -> str:
    state = job["state"]
    if state == "PENDING":
        return job.get("reason_override") or ("Resources" if job["id"] in first_pending else "Priority")
    if state == "FAILED":
        code = job.get("exit_code")
        if code is not None and code < 0:
            try:
                name = signal.strsignal(-code) or str(-code)
            except ValueError:
                name = str(-code)
            return f"RaisedSignal:{-code}({name})"
        return "NonZeroExitCode"
    return "TimeLimit" if state == "TIMEOUT" else "None"


def _exit_code(job: Job) -> str:
    code = job.get("exit_code")
    if code is None:
        return "0:0"
    return f"{code}:0" if code >= 0 else f"0:{-code}"


def _elapsed(job: Job, now: float) -> float:
    if not job.get("start_time"):
        return 0
    return (job.get("end_time") or now) - job["start_time"]


def _hms(secs: float) -> str:
    """scontrol's ``HH:MM:SS`` / ``D-HH:MM:SS``."""
    days, rem = divmod(max(0, int(secs)), 86400)
    hours, rem = divmod(rem, 3600)
    return f"{f'{days}-' if days else ''}{hours:02d}:{rem // 60:02d}:{rem % 60:02d}"


def _iso(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp)) if stamp else "Unknown"


# --------------------------------------------------------------------------- squeue

def _start_text(job: Job) -> str:
    """squeue's %S: when a job started, or for a pending one the expected start (here: when its
    PW_FAKE_PENDING_SECONDS are over), N/A where there is no estimate (held, or no wait set)."""
    if job["state"] == "PENDING":
        wait = job.get("pending_seconds") or 0
        return _iso(job["submit_time"] + wait) if wait and not job.get("reason_override") else "N/A"
    return _iso(job.get("start_time")) if job.get("start_time") else "N/A"


_SQUEUE_SHORT = {"h": "noheader", "j": "jobs", "n": "name", "o": "format", "t": "states"}
_SQUEUE_LONG = flag_spec("format jobs name states", "", "me noheader")
#: The -o fields: (job, its reason) -> text.
_SQUEUE_FIELDS: dict[str, Callable[[Job, str], str]] = {
    "i": lambda job, reason: str(job["id"]),
    "T": lambda job, reason: job["state"],
    "r": lambda job, reason: reason,
    "N": lambda job, reason: job.get("node") or "",
    "j": lambda job, reason: job["name"],
    "S": lambda job, reason: _start_text(job),
    "B": lambda job, reason: job.get("node") or "n/a",
    "u": lambda job, reason: job["user"],
}
_STATE_NAMES = {"PD": "PENDING", "R": "RUNNING", "CD": "COMPLETED", "F": "FAILED", "CA": "CANCELLED",
                "TO": "TIMEOUT"}


def _squeue_format(fmt: str) -> list[tuple[str, str]]:
    """(literal text, field letter) pairs of an squeue -o format (the last letter may be empty)."""
    pieces: list[tuple[str, str]] = []
    literal, pos = "", 0
    while pos < len(fmt):
        if fmt[pos] != "%":
            literal += fmt[pos]
            pos += 1
            continue
        letter = fmt[pos + 1:pos + 2]
        pos += 2
        if letter == "%":
            literal += "%"
        elif letter in _SQUEUE_FIELDS:
            pieces.append((literal, letter))
            literal = ""
        else:
            raise not_emulated("squeue", f"the format %{letter} (fields: %{' %'.join(_SQUEUE_FIELDS)}, "
                                         "no widths)")
    return [*pieces, (literal, "")] if literal else pieces


def _states(text: str) -> set[str] | None:
    if text.strip().lower() == "all":
        return None
    states = set()
    for word in text.upper().split(","):
        word = _STATE_NAMES.get(word.strip(), word.strip())
        if word not in _STATE_NAMES.values():
            raise CommandError(1, f"squeue: error: Invalid job state specified: {word}")
        states.add(word)
    return states


def _squeue_filter(flags: dict[str, str | None], job_ids: list[int] | None) -> Callable[[Job], bool]:
    """Whether squeue lists a job, by its -t, -j, -n and --me."""
    states = _states(flags["states"] or "") if "states" in flags else set(ACTIVE_STATES)
    names = {n.lower() for n in (flags["name"] or "").split(",") if n} if "name" in flags else None
    me = account()["user"] if "me" in flags else None

    def listed(job: Job) -> bool:
        return ((job_ids is None or job["id"] in job_ids) and (states is None or job["state"] in states)
                and (names is None or job["name"].lower() in names) and (me is None or job["user"] == me))

    return listed


def cmd_squeue(args: list[str]) -> int:
    """``squeue -h [-t STATES|all] [-j IDS] [-n NAMES] [--me] -o FORMAT``."""
    opts, rest = _getopt("squeue", args, _SQUEUE_SHORT, _SQUEUE_LONG, permute=True)
    if rest:
        raise CommandError(1, f"squeue: error: Unrecognized option: {rest[0]}")
    flags = dict(opts)
    if "noheader" not in flags or not flags.get("format"):
        raise not_emulated("squeue", "output without -h and -o FORMAT (the header, the default format)")
    pieces = _squeue_format(flags["format"] or "")
    job_ids = _parse_ids("squeue", flags["jobs"] or "") if "jobs" in flags else None
    listed = _squeue_filter(flags, job_ids)
    if query_fails():
        raise CommandError(1, _QUERY_FAIL)
    jobs = _jobs(JobStore.from_env())
    if job_ids is not None and len(job_ids) == 1 and job_ids[0] not in {job["id"] for job in jobs}:
        # With one id squeue asks slurmctld for that job alone, which refuses an unknown id.
        raise CommandError(1, _INVALID_JOB)
    first = _first_pending(jobs)
    for job in filter(listed, jobs):
        reason = _reason(job, first)
        out("".join(literal + (_SQUEUE_FIELDS[letter](job, reason) if letter else "")
                    for literal, letter in pieces) + "\n")
    return 0


# --------------------------------------------------------------------------- scontrol

def _scontrol_job(job: Job, first: set[int], now: float, oneliner: bool) -> str:
    state, limit = job["state"], job.get("time_limit")
    started = bool(job.get("start_time")) and bool(job.get("node"))
    if state == "PENDING":
        start_text = end_text = "Unknown"
    else:
        start_text = _iso(job.get("start_time") or job.get("end_time"))
        end_text = _iso(job.get("end_time") or (job["start_time"] + limit if limit else None))
    lines = [
        f"JobId={job['id']} JobName={job['name']}",
        f"UserId={job['user']}({job['uid']}) GroupId={job['group']}({job['gid']}) MCS_label=N/A",
        f"Priority={4294901759 - (job['id'] - FIRST_JOB_ID)} Nice=0 Account=(null) QOS=normal",
        f"JobState={state} Reason={_reason(job, first)} Dependency=(null)",
        f"Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode={_exit_code(job)}",
        f"RunTime={_hms(_elapsed(job, now))} TimeLimit={_hms(limit) if limit else 'UNLIMITED'} TimeMin=N/A",
        f"SubmitTime={_iso(job['submit_time'])} EligibleTime={_iso(job['submit_time'])}",
        f"StartTime={start_text} EndTime={end_text} Deadline=N/A",
        f"Partition={job['partition']} AllocNode:Sid={job['submit_host']}:{os.getsid(0)}",
        f"NodeList={job['node'] if started else '(null)'}",
        *([f"BatchHost={job['node']}"] if started else []),
        f"NumNodes={job['nodect']} NumCPUs={job['ncpus']} NumTasks={job['ntasks']} "
        f"CPUs/Task={job['cpus_per_task']} ReqB:S:C:T=0:0:*:*",
        "Command=(null)",
        f"WorkDir={job['workdir']}",
        f"StdErr={job['stderr']}",
        "StdIn=/dev/null",
        f"StdOut={job['stdout']}",
    ]
    return " ".join(lines) + "\n" if oneliner else "\n   ".join(lines) + "\n\n"


def cmd_scontrol(args: list[str]) -> int:
    """``scontrol [-o] show job [ID]`` and ``scontrol show config``."""
    opts, rest = _getopt("scontrol", args, {"o": "oneliner"}, {"oneliner": 0}, permute=True)
    words = [w.lower() for w in rest[:2]]
    if words == ["show", "config"]:
        # What the spawner reads of it: a default Slurm hides nobody's jobs.
        out(f"Configuration data as of {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
            f"ClusterName             = fake\nPrivateData             = none\n"
            f"SLURM_VERSION           = {SLURM_VERSION}\n")
        return 0
    if words not in (["show", "job"], ["show", "jobs"]) or len(rest) > 3:
        raise not_emulated("scontrol", f"'{' '.join(rest)}' (only show job [ID] and show config are)")
    if query_fails():
        raise CommandError(1, _QUERY_FAIL)
    now = time.time()
    jobs = _jobs(JobStore.from_env())
    first = _first_pending(jobs)
    if len(rest) == 3:
        match = re.fullmatch(r"(\d+)(?:\.\w+)?", rest[2])
        jobs = [job for job in jobs if match and job["id"] == int(match.group(1))]
        if not jobs:
            raise CommandError(1, _INVALID_JOB)
    elif not jobs:
        out("No jobs in the system\n")
        return 0
    out("".join(_scontrol_job(job, first, now, bool(opts)) for job in jobs))
    return 0


# --------------------------------------------------------------------------- scancel, sacct

def cmd_scancel(args: list[str]) -> int:
    """``scancel ID...``: returns at once."""
    options = [arg for arg in args if arg.startswith("-")]
    if options:
        raise not_emulated("scancel", f"the option {options[0]} (only job ids are)")
    if not args:
        raise CommandError(1, "scancel: error: No job identification provided")
    ids = _parse_ids("scancel", ",".join(args))
    store = JobStore.from_env()
    jobs = {job["id"]: job for job in _jobs(store)}
    rc = 0
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None:
            err(f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified")
            rc = 1
        elif job["state"] in ACTIVE_STATES:  # an ended job: the real scancel says nothing either
            cancel(store, job_id)
    return rc


def cmd_sacct(args: list[str]) -> int:
    """Without slurmdbd (a single-node test cluster) sacct only says it cannot help."""
    raise CommandError(1, "Slurm accounting storage is disabled")


COMMANDS: dict[str, Handler] = {"sbatch": cmd_sbatch, "squeue": cmd_squeue, "scontrol": cmd_scontrol,
                                "scancel": cmd_scancel, "sacct": cmd_sacct}

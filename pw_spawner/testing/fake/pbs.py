"""A fake PBS: ``qsub``, ``qstat``, ``qdel`` and ``qselect`` as PBS Pro 2022 (OpenPBS) or Torque 6
print them, for :class:`pw_spawner.schedulers.pbs.PBSScheduler` and ``TorqueScheduler``.

The flavour is the knob ``PW_FAKE_PBS_FLAVOR`` (``pro``, the default, or ``torque``); the server is
``fakepbs`` and job ids are ``1000.fakepbs``. Exit codes are the real commands' ``exit(pbs_errno)``:
the PBSE_ error number modulo 256 (153 for an unknown job id, 35 for a finished one...).

What is emulated is what the spawner calls:

- ``qsub [options]`` with the script on stdin and ``#PBS`` lines in its leading comment block
  (the command line wins). ``-N`` (checked as qsub checks it), ``-o``/``-e`` (``host:path``,
  directories), ``-j oe|eo|n``, ``-q`` (an unknown queue, and a queue named ``full``, fail as on a
  real server), ``-k`` and ``-l`` take effect: ``select=`` chunks, ``nodes=N:ppn=P`` or ``ncpus``
  give the CPU and node counts, ``walltime`` is enforced (the job is killed at its limit), memory
  and GPU requests are shown in ``Resource_List`` as given, no more. The other options are
  accepted and ignored. Jobs start in the home directory, with ``PBS_O_WORKDIR`` the
  submitting one. Output is spooled while the job runs and copied to its ``-o``/``-e`` paths when
  it ends, as PBS does (``-k d``, or the knob ``PW_FAKE_PBS_SPOOL=0``, writes them directly).
- ``qstat -f [-F json] [-x] [ID...]`` (PBS Pro) and ``qstat -f [ID...]`` (Torque): the attributes
  the spawner reads (``job_state``, ``exec_host``, ``comment``, ``Exit_status``/``exit_status``)
  among the usual ones, in qstat's order, the text wrapped as qstat's ``prt_attr()`` wraps it and
  JSON numbers where PBS turns values into numbers. PBS Pro keeps finished jobs (state ``F``) for
  ``qstat -x`` for ``PW_FAKE_JOB_HISTORY`` seconds (two weeks, job_history_duration's default);
  without ``-x`` a finished job is "Job has finished, use -x or -H..." (exit 35). Torque lists
  finished jobs (state ``C``) for ``PW_FAKE_MIN_JOB_AGE`` seconds (keep_completed), then answers
  "Unknown Job Id Error". A job cancelled while running shows ``E`` until its processes are gone.
  Exit statuses are PBS's: the script's, 256 + the signal that killed it, -29 past the walltime
  (PBS Pro).
- ``qdel ID...``: returns at once; SIGTERM now, SIGKILL after the grace. A finished job is "Job has
  finished" (Pro, exit 35) or "invalid state for job - COMPLETE" (Torque, exit 156).
- ``qselect [-N NAME] [-u USER]``: ids of unfinished jobs.

Knobs (besides the shared ones of :mod:`.store`): ``PW_FAKE_PBS_FLAVOR``, ``PW_FAKE_QUEUES`` (the
queues, the first is the default: ``workq,short,long,gpu``), ``PW_FAKE_JOB_HISTORY`` and
``PW_FAKE_PBS_SPOOL``.

Not emulated, and refused with a message saying so (exit 2): a script file or ``-- command``
instead of stdin, interactive and held jobs (``-I``, ``-h``), ``-C``, Torque's ``-d``, qstat
without ``-f`` (the table) and its queue, server, DSV and XML output, destinations as qstat
operands, qdel's and qselect's other options. ``-v``/``-V`` are accepted and ignored: jobs get the
submitter's environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from typing import Any

from .processes import cancel, load_jobs, submit, supervisor_alive
from .store import (
    ACTIVE_STATES,
    FINISHED_STATES,
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
    getopt,
    knob,
    knob_float,
    knob_list,
    min_job_age,
    new_job,
    out,
    query_fails,
    read_stdin,
)

#: Flavours (fixtures ``fake_pbs``, ``fake_torque``; ``install_fake_scheduler(dir, flavour)``) and
#: the settings their wrappers default.
FLAVORS: dict[str, dict[str, str]] = {"pbs": {"PW_FAKE_PBS_FLAVOR": "pro"},
                                      "torque": {"PW_FAKE_PBS_FLAVOR": "torque"}}
KNOBS = ("PW_FAKE_PBS_FLAVOR", "PW_FAKE_QUEUES", "PW_FAKE_JOB_HISTORY", "PW_FAKE_PBS_SPOOL")
PBS_SERVER = "fakepbs"
PBS_VERSION = "2022.1.0"
DEFAULT_QUEUES = "workq,short,long,gpu"

# The real commands' option letters: a letter neither knows fails as it would.
_QSUB_OPTS = {"pro": "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:P:q:r:R:S:u:v:VW:Xz",
              "torque": "a:A:b:c:C:d:D:e:fFhIj:k:K:l:L:m:M:N:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz"}
_QSUB_NOT_EMULATED = {"I": "interactive jobs (-I)", "h": "held jobs (-h)", "C": "-C (a directive prefix)",
                      "d": "-d (a working directory)", "J": "job arrays (-J)", "t": "job arrays (-t)"}
_QSTAT_OPTS = {"pro": "ainpqrstwxu:fGHJMQEBW:T1F:D:", "torque": "acCeE:fgiln1pqrstu:xGMQRBW:"}
_QSTAT_EMULATED = {"pro": "fFx", "torque": "f"}
_QDEL_OPTS = {"pro": "W:x", "torque": "ab:cm:pW:t:x"}
_QSELECT_OPTS = {"pro": "a:A:c:h:l:N:p:P:q:r:s:t:u:xHJT", "torque": "a:A:c:h:l:N:p:q:r:s:u:"}

# Exit codes: the PBSE_ number modulo 256.
_RC_UNKJOBID = 153  # PBSE_UNKJOBID 15001
_RC_BADSTATE = 156  # PBSE_BADSTATE 15004
_RC_BADATVAL = 166  # PBSE_BADATVAL 15014
_RC_UNKQUE = 170  # PBSE_UNKQUE 15018
_RC_MAXQUED = 190  # PBSE_MAXQUED 15038
_RC_HISTJOBID = 35  # PBSE_HISTJOBID 15139


def not_emulated(prog: str, what: str) -> CommandError:
    return CommandError(2, f"{prog}: {what} is not emulated by pw_spawner's fake PBS")


def _flavor() -> str:
    return "torque" if knob("PW_FAKE_PBS_FLAVOR").strip().lower() == "torque" else "pro"


def _options(prog: str, args: list[str], optstring: str, emulated: str | None,
             permute: bool = True) -> tuple[list[tuple[str, str | None]], list[str]]:
    """getopt as the command does; a known option outside ``emulated`` (None: all) is refused."""
    try:
        opts, rest = getopt(args, optstring, permute)
    except OptError as exc:
        raise CommandError(2, f"{prog}: {exc}") from None
    for letter, _ in opts:
        if emulated is not None and letter not in emulated:
            raise not_emulated(prog, f"the option -{letter}")
    return opts, rest


def _pbs_id(text: str) -> int | None:
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _full_id(job_id: int) -> str:
    return f"{job_id}.{PBS_SERVER}"


# --------------------------------------------------------------------------- qsub

def _walltime(value: str) -> int:
    """Seconds of a PBS walltime (``[[H:]M:]S``)."""
    parts = [int(float(p)) for p in value.strip().split(":")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(value)
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def _hms(secs: float) -> str:
    hours, rem = divmod(max(0, int(secs)), 3600)
    return f"{hours:02d}:{rem // 60:02d}:{rem % 60:02d}"


def _sizes(resources: dict[str, str]) -> tuple[int, int]:
    """(CPUs, nodes) of the ``-l`` resources; ValueError when they do not parse."""
    if resources.get("select"):  # PBS Pro: 2:ncpus=4:mem=8gb+1:ncpus=1
        ncpus = nodes = 0
        for part in resources["select"].split("+"):
            words = [w for w in part.split(":") if w]
            count = int(words.pop(0)) if words and words[0].isdigit() else 1
            ncpus += count * int(dict(w.partition("=")[::2] for w in words).get("ncpus", 1))
            nodes += count
        return ncpus, nodes
    if resources.get("nodes"):  # Torque: 2:ppn=4:gpus=1
        words = resources["nodes"].split(":")
        nodes = int(words[0]) if words[0].isdigit() else 1
        return nodes * int(dict(w.partition("=")[::2] for w in words[1:]).get("ppn", 1)), nodes
    return int(resources.get("ncpus", 1)), 1


def _check_queue(flavor: str, queue: str) -> None:
    if queue not in knob_list("PW_FAKE_QUEUES", DEFAULT_QUEUES):
        if flavor == "torque":
            raise CommandError(_RC_UNKQUE, "qsub: submit error (Unknown queue MSG=requested queue not found)")
        raise CommandError(_RC_UNKQUE, "qsub: Unknown queue")
    if queue == "full":
        if flavor == "torque":
            raise CommandError(_RC_MAXQUED, "qsub: submit error (Maximum number of jobs already in queue "
                                            "MSG=total number of jobs in queue exceeds the queue limit: "
                                            "queue full)")
        raise CommandError(_RC_MAXQUED, "qsub: Maximum number of jobs already in queue full")


def _qsub_options(script: str, given: list[tuple[str, str | None]],
                  optstring: str) -> tuple[dict[str, str], dict[str, str]]:
    """(options, ``-l`` resources) of the ``#PBS`` lines, then of the command line, which wins."""
    options: dict[str, str] = {}
    resources: dict[str, str] = {}
    batches = []
    for words in directives(script, "#PBS"):
        try:
            batches.append(getopt(words, optstring, permute=False)[0])
        except OptError as exc:
            raise CommandError(2, f"qsub: directive error: {exc}") from None
    for key, value in [pair for batch in batches for pair in batch] + given:
        if key in _QSUB_NOT_EMULATED:
            raise not_emulated("qsub", _QSUB_NOT_EMULATED[key])
        if key != "l":
            options[key] = value or ""
            continue
        for item in (value or "").split(","):
            name, _, setting = item.partition("=")
            if name.strip():
                resources[name.strip()] = setting.strip()
    return options, resources


def _qsub_fields(flavor: str, options: dict[str, str], resources: dict[str, str]) -> Job:
    """The record's PBS fields, checked as the server checks them."""
    name = options.get("N", "STDIN")
    if not name or re.search(r"\s", name) or (flavor == "pro" and len(name) > 236):
        raise CommandError(2, "qsub: illegal -N value")
    join = options.get("j", "n")
    if join not in ("oe", "eo", "n"):
        raise CommandError(2, "qsub: illegal -j value")
    queue = (options.get("q") or knob_list("PW_FAKE_QUEUES", DEFAULT_QUEUES)[0]).split("@", 1)[0]
    _check_queue(flavor, queue)
    try:
        time_limit = _walltime(resources["walltime"]) if resources.get("walltime") else None
    except ValueError:
        raise CommandError(_RC_BADATVAL, "qsub: Illegal attribute or resource value "
                                         "Resource_List.walltime") from None
    try:
        ncpus, nodect = _sizes(resources)
    except ValueError:
        raise CommandError(_RC_BADATVAL, "qsub: Illegal attribute or resource value Resource_List") from None
    keep = options.get("k", "n")
    return {"flavor": flavor, "name": name, "queue": queue, "time_limit": time_limit, "options": options,
            "resources": resources, "ncpus": ncpus, "nodect": nodect,
            "join": join, "keep": keep, "spool": knob("PW_FAKE_PBS_SPOOL", "1") != "0" and "d" not in keep}


def _output_path(job: Job, key: str, here: str) -> str:
    """Where ``-o`` (key ``o``) or ``-e`` puts the job's output: ``[host:]path``, a directory, or
    ``NAME.oID`` in the submitting directory."""
    default = f"{job['name']}.{key}{job['id']}"
    value = job["options"].get(key)
    if not value:
        return os.path.join(here, default)
    if ":" in value and not value.startswith("/"):
        value = value.split(":", 1)[1]  # host:path
    value = os.path.normpath(os.path.join(here, os.path.expanduser(value)))
    return os.path.join(value, default) if os.path.isdir(value) else value


def _resolve_outputs(job: Job, here: str, spool_dir: str) -> None:
    """The files the job writes: spooled, or its -o/-e paths; joined as -j says."""
    job["output_path"], job["error_path"] = _output_path(job, "o", here), _output_path(job, "e", here)
    stdout, stderr = job["output_path"], job["error_path"]
    if job["spool"]:
        os.makedirs(spool_dir, mode=0o700, exist_ok=True)
        stdout = os.path.join(spool_dir, _full_id(job["id"]) + ".OU")
        stderr = os.path.join(spool_dir, _full_id(job["id"]) + ".ER")
    if job["join"] == "oe":
        stderr = stdout
    elif job["join"] == "eo":
        stdout = stderr
    job["stdout"], job["stderr"] = stdout, stderr
    if job["spool"]:
        job["stage_out"] = [[stdout, job["error_path"] if job["join"] == "eo" else job["output_path"]]]
        if stderr != stdout:
            job["stage_out"].append([stderr, job["error_path"]])


def cmd_qsub(args: list[str]) -> int:
    """``qsub [options]``, the script on stdin."""
    flavor = _flavor()
    check_submit_fail()
    given, rest = _options("qsub", args, _QSUB_OPTS[flavor], None, permute=False)
    if rest:
        raise not_emulated("qsub", "a script file or -- command (give the script on stdin)")
    script = read_stdin()
    fields = _qsub_fields(flavor, *_qsub_options(script, given, _QSUB_OPTS[flavor]))
    who, here = account(), cwd()
    # PBS starts jobs in the home directory; scripts cd "$PBS_O_WORKDIR" themselves.
    job = new_job("pbs", fields["name"], fields["queue"], who["home"])
    job.update(fields, submit_args=shlex.join(args), variable_list={
        "PBS_O_HOME": who["home"], "PBS_O_LANG": os.environ.get("LANG", "C"),
        "PBS_O_LOGNAME": who["user"], "PBS_O_PATH": os.environ.get("PATH", ""),
        "PBS_O_MAIL": os.environ.get("MAIL", f"/var/mail/{who['user']}"),
        "PBS_O_SHELL": who["shell"], "PBS_O_WORKDIR": here, "PBS_O_SYSTEM": os.uname().sysname,
        "PBS_O_QUEUE": fields["queue"], "PBS_O_HOST": job["submit_host"],
    })
    store = JobStore.from_env()
    spool = os.path.join(store.root, "spool")
    job = submit(store, job, script, lambda new: _resolve_outputs(new, here, spool))
    if "z" not in fields["options"]:
        out(_full_id(job["id"]) + "\n")
    return 0


def job_environment(job: Job) -> dict[str, str]:
    """The variables the MoM gives a batch job (the usual ones)."""
    env = {key: str(value) for key, value in job["variable_list"].items()}
    env.update({
        "PBS_JOBID": _full_id(job["id"]), "PBS_JOBNAME": job["name"], "PBS_QUEUE": job["queue"],
        "PBS_ENVIRONMENT": "PBS_BATCH", "ENVIRONMENT": "BATCH", "PBS_TASKNUM": "1", "PBS_NODENUM": "0",
        # The execution host sets these from the account, whatever the submitter had.
        "HOME": job["home"], "LOGNAME": job["user"], "USER": job["user"], "SHELL": job["shell"],
    })
    ncpus = job["ncpus"]
    if job["flavor"] == "torque":
        env.update({"PBS_SERVER": PBS_SERVER, "PBS_NUM_NODES": str(job["nodect"]),
                    "PBS_NUM_PPN": str(max(1, ncpus // max(1, job["nodect"]))), "PBS_NP": str(ncpus)})
    else:
        env.update({"PBS_JOBDIR": job["workdir"], "NCPUS": str(ncpus), "OMP_NUM_THREADS": str(ncpus)})
    return env


# --------------------------------------------------------------------------- job states

def _exiting(job: Job) -> bool:
    """Cancelled while running, and its processes not yet gone: PBS shows state E."""
    return (job["state"] in FINISHED_STATES and bool(job.get("pid"))
            and job.get("exit_code") is None and supervisor_alive(job))


def _visibility(job: Job | None, flavor: str, now: float) -> str:
    """``active``, ``history`` (finished, still kept) or ``gone``."""
    if job is None:
        return "gone"
    if job["state"] in ACTIVE_STATES or _exiting(job):
        return "active"
    keep = min_job_age() if flavor == "torque" else knob_float("PW_FAKE_JOB_HISTORY", 1209600.0)
    return "gone" if now - (job.get("end_time") or now) > keep else "history"


def _state(job: Job, flavor: str) -> str:
    if job["state"] in ACTIVE_STATES:
        return "Q" if job["state"] == "PENDING" else "R"
    if _exiting(job):
        return "E"
    return "C" if flavor == "torque" else "F"


def _exit_status(job: Job) -> int | None:
    code = job.get("exit_code")
    if job["state"] == "TIMEOUT" and job["flavor"] == "pro":
        return -29  # JOB_EXEC_KILL_WALLTIME
    if code is None:
        return None
    return code if code >= 0 else 256 - code  # killed by a signal: 256 + signal


def _resource_list(job: Job, flavor: str) -> dict[str, Any]:
    """What the job asked for with ``-l``, and the counts the server adds."""
    found: dict[str, Any] = {k: v for k, v in job["resources"].items() if k != "walltime"}
    if flavor == "torque":
        found.setdefault("nodes", str(job["nodect"]))
        found["neednodes"] = found["nodes"]
    else:
        found.pop("nodes", None)
        found["ncpus"] = job["ncpus"]
        found.setdefault("place", "free" if "select" in found else "pack")
        found.setdefault("select", f"1:ncpus={job['ncpus']}")
    found["nodect"] = job["nodect"]
    if job.get("time_limit"):
        found["walltime"] = _hms(job["time_limit"])
    return dict(sorted(found.items()))


def _attributes(job: Job, flavor: str, now: float) -> list[tuple[str, str | None, Any]]:
    """A job's attributes in the order ``qstat -f`` prints them: (name, resource, value)."""
    started = bool(job.get("start_time")) and bool(job.get("node"))
    finished = job["state"] in FINISHED_STATES and not _exiting(job)
    end = job.get("end_time") or now
    wall = (end if finished else now) - job["start_time"] if started else 0
    host = job["submit_host"]
    ncpus = job["ncpus"]
    attrs: list[tuple[str, str | None, Any]] = [
        ("Job_Name", None, job["name"]),
        ("Job_Owner", None, f"{job['user']}@{host}"),
    ]
    if started:
        attrs.append(("resources_used", "walltime", _hms(wall)))
    attrs += [("job_state", None, _state(job, flavor)), ("queue", None, job["queue"]),
              ("server", None, PBS_SERVER), ("ctime", None, time.ctime(job["submit_time"])),
              ("Error_Path", None, f"{host}:{job['error_path']}")]
    if started:  # PBS Pro counts the CPUs of a host (/0*2), Torque lists them (/0-1)
        cpus = "" if ncpus == 1 else f"*{ncpus}" if flavor == "pro" else f"-{ncpus - 1}"
        attrs.append(("exec_host", None, f"{job['node']}/0{cpus}"))
    attrs += [("Join_Path", None, job["join"]), ("Keep_Files", None, job["keep"]),
              ("Output_Path", None, f"{host}:{job['output_path']}")]
    attrs += [("Resource_List", key, value) for key, value in _resource_list(job, flavor).items()]
    if started:
        attrs.append(("session_id", None, job.get("pid") or 0))
    attrs.append(("Variable_List", None, job["variable_list"]))
    return attrs + (_pro_tail(job, started, finished) if flavor == "pro" else _torque_tail(job, finished))


def _pro_tail(job: Job, started: bool, finished: bool) -> list[tuple[str, str | None, Any]]:
    """PBS Pro's last attributes: the scheduler's comment, the exit status, how it was submitted."""
    if started:
        when = time.strftime("%a %b %d at %H:%M", time.localtime(job["start_time"]))
        vnode = f"({job['node']}:ncpus={job['ncpus']})"
        comment = f"Job run at {when} on {vnode}{' and finished' if finished else ''}"
    else:
        comment = "Not Running: Insufficient amount of resource"
    attrs: list[tuple[str, str | None, Any]] = [("comment", None, comment)]
    wait = job.get("pending_seconds") or 0
    if not started and not finished and wait:  # the scheduler's plan: when the set wait is over
        attrs.append(("estimated", "start_time", time.ctime(job["submit_time"] + wait)))
    if finished and (status := _exit_status(job)) is not None:
        attrs.append(("Exit_status", None, status))
    if job["submit_args"]:
        attrs.append(("Submit_arguments", None, job["submit_args"]))
    return attrs


def _torque_tail(job: Job, finished: bool) -> list[tuple[str, str | None, Any]]:
    """Torque's last attributes: the exit status (lower case), how it was submitted."""
    attrs: list[tuple[str, str | None, Any]] = []
    if finished and (status := _exit_status(job)) is not None:
        attrs.append(("exit_status", None, status))
    return [*attrs, ("submit_args", None, job["submit_args"])]


# --------------------------------------------------------------------------- qstat

def _prt_attr(name: str, resource: str | None, value: str, linesize: int) -> str:
    """qstat's prt_attr(): ``    name.resource = value``, wrapped at commas with a tab."""
    parts = ["    ", name]
    start = len(name) + 7
    if resource:
        start += len(resource) + 1
        parts.append("." + resource)
    parts.append(" = ")
    tokens = [t for t in value.split(",") if t]  # strtok() skips empty fields
    first = True
    for index, token in enumerate(tokens):
        if len(token) + start < linesize:
            parts.append(token)
            start += len(token)
        else:
            if not first:
                parts.append("\n\t")
                start = 9
            for char in token:
                parts.append(char)
                start += 1
                if start > linesize:
                    start = 8
                    parts.append("\n\t")
        if index + 1 < len(tokens):
            first = False
            parts.append(",")
    return "".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _qstat_text(jobs: list[Job], flavor: str, now: float) -> str:
    linesize = 77 if flavor == "torque" else 78
    blocks = []
    for job in jobs:
        lines = [f"Job Id: {_full_id(job['id'])}\n"]
        for name, resource, value in _attributes(job, flavor, now):
            lines.append(_prt_attr(name, resource, _text(value), linesize) + "\n")
        blocks.append("".join(lines) + "\n")
    return "".join(blocks)


def _json_value(value: Any) -> Any:
    """PBS's JSON output turns every value that looks numeric into a number."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, int):
        return value
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    return text


def _qstat_json(jobs: list[Job], now: float) -> str:
    data: dict[str, Any] = {"timestamp": int(now), "pbs_version": PBS_VERSION, "pbs_server": PBS_SERVER}
    if jobs:
        listed: dict[str, Any] = {}
        for job in jobs:
            entry: dict[str, Any] = {}
            for name, resource, value in _attributes(job, "pro", now):
                if resource is None:
                    entry[name] = _json_value(value)
                else:
                    entry.setdefault(name, {})[resource] = _json_value(value)
            listed[_full_id(job["id"])] = entry
        data["Jobs"] = listed
    return json.dumps(data, indent=4, separators=(",", ":")) + "\n"


def _qstat_select(operands: list[str], jobs: list[Job], flavor: str, shown: tuple[str, ...],
                  now: float) -> tuple[list[Job], list[tuple[int, str]]]:
    """The jobs ``qstat ID...`` lists, and (exit status, complaint) for each id it does not."""
    by_id = {job["id"]: job for job in jobs}
    selected, errors = [], []
    for operand in operands:
        job_id = _pbs_id(operand)
        if job_id is None:
            raise not_emulated("qstat", f"the destination {operand} (only job ids are)")
        job, seen = by_id.get(job_id), _visibility(by_id.get(job_id), flavor, now)
        if job is not None and seen in shown:
            selected.append(job)
        elif seen == "history":
            errors.append((_RC_HISTJOBID, f"qstat: {_full_id(job_id)} Job has finished, use -x or -H "
                                          "to obtain historical job information"))
        else:
            unknown = "Unknown Job Id Error" if flavor == "torque" else "Unknown Job Id"
            errors.append((_RC_UNKJOBID, f"qstat: {unknown} {_full_id(job_id)}"))
    return selected, errors


def cmd_qstat(args: list[str]) -> int:
    """``qstat -f [-F json] [-x] [ID...]`` (PBS Pro), ``qstat -f [ID...]`` (Torque)."""
    flavor = _flavor()
    opts, rest = _options("qstat", args, _QSTAT_OPTS[flavor], _QSTAT_EMULATED[flavor])
    flags = dict(opts)
    if "f" not in flags:
        raise not_emulated("qstat", "the job table (qstat without -f)")
    if "F" in flags and (flags["F"] or "").lower() != "json":
        raise not_emulated("qstat", f"-F {flags['F']} (only -F json is)")
    if query_fails():
        raise CommandError(1, f"qstat: cannot connect to server {PBS_SERVER} (errno=111)")
    now = time.time()
    jobs = load_jobs(JobStore.from_env(), "pbs")
    # PBS Pro lists finished jobs only with -x; Torque lists them while it keeps them.
    shown = ("active", "history") if flavor == "torque" or "x" in flags else ("active",)
    if rest:
        selected, errors = _qstat_select(rest, jobs, flavor, shown, now)
    else:
        selected, errors = [job for job in jobs if _visibility(job, flavor, now) in shown], []
    if flavor == "torque":  # Torque collects its complaints and prints them last
        out(_qstat_text(selected, flavor, now))
        err(*(line for _, line in errors))
        return errors[0][0] if errors else 0
    err(*(line for _, line in errors))
    out(_qstat_json(selected, now) if "F" in flags else _qstat_text(selected, flavor, now))
    return errors[-1][0] if errors else 0  # PBS Pro exits with the last error


# --------------------------------------------------------------------------- qdel, qselect

def cmd_qdel(args: list[str]) -> int:
    """``qdel ID...``: returns at once, the job's processes get SIGTERM then SIGKILL."""
    flavor = _flavor()
    _, rest = _options("qdel", args, _QDEL_OPTS[flavor], "")
    if not rest:
        raise CommandError(2, "usage: qdel job_identifier...")
    now = time.time()
    store = JobStore.from_env()
    jobs = {job["id"]: job for job in load_jobs(store, "pbs")}
    rc = 0
    for operand in rest:
        job_id = _pbs_id(operand)
        if job_id is None:
            err(f"qdel: illegally formed job identifier: {operand}")
            rc = 1
            continue
        job, seen = jobs.get(job_id), _visibility(jobs.get(job_id), flavor, now)
        if job is None or seen == "gone":
            # Torque 6 words PBSE_UNKJOBID as its qstat does ("Unknown Job Id Error").
            err(f"qdel: Unknown Job Id Error {_full_id(job_id)}" if flavor == "torque"
                else f"qdel: Unknown Job Id {_full_id(job_id)}")
            rc = _RC_UNKJOBID
        elif seen == "history" and flavor == "torque":
            err("qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE "
                f"{_full_id(job_id)}")
            rc = _RC_BADSTATE
        elif seen == "history":
            err(f"qdel: Job has finished {_full_id(job_id)}")
            rc = _RC_HISTJOBID
        elif job["state"] in ACTIVE_STATES:
            cancel(store, job_id)
    return rc


def cmd_qselect(args: list[str]) -> int:
    """``qselect [-N NAME] [-u USER]``: ids of unfinished jobs."""
    flavor = _flavor()
    opts, _ = _options("qselect", args, _QSELECT_OPTS[flavor], "Nu")
    flags = dict(opts)
    if query_fails():
        raise CommandError(1, f"qselect: cannot connect to server {PBS_SERVER} (errno=111)")
    now = time.time()
    users = {u.split("@")[0] for u in (flags.get("u") or "").split(",") if u}
    found = [_full_id(job["id"]) for job in load_jobs(JobStore.from_env(), "pbs")
             if _visibility(job, flavor, now) == "active"
             and (flags.get("N") is None or job["name"] == flags["N"])
             and (not users or job["user"] in users)]
    out("".join(line + "\n" for line in found))
    return 0


COMMANDS: dict[str, Handler] = {"qsub": cmd_qsub, "qstat": cmd_qstat, "qdel": cmd_qdel,
                                "qselect": cmd_qselect}

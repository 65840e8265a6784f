"""Fake Slurm, PBS Pro and Torque client commands that really run the submitted jobs locally.

Used by pw_spawner's tests and by administrators who want to try the spawner without a
cluster. This one module implements every command, chosen by the first argument::

    python -m pw_spawner.testing.fake_scheduler sbatch --parsable < job.sh
    python -m pw_spawner.testing.fake_scheduler squeue -h -t all -j 1000 -o '%i|%T|%r|%N|%j'
    python -m pw_spawner.testing.fake_scheduler qstat -f -F json -x 1000.fakepbs

``install_fake_scheduler()`` in :mod:`pw_spawner.testing.plugin` writes wrapper scripts named
``sbatch``, ``squeue``, ... so that the spawner finds them on ``PATH`` like the real tools.

Slurm (22.05): ``sbatch``, ``squeue``, ``scontrol show job|partition``, ``scancel`` and ``sacct``
(which answers as a cluster without slurmdbd does). PBS (server ``fakepbs``): ``qsub``,
``qstat``, ``qdel``, ``qselect`` in the PBS Pro 2022 or the Torque 6 flavour. Output formats
and error messages follow the real tools, exit codes included (PBS ones are the PBSE_ error
number modulo 256, as the real commands' ``exit(pbs_errno)`` gives).

Jobs really run. Each submission starts a detached supervisor (``fake_scheduler _supervise
JOBID``, a new session) that waits out the pending time, runs ``bash <script>`` in a new
session, waits for it and records the end state, so no daemon is needed. The state lives in
``$PW_FAKE_SCHED_DIR``: one JSON file per job, replaced atomically (write + rename), with
changes serialised by ``flock`` on ``.lock`` because several commands may run at once. Job
scripts are kept there too, mode 0600 (they may hold secrets).

Knobs, read from the environment of the command being run (so a test can change them per call),
else from ``knobs.json`` in the state directory (what the test fixtures' ``set_knobs`` writes: the
spawner passes its commands no such variable); the pending time and pending reason are fixed at
submission:

- ``PW_FAKE_SCHED_DIR``: the state directory (required).
- ``PW_FAKE_PBS_FLAVOR``: ``pro`` (default) or ``torque``.
- ``PW_FAKE_PENDING_SECONDS``: how long a job stays pending before it starts (default 0).
- ``PW_FAKE_PENDING_REASON``: a fixed Slurm pending reason; by default the oldest pending job of
  a partition waits for ``Resources`` and the others for ``Priority``, as in Slurm.
- ``PW_FAKE_PARTITIONS``: Slurm partitions, the first is the default (``debug,short,long,gpu``).
  Submitting to a partition named ``full`` fails as if a QOS submit limit were reached.
- ``PW_FAKE_QUEUES``: PBS queues, the first is the default (``workq,short,long,gpu``); ``full``
  behaves as for Slurm.
- ``PW_FAKE_SUBMIT_FAIL``: sbatch/qsub print this message on stderr and exit 1.
- ``PW_FAKE_QUERY_FAIL``: squeue/scontrol/qstat/qselect fail as when the controller is down.
- ``PW_FAKE_HOSTNAME``: the node jobs run on (default ``localhost``).
- ``PW_FAKE_MIN_JOB_AGE``: seconds a finished job stays known (Slurm MinJobAge, Torque
  keep_completed; default 300).
- ``PW_FAKE_JOB_HISTORY``: seconds PBS Pro keeps finished jobs for ``qstat -x`` (default two
  weeks, the job_history_duration default).
- ``PW_FAKE_PBS_SPOOL``: ``0`` makes PBS jobs write straight to their -o/-e files. By default
  output is spooled and copied there when the job ends, as real PBS does (``qsub -k d`` asks
  for direct writing).

Deliberate simplifications: every job runs on one node (``PW_FAKE_HOSTNAME``); jobs get the
submitting environment whatever ``--export``/``-V`` say (``NAME=value`` entries are added);
``--hold``/``qsub -h`` jobs never start (there is no release command); no arrays, no steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pwd
import re
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Job = dict[str, Any]

SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")
PBS_COMMANDS = ("qsub", "qstat", "qdel", "qselect")
ACTIVE_STATES = ("PENDING", "RUNNING")
FINISHED_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
PBS_SERVER = "fakepbs"
PBS_VERSION = "2022.1.0"
TORQUE_VERSION = "6.1.3"
SLURM_VERSION = "22.05.8"
FIRST_JOB_ID = 1000
#: scancel/qdel send SIGTERM, then SIGKILL this many seconds later (Slurm's KillWait).
CANCEL_GRACE = 3.0

_SELF = os.path.abspath(__file__)
_PROG = "fake_scheduler"


class CommandError(Exception):
    """Ends a fake command: ``lines`` go to stderr and ``rc`` is the exit status."""

    def __init__(self, rc: int, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.rc = rc
        self.lines = lines


def _err(*lines: str) -> None:
    for line in lines:
        sys.stderr.write(line + "\n")


def _out(text: str) -> None:
    sys.stdout.write(text)


# --------------------------------------------------------------------------- configuration


#: The knobs file in the state directory: {"PW_FAKE_...": "value"}, written by the test fixture
#: (:meth:`pw_spawner.testing.plugin.FakeScheduler.set_knobs`), so that a knob reaches the fake
#: commands without passing through the spawner (which hands its commands an allow-listed
#: environment).
KNOBS_FILE = "knobs.json"


def _knob(name: str, default: str = "") -> str:
    """A knob: from the command's environment, else from the state directory's knobs file."""
    value = os.environ.get(name)
    if value:
        return value
    root = os.environ.get("PW_FAKE_SCHED_DIR")
    if root:
        try:
            with open(os.path.join(root, KNOBS_FILE)) as handle:
                value = json.load(handle).get(name)
        except (OSError, ValueError, AttributeError):
            value = None
    return str(value) if value else default


def _env_float(name: str, default: float) -> float:
    try:
        return float(_knob(name) or default)
    except ValueError:
        return default


def _env_list(name: str, default: str) -> list[str]:
    return [p.strip() for p in (_knob(name) or default).split(",") if p.strip()]


def _node_name() -> str:
    return _knob("PW_FAKE_HOSTNAME") or "localhost"


def _pbs_flavor() -> str:
    flavor = _knob("PW_FAKE_PBS_FLAVOR").strip().lower()
    return "torque" if flavor == "torque" else "pro"


def _min_job_age() -> float:
    return _env_float("PW_FAKE_MIN_JOB_AGE", 300.0)


def _account() -> dict[str, Any]:
    """Who submits: taken from the password database, since callers may strip HOME/USER."""
    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        user, home, shell = entry.pw_name, entry.pw_dir, entry.pw_shell
    except KeyError:
        user = os.environ.get("USER") or str(uid)
        home, shell = os.environ.get("HOME") or "/", "/bin/sh"
    try:
        import grp

        group = grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        group = str(gid)
    return {"user": user, "uid": uid, "group": group, "gid": gid, "home": home, "shell": shell}


def _submit_host() -> str:
    return socket.gethostname()


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the caller's directory was removed under it
        return os.environ.get("PWD") or "/"


# --------------------------------------------------------------------------- state directory


class JobStore:
    """The state directory: ``job-ID.json`` records, scripts, logs and an id counter.

    Records are replaced atomically, so reading needs no lock; every read-modify-write holds
    the exclusive ``flock`` on ``.lock``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)

    @classmethod
    def from_env(cls) -> JobStore:
        root = os.environ.get("PW_FAKE_SCHED_DIR")
        if not root:
            raise CommandError(1, f"{_PROG}: error: PW_FAKE_SCHED_DIR is not set "
                                  "(the fake scheduler's state directory)")
        return cls(root)

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Hold the state lock. Not re-entrant: flock locks are per open file."""
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def file(self, job_id: int, suffix: str) -> str:
        return os.path.join(self.root, f"job-{job_id}{suffix}")

    def load(self, job_id: int) -> Job | None:
        try:
            with open(self.file(job_id, ".json"), encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return None

    def save(self, job: Job) -> None:
        path = self.file(job["id"], ".json")
        self._write(path, json.dumps(job, indent=1))  # key order matters: qstat prints it

    def _write(self, path: str, text: str) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def ids(self) -> list[int]:
        found = []
        for name in os.listdir(self.root):
            if name.startswith("job-") and name.endswith(".json") and name[4:-5].isdigit():
                found.append(int(name[4:-5]))
        return sorted(found)

    def jobs(self) -> list[Job]:
        return [job for job_id in self.ids() if (job := self.load(job_id)) is not None]

    def allocate_id(self) -> int:
        """The next job id (increasing, from 1000); the caller holds the exclusive lock."""
        path = os.path.join(self.root, "next_id")
        try:
            with open(path, encoding="ascii") as fh:
                job_id = int(fh.read().strip())
        except (FileNotFoundError, ValueError):
            job_id = max([FIRST_JOB_ID - 1, *self.ids()]) + 1
        self._write(path, f"{job_id + 1}\n")
        return job_id

    def update(self, job_id: int, change: Callable[[Job], object]) -> Job | None:
        with self.locked():
            job = self.load(job_id)
            if job is not None:
                change(job)
                self.save(job)
            return job


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, process group, start time in ticks) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()  # the command name may hold spaces
    try:
        return fields[0], int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _have_proc() -> bool:
    return os.path.exists("/proc/self/stat")


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, to tell it from a later process that reuses the number."""
    stat = _proc_stat(pid) if _have_proc() else None
    return stat[2] if stat else None


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether ``pid`` runs (zombies count as dead: nobody may ever reap an orphan here)."""
    if not pid:
        return False
    if _have_proc():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in "ZXx":
            return False
        return started is None or stat[2] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def pgid_alive(pgid: int | None) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    if not pgid:
        return False
    if not _have_proc():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _proc_stat(int(name))
            if stat and stat[1] == pgid and stat[0] not in "ZXx":
                return True
    return False


def killpg(pgid: int | None, sig: int) -> None:
    """Signal a process group, ignoring one that is gone or not ours."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def _spawn_self(args: list[str], log_path: str | None = None) -> int:
    """Start ``fake_scheduler ARGS`` detached: new session, no inherited stdio or cwd.

    Detaching matters: a caller that captures our output waits for the pipes to close, and
    must not wait for a job.
    """
    import subprocess

    fd = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen([sys.executable, _SELF, *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True, close_fds=True)
    return proc.pid


def _supervisor_alive(job: Job) -> bool:
    pid = job.get("supervisor_pid")
    if pid is None:
        return True  # cannot tell: leave the record alone
    return pid_alive(pid, job.get("supervisor_start"))


def _reconcile(store: JobStore, jobs: list[Job]) -> list[Job]:
    """Fail active jobs whose supervisor died (killed, OOM): nobody else will end them."""
    stale = [job["id"] for job in jobs if job["state"] in ACTIVE_STATES and not job.get("held")
             and not _supervisor_alive(job)]
    if not stale:
        return jobs
    with store.locked():
        for job_id in stale:
            job = store.load(job_id)
            if job is None or job["state"] not in ACTIVE_STATES or _supervisor_alive(job):
                continue
            if job["state"] == "RUNNING" and pgid_alive(job.get("pid")):
                continue  # the job itself still runs; its end just will not be noticed
            job.update(state="FAILED", end_time=time.time(), lost=True,
                       exit_code=job.get("exit_code") if job.get("exit_code") is not None else 1)
            store.save(job)
    return [store.load(job["id"]) or job for job in jobs]


def _load_jobs(store: JobStore, kind: str) -> list[Job]:
    return _reconcile(store, [job for job in store.jobs() if job.get("kind") == kind])


# --------------------------------------------------------------------------- option parsing


class _OptError(Exception):
    pass


def _match_long(name: str, spec: dict[str, int], arg: str) -> str:
    if name in spec:
        return name
    found = [key for key in spec if key.startswith(name)]
    if len(found) == 1:
        return found[0]
    if not found or not name:
        raise _OptError(f"unrecognized option '{arg}'")
    shown = " ".join(f"'--{key}'" for key in found)
    raise _OptError(f"option '{arg}' is ambiguous; possibilities: {shown}")


def _getopt_long(args: list[str], short: dict[str, str], spec: dict[str, int],
                 permute: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long as Slurm uses it. ``spec``: long name -> 0 flag, 1 argument, 2 optional.

    ``short`` maps option letters to long names. Returns (name, value) pairs and operands.
    """
    opts: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1:])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            full = _match_long(name, spec, arg)
            kind = spec[full]
            if kind == 0:
                if eq:
                    raise _OptError(f"option '--{full}' doesn't allow an argument")
                opts.append((full, None))
            elif kind == 1 and not eq:
                i += 1
                if i >= len(args):
                    raise _OptError(f"option '--{full}' requires an argument")
                opts.append((full, args[i]))
            else:
                opts.append((full, value if eq else None))
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                named = short.get(letter)
                if named is None:
                    raise _OptError(f"invalid option -- '{letter}'")
                full = named
                kind = spec[full]
                if kind == 0:
                    opts.append((full, None))
                    j += 1
                    continue
                if j + 1 < len(arg):
                    opts.append((full, arg[j + 1:]))
                elif kind == 1:
                    i += 1
                    if i >= len(args):
                        raise _OptError(f"option requires an argument -- '{letter}'")
                    opts.append((full, args[i]))
                else:
                    opts.append((full, None))
                break
        elif permute:
            rest.append(arg)
        else:
            rest.extend(args[i:])
            break
        i += 1
    return opts, rest


def _getopt(args: list[str], optstring: str,
            permute: bool) -> tuple[list[tuple[str, str | None]], list[str], bool]:
    """POSIX getopt as the PBS commands use it; also says whether ``--`` ended the options."""
    takes: dict[str, bool] = {}
    pos = 0
    while pos < len(optstring):
        takes[optstring[pos]] = optstring[pos + 1:pos + 2] == ":"
        pos += 2 if takes[optstring[pos]] else 1
    opts: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1:])
            return opts, rest, True
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                if letter not in takes or letter == ":":
                    raise _OptError(f"invalid option -- '{letter}'")
                if not takes[letter]:
                    opts.append((letter, None))
                    j += 1
                    continue
                if j + 1 < len(arg):
                    opts.append((letter, arg[j + 1:]))
                else:
                    i += 1
                    if i >= len(args):
                        raise _OptError(f"option requires an argument -- '{letter}'")
                    opts.append((letter, args[i]))
                break
        elif permute:
            rest.append(arg)
        else:
            rest.extend(args[i:])
            break
        i += 1
    return opts, rest, False


def _directives(script: str, prefix: str) -> list[list[str]]:
    """Words of the ``#SBATCH``/``#PBS`` lines of the leading comment block.

    As with the real tools, the first line that is neither blank nor a comment ends it.
    """
    found = []
    for number, line in enumerate(script.splitlines()):
        if number == 0 and line.startswith("#!"):
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] in ("", " ", "\t"):
            body = line[len(prefix):]
            try:
                words = shlex.split(body, comments=True)
            except ValueError:
                words = body.split()
            found.append(words)
    return found


def _read_stdin() -> str:
    return sys.stdin.buffer.read().decode("utf-8", "replace")


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    match = re.match(r"\d+", value.strip())
    if not match:
        raise ValueError(value)
    return int(match.group())


def _failure_knob(name: str) -> str | None:
    return _knob(name) or None


# --------------------------------------------------------------------------- time formats


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
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            seconds = parts[0] * 60
        elif len(parts) == 2:
            seconds = parts[0] * 60 + parts[1]
        elif len(parts) == 3:
            seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        else:
            raise ValueError(value)
    return days * 86400 + seconds


def _pbs_time(value: str) -> int:
    """Seconds of a PBS walltime (``[[H:]M:]S``)."""
    parts = [int(float(p)) for p in value.strip().split(":")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(value)
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def _squeue_secs(secs: float) -> str:
    """squeue's TIME column: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``."""
    secs = max(0, int(secs))
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{seconds:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes}:{seconds:02d}"


def _hms(secs: float) -> str:
    """scontrol's ``HH:MM:SS`` / ``D-HH:MM:SS``."""
    secs = max(0, int(secs))
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    prefix = f"{days}-" if days else ""
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}"


def _pbs_hms(secs: float) -> str:
    secs = max(0, int(secs))
    hours, rem = divmod(secs, 3600)
    return f"{hours:02d}:{rem // 60:02d}:{rem % 60:02d}"


def _iso(stamp: float | None) -> str:
    if not stamp:
        return "Unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp))


# --------------------------------------------------------------------------- submission


def _submit(store: JobStore, job: Job, script: str, resolve: Callable[[Job], None]) -> Job:
    """Record ``job`` under a new id, keep its script and start its supervisor."""
    with store.locked():
        job["id"] = store.allocate_id()
        resolve(job)
        path = store.file(job["id"], ".sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(script)
        os.chmod(path, 0o600)  # the script may carry secrets (tokens)
        job["script"] = path
        # The supervisor loads the record under this same lock, so it waits for the save below.
        job["supervisor_pid"] = _spawn_self(["_supervise", str(job["id"])],
                                            store.file(job["id"], ".log"))
        job["supervisor_start"] = start_ticks(job["supervisor_pid"])
        store.save(job)
    return job


def _base_job(kind: str, flavor: str, name: str, queue: str, workdir: str) -> Job:
    who = _account()
    return {
        "kind": kind, "flavor": flavor, "name": name, "partition": queue,
        "user": who["user"], "uid": who["uid"], "group": who["group"], "gid": who["gid"],
        "home": who["home"], "shell": who["shell"],
        "state": "PENDING", "held": False, "reason_override": None,
        "submit_time": time.time(), "start_time": None, "end_time": None,
        "exit_code": None, "pid": None, "node": None,
        "submit_dir": _cwd(), "workdir": workdir, "submit_host": _submit_host(),
        "time_limit": None, "pending_seconds": max(0.0, _env_float("PW_FAKE_PENDING_SECONDS", 0)),
        "script_args": [], "command": None, "extra_env": {}, "options": {},
        "open_mode": "truncate", "spool": False,
    }


def _cancel(store: JobStore, job_id: int) -> Job | None:
    """Cancel at once and return: SIGTERM now, SIGKILL later from a detached reaper."""
    pid = None

    def change(job: Job) -> None:
        nonlocal pid
        if job["state"] not in ACTIVE_STATES:
            return
        if job["state"] == "RUNNING":
            pid = job.get("pid")
        job["state"] = "CANCELLED"
        job["end_time"] = time.time()

    job = store.update(job_id, change)
    if pid:
        killpg(pid, signal.SIGTERM)
        _spawn_self(["_reap", str(pid), str(CANCEL_GRACE)])
    return job


# --------------------------------------------------------------------------- the supervisor


def _slurm_env(job: Job, env: dict[str, str]) -> None:
    node, jid = job["node"] or _node_name(), str(job["id"])
    opts = job["options"]
    cpus = job.get("ncpus", 1)
    env.update({
        "SLURM_JOB_ID": jid, "SLURM_JOBID": jid, "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_NODELIST": node, "SLURM_NODELIST": node, "SLURMD_NODENAME": node,
        "SLURM_JOB_PARTITION": job["partition"], "SLURM_SUBMIT_DIR": job["submit_dir"],
        "SLURM_SUBMIT_HOST": job["submit_host"], "SLURM_JOB_USER": job["user"],
        "SLURM_JOB_UID": str(job["uid"]), "SLURM_JOB_GID": str(job["gid"]),
        "SLURM_CLUSTER_NAME": "fakecluster", "SLURM_JOB_NUM_NODES": str(job.get("nodect", 1)),
        "SLURM_NNODES": str(job.get("nodect", 1)), "SLURM_CPUS_ON_NODE": str(cpus),
        "SLURM_JOB_CPUS_PER_NODE": str(cpus), "SLURM_NTASKS": str(job.get("ntasks", 1)),
        "SLURM_NPROCS": str(job.get("ntasks", 1)),
        "SLURM_TASKS_PER_NODE": str(job.get("ntasks", 1)),
        "SLURM_JOB_QOS": opts.get("qos") or "normal", "SLURM_GTIDS": "0", "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_TASK_PID": "0",
        "ENVIRONMENT": "BATCH",
    })
    if opts.get("cpus-per-task"):
        env["SLURM_CPUS_PER_TASK"] = str(job.get("cpus_per_task", 1))
    if opts.get("account"):
        env["SLURM_JOB_ACCOUNT"] = opts["account"]
    if opts.get("mem"):
        env["SLURM_MEM_PER_NODE"] = str(_mem_mb(opts["mem"]))
    if opts.get("gpus"):
        env["SLURM_GPUS"] = opts["gpus"]
    if job.get("time_limit"):
        env["SLURM_JOB_END_TIME"] = str(int(time.time() + job["time_limit"]))


def _pbs_env(job: Job, store: JobStore, env: dict[str, str]) -> None:
    full_id = f"{job['id']}.{PBS_SERVER}"
    nodefile = store.file(job["id"], ".nodes")
    ncpus = job.get("ncpus", 1)
    lines = ncpus if job["flavor"] == "torque" else job.get("nodect", 1)
    with open(nodefile, "w", encoding="utf-8") as fh:
        fh.write(f"{job['node']}\n" * max(1, lines))
    env.update({key: str(value) for key, value in job["variable_list"].items()
                if key.startswith("PBS_O_")})
    env.update({
        "PBS_JOBID": full_id, "PBS_JOBNAME": job["name"], "PBS_QUEUE": job["partition"],
        "PBS_ENVIRONMENT": "PBS_BATCH", "ENVIRONMENT": "BATCH", "PBS_NODEFILE": nodefile,
        "PBS_O_WORKDIR": job["submit_dir"], "PBS_TASKNUM": "1", "PBS_NODENUM": "0",
        "PBS_MOMPORT": "15003",
        # The execution host sets these from the account, whatever the submitter had.
        "HOME": job["home"], "LOGNAME": job["user"], "USER": job["user"], "SHELL": job["shell"],
    })
    if job["flavor"] == "torque":
        env.update({"PBS_SERVER": PBS_SERVER, "PBS_NUM_NODES": str(job.get("nodect", 1)),
                    "PBS_NUM_PPN": str(max(1, ncpus // max(1, job.get("nodect", 1)))),
                    "PBS_NP": str(ncpus), "PBS_VNODENUM": "0"})
        if job["options"].get("d"):
            env["PBS_O_INITDIR"] = job["workdir"]
    else:
        env.update({"PBS_JOBDIR": job["workdir"], "NCPUS": str(ncpus),
                    "OMP_NUM_THREADS": str(ncpus)})


def _open_outputs(job: Job) -> tuple[Any, Any]:
    mode = "ab" if job.get("open_mode") == "append" else "wb"
    out = open(job["stdout"], mode)  # handed to the child; the caller closes our copy
    if job["stderr"] == job["stdout"]:
        return out, out
    try:
        return out, open(job["stderr"], mode)
    except OSError:
        out.close()
        raise


def _launch(store: JobStore, job: Job) -> Any:
    """Start ``bash <script>`` in a new session; the caller holds the lock."""
    import subprocess

    job["node"] = _node_name()
    if job.get("spool"):
        os.makedirs(os.path.join(store.root, "spool"), mode=0o700, exist_ok=True)
    out, err = _open_outputs(job)
    try:
        env = dict(os.environ)  # the submitter's environment, inherited through the supervisor
        env.setdefault("HOME", job["home"])
        env.setdefault("USER", job["user"])
        env.setdefault("LOGNAME", job["user"])
        if job["kind"] == "slurm":
            _slurm_env(job, env)
        else:
            _pbs_env(job, store, env)
        env.update(job.get("extra_env") or {})
        cwd = job["workdir"]
        if not os.path.isdir(cwd):
            # What slurmstepd does; close enough for PBS, which would fail the job.
            err.write(f"slurmstepd: error: couldn't chdir to `{cwd}': No such file or directory: "
                      f"going to /tmp instead\n".encode())
            err.flush()
            cwd = "/tmp"
        return subprocess.Popen(["bash", job["script"], *job.get("script_args", [])],
                                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True, close_fds=True)
    finally:
        out.close()
        if err is not out:
            err.close()


def _stage_out(job: Job) -> None:
    """PBS copies spooled output to the -o/-e paths when the job ends."""
    import shutil

    pairs = [(job["stdout"], job["output_path"] if job["join"] != "eo" else job["error_path"])]
    if job["stderr"] != job["stdout"]:
        pairs.append((job["stderr"], job["error_path"]))
    for spooled, final in pairs:
        try:
            shutil.copyfile(spooled, final)
            os.unlink(spooled)
        except OSError as exc:
            print(f"cannot deliver {spooled} to {final}: {exc}", flush=True)


def _supervise(args: list[str]) -> int:
    """Start one job after its pending time, wait for it, record how it ended."""
    import threading

    job_id = int(args[0])
    store = JobStore.from_env()
    with store.locked():
        job = store.load(job_id)  # waits for the submitter to finish saving the record
    if job is None:
        return 1
    if job.get("held"):
        return 0
    deadline = job["submit_time"] + float(job.get("pending_seconds") or 0)
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 0.1))
        current = store.load(job_id)
        if current is None or current["state"] != "PENDING":
            return 0  # cancelled while pending
    with store.locked():
        job = store.load(job_id)
        if job is None or job["state"] != "PENDING":
            return 0
        try:
            proc = _launch(store, job)
        except OSError as exc:
            print(f"job {job_id} could not start: {exc}", flush=True)
            now = time.time()
            job.update(state="FAILED", start_time=now, end_time=now, exit_code=1,
                       node=_node_name())
            store.save(job)
            return 1
        # Recording the pid under the lock lets a cancel see either PENDING or this pid.
        job.update(state="RUNNING", start_time=time.time(), pid=proc.pid)
        store.save(job)

    finished = threading.Event()

    def time_out() -> None:
        store.update(job_id, lambda j: j.update(state="TIMEOUT", end_time=time.time())
                     if j["state"] == "RUNNING" else None)
        killpg(proc.pid, signal.SIGTERM)
        if not finished.wait(CANCEL_GRACE):
            killpg(proc.pid, signal.SIGKILL)

    timer = None
    if job.get("time_limit"):
        timer = threading.Timer(job["time_limit"], time_out)
        timer.daemon = True
        timer.start()
    returncode = proc.wait()
    finished.set()
    if timer is not None:
        timer.cancel()
    # A batch job ends with its script: like slurmstepd and the PBS MoM, kill what it left.
    killpg(proc.pid, signal.SIGKILL)
    if job.get("spool"):
        _stage_out(job)

    def record(current: Job) -> None:
        current["exit_code"] = returncode
        if current["state"] == "RUNNING":
            current["state"] = "COMPLETED" if returncode == 0 else "FAILED"
        if not current.get("end_time"):
            current["end_time"] = time.time()

    store.update(job_id, record)
    return 0


def _reap(args: list[str]) -> int:
    """After a cancel: SIGKILL the job's process group if it outlives the grace time."""
    pgid, grace = int(args[0]), float(args[1])
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pgid_alive(pgid):
            return 0
        time.sleep(0.1)
    killpg(pgid, signal.SIGKILL)
    return 0


# =========================================================================== Slurm


def _flag_spec(required: str, optional: str, flags: str) -> dict[str, int]:
    spec = dict.fromkeys(required.split(), 1)
    spec.update(dict.fromkeys(optional.split(), 2))
    spec.update(dict.fromkeys(flags.split(), 0))
    return spec


_SBATCH_SHORT = {
    "A": "account", "a": "array", "b": "begin", "C": "constraint", "c": "cpus-per-task",
    "D": "chdir", "d": "dependency", "e": "error", "F": "nodefile", "G": "gpus", "H": "hold",
    "h": "help", "i": "input", "J": "job-name", "k": "no-kill", "L": "licenses", "M": "clusters",
    "m": "distribution", "N": "nodes", "n": "ntasks", "O": "overcommit", "o": "output",
    "p": "partition", "Q": "quiet", "q": "qos", "S": "core-spec", "s": "oversubscribe",
    "t": "time", "V": "version", "v": "verbose", "W": "wait", "w": "nodelist", "x": "exclude",
}
_SBATCH_LONG = _flag_spec(
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

_SQUEUE_SHORT = {
    "A": "accounts", "a": "all", "h": "noheader", "i": "iterate", "j": "jobs", "l": "long",
    "L": "licenses", "M": "clusters", "n": "name", "O": "Format", "o": "format",
    "p": "partitions", "P": "priority", "q": "qos", "R": "reservation", "r": "array",
    "S": "sort", "s": "steps", "t": "states", "u": "user", "U": "accounts", "v": "verbose",
    "V": "version", "w": "nodelist",
}
_SQUEUE_LONG = _flag_spec(
    "accounts Format format iterate licenses cluster clusters name node nodes nodelist "
    "partitions qos reservation sort states user users",
    "jobs steps json yaml",
    "all array federation help helpstate helpformat hide local long me noconvert noheader "
    "notme priority sib sibling start usage verbose version",
)

_SCANCEL_SHORT = {
    "A": "account", "b": "batch", "f": "full", "H": "hurry", "i": "interactive",
    "M": "clusters", "n": "name", "p": "partition", "Q": "quiet", "q": "qos",
    "R": "reservation", "s": "signal", "t": "state", "u": "user", "v": "verbose",
    "V": "version", "w": "nodelist",
}
_SCANCEL_LONG = _flag_spec(
    "account cluster clusters jobname name partition qos reservation signal state user "
    "nodelist wckey sibling",
    "",
    "batch ctld full help hurry interactive me quiet usage verbose version",
)

_SCONTROL_SHORT = {"a": "all", "d": "details", "M": "clusters", "o": "oneliner", "Q": "quiet",
                   "v": "verbose", "V": "version"}
_SCONTROL_LONG = _flag_spec("clusters cluster", "json yaml",
                            "all details future help hide local oneliner quiet sibling usage "
                            "verbose version")

#: Slurm's job state names and their compact forms (squeue %t and -t).
_SLURM_COMPACT = {
    "PENDING": "PD", "RUNNING": "R", "SUSPENDED": "S", "COMPLETING": "CG", "COMPLETED": "CD",
    "CONFIGURING": "CF", "CANCELLED": "CA", "FAILED": "F", "TIMEOUT": "TO", "PREEMPTED": "PR",
    "NODE_FAIL": "NF", "BOOT_FAIL": "BF", "DEADLINE": "DL", "OUT_OF_MEMORY": "OOM",
    "REQUEUED": "RQ", "RESIZING": "RS", "REVOKED": "RV", "SPECIAL_EXIT": "SE",
    "STAGE_OUT": "SO", "STOPPED": "ST", "SIGNALING": "SI", "REQUEUE_HOLD": "RH",
    "REQUEUE_FED": "RF", "RESV_DEL_HOLD": "RD",
}
_SQUEUE_DEFAULT_STATES = {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING",
                          "STAGE_OUT"}
_SQUEUE_HEADERS = {
    "a": "ACCOUNT", "A": "JOBID", "b": "TRES_PER_NODE", "B": "EXEC_HOST", "c": "MIN_CPUS",
    "C": "CPUS", "D": "NODES", "e": "END_TIME", "F": "ARRAY_JOB_ID", "g": "GROUP",
    "G": "GROUP", "i": "JOBID", "j": "NAME", "K": "ARRAY_TASK_ID", "l": "TIME_LIMIT",
    "L": "TIME_LEFT", "m": "MIN_MEMORY", "M": "TIME", "N": "NODELIST",
    "o": "COMMAND", "p": "PRIORITY", "P": "PARTITION", "q": "QOS", "r": "REASON",
    "R": "NODELIST(REASON)", "S": "START_TIME", "t": "ST", "T": "STATE", "u": "USER",
    "U": "UID", "V": "SUBMIT_TIME", "Z": "WORK_DIR",
}
_SQUEUE_DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
_SQUEUE_LONG_FORMAT = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"

_SLURM_INVALID_JOB = "slurm_load_jobs error: Invalid job id specified"
_SLURM_QUERY_FAIL = "slurm_load_jobs error: Socket timed out on send/recv operation"


def _slurm_getopt(prog: str, args: list[str], short: dict[str, str], spec: dict[str, int],
                  permute: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    try:
        return _getopt_long(args, short, spec, permute)
    except _OptError as exc:
        raise CommandError(1, f"{prog}: {exc}",
                           f'Try "{prog} --help" for more information') from None


def _mem_mb(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTkmgt]?)[Bb]?\s*", value)
    if not match:
        return 0
    number, unit = float(match.group(1)), (match.group(2) or "M").upper()
    return int(number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit])


def _slurm_filename(pattern: str, job: Job) -> str:
    """Expand ``%j %x %u %N %A %a %%`` in an --output/--error pattern, relative to the workdir."""
    replace = {"j": str(job["id"]), "A": str(job["id"]), "x": job["name"], "u": job["user"],
               "N": _node_name(), "a": "4294967294", "s": "batch", "t": "0", "n": "0"}

    def expand(match: re.Match[str]) -> str:
        letter = match.group(1)
        return "%" if letter == "%" else replace.get(letter, match.group(0))

    path = re.sub(r"%(?:\d+)?([%jAxuNasnt])", expand, pattern)
    return os.path.normpath(os.path.join(job["workdir"], os.path.expanduser(path)))


def _check_batch_script(script: str) -> None:
    if not script:
        raise CommandError(1, "sbatch: error: Batch script is empty!")
    if not script.strip():
        raise CommandError(1, "sbatch: error: Batch script contains only whitespace!")
    if "\r\n" in script:
        raise CommandError(1, "sbatch: error: Batch script contains DOS line breaks (\\r\\n)",
                           "sbatch: error: instead of expected UNIX line breaks (\\n).")
    if not script.startswith("#!"):
        raise CommandError(1, "sbatch: error: This does not look like a batch script.  The first",
                           "sbatch: error: line must start with #! followed by the path to an "
                           "interpreter.",
                           "sbatch: error: For instance: #!/bin/sh")


def _export_vars(value: str | None) -> dict[str, str]:
    """``NAME=value`` entries of --export; the rest of the environment is passed anyway."""
    if not value:
        return {}
    found = {}
    for item in value.split(","):
        name, eq, val = item.partition("=")
        if eq and name and name.upper() not in ("ALL", "NONE", "NIL"):
            found[name] = val
    return found


def cmd_sbatch(args: list[str]) -> int:
    """``sbatch [--parsable] [options] [script [args]]``, the script on stdin without a path."""
    failure = _failure_knob("PW_FAKE_SUBMIT_FAIL")
    if failure:
        raise CommandError(1, failure)
    opts, rest = _slurm_getopt("sbatch", args, _SBATCH_SHORT, _SBATCH_LONG, permute=False)
    given = dict(opts)
    if "help" in given or "usage" in given:
        _out("Usage: sbatch [OPTIONS(0)...] [ : [OPTIONS(N)...]] script(0) [args(0)...]\n")
        return 0
    if "version" in given:
        _out(f"slurm {SLURM_VERSION}\n")
        return 0
    command = None
    script_args: list[str] = []
    if given.get("wrap") is not None:
        script = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{given['wrap']}\n"
        default_name = "wrap"
    elif rest:
        try:
            with open(rest[0], "rb") as fh:
                script = fh.read().decode("utf-8", "replace")
        except OSError:
            raise CommandError(1, f"sbatch: error: Unable to open file {rest[0]}") from None
        default_name, command = os.path.basename(rest[0]), os.path.abspath(rest[0])
        script_args = rest[1:]
    else:
        script = _read_stdin()
        default_name = "sbatch"
    _check_batch_script(script)
    options: dict[str, str | None] = {}
    for words in _directives(script, "#SBATCH"):
        options.update(_slurm_getopt("sbatch", words, _SBATCH_SHORT, _SBATCH_LONG, True)[0])
    options.update(given)  # the command line wins over #SBATCH lines, as with the real sbatch

    partitions = _env_list("PW_FAKE_PARTITIONS", "debug,short,long,gpu")
    wanted = [p for p in (options.get("partition") or "").split(",") if p]
    if not wanted:
        if not partitions:
            raise CommandError(1, "sbatch: error: No partition specified or system default "
                                  "partition",
                               "sbatch: error: Batch job submission failed: Invalid partition "
                               "name specified")
        wanted = [partitions[0]]
    for part in wanted:
        if part not in partitions:
            raise CommandError(1, f"sbatch: error: invalid partition specified: {part}",
                               "sbatch: error: Batch job submission failed: Invalid partition "
                               "name specified")
    if "full" in wanted:
        raise CommandError(1, "sbatch: error: QOSMaxSubmitJobPerUserLimit",
                           "sbatch: error: Batch job submission failed: Job violates "
                           "accounting/QOS policy (job submit limit, user's size and/or time "
                           "limits)")
    numbers = {}
    for key in ("cpus-per-task", "ntasks", "nodes"):
        try:
            numbers[key] = max(1, _int(options.get(key), 1))
        except ValueError:
            raise CommandError(1, f'sbatch: error: Invalid numeric value "{options[key]}" for '
                                  f"--{key}.") from None
    try:
        time_limit = _slurm_time(limit) if (limit := options.get("time")) else None
    except ValueError:
        raise CommandError(1, "sbatch: error: Invalid --time specification") from None

    cwd = _cwd()
    chdir = options.get("chdir")
    workdir = os.path.normpath(os.path.join(cwd, os.path.expanduser(chdir))) if chdir else cwd
    job = _base_job("slurm", "slurm", options.get("job-name") or default_name, wanted[0], workdir)
    job.update(
        time_limit=time_limit, command=command, script_args=script_args,
        options={k: v for k, v in options.items() if v is not None or k in ("hold", "exclusive")},
        extra_env=_export_vars(options.get("export")), held="hold" in options,
        reason_override=_knob("PW_FAKE_PENDING_REASON") or None,
        cpus_per_task=numbers["cpus-per-task"], ntasks=numbers["ntasks"],
        nodect=numbers["nodes"], ncpus=numbers["cpus-per-task"] * numbers["ntasks"],
        open_mode="append" if options.get("open-mode") == "append" else "truncate",
    )

    def resolve(new: Job) -> None:
        new["stdout"] = _slurm_filename(options.get("output") or "slurm-%j.out", new)
        new["stderr"] = _slurm_filename(error, new) if (error := options.get("error")) \
            else new["stdout"]

    job = _submit(JobStore.from_env(), job, script, resolve)
    _out(f"{job['id']}\n" if "parsable" in options else f"Submitted batch job {job['id']}\n")
    return 0


def _slurm_jobs(store: JobStore) -> list[Job]:
    """Jobs slurmctld still knows: finished ones are purged after MinJobAge."""
    now, age = time.time(), _min_job_age()
    return [job for job in _load_jobs(store, "slurm")
            if job["state"] in ACTIVE_STATES or now - (job.get("end_time") or now) <= age]


def _first_pending(jobs: Iterable[Job]) -> set[int]:
    """The oldest pending job of each partition: it waits for Resources, the rest for Priority."""
    first: dict[str, int] = {}
    for job in jobs:
        if job["state"] == "PENDING" and not job.get("held"):
            first[job["partition"]] = min(first.get(job["partition"], job["id"]), job["id"])
    return set(first.values())


def _slurm_reason(job: Job, first_pending: set[int]) -> str:
    state = job["state"]
    if state == "PENDING":
        if job.get("held"):
            return "JobHeldUser"
        if job.get("reason_override"):
            return job["reason_override"]
        return "Resources" if job["id"] in first_pending else "Priority"
    if state == "FAILED":
        code = job.get("exit_code")
        if code is not None and code < 0:
            try:
                name = signal.strsignal(-code) or str(-code)
            except ValueError:
                name = str(-code)
            return f"RaisedSignal:{-code}({name})"
        return "NonZeroExitCode"
    if state == "TIMEOUT":
        return "TimeLimit"
    return "None"


def _slurm_exit(job: Job) -> str:
    code = job.get("exit_code")
    if code is None:
        return "0:0"
    return f"{code}:0" if code >= 0 else f"0:{-code}"


def _elapsed(job: Job, now: float) -> float:
    if not job.get("start_time"):
        return 0
    return (job.get("end_time") or now) - job["start_time"]


def _squeue_field_of(job: Job, reason: str, now: float, letter: str) -> str:
    return _squeue_field(job, letter, reason, now)


def _squeue_field(job: Job, letter: str, reason: str, now: float) -> str:
    state, node = job["state"], job.get("node") or ""
    opts = job.get("options", {})
    values: dict[str, Callable[[], str]] = {
        "i": lambda: str(job["id"]), "A": lambda: str(job["id"]), "F": lambda: str(job["id"]),
        "K": lambda: "N/A", "T": lambda: state, "t": lambda: str(_SLURM_COMPACT.get(state, state)),
        "r": lambda: reason, "N": lambda: node, "j": lambda: job["name"],
        "u": lambda: job["user"], "U": lambda: str(job["uid"]), "g": lambda: job["group"],
        "G": lambda: str(job["gid"]), "P": lambda: job["partition"],
        "M": lambda: _squeue_secs(_elapsed(job, now)),
        "l": lambda: "UNLIMITED" if not job.get("time_limit") else _squeue_secs(job["time_limit"]),
        "L": lambda: "UNLIMITED" if not job.get("time_limit")
        else _squeue_secs(job["time_limit"] - _elapsed(job, now)),
        "D": lambda: str(job.get("nodect", 1)), "C": lambda: str(job.get("ncpus", 1)),
        "c": lambda: str(job.get("cpus_per_task", 1)), "a": lambda: opts.get("account") or "(null)",
        "q": lambda: opts.get("qos") or "normal", "Z": lambda: job["workdir"],
        "o": lambda: job.get("command") or "(null)", "p": lambda: "0.99998474121093",
        "m": lambda: opts.get("mem") or "0", "b": lambda: opts.get("gres") or "N/A",
        "B": lambda: node or "n/a", "V": lambda: _iso(job["submit_time"]),
        "S": lambda: _iso(job.get("start_time")) if job.get("start_time") else "N/A",
        "e": lambda: _iso(job.get("end_time")) if job.get("end_time") else "N/A",
        "R": lambda: f"({reason})" if state in ("PENDING", "FAILED", "TIMEOUT") else node,
    }
    getter = values.get(letter)
    return getter() if getter else ""


def _parse_squeue_format(fmt: str) -> list[tuple[str, str, int | None, bool]]:
    """Tokens of an squeue -o format: (literal prefix, field letter, width, right-justified)."""
    tokens = []
    pos = 0
    literal = ""
    while pos < len(fmt):
        char = fmt[pos]
        if char != "%":
            literal += char
            pos += 1
            continue
        match = re.match(r"%(\.)?(\d+)?(.)", fmt[pos:])
        if not match:
            literal += fmt[pos:]
            break
        if match.group(3) == "%":
            literal += "%"
        else:
            width = int(match.group(2)) if match.group(2) else None
            tokens.append((literal, match.group(3), width, bool(match.group(1))))
            literal = ""
        pos += match.end()
    if literal:
        tokens.append((literal, "", None, False))
    return tokens


def _render_squeue(tokens: list[tuple[str, str, int | None, bool]],
                   value: Callable[[str], str]) -> str:
    parts = []
    for literal, letter, width, right in tokens:
        parts.append(literal)
        if not letter:
            continue
        text = value(letter)
        if width:
            text = text[:width]  # squeue cuts values to the column width
            text = text.rjust(width) if right else text.ljust(width)
        parts.append(text)
    return "".join(parts)


def _parse_state_list(text: str) -> set[str] | None:
    if text.strip().lower() == "all":
        return None
    by_compact = {v: k for k, v in _SLURM_COMPACT.items()}
    states = set()
    for word in text.upper().split(","):
        word = word.strip()
        if word in _SLURM_COMPACT:
            states.add(word)
        elif word in by_compact:
            states.add(by_compact[word])
        elif word:
            raise CommandError(1, f"squeue: error: Invalid job state specified: {word}")
    return states


def _parse_slurm_ids(prog: str, text: str) -> list[int]:
    ids = []
    for word in re.split(r"[,\s]+", text.strip()):
        if not word:
            continue
        if not word.isdigit():
            raise CommandError(1, f"{prog}: error: Invalid job id: {word}")
        ids.append(int(word))
    return ids


def cmd_squeue(args: list[str]) -> int:
    """``squeue [-h] [-t STATES|all] [-j IDS] [-n NAMES] [-u USERS] [-o FORMAT]``."""
    opts, rest = _slurm_getopt("squeue", args, _SQUEUE_SHORT, _SQUEUE_LONG, permute=True)
    job_ids: list[int] | None = None
    states: set[str] | None = _SQUEUE_DEFAULT_STATES
    names = users = partitions = None
    fmt = os.environ.get("SQUEUE_FORMAT") or None
    header, long_list, ids_from_operand = True, False, False
    for key, value in opts:
        if key in ("help", "usage", "helpstate", "helpformat"):
            _out("Usage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]\n"
                 "              [-n name] [-o format] [-p partitions] [--qos qos]\n"
                 "              [--reservation reservation] [--sort fields] [--start]\n"
                 "              [--step step_id] [-t states] [-u user_name] [--usage]\n"
                 "              [-L licenses] [-w nodes] [--federation] [--local]\n"
                 "              [--sibling] [--json=data_parser] [--yaml=data_parser]\n"
                 "              [-ahjlrsv]\n")
            return 0
        if key == "version":
            _out(f"slurm {SLURM_VERSION}\n")
            return 0
        if key == "jobs":
            if value:
                job_ids = _parse_slurm_ids("squeue", value)
            else:
                ids_from_operand = True
        elif key == "states":
            states = _parse_state_list(value or "")
        elif key == "noheader":
            header = False
        elif key == "format":
            fmt = value
        elif key == "Format":
            raise CommandError(1, "squeue: error: -O/--Format is not supported by the fake "
                                  "scheduler; use -o")
        elif key == "name":
            names = {n.lower() for n in (value or "").split(",") if n}
        elif key in ("user", "users"):
            users = {u for u in (value or "").split(",") if u}
        elif key == "me":
            users = {_account()["user"]}
        elif key == "partitions":
            partitions = {p for p in (value or "").split(",") if p}
        elif key == "long":
            long_list = True
    if ids_from_operand and rest:
        job_ids = _parse_slurm_ids("squeue", rest.pop(0))
    if rest:
        raise CommandError(1, f"squeue: error: Unrecognized option: {rest[0]}",
                           "Usage: squeue [-A account] [--clusters names] [-i seconds] "
                           "[--job jobid]")
    if _failure_knob("PW_FAKE_QUERY_FAIL"):
        raise CommandError(1, _SLURM_QUERY_FAIL)
    now = time.time()
    jobs = _slurm_jobs(JobStore.from_env())
    known = {job["id"] for job in jobs}
    if job_ids is not None and len(job_ids) == 1 and job_ids[0] not in known:
        # With one id squeue asks slurmctld for that job alone, which refuses an unknown id.
        raise CommandError(1, _SLURM_INVALID_JOB)
    first = _first_pending(jobs)
    if fmt is None:
        fmt = _SQUEUE_LONG_FORMAT if long_list else _SQUEUE_DEFAULT_FORMAT
    tokens = _parse_squeue_format(fmt)
    lines = []
    if header:
        if long_list:
            lines.append(time.strftime("%a %b %d %H:%M:%S %Y"))
        lines.append(_render_squeue(tokens, lambda letter: _SQUEUE_HEADERS.get(letter, "")))
    for job in jobs:
        if job_ids is not None and job["id"] not in job_ids:
            continue
        if states is not None and job["state"] not in states:
            continue
        if names is not None and job["name"].lower() not in names:
            continue
        if users is not None and job["user"] not in users and str(job["uid"]) not in users:
            continue
        if partitions is not None and job["partition"] not in partitions:
            continue
        reason = _slurm_reason(job, first)
        lines.append(_render_squeue(tokens, functools.partial(_squeue_field_of, job, reason, now)))
    _out("".join(line + "\n" for line in lines))
    return 0


def _scontrol_job(job: Job, first: set[int], now: float, oneliner: bool) -> str:
    opts = job.get("options", {})
    started = bool(job.get("start_time")) and bool(job.get("node"))
    state = job["state"]
    limit = job.get("time_limit")
    if state == "PENDING":
        start_text = end_text = "Unknown"
    else:
        start_text = _iso(job.get("start_time") or job.get("end_time"))
        if job.get("end_time"):
            end_text = _iso(job["end_time"])
        else:
            end_text = _iso(job["start_time"] + limit) if limit else "Unknown"
    cpus, nodes = job.get("ncpus", 1), job.get("nodect", 1)
    mem = opts.get("mem")
    mem_text = f"{_mem_mb(mem)}M" if mem else "0"
    tres = f"cpu={cpus}" + (f",mem={_mem_mb(mem)}M" if mem else "")
    tres += f",node={nodes},billing={cpus}"
    lines = [
        f"JobId={job['id']} JobName={job['name']}",
        f"UserId={job['user']}({job['uid']}) GroupId={job['group']}({job['gid']}) MCS_label=N/A",
        f"Priority={4294901759 - (job['id'] - FIRST_JOB_ID)} Nice=0 "
        f"Account={opts.get('account') or '(null)'} QOS={opts.get('qos') or 'normal'}",
        f"JobState={state} Reason={_slurm_reason(job, first)} Dependency=(null)",
        f"Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode={_slurm_exit(job)}",
        f"RunTime={_hms(_elapsed(job, now))} TimeLimit={_hms(limit) if limit else 'UNLIMITED'} "
        "TimeMin=N/A",
        f"SubmitTime={_iso(job['submit_time'])} EligibleTime={_iso(job['submit_time'])}",
        f"AccrueTime={_iso(job['submit_time'])}",
        f"StartTime={start_text} EndTime={end_text} Deadline=N/A",
        f"SuspendTime=None SecsPreSuspend=0 LastSchedEval={_iso(job['submit_time'])} "
        "Scheduler=Main",
        f"Partition={job['partition']} AllocNode:Sid={job['submit_host']}:{os.getsid(0)}",
        "ReqNodeList=(null) ExcNodeList=(null)",
        f"NodeList={job['node'] if started else '(null)'}",
    ]
    if started:
        lines.append(f"BatchHost={job['node']}")
    lines += [
        f"NumNodes={nodes} NumCPUs={cpus} NumTasks={job.get('ntasks', 1)} "
        f"CPUs/Task={job.get('cpus_per_task', 1)} ReqB:S:C:T=0:0:*:*",
        f"TRES={tres}",
        "Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*",
        f"MinCPUsNode={job.get('cpus_per_task', 1)} MinMemoryNode={mem_text} MinTmpDiskNode=0",
        f"Features={opts.get('constraint') or '(null)'} DelayBoot=00:00:00",
        "OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)",
        f"Command={job.get('command') or '(null)'}",
        f"WorkDir={job['workdir']}",
        f"StdErr={job['stderr']}",
        "StdIn=/dev/null",
        f"StdOut={job['stdout']}",
        "Power=",
    ]
    if opts.get("gres"):
        lines.append(f"TresPerNode=gres:{opts['gres'].removeprefix('gres:')}")
    if oneliner:
        return " ".join(lines) + "\n"
    return "\n   ".join(lines) + "\n\n"


def _scontrol_partitions(wanted: str | None) -> str:
    parts = _env_list("PW_FAKE_PARTITIONS", "debug,short,long,gpu")
    if wanted and wanted not in parts:
        raise CommandError(1, f"Partition {wanted} not found")
    cpus = os.cpu_count() or 1
    blocks = []
    for index, name in enumerate(parts):
        if wanted and name != wanted:
            continue
        blocks.append("\n   ".join([
            f"PartitionName={name}",
            "AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL",
            f"AllocNodes=ALL Default={'YES' if index == 0 else 'NO'} QoS=N/A",
            "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO",
            "MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED",
            f"Nodes={_node_name()}",
            "PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO",
            "OverTimeLimit=NONE PreemptMode=OFF",
            f"State=UP TotalCPUs={cpus} TotalNodes=1 SelectTypeParameters=NONE",
            "JobDefaults=(null)",
            "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED",
        ]) + "\n\n")
    return "".join(blocks)


def cmd_scontrol(args: list[str]) -> int:
    """``scontrol [-o] show job [ID]``, ``scontrol show partition [NAME]`` and ``scontrol show config``."""
    opts, rest = _slurm_getopt("scontrol", args, _SCONTROL_SHORT, _SCONTROL_LONG, permute=True)
    flags = dict(opts)
    if "version" in flags or (rest and rest[0].lower() == "version"):
        _out(f"slurm {SLURM_VERSION}\n")
        return 0
    if not rest:
        raise CommandError(1, "scontrol: error: no command given (the fake scontrol is not "
                              "interactive)")
    if rest[0].lower() != "show":
        raise CommandError(1, f"invalid keyword: {rest[0]}")
    entity = rest[1].lower() if len(rest) > 1 else ""
    target = rest[2] if len(rest) > 2 else None
    if entity in ("partition", "partitions", "part"):
        _out(_scontrol_partitions(target))
        return 0
    if entity == "config":
        # What the spawner reads of it: a default Slurm hides nobody's jobs.
        _out(f"Configuration data as of {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
             f"ClusterName             = fake\nPrivateData             = none\n"
             f"SLURM_VERSION           = {SLURM_VERSION}\n")
        return 0
    if entity not in ("job", "jobs", "jobid"):
        raise CommandError(1, f"invalid entity:{entity or '(null)'} for keyword:show")
    if _failure_knob("PW_FAKE_QUERY_FAIL"):
        raise CommandError(1, _SLURM_QUERY_FAIL)
    now = time.time()
    jobs = _slurm_jobs(JobStore.from_env())
    first = _first_pending(jobs)
    if target is not None:
        match = re.fullmatch(r"(\d+)(?:\.\w+)?", target)
        jobs = [job for job in jobs if match and job["id"] == int(match.group(1))]
        if not jobs:
            raise CommandError(1, _SLURM_INVALID_JOB)
    elif not jobs:
        _out("No jobs in the system\n")
        return 0
    _out("".join(_scontrol_job(job, first, now, "oneliner" in flags) for job in jobs))
    return 0


def cmd_scancel(args: list[str]) -> int:
    """``scancel [-s SIGNAL] [-n NAME] [-u USER] [ID...]``: returns at once."""
    opts, rest = _slurm_getopt("scancel", args, _SCANCEL_SHORT, _SCANCEL_LONG, permute=True)
    flags = dict(opts)
    if "version" in flags:
        _out(f"slurm {SLURM_VERSION}\n")
        return 0
    if "help" in flags or "usage" in flags:
        _out("Usage: scancel [-A account] [--batch] [--interactive] [-n job_name]\n"
             "               [-p partition] [-Q] [-q qos] [-R reservation] [-s signal | integer]\n"
             "               [-t PENDING | RUNNING | SUSPENDED] [--usage] [-u user_name]\n"
             "               [--hurry] [-V] [-v] [-w hosts...] [--wckey=wckey]\n"
             "               [job_id[_array_id][.step_id]]\n")
        return 0
    sig = None
    if flags.get("signal"):
        text = (flags["signal"] or "").upper().removeprefix("SIG")
        try:
            sig = int(text) if text.isdigit() else int(getattr(signal, f"SIG{text}"))
        except AttributeError:
            raise CommandError(1, f"scancel: error: Invalid job signal: {flags['signal']}") \
                from None
    ids = []
    for word in rest:
        for piece in word.split(","):
            if not piece.isdigit():
                raise CommandError(1, f"scancel: error: Invalid job id {piece}")
            ids.append(int(piece))
    name = flags.get("name") or flags.get("jobname")
    user = flags.get("user") or (_account()["user"] if "me" in flags else None)
    partition, wanted_state = flags.get("partition"), (flags.get("state") or "").upper()
    if not ids and not (name or user or partition or wanted_state):
        raise CommandError(1, "scancel: error: No job identification provided")
    store = JobStore.from_env()
    jobs = {job["id"]: job for job in _slurm_jobs(store)}

    def selected(job: Job) -> bool:
        return ((name is None or job["name"] == name)
                and (user is None or user in (job["user"], str(job["uid"])))
                and (partition is None or job["partition"] == partition)
                and (not wanted_state or wanted_state in (job["state"],
                                                          _SLURM_COMPACT[job["state"]])))

    rc = 0
    targets = []
    if ids:
        for job_id in ids:
            job = jobs.get(job_id)
            if job is None:
                _err(f"scancel: error: Kill job error on job id {job_id}: Invalid job id "
                     "specified")
                rc = 1
            elif selected(job):
                targets.append(job)
    else:
        targets = [job for job in jobs.values() if selected(job)]
    for job in targets:
        if job["state"] not in ACTIVE_STATES:
            continue  # already finished: the real scancel says nothing either
        if sig is None or (sig == signal.SIGKILL and job["state"] == "PENDING"):
            _cancel(store, job["id"])
        elif job["state"] == "RUNNING":
            killpg(job.get("pid"), sig)  # --signal only signals; the job ends if it dies
    return rc


def cmd_sacct(args: list[str]) -> int:
    """Without slurmdbd (the single-node test cluster) sacct only says it cannot help."""
    raise CommandError(1, "Slurm accounting storage is disabled")


# =========================================================================== PBS


_QSUB_OPTS = {"pro": "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:P:q:r:R:S:u:v:VW:Xz",
              "torque": "a:A:b:c:C:d:D:e:fFhIj:k:K:l:L:m:M:N:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz"}
_QSTAT_OPTS = {"pro": "ainpqrstwxu:fGHJMQEBW:T1F:D:",
               "torque": "acCeE:fgiln1pqrstu:xGMQRBW:"}
_QSUB_USAGE = (
    "usage: qsub [-a date_time] [-A account_string] [-c interval]\n"
    "\t[-C directive_prefix] [-e path] [-f ] [-h ] [-I [-X]] [-j o|e|n] [-J X-Y[:Z]]\n"
    "\t[-k keep] [-l resource_list] [-m mail_options] [-M user_list]\n"
    "\t[-N jobname] [-o path] [-p priority] [-P project] [-q queue] [-r y|n]\n"
    "\t[-R o|e|oe] [-S path] [-u user_list] [-W otherattributes=value...]\n"
    "\t[-v variable_list] [-V ] [-z] [script | -- command [arg1 ...]]\n"
    "       qsub --version\n"
)
_QSTAT_USAGE = {
    "pro": (
        "usage: \n"
        "qstat [-f [-F json|dsv] [-D delim]] [-J] [-p] [-t] [-x] [-E] [-w]\n"
        "\t[ job_identifier... | destination... ]\n"
        "qstat [-a|-i|-r|-H|-T] [-J] [-t] [-u user] [-n] [-s] [-G|-M] [-1] [-w]\n"
        "\t[ job_identifier... | destination... ]\n"
        "qstat -Q [-f [-F json|dsv] [-D delim]] [-w] [ destination... ]\n"
        "qstat -q [-G|-M] [ destination... ]\n"
        "qstat -B [-f [-F json|dsv] [-D delim]] [ server_name... ]\n"
        "qstat --version\n"
    ),
    # Torque's usage text really is indented like this (a C string continued with backslashes).
    "torque": (
        "usage: \n"
        "                          qstat [-f [-1]] [-W site_specific] [-x] "
        "[ job_identifier... | destination... ]\n"
        "                          qstat [-a|-i|-r|-e] [-u user] [-n [-1]] [-s] [-t] [-G|-M] "
        "[-R] [job_id... | destination...]\n"
        "                          qstat -Q [-f [-1]] [-W site_specific] [ destination... ]\n"
        "                          qstat -q [-G|-M] [ destination... ]\n"
        "                          qstat -B [-f [-1]] [-W site_specific] [ server_name... ]\n"
        "                          qstat -t\n"
    ),
}
_QDEL_USAGE = ("usage:\n\tqdel [-W force|suppress_email=X] [-x] job_identifier...\n"
               "\tqdel --version\n")
# PBS exit codes: the PBSE_ number modulo 256.
_RC_UNKJOBID = 153  # PBSE_UNKJOBID 15001
_RC_UNKQUE = 170  # PBSE_UNKQUE 15018
_RC_BADATVAL = 166  # PBSE_BADATVAL 15014
_RC_BADSTATE = 156  # PBSE_BADSTATE 15004
_RC_MAXQUED = 190  # PBSE_MAXQUED 15038
_RC_HISTJOBID = 35  # PBSE_HISTJOBID 15139


class _Epoch(int):
    """A PBS time attribute: ctime text in ``qstat -f`` and JSON, seconds in Torque's XML."""


def _pbs_id(text: str) -> int | None:
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _pbs_full(job_id: int) -> str:
    return f"{job_id}.{PBS_SERVER}"


def _size_kb(value: str) -> int | None:
    match = re.fullmatch(r"\s*(\d+)\s*([kmgtp]?)([bw]?)\s*", value.lower())
    if not match:
        return None
    number = int(match.group(1)) * (8 if match.group(3) == "w" else 1)
    power = "bkmgtp".index(match.group(2) or "b")
    return max(1, number * 1024 ** power // 1024) if number else 0


def _split_resources(text: str) -> list[tuple[str, str]]:
    found = []
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip():
            found.append((key.strip(), value.strip()))
    return found


def _chunks(select: str) -> list[tuple[int, dict[str, str]]]:
    """``2:ncpus=4:mem=8gb+1:ncpus=1`` -> [(2, {ncpus: 4, mem: 8gb}), (1, {ncpus: 1})]."""
    chunks = []
    for part in select.split("+"):
        words = [w for w in part.split(":") if w]
        count = 1
        if words and words[0].isdigit():
            count = int(words.pop(0))
        chunks.append((count, dict(w.partition("=")[::2] for w in words)))
    return chunks


def _pbs_submit_checks(flavor: str, queue: str) -> None:
    queues = _env_list("PW_FAKE_QUEUES", "workq,short,long,gpu")
    if queue not in queues:
        if flavor == "torque":
            raise CommandError(_RC_UNKQUE, "qsub: submit error (Unknown queue MSG=requested "
                                           "queue not found)")
        raise CommandError(_RC_UNKQUE, "qsub: Unknown queue")
    if queue == "full":
        if flavor == "torque":
            raise CommandError(_RC_MAXQUED, "qsub: submit error (Maximum number of jobs already "
                                            "in queue MSG=total number of jobs in queue exceeds "
                                            "the queue limit: queue full)")
        raise CommandError(_RC_MAXQUED, "qsub: Maximum number of jobs already in queue full")


def cmd_qsub(args: list[str]) -> int:
    """``qsub [options] [script | -- command args]``, the script on stdin without a path."""
    flavor = _pbs_flavor()
    if args == ["--version"]:
        if flavor == "torque":
            _err(f"Version: {TORQUE_VERSION}", "Commit: 0000000000000000000000000000000000000000")
        else:
            _out(f"pbs_version = {PBS_VERSION}\n")
        return 0
    failure = _failure_knob("PW_FAKE_SUBMIT_FAIL")
    if failure:
        raise CommandError(1, failure)
    optstring = _QSUB_OPTS[flavor]
    try:
        given, rest, dashdash = _getopt(args, optstring, permute=False)
    except _OptError as exc:
        raise CommandError(2, f"qsub: {exc}", _QSUB_USAGE.rstrip("\n")) from None
    command = None
    if dashdash and rest:
        script = "#!/bin/sh\n" + shlex.join(rest) + "\n"
        default_name = os.path.basename(rest[0])
    elif rest:
        try:
            with open(rest[0], "rb") as fh:
                script = fh.read().decode("utf-8", "replace")
        except OSError:
            raise CommandError(1, "qsub: script file:: No such file or directory") from None
        default_name, command = os.path.basename(rest[0]), os.path.abspath(rest[0])
    else:
        script = _read_stdin()
        default_name = "STDIN"
    prefix = dict(given).get("C") or os.environ.get("PBS_DPREFIX") or "#PBS"
    options: dict[str, str] = {}
    resources: dict[str, str] = {}
    variables: list[str] = []
    batches = []
    for words in _directives(script, prefix):
        try:
            batches.append(_getopt(words, optstring, permute=False)[0])
        except _OptError as exc:
            raise CommandError(2, f"qsub: directive error: {exc}") from None
    batches.append(given)  # the command line wins over #PBS lines, as with the real qsub
    for batch in batches:
        for key, value in batch:
            if key == "l":
                resources.update(_split_resources(value or ""))
            elif key == "v":
                variables += [v for v in (value or "").split(",") if v]
            else:
                options[key] = value if value is not None else ""
    if "I" in options:
        raise CommandError(2, "qsub: interactive jobs (-I) are not supported by the fake "
                              "scheduler")
    name = options.get("N", default_name)
    if not name or re.search(r"\s", name) or (flavor == "pro" and len(name) > 236):
        raise CommandError(2, "qsub: illegal -N value", _QSUB_USAGE.rstrip("\n"))
    join = options.get("j", "n")
    if join not in ("oe", "eo", "n"):
        raise CommandError(2, "qsub: illegal -j value", _QSUB_USAGE.rstrip("\n"))
    queues = _env_list("PW_FAKE_QUEUES", "workq,short,long,gpu")
    queue = (options.get("q") or (queues[0] if queues else "workq")).split("@", 1)[0]
    _pbs_submit_checks(flavor, queue)
    try:
        time_limit = _pbs_time(resources["walltime"]) if resources.get("walltime") else None
    except ValueError:
        raise CommandError(_RC_BADATVAL, "qsub: Illegal attribute or resource value "
                                         "Resource_List.walltime") from None

    ncpus, ngpus, nodect = 1, 0, 1
    mem = resources.get("mem")
    try:
        if resources.get("select"):
            chunks = _chunks(resources["select"])
            nodect = sum(count for count, _ in chunks)
            ncpus = sum(count * int(spec.get("ncpus", 1)) for count, spec in chunks)
            ngpus = sum(count * int(spec.get("ngpus", 0)) for count, spec in chunks)
            if not mem:
                sizes = [(count, _size_kb(spec["mem"])) for count, spec in chunks if "mem" in spec]
                if len(chunks) == 1 and chunks[0][0] == 1 and "mem" in chunks[0][1]:
                    mem = chunks[0][1]["mem"]
                elif sizes and all(kb is not None for _, kb in sizes):
                    mem = f"{sum(count * (kb or 0) for count, kb in sizes)}kb"
        elif resources.get("nodes"):
            spec = resources["nodes"]
            words = spec.split(":")
            nodect = int(words[0]) if words[0].isdigit() else 1
            props = dict(w.partition("=")[::2] for w in words[1:])
            ncpus = nodect * int(props.get("ppn", 1))
            ngpus = nodect * int(props.get("gpus", 0))
        else:
            ncpus = int(resources.get("ncpus", 1))
            ngpus = int(resources.get("ngpus", 0))
    except ValueError:
        raise CommandError(_RC_BADATVAL, "qsub: Illegal attribute or resource value "
                                         "Resource_List") from None

    who = _account()
    cwd = _cwd()
    # PBS starts jobs in the home directory (Torque: -d/-w may say otherwise); scripts are
    # expected to cd "$PBS_O_WORKDIR" themselves.
    workdir = who["home"]
    if flavor == "torque" and options.get("d"):
        workdir = os.path.normpath(os.path.join(cwd, options["d"]))
    job = _base_job("pbs", flavor, name, queue, workdir)
    variable_list = {
        "PBS_O_HOME": who["home"], "PBS_O_LANG": os.environ.get("LANG", "C"),
        "PBS_O_LOGNAME": who["user"], "PBS_O_PATH": os.environ.get("PATH", ""),
        "PBS_O_MAIL": os.environ.get("MAIL", f"/var/mail/{who['user']}"),
        "PBS_O_SHELL": who["shell"], "PBS_O_WORKDIR": cwd, "PBS_O_SYSTEM": os.uname().sysname,
        "PBS_O_QUEUE": queue, "PBS_O_HOST": job["submit_host"],
    }
    if "V" in options:
        variable_list.update({k: v for k, v in os.environ.items() if not k.startswith("PBS_O_")})
    extra_env = {}
    for item in variables:
        key, eq, value = item.partition("=")
        value = value if eq else os.environ.get(key, "")
        variable_list[key] = extra_env[key] = value
    keep = options.get("k", "n")
    job.update(
        queue=queue, time_limit=time_limit, command=command, options=options,
        resources=resources, ncpus=ncpus, ngpus=ngpus, nodect=nodect, mem=mem, join=join,
        keep=keep, variable_list=variable_list, extra_env=extra_env,
        held="h" in options, submit_args=shlex.join(args),
        spool=_knob("PW_FAKE_PBS_SPOOL", "1") != "0" and "d" not in keep,
    )

    def path_option(key: str, ext: str, new: Job) -> str:
        default = f"{new['name']}.{ext}{new['id']}"
        value = options.get(key)
        if not value:
            return os.path.join(cwd, default)
        if ":" in value and not value.startswith("/"):
            value = value.split(":", 1)[1]  # host:path
        value = os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
        return os.path.join(value, default) if os.path.isdir(value) else value

    def resolve(new: Job) -> None:
        new["output_path"] = path_option("o", "o", new)
        new["error_path"] = path_option("e", "e", new)
        if new["spool"]:
            base = os.path.join(store.root, "spool", _pbs_full(new["id"]))
            out, err = base + ".OU", base + ".ER"
        else:
            out, err = new["output_path"], new["error_path"]
        if join == "oe":
            err = out
        elif join == "eo":
            out = err
        new["stdout"], new["stderr"] = out, err

    store = JobStore.from_env()
    job = _submit(store, job, script, resolve)
    if "z" not in options:
        _out(_pbs_full(job["id"]) + "\n")
    return 0


def _pbs_exiting(job: Job) -> bool:
    """Cancelled while running, and its processes not yet gone: PBS shows state E."""
    return (job["state"] in FINISHED_STATES and bool(job.get("pid"))
            and job.get("exit_code") is None and _supervisor_alive(job))


def _pbs_visibility(job: Job | None, flavor: str, now: float) -> str:
    """``active``, ``history`` (finished, still kept) or ``gone``."""
    if job is None or job.get("purged"):
        return "gone"
    if job["state"] in ACTIVE_STATES or _pbs_exiting(job):
        return "active"
    keep = _min_job_age() if flavor == "torque" else _env_float("PW_FAKE_JOB_HISTORY", 1209600.0)
    return "gone" if now - (job.get("end_time") or now) > keep else "history"


def _pbs_state(job: Job, flavor: str) -> str:
    if job["state"] == "PENDING":
        return "H" if job.get("held") else "Q"
    if job["state"] == "RUNNING":
        return "R"
    if _pbs_exiting(job):
        return "E"
    return "C" if flavor == "torque" else "F"


def _pbs_exit_status(job: Job) -> int | None:
    code = job.get("exit_code")
    if job["state"] == "TIMEOUT" and job["flavor"] == "pro":
        return -29  # JOB_EXEC_KILL_WALLTIME
    if code is None:
        return None
    return code if code >= 0 else 256 - code  # killed by a signal: 256 + signal


def _exec_vnode(job: Job) -> str:
    parts = [f"{job['node']}:ncpus={job['ncpus']}"]
    kb = _size_kb(job["mem"]) if job.get("mem") else None
    if kb:
        parts.append(f"mem={kb}kb")
    if job.get("ngpus"):
        parts.append(f"ngpus={job['ngpus']}")
    return "(" + ":".join(parts) + ")"


def _pro_resource_list(job: Job) -> dict[str, Any]:
    found: dict[str, Any] = {k: v for k, v in job["resources"].items()
                             if k not in ("select", "nodes", "walltime", "ncpus", "mem", "ngpus")}
    if job.get("mem"):
        found["mem"] = job["mem"]
    found["ncpus"] = job["ncpus"]
    if job.get("ngpus"):
        found["ngpus"] = job["ngpus"]
    found["nodect"] = job["nodect"]
    found.setdefault("place", "free" if job["resources"].get("select") else "pack")
    select = job["resources"].get("select")
    if not select:
        select = f"1:ncpus={job['ncpus']}" + (f":mem={job['mem']}" if job.get("mem") else "") \
            + (f":ngpus={job['ngpus']}" if job.get("ngpus") else "")
    found["select"] = select
    if job.get("time_limit"):
        found["walltime"] = _pbs_hms(job["time_limit"])
    return dict(sorted(found.items()))


def _torque_resource_list(job: Job) -> dict[str, Any]:
    found: dict[str, Any] = dict(job["resources"])
    found.setdefault("nodes", str(job["nodect"]))
    found["neednodes"] = found["nodes"]
    found["nodect"] = job["nodect"]
    if job.get("time_limit"):
        found["walltime"] = _pbs_hms(job["time_limit"])
    return dict(sorted(found.items()))


def _pbs_attrs(job: Job, flavor: str, now: float) -> list[tuple[str, str | None, Any]]:
    """A job's attributes in the order ``qstat -f`` prints them: (name, resource, value)."""
    attrs: list[tuple[str, str | None, Any]] = []

    def add(name: str, value: Any, resource: str | None = None) -> None:
        attrs.append((name, resource, value))

    started = bool(job.get("start_time")) and bool(job.get("node"))
    finished = job["state"] in FINISHED_STATES and not _pbs_exiting(job)
    end = job.get("end_time") or now
    wall = (end if finished else now) - job["start_time"] if started else 0
    state = _pbs_state(job, flavor)
    owner = f"{job['user']}@{job['submit_host']}"
    exit_status = _pbs_exit_status(job)
    ncpus = job["ncpus"]
    add("Job_Name", job["name"])
    add("Job_Owner", owner)
    if started:
        if flavor == "pro":
            add("resources_used", 0, "cpupercent")
        add("resources_used", "00:00:00", "cput")
        if flavor == "torque":
            add("resources_used", 0, "energy_used")
        add("resources_used", "0kb", "mem")
        if flavor == "pro":
            add("resources_used", ncpus, "ncpus")
        add("resources_used", "0kb", "vmem")
        add("resources_used", _pbs_hms(wall), "walltime")
    add("job_state", state)
    add("queue", job["queue"])
    add("server", PBS_SERVER)
    if job["options"].get("A"):
        add("Account_Name", job["options"]["A"])
    add("Checkpoint", "u")
    add("ctime", _Epoch(job["submit_time"]))
    add("Error_Path", f"{job['submit_host']}:{job['error_path']}")
    if started:
        if flavor == "pro":
            add("exec_host", f"{job['node']}/0*{ncpus}" if ncpus > 1 else f"{job['node']}/0")
            add("exec_vnode", _exec_vnode(job))
        else:
            add("exec_host", f"{job['node']}/0-{ncpus - 1}" if ncpus > 1 else f"{job['node']}/0")
    add("Hold_Types", "u" if job.get("held") else "n")
    add("Join_Path", job["join"])
    add("Keep_Files", job["keep"])
    add("Mail_Points", "a")
    add("mtime", _Epoch(job.get("end_time") or job.get("start_time") or job["submit_time"]))
    add("Output_Path", f"{job['submit_host']}:{job['output_path']}")
    add("Priority", 0)
    add("qtime", _Epoch(job["submit_time"]))
    add("Rerunable", "True")
    resources = _pro_resource_list(job) if flavor == "pro" else _torque_resource_list(job)
    for key, value in resources.items():
        add("Resource_List", value, key)
    if flavor == "pro":
        if started:
            add("stime", _Epoch(job["start_time"]))
            if finished:
                add("obittime", _Epoch(end))
            add("session_id", job.get("pid") or 0)
            add("jobdir", job["workdir"])
        substate = 20 if job.get("held") else 10
        if started:
            substate = 51 if state == "E" else 42
        if finished:
            substate = 91 if job["state"] == "CANCELLED" else 92
        add("substate", substate)
        add("Variable_List", job["variable_list"])
        if job["state"] == "PENDING" or not started:
            add("comment", "Not Running: Insufficient amount of resource")
        else:
            when = time.strftime("%a %b %d at %H:%M", time.localtime(job["start_time"]))
            tail = " and finished" if finished else ""
            add("comment", f"Job run at {when} on {_exec_vnode(job)}{tail}")
        add("etime", _Epoch(job["submit_time"]))
        if started:
            add("run_count", 1)
        if finished and exit_status is not None:
            add("Exit_status", exit_status)
        if job["submit_args"]:
            add("Submit_arguments", job["submit_args"])
        if finished:
            add("history_timestamp", int(end))
        add("project", job["options"].get("P") or "_pbs_project_default")
        add("Submit_Host", job["submit_host"])
    else:
        if started:
            add("session_id", job.get("pid") or 0)
        add("Variable_List", job["variable_list"])
        add("euser", job["user"])
        add("egroup", job["group"])
        add("queue_type", "E")
        add("etime", _Epoch(job["submit_time"]))
        if finished and exit_status is not None:
            add("exit_status", exit_status)
        add("submit_args", job["submit_args"])
        if started:
            add("start_time", _Epoch(job["start_time"]))
        add("start_count", 1 if started else 0)
        add("fault_tolerant", "False")
        if finished:
            add("comp_time", _Epoch(end))
        add("job_radix", 0)
        if finished:
            add("total_runtime", f"{wall:.6f}")
        add("submit_host", job["submit_host"])
        add("init_work_dir", job["workdir"])
        add("request_version", 1)
    return attrs


def _prt_attr(name: str, resource: str | None, value: str, linesize: int) -> str:
    """qstat's prt_attr(): ``    name.resource = value``, wrapped at commas with a tab."""
    out = ["    ", name]
    start = len(name) + 7
    if resource:
        start += len(resource) + 1
        out.append("." + resource)
    out.append(" = ")
    tokens = [t for t in value.split(",") if t]  # strtok() skips empty fields
    first = True
    for index, token in enumerate(tokens):
        if len(token) + start < linesize:
            out.append(token)
            start += len(token)
        else:
            if not first:
                out.append("\n\t")
                start = 9
            for char in token:
                out.append(char)
                start += 1
                if start > linesize:
                    start = 8
                    out.append("\n\t")
        if index + 1 < len(tokens):
            first = False
            out.append(",")
    return "".join(out)


def _attr_text(value: Any) -> str:
    if isinstance(value, _Epoch):
        return time.ctime(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _qstat_full_text(jobs: list[Job], flavor: str, now: float) -> str:
    linesize = 77 if flavor == "torque" else 78
    blocks = []
    for job in jobs:
        lines = [f"Job Id: {_pbs_full(job['id'])}\n"]
        for name, resource, value in _pbs_attrs(job, flavor, now):
            if isinstance(value, _Epoch):
                # ctime()'s own newline ends the line, exactly as in the real qstat
                lines.append(_prt_attr(name, resource, time.ctime(value) + "\n", linesize))
            else:
                lines.append(_prt_attr(name, resource, _attr_text(value), linesize) + "\n")
        blocks.append("".join(lines) + "\n")
    return "".join(blocks)


def _json_value(value: Any) -> Any:
    """PBS's JSON output turns every value that looks numeric into a number."""
    if isinstance(value, _Epoch):
        return time.ctime(value)
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
    data: dict[str, Any] = {"timestamp": int(now), "pbs_version": PBS_VERSION,
                            "pbs_server": PBS_SERVER}
    if jobs:
        listed: dict[str, Any] = {}
        for job in jobs:
            entry: dict[str, Any] = {}
            for name, resource, value in _pbs_attrs(job, "pro", now):
                if resource is None:
                    entry[name] = _json_value(value)
                else:
                    entry.setdefault(name, {})[resource] = _json_value(value)
            listed[_pbs_full(job["id"])] = entry
        data["Jobs"] = listed
    return json.dumps(data, indent=4, separators=(",", ":")) + "\n"


def _qstat_dsv(jobs: list[Job], now: float, delim: str) -> str:
    lines = []
    for job in jobs:
        fields = [f"Job Id: {_pbs_full(job['id'])}"]
        for name, resource, value in _pbs_attrs(job, "pro", now):
            key = f"{name}.{resource}" if resource else name
            fields.append(f"{key}={_attr_text(value).replace(delim, chr(92) + delim)}")
        lines.append(delim.join(fields) + "\n")
    return "".join(lines)


def _qstat_xml(jobs: list[Job], now: float) -> str:
    from xml.sax.saxutils import escape

    parts = ["<Data>"]
    for job in jobs:
        parts.append(f"<Job><Job_Id>{_pbs_full(job['id'])}</Job_Id>")
        group = None
        for name, resource, value in _pbs_attrs(job, "torque", now):
            text = escape(str(int(value)) if isinstance(value, _Epoch) else _attr_text(value))
            if resource is None:
                if group:
                    parts.append(f"</{group}>")
                    group = None
                parts.append(f"<{name}>{text}</{name}>")
                continue
            if group != name:
                if group:
                    parts.append(f"</{group}>")
                parts.append(f"<{name}>")
                group = name
            parts.append(f"<{resource}>{text}</{resource}>")
        if group:
            parts.append(f"</{group}>")
        parts.append("</Job>")
    parts.append("</Data>")
    return "".join(parts) + "\n"


def _qstat_table(jobs: list[Job], flavor: str, now: float) -> str:
    if not jobs:
        return ""
    if flavor == "torque":
        fmt = "{:<25.25} {:<16.16} {:<15.15} {:>8} {:1} {:<5}\n"
        lines = [fmt.format("Job ID", "Name", "User", "Time Use", "S", "Queue"),
                 fmt.format("-" * 25, "-" * 16, "-" * 15, "-" * 8, "-", "-----")]
    else:
        fmt = "{:<17.17} {:<16.16} {:<16.16}  {:>8.8} {:1.1} {:<16.16}\n"
        lines = ["Job id            Name             User              Time Use S Queue\n",
                 "----------------  ---------------- ----------------  -------- - -----\n"]
    for job in jobs:
        name = job["name"] if len(job["name"]) < 16 else job["name"][:15]
        used = "00:00:00" if job.get("start_time") else "0"
        lines.append(fmt.format(_pbs_full(job["id"]), name, job["user"], used,
                                _pbs_state(job, flavor), job["queue"]))
    return "".join(lines)


def _qstat_queues(jobs: list[Job], flavor: str, full: bool, wanted: list[str]) -> str:
    queues = [q for q in _env_list("PW_FAKE_QUEUES", "workq,short,long,gpu")
              if not wanted or q in wanted]
    counts = {q: {"Q": 0, "R": 0, "H": 0, "E": 0} for q in queues}
    for job in jobs:
        state = _pbs_state(job, flavor)
        if job["queue"] in counts and state in counts[job["queue"]]:
            counts[job["queue"]][state] += 1
    if full:
        blocks = []
        for queue in queues:
            c = counts[queue]
            blocks.append(
                f"Queue: {queue}\n    queue_type = Execution\n    total_jobs = {sum(c.values())}\n"
                f"    state_count = Transit:0 Queued:{c['Q']} Held:{c['H']} Waiting:0 "
                f"Running:{c['R']} Exiting:{c['E']} Begun:0\n"
                "    enabled = True\n    started = True\n\n")
        return "".join(blocks)
    lines = ["Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n",
             "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"]
    for queue in queues:
        c = counts[queue]
        lines.append(f"{queue:<16} {0:>5} {sum(c.values()):>5} yes yes {c['Q']:>5} {c['R']:>5} "
                     f"{c['H']:>5} {0:>5} {0:>5} {c['E']:>5} Exec\n")
    return "".join(lines)


def _pbs_query_fail(prog: str) -> None:
    if _failure_knob("PW_FAKE_QUERY_FAIL"):
        raise CommandError(1, f"{prog}: cannot connect to server {PBS_SERVER} (errno=111)")


def cmd_qstat(args: list[str]) -> int:
    """``qstat [-f [-F json|dsv]] [-x] [ID...]`` (Pro), ``qstat [-f] [-x] [ID...]`` (Torque).

    Torque's ``-x`` means XML output; Pro's means "include finished (history) jobs".
    """
    flavor = _pbs_flavor()
    if args == ["--version"]:
        if flavor == "torque":
            _err(f"Version: {TORQUE_VERSION}", "Commit: 0000000000000000000000000000000000000000")
        else:
            _out(f"pbs_version = {PBS_VERSION}\n")
        return 0
    try:
        opts, rest, _ = _getopt(args, _QSTAT_OPTS[flavor], permute=True)
    except _OptError as exc:
        raise CommandError(2, f"qstat: {exc}", _QSTAT_USAGE[flavor].rstrip("\n")) from None
    flags = dict(opts)
    output = (flags.get("F") or "").lower()
    if output and output not in ("json", "dsv"):
        raise CommandError(2, "qstat: invalid output format, supported formats are json and dsv",
                           _QSTAT_USAGE[flavor].rstrip("\n"))
    _pbs_query_fail("qstat")
    now = time.time()
    store = JobStore.from_env()
    jobs = _load_jobs(store, "pbs")
    by_id = {job["id"]: job for job in jobs}
    queues = _env_list("PW_FAKE_QUEUES", "workq,short,long,gpu")
    if "Q" in flags or "q" in flags:
        visible = [j for j in jobs if _pbs_visibility(j, flavor, now) == "active"]
        _out(_qstat_queues(visible, flavor, "f" in flags, rest))
        return 0
    if "B" in flags:
        _out(f"Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext Status\n"
             f"---------------- ----- ----- ----- ----- ----- ----- ----- ----- -----------\n"
             f"{PBS_SERVER:<16} {0:>5} {len(jobs):>5} {0:>5} {0:>5} {0:>5} {0:>5} {0:>5} {0:>5}"
             f" Active\n")
        return 0
    history = flavor == "pro" and ("x" in flags or "H" in flags)
    errors: list[tuple[int, str]] = []
    selected: list[Job] = []
    if rest:
        for operand in rest:
            job_id = _pbs_id(operand)
            if job_id is None:
                queue = operand.split("@", 1)[0]
                if queue and queue not in queues:
                    errors.append((_RC_UNKQUE, f"qstat: Unknown queue destination {operand}"))
                    continue
                selected += [j for j in jobs if (not queue or j["queue"] == queue)
                             and _pbs_visibility(j, flavor, now) in
                             (("active", "history") if history or flavor == "torque"
                              else ("active",))]
                continue
            job = by_id.get(job_id)
            seen = _pbs_visibility(job, flavor, now)
            full_id = _pbs_full(job_id)
            if job is not None and (seen == "active" or (seen == "history" and
                                                          (history or flavor == "torque"))):
                selected.append(job)
            elif seen == "history":
                errors.append((_RC_HISTJOBID, f"qstat: {full_id} Job has finished, use -x or -H "
                                              "to obtain historical job information"))
            elif flavor == "torque":
                errors.append((_RC_UNKJOBID, f"qstat: Unknown Job Id Error {full_id}"))
            else:
                errors.append((_RC_UNKJOBID, f"qstat: Unknown Job Id {full_id}"))
    else:
        keep = ("active", "history") if history or flavor == "torque" else ("active",)
        selected = [j for j in jobs if _pbs_visibility(j, flavor, now) in keep]
    if "H" in flags and flavor == "pro":
        selected = [j for j in selected if _pbs_state(j, flavor) == "F"]
    if flags.get("u"):
        users = {u.split("@")[0] for u in (flags["u"] or "").split(",")}
        selected = [j for j in selected if j["user"] in users]
    if "i" in flags:
        selected = [j for j in selected if _pbs_state(j, flavor) in "EHQTW"]
    if "r" in flags:
        selected = [j for j in selected if _pbs_state(j, flavor) in "RS"]
    if flavor == "pro":
        for _, line in errors:
            _err(line)
    if flavor == "pro" and output == "json":
        _out(_qstat_json(selected, now))
    elif flavor == "pro" and output == "dsv":
        _out(_qstat_dsv(selected, now, flags.get("D") or "|"))
    elif flavor == "torque" and "x" in flags:
        _out(_qstat_xml(selected, now))
    elif "f" in flags:
        _out(_qstat_full_text(selected, flavor, now))
    else:
        _out(_qstat_table(selected, flavor, now))
    if flavor == "torque":
        for _, line in errors:  # Torque collects its complaints and prints them last
            _err(line)
        return errors[0][0] if errors else 0
    return errors[-1][0] if errors else 0  # PBS Pro exits with the last error


def cmd_qdel(args: list[str]) -> int:
    """``qdel ID...``: returns at once, the job's processes get SIGTERM then SIGKILL."""
    flavor = _pbs_flavor()
    if args == ["--version"]:
        _out(f"pbs_version = {PBS_VERSION}\n")
        return 0
    try:
        opts, rest, _ = _getopt(args, "W:x" if flavor == "pro" else "ab:cm:pW:t:x", permute=True)
    except _OptError as exc:
        raise CommandError(2, f"qdel: {exc}", _QDEL_USAGE.rstrip("\n")) from None
    if not rest:
        raise CommandError(2, _QDEL_USAGE.rstrip("\n"))
    flags = dict(opts)
    now = time.time()
    store = JobStore.from_env()
    jobs = {job["id"]: job for job in _load_jobs(store, "pbs")}
    rc = 0
    for operand in rest:
        job_id = _pbs_id(operand)
        if job_id is None:
            _err(f"qdel: illegally formed job identifier: {operand}")
            rc = 1
            continue
        job = jobs.get(job_id)
        seen = _pbs_visibility(job, flavor, now)
        full_id = _pbs_full(job_id)
        if job is None or seen == "gone":
            # Torque 6 words PBSE_UNKJOBID as its qstat does ("Unknown Job Id Error").
            _err(f"qdel: Unknown Job Id Error {full_id}" if flavor == "torque"
                 else f"qdel: Unknown Job Id {full_id}")
            rc = _RC_UNKJOBID
        elif seen == "history":
            if flavor == "torque":
                _err("qdel: Request invalid for state of job MSG=invalid state for job - "
                     f"COMPLETE {full_id}")
                rc = _RC_BADSTATE
            elif "x" in flags:
                store.update(job_id, lambda j: j.update(purged=True))
            else:
                _err(f"qdel: Job has finished {full_id}")
                rc = _RC_HISTJOBID
        elif job["state"] in ACTIVE_STATES:
            _cancel(store, job_id)
    return rc


def cmd_qselect(args: list[str]) -> int:
    """``qselect [-N NAME] [-u USER] [-q QUEUE] [-s STATES]``: ids of unfinished jobs."""
    flavor = _pbs_flavor()
    optstring = "a:A:c:h:l:N:p:P:q:r:s:t:u:xHJT" if flavor == "pro" else "a:A:c:h:l:N:p:q:r:s:u:"
    try:
        opts, _destinations, _ = _getopt(args, optstring, permute=True)
    except _OptError as exc:
        raise CommandError(2, f"qselect: {exc}",
                           "usage: qselect [-a [op]date_time] [-A account_string] [-c [op]interval]"
                           "\n\t[-h hold_list] [-H] [-J] [-l resource_list] [-N name] "
                           "[-p [op]priority]\n\t[-q destination] [-r y|n] [-s states] [-t] "
                           "[-T] [-x] [-u user_name]\n       qselect --version") from None
    flags = dict(opts)
    _pbs_query_fail("qselect")
    now = time.time()
    wanted_states = set(flags.get("s") or "")
    users = {u.split("@")[0] for u in (flags.get("u") or "").split(",") if u}
    queue = (flags.get("q") or "").split("@", 1)[0]
    keep = {"active"}
    if flavor == "pro" and "x" in flags:
        keep.add("history")
    if flavor == "pro" and "H" in flags:
        keep = {"history"}
    found = []
    for job in _load_jobs(JobStore.from_env(), "pbs"):
        if _pbs_visibility(job, flavor, now) not in keep:
            continue
        if flags.get("N") is not None and job["name"] != flags["N"]:
            continue
        if users and job["user"] not in users:
            continue
        if queue and job["queue"] != queue:
            continue
        if wanted_states and _pbs_state(job, flavor) not in wanted_states:
            continue
        found.append(_pbs_full(job["id"]))
    _out("".join(line + "\n" for line in found))
    return 0


# =========================================================================== entry point

_COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "sbatch": cmd_sbatch, "squeue": cmd_squeue, "scontrol": cmd_scontrol,
    "scancel": cmd_scancel, "sacct": cmd_sacct,
    "qsub": cmd_qsub, "qstat": cmd_qstat, "qdel": cmd_qdel, "qselect": cmd_qselect,
    "_supervise": _supervise, "_reap": _reap,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command named by the first argument (or by the name this file is called by)."""
    global _PROG
    args = list(sys.argv[1:] if argv is None else argv)
    invoked = os.path.basename(sys.argv[0]) if argv is None else ""
    if invoked in _COMMANDS:  # e.g. a symlink named sbatch pointing at this file
        name = invoked
    elif args:
        name = args.pop(0)
    else:
        name = ""
    handler = _COMMANDS.get(name)
    if handler is None:
        _err("usage: python -m pw_spawner.testing.fake_scheduler COMMAND [ARGS...]",
             f"commands: {' '.join(SLURM_COMMANDS + PBS_COMMANDS)}")
        return 2
    _PROG = name
    try:
        return handler(args)
    except CommandError as exc:
        sys.stdout.flush()
        _err(*exc.lines)
        return exc.rc


if __name__ == "__main__":
    sys.exit(main())

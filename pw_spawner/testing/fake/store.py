"""What every fake scheduler shares: the job store, knobs, option parsing and command plumbing.

The job store is a state directory (``$PW_FAKE_SCHED_DIR``) of JSON records, one per job
(``job-ID.json``), each replaced atomically (write, then rename) so that reading needs no lock;
every read-modify-write holds an exclusive ``flock`` on ``.lock``, since several commands may
run at once. Job scripts are kept there too, mode 0600 (they may hold secrets). Ids count up
from 1000 whatever the scheduler. How the jobs run is :mod:`.processes`.

Knobs are read from the environment of the command being run, else from ``knobs.json`` in the
state directory (what the test fixtures' ``set_knobs`` writes: the spawner passes its commands
an allow-listed environment, and no test hook belongs in that list). The shared ones:

- ``PW_FAKE_SCHED_DIR``: the state directory (required; the wrappers set a default).
- ``PW_FAKE_PENDING_SECONDS``: how long a job stays pending before it starts (default 0),
  fixed at submission.
- ``PW_FAKE_SUBMIT_FAIL``: the submit command prints this message on stderr and exits 1.
- ``PW_FAKE_QUERY_FAIL``: query commands fail as when the controller or server is down.
- ``PW_FAKE_HOSTNAME``: the node every job runs on (default ``localhost``).
- ``PW_FAKE_MIN_JOB_AGE``: seconds a finished job stays known (Slurm's MinJobAge, Torque's
  keep_completed; default 300).

The option parsers are GNU ``getopt_long`` (Slurm) and POSIX ``getopt`` (PBS) as the real
commands use them, abbreviations of long options included, so that what a real command refuses
the fake refuses too. Simplified: one node for every job; no holds, arrays or steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Job = dict[str, Any]
#: A command: its arguments in, its exit status out.
Handler = Callable[[list[str]], int]

ACTIVE_STATES = ("PENDING", "RUNNING")
FINISHED_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
FIRST_JOB_ID = 1000
#: The knobs file in the state directory: {"PW_FAKE_...": "value"}.
KNOBS_FILE = "knobs.json"
#: The knobs this module reads (each scheduler module lists its own in its KNOBS).
KNOBS = ("PW_FAKE_PENDING_SECONDS", "PW_FAKE_SUBMIT_FAIL", "PW_FAKE_QUERY_FAIL", "PW_FAKE_HOSTNAME",
         "PW_FAKE_MIN_JOB_AGE")


class CommandError(Exception):
    """Ends a fake command: ``lines`` go to stderr and ``rc`` is the exit status."""

    def __init__(self, rc: int, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.rc = rc
        self.lines = lines


def err(*lines: str) -> None:
    for line in lines:
        sys.stderr.write(line + "\n")


def out(text: str) -> None:
    sys.stdout.write(text)


# --------------------------------------------------------------------------- knobs and the caller


def knob(name: str, default: str = "") -> str:
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


def knob_float(name: str, default: float) -> float:
    try:
        return float(knob(name) or default)
    except ValueError:
        return default


def knob_list(name: str, default: str) -> list[str]:
    return [p.strip() for p in (knob(name) or default).split(",") if p.strip()]


def node_name() -> str:
    return knob("PW_FAKE_HOSTNAME") or "localhost"


def min_job_age() -> float:
    return knob_float("PW_FAKE_MIN_JOB_AGE", 300.0)


def check_submit_fail() -> None:
    """Refuse a submission as ``PW_FAKE_SUBMIT_FAIL`` says, its message on stderr."""
    failure = knob("PW_FAKE_SUBMIT_FAIL")
    if failure:
        raise CommandError(1, failure)


def query_fails() -> bool:
    """Whether ``PW_FAKE_QUERY_FAIL`` asks queries to fail as a controller that is down does."""
    return bool(knob("PW_FAKE_QUERY_FAIL"))


def account() -> dict[str, Any]:
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


def cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the caller's directory was removed under it
        return os.environ.get("PWD") or "/"


def read_stdin() -> str:
    return sys.stdin.buffer.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------- the state directory


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
            raise CommandError(1, "fake scheduler: PW_FAKE_SCHED_DIR is not set (its state directory)")
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
        self._write(self.file(job["id"], ".json"), json.dumps(job, indent=1))

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


# --------------------------------------------------------------------------- option parsing


class OptError(Exception):
    """What getopt says of a bad option (the caller adds the command's name)."""


def _match_long(name: str, spec: dict[str, int], arg: str) -> str:
    if name in spec:
        return name
    found = [key for key in spec if key.startswith(name)]
    if len(found) == 1:
        return found[0]
    if not found or not name:
        raise OptError(f"unrecognized option '{arg}'")
    shown = " ".join(f"'--{key}'" for key in found)
    raise OptError(f"option '{arg}' is ambiguous; possibilities: {shown}")


def flag_spec(required: str, optional: str, flags: str) -> dict[str, int]:
    """A getopt_long spec from space-separated long names: argument required, optional, none."""
    spec = dict.fromkeys(required.split(), 1)
    spec.update(dict.fromkeys(optional.split(), 2))
    spec.update(dict.fromkeys(flags.split(), 0))
    return spec


def getopt_long(args: list[str], short: dict[str, str], spec: dict[str, int],
                permute: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long, as Slurm uses it. ``spec``: long name -> 0 flag, 1 argument, 2 optional;
    ``short`` maps option letters to long names. Returns (long name, value) pairs and operands."""
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
                    raise OptError(f"option '--{full}' doesn't allow an argument")
                opts.append((full, None))
            elif kind == 1 and not eq:
                i += 1
                if i >= len(args):
                    raise OptError(f"option '--{full}' requires an argument")
                opts.append((full, args[i]))
            else:
                opts.append((full, value if eq else None))
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                full = short.get(letter, "")
                if not full:
                    raise OptError(f"invalid option -- '{letter}'")
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
                        raise OptError(f"option requires an argument -- '{letter}'")
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


def getopt(args: list[str], optstring: str, permute: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    """POSIX getopt, as the PBS commands use it: (letter, value) pairs and operands."""
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
            break
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                if letter not in takes or letter == ":":
                    raise OptError(f"invalid option -- '{letter}'")
                if not takes[letter]:
                    opts.append((letter, None))
                    j += 1
                    continue
                if j + 1 < len(arg):
                    opts.append((letter, arg[j + 1:]))
                else:
                    i += 1
                    if i >= len(args):
                        raise OptError(f"option requires an argument -- '{letter}'")
                    opts.append((letter, args[i]))
                break
        elif permute:
            rest.append(arg)
        else:
            rest.extend(args[i:])
            break
        i += 1
    return opts, rest


def directives(script: str, prefix: str) -> list[list[str]]:
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


# --------------------------------------------------------------------------- job records


def new_job(kind: str, name: str, partition: str, workdir: str) -> Job:
    """A pending job's record, before its id: ``kind`` is its scheduler module's name.

    The scheduler adds its own fields, and the ones the supervisor reads: ``stdout`` and
    ``stderr`` (the files the job writes), ``open_mode`` (``append`` or ``truncate``),
    ``time_limit`` (seconds, or None) and ``stage_out`` ([spooled, final] pairs copied at the end).
    """
    who = account()
    return {
        "kind": kind, "name": name, "partition": partition,
        "user": who["user"], "uid": who["uid"], "group": who["group"], "gid": who["gid"],
        "home": who["home"], "shell": who["shell"],
        "state": "PENDING", "submit_time": time.time(), "start_time": None, "end_time": None,
        "exit_code": None, "pid": None, "node": None,
        "submit_dir": cwd(), "workdir": workdir, "submit_host": os.uname().nodename,
        "time_limit": None, "pending_seconds": max(0.0, knob_float("PW_FAKE_PENDING_SECONDS", 0)),
        "open_mode": "truncate", "stage_out": [],
    }

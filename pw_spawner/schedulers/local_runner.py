"""The ``local`` target's job runner: runs a job script as a detached process group on this host.

Invoked (through the executor, so ``sudo -u`` applies) as
``python -I -S .../local_runner.py submit JOB_DIR [NICENESS]``, ``cancel JOB_DIR`` or
``status JOB_DIR...`` (one line of JSON per directory: one call answers for every job). It uses only
the standard library and keeps everything it knows in the job directory, so a restarted hub can
ask about a job it started before. The job id is the process group's id. Where the hub itself is
the job's account, it calls :func:`job_status` and :func:`cancel` in its own process instead of
running this file.

A run of this file is on the path of every spawn: it imports only what ``python -S`` has already
loaded (``os``, ``sys``, ``stat``), ``json`` where it prints, and starts the job with
``os.posix_spawn`` (``subprocess`` and ``pathlib`` would double its ~10 ms).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import time

# The wrapper records the script's exit status; it is the process-group leader, so one killpg
# reaches the script and everything it started. With a niceness ($3), it lowers its session's
# scheduling group too: where Linux groups processes by session (autogroups, the default), a
# process's own niceness counts only within its group, and every job is a session of its own, so
# a hundred busy jobs would each weigh as much as the hub.
_WRAPPER = ('[ "$3" -gt 0 ] 2>/dev/null && echo "$3" > /proc/self/autogroup 2>/dev/null; '
            'export PW_LOCAL_JOB_ID=$$; bash "$1"; rc=$?; '
            'echo "$rc" > "$2.tmp" && mv -f "$2.tmp" "$2"; exit "$rc"')


#: How long cancel waits for the processes it sent SIGKILL to exit.
KILL_WAIT = 2.0


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, to tell it from a later process with its pid."""
    try:
        fields = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return fields.rsplit(")", 1)[1].split()[19]


def _own_directory_problem(job_dir: str) -> str | None:
    """Why ``job_dir`` is not this account's own directory (it must not be a symlink either)."""
    info = os.lstat(job_dir)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{job_dir} is not a directory (a symbolic link or a file)"
    if info.st_uid != os.geteuid():
        return f"{job_dir} belongs to uid {info.st_uid}, not to this job's account"
    return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _lower_own_priority(niceness: int) -> None:
    """Run the rest of this submit at the job's priority (its session's group too, see _WRAPPER).

    The hub starts each command in a session of its own: at the hub's priority, a hundred submits
    at once would each weigh as much as the hub while they run. The session's group is lowered
    only where the session is this command's (led by this process, or by the ``sudo`` or shell
    that runs it), never the group of a shell someone ran the runner from.
    """
    if niceness <= 0:
        return
    if os.getsid(0) in (os.getpid(), os.getppid()):
        try:
            with open("/proc/self/autogroup", "w") as handle:
                handle.write(str(niceness))
        except OSError:
            pass  # no autogroups (another kernel, or switched off): the niceness alone then
    os.nice(niceness)


def submit(job_dir: str, niceness: int = 0) -> int:
    """Start the script on stdin in ``job_dir`` (detached), ``niceness`` below this process's priority."""
    script = sys.stdin.read()
    try:
        os.makedirs(job_dir, mode=0o700, exist_ok=True)
        problem = _own_directory_problem(job_dir)
        if problem is None:
            os.chmod(job_dir, 0o700)
    except OSError as exc:
        problem = f"cannot make the job directory {job_dir}: {exc.strerror}"
    if problem:
        print(f"refusing to run: {problem}", file=sys.stderr)
        return 1
    for stale in ("exitcode", "cancelled", "service.json"):
        _unlink(os.path.join(job_dir, stale))
    path = os.path.join(job_dir, "job.sh")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o700)
        with os.fdopen(fd, "w") as handle:
            handle.write(script)
        out = os.open(os.path.join(job_dir, "job.out"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        # A full or read-only file system, a quota: said in one line, not as a traceback.
        print(f"cannot write the job's files in {job_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    # Jobs start from the account's home (posix_spawn has no working-directory argument).
    try:
        os.chdir(os.path.expanduser("~"))
    except OSError:
        os.chdir("/")
    # The job's helper needs a python3; this one already runs as the job's account on this host,
    # which spares the job a search of PATH (where a wrapper such as pyenv's costs ~0.1 s a call).
    env = {**os.environ, "PW_RUNNER_PYTHON": sys.executable}
    # Nothing this runner was handed (a descriptor its caller let it inherit) reaches the job.
    for entry in os.listdir("/proc/self/fd"):
        if int(entry) > 2:
            try:
                os.set_inheritable(int(entry), False)
            except OSError:
                pass  # the directory's own descriptor, closed since
    # A session of its own (it outlives this runner and the hub); stdin from /dev/null, output to
    # job.out.
    pid = os.posix_spawn(
        "/bin/bash",
        ["/bin/bash", "-c", _WRAPPER, "pw-job", path, os.path.join(job_dir, "exitcode"), str(niceness)], env,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                      (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)],
        setsid=True,
    )
    try:
        with open(os.path.join(job_dir, "job.pid"), "w") as handle:
            handle.write(f"{pid} {_start_time(pid) or ''}\n")
    except OSError as exc:
        os.killpg(pid, signal.SIGKILL)  # a job nobody could find again must not run
        print(f"cannot write the job's files in {job_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(pid)
    return 0


def _alive(job_dir: str) -> tuple[int | None, bool]:
    try:
        pid_text, _, started = _read(os.path.join(job_dir, "job.pid")).strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None, False
    now = _start_time(pid)
    # A zombie counts as ended: its wrapper has already written the exit code.
    try:
        state = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "X"
    return pid, now is not None and now == started and state != "Z"


def job_status(job_dir: str | os.PathLike[str]) -> dict[str, object]:
    """The runner's record of the job in ``job_dir``: its pid and state (and exit code)."""
    job_dir = os.fspath(job_dir)
    pid, alive = _alive(job_dir)
    record: dict[str, object] = {"pid": pid}
    if pid is None:
        record["state"] = "NOT_FOUND"
    elif alive:
        record["state"] = "RUNNING"
    elif os.path.exists(os.path.join(job_dir, "cancelled")):
        record["state"] = "CANCELLED"
    else:
        try:
            code = int(_read(os.path.join(job_dir, "exitcode")).strip())
        except (OSError, ValueError):
            record["state"] = "LOST"  # killed from outside before it could record a status
        else:
            record.update(state="COMPLETED" if code == 0 else "FAILED", exit_code=code)
    return record


def _group_alive(pgid: int) -> bool:
    """Whether any process of the job's process group is left (not only its leader)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _read(f"/proc/{entry}/stat").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # state, ppid, pgrp: a zombie has ended.
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def cancel(job_dir: str | os.PathLike[str], grace: float = 5.0) -> int:
    """Stop the job in ``job_dir``: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
    job_dir = os.fspath(job_dir)
    pid, alive = _alive(job_dir)
    if pid is None or not alive:
        return 0
    with open(os.path.join(job_dir, "cancelled"), "a"):
        pass
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    # Done when the whole group has gone: the script's trap still writes its last status.
    if _group_gone_within(pid, grace):
        return 0
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return 0
    # A killed process holds its sockets until it has exited: wait for that too, so that a stopped
    # job's port is free when its stop returns.
    _group_gone_within(pid, KILL_WAIT)
    return 0


def _group_gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


USAGE = "usage: local_runner submit JOB_DIR [NICENESS], cancel JOB_DIR, or status JOB_DIR..."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    submitting = args[:1] == ["submit"] and len(args) in (2, 3) and (len(args) == 2 or args[2].isdigit())
    one_dir = submitting or (args[:1] == ["cancel"] and len(args) == 2)
    if not one_dir and not (args[:1] == ["status"] and len(args) >= 2):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "status":
        import json

        # One line of JSON a job directory, in order: one call answers for every job.
        for job_dir in args[1:]:
            print(json.dumps(job_status(job_dir)))
        return 0
    if submitting:
        niceness = int(args[2]) if len(args) == 3 else 0
        _lower_own_priority(niceness)
        return submit(args[1], niceness)
    return cancel(args[1])


if __name__ == "__main__":
    sys.exit(main())

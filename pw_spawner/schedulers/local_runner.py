"""The ``local`` target's job runner: runs a job script as a detached process group on this host.

Invoked (through the executor, so ``sudo -u`` applies) as
``python -I .../local_runner.py submit|cancel JOB_DIR`` or ``status JOB_DIR...`` (one line of JSON a
directory: one call answers for every job). It uses only the
standard library and keeps everything it knows in the job directory, so a restarted hub can ask
about a job it started before. The job id is the process group's id.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

# The wrapper records the script's exit status; it is the process-group leader, so one killpg
# reaches the script and everything it started.
_WRAPPER = ('export PW_LOCAL_JOB_ID=$$; bash "$1"; rc=$?; '
            'echo "$rc" > "$2.tmp" && mv -f "$2.tmp" "$2"; exit "$rc"')


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, to tell it from a later process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _own_directory_problem(job_dir: Path) -> str | None:
    """Why ``job_dir`` is not this account's own 0700 directory (it must not be a symlink either)."""
    info = os.lstat(job_dir)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{job_dir} is not a directory (a symbolic link or a file)"
    if info.st_uid != os.geteuid():
        return f"{job_dir} belongs to uid {info.st_uid}, not to this job's account"
    return None


def submit(job_dir: Path) -> int:
    script = sys.stdin.read()
    try:
        job_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = _own_directory_problem(job_dir)
        if problem is None:
            os.chmod(job_dir, 0o700)
    except OSError as exc:
        problem = f"cannot make the job directory {job_dir}: {exc.strerror}"
    if problem:
        print(f"refusing to run: {problem}", file=sys.stderr)
        return 1
    for stale in ("exitcode", "cancelled", "service.json"):
        (job_dir / stale).unlink(missing_ok=True)
    path = job_dir / "job.sh"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o700)
        with os.fdopen(fd, "w") as handle:
            handle.write(script)
        out = os.open(job_dir / "job.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        # A full or read-only file system, a quota: said in one line, not as a traceback.
        print(f"cannot write the job's files in {job_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    proc = subprocess.Popen(
        ["/bin/bash", "-c", _WRAPPER, "pw-job", str(path), str(job_dir / "exitcode")],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(Path.home()),
        start_new_session=True, close_fds=True,
    )
    try:
        (job_dir / "job.pid").write_text(f"{proc.pid} {_start_time(proc.pid) or ''}\n")
    except OSError as exc:
        os.killpg(proc.pid, signal.SIGKILL)  # a job nobody could find again must not run
        print(f"cannot write the job's files in {job_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(proc.pid)
    return 0


def _alive(job_dir: Path) -> tuple[int | None, bool]:
    try:
        pid_text, _, started = (job_dir / "job.pid").read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None, False
    now = _start_time(pid)
    # A zombie counts as ended: its wrapper has already written the exit code.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "X"
    return pid, now is not None and now == started and state != "Z"


def status(job_dir: Path) -> int:
    print(json.dumps(_status(job_dir)))
    return 0


def _status(job_dir: Path) -> dict[str, object]:
    pid, alive = _alive(job_dir)
    record: dict[str, object] = {"pid": pid}
    if pid is None:
        record["state"] = "NOT_FOUND"
    elif alive:
        record["state"] = "RUNNING"
    elif (job_dir / "cancelled").exists():
        record["state"] = "CANCELLED"
    else:
        try:
            code = int((job_dir / "exitcode").read_text().strip())
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
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # state, ppid, pgrp: a zombie has ended.
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def cancel(job_dir: Path, grace: float = 5.0) -> int:
    pid, alive = _alive(job_dir)
    if pid is None or not alive:
        return 0
    (job_dir / "cancelled").touch()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    # Done when the whole group has gone: the script's trap still writes its last status.
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return 0
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    one_dir = args[:1] in (["submit"], ["cancel"]) and len(args) == 2
    if not one_dir and not (args[:1] == ["status"] and len(args) >= 2):
        print("usage: local_runner submit|cancel JOB_DIR, or local_runner status JOB_DIR...", file=sys.stderr)
        return 2
    if args[0] == "status":
        # One line of JSON a job directory, in order: one call answers for every job.
        for job_dir in args[1:]:
            print(json.dumps(_status(Path(job_dir))))
        return 0
    action, job_dir = args[0], Path(args[1])
    return {"submit": submit, "cancel": cancel}[action](job_dir)


if __name__ == "__main__":
    sys.exit(main())

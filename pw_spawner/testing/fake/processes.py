"""How the fake schedulers' jobs run: submitting, the detached supervisor, cancelling, liveness.

There is no daemon. Submitting (:func:`submit`) records the job and starts a detached supervisor
(``_supervise ID``: a new session, no inherited stdio, its output in ``job-ID.log``) that waits
out the pending time, runs ``bash script`` in a session of its own with the scheduler's job
variables, waits for it, kills what the script left in its process group (as slurmstepd and the
PBS MoM do), copies spooled output where it belongs and records how the job ended: COMPLETED,
FAILED (the exit status, or minus the signal), or TIMEOUT past its time limit (SIGTERM, then
SIGKILL after the grace). :func:`cancel` marks the job CANCELLED at once, sends SIGTERM and
leaves a detached reaper (``_reap``) to send SIGKILL after :data:`CANCEL_GRACE` seconds, so the
cancel command returns at once as the real ones do.

A supervisor that dies (killed, out of memory) cannot record its job's end: :func:`load_jobs`,
which every query goes through, fails such a job (``lost``) unless its processes still run.
Processes are told apart by their start time in ``/proc`` (a reused pid is not the supervisor),
and zombies count as gone; without ``/proc`` the checks fall back to signal 0.

Simplified: the job gets the submitter's environment (inherited through the supervisor) plus
the scheduler's variables; a missing working directory sends it to ``/tmp`` with slurmstepd's
complaint, for every scheduler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .store import ACTIVE_STATES, Job, JobStore, node_name

if TYPE_CHECKING:
    import subprocess

# subprocess, threading and shutil are imported where they are used: a query needs none of them.

#: Cancelling sends SIGTERM, then SIGKILL this many seconds later (Slurm's KillWait).
CANCEL_GRACE = 3.0
#: The file every fake command runs as (by path: see ``__main__.py``).
ENTRY = os.path.join(os.path.dirname(os.path.realpath(__file__)), "__main__.py")


# --------------------------------------------------------------------------- liveness


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
    """Start the fake's own ``ARGS`` (``_supervise``, ``_reap``) detached: new session, no
    inherited stdio or cwd. A caller that captures our output waits for the pipes to close,
    and must not wait for a job."""
    import subprocess

    fd = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen([sys.executable, ENTRY, *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True, close_fds=True)
    return proc.pid


def supervisor_alive(job: Job) -> bool:
    pid = job.get("supervisor_pid")
    if pid is None:
        return True  # cannot tell: leave the record alone
    return pid_alive(pid, job.get("supervisor_start"))


def _reconcile(store: JobStore, jobs: list[Job]) -> list[Job]:
    """Fail active jobs whose supervisor died (killed, OOM): nobody else will end them."""
    stale = [job["id"] for job in jobs if job["state"] in ACTIVE_STATES and not supervisor_alive(job)]
    if not stale:
        return jobs
    with store.locked():
        for job_id in stale:
            job = store.load(job_id)
            if job is None or job["state"] not in ACTIVE_STATES or supervisor_alive(job):
                continue
            if job["state"] == "RUNNING" and pgid_alive(job.get("pid")):
                continue  # the job itself still runs; its end just will not be noticed
            job.update(state="FAILED", end_time=time.time(), lost=True,
                       exit_code=job.get("exit_code") if job.get("exit_code") is not None else 1)
            store.save(job)
    return [store.load(job["id"]) or job for job in jobs]


def load_jobs(store: JobStore, kind: str) -> list[Job]:
    """The records of one scheduler's jobs (``kind``: its module's name), in id order."""
    return _reconcile(store, [job for job in store.jobs() if job.get("kind") == kind])


# --------------------------------------------------------------------------- submitting, cancelling


def submit(store: JobStore, job: Job, script: str, resolve: Callable[[Job], None]) -> Job:
    """Record ``job`` under a new id, keep its script and start its supervisor.

    ``resolve(job)`` runs under the lock once the id is known (output paths name the job).
    """
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
        job["supervisor_pid"] = _spawn_self(["_supervise", str(job["id"])], store.file(job["id"], ".log"))
        job["supervisor_start"] = start_ticks(job["supervisor_pid"])
        store.save(job)
    return job


def cancel(store: JobStore, job_id: int) -> Job | None:
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


def _open_outputs(job: Job) -> tuple[Any, Any]:
    mode = "ab" if job.get("open_mode") == "append" else "wb"
    stdout = open(job["stdout"], mode)  # handed to the child; the caller closes our copy
    if job["stderr"] == job["stdout"]:
        return stdout, stdout
    try:
        return stdout, open(job["stderr"], mode)
    except OSError:
        stdout.close()
        raise


def _launch(job: Job, variables: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``bash <script>`` in a new session; the caller holds the lock."""
    import subprocess

    stdout, stderr = _open_outputs(job)
    try:
        env = dict(os.environ)  # the submitter's environment, inherited through the supervisor
        env.setdefault("HOME", job["home"])
        env.setdefault("USER", job["user"])
        env.setdefault("LOGNAME", job["user"])
        env.update(variables)
        workdir = job["workdir"]
        if not os.path.isdir(workdir):
            # What slurmstepd does; close enough for PBS, which would fail the job.
            stderr.write(f"slurmstepd: error: couldn't chdir to `{workdir}': No such file or directory: "
                         "going to /tmp instead\n".encode())
            stderr.flush()
            workdir = "/tmp"
        return subprocess.Popen(["bash", job["script"]], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True, close_fds=True)
    finally:
        stdout.close()
        if stderr is not stdout:
            stderr.close()


def _stage_out(job: Job) -> None:
    """Copy spooled output where the job asked for it, as PBS does when a job ends."""
    import shutil

    for spooled, final in job.get("stage_out") or []:
        try:
            shutil.copyfile(spooled, final)
            os.unlink(spooled)
        except OSError as exc:
            print(f"cannot deliver {spooled} to {final}: {exc}", flush=True)


def supervise(args: list[str], variables: Callable[[Job], dict[str, str]]) -> int:
    """``_supervise ID``: start one job after its pending time, wait for it, record how it ended.

    ``variables(job)`` gives the job's scheduler variables (``SLURM_JOB_ID``...), once the job
    has its node.
    """
    import threading

    job_id = int(args[0])
    store = JobStore.from_env()
    with store.locked():
        job = store.load(job_id)  # waits for the submitter to finish saving the record
    if job is None:
        return 1
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
        job["node"] = node_name()
        try:
            proc = _launch(job, variables(job))
        except OSError as exc:
            print(f"job {job_id} could not start: {exc}", flush=True)
            now = time.time()
            job.update(state="FAILED", start_time=now, end_time=now, exit_code=1)
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
    _stage_out(job)

    def record(current: Job) -> None:
        current["exit_code"] = returncode
        if current["state"] == "RUNNING":
            current["state"] = "COMPLETED" if returncode == 0 else "FAILED"
        if not current.get("end_time"):
            current["end_time"] = time.time()

    store.update(job_id, record)
    return 0


def reap(args: list[str]) -> int:
    """``_reap PGID GRACE``: after a cancel, SIGKILL the job's process group if it outlives the grace."""
    pgid, grace = int(args[0]), float(args[1])
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pgid_alive(pgid):
            return 0
        time.sleep(0.1)
    killpg(pgid, signal.SIGKILL)
    return 0

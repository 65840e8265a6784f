"""Tests of the local target's job runner (pw_spawner/schedulers/local_runner.py, run as
``python -I -S local_runner.py submit|cancel|status DIR``) and of the LocalScheduler that drives
it: that submit writes job.sh, job.pid and job.out and starts the job in a session of its own (at
the niceness given, its session's scheduling group too), from
$HOME, with stdin from /dev/null, output to job.out, the runner's interpreter in PW_RUNNER_PYTHON and
no descriptor of the runner's caller; that it refuses a job directory that is a symbolic link, a
file or another account's; that status and cancel tell and end jobs (the whole process group, also
one that ignores SIGTERM); that LocalScheduler answers query, find and cancel the same whether the
runner's functions run in the hub's process (LocalExecutor without a prefix) or the runner runs as
a command (with a prefix); and that LocalExecutor.remove_file removes, accepts a missing file and
raises ExecutorError when it cannot remove, with and without a prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pw_spawner.remote.executor import ExecutorError, LocalExecutor
from pw_spawner.schedulers import local_runner
from pw_spawner.schedulers.base import JobInfo, JobRef, SubmitError
from pw_spawner.schedulers.local import LocalScheduler
from pw_spawner.status import JobState

RUNNER = str(Path(local_runner.__file__).resolve())
NOBODY = 65534


def runner(*args: str, script: str | None = None, env: dict | None = None,
           pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """The runner as the scheduler runs it, as a command."""
    # In a session of its own, as the hub's executor starts every command.
    return subprocess.run([sys.executable, "-I", "-S", RUNNER, *args], input=script or "",
                          capture_output=True, text=True, timeout=60, env=env, pass_fds=pass_fds,
                          start_new_session=True)


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that have not ended (zombies do not count)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def wait_for(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def status_of(job_dir) -> dict:
    result = runner("status", str(job_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def finished_status(job_dir) -> dict:
    return wait_for(lambda: (lambda r: r if r["state"] != "RUNNING" else None)(status_of(job_dir)),
                    f"the job in {job_dir} to end")


@pytest.fixture
def jobs():
    """Process groups of the jobs a test starts: killed after it, whatever happened."""
    pgids: list[int] = []
    yield pgids
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def submit(jobs: list[int], job_dir, script: str, **kw) -> int:
    result = runner("submit", str(job_dir), script=script, **kw)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    jobs.append(pid)
    return pid


# ---- the runner as a command


def test_submit_writes_the_jobs_files_and_prints_its_pid(tmp_path, jobs):
    job_dir = tmp_path / "job"
    job_dir.mkdir(mode=0o755)
    script = "echo hello\nexit 0\n"
    pid = submit(jobs, job_dir, script)
    assert stat.S_IMODE(os.lstat(job_dir).st_mode) == 0o700  # tightened
    job_sh = job_dir / "job.sh"
    assert job_sh.read_text() == script
    assert stat.S_IMODE(job_sh.stat().st_mode) == 0o700
    pid_text, started = (job_dir / "job.pid").read_text().split()
    assert int(pid_text) == pid and started.isdigit()
    record = finished_status(job_dir)
    assert record == {"pid": pid, "state": "COMPLETED", "exit_code": 0}
    out = job_dir / "job.out"
    assert out.read_text() == "hello\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def autogroup_nice(pid: int) -> int | None:
    """The niceness of the process's session's scheduling group (None without autogroups)."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def test_the_runner_and_its_job_run_at_the_niceness_given(tmp_path, jobs):
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    own_group = autogroup_nice(os.getpid())
    # The job prints its niceness and its session group's (the runner's own it inherits).
    script = 'echo "$(cut -d" " -f19 /proc/$$/stat) $(cut -d" " -f3 /proc/self/autogroup 2>/dev/null)"\n'
    seen = {}
    for name, niceness in (("plain", ()), ("niced", ("7",))):
        result = runner("submit", str(tmp_path / name), *niceness, script=script)
        assert result.returncode == 0, result.stderr
        jobs.append(int(result.stdout))
        finished_status(tmp_path / name)
        seen[name] = (tmp_path / name / "job.out").read_text().split()
    assert int(seen["plain"][0]) == mine and int(seen["niced"][0]) == min(19, mine + 7)
    if own_group is not None:
        assert (int(seen["plain"][1]), int(seen["niced"][1])) == (0, 7)
    # The runner lowered only its own session's group, not that of whoever started it.
    assert autogroup_nice(os.getpid()) == own_group


def test_the_job_runs_detached_from_home_with_its_own_stdio_and_env(tmp_path, jobs):
    job_dir, seen, home = tmp_path / "job", tmp_path / "seen", tmp_path / "home"
    seen.mkdir()
    home.mkdir()
    d = shlex.quote(str(seen))
    script = f"""
cat /proc/$$/stat > {d}/stat
pwd -P > {d}/cwd
readlink /proc/$$/fd/0 > {d}/stdin
readlink /proc/$$/fd/1 > {d}/stdout
readlink /proc/$$/fd/2 > {d}/stderr
printf '%s' "$PW_RUNNER_PYTHON" > {d}/python
printf '%s' "$PW_LOCAL_JOB_ID" > {d}/job_id
echo to-stdout
echo to-stderr >&2
touch {d}/done
"""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    pid = submit(jobs, job_dir, script, env=env)
    wait_for(lambda: (seen / "done").exists(), "the job's script")
    fields = (seen / "stat").read_text().rsplit(")", 1)[1].split()
    assert int(fields[2]) == pid  # process group: the job id
    assert int(fields[3]) == pid  # a session of its own
    leader = stat_fields(pid)
    if leader is not None:  # the wrapper may have ended by now
        assert int(leader[2]) == pid and int(leader[3]) == pid
    assert (seen / "cwd").read_text().strip() == os.path.realpath(home)
    assert (seen / "stdin").read_text().strip() == "/dev/null"
    job_out = os.path.realpath(job_dir / "job.out")
    assert (seen / "stdout").read_text().strip() == job_out
    assert (seen / "stderr").read_text().strip() == job_out
    assert (seen / "job_id").read_text() == str(pid)
    runner_python = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; print(sys.executable)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert (seen / "python").read_text() == runner_python
    assert finished_status(job_dir)["state"] == "COMPLETED"
    assert (job_dir / "job.out").read_text() == "to-stdout\nto-stderr\n"


def test_no_descriptor_of_the_runners_caller_reaches_the_job(tmp_path, jobs):
    job_dir, seen = tmp_path / "job", tmp_path / "seen"
    seen.mkdir()
    d = shlex.quote(str(seen))
    script = f"ls /proc/$$/fd > {d}/fds\nls /proc/$PPID/fd > {d}/wrapper_fds\ntouch {d}/done\n"
    read_end, write_end = os.pipe()
    extra = os.open(tmp_path / "some-file", os.O_WRONLY | os.O_CREAT, 0o600)
    handed = (read_end, write_end, extra)
    try:
        for fd in handed:
            os.set_inheritable(fd, True)
        # The control: handed like this, the descriptors do reach a program that keeps them.
        control = subprocess.run(["bash", "-c", "ls /proc/$$/fd"], capture_output=True, text=True,
                                 pass_fds=handed, check=True)
        assert {str(fd) for fd in handed} <= set(control.stdout.split())
        submit(jobs, job_dir, script, pass_fds=handed)
        wait_for(lambda: (seen / "done").exists(), "the job's script")
    finally:
        for fd in handed:
            os.close(fd)
    # bash keeps the script it reads on 255; nothing else beyond stdin, stdout and stderr.
    assert set((seen / "fds").read_text().split()) <= {"0", "1", "2", "255"}
    assert set((seen / "wrapper_fds").read_text().split()) <= {"0", "1", "2", "255"}


def test_submit_refuses_a_symlinked_job_dir(tmp_path, jobs):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    result = runner("submit", str(link), script="touch ran\n")
    assert result.returncode == 1
    assert "refusing to run" in result.stderr and "symbolic link" in result.stderr
    assert result.stdout == ""
    assert list(real.iterdir()) == []


def test_submit_refuses_a_job_dir_that_is_a_file(tmp_path, jobs):
    afile = tmp_path / "job"
    afile.write_text("x")
    result = runner("submit", str(afile), script="true\n")
    assert result.returncode == 1
    assert "cannot make the job directory" in result.stderr
    assert result.stdout == "" and afile.read_text() == "x"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_submit_refuses_another_accounts_job_dir(tmp_path, jobs):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, NOBODY, NOBODY)
    result = runner("submit", str(other), script="true\n")
    assert result.returncode == 1
    assert f"belongs to uid {NOBODY}" in result.stderr
    assert result.stdout == ""
    assert list(other.iterdir()) == []
    assert stat.S_IMODE(os.lstat(other).st_mode) == 0o700 and os.lstat(other).st_uid == NOBODY


def test_status_of_an_unknown_dir_is_not_found(tmp_path):
    assert status_of(tmp_path / "never") == {"pid": None, "state": "NOT_FOUND"}
    (tmp_path / "empty").mkdir()
    assert status_of(tmp_path / "empty") == {"pid": None, "state": "NOT_FOUND"}


@pytest.mark.parametrize(("code", "state"), [(0, "COMPLETED"), (7, "FAILED")])
def test_status_records_the_exit_code(tmp_path, jobs, code, state):
    pid = submit(jobs, tmp_path / "job", f"exit {code}\n")
    assert finished_status(tmp_path / "job") == {"pid": pid, "state": state, "exit_code": code}
    assert (tmp_path / "job" / "exitcode").read_text().strip() == str(code)


def test_status_answers_for_every_dir_in_order(tmp_path, jobs):
    running = submit(jobs, tmp_path / "a", "sleep 60\n")
    done = submit(jobs, tmp_path / "b", "exit 3\n")
    finished_status(tmp_path / "b")
    result = runner("status", str(tmp_path / "a"), str(tmp_path / "missing"), str(tmp_path / "b"))
    assert result.returncode == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"pid": running, "state": "RUNNING"},
        {"pid": None, "state": "NOT_FOUND"},
        {"pid": done, "state": "FAILED", "exit_code": 3},
    ]


def test_usage_errors_exit_2(tmp_path):
    for args in ((), ("status",), ("submit",), ("cancel", "a", "b"), ("frobnicate", str(tmp_path))):
        result = runner(*args)
        assert result.returncode == 2, args
        assert "usage" in result.stderr


def test_a_job_killed_from_outside_is_lost(tmp_path, jobs):
    pid = submit(jobs, tmp_path / "job", "sleep 60\n")
    assert status_of(tmp_path / "job")["state"] == "RUNNING"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not group_members(pid), "the killed job to go")
    assert finished_status(tmp_path / "job") == {"pid": pid, "state": "LOST"}


def test_cancel_ends_the_whole_process_group(tmp_path, jobs):
    job_dir, seen = tmp_path / "job", tmp_path / "seen"
    seen.mkdir()
    script = f"sleep 100 &\necho $! > {shlex.quote(str(seen))}/bg\nwait\n"
    pid = submit(jobs, job_dir, script)
    background = int(wait_for(lambda: (seen / "bg").exists() and (seen / "bg").read_text().strip(),
                              "the background sleep"))
    assert background in group_members(pid)
    result = runner("cancel", str(job_dir))
    assert result.returncode == 0, result.stderr
    assert group_members(pid) == []
    assert (stat_fields(background) or ["X"])[0] in ("Z", "X")
    assert status_of(job_dir) == {"pid": pid, "state": "CANCELLED"}


def test_cancel_of_an_ended_or_unknown_job_is_no_error(tmp_path, jobs):
    assert runner("cancel", str(tmp_path / "never")).returncode == 0
    pid = submit(jobs, tmp_path / "job", "exit 0\n")
    finished_status(tmp_path / "job")
    assert runner("cancel", str(tmp_path / "job")).returncode == 0
    # An ended job stays as it ended: no "cancelled" mark after the fact.
    assert status_of(tmp_path / "job") == {"pid": pid, "state": "COMPLETED", "exit_code": 0}


def test_cancel_kills_a_job_that_ignores_sigterm(tmp_path, jobs):
    job_dir, seen = tmp_path / "job", tmp_path / "seen"
    seen.mkdir()
    script = f"trap '' TERM\nsleep 100 &\ntouch {shlex.quote(str(seen))}/ready\nwait\n"
    pid = submit(jobs, job_dir, script)
    wait_for(lambda: (seen / "ready").exists(), "the job to start")
    assert local_runner.cancel(str(job_dir), grace=0.3) == 0
    # Gone when cancel returns (a killed process holds its port until it has exited).
    assert not group_members(pid)
    assert local_runner.job_status(str(job_dir)) == {"pid": pid, "state": "CANCELLED"}


def test_a_new_submit_clears_the_earlier_jobs_marks(tmp_path, jobs):
    job_dir = tmp_path / "job"
    submit(jobs, job_dir, "sleep 60\n")
    assert runner("cancel", str(job_dir)).returncode == 0
    (job_dir / "service.json").write_text("{}")
    assert status_of(job_dir)["state"] == "CANCELLED"
    pid = submit(jobs, job_dir, "exit 0\n")
    assert not (job_dir / "service.json").exists()
    assert finished_status(job_dir) == {"pid": pid, "state": "COMPLETED", "exit_code": 0}


# ---- LocalScheduler, in the hub's process and through a command


IN_HUB = LocalExecutor()
AS_COMMAND = LocalExecutor(prefix=["env"])


def test_the_two_executors_take_the_two_paths():
    assert IN_HUB.in_hub_process is True
    assert AS_COMMAND.in_hub_process is False


async def query_both(scheduler: LocalScheduler, refs: list[JobRef]) -> dict[str, JobInfo]:
    """The answers, which must be the same in the hub's process and through the runner command."""
    in_hub = await scheduler.query(IN_HUB, refs)
    as_command = await scheduler.query(AS_COMMAND, refs)
    assert in_hub == as_command
    return in_hub


async def wait_finished(scheduler: LocalScheduler, ref: JobRef, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await scheduler.query(IN_HUB, [ref]))[ref.job_id].state.finished:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {ref.job_id} did not end")


async def test_scheduler_answers_alike_in_and_out_of_the_hub_process(tmp_path, jobs):
    scheduler = LocalScheduler()

    async def start(name: str, script: str, executor: LocalExecutor) -> JobRef:
        job_dir = str(tmp_path / name)
        job_id = await scheduler.submit(executor, script, name=name, job_dir=job_dir)
        jobs.append(int(job_id))
        return JobRef(job_id, name, job_dir)

    running = await start("running", "sleep 60\n", IN_HUB)
    done = await start("done", "exit 0\n", AS_COMMAND)
    failed = await start("failed", "exit 5\n", IN_HUB)
    lost = await start("lost", "sleep 60\n", AS_COMMAND)
    unknown = JobRef("999999", "unknown", str(tmp_path / "unknown"))
    replaced = JobRef("1", "running", running.job_dir)  # an earlier job's id, the dir reused since
    os.killpg(int(lost.job_id), signal.SIGKILL)
    for ref in (done, failed, lost):
        await wait_finished(scheduler, ref)

    answers = await query_both(scheduler, [running, done, failed, lost, unknown, replaced])
    assert answers[running.job_id] == JobInfo(running.job_id, JobState.RUNNING, "RUNNING", node="localhost")
    assert answers[done.job_id] == JobInfo(done.job_id, JobState.COMPLETED, "COMPLETED", exit_code=0)
    assert answers[failed.job_id] == JobInfo(failed.job_id, JobState.FAILED, "FAILED", exit_code=5)
    assert answers[lost.job_id] == JobInfo(lost.job_id, JobState.FAILED, "LOST")
    assert answers[unknown.job_id] == JobInfo(unknown.job_id, JobState.COMPLETED, "NOT_FOUND")
    assert answers[replaced.job_id] == JobInfo(replaced.job_id, JobState.COMPLETED, "REPLACED")

    for executor in (IN_HUB, AS_COMMAND):
        assert await scheduler.find(executor, "running", running.job_dir) == [running.job_id]
        assert await scheduler.find(executor, "done", done.job_dir) == []
        assert await scheduler.find(executor, "failed", failed.job_dir) == []
        assert await scheduler.find(executor, "unknown", unknown.job_dir) == []


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_scheduler_cancel_alike_in_and_out_of_the_hub_process(tmp_path, jobs, executor):
    scheduler = LocalScheduler()
    seen = tmp_path / "seen"
    seen.mkdir()
    script = f"sleep 100 &\necho $! > {shlex.quote(str(seen))}/bg\nwait\n"
    job_dir = str(tmp_path / "job")
    job_id = await scheduler.submit(executor, script, name="t", job_dir=job_dir)
    jobs.append(int(job_id))
    ref = JobRef(job_id, "t", job_dir)
    background = int(wait_for(lambda: (seen / "bg").exists() and (seen / "bg").read_text().strip(),
                              "the background sleep"))
    assert (await query_both(scheduler, [ref]))[job_id].state is JobState.RUNNING
    await scheduler.cancel(executor, ref)
    assert group_members(int(job_id)) == []
    assert (stat_fields(background) or ["X"])[0] in ("Z", "X")
    assert (await query_both(scheduler, [ref]))[job_id] == JobInfo(job_id, JobState.CANCELLED, "CANCELLED")
    for other in (IN_HUB, AS_COMMAND):
        assert await scheduler.find(other, "t", job_dir) == []
    # Cancelling again, or a job that never was, is no error either way.
    await scheduler.cancel(executor, ref)
    await scheduler.cancel(executor, JobRef("999999", "u", str(tmp_path / "unknown")))
    assert (await query_both(scheduler, [ref]))[job_id].state is JobState.CANCELLED


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_scheduler_submit_refusal_is_a_submit_error(tmp_path, executor):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(SubmitError, match="refusing to run"):
        await LocalScheduler().submit(executor, "true\n", name="t", job_dir=str(tmp_path / "link"))
    assert list(real.iterdir()) == []


# ---- LocalExecutor.remove_file


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_remove_file_removes_and_accepts_a_missing_file(tmp_path, executor):
    path = tmp_path / "service.json"
    path.write_text("{}")
    await executor.remove_file(str(path))
    assert not path.exists() and not path.is_symlink()
    await executor.remove_file(str(path))  # missing now: no error
    await executor.remove_file(str(tmp_path / "no-such-dir" / "service.json"))


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_remove_file_removes_a_symlink_not_its_target(tmp_path, executor):
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "service.json"
    link.symlink_to(target)
    await executor.remove_file(str(link))
    assert not link.is_symlink() and target.read_text() == "keep"


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_remove_file_raises_when_it_cannot_remove(tmp_path, executor):
    # Even root cannot unlink a directory, nor a file of /proc.
    directory = tmp_path / "service.json"
    directory.mkdir()
    with pytest.raises(ExecutorError, match="cannot remove"):
        await executor.remove_file(str(directory))
    assert directory.is_dir()
    with pytest.raises(ExecutorError, match="cannot remove"):
        await executor.remove_file(f"/proc/{os.getpid()}/status")


@pytest.mark.parametrize("executor", [IN_HUB, AS_COMMAND], ids=["in-hub", "as-command"])
async def test_remove_file_under_a_regular_file_is_a_missing_file(tmp_path, executor):
    # No file can exist under a regular file: "if it exists" (rm -f, which ignores ENOTDIR as it
    # ignores ENOENT), so both executors must take it as missing alike.
    parent = tmp_path / "job"
    parent.write_text("a file where the job dir should be")
    await executor.remove_file(str(parent / "service.json"))
    assert parent.read_text() == "a file where the job dir should be"

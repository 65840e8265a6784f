"""The fake LSF (pw_spawner.testing.fake.lsf), driven through its wrappers as the spawner drives
bsub, bjobs, bkill, bhist and bparams; then LSFScheduler itself against it, through a real
LocalExecutor."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.profiles import profile_from_dict
from pw_spawner.remote.executor import LocalExecutor
from pw_spawner.schedulers import JobRef, SubmitError, get_scheduler
from pw_spawner.schedulers.lsf import BJOBS_FIELDS, LSFScheduler, parse_bhist, parse_bjobs_json
from pw_spawner.status import JobState
from pw_spawner.testing.fake import processes
from pw_spawner.testing.plugin import FakeScheduler

FIELDS = "jobid stat exit_code exec_host pend_reason"


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs start in the submitting directory; relative -o paths are relative to it."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def no_recent_submits():
    """LSFScheduler keeps the submit time of each job this process submitted (class-wide)."""
    LSFScheduler._submitted_at.clear()
    yield
    LSFScheduler._submitted_at.clear()


def bsub(script: str, *args: str, cwd: Path | None = None) -> str:
    result = run("bsub", *args, input=script, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.split("<", 1)[1].split(">", 1)[0]


def bjobs(*ids: str, fields: str = FIELDS) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    result = run("bjobs", "-o", fields, "-json", "-a", "-u", "all", *ids)
    data = json.loads(result.stdout)
    assert data["COMMAND"] == "bjobs" and data["JOBS"] == len(data["RECORDS"])
    return data["RECORDS"], result


def record(job_id: str, fields: str = FIELDS) -> dict:
    records, result = bjobs(job_id, fields=fields)
    assert result.returncode == 0, result.stderr
    assert len(records) == 1
    return records[0]


def known(fake: FakeScheduler, job_id: str) -> dict:
    """The fake's own record of a job it has."""
    job = fake.job(job_id)
    assert job is not None, job_id
    return job


def squeezed(text: str) -> str:
    """Text without its blanks: bhist cuts lines anywhere, and drops a blank where it cuts."""
    return "".join(text.split())


# ---- the commands ----------------------------------------------------------------------------------


def test_bsub_runs_the_job_with_lsf_environment(fake_lsf: FakeScheduler, tmp_path: Path):
    (tmp_path / "job.out").write_text("from before\n")
    script = ("#!/bin/bash\n#BSUB -J envjob\n#BSUB -o job.out\n#BSUB -q short\n#BSUB -n 2\n"
              '#BSUB -R "rusage[mem=512MB/host] span[hosts=1]"\n#BSUB -M 512MB\n#BSUB -W 1:30\n'
              '#BSUB -gpu "num=1"\n#BSUB -P proj1\n'
              'echo "id=$LSB_JOBID name=$LSB_JOBNAME queue=$LSB_QUEUE hosts=$LSB_HOSTS|'
              'mcpu=$LSB_MCPU_HOSTS|np=$LSB_DJOB_NUMPROC project=$LSB_PROJECT_NAME cwd=$(pwd)"\n'
              "echo oops >&2\n")
    submitted = run("bsub", input=script)
    assert (submitted.returncode, submitted.stdout, submitted.stderr) == (
        0, "Job <1000> is submitted to queue <short>.\n", "")
    job = fake_lsf.wait_for_state(1000, "COMPLETED")
    # -o appends, and without -e the job's stderr goes there too.
    assert (tmp_path / "job.out").read_text() == (
        "from before\n"
        f"id=1000 name=envjob queue=short hosts=localhost localhost|mcpu=localhost 2|np=2 project=proj1 "
        f"cwd={tmp_path}\noops\n")
    assert (job["slots"], job["time_limit"], job["memlimit"], job["gpu"]) == (2, 5400, "512MB", "num=1")
    text = run("bjobs", "-o", FIELDS, "-json", "-a", "-u", "all", "1000").stdout
    # The layout of tests/data/lsf/bjobs-json-done.json.
    assert text == ('{\n  "COMMAND":"bjobs",\n  "JOBS":1,\n  "RECORDS":[\n    {\n      "JOBID":"1000",\n'
                    '      "STAT":"DONE",\n      "EXIT_CODE":"",\n      "EXEC_HOST":"2*localhost",\n'
                    '      "PEND_REASON":""\n    }\n  ]\n}\n')
    assert record("1000", "jobid job_name user queue proj_name nexec_host slots") == {
        "JOBID": "1000", "JOB_NAME": "envjob", "USER": job["user"], "QUEUE": "short", "PROJ_NAME": "proj1",
        "NEXEC_HOST": "1", "SLOTS": "2"}
    # Without -q: the default queue (the first); without -o the output is what LSF would mail.
    second = run("bsub", input="#!/bin/sh\necho mailed\n")
    assert second.stdout == "Job <1001> is submitted to default queue <normal>.\n"
    fake_lsf.wait_for_state(1001, "COMPLETED")
    assert (fake_lsf.state_dir / "job-1001.mail").read_text() == "mailed\n"


def test_pending_running_done_and_exit(fake_lsf: FakeScheduler, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PW_FAKE_PENDING_SECONDS", "2")
    first = bsub("#!/bin/sh\nsleep 30\n", "-J", "sleeper")
    assert record(first) == {"JOBID": first, "STAT": "PEND", "EXIT_CODE": "", "EXEC_HOST": "",
                             "PEND_REASON": "New job is waiting for scheduling;"}
    monkeypatch.setenv("PW_FAKE_PENDING_SECONDS", "0")
    monkeypatch.setenv("PW_FAKE_PENDING_REASON", "The user has reached his/her job slot limit;")
    failed = bsub("#!/bin/sh\nexit 3\n")
    done = bsub("#!/bin/sh\ntrue\n")
    fake_lsf.wait_for_state(failed, "FAILED")
    fake_lsf.wait_for_state(done, "COMPLETED")
    assert record(failed)["STAT"] == "EXIT" and record(failed)["EXIT_CODE"] == "3"
    assert record(done) == {"JOBID": done, "STAT": "DONE", "EXIT_CODE": "", "EXEC_HOST": "localhost",
                            "PEND_REASON": ""}
    fake_lsf.wait_for_state(first, "RUNNING")
    assert record(first) == {"JOBID": first, "STAT": "RUN", "EXIT_CODE": "", "EXEC_HOST": "localhost",
                             "PEND_REASON": ""}
    # Without ids, bjobs lists the caller's unfinished jobs; -a adds the finished ones.
    unfinished = json.loads(run("bjobs", "-o", "jobid stat", "-json").stdout)["RECORDS"]
    assert unfinished == [{"JOBID": first, "STAT": "RUN"}]
    every = json.loads(run("bjobs", "-o", "jobid", "-json", "-a", "-u", "all").stdout)["RECORDS"]
    assert [r["JOBID"] for r in every] == [first, failed, done]
    # Jobs asked for by id, and one that does not exist: its record says so, exit 255.
    records, result = bjobs(first, "4242", done)
    assert result.returncode == 255
    assert [r["JOBID"] for r in records] == [first, done, "4242"]
    assert records[2] == {"JOBID": "4242", "ERROR": "Job <4242> is not found"}


def test_bkill(fake_lsf: FakeScheduler, monkeypatch: pytest.MonkeyPatch):
    running = bsub("#!/bin/sh\nsleep 30\n")
    job = fake_lsf.wait_for_state(running, "RUNNING")
    started = time.monotonic()
    killed = run("bkill", running)
    assert (killed.returncode, killed.stdout, killed.stderr) == (
        0, f"Job <{running}> is being terminated\n", "")
    assert time.monotonic() - started < 1.5
    wait_until(lambda: not processes.pgid_alive(job["pid"]), timeout=5)
    wait_until(lambda: record(running)["STAT"] == "EXIT")
    assert record(running) == {"JOBID": running, "STAT": "EXIT", "EXIT_CODE": "130", "EXEC_HOST": "localhost",
                               "PEND_REASON": ""}
    again = run("bkill", running)
    assert (again.returncode, again.stdout, again.stderr) == (
        255, "", f"Job <{running}>: Job has already finished\n")

    monkeypatch.setenv("PW_FAKE_PENDING_SECONDS", "30")
    pending = bsub("#!/bin/sh\nsleep 30\n")
    several = run("bkill", pending, "4242")
    assert several.returncode == 255
    assert (several.stdout, several.stderr) == (f"Job <{pending}> is being terminated\n",
                                                "Job <4242>: No matching job found\n")
    # Killed while pending: it never ran, so it has no exit code.
    assert record(pending) == {"JOBID": pending, "STAT": "EXIT", "EXIT_CODE": "", "EXEC_HOST": "",
                               "PEND_REASON": ""}
    assert known(fake_lsf, pending)["pid"] is None


def test_a_killed_job_runs_until_its_processes_are_gone(fake_lsf: FakeScheduler):
    stubborn = bsub("#!/bin/bash\ntrap '' TERM\nsleep 30 &\nwait\nwait\n")
    job = fake_lsf.wait_for_state(stubborn, "RUNNING")
    time.sleep(0.2)  # the trap is set
    assert run("bkill", stubborn).returncode == 0
    assert record(stubborn)["STAT"] == "RUN"  # SIGTERM is ignored: SIGKILL comes after the grace
    wait_until(lambda: record(stubborn)["STAT"] == "EXIT", timeout=processes.CANCEL_GRACE + 5)
    assert not processes.pgid_alive(job["pid"])


def test_bsub_refusals(fake_lsf: FakeScheduler, monkeypatch: pytest.MonkeyPatch):
    script = "#!/bin/sh\ntrue\n"
    for args, said in [
        (["-q", "nosuch"], "nosuch: No such queue. Job not submitted.\n"),
        (["-n", "two"], "Bad argument for option -n. Job not submitted.\n"),
        (["-n", "0"], "The number of processors must be a positive integer. Job not submitted.\n"),
        (["-W", "1h"], "1h: Bad RUNLIMIT specification. Job not submitted.\n"),
        (["-M", "lots"], "lots: MEMLIMIT value should be a positive integer. Job not submitted.\n"),
        (["-R", "rusage[mem=1"], "Bad resource requirement syntax. Job not submitted.\n"),
        (["-R", "nosuch[x]"], "Bad resource requirement syntax. Job not submitted.\n"),
        (["-yy"], "bsub: illegal option -- yy\n. Job not submitted.\n"),
        (["-xz"], "bsub: option cannot have an argument -- x\n. Job not submitted.\n"),
        (["-q"], "bsub: option requires an argument -- q\n. Job not submitted.\n"),
    ]:
        result = run("bsub", *args, input=script)
        assert (result.returncode, result.stdout, result.stderr) == (255, "", said), args
    in_script = run("bsub", input="#!/bin/sh\n#BSUB -q nosuch\ntrue\n")
    assert in_script.stderr == "nosuch: No such queue. Job not submitted.\n"
    empty = run("bsub", input="#!/bin/sh\n# nothing to run\n\n")
    assert (empty.returncode, empty.stderr) == (255, "No command is specified. Job not submitted.\n")
    fake_lsf.set_knobs(PW_FAKE_QUEUES="normal,full")
    full = run("bsub", "-q", "full", input=script)
    assert (full.returncode, full.stderr) == (
        255, "The destination queue has reached its job limit. Job not submitted.\n")
    monkeypatch.setenv("PW_FAKE_SUBMIT_FAIL", "User permission denied. Job not submitted.")
    denied = run("bsub", input=script)
    assert (denied.returncode, denied.stdout, denied.stderr) == (
        255, "", "User permission denied. Job not submitted.\n")
    assert fake_lsf.jobs() == []


def test_queries_when_lsf_is_down(fake_lsf: FakeScheduler):
    job_id = bsub("#!/bin/sh\ntrue\n")
    fake_lsf.wait_for_state(job_id, "COMPLETED")
    fake_lsf.set_knobs(PW_FAKE_QUERY_FAIL=1)
    for argv in (["bjobs", "-o", FIELDS, "-json", "-a", "-u", "all", job_id], ["bparams", "-a"]):
        down = run(*argv)
        assert (down.returncode, down.stdout, down.stderr) == (255, "", "LSF is down. Please wait...\n")
    # bhist reads the event log itself.
    assert run("bhist", "-a", "-l", "-n", "2", "-u", "all", job_id).returncode == 0


@pytest.mark.parametrize("argv", [
    ["bsub", "job.sh"], ["bsub", "-I"], ["bsub", "-H"], ["bsub", "-K"], ["bsub", "-w", "done(1)"],
    ["bsub", "-J", "arr[1-3]"], ["bsub", "-E", "true"], ["bjobs"], ["bjobs", "-json"],
    ["bjobs", "-o", "jobid"], ["bjobs", "-o", "jobid", "-json", "-l"], ["bjobs", "-o", "cpu_used", "-json"],
    ["bkill", "-s", "KILL", "1"], ["bkill", "0"], ["bhist", "1000"], ["bhist", "-l", "-d"], ["bparams"],
    ["bparams", "-l"],
])
def test_what_is_not_emulated_says_so(fake_lsf: FakeScheduler, argv: list[str]):
    result = run(*argv, input="#!/bin/sh\ntrue\n")
    assert result.returncode == 2
    assert "not emulated by pw_spawner's fake LSF" in result.stderr
    assert fake_lsf.jobs() == []


def test_directives_and_output_files(fake_lsf: FakeScheduler, tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "logs").mkdir()
    script = ("#!/bin/bash\n#BSUB -J fromscript\n#BSUB -n 3\n#BSUB -n 5  # the first limit counts\n"
              "#BSUB -cwd sub\n#BSUB -oo out-%J.txt\n#BSUB -e ../logs/\n"
              "pwd\necho bad >&2\n#BSUB -q long\n")
    job_id = bsub(script, "-J", "fromargv")
    job = fake_lsf.wait_for_state(job_id, "COMPLETED")
    # The command line wins; #BSUB lines count wherever they are (the -q after the commands).
    assert (job["name"], job["queue"], job["slots"]) == ("fromargv", "long", 3)
    assert (tmp_path / "sub" / f"out-{job_id}.txt").read_text() == f"{tmp_path / 'sub'}\n"
    assert (tmp_path / "logs" / f"{job_id}.err").read_text() == "bad\n"
    # -oo overwrites.
    again = bsub(f"#!/bin/sh\n#BSUB -oo {tmp_path}/sub/out-{job_id}.txt\necho second\n")
    fake_lsf.wait_for_state(again, "COMPLETED")
    assert (tmp_path / "sub" / f"out-{job_id}.txt").read_text() == "second\n"


def test_find_query_and_bparams(fake_lsf: FakeScheduler):
    running = bsub("#!/bin/sh\nsleep 30\n", "-J", "pw-alice-1")
    ended = bsub("#!/bin/sh\ntrue\n", "-J", "pw-alice-1")
    fake_lsf.wait_for_state(ended, "COMPLETED")
    user = fake_lsf.wait_for_state(running, "RUNNING")["user"]
    # What LSFScheduler.find runs: this account's unfinished jobs of the name.
    found = run("bjobs", "-u", user, "-J", "pw-alice-1", "-o", "jobid stat job_name", "-json")
    assert found.returncode == 0
    assert json.loads(found.stdout)["RECORDS"] == [
        {"JOBID": running, "STAT": "RUN", "JOB_NAME": "pw-alice-1"}]
    for other in (["-u", "somebody-else", "-J", "pw-alice-1"], ["-u", user, "-J", "pw-bob-1"]):
        none = run("bjobs", *other, "-o", "jobid stat job_name", "-json")
        assert (none.returncode, none.stdout, none.stderr) == (255, "", "No unfinished job found\n")
    assert run("bjobs", "-u", user, "-J", "pw-*", "-o", "jobid", "-json").returncode == 0
    params = run("bparams", "-a").stdout
    assert params.startswith("lsb.params configuration at ")
    assert "    DEFAULT_QUEUE = normal\n" in params and "    CLEAN_PERIOD = 3600\n" in params
    assert "SECURE_JOB_INFO_LEVEL" not in params
    fake_lsf.set_knobs(PW_FAKE_SECURE_JOB_INFO_LEVEL=2, PW_FAKE_CLEAN_PERIOD=60)
    params = run("bparams", "-a").stdout
    assert "    SECURE_JOB_INFO_LEVEL = 2\n" in params and "    CLEAN_PERIOD = 60\n" in params


def test_bhist_lays_out_the_event_log(fake_lsf: FakeScheduler, tmp_path: Path):
    script = ("#!/bin/bash\n#BSUB -J pw-alice-bfebef88e4\n#BSUB -o job.out\n#BSUB -n 4\n"
              '#BSUB -R "rusage[mem=16384MB/host] span[hosts=1]"\nexit 3\n')
    job_id = bsub(script)
    fake_lsf.wait_for_state(job_id, "FAILED")
    result = run("bhist", "-a", "-l", "-n", "2", "-u", "all", job_id)
    assert result.returncode == 0
    text = result.stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"Job <{job_id}>, Job Name <pw-alice-bfebef88e4>, User <")
    summary = next(i for i, line in enumerate(lines) if line.startswith("Summary of time"))
    assert lines[summary - 1] == "" and lines[-1] == ""
    for line in lines[:summary]:
        assert len(line) <= 79, line  # prtLine(): 79 columns, then 21 blanks and 58 more
        assert not line.startswith(" ") or line.startswith(" " * 21), line
    for words in ("Submitted from host <", f"CWD <{tmp_path}>", f"Output File <{tmp_path}/job.out>",
                  "4 Task(s)", "Requested Resources <rusage[mem=16384MB/host] span[hosts=1]>",
                  "Dispatched 4 Task(s) on Host(s) <localhost> <localhost> <localhost> <localhost>",
                  "Exited with exit code 3. The CPU time used is unknown;", "Completed <exit>;",
                  "Summary of time in seconds spent in various states by"):
        assert squeezed(words) in squeezed(text), words
    assert "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL" in lines
    info = parse_bhist(text, job_id)
    assert (info.state, info.exit_code) == (JobState.FAILED, 3)
    missing = run("bhist", "-a", "-l", "-n", "2", "-u", "all", "4242")
    assert (missing.returncode, missing.stdout, missing.stderr) == (255, "", "No matching job found\n")
    # A job past its -W (one minute at least, too long to wait for here): its record, as the
    # supervisor leaves it, through bjobs and bhist.
    timed = bsub("#!/bin/sh\ntrue\n", "-W", "0:01")
    done = fake_lsf.wait_for_state(timed, "COMPLETED")
    assert done["time_limit"] == 60
    fake_lsf.store.update(int(timed), lambda job: job.update(state="TIMEOUT", exit_code=-15))
    assert record(timed)["STAT"] == "EXIT" and record(timed)["EXIT_CODE"] == "140"
    shown = run("bhist", "-l", timed).stdout
    ended = "Completed <exit>; TERM_RUNLIMIT: job killed after reaching LSF run time limit;"
    assert squeezed(ended) in squeezed(shown)


def test_finished_jobs_are_forgotten_after_clean_period(fake_lsf: FakeScheduler):
    job_id = bsub("#!/bin/sh\ntrue\n")
    fake_lsf.wait_for_state(job_id, "COMPLETED")
    assert record(job_id)["STAT"] == "DONE"
    fake_lsf.set_knobs(PW_FAKE_CLEAN_PERIOD=0.2)
    time.sleep(0.3)
    records, result = bjobs(job_id)
    assert result.returncode == 255
    assert records == [{"JOBID": job_id, "ERROR": f"Job <{job_id}> is not found"}]
    every = run("bjobs", "-o", "jobid", "-json", "-a")
    assert (every.returncode, every.stderr) == (255, "No job found\n")
    killed = run("bkill", job_id)
    assert (killed.returncode, killed.stderr) == (255, f"Job <{job_id}>: No matching job found\n")
    # The event log still has it.
    shown = run("bhist", "-a", "-l", "-n", "2", "-u", "all", job_id)
    assert shown.returncode == 0
    assert parse_bhist(shown.stdout, job_id).state is JobState.COMPLETED
    # Without -a, bhist shows finished jobs only when they are asked for by id.
    assert run("bhist", "-l").returncode == 255


# ---- LSFScheduler against the fake -----------------------------------------------------------------


def job_script(body: str, name: str, job_dir: Path) -> str:
    """A script with the directives LSFScheduler writes for a one-core, 256 MiB, 30-minute job."""
    spec = profile_from_dict({"slug": "p", "display_name": "P",
                              "job": {"cores": 1, "memory": "256M", "walltime": "00:30:00"}}).job
    directives = LSFScheduler().directives(spec, name, f"{job_dir}/job.out")
    return "\n".join(["#!/bin/bash", *directives, body, ""])


async def submitted(lsf: LSFScheduler, body: str, tmp_path: Path, name: str = "pw-t") -> JobRef:
    job_dir = tmp_path / "jobs" / name
    script = job_script(body, name, job_dir)
    job_id = await lsf.submit(LocalExecutor(), script, name=name, job_dir=str(job_dir))
    return JobRef(job_id, name, str(job_dir))


async def wait_for(lsf: LSFScheduler, job: JobRef, done, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        info = (await lsf.query(LocalExecutor(), [job]))[job.job_id]
        if done(info):
            return info
        assert time.monotonic() < deadline, f"job {job.job_id} is still {info}"
        await asyncio.sleep(0.1)


async def test_scheduler_submit_query_find_cancel(fake_lsf: FakeScheduler, tmp_path: Path):
    lsf = LSFScheduler()
    executor = LocalExecutor()
    job = await submitted(lsf, "echo started\nsleep 60", tmp_path)
    assert job.job_id == "1000"
    record_ = known(fake_lsf, job.job_id)
    assert (record_["slots"], record_["time_limit"], record_["memlimit"]) == (1, 1800, "256MB")
    info = await wait_for(lsf, job, lambda i: i.state is JobState.RUNNING)
    assert (info.raw_state, info.node, info.exit_code) == ("RUN", "localhost", None)
    assert await lsf.find(executor, "pw-t", job.job_dir) == [job.job_id]
    assert await lsf.find(executor, "pw-other", job.job_dir) == []
    assert await lsf.shows_other_users_jobs(executor) is True

    await lsf.cancel(executor, job)  # "Job <1000> is being terminated"
    info = await wait_for(lsf, job, lambda i: i.state.finished)
    # bjobs says EXIT: only the event log tells a killed job from one that failed.
    assert (info.state, info.raw_state, info.exit_code) == (JobState.FAILED, "EXIT", 130)
    assert await lsf.find(executor, "pw-t", job.job_dir) == []
    await lsf.cancel(executor, job)  # "Job has already finished": nothing to do
    assert (Path(job.job_dir) / "job.out").read_text().startswith("started\n")

    # Once bjobs has forgotten it, bhist confirms how it ended.
    fake_lsf.set_knobs(PW_FAKE_CLEAN_PERIOD=0)
    at_once = get_scheduler("lsf", settings={"new_job_grace": 0})
    info = (await at_once.query(executor, [job]))[job.job_id]
    assert (info.state, info.raw_state, info.exit_code) == (JobState.CANCELLED, "EXIT", 130)
    await lsf.cancel(executor, job)  # "No matching job found": nothing to do either
    fake_lsf.set_knobs(PW_FAKE_SECURE_JOB_INFO_LEVEL=2)
    assert await lsf.shows_other_users_jobs(executor) is False


async def test_scheduler_exit_codes_and_forgotten_jobs(fake_lsf: FakeScheduler, tmp_path: Path):
    lsf = LSFScheduler()
    failed = await submitted(lsf, "exit 3", tmp_path, "pw-failed")
    done = await submitted(lsf, "true", tmp_path, "pw-done")
    info = await wait_for(lsf, failed, lambda i: i.state.finished)
    assert (info.state, info.raw_state, info.exit_code) == (JobState.FAILED, "EXIT", 3)
    info = await wait_for(lsf, done, lambda i: i.state.finished)
    assert (info.state, info.exit_code) == (JobState.COMPLETED, 0)
    # Forgotten by bjobs: while this process submitted them moments ago they are unknown, never gone;
    # then bhist tells how they ended.
    fake_lsf.set_knobs(PW_FAKE_CLEAN_PERIOD=0)
    unknown = await lsf.query(LocalExecutor(), [failed, done])
    assert {i.state for i in unknown.values()} == {JobState.UNKNOWN}
    at_once = get_scheduler("lsf", settings={"new_job_grace": 0})
    never = JobRef("4242", "x", str(tmp_path))
    infos = await at_once.query(LocalExecutor(), [failed, done, never])
    assert (infos[failed.job_id].state, infos[failed.job_id].exit_code) == (JobState.FAILED, 3)
    assert (infos[done.job_id].state, infos[done.job_id].exit_code) == (JobState.COMPLETED, 0)
    assert (infos[never.job_id].state, infos[never.job_id].raw_state) == (JobState.COMPLETED, "GONE")


async def test_scheduler_pending_refused_and_down(fake_lsf: FakeScheduler, tmp_path: Path):
    lsf = LSFScheduler()
    fake_lsf.set_knobs(PW_FAKE_PENDING_SECONDS=30)
    job = await submitted(lsf, "true", tmp_path)
    info = (await lsf.query(LocalExecutor(), [job]))[job.job_id]
    assert (info.state, info.reason) == (JobState.PENDING, "New job is waiting for scheduling")
    # The one bjobs the hub runs for every job, read by the parser the spawner uses.
    text = run("bjobs", "-o", BJOBS_FIELDS, "-json", "-a", "-u", "all", job.job_id).stdout
    assert parse_bjobs_json(text)[0][job.job_id].raw_state == "PEND"
    await lsf.cancel(LocalExecutor(), job)
    info = (await lsf.query(LocalExecutor(), [job]))[job.job_id]
    assert (info.state, info.exit_code) == (JobState.FAILED, None)
    with pytest.raises(SubmitError, match="LSF refused the job: nosuch: No such queue"):
        spec = profile_from_dict({"slug": "p", "display_name": "P", "job": {"partition": "nosuch"}}).job
        lines = LSFScheduler().directives(spec, "pw-q", str(tmp_path / "q" / "job.out"))
        await lsf.submit(LocalExecutor(), "\n".join(["#!/bin/bash", *lines, "true", ""]), name="pw-q",
                         job_dir=str(tmp_path / "q"))
    fake_lsf.set_knobs(PW_FAKE_QUERY_FAIL=1)
    info = (await lsf.query(LocalExecutor(), [job]))[job.job_id]
    assert info.state is JobState.UNKNOWN and "LSF is down" in info.reason

"""The fake Slurm (pw_spawner.testing.fake.slurm), driven through its wrappers as the spawner drives
Slurm's commands."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.testing.fake import processes
from pw_spawner.testing.plugin import FakeScheduler

SQUEUE_FORMAT = "%i|%T|%r|%N|%j"


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs submitted without a cwd write slurm-<id>.out where they were submitted."""
    monkeypatch.chdir(tmp_path)


def sbatch(script: str, *args: str, cwd: Path | None = None) -> str:
    result = run("sbatch", "--parsable", *args, input=script, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def squeue_line(job_id: str) -> str:
    result = run("squeue", "-h", "-t", "all", "-j", job_id, "-o", SQUEUE_FORMAT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sbatch_runs_the_job_with_slurm_environment(fake_slurm: FakeScheduler, tmp_path: Path):
    script = ("#!/bin/bash\n#SBATCH --job-name=envjob\n#SBATCH --output=out-%j.log\n"
              "echo id=$SLURM_JOB_ID name=$SLURM_JOB_NAME node=$SLURM_JOB_NODELIST cwd=$(pwd)\n"
              "echo oops >&2\n")
    job_id = sbatch(script, cwd=tmp_path)
    assert job_id == "1000"
    fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert squeue_line(job_id) == "1000|COMPLETED|None|localhost|envjob"
    # Without -t all only pending/running jobs are listed; a known id is then no error.
    plain = run("squeue", "-h", "-j", job_id, "-o", SQUEUE_FORMAT)
    assert (plain.returncode, plain.stdout) == (0, "")
    log = (tmp_path / "out-1000.log").read_text()
    assert f"id=1000 name=envjob node=localhost cwd={tmp_path}" in log
    assert "oops" in log  # no --error: stderr joins the output file
    record = fake_slurm.job(job_id)
    assert record["exit_code"] == 0
    assert run("squeue", "-h", "-t", "all", "--me", "-o", "%i %B %u%%").stdout == (
        f"1000 localhost {record['user']}%\n")
    assert stat.S_IMODE(os.stat(record["script"]).st_mode) == 0o600
    assert record["script"].startswith(str(fake_slurm.state_dir))
    second = run("sbatch", input="#!/bin/sh\ntrue\n", cwd=tmp_path)
    assert second.stdout == "Submitted batch job 1001\n"
    fake_slurm.wait_for_state(1001, "COMPLETED")
    assert (tmp_path / "slurm-1001.out").exists()


def test_pending_then_running_then_cancelled(fake_slurm: FakeScheduler,
                                             monkeypatch: pytest.MonkeyPatch):
    # Long enough for the seven commands below to run before the first job starts, under load too.
    monkeypatch.setenv("PW_FAKE_PENDING_SECONDS", "8")
    first = sbatch("#!/bin/sh\nsleep 30\n", "-J", "sleeper")
    second = sbatch("#!/bin/sh\nsleep 30\n", "--job-name=sleeper", "--partition", "gpu")
    third = sbatch("#!/bin/sh\nsleep 30\n", "--job-name=sleeper")
    assert squeue_line(first) == f"{first}|PENDING|Resources||sleeper"
    assert squeue_line(third) == f"{third}|PENDING|Priority||sleeper"
    assert squeue_line(second) == f"{second}|PENDING|Resources||sleeper"  # alone in gpu
    found = run("squeue", "-h", "-n", "sleeper", "-o", "%i").stdout.split()
    assert found == [first, second, third]
    assert run("squeue", "-h", "--me", "-n", "other", "-o", "%i").stdout == ""

    started = time.monotonic()
    cancel = run("scancel", third)
    assert (cancel.returncode, cancel.stdout, cancel.stderr) == (0, "", "")
    assert time.monotonic() - started < 5  # not the KillWait grace: it never ran
    assert squeue_line(third) == f"{third}|CANCELLED|None||sleeper"

    running = fake_slurm.wait_for_state(first, "RUNNING", timeout=30)
    assert squeue_line(first) == f"{first}|RUNNING|None|localhost|sleeper"
    shown = run("scontrol", "show", "job", first).stdout
    assert shown.startswith(f"JobId={first} JobName=sleeper\n   UserId=")
    assert "JobState=RUNNING Reason=None Dependency=(null)" in shown
    assert "NodeList=localhost" in shown and "BatchHost=localhost" in shown
    assert fake_slurm.job(third)["pid"] is None  # cancelled while pending: never ran

    assert run("scancel", first).returncode == 0
    assert squeue_line(first).startswith(f"{first}|CANCELLED|")
    wait_until(lambda: not processes.pgid_alive(running["pid"]), timeout=5)
    assert fake_slurm.wait_for_state(first, "CANCELLED")["exit_code"] == -15

    # The fixture's teardown does this; here it is checked on the job still running.
    job = fake_slurm.wait_for_state(second, "RUNNING")
    fake_slurm.kill_all()
    assert not processes.pgid_alive(job["pid"])
    assert fake_slurm.job(second)["state"] == "CANCELLED"


def test_exit_codes_time_limit_and_scontrol(fake_slurm: FakeScheduler):
    failed = sbatch("#!/bin/sh\nexit 3\n")
    done = sbatch("#!/bin/sh\nexit 0\n")
    timed = sbatch("#!/bin/sh\nsleep 30\n", "--time=0:01")
    fake_slurm.wait_for_state(failed, "FAILED")
    fake_slurm.wait_for_state(done, "COMPLETED")
    assert squeue_line(failed) == f"{failed}|FAILED|NonZeroExitCode|localhost|sbatch"
    shown = run("scontrol", "show", "job", failed).stdout
    assert "JobState=FAILED Reason=NonZeroExitCode Dependency=(null)" in shown
    assert "ExitCode=3:0" in shown
    assert "ExitCode=0:0" in run("scontrol", "show", "job", done).stdout
    finished_cancel = run("scancel", done)  # already finished: silent success
    assert (finished_cancel.returncode, finished_cancel.stderr) == (0, "")
    fake_slurm.wait_for_state(timed, "TIMEOUT", timeout=5)
    assert squeue_line(timed) == f"{timed}|TIMEOUT|TimeLimit|localhost|sbatch"
    # What the spawner's second opinion reads: every job, one line each.
    lines = run("scontrol", "-o", "show", "job").stdout.splitlines()
    assert [line.split()[0] for line in lines] == [f"JobId={failed}", f"JobId={done}", f"JobId={timed}"]
    assert f"JobId={timed} JobName=sbatch UserId=" in lines[2] and "JobState=TIMEOUT" in lines[2]
    assert "PrivateData             = none\n" in run("scontrol", "show", "config").stdout


def test_slurm_error_messages(fake_slurm: FakeScheduler, monkeypatch: pytest.MonkeyPatch):
    bad = run("sbatch", "-p", "nosuch", input="#!/bin/sh\ntrue\n")
    assert bad.returncode == 1
    assert bad.stderr == ("sbatch: error: invalid partition specified: nosuch\n"
                          "sbatch: error: Batch job submission failed: Invalid partition name "
                          "specified\n")
    monkeypatch.setenv("PW_FAKE_PARTITIONS", "debug,full")
    full = run("sbatch", "--partition=full", input="#!/bin/sh\ntrue\n")
    assert full.returncode == 1
    assert full.stderr.splitlines() == [
        "sbatch: error: QOSMaxSubmitJobPerUserLimit",
        "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
        "(job submit limit, user's size and/or time limits)"]
    no_shebang = run("sbatch", input="echo hi\n")
    assert no_shebang.returncode == 1
    assert no_shebang.stderr.startswith("sbatch: error: This does not look like a batch script.")
    unknown_opt = run("sbatch", "--bogus", input="#!/bin/sh\n")
    assert unknown_opt.returncode == 1
    assert unknown_opt.stderr.startswith("sbatch: unrecognized option '--bogus'\n")
    in_script = run("sbatch", input="#!/bin/sh\n#SBATCH --mem-per-cpu 1G\n#SBATCH --bogus\ntrue\n")
    assert in_script.stderr.startswith("sbatch: unrecognized option '--bogus'\n")

    for argv in (["squeue", "-h", "-j", "4242", "-o", "%i"], ["scontrol", "show", "job", "4242"]):
        result = run(*argv)
        assert (result.returncode, result.stderr) == (
            1, "slurm_load_jobs error: Invalid job id specified\n")
    several = run("squeue", "-h", "-t", "all", "-j", "4242,4243", "-o", SQUEUE_FORMAT)
    assert (several.returncode, several.stdout, several.stderr) == (0, "", "")
    cancel = run("scancel", "4242")
    assert (cancel.returncode, cancel.stderr) == (
        1, "scancel: error: Kill job error on job id 4242: Invalid job id specified\n")
    sacct = run("sacct", "-n", "-P", "-X", "-j", "4242", "-o", "JobID,State,ExitCode,NodeList")
    assert (sacct.returncode, sacct.stdout, sacct.stderr) == (
        1, "", "Slurm accounting storage is disabled\n")
    assert run("scontrol", "-o", "show", "job").stdout == "No jobs in the system\n"

    monkeypatch.setenv("PW_FAKE_SUBMIT_FAIL", "sbatch: error: Batch job submission failed: "
                                              "Unable to contact slurm controller")
    refused = run("sbatch", "--parsable", input="#!/bin/sh\ntrue\n")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == ("sbatch: error: Batch job submission failed: Unable to contact "
                              "slurm controller\n")
    monkeypatch.setenv("PW_FAKE_QUERY_FAIL", "1")
    for argv in (["squeue", "-h", "-o", SQUEUE_FORMAT], ["scontrol", "-o", "show", "job"]):
        down = run(*argv)
        assert (down.returncode, down.stderr) == (
            1, "slurm_load_jobs error: Socket timed out on send/recv operation\n")
    assert fake_slurm.jobs() == []


@pytest.mark.parametrize("argv", [
    ["squeue"], ["squeue", "-h"], ["squeue", "-o", "%i"], ["squeue", "-h", "-o", "%.18i"],
    ["squeue", "-h", "-o", "%P"], ["scontrol", "show", "partition"], ["scancel", "-n", "x"],
    ["sbatch", "--wrap", "true"], ["sbatch", "--hold"], ["sbatch", "job.sh"],
])
def test_what_is_not_emulated_says_so(fake_slurm: FakeScheduler, argv: list[str]):
    result = run(*argv, input="#!/bin/sh\ntrue\n")
    assert result.returncode == 2
    assert "not emulated by pw_spawner's fake Slurm" in result.stderr
    assert fake_slurm.jobs() == []


def test_directives_only_from_the_leading_comment_block(fake_slurm: FakeScheduler,
                                                         tmp_path: Path):
    (tmp_path / "sub").mkdir()
    script = ("#!/bin/bash\n\n# a comment\n#SBATCH -p gpu\n#SBATCH --job-name fromscript\n"
              "#SBATCH --output=%x-%j.txt  # trailing comment\n"
              "pwd\n#SBATCH -p long\n")
    job_id = sbatch(script, "-J", "fromargv", "-D", "sub", cwd=tmp_path)
    record = fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert (record["partition"], record["name"]) == ("gpu", "fromargv")
    assert (tmp_path / "sub" / f"fromargv-{job_id}.txt").read_text() == f"{tmp_path / 'sub'}\n"


def test_finished_jobs_are_forgotten_after_min_job_age(fake_slurm: FakeScheduler,
                                                      monkeypatch: pytest.MonkeyPatch):
    job_id = sbatch("#!/bin/sh\ntrue\n")
    fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert squeue_line(job_id).startswith(f"{job_id}|COMPLETED|")
    monkeypatch.setenv("PW_FAKE_MIN_JOB_AGE", "0.2")
    time.sleep(0.3)
    assert run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i").returncode == 1
    assert run("scontrol", "-o", "show", "job").stdout == "No jobs in the system\n"
    assert run("scancel", job_id).returncode == 1


def test_squeue_start_is_the_end_of_the_pending_wait(fake_slurm: FakeScheduler):
    fake_slurm.set_knobs(PW_FAKE_PENDING_SECONDS=600)
    job_id = sbatch("#!/bin/sh\ntrue\n", "-J", "later")
    job = fake_slurm.job(job_id)
    start = run("squeue", "-h", "-j", job_id, "-o", "%S").stdout.strip()
    assert start == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(job["submit_time"] + 600))
    fake_slurm.set_knobs(PW_FAKE_PENDING_SECONDS=0)
    now = sbatch("#!/bin/sh\nsleep 30\n", "-J", "now")
    fake_slurm.wait_for_state(now, "RUNNING")
    started = fake_slurm.job(now)["start_time"]
    assert run("squeue", "-h", "-j", now, "-o", "%S").stdout.strip() == \
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
    run("scancel", now)

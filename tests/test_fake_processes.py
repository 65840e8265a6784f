"""How the fake schedulers' jobs run (pw_spawner.testing.fake.processes): the detached supervisor,
its end, cancelling with a grace, and jobs whose supervisor died. Driven through the fake Slurm."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.testing.fake import processes
from pw_spawner.testing.plugin import FakeScheduler


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def sbatch(script: str, *args: str) -> str:
    result = run("sbatch", "--parsable", *args, input=script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_submitting_returns_at_once_and_the_job_runs_in_its_own_session(fake_slurm: FakeScheduler,
                                                                        tmp_path: Path):
    started = time.monotonic()
    job_id = sbatch("#!/bin/sh\necho $$ > pid\nsleep 30 &\nsleep 1\n")
    assert time.monotonic() - started < 5  # the supervisor is detached: sbatch's pipes close
    job = fake_slurm.wait_for_state(job_id, "RUNNING")
    assert os.getsid(job["pid"]) == job["pid"]  # a session (and process group) of its own
    assert processes.pid_alive(job["supervisor_pid"], job["supervisor_start"])
    assert not processes.pid_alive(job["supervisor_pid"], (job["supervisor_start"] or 0) + 1)
    ended = fake_slurm.wait_for_state(job_id, "COMPLETED")
    # What the script left behind (sleep 30 &) is killed with it, as slurmstepd does.
    wait_until(lambda: not processes.pgid_alive(ended["pid"]), timeout=3)
    wait_until(lambda: not processes.pid_alive(job["supervisor_pid"]), timeout=3)


def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace(fake_slurm: FakeScheduler):
    job_id = sbatch("#!/bin/bash\ntrap '' TERM\necho ready\nwhile :; do sleep 0.1; done\n")
    job = fake_slurm.wait_for_state(job_id, "RUNNING")
    wait_until(lambda: "ready" in Path(job["stdout"]).read_text())
    started = time.monotonic()
    assert run("scancel", job_id).returncode == 0
    assert fake_slurm.job(job_id)["state"] == "CANCELLED"  # at once, while it still runs
    time.sleep(1)
    if time.monotonic() - started < processes.CANCEL_GRACE - 0.5:  # (a loaded machine may be later)
        assert processes.pgid_alive(job["pid"])  # SIGTERM ignored: it runs on within the grace
    wait_until(lambda: not processes.pgid_alive(job["pid"]), timeout=processes.CANCEL_GRACE + 5)
    assert time.monotonic() - started >= processes.CANCEL_GRACE - 0.5
    assert fake_slurm.wait_for_state(job_id, "CANCELLED")["exit_code"] == -signal.SIGKILL


def test_a_job_whose_supervisor_died_is_failed(fake_slurm: FakeScheduler):
    fake_slurm.set_knobs(PW_FAKE_PENDING_SECONDS=30)
    job_id = sbatch("#!/bin/sh\ntrue\n", "-J", "orphan")
    supervisor = fake_slurm.job(job_id)["supervisor_pid"]
    assert processes.pid_alive(supervisor)
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not processes.pid_alive(supervisor))
    line = run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i|%T|%r|%N|%j").stdout
    assert line == f"{job_id}|FAILED|NonZeroExitCode||orphan\n"
    assert fake_slurm.job(job_id)["lost"] is True


def test_a_missing_working_directory_sends_the_job_to_tmp(fake_slurm: FakeScheduler, tmp_path: Path):
    job_id = sbatch("#!/bin/sh\npwd\n", "--chdir", str(tmp_path / "gone"), "--output", str(tmp_path / "out"))
    fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert (tmp_path / "out").read_text() == (
        f"slurmstepd: error: couldn't chdir to `{tmp_path / 'gone'}': No such file or directory: "
        "going to /tmp instead\n/tmp\n")

"""The fake Slurm/PBS schedulers, driven through their wrapper scripts as the spawner drives them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pw_spawner.testing import fake_scheduler as fs
from pw_spawner.testing.plugin import FakeScheduler, install_fake_scheduler

SQUEUE_FORMAT = "%i|%T|%r|%N|%j"


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs submitted without a cwd write slurm-<id>.out / <name>.o<id> where they were submitted."""
    monkeypatch.chdir(tmp_path)


def run(*argv: str, input: str | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30,
                          cwd=cwd, env=env)


def sbatch(script: str, *args: str, cwd: Path | None = None) -> str:
    result = run("sbatch", "--parsable", *args, input=script, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def squeue_line(job_id: str) -> str:
    result = run("squeue", "-h", "-t", "all", "-j", job_id, "-o", SQUEUE_FORMAT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# --------------------------------------------------------------------------- Slurm


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
    assert stat.S_IMODE(os.stat(record["script"]).st_mode) == 0o600
    assert record["script"].startswith(str(fake_slurm.state_dir))
    second = run("sbatch", input="#!/bin/sh\ntrue\n", cwd=tmp_path)
    assert second.stdout == "Submitted batch job 1001\n"
    fake_slurm.wait_for_state(1001, "COMPLETED")
    assert (tmp_path / "slurm-1001.out").exists()


def test_pending_then_running_then_cancelled(fake_slurm: FakeScheduler,
                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PW_FAKE_PENDING_SECONDS", "1")
    first = sbatch("#!/bin/sh\nsleep 30\n", "-J", "sleeper")
    second = sbatch("#!/bin/sh\nsleep 30\n", "--job-name=sleeper", "--partition", "gpu")
    third = sbatch("#!/bin/sh\nsleep 30\n", "--job-name=sleeper")
    assert squeue_line(first) == f"{first}|PENDING|Resources||sleeper"
    assert squeue_line(third) == f"{third}|PENDING|Priority||sleeper"
    assert squeue_line(second) == f"{second}|PENDING|Resources||sleeper"  # alone in gpu
    found = run("squeue", "-h", "-n", "sleeper", "-o", "%i").stdout.split()
    assert found == [first, second, third]

    started = time.monotonic()
    cancel = run("scancel", third)
    assert (cancel.returncode, cancel.stdout, cancel.stderr) == (0, "", "")
    assert time.monotonic() - started < 1.5
    assert squeue_line(third) == f"{third}|CANCELLED|None||sleeper"

    running = fake_slurm.wait_for_state(first, "RUNNING")
    assert squeue_line(first) == f"{first}|RUNNING|None|localhost|sleeper"
    shown = run("scontrol", "show", "job", first).stdout
    assert f"JobId={first} JobName=sleeper" in shown
    assert "JobState=RUNNING Reason=None Dependency=(null)" in shown
    assert "NodeList=localhost" in shown and "BatchHost=localhost" in shown
    assert fake_slurm.job(third)["pid"] is None  # cancelled while pending: never ran

    assert run("scancel", first).returncode == 0
    assert squeue_line(first).startswith(f"{first}|CANCELLED|")
    wait_until(lambda: not fs.pgid_alive(running["pid"]), timeout=5)
    assert fake_slurm.wait_for_state(first, "CANCELLED")["exit_code"] == -15

    # The fixture's teardown does this; here it is checked on the job still running.
    job = fake_slurm.wait_for_state(second, "RUNNING")
    fake_slurm.kill_all()
    assert not fs.pgid_alive(job["pid"])
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

    for argv in (["squeue", "-h", "-j", "4242"], ["scontrol", "show", "job", "4242"]):
        result = run(*argv)
        assert (result.returncode, result.stderr) == (
            1, "slurm_load_jobs error: Invalid job id specified\n")
    several = run("squeue", "-h", "-t", "all", "-j", "4242,4243", "-o", SQUEUE_FORMAT)
    assert (several.returncode, several.stdout, several.stderr) == (0, "", "")
    cancel = run("scancel", "4242")
    assert (cancel.returncode, cancel.stderr) == (
        1, "scancel: error: Kill job error on job id 4242: Invalid job id specified\n")
    sacct = run("sacct", "-n", "-P", "-X", "-j", "4242", "-o", "JobID,State")
    assert (sacct.returncode, sacct.stdout, sacct.stderr) == (
        1, "", "Slurm accounting storage is disabled\n")

    monkeypatch.setenv("PW_FAKE_SUBMIT_FAIL", "sbatch: error: Batch job submission failed: "
                                              "Unable to contact slurm controller")
    refused = run("sbatch", "--parsable", input="#!/bin/sh\ntrue\n")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == ("sbatch: error: Batch job submission failed: Unable to contact "
                              "slurm controller\n")
    monkeypatch.setenv("PW_FAKE_QUERY_FAIL", "1")
    down = run("squeue", "-h", "-o", SQUEUE_FORMAT)
    assert (down.returncode, down.stderr) == (
        1, "slurm_load_jobs error: Socket timed out on send/recv operation\n")
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
    header = run("squeue").stdout.splitlines()[0]
    assert header == ("             JOBID PARTITION     NAME     USER ST       TIME  NODES "
                      "NODELIST(REASON)")


def test_finished_jobs_are_forgotten_after_min_job_age(fake_slurm: FakeScheduler,
                                                      monkeypatch: pytest.MonkeyPatch):
    job_id = sbatch("#!/bin/sh\ntrue\n")
    fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert squeue_line(job_id).startswith(f"{job_id}|COMPLETED|")
    monkeypatch.setenv("PW_FAKE_MIN_JOB_AGE", "0.2")
    time.sleep(0.3)
    assert run("squeue", "-h", "-t", "all", "-j", job_id).returncode == 1
    assert run("scancel", job_id).returncode == 1


def test_concurrent_submits_get_distinct_ids(fake_slurm: FakeScheduler):
    ids: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        for _ in range(3):
            job_id = sbatch("#!/bin/sh\ntrue\n")
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == [str(n) for n in range(1000, 1006)]
    for job_id in ids:
        fake_slurm.wait_for_state(job_id, "COMPLETED")
    assert [job["id"] for job in fake_slurm.jobs()] == list(range(1000, 1006))


# --------------------------------------------------------------------------- PBS


def qstat_json(*ids: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    result = run("qstat", "-f", "-F", "json", "-x", *ids)
    return json.loads(result.stdout), result


def test_pbs_pro_job_lifecycle(fake_pbs: FakeScheduler, tmp_path: Path):
    script = ("#!/bin/bash\n#PBS -N pjob\n#PBS -l select=1:ncpus=2:mem=4gb\n#PBS -j oe\n"
              "echo $PBS_JOBID $PBS_JOBNAME $PBS_O_WORKDIR\nsleep 0.5\n")
    submitted = run("qsub", input=script, cwd=tmp_path)
    assert (submitted.returncode, submitted.stdout) == (0, "1000.fakepbs\n")
    fake_pbs.wait_for_state(1000, "RUNNING")
    data, _ = qstat_json("1000.fakepbs")
    job = data["Jobs"]["1000.fakepbs"]
    assert (data["pbs_server"], job["job_state"], job["exec_host"]) == ("fakepbs", "R",
                                                                         "localhost/0*2")
    assert job["Resource_List"]["ncpus"] == 2
    assert job["Resource_List"]["select"] == "1:ncpus=2:mem=4gb"
    # Output is spooled while the job runs and delivered when it ends, as PBS does.
    assert not (tmp_path / "pjob.o1000").exists()
    fake_pbs.wait_for_state(1000, "COMPLETED")
    data, result = qstat_json("1000.fakepbs", "4242")
    assert result.returncode == 153
    assert result.stderr == "qstat: Unknown Job Id 4242.fakepbs\n"
    job = data["Jobs"]["1000.fakepbs"]
    assert (job["job_state"], job["Exit_status"], job["substate"]) == ("F", 0, 92)
    assert (tmp_path / "pjob.o1000").read_text() == f"1000.fakepbs pjob {tmp_path}\n"
    not_history = run("qstat", "-f", "1000")
    assert not_history.returncode == 35
    assert not_history.stderr == ("qstat: 1000.fakepbs Job has finished, use -x or -H to "
                                  "obtain historical job information\n")
    text = run("qstat", "-fx", "1000").stdout
    assert text.startswith("Job Id: 1000.fakepbs\n    Job_Name = pjob\n")
    assert "    job_state = F\n" in text and "    Exit_status = 0\n" in text
    # Long values wrap as qstat's prt_attr() does: continuation lines start with a tab.
    for line in text.splitlines():
        assert line.startswith(("Job Id:", "    ", "\t")) or line == ""
        assert len(line.expandtabs(1)) <= 80
    deleted = run("qdel", "1000.fakepbs")
    assert (deleted.returncode, deleted.stderr) == (35, "qdel: Job has finished 1000.fakepbs\n")
    unknown = run("qdel", "4242")
    assert (unknown.returncode, unknown.stderr) == (153, "qdel: Unknown Job Id 4242.fakepbs\n")
    bad_queue = run("qsub", "-q", "nosuch", input="#!/bin/sh\ntrue\n")
    assert (bad_queue.returncode, bad_queue.stderr) == (170, "qsub: Unknown queue\n")


def test_pbs_pro_qdel_and_qselect(fake_pbs: FakeScheduler):
    assert run("qsub", "-N", "sleeper", input="#!/bin/sh\nsleep 30\n").returncode == 0
    running = fake_pbs.wait_for_state(1000, "RUNNING")
    assert run("qselect", "-N", "sleeper").stdout == "1000.fakepbs\n"
    assert run("qselect", "-N", "other").stdout == ""
    started = time.monotonic()
    deleted = run("qdel", "1000.fakepbs")
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert time.monotonic() - started < 1.5
    wait_until(lambda: qstat_json("1000")[0]["Jobs"]["1000.fakepbs"]["job_state"] == "F")
    job = qstat_json("1000")[0]["Jobs"]["1000.fakepbs"]
    assert job["Exit_status"] == 271  # 256 + SIGTERM
    assert not fs.pgid_alive(running["pid"])
    assert run("qselect", "-N", "sleeper").stdout == ""


def test_torque_text_format_and_errors(fake_torque: FakeScheduler, tmp_path: Path):
    submitted = run("qsub", "-l", "nodes=1:ppn=2", input="#!/bin/sh\nexit 4\n", cwd=tmp_path)
    assert submitted.stdout == "1000.fakepbs\n"
    fake_torque.wait_for_state(1000, "FAILED")
    text = run("qstat", "-f", "1000.fakepbs").stdout
    assert text.startswith("Job Id: 1000.fakepbs\n    Job_Name = STDIN\n")
    for expected in ("    job_state = C\n", "    exit_status = 4\n",
                     "    exec_host = localhost/0-1\n", "    queue = workq\n"):
        assert expected in text
    assert "Exit_status" not in text  # Pro's spelling
    no_json = run("qstat", "-f", "-F", "json", "1000")
    assert no_json.returncode == 2
    assert no_json.stderr.startswith("qstat: invalid option -- 'F'\nusage: \n")
    unknown = run("qstat", "-f", "4242")
    assert (unknown.returncode, unknown.stderr) == (153,
                                                   "qstat: Unknown Job Id Error 4242.fakepbs\n")
    bad_queue = run("qsub", "-q", "nosuch", input="#!/bin/sh\ntrue\n")
    assert bad_queue.returncode == 170
    assert bad_queue.stderr == "qsub: submit error (Unknown queue MSG=requested queue not found)\n"
    assert (tmp_path / "STDIN.o1000").exists() and (tmp_path / "STDIN.e1000").exists()


def test_install_fake_scheduler_outside_pytest(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown scheduler flavor"):
        install_fake_scheduler(tmp_path / "x", "lsf")
    env = install_fake_scheduler(tmp_path / "bin", "torque")
    assert env["PW_FAKE_SCHED_DIR"] == str(tmp_path / "bin" / "state")
    assert env["PW_FAKE_PBS_FLAVOR"] == "torque"
    for name in fs.PBS_COMMANDS:
        assert os.access(tmp_path / "bin" / name, os.X_OK)
    # A caller that passes a trimmed environment (no PYTHONPATH, no PW_FAKE_*) still works.
    trimmed = {"PATH": env["PATH"]}
    submitted = run("qsub", input="#!/bin/sh\ntrue\n", env=trimmed, cwd=tmp_path)
    assert (submitted.returncode, submitted.stdout) == (0, "1000.fakepbs\n"), submitted.stderr
    store = fs.JobStore(env["PW_FAKE_SCHED_DIR"])
    wait_until(lambda: (store.load(1000) or {}).get("state") == "COMPLETED")
    assert "job_state = C" in run("qstat", "-f", "1000", env=trimmed).stdout


def test_knobs_from_the_state_directory(fake_slurm: FakeScheduler, monkeypatch: pytest.MonkeyPatch):
    """set_knobs reaches commands whose environment has no knob (the spawner's are allow-listed);
    a knob in the command's own environment still wins."""
    fake_slurm.set_knobs(PW_FAKE_PENDING_SECONDS=30, PW_FAKE_PENDING_REASON="QOSMaxJobsPerUserLimit")
    queued = sbatch("#!/bin/sh\nsleep 30\n", "-J", "knobbed")
    assert squeue_line(queued) == f"{queued}|PENDING|QOSMaxJobsPerUserLimit||knobbed"
    monkeypatch.setenv("PW_FAKE_PENDING_REASON", "Priority")
    second = sbatch("#!/bin/sh\nsleep 30\n", "-J", "knobbed")
    assert squeue_line(second) == f"{second}|PENDING|Priority||knobbed"
    with pytest.raises(ValueError, match="unknown knobs"):
        fake_slurm.set_knobs(PW_FAKE_NOSUCH=1)

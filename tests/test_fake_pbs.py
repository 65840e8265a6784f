"""The fake PBS Pro and Torque (pw_spawner.testing.fake.pbs), driven through their wrappers as the
spawner drives qsub, qstat, qdel and qselect."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.testing.fake import processes
from pw_spawner.testing.plugin import FakeScheduler


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs submitted without -o write <name>.o<id> where they were submitted."""
    monkeypatch.chdir(tmp_path)


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
    assert job["comment"].startswith("Job run at ")
    # Output is spooled while the job runs and delivered when it ends, as PBS does.
    assert not (tmp_path / "pjob.o1000").exists()
    fake_pbs.wait_for_state(1000, "COMPLETED")
    data, result = qstat_json("1000.fakepbs", "4242")
    assert result.returncode == 153
    assert result.stderr == "qstat: Unknown Job Id 4242.fakepbs\n"
    job = data["Jobs"]["1000.fakepbs"]
    assert (job["job_state"], job["Exit_status"]) == ("F", 0)
    assert job["comment"].endswith(" and finished")
    assert (tmp_path / "pjob.o1000").read_text() == f"1000.fakepbs pjob {tmp_path}\n"
    not_history = run("qstat", "-f", "1000")
    assert not_history.returncode == 35
    assert not_history.stderr == ("qstat: 1000.fakepbs Job has finished, use -x or -H to "
                                  "obtain historical job information\n")
    text = run("qstat", "-fx", "1000").stdout
    assert text.startswith("Job Id: 1000.fakepbs\n    Job_Name = pjob\n")
    assert "    job_state = F\n" in text and "    Exit_status = 0\n" in text
    # Long values wrap as qstat's prt_attr() does: continuation lines start with a tab.
    assert "\n\t" in text
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
    user = running["user"]
    assert run("qselect", "-N", "sleeper", "-u", user).stdout == "1000.fakepbs\n"
    assert run("qselect", "-N", "sleeper", "-u", "somebody-else").stdout == ""
    assert run("qselect", "-N", "other").stdout == ""
    started = time.monotonic()
    deleted = run("qdel", "1000.fakepbs")
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert time.monotonic() - started < 1.5
    wait_until(lambda: qstat_json("1000")[0]["Jobs"]["1000.fakepbs"]["job_state"] == "F")
    job = qstat_json("1000")[0]["Jobs"]["1000.fakepbs"]
    assert job["Exit_status"] == 271  # 256 + SIGTERM
    assert not processes.pgid_alive(running["pid"])
    assert run("qselect", "-N", "sleeper").stdout == ""


def test_pbs_pro_walltime_and_errors(fake_pbs: FakeScheduler):
    submitted = run("qsub", "-l", "walltime=1", input="#!/bin/sh\nsleep 30\n")
    assert submitted.returncode == 0, submitted.stderr
    fake_pbs.wait_for_state(1000, "TIMEOUT", timeout=8)
    wait_until(lambda: qstat_json("1000")[0]["Jobs"]["1000.fakepbs"].get("Exit_status") == -29)
    bad_name = run("qsub", "-N", "two words", input="#!/bin/sh\ntrue\n")
    assert (bad_name.returncode, bad_name.stderr) == (2, "qsub: illegal -N value\n")
    bad_walltime = run("qsub", input="#!/bin/sh\n#PBS -l walltime=a:b\ntrue\n")
    assert (bad_walltime.returncode, bad_walltime.stderr) == (
        166, "qsub: Illegal attribute or resource value Resource_List.walltime\n")
    fake_pbs.set_knobs(PW_FAKE_QUEUES="workq,full")
    full = run("qsub", "-q", "full", input="#!/bin/sh\ntrue\n")
    assert (full.returncode, full.stderr) == (190, "qsub: Maximum number of jobs already in queue full\n")
    fake_pbs.set_knobs(PW_FAKE_QUERY_FAIL=1)
    down = run("qstat", "-f", "-F", "json", "-x", "1000")
    assert (down.returncode, down.stderr) == (1, "qstat: cannot connect to server fakepbs (errno=111)\n")
    assert [job["id"] for job in fake_pbs.jobs()] == [1000]


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
    assert (no_json.returncode, no_json.stderr) == (2, "qstat: invalid option -- 'F'\n")
    unknown = run("qstat", "-f", "4242")
    assert (unknown.returncode, unknown.stderr) == (153,
                                                   "qstat: Unknown Job Id Error 4242.fakepbs\n")
    finished = run("qdel", "1000")
    assert (finished.returncode, finished.stderr) == (
        156, "qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE 1000.fakepbs\n")
    bad_queue = run("qsub", "-q", "nosuch", input="#!/bin/sh\ntrue\n")
    assert bad_queue.returncode == 170
    assert bad_queue.stderr == "qsub: submit error (Unknown queue MSG=requested queue not found)\n"
    assert (tmp_path / "STDIN.o1000").exists() and (tmp_path / "STDIN.e1000").exists()


@pytest.mark.parametrize("argv", [
    ["qstat"], ["qstat", "-f", "-F", "dsv", "1000"], ["qstat", "-Q"], ["qstat", "-f", "workq"],
    ["qsub", "-I"], ["qsub", "-h"], ["qsub", "job.sh"], ["qdel", "-W", "force", "1000"],
    ["qselect", "-s", "R"],
])
def test_what_is_not_emulated_says_so(fake_pbs: FakeScheduler, argv: list[str]):
    result = run(*argv, input="#!/bin/sh\ntrue\n")
    assert result.returncode == 2
    assert "not emulated by pw_spawner's fake PBS" in result.stderr
    assert fake_pbs.jobs() == []


def test_a_queued_job_has_the_schedulers_estimated_start(fake_pbs: FakeScheduler, tmp_path: Path):
    fake_pbs.set_knobs(PW_FAKE_PENDING_SECONDS=600)
    submitted = run("qsub", input="#!/bin/bash\ntrue\n", cwd=tmp_path)
    job_id = submitted.stdout.strip()
    data, _ = qstat_json(job_id)
    job = data["Jobs"][job_id]
    assert job["job_state"] == "Q"
    submit = time.mktime(time.strptime(job["ctime"], "%a %b %d %H:%M:%S %Y"))
    assert job["estimated"]["start_time"] == time.ctime(submit + 600)
    run("qdel", job_id)

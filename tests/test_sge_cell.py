"""The real single-host Grid Engine cell used by the integration tests works as a scheduler
module will expect.

Skipped when Grid Engine cannot be started here (not root, packages missing), unless ``CI``,
``PW_REQUIRE_ALL=1`` or ``PW_REQUIRE_SGE=1`` is set: then it fails, so a run cannot silently
lose this coverage.

Real behaviour seen on Debian bookworm, Son of Grid Engine 8.1.9 (gridengine 8.1.9+dfsg-10+b1),
host ``vm`` (the recorded outputs are in tests/data/sge/, see its README.md):

- ``qsub -terse`` prints the bare job id (``2``). Root may not submit: rc 1, stderr
  "Unable to run job: job rejected: your user id 0 is lower than minimum user id 1000 of
  cluster configuration" / "Exiting.".
- ``qstat -xml -u USER``: running jobs (``r``, ``t`` while being started, ``dr`` after qdel)
  under ``<queue_info>`` as ``<job_list state="running">`` with ``<queue_name>all.q@vm``;
  pending ones (``qw``, ``hqw`` when held) under ``<job_info>`` as ``<job_list
  state="pending">`` with an empty ``<queue_name>``; no jobs: both sections empty.
- Refused at submission (rc 1, stderr, then "Exiting."): ``-q nosuch.q`` -> "Unable to run job:
  Job was rejected because job requests unknown queue "nosuch.q""; ``-pe nosuch 1`` -> "Unable
  to run job: job rejected: the requested parallel environment "nosuch" does not exist";
  ``-l nosuchres=1`` -> "Unable to run job: unknown resource "nosuchres"".
- Accepted but never schedulable: ``-pe smp 99`` and ``-l h_vmem=999G`` stay ``qw``; the reason
  is the "scheduling info:" of ``qstat -j ID`` ("cannot run in PE "smp" because it only offers
  0 slots"; "(-l h_vmem=999G) cannot run at host "vm" because it offers only
  hc:h_vmem=11.770G", the numbers depending on what else runs; "Job is in hold state" for
  ``qsub -h``), and ``<MES_message>`` in ``qstat -xml -j ID``. With ``qsub -w e`` the
  same requests are refused instead: rc 1, "Unable to run job: error: no suitable queues".
- ``qdel ID`` by the owner: rc 0, "pwtestuser has registered the job ID for deletion"; the job
  shows ``dr`` for ~1-3 s, then leaves qstat; ``qacct`` then says "failed 100 : assumedly after
  job" and "exit_status 137".
- A job that has ended: ``qstat -j ID`` rc 1, stderr "Following jobs do not exist: " and the id
  on the next line; ``qstat -xml -j ID`` rc 0 with ``<unknown_jobs><ST_name>ID</ST_name>``.
  ``qacct -j ID`` works as soon as the job has left qstat (accounting_flush_time 0); for an
  id it has never seen: rc 1, "error: job id 999999 not found".
- Jobs: the queue's shell_start_mode is posix_compliant, so a script's ``#!`` line is ignored
  and /bin/sh (dash) runs it unless ``qsub -S /bin/bash``; a job starts in the owner's $HOME
  unless ``-cwd``/``-wd DIR``; its PATH is "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
  (not the submitter's; the submitter's is in SGE_O_PATH); TMPDIR is /tmp/JOBID.1.all.q.
- Timings: a job runs ~1 s after submission (schedule_interval 1 s); the whole module ~35 s,
  the cell's start ~2.5 s and stop ~2 s of it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sge_cell import CELL_NAME, PARALLEL_ENVIRONMENT, QUEUE, SGECell, _cell_pids
from support.slurm_cluster import ensure_user

pytestmark = pytest.mark.sge

TEST_USER = "pwtestuser"


@pytest.fixture
def cell(sge_cell: SGECell) -> SGECell:
    """The session's cell (tests/conftest.py starts one for every Grid Engine test)."""
    return sge_cell


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory of the test user's, for job output."""
    user = ensure_user(TEST_USER)
    d = Path(tempfile.mkdtemp(prefix="pwtest-sge-", dir=user.pw_dir))
    os.chown(d, user.pw_uid, user.pw_gid)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _qsub(cell: SGECell, *args: str, script: str = "true\n") -> str:
    r = cell.run_as(TEST_USER, "qsub", "-terse", *args, input=script)
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.strip()
    assert job_id.isdigit(), r.stdout
    return job_id


def _xml_jobs(cell: SGECell, user: str = TEST_USER) -> tuple[str, dict[str, dict[str, str]]]:
    """``qstat -xml -u user``: its text, and per job id the job_list's section, state
    attribute and child elements."""
    r = cell.run("qstat", "-xml", "-u", user)
    assert r.returncode == 0, r.stderr
    root = ET.fromstring(r.stdout)
    assert root.tag == "job_info"
    jobs = {}
    for section in ("queue_info", "job_info"):
        for jl in root.findall(f"{section}/job_list"):
            fields = {child.tag: (child.text or "") for child in jl}
            fields["section"] = section
            fields["list_state"] = jl.get("state", "")
            jobs[fields["JB_job_number"]] = fields
    return r.stdout, jobs


def _wait_gone(cell: SGECell, job_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_id not in cell.job_ids():
            return
        time.sleep(0.1)
    info = cell.run("qstat", "-j", job_id)
    pytest.fail(f"job {job_id} still in qstat after {timeout} s\n{info.stdout}{info.stderr}")


def _wait_state(cell: SGECell, job_id: str, wanted: set[str], timeout: float = 20) -> list[str]:
    """Poll qstat -xml until the job's state is in ``wanted``; every distinct state seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, jobs = _xml_jobs(cell)
        st = jobs.get(job_id, {}).get("state", "")
        if st and (not seen or seen[-1] != st):
            seen.append(st)
        if st in wanted:
            return seen
        time.sleep(0.1)
    info = cell.run("qstat", "-j", job_id)
    pytest.fail(f"job {job_id} never reached {wanted}; seen {seen}\n{info.stdout}{cell.logs()}")


def _scheduling_info(cell: SGECell, job_id: str, timeout: float = 10) -> str:
    """The 'scheduling info:' of ``qstat -j`` once the scheduler has written one."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = cell.run("qstat", "-j", job_id).stdout
        m = re.search(r"^scheduling info:\s+(.*(?:\n\s+.*)*)", out, re.M)
        if m:
            return " ".join(m.group(1).split())
        time.sleep(0.2)
    pytest.fail(f"no scheduling info for job {job_id} after {timeout} s:\n{out}")


def _job_pids(job_id: str) -> list[int]:
    """Live processes whose environment says JOB_ID=<job_id> (Grid Engine sets it)."""
    needle = f"JOB_ID={job_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_qhost_lists_this_host_with_its_cpus(cell: SGECell) -> None:
    r = cell.run("qhost", "-xml")
    assert r.returncode == 0, r.stderr
    hosts = {h.get("name"): h for h in ET.fromstring(r.stdout).findall("host")}
    assert set(hosts) == {"global", cell.hostname}
    values = {v.get("name"): v.text for v in hosts[cell.hostname].findall("hostvalue")}
    assert values["num_proc"] == str(os.cpu_count())
    assert values["arch_string"] == "lx-amd64" or values["arch_string"].startswith("lx-")
    assert values["load_avg"] not in (None, "-")
    # Plain qhost: "vm  lx-amd64  2  1  2  2  4.23  23.5G  386.7M  0.0  0.0"
    plain = [line.split() for line in cell.run("qhost").stdout.splitlines()]
    row = next(f for f in plain if f and f[0] == cell.hostname)
    assert row[2] == str(os.cpu_count())
    # The queue, the parallel environment and the hosts as configured.
    assert cell.qconf("-sql").split() == [QUEUE]
    assert cell.qconf("-spl").split() == [PARALLEL_ENVIRONMENT]
    queue = dict(line.split(None, 1) for line in cell.qconf("-sq", QUEUE).splitlines())
    assert queue["slots"].strip() == str(cell.cpus)
    assert queue["hostlist"].strip() == cell.hostname
    assert queue["pe_list"].strip() == PARALLEL_ENVIRONMENT
    pe = dict(line.split(None, 1) for line in cell.qconf("-sp", PARALLEL_ENVIRONMENT).splitlines())
    assert pe["allocation_rule"].strip() == "$pe_slots"
    assert cell.qconf("-sel").split() == [cell.hostname]
    assert cell.hostname in cell.qconf("-ss").split()
    # The queue instance is fine (no state letters) and empty.
    line = next(x for x in cell.run("qstat", "-f").stdout.splitlines() if x.startswith(QUEUE))
    assert line.split()[:3] == [f"{QUEUE}@{cell.hostname}", "BIP", f"0/0/{cell.cpus}"]
    assert len(line.split()) == 5, f"queue instance has states: {line}"
    assert cell.env["SGE_CELL"] == CELL_NAME


def test_user_job_runs_as_that_user_and_writes_output(cell: SGECell, workdir: Path) -> None:
    out = workdir / "hello.out"
    job_id = _qsub(
        cell, "-N", "pwhello", "-o", str(out), "-j", "y",
        script='id -un\necho "$JOB_ID $JOB_NAME $NSLOTS $SGE_CELL"\necho to-stderr >&2\nsleep 1\n',
    )
    seen: list[str] = []
    texts = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text, jobs = _xml_jobs(cell)
        job = jobs.get(job_id)
        if job is None:
            break
        if not seen or seen[-1] != job["state"]:
            seen.append(job["state"])
            texts.append(text)
        if job["state"] == "r":
            assert job["section"] == "queue_info" and job["list_state"] == "running"
            assert job["queue_name"] == f"{QUEUE}@{cell.hostname}"
            assert job["JB_owner"] == TEST_USER and job["JB_name"] == "pwhello"
            assert job["slots"] == "1"
        elif job["state"] == "qw":
            assert job["section"] == "job_info" and job["list_state"] == "pending"
            assert job["queue_name"] == ""
        time.sleep(0.05)
    else:
        pytest.fail(f"job {job_id} did not end; seen {seen}")
    assert "r" in seen, seen
    assert set(seen) <= {"qw", "t", "r"}, seen
    assert out.read_text().splitlines() == [TEST_USER, f"{job_id} pwhello 1 {CELL_NAME}", "to-stderr"]
    assert out.stat().st_uid == ensure_user(TEST_USER).pw_uid


def test_job_shell_environment_and_directory(cell: SGECell, workdir: Path) -> None:
    """shell_start_mode posix_compliant: the #! line is ignored, the queue's /bin/sh runs the
    script unless ``-S``; the job starts in $HOME unless ``-cwd``/``-wd``; PATH is Grid
    Engine's own, not the submitter's (no ``-V``)."""
    script = '#!/bin/bash\necho "$(readlink /proc/$$/exe) ${BASH_VERSION:+bash}"\npwd\necho "$PATH"\n'
    jobs = {
        "plain": [],
        "S": ["-S", "/bin/bash"],
        "wd": ["-wd", str(workdir)],
    }
    ids = {name: _qsub(cell, "-N", name, "-o", str(workdir / f"{name}.out"), "-j", "y", *extra,
                       script=script) for name, extra in jobs.items()}
    for job_id in ids.values():
        _wait_gone(cell, job_id)
    home = ensure_user(TEST_USER).pw_dir
    sge_path = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
    out = {name: (workdir / f"{name}.out").read_text().splitlines() for name in jobs}
    assert out["plain"] == [f"{os.path.realpath('/bin/sh')} ", home, sge_path]
    assert out["S"] == [f"{os.path.realpath('/bin/bash')} bash", home, sge_path]
    assert out["wd"][1] == str(workdir)


def test_held_job_is_pending_then_runs(cell: SGECell, workdir: Path) -> None:
    job_id = _qsub(cell, "-h", "-N", "held", "-o", str(workdir / "held.out"), "-j", "y",
                   script="sleep 30\n")
    try:
        _, jobs = _xml_jobs(cell)
        job = jobs[job_id]
        assert (job["section"], job["list_state"], job["state"]) == ("job_info", "pending", "hqw")
        assert job["queue_name"] == "" and "JB_submission_time" in job
        r = cell.run_as(TEST_USER, "qrls", job_id)
        assert r.returncode == 0, r.stderr
        seen = _wait_state(cell, job_id, {"r"}, timeout=15)
        assert set(seen) <= {"hqw", "qw", "t", "r"}, seen
        _, jobs = _xml_jobs(cell)
        assert jobs[job_id]["section"] == "queue_info" and "JAT_start_time" in jobs[job_id]
    finally:
        cell.run("qdel", job_id)
    _wait_gone(cell, job_id)


def test_parallel_environment_and_limits_are_accepted(cell: SGECell, workdir: Path) -> None:
    out = workdir / "pe.out"
    job_id = _qsub(
        cell, "-pe", PARALLEL_ENVIRONMENT, "2", "-l", "h_vmem=1G,h_rt=00:05:00", "-N", "pejob",
        "-o", str(out), "-j", "y",
        script='echo "$NSLOTS $PE"\nulimit -v\nsleep 2\n',
    )
    _wait_state(cell, job_id, {"r"})
    _, jobs = _xml_jobs(cell)
    assert jobs[job_id]["slots"] == "2"
    info = cell.run("qstat", "-j", job_id).stdout
    assert re.search(r"^hard resource_list:\s+h_vmem=1G,h_rt=300$", info, re.M), info
    assert re.search(r"^parallel environment:\s+smp range: 2$", info, re.M), info
    _wait_gone(cell, job_id)
    # h_vmem is per slot: the job's address-space limit is 2 x 1G (in KiB).
    assert out.read_text().splitlines() == ["2 smp", str(2 * 1024 * 1024)]


def test_impossible_requests(cell: SGECell) -> None:
    # Refused by qsub, with a message.
    refused = {
        ("-q", "nosuch.q"): 'Job was rejected because job requests unknown queue "nosuch.q"',
        ("-pe", "nosuch", "1"): 'job rejected: the requested parallel environment "nosuch" does not exist',
        ("-l", "nosuchres=1"): 'unknown resource "nosuchres"',
        ("-w", "e", "-pe", PARALLEL_ENVIRONMENT, "99"): "error: no suitable queues",
        ("-w", "e", "-l", "h_vmem=999G"): "error: no suitable queues",
    }
    for args, message in refused.items():
        r = cell.run_as(TEST_USER, "qsub", "-terse", *args, "-o", "/dev/null", "-j", "y",
                        input="true\n")
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stdout == ""
        assert r.stderr == f"Unable to run job: {message}\nExiting.\n", (args, r.stderr)
    # Root is refused whatever it asks for.
    r = cell.run("qsub", "-terse", "-o", "/dev/null", "-j", "y", input="true\n")
    assert r.returncode == 1
    assert "your user id 0 is lower than minimum user id 1000" in r.stderr
    # Accepted, then pending for ever, with the reason in qstat -j.
    pending = {
        ("-pe", PARALLEL_ENVIRONMENT, "99"): 'cannot run in PE "smp" because it only offers',
        ("-l", "h_vmem=999G"): f'(-l h_vmem=999G) cannot run at host "{cell.hostname}" because '
        "it offers only hc:h_vmem=",
    }
    ids = {args: _qsub(cell, *args, "-o", "/dev/null", "-j", "y") for args in pending}
    try:
        for args, reason in pending.items():
            info = _scheduling_info(cell, ids[args])
            assert reason in info, (args, info)
            _, jobs = _xml_jobs(cell)
            assert jobs[ids[args]]["state"] == "qw"
            detail = cell.run("qstat", "-xml", "-j", ids[args])
            messages = [m.text or "" for m in ET.fromstring(detail.stdout).iter("MES_message")]
            assert any(reason in m for m in messages), messages
    finally:
        cell.run("qdel", *ids.values())
    for job_id in ids.values():
        _wait_gone(cell, job_id)


def test_qdel_ends_a_running_job(cell: SGECell) -> None:
    job_id = _qsub(cell, "-N", "sleeper", "-o", "/dev/null", "-j", "y", script="sleep 300\n")
    _wait_state(cell, job_id, {"r"})
    deadline = time.monotonic() + 10
    while not _job_pids(job_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _job_pids(job_id), "the running job has no process"
    # A job that requests no h_vmem keeps running (with h_vmem's default 0 as a consumable,
    # execd would kill it within a second for exceeding "limit: 0").
    time.sleep(2)
    _, jobs = _xml_jobs(cell)
    assert jobs[job_id]["state"] == "r", jobs.get(job_id)
    assert _job_pids(job_id)
    r = cell.run_as(TEST_USER, "qdel", job_id)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{TEST_USER} has registered the job {job_id} for deletion"
    _wait_gone(cell, job_id, timeout=15)
    deadline = time.monotonic() + 5
    while _job_pids(job_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _job_pids(job_id), "the job's processes outlived qdel"
    acct = _qacct(cell, job_id)
    assert re.search(r"^failed\s+100 : assumedly after job", acct, re.M), acct
    assert re.search(r"^exit_status\s+137", acct, re.M), acct


def _qacct(cell: SGECell, job_id: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = cell.run("qacct", "-j", job_id)
        if r.returncode == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 0, f"qacct -j {job_id}: {r.stdout}{r.stderr}"
    return r.stdout


def test_finished_job_leaves_qstat_and_is_in_qacct(cell: SGECell) -> None:
    job_id = _qsub(cell, "-N", "quick", "-o", "/dev/null", "-j", "y", script="exit 3\n")
    _wait_gone(cell, job_id)
    r = cell.run("qstat", "-j", job_id)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == f"Following jobs do not exist: \n{job_id}\n"
    x = cell.run("qstat", "-xml", "-j", job_id)
    assert x.returncode == 0
    unknown = ET.fromstring(x.stdout)
    assert unknown.tag == "unknown_jobs" and unknown.findtext("ST_name") == job_id
    # qstat -u lists nothing for the user now: both sections empty.
    text, jobs = _xml_jobs(cell)
    assert jobs == {}, text
    acct = _qacct(cell, job_id)
    fields = dict(line.split(None, 1) for line in acct.splitlines()[1:] if " " in line)
    assert fields["jobnumber"].strip() == job_id
    assert fields["owner"].strip() == TEST_USER
    assert fields["jobname"].strip() == "quick"
    assert fields["qname"].strip() == QUEUE
    assert fields["hostname"].strip() == cell.hostname
    assert fields["failed"].strip() == "0"
    assert fields["exit_status"].strip() == "3"
    r = cell.run("qacct", "-j", "999999")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: job id 999999 not found"


def _at_least_cell_processes(root: str, count: int, timeout: float = 15) -> list[int]:
    """The cell's processes once there are ``count`` of them: qstat shows a job as running
    ("r") as soon as it is dispatched, before execd has started its shepherd and the job."""
    deadline = time.monotonic() + timeout
    while len(_cell_pids(root)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return _cell_pids(root)


def _no_cell_processes(root: str, timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    while _cell_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _cell_pids(root)


def test_stop_leaves_no_daemon_or_job(cell: SGECell, tmp_path: Path) -> None:
    """A second cell (next to the session's) with a running job: stop() ends all of it."""
    other = SGECell(tmp_path / "other").start()
    try:
        assert other.qmaster_port not in (cell.qmaster_port, cell.execd_port)
        job_id = _qsub(other, "-o", "/dev/null", "-j", "y", script="sleep 300\n")
        _wait_state(other, job_id, {"r"})
        root = str(other.root)
        pids = _at_least_cell_processes(root, 4)
        assert len(pids) >= 4, pids  # qmaster, execd, a shepherd, the job
    finally:
        other.stop()
    assert _no_cell_processes(root) == []
    assert not _job_pids(job_id)
    assert not Path(root).exists()
    # The session's cell is unharmed.
    assert cell.run("qconf", "-sh").returncode == 0


def test_watchdog_cleans_up_after_a_killed_test_process(cell: SGECell, tmp_path: Path) -> None:
    """A process that started a cell and a job, then died by SIGKILL: the watchdog ends both."""
    tests_dir = Path(__file__).resolve().parent
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(tests_dir), str(tmp_path / "orphan")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        root = child.stdout.readline().strip()
        assert root.startswith("/"), child.communicate(timeout=30)
        pids = _at_least_cell_processes(root, 4)
        assert len(pids) >= 4, pids  # qmaster, execd, a shepherd, the job
    finally:
        child.kill()
        child.wait()
    assert _no_cell_processes(root, timeout=15) == []
    deadline = time.monotonic() + 5
    while Path(root).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(root).exists()
    assert cell.run("qconf", "-sh").returncode == 0


_ORPHAN_SCRIPT = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from support.sge_cell import SGECell
cell = SGECell(Path(sys.argv[2])).start()
r = cell.run_as("pwtestuser", "qsub", "-terse", "-o", "/dev/null", "-j", "y", input="sleep 300\n")
job_id = r.stdout.strip()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if any(line.split()[4:5] == ["r"] for line in cell.run("qstat", "-u", "*").stdout.splitlines()[2:]):
        break
    time.sleep(0.1)
print(cell.root, flush=True)
time.sleep(600)
"""

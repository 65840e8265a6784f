"""The fake Grid Engine (pw_spawner.testing.fake.sge), driven through its wrappers as the spawner drives
qsub, qstat, qdel and qacct: its output against what a real Son of Grid Engine 8.1.9 cell printed
(tests/data/sge, the same session replayed), parsed by the real module's parsers to the same answers;
and GridEngineScheduler run on it through a real local executor."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.apps import jupyter_launch
from pw_spawner.options import validate_options
from pw_spawner.profiles import build_profiles, profile_from_dict
from pw_spawner.remote.executor import LocalExecutor
from pw_spawner.schedulers import JobRef, SubmitError, get_scheduler
from pw_spawner.schedulers.sge import GridEngineScheduler, parse_qacct, parse_qstat_xml, submit_error_message
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.status import JobState
from pw_spawner.testing.fake import processes
from pw_spawner.testing.plugin import FakeScheduler

DATA = Path(__file__).resolve().parent / "data" / "sge"
FAKE_APP = [sys.executable, "-m", "pw_spawner.testing.fake_app"]


def recorded(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs submitted with -cwd write where they were submitted."""
    monkeypatch.chdir(tmp_path)


def qsub(script: str, *args: str, cwd: Path | None = None) -> str:
    result = run("qsub", "-terse", *args, input=script, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# ---- comparing with the recorded outputs --------------------------------------------------------

#: What differs between the recorded cell and this machine: ids, owners, times, the host.
_XML_MASKS = [
    (r"<JB_job_number>\d+<", "<JB_job_number>N<"), (r"<JB_owner>[^<]*<", "<JB_owner>U<"),
    (r"(<JAT_start_time>|<JB_submission_time>)[^<]*<", r"\1T<"), (r"(<queue_name>[^<@]*@)[^<]*<", r"\1H<"),
]


def masked_xml(text: str) -> str:
    for pattern, replacement in _XML_MASKS:
        text = re.sub(pattern, replacement, text)
    return text


def by_name(text: str) -> dict[str, tuple]:
    """What the real parser makes of qstat -xml, by job name: (state, raw state, reason, has a node)."""
    names = {(job.findtext("JB_job_number") or ""): (job.findtext("JB_name") or "")
             for job in ElementTree.fromstring(text).iter("job_list")}
    return {names[i]: (info.state, info.raw_state, info.reason, info.node is not None)
            for i, info in parse_qstat_xml(text).items()}


#: qstat -j and qacct keys whose values are this machine's (who, when, where, how much).
_VOLATILE = {"job_number", "exec_file", "submission_time", "owner", "uid", "group", "gid", "sge_o_home",
             "sge_o_log_name", "sge_o_path", "sge_o_shell", "sge_o_workdir", "sge_o_host", "mail_list",
             "stdout_path_list", "usage         1", "hostname", "jobnumber", "qsub_time", "start_time",
             "end_time", "cpu", "mem", "io", "iow", "maxvmem"}


def masked_record(text: str) -> list[str]:
    """qstat -j's or qacct's lines, volatile values masked, the layout (columns, padding) kept."""
    lines = []
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?: +1)?:?)( +)(.*)$", line)
        if match and (match.group(1).rstrip(":") in _VOLATILE or match.group(1).startswith("ru_")):
            value = match.group(3)
            shown = f"<{len(value)}>" if value.endswith(" ") else "<v>"  # padded, or not
            lines.append(f"{match.group(1)}{match.group(2)}{shown}")
        else:
            lines.append(line)
    return lines


def with_id(text: str, recorded_id: str, job_id: str) -> str:
    return re.sub(rf"\b{recorded_id}\b", job_id, text)


# ---- the recorded session, replayed --------------------------------------------------------------


def test_the_recorded_session_replayed(fake_sge: FakeScheduler, tmp_path: Path):
    """What tests/data/sge/record.py did on the real cell, step by step, on the fake."""
    user = me()
    assert run("qstat", "-xml", "-u", user).stdout == recorded("qstat-xml-empty.xml")

    # A plain submission (no -terse), then a running job. It ignores SIGTERM, so that it shows
    # "dr" after qdel until the SIGKILL (Grid Engine shows dr until its shepherd reports).
    submitted = run("qsub", "-N", "pwrun", "-o", str(tmp_path / "run.out"), "-j", "y",
                    input="trap '' TERM\nsleep 300\n")
    running = submitted.stdout.split()[2]
    assert submitted.stdout == with_id(recorded("qsub-submitted.txt"), "2", running)
    fake_sge.wait_for_state(running, "RUNNING")
    xml = run("qstat", "-xml", "-u", user).stdout
    assert masked_xml(xml) == masked_xml(recorded("qstat-xml-running.xml"))
    assert by_name(xml) == by_name(recorded("qstat-xml-running.xml")) == {
        "pwrun": (JobState.RUNNING, "r", "", True)}
    table = run("qstat", "-u", user).stdout.splitlines()
    expected = recorded("qstat-running.txt").splitlines()
    assert table[:2] == expected[:2] and [len(line) for line in table] == [len(line) for line in expected]
    assert masked_record(run("qstat", "-j", running).stdout) == masked_record(recorded("qstat-j-running.txt"))

    # Never schedulable on the real cell; here held back by the pending time, with the recorded
    # cell's scheduler messages as the pending reason.
    fake_sge.set_knobs(PW_FAKE_PENDING_SECONDS=600,
                       PW_FAKE_PENDING_REASON='cannot run in PE "smp" because it only offers 0 slots')
    terse = run("qsub", "-terse", "-N", "pwpe99", "-pe", "smp", "99", "-o", "/dev/null", "-j", "y",
                input="true\n")
    pe99 = terse.stdout.strip()
    assert terse.stdout == f"{pe99}\n" and re.fullmatch(r"\d+\n", recorded("qsub-terse.txt"))
    fake_sge.set_knobs(PW_FAKE_PENDING_REASON='(-l h_vmem=999G) cannot run at host "vm" because it offers '
                                              'only hc:h_vmem=11.770G')
    mem = qsub("true\n", "-N", "pwmem", "-l", "h_vmem=999G", "-o", "/dev/null", "-j", "y")
    held = qsub("true\n", "-h", "-N", "pwheld", "-o", "/dev/null", "-j", "y")
    xml = run("qstat", "-xml", "-u", user).stdout
    assert masked_xml(xml) == masked_xml(recorded("qstat-xml-mixed.xml"))  # JAT_prio included
    assert by_name(xml) == by_name(recorded("qstat-xml-mixed.xml"))
    rows = [line.split() for line in run("qstat", "-u", user).stdout.splitlines()[2:]]
    real_rows = [line.split() for line in recorded("qstat-mixed.txt").splitlines()[2:]]
    assert [(r[1], r[2], r[4], r[-1]) for r in rows] == [(r[1], r[2], r[4], r[-1]) for r in real_rows]
    for job_id, name in ((pe99, "qstat-j-pending-pe.txt"), (mem, "qstat-j-pending-vmem.txt"),
                         (held, "qstat-j-held.txt")):
        shown = run("qstat", "-j", job_id).stdout
        assert masked_record(shown) == masked_record(recorded(name)), name
    detail = run("qstat", "-xml", "-j", pe99)
    assert detail.returncode == 2 and "not emulated" in detail.stderr

    # qdel: the running job shows dr, the others are still waiting.
    deleted = run("qdel", running)
    assert deleted.returncode == 0
    assert deleted.stdout == f"{user} has registered the job {running} for deletion\n"
    assert recorded("qdel.txt") == "pwtestuser has registered the job 2 for deletion\n"
    xml = run("qstat", "-xml", "-u", user).stdout
    assert masked_xml(xml) == masked_xml(recorded("qstat-xml-deleting.xml"))
    assert by_name(xml)["pwrun"] == (JobState.CANCELLED, "dr", "", True)
    assert run("qdel", pe99, mem, held).stdout == "".join(
        f"{user} has deleted job {job_id}\n" for job_id in (pe99, mem, held))
    job = fake_sge.wait_for_state(running, "CANCELLED")
    wait_until(lambda: (fake_sge.job(running) or {}).get("exit_code") is not None)
    assert not processes.pgid_alive(job["pid"])

    # The job has left: every command says so as the real ones did.
    gone = run("qdel", running)
    assert (gone.returncode, gone.stdout) == (1, with_id(recorded("qdel-missing.txt"), "2", running))
    acct = run("qacct", "-j", running)
    assert acct.returncode == 0
    assert masked_record(acct.stdout) == masked_record(recorded("qacct-j-qdel.txt"))
    info, real = parse_qacct(acct.stdout, running), parse_qacct(recorded("qacct-j-qdel.txt"), "2")
    assert (info.state, info.raw_state, info.exit_code) == (real.state, real.raw_state, real.exit_code) == (
        JobState.FAILED, "FAILED 100 : assumedly after job", 137)
    missing = run("qstat", "-j", running)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == with_id(recorded("qstat-j-missing.txt"), "2", running)
    unknown = run("qstat", "-xml", "-j", running)
    assert unknown.returncode == 0
    assert unknown.stdout == with_id(recorded("qstat-xml-j-missing.xml"), "2", running)
    for job_id in (pe99, mem, held):  # deleted while they waited: accounting never saw them
        assert run("qacct", "-j", job_id).stderr == f"error: job id {job_id} not found\n"

    # A job that ends by itself with exit status 3.
    fake_sge.set_knobs(PW_FAKE_PENDING_SECONDS=0)
    done = qsub("exit 3\n", "-N", "pwexit3", "-pe", "smp", "2", "-l", "h_vmem=1G,h_rt=00:05:00",
                "-o", "/dev/null", "-j", "y")
    fake_sge.wait_for_state(done, "FAILED")
    acct = run("qacct", "-j", done).stdout
    assert masked_record(acct) == masked_record(recorded("qacct-j.txt"))  # category, granted_pe, slots...
    info, real = parse_qacct(acct, done), parse_qacct(recorded("qacct-j.txt"), "6")
    assert (info.state, info.raw_state, info.exit_code) == (real.state, real.raw_state, real.exit_code) == (
        JobState.FAILED, "EXIT 3", 3)
    assert info.node == "localhost"
    never = run("qacct", "-j", "999999")
    assert (never.returncode, never.stderr) == (1, recorded("qacct-j-missing.txt"))

    # Finished jobs: qstat -s z, in the order they ended.
    xml = run("qstat", "-xml", "-s", "z", "-u", user).stdout
    zombies = by_name(xml)
    assert set(zombies) == {"pwrun", "pwpe99", "pwmem", "pwheld", "pwexit3"}
    assert set(zombies.values()) == {(JobState.COMPLETED, "z", "", False)} == {
        v for k, v in by_name(recorded("qstat-xml-zombie.xml")).items()}
    # Each finished job as the cell listed it, JAT_prio included (kept by those deleted while waiting).
    blocks = r"    <job_list.*?</job_list>\n"
    real_blocks = re.findall(blocks, masked_xml(recorded("qstat-xml-zombie.xml")), re.S)
    for block in re.findall(blocks, masked_xml(xml), re.S):
        assert block in real_blocks, block
    assert run("qstat", "-xml", "-u", user).stdout == recorded("qstat-xml-empty.xml")
    assert run("qstat", "-u", user).stdout == ""  # qstat prints no header for no jobs


@pytest.mark.parametrize(("args", "name"), [
    (["-q", "nosuch.q"], "qsub-refused-nosuch-queue.txt"),
    (["-pe", "nosuch", "1"], "qsub-refused-nosuch-pe.txt"),
    (["-l", "nosuchres=1"], "qsub-refused-unknown-resource.txt"),
    (["-l", "h_rt=abc"], "qsub-refused-bad-time.txt"),
])
def test_refusals_are_the_recorded_ones(fake_sge: FakeScheduler, args, name):
    result = run("qsub", "-terse", *args, "-o", "/dev/null", "-j", "y", input="true\n")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", recorded(name))
    assert submit_error_message(result.stderr) == submit_error_message(recorded(name))
    assert fake_sge.jobs() == []


def test_other_refusals(fake_sge: FakeScheduler):
    fake_sge.set_knobs(PW_FAKE_QUEUES="all.q,full")
    full = run("qsub", "-q", "full", input="true\n")
    assert (full.returncode, full.stderr) == (1, "Unable to run job: job rejected: only 0 jobs are allowed "
                                                 "per user (current job count: 0)\nExiting.\n")
    assert submit_error_message(full.stderr).startswith("job rejected: only 0 jobs")
    for resource, kind in (("h_vmem=lots", "a memory"), ("gpu=two", "an integer")):
        bad = run("qsub", "-l", resource, input="true\n")
        name = resource.split("=")[0]
        assert bad.stderr == f'Unable to run job: attribute "{name}" is not {kind} value\nExiting.\n'
    option = run("qsub", "-bogus", input="true\n")
    assert (option.returncode, option.stderr) == (1, 'qsub: ERROR! invalid option argument "-bogus"\n')
    directive = run("qsub", input="#!/bin/sh\n#$ -bogus\ntrue\n")
    assert directive.stderr == ('Unable to read script file because of error: ERROR! invalid option '
                                'argument "-bogus"\n')
    assert run("qsub", "-N", input="true\n").stderr == "qsub: ERROR! -N option must have argument\n"
    empty = run("qsub", input="").stderr
    assert empty == "Unable to read script file because of error: no input read from stdin\n"
    fake_sge.set_knobs(PW_FAKE_SUBMIT_FAIL="Unable to run job: failed receiving gdi request response "
                                           "for mid=1 (got syncron message receive timeout error).")
    refused = run("qsub", "-terse", input="true\n")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert submit_error_message(refused.stderr).startswith("failed receiving gdi request")
    assert fake_sge.jobs() == []


@pytest.mark.parametrize("argv", [
    ["qsub", "job.sh"], ["qsub", "-b", "y", "/bin/true"], ["qsub", "-t", "1-4"], ["qsub", "-sync", "y"],
    ["qsub", "-hold_jid", "1"], ["qsub", "-w", "v"], ["qsub", "-now", "yes"], ["qstat", "-f"],
    ["qstat", "-F"], ["qstat", "-j"], ["qdel", "-u", "x"], ["qacct"], ["qacct", "-o", "x"],
])
def test_what_is_not_emulated_says_so(fake_sge: FakeScheduler, argv: list[str]):
    result = run(*argv, input="true\n")
    assert result.returncode == 2
    assert "not emulated by pw_spawner's fake Grid Engine" in result.stderr
    assert fake_sge.jobs() == []


# ---- jobs: directives, environment, shells, states -----------------------------------------------


def test_directives_environment_and_shell(fake_sge: FakeScheduler, tmp_path: Path):
    home = Path(os.path.expanduser("~"))
    script = ("#!/bin/bash\n#$ -N envjob\n#$ -o " + str(tmp_path) + "\n#$ -j y\n#$ -pe smp 2\n"
              "#$ -l h_vmem=1G -l h_rt=0:10:0\n#$ -A proj -P physics\n"
              'echo "$JOB_ID $JOB_NAME $NSLOTS $PE $QUEUE $NHOSTS $SGE_TASK_ID $ENVIRONMENT"\n'
              'echo "$(readlink /proc/$$/exe) ${BASH_VERSION:+bash}"\npwd\necho "$SGE_O_WORKDIR $V"\n'
              "echo to-stderr >&2\n#$ -q short.q\n")  # a directive after the commands still counts
    job_id = qsub(script, "-N", "fromargv", "-v", "V=1")
    record = fake_sge.wait_for_state(job_id, "COMPLETED")
    assert (record["name"], record["partition"]) == ("fromargv", "short.q")
    lines = (tmp_path / f"fromargv.o{job_id}").read_text().splitlines()
    assert lines[0] == f"{job_id} fromargv 2 smp short.q 1 undefined BATCH"
    assert lines[1] == f"{os.path.realpath('/bin/sh')} "  # no -S: the queue's /bin/sh, whatever the #!
    assert lines[2:] == [str(home), f"{tmp_path} 1", "to-stderr"]  # home unless -cwd; -j y
    acct = run("qacct", "-j", job_id).stdout
    assert "category     -l h_rt=600,h_vmem=1G -q short.q -P physics -pe smp 2\n" in acct
    assert "\naccount      proj                \n" in acct and "\nproject      physics             \n" in acct

    # -S /bin/bash, -cwd, the default output name, -C.
    second = qsub('echo "$(readlink /proc/$$/exe) ${BASH_VERSION:+bash}"\npwd\n', "-S", "/bin/bash", "-cwd")
    fake_sge.wait_for_state(second, "COMPLETED")
    bash = os.path.realpath("/bin/bash")
    assert (tmp_path / f"STDIN.o{second}").read_text() == f"{bash} bash\n{tmp_path}\n"
    assert (tmp_path / f"STDIN.e{second}").read_text() == ""
    third = qsub("#% -N prefixed\n#$ -N ignored\ntrue\n", "-C", "#%", "-cwd")
    assert fake_sge.wait_for_state(third, "COMPLETED")["name"] == "prefixed"
    record = fake_sge.job(second)
    assert record["open_mode"] == "append" and record["script"].startswith(str(fake_sge.state_dir))


def test_held_error_and_time_limit(fake_sge: FakeScheduler, tmp_path: Path):
    user = me()
    held = qsub("true\n", "-h", "-o", "/dev/null")
    broken = qsub("true\n", "-o", str(tmp_path / "nosuch" / "out"))  # the output file cannot be opened
    nowhere = qsub("true\n", "-wd", str(tmp_path / "nosuch"), "-o", "/dev/null")
    timed = qsub("sleep 30\n", "-l", "h_rt=1", "-o", "/dev/null")
    wait_until(lambda: all((fake_sge.job(i) or {}).get("state") == "FAILED" for i in (broken, nowhere)))
    states = {i.job_id: (i.state, i.raw_state) for i in parse_qstat_xml(run("qstat", "-xml").stdout).values()
              if i.job_id != timed}
    assert states == {held: (JobState.PENDING, "hqw"), broken: (JobState.FAILED, "Eqw"),
                      nowhere: (JobState.FAILED, "Eqw")}
    assert "scheduling info:            Job is in hold state\n" in run("qstat", "-j", held).stdout
    assert "error: can't open output file" in run("qstat", "-j", broken).stdout
    assert "error: can't chdir to" in run("qstat", "-j", nowhere).stdout
    failed = re.search(r"^failed +(.*)$", run("qacct", "-j", broken).stdout, re.M)
    assert failed and failed.group(1) == "26 : opening input/output file"
    assert run("qdel", broken).stdout == f"{user} has deleted job {broken}\n"
    assert broken not in parse_qstat_xml(run("qstat", "-xml").stdout)
    assert held in parse_qstat_xml(run("qstat", "-xml", "-u", "*").stdout)
    assert run("qstat", "-xml", "-u", "somebody-else").stdout == recorded("qstat-xml-empty.xml")
    fake_sge.wait_for_state(timed, "TIMEOUT", timeout=8)
    acct = wait_until(lambda: run("qacct", "-j", timed).stdout, timeout=8)
    assert parse_qacct(acct, timed).exit_code == 137  # killed at h_rt, as by qdel
    signalled = qsub("#!/bin/bash\nkill -USR1 $$\n", "-S", "/bin/bash", "-o", "/dev/null")
    fake_sge.wait_for_state(signalled, "FAILED")
    code, name = 128 + signal.SIGUSR1, signal.strsignal(signal.SIGUSR1)
    assert f"exit_status  {code:<20} ({name})\n" in run("qacct", "-j", signalled).stdout


def test_master_down_accounting_delay_and_knobs(fake_sge: FakeScheduler):
    fake_sge.set_knobs(PW_FAKE_SGE_ACCOUNTING_DELAY=30)
    job_id = qsub("exit 3\n", "-o", "/dev/null")
    fake_sge.wait_for_state(job_id, "FAILED")
    assert run("qacct", "-j", job_id).returncode == 1  # not flushed to the accounting file yet
    fake_sge.set_knobs(PW_FAKE_SGE_ACCOUNTING_DELAY=0, PW_FAKE_QUERY_FAIL=1)
    for argv in (["qstat", "-xml", "-u", "*"], ["qstat", "-j", job_id], ["qdel", job_id]):
        down = run(*argv)
        assert down.returncode == 1
        assert down.stderr.startswith("error: commlib error: got select error (Connection refused)\n")
    assert parse_qacct(run("qacct", "-j", job_id).stdout, job_id).exit_code == 3  # a file, not the master
    fake_sge.set_knobs(PW_FAKE_QUERY_FAIL="", PW_FAKE_SGE_PES="threaded,mpich,mpi2",
                       PW_FAKE_SGE_COMPLEXES="nvgpu")
    assert run("qsub", "-pe", "smp", "2", input="true\n").returncode == 1
    no_gpu = run("qsub", "-l", "gpu=1", input="true\n").stderr
    assert no_gpu.startswith('Unable to run job: unknown resource "gpu"')
    # A wildcard PE name and a slot range (the most of it), a shortcut (mf: mem_free).
    wild = qsub('echo "$PE $NSLOTS"\n', "-pe", "mpi*", "2-4", "-l", "nvgpu=1,mf=1G", "-cwd")
    fake_sge.wait_for_state(wild, "COMPLETED")
    assert Path(f"STDIN.o{wild}").read_text() == "mpich 4\n"
    assert fake_sge.job(wild)["sge"]["hard"] == {"nvgpu": "1", "mem_free": "1G"}


# ---- GridEngineScheduler on the fake -----------------------------------------------------------------


def real_script(job_dir: Path, settings: dict | None = None, **job) -> str:
    """A job script as the spawner renders it for Grid Engine, the fake app as its server."""
    profiles = build_profiles([{"slug": "p", "display_name": "P", "job": {"walltime": "00:10:00", **job}}])
    selection = validate_options(profiles, {})
    return render_script(ScriptRequest(
        selection=selection, scheduler="sge", job_name="pw-sge", job_dir=str(job_dir),
        app=jupyter_launch(FAKE_APP, []), bind_ip="127.0.0.1", scheduler_settings=settings or {}))


async def wait_for(predicate, timeout: float = 30.0):
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_scheduler_runs_a_real_script_and_cancels_it(fake_sge: FakeScheduler, tmp_path: Path):
    sge, executor = GridEngineScheduler.configured(), LocalExecutor()
    job_dir = tmp_path / "job"
    script = real_script(job_dir, cores=2, memory="512M")
    assert "#$ -pe smp 2" in script and "#$ -S /bin/bash" in script
    job_id = await sge.submit(executor, script, name="pw-sge", job_dir=str(job_dir))
    ref = JobRef(job_id, "pw-sge", str(job_dir))

    async def running():
        info = (await sge.query(executor, [ref]))[job_id]
        service = job_dir / "service.json"
        return info.state is JobState.RUNNING and service.exists() and \
            json.loads(service.read_text()).get("JOB_STATUS") == "RUNNING" and info

    info = await wait_for(running)
    assert (info.raw_state, info.node) == ("r", "localhost")
    service = json.loads((job_dir / "service.json").read_text())
    assert service["JOB_ID"] == job_id  # the script read $JOB_ID
    assert await sge.find(executor, "pw-sge", str(job_dir)) == [job_id]
    record = fake_sge.job(job_id)
    assert (record["sge"]["slots"], record["sge"]["hard"]) == (2, {"h_vmem": "256M", "h_rt": "600"})

    await sge.cancel(executor, ref)

    async def ended():
        info = (await sge.query(executor, [ref]))[job_id]
        return info.state.finished and info

    info = await wait_for(ended)
    assert info.state in (JobState.CANCELLED, JobState.FAILED)  # dr, then qacct's failed 100 / 137
    assert await sge.find(executor, "pw-sge", str(job_dir)) == []
    wait_until(lambda: (fake_sge.job(job_id) or {}).get("exit_code") is not None)
    info = (await sge.query(executor, [ref]))[job_id]
    assert (info.state, info.exit_code) == (JobState.FAILED, 137)
    await sge.cancel(executor, ref)  # 'denied: job "ID" does not exist': nothing to do


async def test_scheduler_exit_code_and_jobs_gone_from_qstat(fake_sge: FakeScheduler, tmp_path: Path):
    sge, executor = GridEngineScheduler.configured(), LocalExecutor()
    job = profile_from_dict({"slug": "p", "job": {"walltime": "00:05:00"}}).job
    lines = get_scheduler("sge").directives(job, "pw-exit", str(tmp_path / "exit" / "job.out"))
    failing = "#!/bin/bash\n" + "\n".join(lines) + "\nexit 3\n"
    job_id = await sge.submit(executor, failing, name="pw-exit", job_dir=str(tmp_path / "exit"))
    fake_sge.wait_for_state(job_id, "FAILED")
    ref = JobRef(job_id, "pw-exit", str(tmp_path / "exit"))
    # Gone from qstat: qstat -j says "do not exist", and qacct tells how it ended.
    info = (await sge.query(executor, [ref]))[job_id]
    assert (info.state, info.exit_code, info.raw_state) == (JobState.FAILED, 3, "EXIT 3")
    assert info.node == "localhost"

    # Accounting not flushed yet: gone, told ended.
    fake_sge.set_knobs(PW_FAKE_SGE_ACCOUNTING_DELAY=60)
    assert (await sge.query(executor, [ref]))[job_id].raw_state == "GONE"
    fake_sge.set_knobs(PW_FAKE_SGE_ACCOUNTING_DELAY=0, PW_FAKE_PENDING_SECONDS=600)
    waiting_id = await sge.submit(executor, failing, name="pw-wait", job_dir=str(tmp_path / "wait"))
    waiting = JobRef(waiting_id, "pw-wait", str(tmp_path / "wait"))
    info = (await sge.query(executor, [waiting, ref]))
    assert (info[waiting_id].state, info[waiting_id].raw_state) == (JobState.PENDING, "qw")
    assert info[job_id].state is JobState.FAILED
    await sge.cancel(executor, waiting)  # deleted while it waited: accounting never sees it
    info = (await sge.query(executor, [waiting]))[waiting_id]
    assert (info.state, info.raw_state) == (JobState.COMPLETED, "GONE")
    fake_sge.set_knobs(PW_FAKE_QUERY_FAIL=1)
    assert (await sge.query(executor, [ref]))[job_id].state is JobState.UNKNOWN


async def test_the_sites_parallel_environment_reaches_qsub(fake_sge: FakeScheduler, tmp_path: Path):
    settings = {"parallel_environment": "threaded", "memory_resources": ["mem_free"], "gpu_resource": "nvgpu"}
    sge, executor = GridEngineScheduler.configured(settings=settings), LocalExecutor()
    job = profile_from_dict({"slug": "p", "job": {"cores": 2, "memory": "1G", "gpus": 1}}).job
    lines = sge.directives(job, "pw-pe", str(tmp_path / "pe" / "job.out"))
    assert "#$ -pe threaded 2" in lines
    script = "#!/bin/bash\n" + "\n".join(lines) + '\necho "$PE $NSLOTS"\n'
    with pytest.raises(SubmitError, match='the requested parallel environment "threaded" does not exist'):
        await sge.submit(executor, script, name="pw-pe", job_dir=str(tmp_path / "pe"))
    fake_sge.set_knobs(PW_FAKE_SGE_PES="smp,threaded")
    with pytest.raises(SubmitError, match='unknown resource "nvgpu"'):
        await sge.submit(executor, script, name="pw-pe", job_dir=str(tmp_path / "pe"))
    fake_sge.set_knobs(PW_FAKE_SGE_COMPLEXES="nvgpu")
    job_id = await sge.submit(executor, script, name="pw-pe", job_dir=str(tmp_path / "pe"))
    fake_sge.wait_for_state(job_id, "COMPLETED")
    assert (tmp_path / "pe" / "job.out").read_text() == "threaded 2\n"
    acct = run("qacct", "-j", job_id).stdout
    assert "\ngranted_pe   threaded            \n" in acct
    assert "category     -l h_rt=3600,mem_free=512M,nvgpu=1 -pe threaded 2\n" in acct

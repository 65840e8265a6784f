"""The fake schedulers' shared part (pw_spawner.testing.fake.store, .cli): the job store, knobs,
option parsing, the dispatcher and the wrappers that plugin.py writes."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from support.fake_commands import run, wait_until

from pw_spawner.testing import plugin
from pw_spawner.testing.fake import cli, store
from pw_spawner.testing.plugin import FakeScheduler, install_fake_scheduler


@pytest.fixture(autouse=True)
def _jobs_start_in_a_temp_dir(tmp_path, monkeypatch):
    """Jobs submitted without a cwd write slurm-<id>.out / <name>.o<id> where they were submitted."""
    monkeypatch.chdir(tmp_path)


def sbatch(script: str, *args: str) -> str:
    result = run("sbatch", "--parsable", *args, input=script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def squeue_line(job_id: str) -> str:
    result = run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i|%T|%r|%N|%j")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_job_store_records_and_ids(tmp_path: Path):
    jobs = store.JobStore(tmp_path / "state")
    with jobs.locked():
        assert [jobs.allocate_id(), jobs.allocate_id()] == [1000, 1001]
    jobs.save({"id": 1001, "kind": "slurm", "state": "PENDING"})
    jobs.save({"id": 1000, "kind": "pbs", "state": "RUNNING"})
    assert jobs.ids() == [1000, 1001]
    assert [job["kind"] for job in jobs.jobs()] == ["pbs", "slurm"]
    assert stat.S_IMODE(os.stat(jobs.file(1000, ".json")).st_mode) == 0o600
    assert not [p for p in os.listdir(jobs.root) if p.endswith(".tmp")]  # written, then renamed
    assert jobs.update(1000, lambda job: job.update(state="CANCELLED"))["state"] == "CANCELLED"
    assert jobs.load(1000)["state"] == "CANCELLED" and jobs.update(4242, print) is None
    # A counter that was lost restarts above every record.
    os.unlink(os.path.join(jobs.root, "next_id"))
    with jobs.locked():
        assert jobs.allocate_id() == 1002


def test_getopt_as_the_real_commands_parse():
    spec = store.flag_spec("job-name partition", "exclusive", "parsable")
    short = {"J": "job-name", "p": "partition"}
    assert store.getopt_long(["-Jx", "--part=gpu", "--pars", "a", "-p", "b"], short, spec, True) == (
        [("job-name", "x"), ("partition", "gpu"), ("parsable", None), ("partition", "b")], ["a"])
    assert store.getopt_long(["--exclusive", "s.sh", "-p", "x"], short, spec, False) == (
        [("exclusive", None)], ["s.sh", "-p", "x"])  # sbatch: options end at the script
    with pytest.raises(store.OptError, match="unrecognized option '--bogus'"):
        store.getopt_long(["--bogus"], short, spec, True)
    with pytest.raises(store.OptError, match="ambiguous"):
        store.getopt_long(["--p"], short, spec, True)
    assert store.getopt(["-fx", "-Fjson", "1", "-N", "n"], "fxF:N:", True) == (
        [("f", None), ("x", None), ("F", "json"), ("N", "n")], ["1"])
    with pytest.raises(store.OptError, match="invalid option -- 'Q'"):
        store.getopt(["-Q"], "f", True)
    script = "#!/bin/sh\n\n#PBS -N a  # note\n#PBSX -q no\necho\n#PBS -N late\n"
    assert store.directives(script, "#PBS") == [["-N", "a"]]


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


def test_scheduler_modules_declare_what_the_plugin_uses():
    modules = cli.schedulers()
    assert {"slurm", "pbs"} <= set(modules)
    for name, module in modules.items():
        assert module.COMMANDS and module.FLAVORS and callable(module.job_environment), name
        assert set(module.KNOBS) <= set(plugin.KNOBS)
    assert {"slurm", "pbs", "torque"} <= set(plugin.FLAVORS)
    assert plugin.FLAVORS["torque"] == tuple(modules["pbs"].COMMANDS)
    assert set(store.KNOBS) <= set(plugin.KNOBS)


def test_dispatcher(fake_slurm: FakeScheduler):
    # Without the scheduler's name, a command only one scheduler has still runs.
    entry = [sys.executable, "-m", "pw_spawner.testing.fake"]
    submitted = run(*entry, "sbatch", "--parsable", input="#!/bin/sh\ntrue\n")
    assert (submitted.returncode, submitted.stdout) == (0, "1000\n"), submitted.stderr
    assert run(*entry, "slurm", "squeue", "-h", "-t", "all", "-o", "%i").stdout == "1000\n"
    for argv in (["nosuch"], ["slurm", "qstat"], []):
        refused = run(*entry, *argv)
        assert refused.returncode == 2 and refused.stderr.startswith("usage: "), argv


def test_install_fake_scheduler_outside_pytest(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown scheduler flavor"):
        install_fake_scheduler(tmp_path / "x", "nosuch")
    env = install_fake_scheduler(tmp_path / "bin", "torque")
    assert env["PW_FAKE_SCHED_DIR"] == str(tmp_path / "bin" / "state")
    assert env["PW_FAKE_PBS_FLAVOR"] == "torque"
    for name in plugin.FLAVORS["torque"]:
        assert os.access(tmp_path / "bin" / name, os.X_OK)
    # A caller that passes a trimmed environment (no PYTHONPATH, no PW_FAKE_*) still works,
    # from a directory that is not the source tree's.
    trimmed = {"PATH": env["PATH"]}
    submitted = run("qsub", input="#!/bin/sh\ntrue\n", env=trimmed, cwd=tmp_path)
    assert (submitted.returncode, submitted.stdout) == (0, "1000.fakepbs\n"), submitted.stderr
    jobs = store.JobStore(env["PW_FAKE_SCHED_DIR"])
    wait_until(lambda: (jobs.load(1000) or {}).get("state") == "COMPLETED")
    assert "job_state = C" in run("qstat", "-f", "1000", env=trimmed).stdout

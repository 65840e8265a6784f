"""Record what a real Slurm prints for the commands ``pw_spawner/schedulers/slurm.py`` runs, into files
the unit tests (tests/test_slurm_scheduler.py) parse: run as root, ``.venv/bin/python
tests/support/record_slurm_outputs.py tests/data/slurm``.  It starts a :class:`SlurmCluster` (one node
on loopback), submits jobs as the ordinary user ``pwtestuser`` until each is in the state it is there
for (completed, failed with exit 3, cancelled, killed for going over its memory, running, timed out,
and pending for Resources, JobHeldUser, Dependency and PartitionTimeLimit), makes two submissions
sbatch refuses, then saves the
stdout and stderr of ``squeue``/``scontrol``/``sacct``/``scancel``/``sbatch`` exactly as printed, run
with the argv SlurmScheduler uses.  The files are written to a staging directory and moved into OUTDIR
only when the whole run succeeded, with ``manifest.json`` (every command, its user and exit code, and
which job id plays which role) and a generated ``README.md``.  Every job, the daemons and the scratch
directories are removed on the way out, also when something fails.

The cluster confines each job to its ``--mem`` with cgroups where the host allows it
(``SlurmCluster(memory_enforcement=True)``), so that the job that goes over its memory ends
``OUT_OF_MEMORY``; where it does not, that job is left out and the README says why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for ``support``
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))  # the repo, for ``pw_spawner``

from pw_spawner.schedulers.slurm import SQUEUE_FORMAT
from support.net import free_ports
from support.slurm_cluster import (
    SlurmCluster,
    ensure_user,
    memory_enforcement_available,
    run_as,
    slurm_available,
)

USER = "pwtestuser"
UNKNOWN_ID = "999999"
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}
#: How long after it starts the --time=1 job may take to be TIMEOUT before it is given up.
TIMEOUT_BUDGET_S = 75.0
#: slurmctld checks time limits every 30 s (PERIODIC_TIMEOUT), counted from its start: a job started
#: just before a check is found over its 1-minute limit about 60 s later, not up to 90 s later.
_LIMIT_CHECK_PERIOD_S = 30.0
#: The job that goes over its 64M: 256 MiB of bytes written (so the pages are really used).
OUT_OF_MEMORY_SCRIPT = "#!/bin/sh\nexec /usr/bin/python3 -c 'x = b\"x\" * (256 << 20)'\n"


def log(message: str) -> None:
    print(f"[record {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Recorder:
    """Runs commands against the cluster and keeps what they printed, byte for byte."""

    def __init__(self, cluster: SlurmCluster, staging: Path) -> None:
        self.cluster = cluster
        self.staging = staging
        self.commands: list[dict] = []

    def run(self, argv: Sequence[str], *, user: str | None = USER, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = env if env is not None else self.cluster.env
        if user is None:
            base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
            return subprocess.run(list(argv), input=input, capture_output=True, text=True,
                                  timeout=timeout, env={**base, **env}, check=False)
        return run_as(user, argv, env=env, input=input, timeout=timeout)

    def record(self, name: str, argv: Sequence[str], *, what: str, user: str | None = USER,
               input: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` and save its stdout as ``NAME.txt``, its stderr as ``NAME.stderr`` (each only
        when not empty; the manifest says which)."""
        started = time.monotonic()
        result = self.run(argv, user=user, input=input, env=env, timeout=timeout)
        took = time.monotonic() - started
        entry = {"name": name, "what": what, "argv": list(argv), "user": user or "root",
                 "returncode": result.returncode, "stdout": None, "stderr": None,
                 "seconds": round(took, 1)}
        for stream, suffix in (("stdout", ".txt"), ("stderr", ".stderr")):
            text = getattr(result, stream)
            if text:
                (self.staging / f"{name}{suffix}").write_text(text, newline="")
                entry[stream] = f"{name}{suffix}"
        self.commands.append(entry)
        log(f"{name}: rc {result.returncode}, {len(result.stdout)} B out, {len(result.stderr)} B err")
        return result


def squeue_state(cluster: SlurmCluster, job_id: str) -> tuple[str, str]:
    """(state, reason) of one job as squeue prints them; ("", "") when it prints nothing."""
    r = cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r", timeout=15)
    line = r.stdout.strip() if r.returncode == 0 else ""
    state, _, reason = line.partition("|")
    return state, reason


def wait_for(cluster: SlurmCluster, job_id: str, done: Callable[[str, str], bool], what: str,
             timeout: float = 30) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        state, reason = squeue_state(cluster, job_id)
        if not seen or seen[-1] != (state, reason):
            seen.append((state, reason))
        if done(state, reason):
            return state, reason
        if state in FINAL:
            break
        time.sleep(0.2)
    show = cluster.run("scontrol", "show", "job", job_id).stdout
    raise RuntimeError(f"job {job_id} never got {what}; seen {seen}\n{show}\n{cluster.logs()}")


def state_is(*states: str) -> Callable[[str, str], bool]:
    return lambda state, _reason: state in states


def pending_for(reason: str) -> Callable[[str, str], bool]:
    return lambda state, why: state == "PENDING" and why == reason


class Jobs:
    """The jobs this run submitted: role -> id, and the sbatch options each was given."""

    def __init__(self, rec: Recorder, workdir: Path) -> None:
        self.rec = rec
        self.workdir = workdir
        self.ids: dict[str, str] = {}
        self.options: dict[str, list[str]] = {}

    def submit(self, role: str, script: str, *options: str, record_as: str | None = None) -> str:
        argv = ["sbatch", "--parsable", f"--chdir={self.workdir}", "--mem=64M", *options]
        if record_as:
            r = self.rec.record(record_as, argv, input=script, what=f"a good submit ({role} job)")
        else:
            r = self.rec.run(argv, input=script)
        job_id = r.stdout.strip().split(";")[0]
        if r.returncode != 0 or not job_id.isdigit():
            raise RuntimeError(f"sbatch for {role} failed (rc {r.returncode}): {r.stdout}{r.stderr}")
        self.ids[role] = job_id
        self.options[role] = argv[2:]
        log(f"submitted {role}: job {job_id}")
        return job_id

    def cancel_all(self) -> None:
        if self.ids:
            with contextlib.suppress(Exception):
                self.rec.cluster.run("scancel", *self.ids.values(), timeout=15)


def wait_for_limit_check_phase(ctld_started: float, lead_s: float = 4.0) -> None:
    """Sleep until ``lead_s`` seconds before slurmctld's next time-limit check."""
    phase = (time.monotonic() - ctld_started) % _LIMIT_CHECK_PERIOD_S
    delay = (_LIMIT_CHECK_PERIOD_S - lead_s - phase) % _LIMIT_CHECK_PERIOD_S
    log(f"waiting {delay:.0f} s so the --time=1 job starts just before a time-limit check")
    time.sleep(delay)


def controller_down_conf(cluster: SlurmCluster) -> Path:
    """A copy of the cluster's slurm.conf whose SlurmctldPort nothing listens on."""
    (port,) = free_ports(1)
    lines = [f"SlurmctldPort={port}" if line.startswith("SlurmctldPort=") else line
             for line in cluster.conf_path.read_text().splitlines()]
    path = cluster.conf_path.with_name("slurm-controller-down.conf")
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def record_everything(cluster: SlurmCluster, rec: Recorder, jobs: Jobs, ctld_started: float) -> dict:
    notes: dict[str, str] = {}
    cpus = str(cluster.cpus)
    version = rec.record("sbatch-version", ["sbatch", "--version"], what="the Slurm version")
    # Before any job: what scontrol says with nothing to show.
    rec.record("scontrol-o-show-job-empty", ["scontrol", "-o", "show", "job"],
               what="`scontrol -o show job` before any job was submitted")

    # Requests sbatch refuses.  The refused --mem request still leaves a job record (FAILED,
    # BadConstraints) in slurmctld: it is found by its name and kept as the role "refused_memory".
    script = "#!/bin/sh\ntrue\n"
    base = ["sbatch", "--parsable", f"--chdir={jobs.workdir}"]
    for name, options, what in (
        ("sbatch-invalid-partition", ["--mem=64M", "--partition=nosuchpartition"], "an unknown partition"),
        ("sbatch-too-much-memory", ["--mem=100000000M", "--job-name=rec-refused-mem"],
         f"100000000M of memory (the node has {cluster.real_memory_mib}M)"),
        ("sbatch-invalid-gres", ["--mem=64M", "--gres=gpu:1"], "a GPU (the node has no GRES)"),
    ):
        r = rec.record(name, [*base, *options], input=script, what=f"sbatch refusing {what}")
        if r.returncode == 0:
            raise RuntimeError(f"sbatch accepted {what}: {r.stdout}")
    found = cluster.run("squeue", "-h", "-t", "all", "-n", "rec-refused-mem", "-o", "%i").stdout.split()
    if found:
        jobs.ids["refused_memory"] = found[0]
        jobs.options["refused_memory"] = ["--mem=100000000M", "--job-name=rec-refused-mem"]
        state, why = squeue_state(cluster, found[0])
        notes["refused_memory"] = (f"the refused `--mem=100000000M` submit still left job {found[0]} in "
                                   f"slurmctld ({state}, reason {why}); the other refusals left none")

    # Jobs that end, one after the other on one CPU.
    jobs.submit("completed", "#!/bin/sh\necho done\nexit 0\n", "--job-name=rec|pipe")
    wait_for(cluster, jobs.ids["completed"], state_is("COMPLETED"), "COMPLETED")
    jobs.submit("failed", "#!/bin/sh\necho failing >&2\nexit 3\n", "--job-name=rec-failed")
    wait_for(cluster, jobs.ids["failed"], state_is("FAILED"), "FAILED")
    jobs.submit("cancelled", "#!/bin/sh\nsleep 600\n", "--job-name=rec-sleeper")
    wait_for(cluster, jobs.ids["cancelled"], state_is("RUNNING"), "RUNNING")
    rec.record("scancel", ["scancel", jobs.ids["cancelled"]], what="scancel of a running job")
    wait_for(cluster, jobs.ids["cancelled"], state_is("CANCELLED"), "CANCELLED")
    if cluster.memory_enforcement:
        jobs.submit("out_of_memory", OUT_OF_MEMORY_SCRIPT, "--job-name=rec-oom")
        state, why = wait_for(cluster, jobs.ids["out_of_memory"], state_is(*FINAL), "a final state",
                              timeout=60)
        notes["out_of_memory"] = (f"the job that writes 256 MiB with --mem=64M (cgroup v1, "
                                  f"ConstrainRAMSpace=yes) ended {state}, reason {why}")
        if state != "OUT_OF_MEMORY":
            raise RuntimeError(f"the job over its memory ended {state} ({why}), not OUT_OF_MEMORY")

    # Two jobs that hold both CPUs: one running on, one to be killed at its time limit.
    jobs.submit("running", "#!/bin/sh\nsleep 600\n", "--job-name=rec-sleeper", record_as="sbatch-parsable")
    wait_for(cluster, jobs.ids["running"], state_is("RUNNING"), "RUNNING")
    # A job whose name (chosen by its owner; scontrol lists every user's jobs) holds " JobId=<running>".
    jobs.submit("spoofing_name", "#!/bin/sh\ntrue\n", f"--job-name=rec JobId={jobs.ids['running']} x")
    wait_for(cluster, jobs.ids["spoofing_name"], state_is("COMPLETED"), "COMPLETED")
    wait_for_limit_check_phase(ctld_started)
    jobs.submit("timeout", "#!/bin/sh\nsleep 600\n", "--job-name=rec-timeout", "--time=00:01:00")
    wait_for(cluster, jobs.ids["timeout"], state_is("RUNNING"), "RUNNING")
    timeout_started = time.monotonic()

    # Pending jobs, each for its own reason.
    jobs.submit("pending_resources", "#!/bin/sh\ntrue\n", "--job-name=rec-big", f"--cpus-per-task={cpus}")
    wait_for(cluster, jobs.ids["pending_resources"], pending_for("Resources"), "PENDING (Resources)")
    jobs.submit("pending_held", "#!/bin/sh\ntrue\n", "--job-name=rec-held", "--hold")
    wait_for(cluster, jobs.ids["pending_held"], pending_for("JobHeldUser"), "PENDING (JobHeldUser)")
    jobs.submit("pending_dependency", "#!/bin/sh\ntrue\n", "--job-name=rec-after",
                f"--dependency=afterok:{jobs.ids['running']}")
    wait_for(cluster, jobs.ids["pending_dependency"], pending_for("Dependency"), "PENDING (Dependency)")
    jobs.submit("pending_partition_time_limit", "#!/bin/sh\ntrue\n", "--job-name=rec-long",
                "--partition=short", "--time=05:00:00")
    wait_for(cluster, jobs.ids["pending_partition_time_limit"], pending_for("PartitionTimeLimit"),
             "PENDING (PartitionTimeLimit)", timeout=40)

    # Requests beyond the partition's resources: accepted (EnforcePartLimits=NO), pending for ever.
    over = ["--job-name=rec-over", "--cpus-per-task=64"]
    sbatch = rec.record("sbatch-too-many-cpus", [*base, "--mem=64M", *over], input=script,
                        what=f"sbatch accepting 64 CPUs per task (the node has {cpus})")
    for role, result, options in (
        ("pending_too_many_cpus", sbatch, over),
        ("pending_too_many_nodes", None, ["--job-name=rec-nodes", "--nodes=2"]),
    ):
        if result is None:
            job_id = jobs.submit(role, script, *options)
        else:
            job_id = result.stdout.strip().split(";")[0]
            if result.returncode != 0 or not job_id.isdigit():
                raise RuntimeError(f"sbatch --cpus-per-task=64 was refused: {result.stderr}")
            jobs.ids[role], jobs.options[role] = job_id, ["--mem=64M", *options]
        _, why = wait_for(cluster, job_id, lambda st, why: st == "PENDING" and why != "None",
                          "PENDING for a reason")
        notes[role] = (f"`sbatch {' '.join(options[1:])}` (more than the partition has) was accepted as "
                       f"job {job_id}: PENDING, reason {why} right after the submit (the Jobs table has "
                       "its reason at the snapshot)")

    # scancel of jobs that are not running.
    rec.record("scancel-finished", ["scancel", jobs.ids["completed"]],
               what="scancel of a job that already completed (still held by slurmctld)")
    rec.record("scancel-unknown", ["scancel", UNKNOWN_ID], what="scancel of a job id Slurm never had")

    scancels = [c for c in rec.commands if c["argv"][0] == "scancel"]
    notes["scancel"] = "scancel as the job's user: " + "; ".join(
        f"`{shlex.join(c['argv'])}` ({c['what']}) exited {c['returncode']}"
        + (" and printed nothing" if not (c["stdout"] or c["stderr"]) else "") for c in scancels)

    # The time limit.
    timeout_id, timeout_state = jobs.ids["timeout"], ""
    while time.monotonic() < timeout_started + TIMEOUT_BUDGET_S and timeout_state != "TIMEOUT":
        time.sleep(0.5)
        timeout_state, _ = squeue_state(cluster, timeout_id)
    took = time.monotonic() - timeout_started
    if timeout_state == "COMPLETING":  # over its limit already, its step still being cleaned up
        timeout_state, _ = wait_for(cluster, timeout_id, state_is(*FINAL), "a final state")
    if timeout_state != "TIMEOUT":
        rec.run(["scancel", timeout_id])
        timeout_state, _ = wait_for(cluster, timeout_id, state_is(*FINAL), "a final state")
    if timeout_state == "TIMEOUT":
        notes["timeout"] = f"the --time=00:01:00 job was TIMEOUT {took:.0f} s after it started running"
    else:
        notes["timeout"] = (f"the --time=00:01:00 job was not TIMEOUT {took:.0f} s after it started, so "
                            f"it was cancelled ({timeout_state}): no TIMEOUT recorded")
        jobs.ids["timeout_skipped"] = jobs.ids.pop("timeout")
        jobs.options["timeout_skipped"] = jobs.options.pop("timeout")
    log(notes["timeout"])

    # Every finished job must have left COMPLETING before the snapshot.
    for role, job_id in jobs.ids.items():
        if role in ("completed", "failed", "cancelled", "out_of_memory", "spoofing_name", "timeout",
                    "timeout_skipped"):
            wait_for(cluster, job_id, lambda state, _r: state in FINAL, "a final state")

    # The snapshot: the commands SlurmScheduler runs, with its argv.
    ids = list(jobs.ids.values())
    rec.record("squeue-mixed", ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT],
               what="SlurmScheduler.query's squeue for every job of this run")
    rec.record("squeue-unknown-id", ["squeue", "-h", "-t", "all", "-j", UNKNOWN_ID, "-o", SQUEUE_FORMAT],
               what="query's squeue for one job id Slurm does not know")
    both = f"{jobs.ids['running']},{UNKNOWN_ID}"
    rec.record("squeue-known-and-unknown", ["squeue", "-h", "-t", "all", "-j", both, "-o", SQUEUE_FORMAT],
               what="query's squeue for a known and an unknown job id")
    rec.record("squeue-me-name", ["squeue", "-h", "--me", "-n", "rec-sleeper", "-o", SQUEUE_FORMAT],
               what="SlurmScheduler.find's squeue (the running and the cancelled job share this name)")
    rec.record("scontrol-o-show-job", ["scontrol", "-o", "show", "job"],
               what="_confirm's `scontrol -o show job`: every job slurmctld holds, one a line")
    rec.record("scontrol-o-show-job-failed", ["scontrol", "-o", "show", "job", jobs.ids["failed"]],
               what="`scontrol -o show job ID` for the finished job that exited 3")
    rec.record("scontrol-show-job-failed", ["scontrol", "show", "job", jobs.ids["failed"]],
               what="`scontrol show job ID` (several lines) for the job that exited 3")
    if "timeout" in jobs.ids:
        rec.record("scontrol-o-show-job-timeout", ["scontrol", "-o", "show", "job", jobs.ids["timeout"]],
                   what="`scontrol -o show job ID` for the job killed at its time limit")
    if "out_of_memory" in jobs.ids:
        rec.record("scontrol-o-show-job-out-of-memory",
                   ["scontrol", "-o", "show", "job", jobs.ids["out_of_memory"]],
                   what="`scontrol -o show job ID` for the job killed for going over its memory")
    rec.record("scontrol-show-job-unknown", ["scontrol", "show", "job", UNKNOWN_ID],
               what="`scontrol show job ID` for a job id Slurm does not know")
    rec.record("scontrol-show-config", ["scontrol", "show", "config"],
               what="shows_other_users_jobs's `scontrol show config` (PrivateData)")
    rec.record("sacct-no-slurmdbd",
               ["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,NodeList"],
               what="_confirm's sacct, on a cluster without slurmdbd (AccountingStorageType=none)")
    down = controller_down_conf(cluster)
    rec.record("squeue-controller-down",
               ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT],
               env={"SLURM_CONF": str(down)}, timeout=120,
               what="query's squeue when nothing listens on SlurmctldPort (a copy of the conf)")
    return {"version": version.stdout.strip(), "notes": notes}


def _squeue_rows(path: Path) -> dict[str, list[str]]:
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("|")
            rows[parts[0]] = parts
    return rows


def write_readme(staging: Path, manifest: dict) -> None:
    rows = _squeue_rows(staging / "squeue-mixed.txt")
    m = manifest
    lines = [
        "# Real Slurm output for tests/test_slurm_scheduler.py",
        "",
        "Generated by `tests/support/record_slurm_outputs.py`; do not edit by hand (re-record instead).",
        "",
        f"- Slurm: `{m['slurm_version']}` (`sbatch --version`), Debian package slurm-wlm",
        f"- Recorded: {m['recorded_at']}",
        f"- Cluster: `tests/support/slurm_cluster.py`, one node `{m['node']}` with {m['cpus']} CPUs on "
        "127.0.0.1, partitions `debug` (default, MaxTime=INFINITE) and `short` (MaxTime=04:00:00), "
        "MinJobAge=300, AccountingStorageType=accounting_storage/none (no slurmdbd)",
        ("- Memory: each job confined to its `--mem` by cgroup v1 (`TaskPlugin=task/cgroup`, cgroup.conf "
         "`ConstrainRAMSpace=yes`)" if m.get("memory_enforcement") else
         f"- Memory: not confined ({m.get('memory_enforcement_why') or 'not asked for'}), so no job ends "
         "OUT_OF_MEMORY"),
        f"- Jobs submitted as `{m['user']}` with `sbatch --parsable --chdir=... --mem=64M OPTIONS` "
        "(script on stdin); the commands below ran as that user unless it says root",
        "",
        "## Jobs",
        "",
        "| role | id | sbatch options | squeue `%T` | squeue `%r` | squeue `%N` |",
        "|---|---|---|---|---|---|",
    ]
    for role, job_id in m["jobs"].items():
        opts = " ".join(o for o in m["sbatch_options"][role] if not o.startswith(("--chdir=", "--mem=")))
        row = rows.get(job_id, [job_id, "?", "?", "?"])
        lines.append(f"| {role} | {job_id} | `{opts}` | {row[1]} | {row[2]} | {row[3] or '(empty)'} |")
    lines += ["", "## Files", "",
              "Each command's stdout is `NAME.txt`, its stderr `NAME.stderr` (a file is left out when the "
              "stream was empty). `manifest.json` holds the same, for the tests.", "",
              "| command (user) | exit code | stdout | stderr | what |", "|---|---|---|---|---|"]
    for c in m["commands"]:
        cmd = shlex.join(c["argv"]).replace("|", "\\|")
        lines.append(f"| `{cmd}` ({c['user']}) | {c['returncode']} | {c['stdout'] or '(none)'} | "
                     f"{c['stderr'] or '(none)'} | {c['what']} |")
    sacct = next(c for c in m["commands"] if c["name"] == "sacct-no-slurmdbd")
    lines += ["", "## Notes", "",
              f"- sacct without slurmdbd: exit code {sacct['returncode']}; stdout "
              f"{'empty' if not sacct['stdout'] else 'in ' + sacct['stdout']}; stderr "
              f"{'empty' if not sacct['stderr'] else 'in ' + sacct['stderr']}.",
              *(f"- {note}" for note in m["notes"].values()),
              "- Job ids start at 1 on every fresh cluster and the jobs are submitted in the same order, so "
              "re-recording gives the same ids; the node name is the recording host's `hostname -s`.",
              "", "## Re-recording", "",
              "As root, on a host with slurm-wlm and munge (`.ci/install-system.sh`), about two minutes:",
              "", "    .venv/bin/python tests/support/record_slurm_outputs.py tests/data/slurm", "",
              "The files are written to a staging directory and replace the old ones only when the whole "
              "run succeeded; the cluster, its jobs and the scratch directories are removed either way.", ""]
    (staging / "README.md").write_text("\n".join(lines))


def install(staging: Path, outdir: Path) -> None:
    """Replace the files of the previous recording in ``outdir`` by those in ``staging``."""
    outdir.mkdir(parents=True, exist_ok=True)
    old = outdir / "manifest.json"
    if old.exists():
        previous = json.loads(old.read_text())
        for c in previous.get("commands", []):
            for name in (c.get("stdout"), c.get("stderr")):
                if name:
                    with contextlib.suppress(FileNotFoundError):
                        (outdir / Path(name).name).unlink()
    for path in sorted(staging.iterdir()):
        shutil.copyfile(path, outdir / path.name)
        os.chmod(outdir / path.name, 0o644)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="where the files go (tests/data/slurm)")
    args = parser.parse_args(argv)
    ok, why = slurm_available()
    if not ok:
        print(f"cannot record: {why}", file=sys.stderr)
        return 2
    user = ensure_user(USER)
    base = Path(tempfile.mkdtemp(prefix="pw-slurm-record-"))
    staging = Path(tempfile.mkdtemp(prefix="pw-slurm-staging-"))
    workdir = Path(tempfile.mkdtemp(prefix="pw-slurm-record-", dir=user.pw_dir))
    os.chown(workdir, user.pw_uid, user.pw_gid)
    confine, confine_why = memory_enforcement_available()
    if not confine:
        log(f"memory is not confined on this host, so no OUT_OF_MEMORY job: {confine_why}")
    try:
        ctld_started = time.monotonic()
        with SlurmCluster(base, memory_enforcement=confine) as cluster:
            log(f"cluster up in {cluster.startup_seconds:.1f} s: node {cluster.nodename}, "
                f"{cluster.cpus} CPUs, slurmctld port {cluster.slurmctld_port}")
            rec = Recorder(cluster, staging)
            jobs = Jobs(rec, workdir)
            try:
                found = record_everything(cluster, rec, jobs, ctld_started)
            finally:
                jobs.cancel_all()
            manifest = {
                "slurm_version": found["version"],
                "recorded_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "node": cluster.nodename, "cpus": cluster.cpus, "user": USER,
                "unknown_id": UNKNOWN_ID, "squeue_format": SQUEUE_FORMAT,
                "memory_enforcement": confine, "memory_enforcement_why": confine_why,
                "jobs": jobs.ids, "sbatch_options": jobs.options, "notes": found["notes"],
                "commands": rec.commands,
            }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_readme(staging, manifest)
        install(staging, args.outdir)
        log(f"wrote {len(rec.commands)} commands' output to {args.outdir}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

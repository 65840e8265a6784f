"""A counting mocked Slurm for the polling benchmarks: the fake of pw_spawner.testing behind shims.

One :class:`MockCluster` is one Slurm "cluster" on this host:

- ``fake/``: the fake Slurm commands of :func:`pw_spawner.testing.plugin.install_fake_scheduler`
  and their job store (``state/``);
- ``bin/``: a shim of the same name in front of each command (squeue, scontrol, sacct, sbatch,
  scancel) that appends its arguments to a file of its own under ``calls/`` and then execs the
  command. Every caller that finds ``bin/`` first on PATH is counted, whoever it is (pw_spawner's
  executor, batchspawner's shell commands);
- ``enter``: ``enter CMD...`` runs CMD with this cluster's ``bin/`` first on PATH and its state
  directory, so that an ``exec_prefix`` can name the cluster;
- ``asuser``: ``asuser NAME -- CMD...`` does the same, standing in for ``sudo -u NAME --``
  (the prefix shape of a per-user setup; no real account is needed, commands stay the caller's).

Running jobs are records in the fake's job store, all cloned from one job submitted with the fake
sbatch and running (``sleep``): a thousand jobs submitted one by one would be a thousand
supervisor processes (Python, ~14 MB each) and minutes of sbatch calls, and a poll sees nothing
of a job but its record.

squeue has two back ends (``squeue=`` of :class:`MockCluster`):

- ``fake``: the shim execs the fake's own squeue, a Python program that loads every job record
  on each call (40 ms of CPU a call at 10 jobs, 130 ms at 1,000; ~14 MB each). A thousand of them
  at once, which batchspawner runs at hub start, would hold ~14 GB.
- ``table`` (default): the shim answers with ``awk`` from ``squeue.table``, the fake squeue's
  own answer for every job (``%i|%T|%r|%N|%j|%B|%u|%S``) taken once the jobs run, rendering the
  ``-o`` format asked for (``%i %T %r %N %j %B %u %S``), honouring ``-j`` (one unknown id: Slurm's
  "Invalid job id specified", exit 1) and ``-h``. A few ms of CPU a call, nearer a real squeue
  client's 7 to 9 ms. The jobs do not change state during a benchmark, so the table stays true.

scontrol, sacct, sbatch and scancel always exec the fake's own commands.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pw_spawner.testing.fake import processes as fake_processes
from pw_spawner.testing.plugin import KNOBS, FakeScheduler, install_fake_scheduler

COMMANDS = ("squeue", "scontrol", "sacct", "sbatch", "scancel")
#: Commands that ask the scheduler about jobs (what "scheduler queries" counts).
QUERIES = ("squeue", "scontrol", "sacct")
TABLE_FORMAT = "%i|%T|%r|%N|%j|%B|%u|%S"

SQUEUE_AWK = r"""
# squeue from a table: the benchmark's cheap stand-in (see benchmarks/_mock_slurm.py).
BEGIN {
    FS = "|"; header = 1; ids = ""; fmt = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
    for (i = 1; i < ARGC; i++) {
        a = ARGV[i]; ARGV[i] = ""
        if (a == "-h" || a == "--noheader") header = 0
        else if (a == "-j" || a == "--jobs") { ids = ARGV[++i]; ARGV[i] = "" }
        else if (a ~ /^--jobs=/) ids = substr(a, 8)
        else if (a ~ /^-j./) ids = substr(a, 3)
        else if (a == "-o" || a == "--format") { fmt = ARGV[++i]; ARGV[i] = "" }
        else if (a ~ /^--format=/) fmt = substr(a, 10)
        else if (a ~ /^-o./) fmt = substr(a, 3)
        else if (a == "-t" || a == "--states") { ARGV[++i] = "" }  # every job runs
        else if (a ~ /^--states=/ || a ~ /^-t./) { }
        else { print "squeue (benchmark table): unsupported option " a > "/dev/stderr"; exit 2 }
    }
    n = split(ids, want, ",")
    for (k = 1; k <= n; k++) wanted[want[k]] = 1
    letters = "iTrNjBuS"
    found = 0
    while ((getline line < TABLE) > 0) {
        split(line, f, "|")
        if (n > 0 && !(f[1] in wanted)) continue
        out = ""
        for (p = 1; p <= length(fmt); p++) {
            c = substr(fmt, p, 1)
            if (c != "%") { out = out c; continue }
            p++
            while (substr(fmt, p, 1) ~ /[0-9.-]/) p++
            c = substr(fmt, p, 1)
            if (c == "%") { out = out "%"; continue }
            k = index(letters, c)
            if (k == 0) { print "squeue (benchmark table): unsupported field %" c > "/dev/stderr"; exit 2 }
            out = out f[k]
        }
        print out
        found++
    }
    if (n == 1 && found == 0) {
        print "slurm_load_jobs error: Invalid job id specified" > "/dev/stderr"; exit 1
    }
    exit 0
}
"""


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    job_dir: str


class MockCluster:
    """A fake Slurm with counting shims; see the module docstring."""

    def __init__(self, root: Path, name: str = "cluster", *, squeue: str = "table", first_id: int = 1000):
        if squeue not in ("table", "fake"):
            raise ValueError(f"squeue back end {squeue!r}: table or fake")
        self.root, self.name, self.squeue = root, name, squeue
        self.fake_bin, self.state, self.bin = root / "fake", root / "state", root / "bin"
        self.calls, self.table = root / "calls", root / "squeue.table"
        self.root.mkdir(parents=True, exist_ok=True)
        self.fake_env = install_fake_scheduler(self.fake_bin, "slurm", state_dir=self.state)
        self.fake = FakeScheduler("slurm", self.fake_bin, self.state, self.fake_env)
        # The fake takes the next id from this file: distinct ranges keep clusters' ids apart.
        (self.state / "next_id").write_text(f"{first_id}\n")
        self.calls.mkdir(exist_ok=True)
        self.bin.mkdir(exist_ok=True)
        self._processes: list[tuple[int | None, int | None]] = []  # (job's group, its supervisor)
        (self.root / "squeue.awk").write_text(SQUEUE_AWK)
        for command in COMMANDS:
            record = f"printf '%s\\n' \"$*\" >> {shlex.quote(str(self.calls))}/{command}.$$"
            if command == "squeue" and squeue == "table":
                run = (f"exec awk -v TABLE={shlex.quote(str(self.table))} "
                       f"-f {shlex.quote(str(self.root / 'squeue.awk'))} -- \"$@\"")
            else:
                run = f"exec {shlex.quote(str(self.fake_bin / command))} \"$@\""
            self._script(self.bin / command, [record, run])
        env_lines = [f"PATH={shlex.quote(str(self.bin))}:\"$PATH\"",
                     f"PW_FAKE_SCHED_DIR={shlex.quote(str(self.state))}",
                     "export PATH PW_FAKE_SCHED_DIR"]
        self._script(self.root / "enter", [*env_lines, 'exec "$@"'])
        self._script(self.root / "asuser", [
            '[ "$#" -ge 3 ] && [ "$2" = "--" ] || { echo "usage: asuser NAME -- CMD..." >&2; exit 2; }',
            "shift 2", *env_lines, 'exec "$@"'])

    @staticmethod
    def _script(path: Path, lines: list[str]) -> None:
        path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
        path.chmod(0o755)

    @property
    def enter(self) -> str:
        return str(self.root / "enter")

    @property
    def asuser(self) -> str:
        return str(self.root / "asuser")

    def env(self) -> dict[str, str]:
        """PATH (the shims first) and the fake's state directory, for this process's environment."""
        return {"PATH": f"{self.bin}{os.pathsep}{self.fake_env['PATH']}",
                "PW_FAKE_SCHED_DIR": str(self.state)}

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in KNOBS}
        env.update(self.env())
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False, **kwargs)

    def add_running_jobs(self, count: int, work: Path, prefix: str = "pwbench") -> list[Job]:
        """``count`` RUNNING jobs: one submitted with the fake sbatch, the rest its cloned records."""
        script = ("#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={out}\n"
                  "#SBATCH --time=02:00:00\nexec sleep 7200\n")
        name = f"{prefix}-0"
        work.mkdir(parents=True, exist_ok=True)
        done = self._run(["sbatch", "--parsable"], input=script.format(name=name, out=work / "job.out"),
                         cwd=work, timeout=60)
        if done.returncode != 0 or not done.stdout.strip().isdigit():
            raise RuntimeError(f"fake sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
        first = int(done.stdout.strip())
        deadline = time.monotonic() + 30
        while (job := self.fake.job(first)) is None or job["state"] != "RUNNING":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake's job {first} does not run: {job and job['state']}")
            time.sleep(0.05)
        self._processes.append((job.get("pid"), job.get("supervisor_pid")))
        store = self.fake.store
        jobs = [Job(str(first), name, str(work / name))]
        with store.locked():
            for i in range(1, count):
                clone = dict(job, id=first + i, name=f"{prefix}-{i}")
                store.save(clone)
                jobs.append(Job(str(first + i), clone["name"], str(work / clone["name"])))
        (self.state / "next_id").write_text(f"{first + count}\n")
        listed = self._run([str(self.fake_bin / "squeue"), "-h", "-t", "all", "-o", TABLE_FORMAT],
                           timeout=120)
        if listed.returncode != 0:
            raise RuntimeError(f"fake squeue failed: {listed.stderr.strip()}")
        self.table.write_text(listed.stdout)
        running = sum(1 for line in listed.stdout.splitlines() if line.split("|")[1:2] == ["RUNNING"])
        if running < count:
            raise RuntimeError(f"only {running} of {count} jobs run in the fake Slurm")
        return jobs

    def take_calls(self) -> Calls:
        """The calls recorded since the last take, which are then forgotten."""
        calls = Calls()
        for path in list(self.calls.iterdir()):
            command = path.name.split(".", 1)[0]
            try:
                lines = path.read_text().splitlines()
            finally:
                path.unlink(missing_ok=True)
            for line in lines:
                calls.counts[command] += 1
                if command == "squeue":
                    words = line.split()
                    ids = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "--jobs")),
                               next((w.split("=", 1)[1] for w in words if w.startswith("--jobs=")), ""))
                    calls.squeue_ids.append(len([i for i in ids.split(",") if i]))
        return calls

    def stop(self) -> None:
        """End the one real job of each add_running_jobs() and its supervisor.

        (FakeScheduler.kill_all would also do, but it visits every cloned record, which share one
        process group, and waits for that group once per record.)"""
        for group, supervisor in self._processes:
            fake_processes.killpg(group, signal.SIGKILL)
            if supervisor:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(supervisor, signal.SIGKILL)
        self._processes.clear()


class Calls:
    """What the shims recorded: calls per command, and the number of job ids of each squeue."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.squeue_ids: list[int] = []

    def __iadd__(self, other: Calls) -> Calls:
        self.counts += other.counts
        self.squeue_ids += other.squeue_ids
        return self

    @property
    def queries(self) -> int:
        return sum(self.counts[c] for c in QUERIES)

    def shown(self) -> str:
        """``squeue calls (+ other queries)``, e.g. ``131`` or ``1 (+2 scontrol)``."""
        text = f"{self.counts['squeue']:,}"
        others = [f"{self.counts[c]:,} {c}" for c in QUERIES[1:] if self.counts[c]]
        return text + (f" (+{', '.join(others)})" if others else "")

    def ids_per_squeue(self) -> str:
        if not self.squeue_ids:
            return "-"
        return f"{sum(self.squeue_ids) / len(self.squeue_ids):,.1f}"


def cleanup(root: Path, clusters: list[MockCluster]) -> None:
    for cluster in clusters:
        try:
            cluster.stop()
        except Exception as exc:  # the rest must still go
            print(f"note: stopping {cluster.name}: {exc}", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)

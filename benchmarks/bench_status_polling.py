"""How many squeue calls, how much time and CPU it takes to poll N running jobs, batched or not.

What it measures: N spawners (default 10, 50, 200) each follow one Slurm job, as a hub's spawners do
with poll(). For each way of asking, it counts the squeue invocations, the wall time and the CPU
time (this process plus the commands it ran, from getrusage; with a real Slurm also slurmctld's and
munged's, from /proc) and how long each poll waited for its answer.

The two ways of asking:

- pw_spawner: :class:`pw_spawner.schedulers.batcher.StatusBatcher`, which answers every query made
  within its window (``batch_window``, 0.2 s by default) with one ``squeue -j id1,id2,...``.
- the alternative: one ``squeue -j ID`` per spawner per poll, what batchspawner does. It is run here
  as ``SlurmScheduler.query(executor, [job])``, the same command, executor and parsing as
  pw_spawner's, so the only difference is the batching. batchspawner also wraps each call in
  ``sudo -u USER bash -c``, which this leaves out: its real cost is higher than shown.

Both use the real code path: ``get_scheduler("slurm")`` and a :class:`LocalExecutor` (a subclass of
it that only counts what it runs), against real processes.

Two patterns of polling:

- a round: all N spawners poll at the same moment. That is the batcher's best case, and what a hub
  does just after it starts (it checks every spawner at once, and their poll timers start together).
- steady state: the N polls fall at random moments within one poll interval (JupyterHub's
  ``poll_interval`` is 30 s with 10 % jitter, and servers start at different times, so their timers
  drift apart). Only polls within the same window share a squeue call, so the gain is smaller.

The scheduler: by default the mocked Slurm of :mod:`pw_spawner.testing` (fake sbatch/squeue on
``PATH``; the jobs are real ``sleep`` processes). Its squeue is a Python program that reads one JSON
file a job, so each call costs far more CPU than the real one: the call counts carry over to a real
cluster, the times do not. ``--real-slurm`` uses the Slurm that ``SLURM_CONF`` points at;
``--start-slurm`` starts a private single-node Slurm with ``tests/support/slurm_cluster.py`` (root,
slurm-wlm and munge needed) and lets jobs share its cores so that all of them run. Every job the
benchmark submitted is cancelled at the end.

    python benchmarks/bench_status_polling.py                     # fake Slurm
    python benchmarks/bench_status_polling.py --start-slurm       # a private real Slurm (root)
    SLURM_CONF=/etc/slurm/slurm.conf python benchmarks/bench_status_polling.py --real-slurm
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    command_line,
    cpu_seconds,
    machine_line,
    median,
    ms,
    print_table,
    process_cpu_seconds,
)

from pw_spawner.remote.executor import CommandResult, LocalExecutor
from pw_spawner.schedulers import JobRef, get_scheduler
from pw_spawner.schedulers.base import JobInfo, Scheduler
from pw_spawner.schedulers.batcher import StatusBatcher
from pw_spawner.status import JobState

REPO = Path(__file__).resolve().parents[1]
BATCHED = "StatusBatcher (pw_spawner)"
SINGLE = "one squeue per spawner"

JOB_SCRIPT = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --output={job_dir}/job.out
#SBATCH --time=01:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=16M
exec sleep {seconds}
"""


class CountingExecutor(LocalExecutor):
    """The hub's LocalExecutor, counting the commands it runs by program name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float = 30) -> CommandResult:
        self.counts[os.path.basename(argv[0])] += 1
        return await super().run(argv, input=input, timeout=timeout)


@dataclass
class Sample:
    """One measured pass: a round, or one steady-state interval."""

    squeue: int
    other: int
    wall: float
    hub_cpu: float
    daemon_cpu: float | None
    waits: list[float]
    states: Counter[str] = field(default_factory=Counter)


class Daemons:
    """CPU time of slurmctld and munged, which answer squeue but are not this process's children."""

    def __init__(self, pids: Sequence[int]):
        self.pids = list(pids)

    def cpu(self) -> float | None:
        if not self.pids:
            return None
        readings = [process_cpu_seconds(pid) for pid in self.pids]
        return None if None in readings else sum(readings)

    @classmethod
    def of_cluster(cls, conf: str) -> Daemons:
        pids = []
        pid_file = None
        for line in Path(conf).read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "slurmctldpidfile":
                pid_file = value.strip()
        for path in (pid_file or "/run/slurmctld.pid", "/run/munge/munged.pid"):
            try:
                pids.append(int(Path(path).read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                print(f"note: no pid in {path}; daemon CPU is left out", file=sys.stderr)
                return cls([])
        return cls(pids)


async def measure(executor: CountingExecutor, daemons: Daemons,
                  polls: Sequence[Callable[[], Awaitable[JobInfo]]],
                  delays: Sequence[float] | None = None) -> Sample:
    """Run every poll (each after its delay, or all at once) and take what they cost."""
    waits: list[float] = []
    states: Counter[str] = Counter()

    async def one(poll: Callable[[], Awaitable[JobInfo]], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        asked = time.perf_counter()
        info = await poll()
        waits.append(time.perf_counter() - asked)
        states[info.state.value] += 1

    executor.counts.clear()
    daemon_before = daemons.cpu()
    me, kids = cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(one(p, d) for p, d in zip(polls, delays or [0.0] * len(polls), strict=True)))
    wall = time.perf_counter() - start
    me2, kids2 = cpu_seconds()
    daemon_after = daemons.cpu()
    daemon_cpu = None if daemon_before is None or daemon_after is None else daemon_after - daemon_before
    squeue = executor.counts["squeue"]
    return Sample(squeue, sum(executor.counts.values()) - squeue, wall, (me2 - me) + (kids2 - kids),
                  daemon_cpu, waits, states)


def pollers(method: str, scheduler: Scheduler, executor: CountingExecutor, batcher: StatusBatcher,
            jobs: Sequence[JobRef]) -> list[Callable[[], Awaitable[JobInfo]]]:
    """One poll function per spawner, as its poll() would ask."""
    if method == BATCHED:
        return [lambda job=job: batcher.query(job) for job in jobs]

    async def single(job: JobRef) -> JobInfo:
        return (await scheduler.query(executor, [job]))[job.job_id]

    return [lambda job=job: single(job) for job in jobs]


async def submit_jobs(scheduler: Scheduler, executor: LocalExecutor, count: int, work: Path,
                      jobs: list[JobRef], parallel: int = 4) -> None:
    """``count`` sleep jobs through the scheduler's own submit(), a few sbatch calls at a time.

    Each job goes into ``jobs`` as soon as it exists, so that a failure half-way still cancels it.
    """
    limit = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        name, job_dir = f"pwbench-{i}", str(work / f"job-{i}")
        script = JOB_SCRIPT.format(name=name, job_dir=job_dir, seconds=1800)
        async with limit:
            jobs.append(JobRef(await scheduler.submit(executor, script, name=name, job_dir=job_dir),
                               name, job_dir))

    await asyncio.gather(*(one(i) for i in range(count)))
    jobs.sort(key=lambda job: int(job.name.rsplit("-", 1)[1]))


async def wait_running(scheduler: Scheduler, executor: LocalExecutor, jobs: Sequence[JobRef],
                       timeout: float) -> Counter[str]:
    """Wait (bounded) until every job runs; returns how many are in each state at the end."""
    deadline = time.monotonic() + timeout
    while True:
        infos = await scheduler.query(executor, jobs)
        states = Counter(info.state.value for info in infos.values())
        if states[JobState.RUNNING.value] == len(jobs) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


def cancel_all(jobs: Sequence[JobRef]) -> None:
    """One scancel for every job this run made (the scheduler's cancel() takes one job a call)."""
    ids = [job.job_id for job in jobs]
    for start in range(0, len(ids), 200):
        subprocess.run(["scancel", *ids[start:start + 200]], capture_output=True, check=False, timeout=60)


def fmt_cpu(value: float | None) -> str:
    """A daemon's CPU time; /proc counts it in clock ticks (10 ms), so finer figures would be noise."""
    if value is None:
        return "n/a"
    return "<10 ms" if value < 0.005 else f"{value * 1000:.0f} ms"


def summarize(n: int, method: str, samples: Sequence[Sample], wall: bool = True) -> list[object]:
    waits = [w for s in samples for w in s.waits]
    row: list[object] = [n, method, f"{median([s.squeue for s in samples]):g}"]
    others = median([s.other for s in samples])
    if others:
        row[-1] += f" (+{others:g} other)"
    if wall:
        row.append(ms(median([s.wall for s in samples])))
    row += [ms(median([s.hub_cpu for s in samples])),
            fmt_cpu(None if any(s.daemon_cpu is None for s in samples)
                    else median([s.daemon_cpu for s in samples])),
            f"{ms(median(waits))} / {ms(max(waits))}"]
    return row


async def bench(args: argparse.Namespace, work: Path, daemons: Daemons, label: str) -> None:
    executor = CountingExecutor()
    scheduler = get_scheduler("slurm")
    batcher = StatusBatcher(scheduler, executor, window=args.window)
    ns = sorted(set(args.n))
    print(f"submitting {max(ns)} sleep jobs ...", file=sys.stderr)
    began = time.monotonic()
    jobs: list[JobRef] = []
    try:
        await submit_jobs(scheduler, executor, max(ns), work, jobs)
        states = await wait_running(scheduler, executor, jobs, timeout=args.start_timeout)
        print(f"jobs after {time.monotonic() - began:.0f} s: {dict(states)}", file=sys.stderr)
        if states[JobState.RUNNING.value] != len(jobs):
            print("note: not every job runs; a pending job costs squeue the same work", file=sys.stderr)

        methods = (BATCHED, SINGLE)
        rounds: dict[tuple[int, str], list[Sample]] = {}
        for method in methods:  # unmeasured: imports, page cache, the controller's caches
            await measure(executor, daemons, pollers(method, scheduler, executor, batcher, jobs[:ns[0]]))
        for n in ns:
            for r in range(args.rounds):
                for method in methods if r % 2 else reversed(methods):  # neither always goes first
                    sample = await measure(executor, daemons, pollers(method, scheduler, executor,
                                                                      batcher, jobs[:n]))
                    rounds.setdefault((n, method), []).append(sample)
                    if sample.states.get(JobState.UNKNOWN.value):
                        print(f"warning: {sample.states} in a round of {n} ({method})", file=sys.stderr)
        print_table(
            f"All N spawners poll at once ({label}; median of {args.rounds} rounds, "
            f"batch window {args.window:g} s)",
            ["spawners", "method", "squeue calls/round", "wall/round", "CPU hub+commands",
             "slurmctld+munged CPU", "poll waits median / max"],
            [summarize(n, m, rounds[n, m]) for n in ns for m in methods])

        steady_ns = sorted(set(args.steady_n))
        if steady_ns and args.interval > 0:
            rows = []
            for n in steady_ns:
                rng = random.Random(n)  # both methods see the same poll moments
                delays = [rng.uniform(0, args.interval) for _ in range(n)]
                for method in methods:
                    print(f"steady state: {n} spawners, {method}, {args.interval:g} s ...", file=sys.stderr)
                    sample = await measure(executor, daemons,
                                           pollers(method, scheduler, executor, batcher, jobs[:n]), delays)
                    rows.append(summarize(n, method, [sample], wall=False))
            print_table(
                f"Steady state: each spawner polls once at a random moment of a {args.interval:g} s "
                f"poll interval ({label}; batch window {args.window:g} s)",
                ["spawners", "method", "squeue calls/interval", "CPU hub+commands",
                 "slurmctld+munged CPU", "poll waits median / max"], rows)
    finally:
        cancel_all(jobs)


def start_private_slurm(work: Path):
    """A single-node Slurm from the tests' helper, its partition shared so that every job runs."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.slurm_cluster import SlurmCluster, slurm_available

    ok, why = slurm_available()
    if not ok:
        raise SystemExit(f"cannot start Slurm: {why}")
    running = subprocess.run(["pgrep", "-a", "slurmctld"], capture_output=True, text=True).stdout.strip()
    if running:
        print(f"note: another slurmctld runs here and shares the CPUs:\n{running}", file=sys.stderr)
    cluster = SlurmCluster(work / "slurm").start(timeout=60)
    # Two cores cannot hold hundreds of one-core jobs; a sleeping job needs no core of its own.
    shared = cluster.run("scontrol", "update", "PartitionName=debug", "OverSubscribe=FORCE:1000")
    if shared.returncode != 0:
        print(f"note: could not share the partition ({shared.stderr.strip()}); jobs beyond the "
              "cores will pend", file=sys.stderr)
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50, 200], help="numbers of spawners")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per N and method")
    parser.add_argument("--window", type=float, default=0.2, help="the batcher's window (batch_window)")
    parser.add_argument("--steady-n", type=int, nargs="*", default=[200],
                        help="numbers of spawners for the steady-state pass (none: skip it)")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="the poll interval of the steady-state pass (JupyterHub's poll_interval)")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="how long to wait for the submitted jobs to run")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--real-slurm", action="store_true", help="use the Slurm SLURM_CONF points at")
    where.add_argument("--start-slurm", action="store_true",
                       help="start a private single-node Slurm (tests/support/slurm_cluster.py; root)")
    args = parser.parse_args()
    if args.steady_n and max(args.steady_n) > max(args.n):
        parser.error("--steady-n may not exceed the largest --n (the jobs are shared)")

    work = Path(tempfile.mkdtemp(prefix="pw-bench-poll-"))
    work.chmod(0o755)  # a real slurmd writes the jobs' output here
    cluster = None
    fake = None
    # Before the fake commands go on PATH, so that the line names the real Slurm client.
    print(machine_line())
    print(f"command: {command_line()}")
    try:
        if args.start_slurm:
            cluster = start_private_slurm(work)
            os.environ.update(cluster.env)
        if args.real_slurm or args.start_slurm:
            conf = os.environ.get("SLURM_CONF")
            if not conf or not shutil.which("squeue"):
                raise SystemExit("--real-slurm needs squeue on PATH and SLURM_CONF set")
            daemons = Daemons.of_cluster(conf)
            label = "real Slurm"
        else:
            from pw_spawner.testing.plugin import KNOBS, FakeScheduler, install_fake_scheduler

            env = install_fake_scheduler(work / "bin", "slurm", state_dir=work / "state")
            for knob in KNOBS:
                os.environ.pop(knob, None)
            os.environ.update(env)
            fake = FakeScheduler("slurm", work / "bin", work / "state", env)
            daemons, label = Daemons([]), "mocked Slurm"
        asyncio.run(bench(args, work, daemons, label))
    finally:
        if fake is not None:
            fake.kill_all()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

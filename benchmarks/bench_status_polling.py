"""Scheduler queries, hub CPU and loop stalls of N running servers' polls: pw_spawner beside batchspawner.

What it measures. N spawners (default 10, 100, 1,000) each follow one running Slurm job, as a
hub's do, all on ONE counting mocked Slurm (``_mock_slurm.py``: the fake Slurm of
``pw_spawner.testing`` behind shims that record every squeue/scontrol/sacct call, whoever makes
it). For each kind of spawner and each N, in a fresh event loop (a fresh hub):

- hub start: JupyterHub polls every spawner at once (``await spawner.poll()`` for all,
  gathered). Measured: scheduler calls, the job ids each squeue asked for, the round's wall time,
  and the event loop's stall: the lag of a 10 ms ticker running through the round (max, p99);
- steady state, right after: each spawner polls once (``poll_and_notify()``, what the hub's
  PeriodicCallback runs) at a random moment of one poll interval (JupyterHub's ``poll_interval``,
  30 s). Measured: scheduler calls in the interval, and the CPU the hub spends on it: this
  process's own, plus that of the commands it ran (getrusage of the waited children: the shims,
  ``sh``, the stand-in for sudo and squeue itself);
- the polls' answers: "gone" counts polls that said the server had stopped. Every job runs, so any
  is a wrong answer (e.g. batchspawner when a squeue could not start).

``--time-scale`` compresses time: with 0.1, the 30 s interval lasts 3 s, and the spawner's own
timing traits that shape its queries (``batch_window``, ``status_refresh_interval``; each only
where the class has it) are scaled by the same factor, so that the figures per interval keep
their meaning. CPU work is not scaled: it is the same work done in less time.

The kinds (``--spawners``):

- ``floor``: a JupyterHub Spawner whose ``poll()`` returns None at once: the hub's own cost of a
  poll, and the harness's (a task and a timer per poll), which every other kind pays too;
- ``pw``: ``PWSlurmSpawner``, no ``exec_prefix`` (jobs and queries as the hub's account;
  ``allow_shared_account``, as such a site must set);
- ``pw-user``: ``PWSlurmSpawner`` with a per-user prefix, ``[asuser, "{username}", "--"]``:
  ``asuser`` stands in for ``sudo -u {username} --`` (it takes the name and runs the rest as the
  caller: no real accounts are needed, and the mocked Slurm shows every job to everyone);
- ``pw-user-qa``: the same, with ``status_query_prefix`` naming a query account (a prefix without
  {username}), where the class has that trait;
- ``batchspawner``: batchspawner 1.3.0's ``SlurmSpawner`` itself, with ``exec_prefix = "asuser
  {username} --"`` (the shape of its default, ``sudo -E -u {username}``); its poll() runs
  ``<prefix> squeue -h -j ID -o '%T %B'`` through a shell, one per poll;
- ``batchspawner-noprefix``: the same with an empty prefix (not in the default list).

Every spawner is built through its public surface: ``make_spawner(cls=..., username=...,
**traits)`` (a stand-in user and hub), ``load_state()`` with the state the hub would have saved
for a job the mocked Slurm runs (pw_spawner: its ``pw_spawner`` record; batchspawner: ``job_id``
and ``job_status``), then ``poll()``. Traits are passed only where the class has them
(``class_traits()``), so the script runs on any version of pw_spawner.

Second part, ``--sim-servers`` (default 10,000) on ``--sim-clusters`` (default 5) mocked clusters,
each its own fake Slurm (state directory and shims): the spawners are spread over the clusters and
counted per cluster. On the hub host nothing in pw_spawner's configuration names a cluster but the
prefix its commands run behind, so cluster k's spawners get ``exec_prefix = [enter_k]`` (a script
that puts cluster k's commands on PATH and sets its state directory, as a SLURM_CONF would pick a
cluster), or ``[asuser_k, "{username}", "--"]``, and ``status_query_prefix = [enter_k]`` where the
class has it. A real multi-cluster hub uses ``resources`` (SSH to each cluster's login node).

The squeue behind the shims (``--squeue``): ``table`` (default), an awk rendering of the fake's
own job table, a few ms a call; or ``fake``, the fake's Python squeue (40 to 130 ms and ~14 MB a
call: with more than a few hundred polls at once it needs GBs). See ``_mock_slurm.py``. Call
counts do not depend on it; the commands' CPU does.

    python benchmarks/bench_status_polling.py                                  # 30 s intervals
    python benchmarks/bench_status_polling.py --time-scale 0.1 --sim-spawners pw   # short run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import Ticker, command_line, cpu_seconds, machine_line, ms, print_table
from _mock_slurm import Calls, Job, MockCluster, cleanup
from jupyterhub.spawner import Spawner

from pw_spawner.spawner import PWSlurmSpawner
from pw_spawner.testing.spawners import make_spawner

try:  # the saved state's format; version 1 is the one this script was written against
    from pw_spawner.spawner import STATE_VERSION
except ImportError:  # pragma: no cover
    STATE_VERSION = 1

#: Traits that set how often and how long a spawner's status queries wait; scaled with time.
TIMING_TRAITS = ("batch_window", "status_refresh_interval")
ALL_KINDS = ("floor", "pw", "pw-user", "pw-user-qa", "batchspawner", "batchspawner-noprefix")
DEFAULT_KINDS = ("floor", "pw", "pw-user", "pw-user-qa", "batchspawner")
LABELS = {
    "floor": "no-op Spawner (floor)",
    "pw": "pw_spawner, no prefix",
    "pw-user": "pw_spawner, per-user prefix",
    "pw-user-qa": "pw_spawner, per-user prefix + query account",
    "batchspawner": "batchspawner 1.3.0, per-user prefix",
    "batchspawner-noprefix": "batchspawner 1.3.0, no prefix",
}


class NoopSpawner(Spawner):
    """The floor: a poll() that answers "running" at once, costing nothing but the hub's own call."""

    async def start(self):  # pragma: no cover - never started here
        return ("127.0.0.1", 1)

    async def stop(self, now=False):  # pragma: no cover
        return None

    async def poll(self):
        return None


class LogCounter(logging.Handler):
    """Counts what the spawners log (a thousand identical lines say less than one and a count)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = record.levelname.lower()
        self.counts[key] += 1
        self.first.setdefault(key, record.getMessage().splitlines()[0][:160] if record.getMessage() else "")

    def take(self) -> str:
        text = "; ".join(f"{n} {level} (first: {self.first[level]!r})" for level, n in self.counts.items())
        self.counts.clear()
        self.first.clear()
        return text


@dataclass
class Phase:
    """One measured phase (hub start, or one steady interval) of one kind and N."""

    calls: Calls = field(default_factory=Calls)
    per_cluster: list[int] = field(default_factory=list)
    wall: float = 0.0
    hub_cpu: float = 0.0
    commands_cpu: float = 0.0
    lag: str = "-"
    gone: int = 0
    errors: int = 0
    logged: str = ""

    @property
    def cpu(self) -> float:
        return self.hub_cpu + self.commands_cpu

    def answers(self, n: int) -> str:
        text = f"{n - self.gone - self.errors:,} running"
        if self.gone:
            text += f", {self.gone:,} gone"
        if self.errors:
            text += f", {self.errors:,} raised"
        return text


class Builder:
    """Makes the spawners of one kind, each loaded with the state of one running job."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.pw_traits = self._pw_traits()

    def _pw_traits(self) -> dict[str, object]:
        have = PWSlurmSpawner.class_traits()
        traits: dict[str, object] = {"allow_shared_account": True} if "allow_shared_account" in have else {}
        for name in TIMING_TRAITS:
            if name in have:
                traits[name] = have[name].default_value
        for item in self.args.trait:
            name, _, value = item.partition("=")
            if name not in have:
                print(f"note: PWSlurmSpawner has no trait {name!r}; --trait {item} is ignored",
                      file=sys.stderr)
                continue
            try:
                traits[name] = json.loads(value)
            except ValueError:
                traits[name] = value
        for name in TIMING_TRAITS:
            if name in traits:
                traits[name] = float(traits[name]) * self.args.time_scale
        return traits

    def kinds(self, wanted: Sequence[str]) -> list[str]:
        kinds = []
        for kind in wanted:
            if kind == "pw-user-qa" and "status_query_prefix" not in PWSlurmSpawner.class_traits():
                print("note: PWSlurmSpawner has no status_query_prefix trait: pw-user-qa is skipped",
                      file=sys.stderr)
                continue
            if kind.startswith("batchspawner"):
                try:
                    import batchspawner  # noqa: F401
                except ImportError:
                    print("note: batchspawner is not installed (pip install batchspawner==1.3.0, or the "
                          f"bench extra): {kind} is skipped", file=sys.stderr)
                    continue
            kinds.append(kind)
        return kinds

    def make(self, kind: str, index: int, cluster: MockCluster, job: Job, *, one_cluster: bool) -> Spawner:
        username = f"u{index:05d}"
        # The hub's poll interval, which a spawner may use to pace its own queries.
        poll_interval = round(self.args.interval * self.args.time_scale)
        if kind == "floor":
            return make_spawner(cls=NoopSpawner, username=username, poll_interval=poll_interval)
        if kind.startswith("batchspawner"):
            from batchspawner import SlurmSpawner

            prefix = "" if kind == "batchspawner-noprefix" else \
                f"{shlex.quote(cluster.asuser)} {{username}} --"
            if one_cluster is False and not prefix:
                prefix = shlex.quote(cluster.enter)
            # req_homedir and req_keepvars would otherwise be looked up in the password database.
            spawner = make_spawner(cls=SlurmSpawner, username=username, exec_prefix=prefix,
                                   req_homedir=str(self.work), req_keepvars="", poll_interval=poll_interval)
            spawner.load_state({"job_id": job.job_id, "job_status": "RUNNING localhost"})
            return spawner
        traits = dict(self.pw_traits)
        have = PWSlurmSpawner.class_traits()
        if kind == "pw":
            traits["exec_prefix"] = [] if one_cluster else [cluster.enter]
            if not one_cluster and "status_query_prefix" in have:
                traits["status_query_prefix"] = [cluster.enter]
        else:
            traits["exec_prefix"] = [cluster.asuser, "{username}", "--"]
            if kind == "pw-user-qa" and "status_query_prefix" in have:
                traits["status_query_prefix"] = [cluster.enter]
        spawner = make_spawner(cls=PWSlurmSpawner, username=username, poll_interval=poll_interval, **traits)
        spawner.load_state({"pw_spawner": {
            "version": STATE_VERSION, "job_id": job.job_id, "job_name": job.name, "job_dir": job.job_dir,
            "scheduler": "slurm", "node": "localhost", "service": None, "resource": None,
            "ssh_host": None, "tunnel_port": None}})
        saved = spawner.get_state().get("pw_spawner") or {}
        if saved.get("job_id") != job.job_id:
            raise SystemExit(f"PWSlurmSpawner.load_state() did not take the saved job (state version "
                             f"{STATE_VERSION}): this script must learn the new state format")
        return spawner


def outcome(result: object, phase: Phase) -> None:
    if isinstance(result, BaseException):
        phase.errors += 1
    elif result is not None:
        phase.gone += 1


def take_calls(clusters: Sequence[MockCluster], phase: Phase) -> None:
    for cluster in clusters:
        calls = cluster.take_calls()
        phase.calls += calls
        phase.per_cluster.append(calls.queries)


async def steady_interval(spawners: Sequence[Spawner], clusters: Sequence[MockCluster], interval: float,
                          rng: random.Random, logs: LogCounter) -> Phase:
    """One poll interval: each spawner polls once, at a random moment of it."""
    phase = Phase()
    delays = [rng.uniform(0, interval) for _ in spawners]

    async def one(spawner: Spawner, delay: float) -> object:
        await asyncio.sleep(delay)
        return await spawner.poll_and_notify()

    me, kids = cpu_seconds()
    began = time.perf_counter()
    results = await asyncio.gather(*(one(s, d) for s, d in zip(spawners, delays, strict=True)),
                                   return_exceptions=True)
    rest = began + interval - time.perf_counter()
    if rest > 0:  # the interval's end: whatever the spawners do in the background counts too
        await asyncio.sleep(rest)
    phase.wall = time.perf_counter() - began
    me2, kids2 = cpu_seconds()
    phase.hub_cpu, phase.commands_cpu = me2 - me, kids2 - kids
    for result in results:
        outcome(result, phase)
    take_calls(clusters, phase)
    phase.logged = logs.take()
    return phase


async def measure(spawners: Sequence[Spawner], clusters: Sequence[MockCluster], interval: float,
                  intervals: int, seed: int, logs: LogCounter) -> tuple[Phase, list[Phase]]:
    """The hub-start round, then ``intervals`` steady intervals one after the other, on the running loop."""
    for cluster in clusters:
        cluster.take_calls()  # nothing before the hub starts counts
    logs.take()
    start = Phase()
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(0.02)  # the ticker's first ticks, before the storm
    me, kids = cpu_seconds()
    began = time.perf_counter()
    results = await asyncio.gather(*(s.poll() for s in spawners), return_exceptions=True)
    start.wall = time.perf_counter() - began
    me2, kids2 = cpu_seconds()
    await asyncio.sleep(0.02)
    await ticker.stop()
    start.hub_cpu, start.commands_cpu = me2 - me, kids2 - kids
    start.lag = Ticker.summary(ticker.take())
    for result in results:
        outcome(result, start)
    take_calls(clusters, start)
    start.logged = logs.take()
    rng = random.Random(seed)
    steady = [await steady_interval(spawners, clusters, interval, rng, logs) for _ in range(intervals)]
    return start, steady


_LOOPS: list[asyncio.AbstractEventLoop] = []


def fresh_hub(coroutine) -> object:
    """Run ``coroutine`` in a new event loop: a hub that has just started, with empty caches.

    The closed loops are kept: a cache keyed by ``id(loop)`` must never meet a new loop that
    reuses a collected one's id.
    """
    loop = asyncio.new_event_loop()
    _LOOPS.append(loop)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def cpu_text(phase: Phase) -> str:
    return f"{ms(phase.cpu)} ({ms(phase.hub_cpu)} + {ms(phase.commands_cpu)})"


def part_one(args: argparse.Namespace, builder: Builder, cluster: MockCluster, jobs: list[Job],
             logs: LogCounter) -> None:
    kinds = builder.kinds(args.spawners)
    interval = args.interval * args.time_scale
    results: dict[tuple[int, str], tuple[Phase, Phase]] = {}
    each: dict[tuple[int, str], str] = {}
    for n in sorted(set(args.n)):
        order = kinds if n % 2 == 0 else list(reversed(kinds))  # no kind always first
        for kind in order:
            print(f"{n:,} servers: {LABELS[kind]} ...", file=sys.stderr, flush=True)
            spawners = [builder.make(kind, i, cluster, jobs[i], one_cluster=True) for i in range(n)]
            start, steady = fresh_hub(measure(spawners, [cluster], interval, args.intervals, seed=n,
                                              logs=logs))
            results[n, kind] = (start, steady[-1])
            each[n, kind] = ", ".join(f"{p.calls.queries:,}" for p in steady)
            del spawners

    scale = f"; time scaled by {args.time_scale:g}: the {args.interval:g} s interval lasted {interval:g} s" \
        if args.time_scale != 1 else ""
    print_table(
        f"Hub start: every spawner polled at once ({cluster.squeue} squeue)",
        ["servers", "spawner", "squeue calls", "ids per squeue", "round wall",
         "loop lag max / p99 (10 ms ticker)", "answers"],
        [[f"{n:,}", LABELS[kind], s.calls.shown(), s.calls.ids_per_squeue(), ms(s.wall), s.lag, s.answers(n)]
         for (n, kind), (s, _) in results.items()])
    rows = []
    for (n, kind), (_, st) in results.items():
        floor = results.get((n, "floor"))
        over = ms(st.cpu - floor[1].cpu) if floor and kind != "floor" else "-"
        rows.append([f"{n:,}", LABELS[kind], st.calls.shown(), each[n, kind], st.calls.ids_per_squeue(),
                     cpu_text(st), over, st.answers(n)])
    print_table(
        f"Steady state: each spawner polls once at a random moment of a {args.interval:g} s poll interval; "
        f"the last of {args.intervals} intervals after hub start ({cluster.squeue} squeue{scale})",
        ["servers", "spawner", "squeue calls / interval", "queries in each interval", "ids per squeue",
         "hub CPU (process + commands)", "less the floor", "answers"], rows)

    top = max(args.n)
    shown = [k for k in kinds if (top, k) in results]
    floor = results.get((top, "floor"))

    def less_floor(kind: str) -> float | None:
        if floor is None or kind == "floor":
            return None
        return results[top, kind][1].cpu - floor[1].cpu

    reference = next((k for k in shown if k == "batchspawner"), None)
    ratio_row = ["steady CPU less the floor, vs batchspawner's"]
    for kind in shown:
        mine, theirs = less_floor(kind), less_floor(reference) if reference else None
        ratio_row.append(f"{mine / theirs:.2f}x" if mine is not None and theirs else "-")
    print_table(
        f"Side by side at {top:,} running servers (one mocked Slurm, {cluster.squeue} squeue{scale})",
        ["figure", *[LABELS[k] for k in shown]],
        [["scheduler calls per interval, steady", *[results[top, k][1].calls.shown() for k in shown]],
         ["job ids per squeue, steady", *[results[top, k][1].calls.ids_per_squeue() for k in shown]],
         ["scheduler calls at hub start", *[results[top, k][0].calls.shown() for k in shown]],
         ["hub CPU per interval (process + commands)", *[cpu_text(results[top, k][1]) for k in shown]],
         ["hub start: loop lag max / p99", *[results[top, k][0].lag for k in shown]],
         ["hub start: round wall", *[ms(results[top, k][0].wall) for k in shown]],
         ["answers at hub start", *[results[top, k][0].answers(top) for k in shown]],
         ratio_row])
    for (n, kind), (s, st) in results.items():
        for name, phase in (("hub start", s), ("steady", st)):
            if phase.logged:
                print(f"logged ({n:,}, {LABELS[kind]}, {name}): {phase.logged}")


def part_two(args: argparse.Namespace, builder: Builder, clusters: list[MockCluster],
             jobs: list[list[Job]], logs: LogCounter) -> None:
    kinds = builder.kinds(args.sim_spawners)
    interval = args.interval * args.time_scale
    total = args.sim_servers
    rows = []
    for kind in kinds:
        print(f"simulation: {total:,} servers on {len(clusters)} clusters, {LABELS[kind]} ...",
              file=sys.stderr, flush=True)
        spawners = []
        for i in range(total):
            c = i % len(clusters)
            spawners.append(builder.make(kind, i, clusters[c], jobs[c][i // len(clusters)],
                                         one_cluster=False))
        start, steady = fresh_hub(measure(spawners, clusters, interval, args.intervals, seed=total,
                                          logs=logs))
        del spawners
        for name, phase in (("hub start", start), (f"steady, interval {args.intervals}", steady[-1])):
            rows.append([LABELS[kind], name, *[f"{q:,}" for q in phase.per_cluster],
                         f"{phase.calls.queries:,}", phase.calls.ids_per_squeue(), cpu_text(phase), phase.lag,
                         phase.answers(total)])
            if phase.logged:
                print(f"logged ({LABELS[kind]}, {name}): {phase.logged}")
    scale = f"; time scaled by {args.time_scale:g}" if args.time_scale != 1 else ""
    print_table(
        f"Simulation: {total:,} running servers on {len(clusters)} mocked Slurm clusters "
        f"({total // len(clusters):,} each); scheduler queries per cluster "
        f"({clusters[0].squeue} squeue{scale})",
        ["spawner", "phase", *[c.name for c in clusters], "all", "ids per squeue",
         "hub CPU (process + commands)", "loop lag max / p99", "answers"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000],
                        help="numbers of running servers")
    parser.add_argument("--spawners", nargs="+", choices=ALL_KINDS, default=list(DEFAULT_KINDS),
                        help="the kinds compared (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=30.0, help="JupyterHub's poll_interval (30 s)")
    parser.add_argument("--intervals", type=int, default=2,
                        help="steady intervals after hub start; the figures are the last one's (default 2)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="compress time by this factor: the hub's poll_interval (whole seconds) and the "
                             "spawners' timing traits")
    parser.add_argument("--squeue", choices=("table", "fake"), default="table",
                        help="what answers behind the counting shims (see _mock_slurm.py)")
    parser.add_argument("--trait", action="append", default=[], metavar="NAME=VALUE",
                        help="a PWSlurmSpawner trait (JSON value), e.g. status_refresh_interval=30; "
                             "batch_window and status_refresh_interval are then scaled too")
    parser.add_argument("--sim-servers", type=int, default=10000,
                        help="servers of the simulation (0: skip it)")
    parser.add_argument("--sim-clusters", type=int, default=5, help="clusters of the simulation")
    parser.add_argument("--sim-spawners", nargs="*", choices=ALL_KINDS,
                        default=["pw", "pw-user", "pw-user-qa"],
                        help="the kinds simulated (default: %(default)s)")
    args = parser.parse_args()
    if not 0 < args.time_scale <= 1:
        parser.error("--time-scale must be in (0, 1]")
    scaled = args.interval * args.time_scale
    if scaled < 1 or abs(scaled - round(scaled)) > 1e-9:
        parser.error("--interval times --time-scale must be whole seconds "
                     "(Spawner.poll_interval is an integer)")
    if args.intervals < 1:
        parser.error("--intervals must be at least 1")

    print(machine_line())
    print(f"command: {command_line()}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"open files limit: {soft} (hard {hard}); squeue behind the shims: {args.squeue}")
    logs = LogCounter()
    for name in ("traitlets", "JupyterHub", "pw_spawner", "batchspawner"):
        logging.getLogger(name).addHandler(logs)
        logging.getLogger(name).propagate = False
    work = Path(tempfile.mkdtemp(prefix="pw-bench-poll-"))
    clusters: list[MockCluster] = []
    try:
        builder = Builder(args, work)
        print(f"PWSlurmSpawner traits set: {json.dumps(builder.pw_traits)}")
        if args.n:
            cluster = MockCluster(work / "slurm", "slurm", squeue=args.squeue)
            clusters.append(cluster)
            print(f"making {max(args.n):,} running jobs ...", file=sys.stderr, flush=True)
            jobs = cluster.add_running_jobs(max(args.n), work / "jobs")
            # The single cluster is the hub host's default Slurm: its shims first on PATH.
            saved = dict(os.environ)
            os.environ.update(cluster.env())
            try:
                part_one(args, builder, cluster, jobs, logs)
            finally:
                # The simulation's clusters are reached only through their prefixes: a query that
                # forgets its cluster's finds no squeue and is seen as such, not answered by this one.
                os.environ.clear()
                os.environ.update(saved)
        if args.sim_servers and args.sim_spawners:
            each = -(-args.sim_servers // args.sim_clusters)
            sim = [MockCluster(work / f"c{k + 1}", f"c{k + 1}", squeue=args.squeue, first_id=(k + 1) * 100000)
                   for k in range(args.sim_clusters)]
            clusters += sim
            print(f"making {each:,} running jobs on each of {len(sim)} clusters ...", file=sys.stderr,
                  flush=True)
            sim_jobs = [c.add_running_jobs(each, work / f"jobs-{c.name}") for c in sim]
            part_two(args, builder, sim, sim_jobs, logs)
    finally:
        cleanup(work, clusters)


if __name__ == "__main__":
    main()

"""Submit to ready on a real Slurm: how much of a spawn is the scheduler's, and how much the spawner's.

A single-node Slurm on loopback (Debian's slurm-wlm: slurmctld, slurmd and munge, started the way
the tests start theirs, ``tests/support/slurm_cluster.py``) runs PWSlurmSpawner's jobs with the
fake app, submitted as an ordinary account through ``sudo -u`` as in production, with the spawner's
default intervals. Node and hub are one host, so the benchmark watches the job directory itself
(every 2 ms) and splits each of R starts (default 10) into:

- spawner, submit: from calling start() until sbatch has answered with the job id (the options,
  the script, ``sudo`` and ``sbatch``);
- scheduler: from the job id until the job's first write to service.json (slurmctld scheduling
  the job, slurmd launching its script);
- job and app: from that write until the job wrote RUNNING (the script's set-up, the app's boot
  and the check that the app holds its port);
- spawner, notice: from RUNNING written until start() returned;
- URL answers: start() until an HTTP request to the address gets an answer.

Each submission meets an idle node (the benchmark waits for ``sinfo`` to say so), at a random
moment of slurmctld's one-second scheduling rhythm. Beside it, the
scheduler's own floor, the same account submitting ``sbatch --wrap`` of a command
that only creates a file, from calling sbatch until the file exists (the same "scheduler" span
with nothing of pw_spawner in it).

Needs root (slurmd and munged run as root here) and slurm-wlm (``.ci/install-system.sh``
installs it); where either is missing it says why and exits 0 without figures.

    python benchmarks/bench_slurm_spawn.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from _common import command_line, machine_line, median, ms, print_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.slurm_cluster import SlurmCluster, ensure_user, slurm_available  # noqa: E402

from pw_spawner import PWSlurmSpawner  # noqa: E402
from pw_spawner.testing import fake_app  # noqa: E402
from pw_spawner.testing.spawners import make_spawner  # noqa: E402

USER = "pwbenchuser"
PROFILE = {"slug": "bench", "display_name": "Benchmark", "default": True,
           "job": {"partition": "debug", "cores": 1, "memory": "256M", "walltime": "00:30:00"}}


@dataclass
class Spans:
    """Each start's spans, in seconds."""

    submit: list[float] = field(default_factory=list)
    scheduler: list[float] = field(default_factory=list)
    job: list[float] = field(default_factory=list)
    notice: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)


def job_state(job_dir: str) -> str | None:
    """JOB_STATUS in the job's service.json, None while there is none (a cheap text check)."""
    try:
        text = Path(job_dir, "service.json").read_text()
    except OSError:
        return None
    return "RUNNING" if '"JOB_STATUS": "RUNNING"' in text else "other"


async def http_answer(url: str, deadline: float) -> None:
    parts = urlsplit(url)
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        except OSError:
            await asyncio.sleep(0.005)
            continue
        writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        line = await reader.readline()
        writer.close()
        if line.startswith(b"HTTP/"):
            return
    raise TimeoutError(f"{url} did not answer")


async def one_start(cluster: SlurmCluster, app: list[str], spans: Spans) -> None:
    spawner = make_spawner(cls=PWSlurmSpawner, username=USER, profile_list=[PROFILE], cmd=app,
                           bind_ip="127.0.0.1", job_dir_root="~/.pw_spawner/jobs",
                           exec_prefix=["sudo", "-u", "{username}", "--", "env",
                                        f"SLURM_CONF={cluster.conf_path}"])
    began = time.perf_counter()
    starting = asyncio.ensure_future(spawner.start())
    submitted = first_write = running = None
    while not starting.done():
        now = time.perf_counter()
        if submitted is None and spawner.job is not None:
            submitted = now
        if submitted is not None and spawner.job is not None:
            state = job_state(spawner.job.job_dir)
            if first_write is None and state is not None:
                first_write = now
            if running is None and state == "RUNNING":
                running = now
        await asyncio.sleep(0.002)
    url = await starting
    returned = time.perf_counter()
    await http_answer(url, time.monotonic() + 30)
    answered = time.perf_counter()
    try:
        if None in (submitted, first_write, running):
            raise RuntimeError("a start went by too fast to split (no job id, or no service.json seen)")
        assert submitted is not None and first_write is not None and running is not None
        spans.submit.append(submitted - began)
        spans.scheduler.append(first_write - submitted)
        spans.job.append(running - first_write)
        spans.notice.append(max(0.0, returned - running))
        spans.total.append(returned - began)
        spans.answered.append(answered - began)
    finally:
        await spawner.stop()


async def scheduler_floor(cluster: SlurmCluster, work: Path) -> float:
    """sbatch --wrap of a file's creation, as the job's account: from sbatch until the file exists."""
    marker = work / f"floor-{time.monotonic_ns()}"
    wrap = f"touch {shlex.quote(str(marker))}"
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "sudo", "-u", USER, "--", "env", f"SLURM_CONF={cluster.conf_path}", "sbatch", "--parsable",
        "--partition=debug", "--mem=64M", f"--chdir={work}", "--output=/dev/null", f"--wrap={wrap}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"sbatch --wrap failed: {err.decode().strip()}")
    while not marker.exists():
        if time.perf_counter() - began > 60:
            raise TimeoutError("the floor job did not run within 60 s")
        await asyncio.sleep(0.002)
    return time.perf_counter() - began


async def node_idle(cluster: SlurmCluster) -> None:
    """Until the node has finished the last job (its clean-up included): each start meets an idle node."""
    for _ in range(600):
        state = await asyncio.to_thread(cluster.run, "sinfo", "-h", "-o", "%T")
        if state.stdout.strip() == "idle":
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the node did not become idle within 30 s")


async def bench(args: argparse.Namespace, cluster: SlurmCluster, work: Path) -> None:
    app = fake_app.copy_for_other_accounts(work / "app")
    spans = Spans()
    floors = []
    await one_start(cluster, app, Spans())  # a first job warms slurmd's and the node's caches
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats} ...", file=sys.stderr)
        # slurmctld schedules once a second; a random moment of that second for each submission
        # (else the benchmark's own rhythm would pick the same moment every time).
        await node_idle(cluster)
        await asyncio.sleep(random.random())
        floors.append(await scheduler_floor(cluster, work))
        await node_idle(cluster)
        await asyncio.sleep(random.random())
        await one_start(cluster, app, spans)

    def both(values: list[float]) -> str:
        return f"{ms(median(values))} / {ms(max(values))}"

    print_table(
        f"Submit to ready on a real single-node Slurm, fake app, median / max of {args.repeats}",
        ["span", "PWSlurmSpawner", "the scheduler's floor (sbatch --wrap touch)"],
        [["spawner: start() to the job id (options, script, sudo, sbatch)", both(spans.submit), "-"],
         ["scheduler: job id to the job's first write", both(spans.scheduler), "-"],
         ["start() (the floor: sbatch) to the job's first write",
          both([a + b for a, b in zip(spans.submit, spans.scheduler, strict=True)]), both(floors)],
         ["job and app: first write to RUNNING written", both(spans.job), "-"],
         ["spawner: RUNNING written to start() returned", both(spans.notice), "-"],
         ["start() returned", both(spans.total), "-"],
         ["URL answers HTTP", both(spans.answered), "-"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="starts (and floor jobs)")
    args = parser.parse_args()
    print(machine_line())
    print(f"command: {command_line()}")
    ok, why = slurm_available()
    if not ok or os.geteuid() != 0:
        print(f"not run: {why if not ok else 'slurmd and munged need root'}")
        return 0
    account = ensure_user(USER)
    work = Path(tempfile.mkdtemp(prefix="pw-bench-slurm-"))
    work.chmod(0o755)
    os.chown(work, account.pw_uid, account.pw_gid)  # the job's account writes the floor's marker here
    cluster = SlurmCluster(work / "slurm")
    try:
        cluster.start(timeout=60)
        asyncio.run(bench(args, cluster, work))
    finally:
        cluster.stop()
        if os.environ.get("PW_BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

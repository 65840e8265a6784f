"""How long a server takes to start and to stop: PWSpawner's local target against LocalProcessSpawner.

What it measures, for each spawner, R times (default 5), median and max:

- job says RUNNING (PWSpawner only): from calling start() until the job wrote RUNNING to its
  service.json, which it does once the app listens; what follows is the spawner noticing it;
- start() returned: from calling start() until it returns the server's address;
- URL answers: from calling start() until an HTTP request to that address gets any answer below
  500, which is when JupyterHub's own ``wait_for_http_server`` would route the user there (the
  hub only starts waiting once start() has returned, and so does this benchmark);
- stop(): from calling stop() until it returns; afterwards the port must refuse connections.

The alternative is JupyterHub's LocalProcessSpawner starting the same command. Both run outside a
hub, built the same way (``pw_spawner.testing.spawners.make_spawner``: a stand-in user and
``Hub()``; LocalProcessSpawner takes the same keyword arguments) and as the same account, the
benchmark's own (``--allow-root`` is added when that is root, which Jupyter otherwise refuses).
``jupyterhub-singleuser`` will not serve until it has reached its hub's API (it gives up after five
tries), so a stub hub API answers its version check on 127.0.0.1; nothing else of a hub is there,
so the proxy and database work of a real spawn is left out of both figures alike.

PWSpawner runs the local target's jobs below the hub's CPU priority (``job_niceness``, default
19), LocalProcessSpawner at it: a third row, "PWSpawner (job_niceness 0)", is PWSpawner at the
hub's priority, the like-for-like comparison of the spawners' own work (on a machine where the
benchmark's own probes compete for the CPU, a niced app boots a little later).

The difference is what each spawner does: LocalProcessSpawner forks the command and returns at
once; PWSpawner renders a job script, runs it through the local runner, and follows the job
through its status checks until the job's service.json says the app listens, so that the same
code path serves Slurm and PBS. The command is ``jupyterhub-singleuser`` (JupyterLab) by default,
found next to this Python first (``make bench`` does not activate the venv); ``--cmd fake`` uses
:mod:`pw_spawner.testing.fake_app`, a tiny HTTP server, to show the spawners' own share of the time.

Then ``--concurrent`` (default 100) spawns at once, with fake_app whatever ``--cmd`` says, per
spawner: ``start()`` of every one gathered at once (each a user of its own, all running as the
benchmark's account: ``allow_shared_account`` where PWSpawner has it), a 10 ms ticker on the event
loop recording how late each of its wake-ups is (the loop's lag: p50, p99, max), until all have
returned; then one HTTP request to each address; then ``stop()`` of all at once, with the ticker
again. A lag is time during which the hub could answer nobody.

    python benchmarks/bench_spawn_latency.py [--cmd singleuser|fake] [--repeats 5] [--concurrent 100]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import jupyterhub
from _common import Ticker, command_line, machine_line, median, ms, print_table
from jupyterhub.objects import Hub
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port

from pw_spawner import PWSpawner
from pw_spawner.testing.spawners import make_spawner

PROFILE = {
    "slug": "bench", "display_name": "Benchmark", "default": True,
    "job": {"cores": 1, "memory": "1G", "walltime": "01:00:00"},
}


NICENESS_0 = "PWSpawner (job_niceness 0)"


class _HubAPI(BaseHTTPRequestHandler):
    """Answers jupyterhub-singleuser's start-up version check (and its activity reports)."""

    def _answer(self) -> None:
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def stub_hub() -> tuple[Hub, ThreadingHTTPServer]:
    """A Hub object whose API URL is a stub server in a thread (off the event loop being timed)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Hub(ip="127.0.0.1", port=server.server_address[1], base_url="/hub/"), server


async def http_answer(host: str, port: int, deadline: float, every: float) -> int:
    """The status of the first HTTP answer below 500, trying every ``every`` seconds."""
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET / HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < 500:
                return int(parts[1])
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered HTTP on {host}:{port}")
        await asyncio.sleep(every)


def job_said_running(spawner, began_wall: float) -> float | None:
    """Seconds from start() until PWSpawner's job wrote RUNNING (the app listened), else None.

    service.json is written whole and renamed into place, so its mtime is when RUNNING was written;
    the rest of start() is the wait for the spawner's next status check.
    """
    job = getattr(spawner, "job", None)
    if job is None:
        return None
    try:
        return os.stat(f"{job.job_dir}/service.json").st_mtime - began_wall
    except OSError:
        return None


def port_refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except OSError:
        return True


@dataclass
class Timings:
    listening: list[float] = field(default_factory=list)
    returned: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    stopped: list[float] = field(default_factory=list)
    port_closed: list[bool] = field(default_factory=list)


async def one_spawn(spawner, timings: Timings, args: argparse.Namespace) -> None:
    """start(), wait for HTTP, stop(), check the port: the hub's sequence, timed."""
    began, began_wall = time.perf_counter(), time.time()
    try:
        started = await asyncio.wait_for(spawner.start(), args.timeout)
        returned = time.perf_counter()
        # start() returns a URL (PWSpawner) or an (ip, port) pair (LocalProcessSpawner).
        if isinstance(started, tuple):
            host, port = started
        else:
            parts = urlsplit(started)
            host, port = parts.hostname, parts.port
        await http_answer(host, port, time.monotonic() + args.timeout, args.probe_every)
        answered = time.perf_counter()
        listening = job_said_running(spawner, began_wall)
    except BaseException:
        await spawner.stop(now=True)
        raise
    stop_began = time.perf_counter()
    await spawner.stop()
    stopped = time.perf_counter()
    if listening is not None:
        timings.listening.append(listening)
    timings.returned.append(returned - began)
    timings.answered.append(answered - began)
    timings.stopped.append(stopped - stop_began)
    timings.port_closed.append(port_refuses(host, port))


def command(kind: str) -> list[str]:
    if kind == "fake":
        return [sys.executable, "-m", "pw_spawner.testing.fake_app"]
    # Next to this Python first: `make bench` runs the venv's python without activating the venv.
    beside = Path(sys.executable).parent / "jupyterhub-singleuser"
    path = str(beside) if os.access(beside, os.X_OK) else shutil.which("jupyterhub-singleuser")
    missing = [m for m in ("jupyterhub.singleuser", "jupyter_server") if importlib.util.find_spec(m) is None]
    if path is None or missing:
        raise SystemExit("jupyterhub-singleuser is not available here (need jupyterhub and jupyterlab "
                         f"installed; missing: {', '.join(missing) or 'the command on PATH'}); "
                         "use --cmd fake to time the spawners with the fake app")
    return [path]


class Factories:
    """Makes the two spawners the same way for every part of the benchmark."""

    def __init__(self, args: argparse.Namespace, work: Path, hub: Hub, cmd: list[str], kind: str) -> None:
        self.args, self.work, self.hub, self.cmd, self.kind = args, work, hub, cmd, kind
        self.account = pwd.getpwuid(os.getuid()).pw_name
        self.extra_args = ["--allow-root"] if os.geteuid() == 0 and kind == "singleuser" else []
        self.logs = (work / "local-process.log").open("ab")

    def pw_spawner(self, username: str | None = None, **extra: object) -> PWSpawner:
        traits: dict[str, object] = dict(extra)
        if self.args.status_interval:
            traits["status_interval"] = self.args.status_interval
        # Like LocalProcessSpawner here, every server runs as the benchmark's own account: an
        # opt-in where the class has one (the hub refuses shared accounts by default).
        if "allow_shared_account" in PWSpawner.class_traits():
            traits["allow_shared_account"] = True
        spawner = make_spawner(profile_list=[PROFILE], job_dir_root=str(self.work / "jobs" / "{username}"),
                               username=username or self.account, cmd=self.cmd, args=self.extra_args,
                               **traits)
        spawner.hub = self.hub
        return spawner

    def local_process_spawner(self) -> LocalProcessSpawner:
        # Its user must be an account (it looks the name up to run the server as that user).
        spawner = make_spawner(cls=LocalProcessSpawner, username=self.account, cmd=self.cmd,
                               args=self.extra_args,
                               popen_kwargs={"stdout": self.logs, "stderr": subprocess.STDOUT})
        spawner.hub = self.hub
        if self.kind == "fake":
            # The fake app takes its port on the command line, where the job script puts it for
            # PWSpawner; LocalProcessSpawner passes it only in JUPYTERHUB_SERVICE_URL.
            spawner.port = random_port()  # what LocalProcessSpawner.start() would pick
            spawner.args = [f"--ip={spawner.ip or '127.0.0.1'}", f"--port={spawner.port}"]
        return spawner

    def close(self) -> None:
        self.logs.close()


@dataclass
class Crowd:
    """What ``count`` spawns at once cost the event loop."""

    started: int = 0
    failed: list[str] = field(default_factory=list)
    answered: int = 0
    start_times: list[float] = field(default_factory=list)
    all_started: float = 0.0
    start_lags: list[float] = field(default_factory=list)
    stop_wall: float = 0.0
    stop_lags: list[float] = field(default_factory=list)


async def crowd(make: Callable[[int], object], count: int, args: argparse.Namespace) -> Crowd:
    """``count`` start() calls at once, a 10 ms ticker on the loop; then every URL; then stop() all."""
    result = Crowd()
    spawners = [make(i) for i in range(count)]
    ticker = Ticker(0.01)
    ticker.start()
    await asyncio.sleep(0.05)
    ticker.take()

    async def one(spawner) -> tuple[str, int]:
        began = time.perf_counter()
        started = await asyncio.wait_for(spawner.start(), args.timeout)
        result.start_times.append(time.perf_counter() - began)
        if isinstance(started, tuple):
            return started
        parts = urlsplit(started)
        return parts.hostname, parts.port

    began = time.perf_counter()
    outcomes = await asyncio.gather(*(one(s) for s in spawners), return_exceptions=True)
    result.all_started = time.perf_counter() - began
    result.start_lags = ticker.take()
    up = []
    for spawner, outcome in zip(spawners, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            result.failed.append(str(getattr(outcome, "jupyterhub_message", None) or outcome)[:200])
        else:
            result.started += 1
            up.append((spawner, outcome))
    deadline = time.monotonic() + args.timeout
    answers = await asyncio.gather(*(http_answer(host, port, deadline, args.probe_every)
                                     for _, (host, port) in up), return_exceptions=True)
    result.answered = sum(1 for a in answers if not isinstance(a, BaseException))
    ticker.take()
    began = time.perf_counter()
    await asyncio.gather(*(s.stop() for s in spawners), return_exceptions=True)
    result.stop_wall = time.perf_counter() - began
    result.stop_lags = ticker.take()
    await ticker.stop()
    return result


async def bench(args: argparse.Namespace, work: Path) -> None:
    hub, hub_server = stub_hub()
    factories = Factories(args, work, hub, command(args.cmd), args.cmd)
    spawners: dict[str, Callable[[], object]] = {
        "PWSpawner (local target)": factories.pw_spawner,
        "LocalProcessSpawner": factories.local_process_spawner,
    }
    # Jobs of the local target run below the hub's CPU priority by default; LocalProcessSpawner's
    # servers run at it. The same spawner at the hub's priority is the like-for-like comparison.
    niced = "job_niceness" in PWSpawner.class_traits()
    if niced:
        spawners[NICENESS_0] = lambda: factories.pw_spawner(job_niceness=0)
    results = {name: Timings() for name in spawners}
    crowds: dict[str, Crowd] = {}
    try:
        for r in range(args.repeats):
            order = list(spawners) if r % 2 == 0 else list(reversed(spawners))  # neither always first
            for name in order:
                print(f"repeat {r + 1}/{args.repeats}: {name} ...", file=sys.stderr)
                await one_spawn(spawners[name](), results[name], args)
        if args.concurrent:
            crowd_factories = factories
            if args.cmd != "fake":
                crowd_factories = Factories(args, work, hub, command("fake"), "fake")
            makers = {
                "PWSpawner (local target)": lambda i: crowd_factories.pw_spawner(f"bench{i:03d}"),
                "LocalProcessSpawner": lambda i: crowd_factories.local_process_spawner(),
            }
            if niced:
                makers[NICENESS_0] = lambda i: crowd_factories.pw_spawner(f"bench{i:03d}", job_niceness=0)
            for name, make in makers.items():
                print(f"{args.concurrent} spawns at once: {name} ...", file=sys.stderr)
                crowds[name] = await crowd(make, args.concurrent, args)
    finally:
        hub_server.shutdown()
        factories.close()

    def both(values: list[float]) -> str:
        return f"{ms(median(values))} / {ms(max(values))}"

    shown = {"singleuser": "jupyterhub-singleuser", "fake": "fake_app"}[args.cmd]
    interval = args.status_interval or PWSpawner.status_interval.default_value
    print_table(
        f"Start and stop of one server, {shown}, median / max of {args.repeats} "
        f"(PWSpawner status_interval {interval:g} s)",
        ["spawner", "job says RUNNING", "start() returned", "URL answers HTTP", "stop()",
         "port closed after stop"],
        [[name, both(t.listening) if t.listening else "-", both(t.returned), both(t.answered),
          both(t.stopped), f"{sum(t.port_closed)}/{len(t.port_closed)}"] for name, t in results.items()])
    if crowds:
        print_table(
            f"{args.concurrent} spawns at once (fake_app), event-loop lag of a 10 ms ticker, "
            "p50 / p99 / max",
            ["spawner", "started", "URL answers", "start() median / max", "all started",
             "lag during the starts", "stop() of all", "lag during the stops"],
            [[name, f"{c.started}/{args.concurrent}", f"{c.answered}/{c.started}",
              both(c.start_times) if c.start_times else "-", ms(c.all_started),
              Ticker.summary(c.start_lags, p50=True), ms(c.stop_wall), Ticker.summary(c.stop_lags, p50=True)]
             for name, c in crowds.items()])
        for name, c in crowds.items():
            for reason, n in Counter(c.failed).most_common(3):
                print(f"{name}: {n} starts failed: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cmd", choices=("singleuser", "fake"), default="singleuser",
                        help="the server both spawners start (default: jupyterhub-singleuser)")
    parser.add_argument("--repeats", type=int, default=5, help="starts per spawner")
    parser.add_argument("--status-interval", type=float, default=None,
                        help="PWSpawner.status_interval (default: the spawner's own default)")
    parser.add_argument("--probe-every", type=float, default=0.02,
                        help="seconds between HTTP attempts while waiting for the server")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on one start after this")
    parser.add_argument("--concurrent", type=int, default=100,
                        help="then this many spawns at once, with fake_app, for the event loop's lag "
                             "(0: skip)")
    args = parser.parse_args()
    print(machine_line())
    print(f"command: {command_line()}")
    work = Path(tempfile.mkdtemp(prefix="pw-bench-spawn-"))
    try:
        asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

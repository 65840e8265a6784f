"""What validating the spawn options and rendering the submit script cost, per script.

What it measures: for every profile and environment in ``profiles/`` (the shipped examples) and
every scheduler kind the registry has (slurm, pbs, torque, sge, lsf, local, controller), the time of one
:func:`pw_spawner.profiles.validate_options` and of one :func:`pw_spawner.scripts.render_script`,
each call timed on its own over many iterations (default 100), median and 99th percentile. The
script is rendered with the environment a real PWSpawner hands its jobs (``get_env()``: the
JUPYTERHUB_* variables and the API token). It also times loading the profiles directory, which
the spawner does at each spawn so that edits need no hub restart.

There is no alternative to compare with: the point is the size of this cost next to a spawn, which
takes seconds (see bench_spawn_latency.py), so rendering is not a factor in spawn time.

    python benchmarks/bench_render.py [--iterations 100] [--profiles DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _common import command_line, machine_line, print_table

from pw_spawner.apps import jupyter_launch
from pw_spawner.options import validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.schedulers import scheduler_classes, scheduler_kinds
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.testing.spawners import make_spawner

REPO = Path(__file__).resolve().parents[1]


def timed(call: Callable[[], object], iterations: int) -> tuple[list[float], object]:
    """Seconds of each of ``iterations`` calls, and the last result."""
    times, result = [], None
    for _ in range(iterations):
        began = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - began)
    return times, result


def short(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"


def spread(values: list[float]) -> str:
    """Median and 99th percentile."""
    p99 = statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]
    return f"{short(statistics.median(values))} / {short(p99)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100, help="calls timed per script")
    parser.add_argument("--profiles", default=str(REPO / "profiles"), help="the profiles directory")
    args = parser.parse_args()
    print(machine_line())
    print(f"command: {command_line()}")

    spawner = make_spawner(username="alice")
    hub_env = spawner.get_env()
    app = jupyter_launch(["jupyterhub-singleuser"], spawner.get_args())
    groups = sorted({g for p in build_profiles([], args.profiles) for g in p.groups})

    load_times, profiles = timed(lambda: build_profiles([], args.profiles), args.iterations)
    rows: list[list[object]] = []
    for profile in profiles:
        for environment in profile.environments or [None]:
            options = {"profile": profile.slug}
            if environment is not None:
                options["environment"] = environment.slug
            validate_times, selection = timed(
                lambda options=options: validate_options(profiles, options, groups=groups), args.iterations)
            for kind in scheduler_kinds():
                request = ScriptRequest(selection=selection, scheduler=kind, job_name="pw-alice",
                                        job_dir="/home/alice/.pw_spawner/jobs/pw-alice", app=app,
                                        bind_ip=scheduler_classes()[kind].default_bind_ip(), hub_env=hub_env,
                                        walltime_warning_s=spawner.walltime_warning_minutes * 60)
                render_times, script = timed(lambda request=request: render_script(request), args.iterations)
                name = f"{profile.slug}/{environment.slug if environment else '-'}"
                rows.append([name, kind, spread(validate_times), spread(render_times),
                             f"{len(script.splitlines())} lines", f"{len(script.encode())} B"])
    print_table(f"Validate options + render the submit script, median / p99 of {args.iterations} calls each",
                ["profile/environment", "scheduler", "validate_options", "render_script", "script", "size"],
                rows)
    print(f"loading {args.profiles} ({len(profiles)} profiles), as each spawn does: {spread(load_times)}")


if __name__ == "__main__":
    main()

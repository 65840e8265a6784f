"""Run every benchmark one after the other, with settings that keep the whole run to a few minutes.

Each benchmark runs in its own Python process (so that one's CPU accounting and event loop do not
leak into the next) and prints its tables as it finishes. ``--full`` uses each script's own defaults
instead, which are the settings of the figures in docs/benchmarks.md; ``--real-slurm`` and
``--start-slurm`` are passed to the polling benchmark, which then also runs against a real Slurm.

    python benchmarks/run_all.py [--full] [--real-slurm | --start-slurm]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, arguments of the short run, arguments of the --full run); the short run keeps every code
#: path and trims the counts.
BENCHMARKS = [
    ("bench_render.py", ["--iterations", "30"], []),
    ("bench_status_polling.py", ["--n", "10", "50", "--rounds", "1", "--steady-n", "50", "--interval", "10"],
     []),
    ("bench_spawn_latency.py", ["--cmd", "fake", "--repeats", "3"], ["--cmd", "fake"]),
    ("bench_spawn_latency.py", ["--repeats", "3"], []),
    ("bench_tunnel.py", ["--quick"], []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each script's own (longer) defaults")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--real-slurm", action="store_true", help="also poll the Slurm SLURM_CONF points at")
    where.add_argument("--start-slurm", action="store_true", help="also poll a private Slurm (root)")
    args = parser.parse_args()

    runs = [(script, full if args.full else short) for script, short, full in BENCHMARKS]
    if args.real_slurm or args.start_slurm:
        polling = next(extra for script, extra in runs if script == "bench_status_polling.py")
        runs.append(("bench_status_polling.py",
                     [*polling, "--real-slurm" if args.real_slurm else "--start-slurm"]))
    failed = []
    for script, extra in runs:
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        began = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *extra], check=False)
        print(f"({script} took {time.monotonic() - began:.0f} s)", flush=True)
        if done.returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

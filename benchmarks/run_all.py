"""Run every benchmark one after the other, with settings that keep the whole run to a few minutes.

Each benchmark runs in its own Python process (so that one's CPU accounting and event loop do not
leak into the next) and prints its tables as it finishes. ``--full`` uses each script's own defaults
instead, which are the settings of the figures in docs/benchmarks.md (about half an hour).

    python benchmarks/run_all.py [--full]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, arguments of the short run, arguments of the --full run); the short run keeps every code
#: path and trims the counts. The polling benchmark's short run compresses time tenfold (3 s poll
#: intervals) and simulates 10,000 servers for pw_spawner with a query account only.
BENCHMARKS = [
    ("bench_render.py", ["--iterations", "30"], []),
    ("bench_status_polling.py", ["--time-scale", "0.1", "--sim-spawners", "pw", "pw-user-qa"], []),
    ("bench_spawn_latency.py", ["--cmd", "fake", "--repeats", "3"], ["--cmd", "fake"]),
    ("bench_spawn_latency.py", ["--repeats", "3", "--concurrent", "0"], ["--concurrent", "0"]),
    ("bench_slurm_spawn.py", ["--repeats", "3"], []),
    ("bench_tunnel.py", ["--quick"], []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each script's own (longer) defaults")
    args = parser.parse_args()

    runs = [(script, full if args.full else short) for script, short, full in BENCHMARKS]
    failed = []
    began_all = time.monotonic()
    for script, extra in runs:
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        began = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *extra], check=False)
        print(f"({script} took {time.monotonic() - began:.0f} s)", flush=True)
        if done.returncode:
            failed.append(script)
    print(f"\n(all benchmarks took {time.monotonic() - began_all:.0f} s)")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

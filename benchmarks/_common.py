"""Small helpers the benchmark scripts share: the machine line, CPU clocks and plain-text tables.

The scripts import this as a sibling module (``python benchmarks/<name>.py`` puts ``benchmarks/`` on
``sys.path``), so each still runs on its own. Only the standard library is used here.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence


def slurm_version() -> str:
    """``sbatch --version``, or why it is not known.

    The client reads a configuration before it prints its version; without ``SLURM_CONF`` a throw-away
    two-line one is enough, so the version is known even where no cluster runs.
    """
    env = dict(os.environ)
    scratch = None
    if not env.get("SLURM_CONF"):
        scratch = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        scratch.write("ClusterName=version\nSlurmctldHost=localhost\n")
        scratch.close()
        env["SLURM_CONF"] = scratch.name
    try:
        out = subprocess.run(["sbatch", "--version"], capture_output=True, text=True, env=env,
                             timeout=10, check=False)
        return out.stdout.strip() or "unknown (sbatch --version said nothing)"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not available ({exc.__class__.__name__})"
    finally:
        if scratch is not None:
            os.unlink(scratch.name)


def machine_line() -> str:
    """What a reader needs to compare figures: cores, Python, the Slurm client, the packages."""
    import jupyterhub

    import pw_spawner

    # The load average says whether something else was competing for the cores during the run.
    return (f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"{slurm_version()}, jupyterhub {jupyterhub.__version__}, pw_spawner {pw_spawner.__version__}, "
            f"load average {os.getloadavg()[0]:.2f} at start")


def command_line() -> str:
    """The command that produced the figures, as it would be typed."""
    return shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def cpu_seconds() -> tuple[float, float]:
    """(this process, its finished children): user + system seconds so far.

    Children count once they have been waited for, which asyncio does for every command it runs; a
    detached daemon (slurmctld, a fake job's supervisor) is not a child and is measured apart.
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def process_cpu_seconds(pid: int) -> float | None:
    """user + system seconds of any process (all its threads), from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3 of stat(5), utime and stime are 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A fixed-width table with a title line, easy to read in a terminal and to copy into the docs."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        # The first column is a label (left-aligned), the others figures (right-aligned).
        print("  ".join(cell.rjust(w) if i else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def quantile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1..99) of ``values``; the only value when there is one."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    # "inclusive": never beyond the values seen (the default extrapolates from a few samples).
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Ticker:
    """A task that wakes every ``every`` seconds and records how late each wake-up was: the
    event loop's lag, i.e. how long anything else on the loop (a poll, a spawn) kept it busy."""

    def __init__(self, every: float = 0.01) -> None:
        self.every = every
        self.lags: list[float] = []
        self._task: asyncio.Future | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.every
            await asyncio.sleep(self.every)
            self.lags.append(max(0.0, loop.time() - due))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def take(self) -> list[float]:
        """The lags recorded since the last take."""
        lags, self.lags = self.lags, []
        return lags

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @staticmethod
    def summary(lags: Sequence[float], *, p50: bool = False) -> str:
        """``max / p99`` (or ``p50 / p99 / max``) of ``lags``."""
        if not lags:
            return "-"
        if p50:
            return f"{ms(quantile(lags, 50))} / {ms(quantile(lags, 99))} / {ms(max(lags))}"
        return f"{ms(max(lags))} / {ms(quantile(lags, 99))}"

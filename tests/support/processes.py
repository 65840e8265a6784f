"""Process bookkeeping for the daemons the tests start (Slurm, Grid Engine): finding, signalling and
waiting for processes through /proc, and the watchdog that ends them when the test process dies.

Standard library only. The watchdog is a small process started with ``python -I``; it imports the
daemon module that started it (``support.slurm_cluster``, ``support.sge_cell``) and runs that
module's ``_watchdog_main`` on the lines the test process sends; when the pipe closes without a
``done`` line (the test process was killed, even by SIGKILL) that function kills what it was told of.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The tests' directory, which holds the ``support`` package (``python -I`` leaves it off the path).
TESTS_DIR = str(Path(__file__).resolve().parent.parent)


def world_traversable(path: Path) -> bool:
    """True when every directory from / down to ``path`` has o+x."""
    path = path.resolve()
    for p in (path, *path.parents):
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def session_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # pid (comm) state ppid pgrp session ...
            return int(f.read().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def signal_all(live: Iterable[int], grace: float) -> None:
    """SIGTERM every pid, SIGKILL whatever is left after ``grace`` seconds."""
    live = [p for p in live if p > 1]
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in live):
        time.sleep(0.05)
    for pid in live:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def terminate(pids: Mapping[int, str], grace: float) -> None:
    """Signal each pid whose command line still contains its expected name (see signal_all)."""
    signal_all([pid for pid, name in pids.items() if pid > 1 and name in cmdline(pid)], grace)


def pids_with_environment(entry: bytes, command: str | None = None) -> list[int]:
    """Processes (other than this one) whose environment holds ``entry`` (``b"SGE_ROOT=/x"``),
    and whose command line contains ``command`` where one is given."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if command is not None and command not in cmdline(pid):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if entry in env:
            found.append(pid)
    return found


def kill_with_sessions(pids: Iterable[int], grace: float) -> None:
    """Kill ``pids`` and every process sharing a session with one of them (a job that cleared its
    environment, or left its daemon's process, still lives in the session it was started in)."""
    pids = set(pids)
    if not pids:
        return
    protected = {None, 0, 1, os.getsid(0)}
    sids = {session_of(p) for p in pids} - protected
    victims = set(pids)
    if sids:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and session_of(int(entry)) in sids:
                victims.add(int(entry))
    victims.discard(os.getpid())
    signal_all(victims, grace)


def wait_zombies_reaped(names: Iterable[str], timeout: float = 3) -> None:
    """Wait (bounded) until no zombie with one of these command names is left (a daemon that
    detached is init's to reap), so that ``pgrep`` is empty right after a stop."""
    wanted = {f"({n[:15]})" for n in names}  # the kernel keeps 15 characters of a command's name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        zombies = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, rest = f.read().rpartition(")")
            except OSError:
                continue
            comm = head[head.find("(") :] + ")"
            if comm in wanted and rest.split()[:1] == ["Z"]:
                zombies = True
                break
        if not zombies:
            return
        time.sleep(0.1)


_BOOT = ("import importlib, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "sys.path.insert(0, sys.argv[1]); importlib.import_module(sys.argv[2])._watchdog_main(sys.stdin)")


def read_orders(lines: Iterable[str]) -> tuple[dict[int, str], dict[str, list[str]]] | None:
    """What the test process told its watchdog, one order per line: ``pid <pid> <name>`` or
    ``<word> <argument>`` (``rmdir <path>``...). None when it ended with ``done`` (a clean stop:
    nothing to kill); else the pids by name and every other order's arguments, once its end of
    the pipe closed."""
    pids: dict[int, str] = {}
    orders: dict[str, list[str]] = {}
    for raw in lines:
        word, _, arg = raw.rstrip("\n").partition(" ")
        if word == "done":
            return None
        if word == "pid":
            pid, _, name = arg.partition(" ")
            pids[int(pid)] = name
        else:
            orders.setdefault(word, []).append(arg)
    return pids, orders


class Watchdog:
    """The test process's end of a watchdog (see the module docstring)."""

    def __init__(self, module: str) -> None:
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, TESTS_DIR, module],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survive a Ctrl-C / killpg aimed at the tests
        )

    def tell(self, line: str) -> None:
        wd = self._process
        if wd is None or wd.stdin is None or wd.stdin.closed:
            return
        try:
            wd.stdin.write(line.encode() + b"\n")
            wd.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def close(self) -> None:
        """A clean end: ``done``, then wait for the watchdog to exit (it kills nothing)."""
        wd, self._process = self._process, None
        if wd is None:
            return
        if wd.stdin is not None and not wd.stdin.closed:
            with contextlib.suppress(BrokenPipeError, OSError):
                wd.stdin.write(b"done\n")
                wd.stdin.flush()
            with contextlib.suppress(BrokenPipeError, OSError):
                wd.stdin.close()
        try:
            wd.wait(timeout=5)
        except subprocess.TimeoutExpired:
            wd.kill()
            wd.wait()


class WatchedDaemons:
    """What a test's own daemons (a Slurm cluster, a Grid Engine cell, a PostgreSQL server) share:
    ``with`` starts and stops them, and a :class:`Watchdog` is told what to clean up should the test
    process die first. Subclasses define ``start()`` and ``stop()``."""

    _watchdog: Watchdog | None = None

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog is not None:
            self._watchdog.tell(line)

    def _close_watchdog(self) -> None:
        wd, self._watchdog = self._watchdog, None
        if wd is not None:
            wd.close()

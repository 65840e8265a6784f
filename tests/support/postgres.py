"""A private PostgreSQL server on loopback, started and stopped by the tests.

Usage::

    with PostgresServer(tmp_dir) as server:
        url = server.create_database()   # postgresql+psycopg://pwtest:...@127.0.0.1:PORT/pw_test_1

Needs Debian's ``postgresql`` package (the server programs in ``/usr/lib/postgresql/<major>/bin``;
``.ci/install-system.sh`` installs it) and the ``psycopg`` driver (the ``test`` extra). Only the
standard library is imported at the top (the watchdog imports this module with ``python -I``);
psycopg only where a database is created.

A cluster of its own, not the installed one. The package creates a cluster (``15/main``) that the
tests leave alone: ``start()`` runs ``initdb`` into a fresh data directory and starts ``postgres``
on it with everything on the command line: ``listen_addresses=127.0.0.1`` and a free port, the unix
socket in a private directory, no fsync (the data is thrown away). Authentication: trust on the
unix socket (mode 0700, reachable by the server's account and root only) and scram-sha-256 with a
random password on 127.0.0.1/32; nothing else is accepted (``pg_hba.conf`` is written here).
The superuser is ``pwtest``; each ``create_database()`` makes a fresh database for one test.

PostgreSQL refuses to run as root. As root (the CI) the server runs as ``pwtestuser`` (created
when missing, as the Slurm and Grid Engine tests do): ``initdb`` and ``postgres`` are started
with ``subprocess.Popen(user=, group=, extra_groups=[])`` rather than through ``runuser``, so the
pid this module holds is the postmaster's own, and signals reach it directly. The server's
directory is then ``base_dir/root`` when ``base_dir`` is world-traversable, else a fresh
``/tmp/pw-postgres-*`` (mode 0755) that ``stop()`` removes; the data and socket directories in it
belong to the server's account (mode 0700). As any other user the server runs as that user.

The server never outlives the tests: it runs in the foreground, as a child of the test process in
a session of its own; ``stop()`` asks for a fast shutdown (SIGINT: clients disconnected, a clean
stop), then SIGQUIT and SIGKILL if it has not gone after a grace, and removes the data directory;
it is registered with ``atexit``; and a watchdog process (``support.processes.Watchdog``) holds a
pipe from the test process and, when that pipe closes without a clean ``stop()`` (the test
process was killed, even by SIGKILL), sends SIGQUIT (immediate shutdown) and then kills whatever
is left in the postmaster's session, removes a shared memory segment a killed postmaster left
behind, and deletes the directories.

Seen on Debian bookworm, PostgreSQL 15.18 (postgresql-15 15.18-0+deb12u1), 2 shared cores:
``start()`` takes ~1.6-2.4 s (initdb ~1.4-2 s of it), ``stop()`` ~0.15 s (fast shutdown, with a
client still connected), ``create_database()`` ~0.1-0.4 s.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from support.processes import (
    Watchdog,
    WatchedDaemons,
    cmdline,
    pid_alive,
    read_orders,
    session_of,
    signal_all,
    tail,
    world_traversable,
)

__all__ = ["DEFAULT_USER", "SUPERUSER", "PostgresServer", "find_bin_dir", "postgres_available"]

DEFAULT_USER = "pwtestuser"
SUPERUSER = "pwtest"
_STOP_GRACE = 10.0
_QUIT_GRACE = 5.0
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]
)


def find_bin_dir() -> Path | None:
    """The directory of the newest installed PostgreSQL's ``initdb`` and ``postgres``."""
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bin_dir = Path(initdb).parent
        major = bin_dir.parent.name
        if (bin_dir / "postgres").exists() and re.fullmatch(r"\d+(\.\d+)?", major):
            candidates.append((float(major), bin_dir))
    if candidates:
        return max(candidates)[1]
    initdb_path = shutil.which("initdb", path=_SEARCH_PATH)
    if initdb_path is not None and (Path(initdb_path).parent / "postgres").exists():
        return Path(initdb_path).parent
    return None


def postgres_available() -> tuple[bool, str]:
    """Whether a private PostgreSQL server can be started here; the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return False, f"the test PostgreSQL needs Linux, this is {sys.platform}"
    problems = []
    if find_bin_dir() is None:
        problems.append(
            "no PostgreSQL server programs (/usr/lib/postgresql/*/bin/initdb and postgres; "
            "Debian package postgresql: run .ci/install-system.sh as root)"
        )
    if importlib.util.find_spec("psycopg") is None:
        problems.append("the psycopg driver is not installed (pip install -e '.[test]')")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(DEFAULT_USER)
        except KeyError:
            if shutil.which("useradd", path=_SEARCH_PATH) is None:
                problems.append(f"running as root without a user {DEFAULT_USER} and without useradd")
    if problems:
        return False, "; ".join(problems)
    return True, ""


def _session_members(sid: int) -> list[int]:
    """Every process in session ``sid`` (the postmaster leads its own: its backends are in it)."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and session_of(int(entry)) == sid:
            out.append(int(entry))
    return out


def _remove_leftover_shared_memory(data_dir: str) -> None:
    """A postmaster killed by SIGKILL leaves its postmaster.pid and a small System V shared memory
    segment (its key and id are on the pid file's 7th line); remove the segment if nobody is
    attached to it any more."""
    try:
        lines = Path(data_dir, "postmaster.pid").read_text().splitlines()
    except OSError:
        return
    fields = lines[6].split() if len(lines) > 6 else []
    ipcrm = shutil.which("ipcrm", path=_SEARCH_PATH)
    if len(fields) == 2 and fields[1].isdigit() and ipcrm is not None:
        attached = None
        with contextlib.suppress(OSError):
            for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 6 and f[1] == fields[1]:
                    attached = int(f[6])
        if attached == 0:
            subprocess.run([ipcrm, "-m", fields[1]], capture_output=True, check=False, timeout=10)


_LIVE: set[PostgresServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class PostgresServer(WatchedDaemons):
    """One private PostgreSQL server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, base_dir: Path, user: str = DEFAULT_USER) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.user = user
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.root: Path | None = None
        self.bin_dir: Path | None = None
        self.version = ""
        self.startup_seconds: float | None = None
        self._own_root = False
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None
        self._started = False
        self._databases = itertools.count(1)

    # -- paths and URLs --------------------------------------------------------------------------
    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("PostgresServer not started")
        return self.root

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root() / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._started and self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """An SQLAlchemy URL for ``database`` over TCP, as the superuser, with the password."""
        return f"postgresql+{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # -> psycopg.Connection (not imported at the top)
        """A psycopg connection (autocommit) over TCP with the password, as the superuser."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
            dbname=database, autocommit=True, connect_timeout=10,
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (``pw_test_<n>`` unless named); its SQLAlchemy URL."""
        name = name or f"pw_test_{next(self._databases)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}")
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def logs(self, lines: int = 40) -> str:
        return f"--- {self.log_file} (last {lines} lines) ---\n{tail(self.log_file, lines)}"

    # -- context manager -------------------------------------------------------------------------
    # -- start -----------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> PostgresServer:
        if self._started:
            return self
        ok, why = postgres_available()
        if not ok:
            raise RuntimeError(f"cannot start PostgreSQL: {why}")
        from support.net import free_ports

        t0 = time.monotonic()
        deadline = t0 + timeout
        self._started = True
        _LIVE.add(self)
        try:
            self.bin_dir = find_bin_dir()
            self._prepare_dirs()
            self._start_watchdog()
            self._initdb(deadline)
            # The port is free when picked; another process may take it before the postmaster
            # binds it ("could not bind IPv4 address"): then again on another port.
            for attempt in range(3):
                (self.port,) = free_ports(1)
                self._spawn()
                if self._wait_ready(deadline):
                    break
                if attempt < 2 and "could not bind" in self._new_log():
                    self._kill_server()
                    continue
                raise RuntimeError(self._failure("the server did not become ready", timeout))
            with self.connect() as conn:
                row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else "?"
            self.startup_seconds = time.monotonic() - t0
            return self
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from support.slurm_cluster import ensure_user

            entry = ensure_user(self.user)
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
        if os.geteuid() != 0 or world_traversable(self.base_dir):
            self.root = self.base_dir / "root"
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir()
            self._own_root = False
        else:
            self.root = Path(tempfile.mkdtemp(prefix="pw-postgres-", dir="/tmp"))
            self._own_root = True
            (self.base_dir / "postgres_root").write_text(f"{self.root}\n")
        os.chmod(self.root, 0o755)
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700)
            os.chown(d, self._uid, self._gid)

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that run the child as the server's account (nothing when that is us)."""
        if os.geteuid() != 0:
            return {}
        return {"user": self._uid, "group": self._gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        home = pwd.getpwuid(self._uid).pw_dir if os.geteuid() == 0 else os.environ.get("HOME", "/")
        return {"PATH": _SEARCH_PATH, "HOME": home, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def _initdb(self, deadline: float) -> None:
        assert self.bin_dir is not None
        pwfile = self._root() / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        os.chown(pwfile, self._uid, self._gid)
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
            "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
        ]
        try:
            with open(self.log_file, "ab") as log:
                r = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self._env(), cwd=self._root(), timeout=max(1.0, deadline - time.monotonic()),
                    check=False, **self._as_server_user(),
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise RuntimeError(f"initdb -> rc {r.returncode}\n{self.logs()}")
        # Only what the tests use: the socket (trust) and 127.0.0.1 with the password.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by tests/support/postgres.py\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        os.chown(hba, self._uid, self._gid)

    def _spawn(self) -> None:
        assert self.bin_dir is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            "log_destination": "stderr",
            "log_min_messages": "warning",
            "timezone": "UTC",
        }
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        with open(self.log_file, "ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self._root(), start_new_session=True,
                **self._as_server_user(),
            )
        self._tell_watchdog(f"pid {self._proc.pid} postgres")

    def _new_log(self) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(getattr(self, "_log_offset", 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, deadline: float) -> bool:
        """Until postmaster.pid says ``ready`` (PostgreSQL 10+) for this port; False if it exits."""
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[3].strip() == str(self.port) and lines[7].strip() == "ready":
                    return True
            time.sleep(0.05)
        return False

    def _failure(self, what: str, timeout: float) -> str:
        rc = None if self._proc is None else self._proc.poll()
        return (
            f"PostgreSQL did not start (timeout {timeout:g} s): {what}"
            + (f" (postgres exited with {rc})" if rc is not None else "")
            + f"\ndata directory: {self.data_dir}\n{self.logs()}"
        )

    # -- watchdog --------------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        self._watchdog = Watchdog("support.postgres")
        self._tell_watchdog(f"data {self.data_dir}")
        self._tell_watchdog(f"rmdir {self.data_dir}")
        if self._own_root:
            self._tell_watchdog(f"rmdir {self.root}")

    # -- stop ------------------------------------------------------------------------------------
    def _kill_server(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL for the whole session."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGQUIT)
                try:
                    proc.wait(timeout=_QUIT_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        signal_all(_session_members(proc.pid), 2)

    def stop(self) -> None:
        """Stop the server, and remove its data (and its private root). Safe to call more than once."""
        if not self._started:
            return
        self._started = False
        _LIVE.discard(self)
        try:
            self._kill_server()
            if self.root is not None:
                _remove_leftover_shared_memory(str(self.data_dir))
        finally:
            self._close_watchdog()
            if self.root is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                if self._own_root:
                    shutil.rmtree(self.root, ignore_errors=True)


def _watchdog_main(lines: Iterable[str]) -> None:
    """The watchdog (see support.processes): at the end of its orders (``pid <pid> postgres``,
    ``data <dir>``, ``rmdir <path>``) without ``done``, end the server and remove its files."""
    told = read_orders(lines)
    if told is None:
        return
    pids, orders = told
    for pid, name in pids.items():
        if pid <= 1 or name not in cmdline(pid):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the backends go with it
        deadline = time.monotonic() + _QUIT_GRACE
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        signal_all([pid, *_session_members(pid)], 2)
    for data_dir in orders.get("data", []):
        _remove_leftover_shared_memory(data_dir)
    for d in orders.get("rmdir", []):
        shutil.rmtree(d, ignore_errors=True)

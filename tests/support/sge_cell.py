"""A real single-host Son of Grid Engine cell on this host, started and stopped by the tests.

Usage::

    with SGECell(tmp_dir) as cell:
        cell.run("qhost")                                      # as root (a manager)
        cell.run_as("pwtestuser", "qsub", "-terse", "-b", "y", "/bin/true")   # as a job owner

Needs root and the Debian packages ``gridengine-master``, ``gridengine-exec`` and
``gridengine-client`` (``.ci/install-system.sh``). Only the standard library is used (plus
``support.processes``, ``support.net`` and ``support.slurm_cluster``'s ``ensure_user``/``run_as``).

A private cell, not the installed one. The Debian packages create a cell
(``SGE_ROOT=/var/lib/gridengine``, ``SGE_CELL=default``, BerkeleyDB spool under
``/var/spool/gridengine``). Reconfiguring that one (host aliases, hosts, queue, parallel
environment, complexes, scheduler) and putting it back afterwards would mean saving and
restoring a BerkeleyDB spool, and a test process killed half-way would leave a changed system
behind. Instead ``start()`` builds a throw-away cell, ``pwtest``, the way the packages'
``init_cluster`` does (``spoolinit`` + ``spooldefaults``), in a private ``SGE_ROOT`` whose
``bin``/``lib``/``util``/``utilbin`` are symlinks to the installed ones, and runs its daemons on
free ports (``SGE_QMASTER_PORT``/``SGE_EXECD_PORT``, which take precedence over
``/etc/services``). Nothing outside that directory is written: no /etc/hosts, no installed
cell, no host_aliases of the installed cell. ``stop()`` removes it, so there is nothing to
restore; it also cannot collide with an installed cell that may be running on 6444/6445.

Host names: Grid Engine resolves each peer's address back to a name and compares it with the
name the peer claims. Here ``hostname`` is ``vm`` but 127.0.0.1 resolves to ``localhost`` first,
so the cell's ``common/host_aliases`` maps ``localhost`` (and every other name of the host's
address and of 127.0.0.1) to the short host name. Only this cell reads that file. The daemons
bind every address (commlib has no bind-address setting); the traffic stays on loopback because
the host name resolves to 127.0.0.1 here (``sge_available()`` refuses a host name that does not
resolve at all).

Layout: the cell needs to be reachable by the job owner (client commands read
``$SGE_ROOT/$SGE_CELL/common``, jobs are executed from the execd spool), so it lives in
``base_dir/root`` when ``base_dir`` is world-traversable, else in a fresh ``/tmp/pw-sge-*``
(mode 0755) that ``stop()`` removes after copying the daemons' ``messages`` files to
``base_dir/log``. The spool belongs to the admin user (``sgeadmin``, created by the packages).

Daemons run in the foreground (``SGE_ND=1``), as children of this process, so a daemon that
dies is noticed at once. (Side effect: jobs see ``SGE_ND=1`` in their environment, together
with SGE_ROOT, SGE_CELL and the two ports.)

Daemons and jobs never outlive the test session: ``stop()`` deletes every job, stops both
daemons and kills any process left whose environment names this cell's ``SGE_ROOT`` (shepherds,
job scripts and their children) or that shares a session with one; it is registered with
``atexit``; and a watchdog process (``support.processes.Watchdog``) holds a pipe from the test
process and does the same when that pipe closes without a clean ``stop()`` (the test process
was killed, even by SIGKILL), then removes the private root.

Facts seen with SGE 8.1.9 here: ``start()`` takes ~2.5 s (qmaster answers after ~0.3 s, the
probe job runs ~1 s after submission with ``schedule_interval 0:0:1``), ``stop()`` ~2 s
(qmaster needs ~7 s to obey SIGTERM, so it gets SIGKILL after 1 s); root cannot submit jobs
(``min_uid 1000`` of the Debian default configuration): submit as an ordinary user. More in
tests/test_sge_cell.py's docstring and tests/data/sge/.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from support.processes import (
    Watchdog,
    WatchedDaemons,
    kill_with_sessions,
    pids_with_environment,
    read_orders,
    signal_all,
    tail,
    terminate,
    wait_zombies_reaped,
    world_traversable,
)

__all__ = [
    "CELL_NAME",
    "PARALLEL_ENVIRONMENT",
    "QUEUE",
    "SGECell",
    "sge_available",
]

CELL_NAME = "pwtest"
QUEUE = "all.q"
PARALLEL_ENVIRONMENT = "smp"
DEFAULT_USER = "pwtestuser"

#: Debian's SGE_ROOT: bin/, lib/ (links to /usr/lib/gridengine), util/ (to /usr/share/gridengine/util)
_INSTALLED_ROOT = Path("/var/lib/gridengine")
_SHARE = Path("/usr/share/gridengine")
#: the real programs; /usr/bin/q* and /usr/sbin/sge_* are wrappers that exec these
_LIBEXEC = Path("/usr/lib/gridengine")
_ROOT_LINKS = ("bin", "lib", "util", "utilbin")

_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]
)
_CLIENT_BINARIES = ("qsub", "qstat", "qdel", "qconf", "qhost", "qacct", "qrls", "qalter")
_DAEMON_BINARIES = ("sge_qmaster", "sge_execd")
_NEEDED_FILES = (
    _LIBEXEC / "spoolinit",
    _LIBEXEC / "spooldefaults",
    _SHARE / "default-configuration",
    _SHARE / "util" / "resources" / "centry",
    _SHARE / "util" / "resources" / "usersets",
    _INSTALLED_ROOT / "bin",
)
_KILL_GRACE = 5.0
_QMASTER_GRACE = 1.0
#: processes of a cell carry this in their environment (daemons, shepherds, jobs)
_ROOT_VAR = b"SGE_ROOT="


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def _short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


def sge_available() -> tuple[bool, str]:
    """Whether a real Grid Engine cell can be started here; the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return False, f"a real Grid Engine needs Linux, this is {sys.platform}"
    problems = []
    missing = [b for b in (*_CLIENT_BINARIES, *_DAEMON_BINARIES) if _which(b) is None]
    missing += [str(f) for f in _NEEDED_FILES if not f.exists()]
    if missing:
        problems.append(f"missing: {', '.join(missing)} (run .ci/install-system.sh as root)")
    if os.geteuid() != 0:
        problems.append("sge_qmaster and sge_execd must be started as root")
    host = _short_hostname()
    try:
        socket.gethostbyname(host)
    except OSError as e:
        problems.append(f"the host name {host!r} does not resolve ({e}); Grid Engine needs it to")
    if problems:
        return False, "; ".join(problems)
    return True, ""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _mem_total_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 1024 * 1024  # pragma: no cover


def _cell_pids(root: str) -> list[int]:
    """Processes whose environment holds ``SGE_ROOT=<root>``: this cell's daemons, their
    shepherds and the jobs (Grid Engine sets SGE_ROOT in every job's environment)."""
    return pids_with_environment(_ROOT_VAR + os.fsencode(root))


def _kill_cell_processes(root: str, grace: float = 2) -> None:
    """Kill every process of the cell at ``root`` and every process sharing a session with one."""
    kill_with_sessions(_cell_pids(root), grace)


def _host_aliases(host: str) -> list[str]:
    """Every other name this host's address and 127.0.0.1 resolve to (``localhost`` first)."""
    names = ["localhost"]
    addrs = ["127.0.0.1"]
    with contextlib.suppress(OSError):
        addrs.append(socket.gethostbyname(host))
    for addr in addrs:
        try:
            name, aliases, _ = socket.gethostbyaddr(addr)
        except OSError:
            continue
        names += [name, *aliases]
    out: list[str] = []
    for n in names:
        short = n.split(".", 1)[0]
        if short != host and n not in out:
            out.append(n)
    return out


_LIVE: set[SGECell] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for cell in list(_LIVE):
        with contextlib.suppress(Exception):
            cell.stop()


class SGECell(WatchedDaemons):
    """One sge_qmaster + one sge_execd (host ``hostname -s``), cell ``pwtest``.

    Configured for this host: admin, submit and execution host; queue ``all.q`` with
    ``slots`` = number of CPUs, ``load_thresholds NONE`` (a busy machine must not put it in
    alarm state) and no limits of its own; parallel environment ``smp`` (``allocation_rule
    $pe_slots``, as many slots as the queue) in its ``pe_list``; ``h_vmem`` consumable (per
    slot; the host offers MemTotal; a job that requests none gets MemTotal / slots per slot)
    and ``h_rt`` requestable; scheduler every second
    (``schedule_interval 0:0:1``, ``flush_submit_sec``/``flush_finish_sec`` 1) with pending
    reasons kept (``schedd_job_info true``); accounting flushed at once (``qacct`` works
    right after a job ends).

    ``start()`` returns once ``qhost`` reports the host's load and a trivial job, submitted
    by ``user`` (created when missing), has run.  ``env`` is what client commands need.
    """

    def __init__(self, base_dir: Path, user: str = DEFAULT_USER) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.user = user
        self.hostname = _short_hostname()
        self.cpus = _cpu_count()
        self.mem_total_kib = 0
        self.qmaster_port = 0
        self.execd_port = 0
        self.root: Path | None = None
        self.aliases: list[str] = []
        self.startup_seconds: float | None = None
        self.admin_user = "root"
        self._own_root = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}
        self._watchdog: Watchdog | None = None
        self._started = False

    # -- paths ---------------------------------------------------------------------------
    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("SGECell not started")
        return self.root

    @property
    def cell_dir(self) -> Path:
        return self._root() / CELL_NAME

    @property
    def common_dir(self) -> Path:
        return self.cell_dir / "common"

    @property
    def spool_dir(self) -> Path:
        return self.cell_dir / "spool"

    @property
    def qmaster_spool(self) -> Path:
        return self.spool_dir / "qmaster"

    @property
    def execd_spool(self) -> Path:
        return self.spool_dir / "execd"

    @property
    def conf_dir(self) -> Path:
        """The files given to ``spooldefaults`` and ``qconf -A*/-M*`` (kept for debugging)."""
        return self._root() / "conf"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def accounting_file(self) -> Path:
        return self.common_dir / "accounting"

    @property
    def bin_dir(self) -> str:
        """Where the client commands are (Debian: /usr/bin, wrappers that set SGE_ARCH)."""
        qsub = _which("qsub")
        return os.path.dirname(qsub) if qsub else "/usr/bin"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables client commands (qsub, qstat, ...) need, for any user.

        ``PATH`` is a complete one: this cell's client directory, then the system's."""
        path: list[str] = []
        for d in (self.bin_dir, "/usr/local/bin", "/usr/bin", "/bin"):
            if d not in path:
                path.append(d)
        return {
            "SGE_ROOT": str(self._root()),
            "SGE_CELL": CELL_NAME,
            "SGE_QMASTER_PORT": str(self.qmaster_port),
            "SGE_EXECD_PORT": str(self.execd_port),
            "PATH": os.pathsep.join(path),
        }

    @property
    def running(self) -> bool:
        return self._started

    # -- helpers -------------------------------------------------------------------------
    def client_env(self) -> dict[str, str]:
        """``os.environ`` without inherited SGE_* variables, plus ``env``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("SGE_")}
        base.update(self.env)
        return base

    def run(
        self, *argv: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a Grid Engine client command as the current user (root: a manager of this
        cell, but not allowed to submit jobs) against this cell."""
        return subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.client_env(),
            check=False,
            cwd="/",
        )

    def run_as(
        self, user: str, *argv: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command as ``user`` (through ``su``, see support.slurm_cluster.run_as)."""
        from support.slurm_cluster import run_as

        return run_as(user, list(argv), env=self.env, input=input, timeout=timeout)

    def message_files(self) -> list[Path]:
        """The daemons' own logs: qmaster's and execd's ``messages`` (execd names its spool
        directory after the name it resolves itself to, ``localhost`` here)."""
        files = [self.qmaster_spool / "messages"]
        with contextlib.suppress(OSError, RuntimeError):
            files += sorted(self.execd_spool.glob("*/messages"))
        return files

    def logs(self, lines: int = 40) -> str:
        """Tails of the daemons' logs and stdout (for error messages)."""
        paths: list[Path] = []
        with contextlib.suppress(RuntimeError):
            paths += self.message_files()
        if not any(p.exists() for p in paths):  # after stop(): the copies in log_dir
            paths = sorted(self.log_dir.glob("*.messages"))
        paths += sorted(self.log_dir.glob("*.stdout"))
        return "\n".join(f"--- {p} (last {lines} lines) ---\n{tail(p, lines)}" for p in paths)

    def qconf(self, *args: str, timeout: float = 30) -> str:
        """``qconf ARGS`` as root; its output, or RuntimeError with what it said."""
        r = self.run("qconf", *args, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(
                f"qconf {' '.join(args)} -> rc {r.returncode}: {r.stdout}{r.stderr}\n{self.logs()}"
            )
        return r.stdout + r.stderr

    def job_ids(self) -> list[str]:
        """Every job this cell knows (any user, any state), as qstat lists them."""
        r = self.run("qstat", "-u", "*", timeout=10)
        ids = []
        for line in r.stdout.splitlines():
            first = line.split()[:1]
            if first and first[0].isdigit():
                ids.append(first[0])
        return ids

    # -- context manager -----------------------------------------------------------------
    # -- start ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> SGECell:
        if self._started:
            return self
        ok, why = sge_available()
        if not ok:
            raise RuntimeError(f"cannot start Grid Engine: {why}")
        from support.net import free_ports

        t0 = time.monotonic()
        deadline = t0 + timeout
        self._started = True
        _LIVE.add(self)
        try:
            self._prepare_dirs()
            self._start_watchdog()
            # The ports are free when picked; if another process grabs one before the
            # daemon binds it (the daemon says "can't bind socket", and qmaster would retry
            # for ~30 s), start again on new ports with a fresh spool: qmaster knows the
            # execd port from its environment, so both daemons go.
            for attempt in range(3):
                self.qmaster_port, self.execd_port = free_ports(2)
                self._init_spool()
                self._spawn("sge_qmaster")
                what = "sge_qmaster did not answer"
                up = self._wait_qmaster(deadline)
                if up:
                    self._configure()
                    self._spawn("sge_execd")
                    what = "qhost never showed the host's load"
                    up = self._wait_host_load(deadline)
                if up:
                    break
                if attempt < 2 and self._bind_failed():
                    self._kill_daemons()
                    shutil.rmtree(self.spool_dir, ignore_errors=True)
                    continue
                raise RuntimeError(self._failure(what, timeout))
            self._probe_job(deadline, timeout)
            self.startup_seconds = time.monotonic() - t0
            return self
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _new_output(self, name: str) -> str:
        """What daemon ``name`` has printed since this cell last spawned it."""
        try:
            with open(self.log_dir / f"{name}.stdout", "rb") as f:
                f.seek(self._log_offsets.get(name, 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _bind_failed(self) -> bool:
        return any("can't bind socket" in self._new_output(name) for name in self._procs)

    def _qmaster_alive(self) -> bool:
        proc = self._procs.get("sge_qmaster")
        return proc is not None and proc.poll() is None

    def _daemon_died(self) -> bool:
        return any(p.poll() is not None for p in self._procs.values())

    def _failure(self, what: str, timeout: float) -> str:
        state = ""
        if self._qmaster_alive():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                parts = [self.run(*cmd, timeout=3) for cmd in (("qhost",), ("qstat", "-f", "-u", "*"))]
                state = "\n".join((r.stdout + r.stderr).strip() for r in parts)
        dead = [
            f"{name} exited with {proc.returncode}"
            for name, proc in self._procs.items()
            if proc.poll() is not None
        ]
        return (
            f"Grid Engine did not start (timeout {timeout:g} s): {what}"
            + (f" ({', '.join(dead)})" if dead else "")
            + f"\nSGE_ROOT: {self.root}\nqhost / qstat -f:\n{state or '<no answer>'}\n"
            + self.logs()
        )

    def _prepare_dirs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            pwd.getpwnam("sgeadmin")
            self.admin_user = "sgeadmin"
        except KeyError:
            self.admin_user = "root"
        if world_traversable(self.base_dir):
            self.root = self.base_dir / "root"
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir()
            self._own_root = False
        else:
            self.root = Path(tempfile.mkdtemp(prefix="pw-sge-", dir="/tmp"))
            self._own_root = True
            # So a stale root can be traced back to its logs.
            (self.base_dir / "sge_root").write_text(str(self.root) + "\n")
        os.chmod(self.root, 0o755)
        for name in _ROOT_LINKS:
            target = _INSTALLED_ROOT / name
            if name == "util" and not target.exists():
                target = _SHARE / "util"
            if target.exists():
                (self.root / name).symlink_to(target)
        self.conf_dir.mkdir()
        self.cell_dir.mkdir()
        self.common_dir.mkdir()

    def _chown_admin(self, *paths: Path) -> None:
        pw = pwd.getpwnam(self.admin_user)
        for top in paths:
            os.chown(top, pw.pw_uid, pw.pw_gid)
            for dirpath, dirnames, filenames in os.walk(top):
                for n in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)

    def _write(self, path: Path, text: str, mode: int = 0o644) -> Path:
        path.write_text(text)
        os.chmod(path, mode)
        return path

    def _init_spool(self) -> None:
        """A fresh cell: bootstrap, act_qmaster, host_aliases and a spool initialised like
        Debian's init_cluster does it, with this cell's global configuration."""
        host = self.hostname
        self.aliases = _host_aliases(host)
        self.mem_total_kib = _mem_total_kib()
        for d in (self.qmaster_spool / "job_scripts", self.spool_dir / "spooldb", self.execd_spool):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        os.chmod(self.spool_dir, 0o755)
        os.chmod(self.qmaster_spool, 0o755)
        self._write(
            self.common_dir / "bootstrap",
            "\n".join(
                [
                    "# Written by tests/support/sge_cell.py",
                    f"admin_user              {self.admin_user}",
                    "default_domain          none",
                    "ignore_fqdn             true",
                    "spooling_method         berkeleydb",
                    "spooling_lib            libspoolb",
                    f"spooling_params         {self.spool_dir / 'spooldb'}",
                    "binary_path             /usr/sbin",
                    f"qmaster_spool_dir       {self.qmaster_spool}",
                    "security_mode           none",
                    "listener_threads        2",
                    "worker_threads          2",
                    "scheduler_threads       1",
                ]
            )
            + "\n",
        )
        self._write(self.common_dir / "act_qmaster", host + "\n")
        self._write(
            self.common_dir / "host_aliases",
            "# Written by tests/support/sge_cell.py: every name of this host's address\n"
            f"{host} {' '.join(self.aliases)}\n",
        )
        self._write(
            self.common_dir / "settings.sh",
            "".join(f"{k}={v}; export {k}\n" for k, v in self.env.items() if k != "PATH"),
        )
        settings = {
            "execd_spool_dir": str(self.execd_spool),
            "mailer": "/bin/true",
            "administrator_mail": "none",
            "load_report_time": "00:00:05",
            "reporting_params": (
                "accounting=true reporting=false flush_time=00:00:01 joblog=false "
                "sharelog=00:00:00 accounting_flush_time=00:00:00"
            ),
        }
        lines = []
        for line in (_SHARE / "default-configuration").read_text().splitlines():
            key = line.split(None, 1)[0] if line.strip() and not line.startswith("#") else ""
            lines.append(f"{key:<22} {settings.pop(key)}" if key in settings else line)
        lines += [f"{k:<22} {v}" for k, v in settings.items()]
        conf = self._write(self.conf_dir / "global-configuration", "\n".join(lines) + "\n")
        self._chown_admin(self.common_dir, self.spool_dir)
        resources = _SHARE / "util" / "resources"
        steps = [
            ["spoolinit", "berkeleydb", "libspoolb", str(self.spool_dir / "spooldb"), "init"],
            ["spooldefaults", "configuration", str(conf)],
            ["spooldefaults", "complexes", str(resources / "centry")],
            ["spooldefaults", "usersets", str(resources / "usersets")],
            # root as a manager too: it configures the cell and deletes leftover jobs
            ["spooldefaults", "managers", self.admin_user, "root"],
        ]
        runuser = _which("runuser")
        for step in steps:
            cmd = [str(_LIBEXEC / step[0]), *step[1:]]
            if self.admin_user != "root" and runuser:
                cmd = [runuser, "-u", self.admin_user, "--", *cmd]
            r = subprocess.run(
                cmd, capture_output=True, text=True, timeout=30, check=False,
                env=self._daemon_env(), cwd=self._root(),
            )
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} -> rc {r.returncode}: {r.stdout}{r.stderr}")

    def _daemon_env(self) -> dict[str, str]:
        """A small environment (execd passes some of its own on to jobs): this cell's
        variables, PATH, and the locale/time zone/home of the test process."""
        env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TZ")}
        env.update(self.env)
        env["PATH"] = _SEARCH_PATH
        env["SGE_ND"] = "1"  # stay in the foreground: our children, noticed when they die
        return env

    def _spawn(self, name: str) -> None:
        exe = _which(name)
        assert exe is not None
        with open(self.log_dir / f"{name}.stdout", "ab") as out:
            self._log_offsets[name] = out.tell()
            proc = subprocess.Popen(
                [exe],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(),
                cwd=self._root(),
                start_new_session=True,
            )
        self._procs[name] = proc
        self._tell_watchdog(f"pid {proc.pid} {name}")

    def _poll(self, argv: list[str], deadline: float) -> tuple[int, str] | None:
        """Run a client command in the background (it may retry for a while when qmaster
        is not listening yet); None when a daemon exits or the deadline passes first."""
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.client_env(),
            cwd="/",
        )
        try:
            while proc.poll() is None:
                if self._daemon_died() or self._bind_failed() or time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
            out = proc.stdout.read() if proc.stdout is not None else ""
            return proc.returncode, out
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def _wait_qmaster(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            res = self._poll(["qconf", "-sh"], deadline)
            if res is None:
                return False
            rc, out = res
            if rc == 0 and self.hostname in out.split():
                return True
            time.sleep(0.1)
        return False

    def _configure(self) -> None:
        """Hosts, complexes, parallel environment, queue and scheduler, through qconf files."""
        host, cpus = self.hostname, self.cpus
        self.qconf("-as", host)
        # h_vmem: consumable (per slot), the host offers its MemTotal. Its default is what a
        # job that requests no h_vmem consumes and is limited to: with the packages' default
        # 0, execd kills such a job within a second ("exceeds job hard limit "h_vmem" ...
        # limit: 0"), so it is the host's memory divided by its slots.
        complexes = []
        for line in self.qconf("-sc").splitlines():
            f = line.split()
            if f and f[0] == "h_vmem":
                # name shortcut type relop requestable consumable default urgency
                f[5], f[6] = "YES", self.h_vmem_default
                line = " ".join(f)
            complexes.append(line)
        self.qconf("-Mc", str(self._write(self.conf_dir / "complexes", "\n".join(complexes) + "\n")))
        exechost = {
            "hostname": host,
            "load_scaling": "NONE",
            "complex_values": f"h_vmem={self.mem_total_kib}K,slots={cpus}",
            "user_lists": "NONE",
            "xuser_lists": "NONE",
            "projects": "NONE",
            "xprojects": "NONE",
            "usage_scaling": "NONE",
            "report_variables": "NONE",
        }
        self.qconf("-Ae", str(self._write_attrs("exechost", exechost)))
        pe = {
            "pe_name": PARALLEL_ENVIRONMENT,
            "slots": str(cpus),
            "user_lists": "NONE",
            "xuser_lists": "NONE",
            "start_proc_args": "NONE",
            "stop_proc_args": "NONE",
            "allocation_rule": "$pe_slots",
            "control_slaves": "TRUE",
            "job_is_first_task": "TRUE",
            "urgency_slots": "min",
            "accounting_summary": "TRUE",
            "qsort_args": "NONE",
        }
        self.qconf("-Ap", str(self._write_attrs("pe-smp", pe)))
        queue = {
            "qname": QUEUE,
            "hostlist": host,
            "seq_no": "0",
            "load_thresholds": "NONE",
            "suspend_thresholds": "NONE",
            "nsuspend": "1",
            "suspend_interval": "00:05:00",
            "priority": "0",
            "min_cpu_interval": "00:05:00",
            "processors": "UNDEFINED",
            "qtype": "BATCH INTERACTIVE",
            "ckpt_list": "NONE",
            "pe_list": PARALLEL_ENVIRONMENT,
            "rerun": "FALSE",
            "slots": str(cpus),
            "tmpdir": "/tmp",
            "shell": "/bin/sh",
            "prolog": "NONE",
            "epilog": "NONE",
            "shell_start_mode": "posix_compliant",
            "starter_method": "NONE",
            "suspend_method": "NONE",
            "resume_method": "NONE",
            "terminate_method": "NONE",
            "notify": "00:00:60",
            "owner_list": "NONE",
            "user_lists": "NONE",
            "xuser_lists": "NONE",
            "subordinate_list": "NONE",
            "complex_values": "NONE",
            "projects": "NONE",
            "xprojects": "NONE",
            "calendar": "NONE",
            "initial_state": "default",
        }
        for limit in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem"):
            queue[f"s_{limit}"] = queue[f"h_{limit}"] = "INFINITY"
        self.qconf("-Aq", str(self._write_attrs("queue-all.q", queue)))
        sched = {
            "schedule_interval": "0:0:1",
            "flush_submit_sec": "1",
            "flush_finish_sec": "1",
            "job_load_adjustments": "NONE",
            "load_adjustment_decay_time": "0:0:0",
            "schedd_job_info": "true",
        }
        lines = []
        for line in self.qconf("-ssconf").splitlines():
            key = line.split(None, 1)[0] if line.strip() else ""
            lines.append(f"{key:<33} {sched.pop(key)}" if key in sched else line)
        lines += [f"{k:<33} {v}" for k, v in sched.items()]
        self.qconf("-Msconf", str(self._write(self.conf_dir / "sched", "\n".join(lines) + "\n")))

    @property
    def h_vmem_default(self) -> str:
        """What a job that does not request ``h_vmem`` gets per slot: MemTotal / slots."""
        return f"{self.mem_total_kib // self.cpus}K"

    def _write_attrs(self, name: str, attrs: Mapping[str, str]) -> Path:
        return self._write(self.conf_dir / name, "".join(f"{k:<20} {v}\n" for k, v in attrs.items()))

    def _wait_host_load(self, deadline: float) -> bool:
        """Until ``qhost`` shows a load average for the host (execd has reported)."""
        while time.monotonic() < deadline:
            res = self._poll(["qhost", "-h", self.hostname], deadline)
            if res is None:
                return False
            rc, out = res
            for line in out.splitlines():
                f = line.split()
                if rc == 0 and len(f) >= 7 and f[0] == self.hostname and f[6] != "-":
                    return True
            time.sleep(0.1)
        return False

    def _probe_job(self, deadline: float, timeout: float) -> None:
        """Submit a trivial job as ``user`` and wait until it has run and left qstat."""
        from support.slurm_cluster import ensure_user

        user = ensure_user(self.user)
        probe_dir = self._root() / "probe"
        probe_dir.mkdir(exist_ok=True)
        os.chown(probe_dir, user.pw_uid, user.pw_gid)
        out_file = probe_dir / "probe.out"
        r = self.run_as(
            self.user, "qsub", "-terse", "-N", "pw-probe", "-o", str(out_file), "-j", "y",
            "-b", "y", "/bin/echo", "pw-probe-ok",
            timeout=max(1.0, deadline - time.monotonic()),
        )
        job_id = r.stdout.strip()
        if r.returncode != 0 or not job_id.isdigit():
            raise RuntimeError(self._failure(f"qsub of the probe job failed: {r.stdout}{r.stderr}", timeout))
        while time.monotonic() < deadline and not self._daemon_died():
            done = out_file.exists() and "pw-probe-ok" in out_file.read_text(errors="replace")
            if done and job_id not in self.job_ids():
                return
            time.sleep(0.1)
        info = self.run("qstat", "-j", job_id, timeout=5)
        raise RuntimeError(
            self._failure(f"the probe job {job_id} did not run:\n{info.stdout}{info.stderr}", timeout)
        )

    # -- watchdog ------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        self._watchdog = Watchdog("support.sge_cell")
        self._tell_watchdog(f"root {self.root}")
        if self._own_root:
            self._tell_watchdog(f"rmdir {self.root}")

    # -- stop ----------------------------------------------------------------------------
    def _delete_all_jobs(self) -> None:
        """qdel every job (root is a manager) and wait (bounded) until qstat lists none."""
        try:
            if not self.job_ids():
                return
            self.run("qdel", "-f", "-u", "*", timeout=5)
        except subprocess.TimeoutExpired:
            return
        deadline = time.monotonic() + _KILL_GRACE
        while time.monotonic() < deadline:
            try:
                if not self.job_ids():
                    return
            except subprocess.TimeoutExpired:
                return
            time.sleep(0.2)

    def _kill_daemons(self) -> None:
        # execd first, so that it does not report to (or wait for) a qmaster that is gone.
        # execd exits ~1 s after SIGTERM; qmaster takes ~7 s here (so does `qconf -km`), and
        # its spool is thrown away anyway: it gets SIGKILL after a short grace.
        for name, grace in (("sge_execd", _KILL_GRACE), ("sge_qmaster", _QMASTER_GRACE)):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                signal_all([proc.pid], grace)
            proc.wait()  # our child (SGE_ND): reap it so no zombie is left

    def stop(self) -> None:
        """Delete every job, stop sge_execd and sge_qmaster, kill whatever is left of the
        cell's processes, and remove the private root. Safe to call more than once."""
        if not self._started:
            return
        self._started = False
        _LIVE.discard(self)
        try:
            if self.root is not None and self._qmaster_alive():
                self._delete_all_jobs()
            self._kill_daemons()
            if self.root is not None:
                _kill_cell_processes(str(self.root))
            wait_zombies_reaped(["sge_shepherd", "sge_execd", "sge_qmaster"])
        finally:
            self._close_watchdog()
            if self._own_root and self.root is not None:
                self._save_logs()
                shutil.rmtree(self.root, ignore_errors=True)

    def _save_logs(self) -> None:
        """Copy the daemons' messages files to ``log_dir`` before the root goes."""
        with contextlib.suppress(OSError, RuntimeError):
            for f in self.message_files():
                if f.exists():
                    daemon = "qmaster" if f.parent == self.qmaster_spool else "execd"
                    shutil.copyfile(f, self.log_dir / f"{daemon}.messages")


def _watchdog_main(lines: Iterable[str]) -> None:
    """The watchdog (see support.processes): at the end of its orders (``pid <pid> <name>``,
    ``root <SGE_ROOT>``, ``rmdir <path>``) without ``done``, kill everything it was told of."""
    told = read_orders(lines)
    if told is None:
        return
    pids, orders = told
    # Daemons first (so execd starts no new jobs), then shepherds and jobs.
    terminate({p: n for p, n in pids.items() if n == "sge_execd"}, _KILL_GRACE)
    terminate({p: n for p, n in pids.items() if n != "sge_execd"}, _QMASTER_GRACE)
    for root in orders.get("root", []):
        _kill_cell_processes(root)
    wait_zombies_reaped(["sge_shepherd", "sge_execd", "sge_qmaster"])
    for d in orders.get("rmdir", []):
        shutil.rmtree(d, ignore_errors=True)

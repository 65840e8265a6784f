"""A real single-node Slurm cluster on 127.0.0.1, started and stopped by the tests.

Usage::

    with SlurmCluster(tmp_dir) as cluster:
        subprocess.run(["sinfo"], env={**os.environ, **cluster.env})

Needs root and the Debian packages ``slurm-wlm`` and ``munge`` (``.ci/install-system.sh``).
Only the standard library is used (and ``support.net``, ``support.processes``).

Layout: state, logs and pid files live in ``base_dir`` (private is fine: the daemons run
as root).  ``slurm.conf`` and ``SlurmdSpoolDir`` must be reachable by ordinary users (their
client commands read the conf, their batch scripts are executed from the spool), so they go
to ``base_dir/run`` when ``base_dir`` is world-traversable, else to a fresh ``/tmp/pw-slurm-*``
directory (mode 0755) that ``stop()`` removes.

Memory: by default nothing confines a job to its ``--mem``. ``SlurmCluster(base_dir,
memory_enforcement=True)`` makes slurmd confine each job to it with cgroups (``TaskPlugin=task/cgroup``,
``cgroup.conf``: ``CgroupPlugin=cgroup/v1``, ``ConstrainRAMSpace=yes``), so that a job over it is
killed by the kernel and ends ``OUT_OF_MEMORY``; :func:`memory_enforcement_available` says whether
this host allows it (a writable cgroup v1 memory hierarchy). Tried on the recording host (Slurm
22.05.8, cgroup v1): ``JobAcctGatherParams=OverMemoryKill`` with ``jobacct_gather/linux`` (no
cgroups) did kill a job that went over its ``--mem``, but Slurm then reported it ``FAILED``,
``Reason=JobLaunchFailure``, ``ExitCode=0:9``, not ``OUT_OF_MEMORY``: only the cgroup's OOM events
give that state. Such clusters share the host's cgroup tree (``/sys/fs/cgroup/memory/slurm_<node>/
uid_<uid>/job_<id>``), so clusters that may run at once need job ids of their own (``first_job_id``).

Daemons never outlive the test session: ``stop()`` is registered with ``atexit``, and a
small watchdog process (``support.processes.Watchdog``) holds a pipe from the test process; when
that pipe closes without a clean ``stop()`` (the test process was killed, even by SIGKILL)
the watchdog kills the daemons, their job steps, and a munged that this object started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from support.net import free_ports
from support.processes import (
    Watchdog,
    WatchedDaemons,
    kill_with_sessions,
    pids_with_environment,
    read_orders,
    tail,
    terminate,
    wait_zombies_reaped,
    world_traversable,
)

__all__ = [
    "CLUSTER_NAME",
    "PARTITIONS",
    "SlurmCluster",
    "ensure_user",
    "memory_enforcement_available",
    "run_as",
    "slurm_available",
]

CLUSTER_NAME = "pwtest"
PARTITIONS = ("debug", "short")

_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]
)
_CLIENT_BINARIES = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
_DAEMON_BINARIES = ("slurmctld", "slurmd", "munged", "munge", "unmunge")
_MUNGE_KEY = Path("/etc/munge/munge.key")
_MUNGE_RUN_DIR = Path("/run/munge")
_MUNGE_PID_FILE = _MUNGE_RUN_DIR / "munged.pid"
_KILL_GRACE = 5.0
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_MEMORY_CGROUP = _CGROUP_ROOT / "memory"


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def slurm_available() -> tuple[bool, str]:
    """Whether a real Slurm can be started here; the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return False, f"a real Slurm needs Linux, this is {sys.platform}"
    missing = [b for b in (*_CLIENT_BINARIES, *_DAEMON_BINARIES) if _which(b) is None]
    problems = []
    if missing:
        hint = "run .ci/install-system.sh as root"
        problems.append(f"missing binaries: {', '.join(missing)} ({hint})")
    if os.geteuid() != 0:
        problems.append("the Slurm daemons and munged must be started as root")
    if problems:
        return False, "; ".join(problems)
    return True, ""


def memory_enforcement_available() -> tuple[bool, str]:
    """Whether slurmd can confine jobs to their memory here (``memory_enforcement=True``): a cgroup
    v1 memory hierarchy at /sys/fs/cgroup/memory in which a cgroup can be made; the reason if not."""
    if not (_MEMORY_CGROUP / "memory.limit_in_bytes").exists():
        if (_CGROUP_ROOT / "cgroup.controllers").exists():
            return False, ("only cgroup v2 here: the test cluster sets up cgroup v1 only (Slurm 22.05's "
                           "cgroup/v2 plugin goes through systemd unless IgnoreSystemd, a development "
                           "setting)")
        return False, f"no cgroup v1 memory hierarchy at {_MEMORY_CGROUP}"
    probe = _MEMORY_CGROUP / f"pw-slurm-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return False, f"cannot make a memory cgroup in {_MEMORY_CGROUP}: {exc}"
    return True, ""


def _short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _half_free_memory_mib() -> int:
    """Half of the available memory (MemAvailable, else MemFree) in MiB, at least 1."""
    fields: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                fields[key] = int(parts[0])  # kB
    kib = fields.get("MemAvailable", fields.get("MemFree", 2 * 1024 * 1024))
    return max(1, kib // 1024 // 2)


def _stepd_pids(conf: str) -> list[int]:
    """slurmstepd processes started by the slurmd that uses ``conf`` (slurmstepd daemonizes away
    from slurmd, but it inherits slurmd's environment, which holds ``SLURM_CONF=<conf>``)."""
    return pids_with_environment(b"SLURM_CONF=" + os.fsencode(conf), "slurmstepd")


def _kill_steps(conf: str, grace: float = 2) -> None:
    """Kill this cluster's slurmstepd processes and the job processes in their sessions
    (killing slurmstepd alone leaves the batch script and its children running)."""
    kill_with_sessions(_stepd_pids(conf), grace)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _munge_works(env: Mapping[str, str] | None = None) -> bool:
    munge, unmunge = _which("munge"), _which("unmunge")
    if not munge or not unmunge:
        return False
    try:
        cred = subprocess.run([munge, "-n"], capture_output=True, timeout=10, env=env, check=False)
        if cred.returncode != 0:
            return False
        out = subprocess.run(
            [unmunge], input=cred.stdout, capture_output=True, timeout=10, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def ensure_user(name: str = "pwtestuser") -> pwd.struct_passwd:
    """The passwd entry of ``name``, creating the user (with a home) when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = _which("useradd")
    if useradd is None:
        raise RuntimeError("useradd not found; cannot create test user " + name)
    subprocess.run([useradd, "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def run_as(
    user: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` through ``su`` (root only), with ``env`` set explicitly in
    the user's shell; text mode, output captured, never raises on a non-zero exit."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    command = (f"env {assigns} " if assigns else "") + shlex.join(argv)
    su = _which("su") or "su"
    return subprocess.run(
        [su, user, "-s", "/bin/sh", "-c", command],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )


_LIVE: set[SlurmCluster] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for cluster in list(_LIVE):
        with contextlib.suppress(Exception):
            cluster.stop()


class SlurmCluster(WatchedDaemons):
    """One slurmctld + one slurmd (node ``hostname -s`` at 127.0.0.1), partitions ``debug``
    (default, no time limit) and ``short`` (4 h), munge authentication.

    ``start()`` returns once ``sinfo`` reports the node idle.  ``env`` is what client
    commands need (``SLURM_CONF``); ``run()`` runs a client command with it.
    ``memory_enforcement``: confine jobs to their ``--mem`` with cgroups (see the module
    docstring); ``first_job_id``: the first job's id (``FirstJobId``).
    """

    def __init__(self, base_dir: Path, *, memory_enforcement: bool = False, first_job_id: int = 1) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.memory_enforcement = memory_enforcement
        self.first_job_id = first_job_id
        self.nodename = _short_hostname()
        self.cpus = _cpu_count()
        self.real_memory_mib = 0
        self.slurmctld_port = 0
        self.slurmd_port = 0
        self.run_dir: Path | None = None
        self.startup_seconds: float | None = None
        self._own_run_dir = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._munged_pid: int | None = None  # set only when this object started munged
        self._watchdog: Watchdog | None = None
        self._started = False

    # -- paths ---------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.base_dir / "state"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.log_dir / "slurmd.log"

    @property
    def slurmctld_pid_file(self) -> Path:
        return self.base_dir / "slurmctld.pid"

    @property
    def slurmd_pid_file(self) -> Path:
        return self.base_dir / "slurmd.pid"

    @property
    def conf_path(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("SlurmCluster not started")
        return self.run_dir / "slurm.conf"

    @property
    def spool_dir(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("SlurmCluster not started")
        return self.run_dir / "spool"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables client commands (sbatch, squeue, ...) need."""
        return {"SLURM_CONF": str(self.conf_path)}

    @property
    def running(self) -> bool:
        return self._started

    # -- helpers -------------------------------------------------------------------------
    def client_env(self) -> dict[str, str]:
        """``os.environ`` without inherited SLURM_* variables, plus ``env``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        base.update(self.env)
        return base

    def run(
        self, *argv: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command as the current user against this cluster."""
        return subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.client_env(),
            check=False,
        )

    def logs(self, lines: int = 40) -> str:
        """Tails of both daemon logs (for error messages)."""
        return "\n".join(
            f"--- {log} (last {lines} lines) ---\n{tail(log, lines)}"
            for log in (self.slurmctld_log, self.slurmd_log)
        )

    # -- context manager -----------------------------------------------------------------
    # -- start ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> SlurmCluster:
        if self._started:
            return self
        ok, why = slurm_available()
        if ok and self.memory_enforcement:
            ok, why = memory_enforcement_available()
        if not ok:
            raise RuntimeError(f"cannot start Slurm: {why}")
        t0 = time.monotonic()
        deadline = t0 + timeout
        self._started = True
        _LIVE.add(self)
        try:
            self._prepare_dirs()
            self._start_watchdog()
            self._ensure_munge()
            # The ports are free when picked; if another process grabs one before
            # slurmctld binds it, pick again.
            for attempt in range(3):
                self.slurmctld_port, self.slurmd_port = free_ports(2)
                self._write_conf()
                self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf_path)])
                self._spawn("slurmd", ["-D", "-f", str(self.conf_path), "-N", self.nodename])
                if self._wait_idle(deadline):
                    break
                if attempt < 2 and "Address already in use" in self.logs(lines=20):
                    self._kill_daemons()
                    continue
                raise RuntimeError(self._failure("node did not become idle", timeout))
            self.startup_seconds = time.monotonic() - t0
            return self
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _ctld_alive(self) -> bool:
        proc = self._procs.get("slurmctld")
        return proc is not None and proc.poll() is None

    def _failure(self, what: str, timeout: float) -> str:
        node = ""
        if self._ctld_alive():
            try:
                info = self.run("scontrol", "show", "node", self.nodename, timeout=3)
                node = (info.stdout + info.stderr).strip()
            except (OSError, subprocess.TimeoutExpired):
                pass
        dead = [
            f"{name} exited with {proc.returncode}"
            for name, proc in self._procs.items()
            if proc.poll() is not None
        ]
        return (
            f"Slurm did not start (timeout {timeout:g} s): {what}"
            + (f" ({', '.join(dead)})" if dead else "")
            + f"\nconf: {self.conf_path}\nscontrol show node:\n{node or '<no answer>'}\n"
            + self.logs()
        )

    def _prepare_dirs(self) -> None:
        for d in (self.base_dir, self.state_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, 0, 0)  # SlurmUser=root
        if world_traversable(self.base_dir):
            self.run_dir = self.base_dir / "run"
            self.run_dir.mkdir(exist_ok=True)
            self._own_run_dir = False
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix="pw-slurm-", dir="/tmp"))
            self._own_run_dir = True
            # So a stale run dir can be traced back to its logs.
            (self.base_dir / "run_dir").write_text(str(self.run_dir) + "\n")
        os.chmod(self.run_dir, 0o755)
        self.spool_dir.mkdir(exist_ok=True)
        os.chmod(self.spool_dir, 0o755)

    def _write_conf(self) -> None:
        self.real_memory_mib = _half_free_memory_mib()
        host = self.nodename
        lines = [
            "# Written by tests/support/slurm_cluster.py: single node on 127.0.0.1",
            f"ClusterName={CLUSTER_NAME}",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={self.slurmctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            f"StateSaveLocation={self.state_dir}",
            f"SlurmdSpoolDir={self.spool_dir}",
            f"SlurmctldPidFile={self.slurmctld_pid_file}",
            f"SlurmdPidFile={self.slurmd_pid_file}",
            f"SlurmctldLogFile={self.slurmctld_log}",
            f"SlurmdLogFile={self.slurmd_log}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/cgroup" if self.memory_enforcement else "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000",
            "MinJobAge=300",
            f"FirstJobId={self.first_job_id}",
            "SlurmctldTimeout=10",
            "SlurmdTimeout=10",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            (
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                f"RealMemory={self.real_memory_mib} State=UNKNOWN"
            ),
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=short Nodes={host} MaxTime=04:00:00 State=UP",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf_path, 0o644)
        if self.memory_enforcement:
            self._write_cgroup_conf()

    @property
    def cgroup_conf_path(self) -> Path:
        """cgroup.conf, beside slurm.conf (where Slurm reads it); written with memory enforcement."""
        return self.conf_path.with_name("cgroup.conf")

    def _write_cgroup_conf(self) -> None:
        lines = [
            "# Written by tests/support/slurm_cluster.py: confine each job to its --mem",
            "CgroupPlugin=cgroup/v1",
            f"CgroupMountpoint={_CGROUP_ROOT}",
            "ConstrainRAMSpace=yes",
        ]
        if (_MEMORY_CGROUP / "memory.memsw.limit_in_bytes").exists():
            # Where swap is accounted, the job may not go past its memory into swap either.
            lines += ["ConstrainSwapSpace=yes", "AllowedSwapSpace=0"]
        self.cgroup_conf_path.write_text("\n".join(lines) + "\n")
        os.chmod(self.cgroup_conf_path, 0o644)

    def _remove_node_cgroups(self) -> None:
        """The node's cgroup directory that slurmd leaves behind (``slurm_<node>``, its jobs'
        own removed by slurmstepd): removed when empty; one another cluster still uses is not."""
        for controller in ("memory", "freezer", "cpuset", "devices"):
            with contextlib.suppress(OSError):
                (_CGROUP_ROOT / controller / f"slurm_{self.nodename}").rmdir()

    def _spawn(self, name: str, args: list[str]) -> None:
        exe = _which(name)
        assert exe is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf_path)
        with open(self.log_dir / f"{name}.stdout", "ab") as out:
            proc = subprocess.Popen(
                [exe, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base_dir,
                start_new_session=True,
            )
        self._procs[name] = proc
        self._tell_watchdog(f"pid {proc.pid} {name}")

    def _wait_idle(self, deadline: float) -> bool:
        """Poll ``sinfo`` until every line says idle; False at the deadline or as soon as
        a daemon exits."""
        while time.monotonic() < deadline:
            # sinfo retries for ~10 s while slurmctld is not listening yet: run it in the
            # background so a daemon that dies meanwhile is noticed at once.
            sinfo = subprocess.Popen(
                ["sinfo", "-h", "-o", "%T"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=self.client_env(),
            )
            try:
                while sinfo.poll() is None:
                    if self._daemon_died() or time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)
                out = sinfo.stdout.read() if sinfo.stdout is not None else ""
            finally:
                if sinfo.poll() is None:
                    sinfo.kill()
                sinfo.wait()
                if sinfo.stdout is not None:
                    sinfo.stdout.close()
            if sinfo.returncode == 0 and set(out.split()) == {"idle"}:
                return True
            if self._daemon_died():
                return False
            time.sleep(0.1)
        return False

    def _daemon_died(self) -> bool:
        return any(p.poll() is not None for p in self._procs.values())

    # -- munge ---------------------------------------------------------------------------
    def _ensure_munge(self) -> None:
        if _munge_works():
            return
        if not _MUNGE_KEY.exists():
            self._create_munge_key()
        try:
            munge_pw = pwd.getpwnam("munge")
        except KeyError:
            munge_pw = None
        _MUNGE_RUN_DIR.mkdir(parents=True, exist_ok=True)
        os.chmod(_MUNGE_RUN_DIR, 0o755)
        if munge_pw is not None:
            os.chown(_MUNGE_RUN_DIR, munge_pw.pw_uid, munge_pw.pw_gid)
        munged = _which("munged")
        assert munged is not None
        runuser = _which("runuser")
        # munged daemonizes; --force gets past a stale socket left by a killed munged.
        if munge_pw is not None and runuser is not None:
            cmd = [runuser, "-u", "munge", "--", munged, "--force"]
        else:
            cmd = [munged, "--force"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _munge_works():
            time.sleep(0.1)
        if not _munge_works():
            raise RuntimeError(
                f"munged did not come up ({shlex.join(cmd)} -> rc {r.returncode}): "
                f"{r.stdout}{r.stderr}\n{tail(Path('/var/log/munge/munged.log'))}"
            )
        pid = _read_pid(_MUNGE_PID_FILE)
        if pid is not None:
            self._munged_pid = pid
            self._tell_watchdog(f"pid {pid} munged")

    @staticmethod
    def _create_munge_key() -> None:
        _MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        mungekey = _which("mungekey")
        created = False
        if mungekey is not None:
            r = subprocess.run(
                [mungekey, "--create", "--keyfile", str(_MUNGE_KEY)],
                capture_output=True,
                timeout=30,
                check=False,
            )
            created = r.returncode == 0 and _MUNGE_KEY.exists()
        if not created:
            fd = os.open(_MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(1024))
        try:
            munge_pw = pwd.getpwnam("munge")
        except KeyError:
            return
        os.chown(_MUNGE_KEY.parent, munge_pw.pw_uid, munge_pw.pw_gid)
        os.chmod(_MUNGE_KEY.parent, 0o700)
        os.chown(_MUNGE_KEY, munge_pw.pw_uid, munge_pw.pw_gid)
        os.chmod(_MUNGE_KEY, 0o400)

    # -- watchdog ------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        self._watchdog = Watchdog("support.slurm_cluster")
        self._tell_watchdog(f"conf {self.conf_path}")
        if self._own_run_dir:
            self._tell_watchdog(f"rmdir {self.run_dir}")

    # -- stop ----------------------------------------------------------------------------
    def _cancel_all_jobs(self) -> None:
        """Cancel every job and wait (bounded) for their steps to go away."""
        try:
            r = self.run("squeue", "-h", "-o", "%A", timeout=5)
        except subprocess.TimeoutExpired:
            return
        ids = r.stdout.split() if r.returncode == 0 else []
        if not ids:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run("scancel", *ids, timeout=5)
        deadline = time.monotonic() + _KILL_GRACE + 2
        while time.monotonic() < deadline and _stepd_pids(str(self.conf_path)):
            time.sleep(0.1)

    def _kill_daemons(self) -> None:
        pids: dict[int, str] = {}
        for name, pidfile in (
            ("slurmctld", self.slurmctld_pid_file),
            ("slurmd", self.slurmd_pid_file),
        ):
            pid = _read_pid(pidfile)
            if pid is not None:
                pids[pid] = name
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is None:
                pids[proc.pid] = name
        terminate(pids, _KILL_GRACE)
        for name, proc in list(self._procs.items()):
            # With -D the daemons are our children: reap them so no zombie is left.
            try:
                proc.wait(timeout=_KILL_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # slurmctld's helper (slurmscriptd) shares its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            del self._procs[name]
        for pidfile in (self.slurmctld_pid_file, self.slurmd_pid_file):
            with contextlib.suppress(OSError):
                pidfile.unlink()

    def stop(self) -> None:
        """Stop slurmctld, slurmd, leftover job steps, and munged if this object started it.
        Safe to call more than once."""
        if not self._started:
            return
        self._started = False
        _LIVE.discard(self)
        try:
            if self.run_dir is not None and self._ctld_alive():
                self._cancel_all_jobs()
            self._kill_daemons()
            if self.run_dir is not None:
                _kill_steps(str(self.conf_path))
            names = ["slurmstepd", "slurmctld", "slurmd", "slurmscriptd"]
            if self._munged_pid is not None:
                terminate({self._munged_pid: "munged"}, _KILL_GRACE)
                self._munged_pid = None
                names.append("munged")
            wait_zombies_reaped(names)
            if self.memory_enforcement:
                self._remove_node_cgroups()
        finally:
            self._close_watchdog()
            if self._own_run_dir and self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)


def _watchdog_main(lines: Iterable[str]) -> None:
    """The watchdog (see support.processes): at the end of its orders (``pid <pid> <name>``,
    ``conf <path>``, ``rmdir <path>``) without ``done``, kill everything it was told of."""
    told = read_orders(lines)
    if told is None:
        return
    pids, orders = told
    # Daemons first (so slurmd starts no new steps), then job steps, then munged.
    terminate({p: n for p, n in pids.items() if n != "munged"}, _KILL_GRACE)
    for conf in orders.get("conf", []):
        _kill_steps(conf)
    terminate({p: n for p, n in pids.items() if n == "munged"}, _KILL_GRACE)
    for d in orders.get("rmdir", []):
        shutil.rmtree(d, ignore_errors=True)

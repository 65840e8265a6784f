"""A real OpenSSH server on 127.0.0.1, started and stopped by the tests.

Usage::

    with SSHServer(tmp_dir) as server:
        executor = SSHExecutor("127.0.0.1", port=server.port, username=server.user,
                               key_file=server.client_key, known_hosts=server.known_hosts)

``base_dir`` gets a fresh ed25519 host key and user key (``ssh-keygen -q -N ''``), an
``sshd_config`` that accepts only that user key, a ``known_hosts`` file naming
``[127.0.0.1]:PORT``, the pid file and ``sshd.log``. The key logs in the account running the
tests (root included, by key only) and, when that is root, any other account too, such as
the ordinary one :func:`ensure_login_user` provides.
``restart()`` brings the server back on the same port with the same host key;
``drop_sessions()`` cuts every client connection but keeps the server listening.

Servers never outlive the test process: ``stop()`` runs at interpreter exit (atexit), and when
``setpriv`` is at hand sshd is started with a parent-death signal, so even a test process killed
by SIGKILL takes its sshd along. Only the standard library is used.

Optional, for tests that need another host: ``listen`` (an address other than 127.0.0.1),
``extra_config`` (more sshd_config lines, e.g. ``GatewayPorts clientspecified``) and ``netns`` (run
sshd in that network namespace, see :mod:`support.netns`; needs root).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from support.net import free_ports

__all__ = ["SSHD", "SSHServer", "ensure_login_user", "sshd_available"]

#: sshd re-executes itself for every connection and refuses to start from a relative path.
SSHD = "/usr/sbin/sshd"

_RUNNING: set[SSHServer] = set()


def _ssh_keygen() -> str | None:
    return shutil.which("ssh-keygen") or next(
        (p for p in ("/usr/bin/ssh-keygen", "/bin/ssh-keygen") if os.access(p, os.X_OK)), None)


def sshd_available() -> tuple[bool, str]:
    """Whether a test sshd can run here: OpenSSH's server at /usr/sbin/sshd and ssh-keygen."""
    if not os.access(SSHD, os.X_OK):
        return False, f"{SSHD} is missing (install openssh-server)"
    if _ssh_keygen() is None:
        return False, "ssh-keygen is not on PATH (install openssh-client)"
    return True, ""


def ensure_login_user(name: str = "pwsshuser") -> pwd.struct_passwd:
    """An ordinary account (shell /bin/sh, a home) that the test sshd can log in; needs root.

    useradd leaves a new account's password locked ("!"), and sshd without PAM refuses locked
    accounts even for key logins, so the password is set to "*": no password matches it either.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", name], check=True,
                       capture_output=True)
        return pwd.getpwnam(name)
    shadow = subprocess.run(["getent", "shadow", name], capture_output=True, text=True).stdout
    if shadow.split(":")[1:2] and shadow.split(":")[1].startswith("!"):
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return entry


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (sshd's per-connection processes and their shells)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after its last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        parent_of[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parent_of.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class SSHServer:
    """One OpenSSH server on 127.0.0.1 with its own keys, config and known_hosts file.

    ``listen``, ``extra_config`` and ``netns`` (all optional) put it on another address, add
    sshd_config lines, and run it inside a network namespace.
    """

    def __init__(self, base_dir: Path | str, port: int | None = None, *, listen: str = "127.0.0.1",
                 extra_config: Sequence[str] = (), netns: str | None = None) -> None:
        self.base_dir = Path(base_dir)
        # Inside a fresh namespace any port is free; a free one here is as good as any.
        self.port = port or free_ports(1)[0]
        self.listen = listen
        self.extra_config = list(extra_config)
        self.netns = netns
        #: The account running the tests, which the key always logs in.
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.proc: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # -- paths ---------------------------------------------------------------------------
    @property
    def host_key(self) -> Path:
        return self.base_dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        """The private key the server accepts for :attr:`user`."""
        return self.base_dir / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.base_dir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file that names this server's host key for ``[LISTEN]:PORT``."""
        return self.base_dir / "known_hosts"

    @property
    def config(self) -> Path:
        return self.base_dir / "sshd_config"

    @property
    def log(self) -> Path:
        return self.base_dir / "sshd.log"

    @property
    def host_entry(self) -> str:
        """The host pattern known_hosts uses for this server (a port other than 22 is bracketed)."""
        return f"[{self.listen}]:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10) -> SSHServer:
        """Start sshd and wait until it greets a client with its SSH-2.0 banner."""
        if self.running:
            return self
        self._prepare()
        if os.geteuid() == 0:
            # Running as root, sshd chroots its unprivileged child into the privilege-separation
            # directory; a container may not have it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        argv = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.netns is not None:
            # ip execs sshd after entering the namespace, so self.proc is still sshd's own pid.
            from support.netns import netns_exec_argv
            argv = netns_exec_argv(self.netns, argv)
        if shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            # Parent-death signal: sshd dies with the test process even when that is SIGKILLed and
            # atexit never runs. The signal follows the thread that started sshd, hence main only.
            argv = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "TERM", "--", *argv]
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                _RUNNING.discard(self)
                raise RuntimeError(f"sshd exited at start; its log:\n{self.tail()}")
            if self._banner_ok():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on {self.listen}:{self.port} within {timeout:g} s; "
                                   f"its log:\n{self.tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill sshd and every session it holds; the keys and config stay for a restart."""
        proc, self.proc = self.proc, None
        _RUNNING.discard(self)
        if proc is None:
            return
        # Sessions run in sessions of their own (sshd calls setsid), so a process-group kill
        # would miss them; collect the tree before the listener dies and they are re-parented.
        _kill([*_children(proc.pid), proc.pid])
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def restart(self, timeout: float = 10) -> SSHServer:
        """Stop and start again on the same port with the same host key: clients must reconnect."""
        self.stop()
        return self.start(timeout=timeout)

    def session_pids(self) -> list[int]:
        """The processes serving client connections (sshd's per-connection children, their shells)."""
        return _children(self.proc.pid) if self.proc is not None else []

    def drop_sessions(self) -> int:
        """Kill every client connection (as a dropped network would) but keep listening.

        Returns how many processes were killed.
        """
        victims = self.session_pids()
        _kill(victims)
        return len(victims)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def foreign_known_hosts(self, path: Path | str | None = None) -> Path:
        """A known_hosts file naming this server's address with some other host key."""
        path = Path(path) if path else self.base_dir / "known_hosts.foreign"
        other = self.base_dir / "other_host_key"
        if not other.exists():
            self._keygen(other)
        path.write_text(self._known_hosts_line(other))
        return path

    # -- internals -------------------------------------------------------------------------
    def _banner_ok(self) -> bool:
        if self.netns is not None:
            # The address exists only inside the namespace: probe from a thread that entered it.
            from support.netns import call_in_netns
            return call_in_netns(self.netns, self._banner_here)
        return self._banner_here()

    def _banner_here(self) -> bool:
        try:
            with socket.create_connection((self.listen, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-2.0")
        except OSError:
            return False

    def _keygen(self, path: Path) -> None:
        subprocess.run([_ssh_keygen() or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pw-test",
                        "-f", str(path)], check=True, stdin=subprocess.DEVNULL, capture_output=True)

    def _known_hosts_line(self, key: Path) -> str:
        kind, blob = Path(f"{key}.pub").read_text().split()[:2]
        return f"{self.host_entry} {kind} {blob}\n"

    def _prepare(self) -> None:
        if self._prepared:
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key, self.client_key):
            if not key.exists():
                self._keygen(key)
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.authorized_keys.chmod(0o600)
        self.known_hosts.write_text(self._known_hosts_line(self.host_key))
        by_root = []
        if os.geteuid() == 0:
            # sshd reads AuthorizedKeysFile as the user logging in, and other accounts cannot
            # reach a private test dir; a command run as root hands them the same key.
            if any(ch.isspace() for ch in str(self.authorized_keys)):
                raise RuntimeError(f"a test dir without spaces is needed: {self.authorized_keys}")
            cat = shutil.which("cat", path="/usr/bin:/bin") or "/bin/cat"
            by_root = [f"AuthorizedKeysCommand {cat} {self.authorized_keys}",
                       "AuthorizedKeysCommandUser root"]
        self.config.write_text("\n".join([
            f"ListenAddress {self.listen}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.base_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            *by_root,
            # Needed: StrictModes wants every directory above authorized_keys writable only by root or
            # the user, and the file lives in a test temp dir below /tmp (mode 1777), so with it sshd
            # logs "bad ownership or modes for directory /tmp" and refuses the key.
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            # Like most clusters' sshd: the client's environment is not accepted.
            "PermitUserEnvironment no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            *self.extra_config,
            "",
        ]))
        self._prepared = True


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_RUNNING):
        server.stop()

"""Network namespaces as separate hosts for tests (root only): hub, login node, compute node.

Usage::

    with Topology() as topo:              # names are unique per run: pwt-<hex>-<role>
        topo.add("hub"); topo.add("login")
        topo.link("hub", "10.231.1.1", "login", "10.231.1.2")
        topo.popen("login", ["/usr/sbin/sshd", ...])        # a process on that "host"
        topo.call("hub", socket.create_connection, ("10.231.1.2", 22))

Each namespace gets its loopback up; :meth:`Topology.link` joins two of them with a veth pair
created directly inside them, so the root namespace never sees the interfaces and fixed addresses
cannot clash with another run. Nothing routes between namespaces that are not linked: a host two
links away is unreachable, as a compute node behind a login node is.

:func:`call_in_netns` runs a function in a fresh thread that has entered the namespace (setns(2)
applies to the calling thread only), so the test process can open sockets "on" another host without
starting a process. Sockets keep the namespace they were made in, so a listening socket made there
keeps serving there from any thread. :func:`entered` moves the calling thread itself (the test's
event loop) into a namespace for a block, so code under test that opens connections and starts
processes (a spawner, its tunnel process) runs "on" that host.

Cleanup kills every process in the namespaces (``ip netns pids``, which also catches sshd's
sessions) before deleting them: a namespace with a live process would outlive ``ip netns del``.
It runs at :meth:`Topology.close`, and at interpreter exit for topologies a test left open.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["Topology", "call_in_netns", "entered", "netns_available", "netns_exec_argv"]

T = TypeVar("T")

#: From <sched.h>; Python 3.11's os module has no setns().
CLONE_NEWNET = 0x40000000
IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"

_OPEN: set[Topology] = set()


def netns_available() -> tuple[bool, str]:
    """Whether this process can make network namespaces: root and iproute2's ``ip``."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if not shutil.which(IP):
        return False, "iproute2's ip is missing (install iproute2)"
    return True, ""


def netns_exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``name``; ip execs it, so its pid is the command's own."""
    return [IP, "netns", "exec", name, *argv]


def call_in_netns(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a new thread inside namespace ``name``; its result or exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            _enter(name)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            outcome["error"] = exc

    # A new thread every time: a thread that entered a namespace never leaves it.
    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` for the block, then back where it was.

    Threads and processes started meanwhile stay in ``name``; sockets opened meanwhile stay there too.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _enter(name)
        try:
            yield
        finally:
            _setns(own, "the test's own namespace")
    finally:
        os.close(own)


def _enter(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, name)
    finally:
        os.close(fd)


def _setns(fd: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


def _ip(*args: str) -> None:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


class Topology:
    """A set of linked network namespaces and the processes started in them."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"pwt-{secrets.token_hex(3)}"
        self.roles: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def name(self, role: str) -> str:
        """The namespace's name for ``role`` (what ``ip netns`` lists)."""
        return f"{self.prefix}-{role}"

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, role: str) -> str:
        """A new namespace with its loopback up (sshd forwards and the tunnel bind on 127.0.0.1)."""
        name = self.name(role)
        _ip("netns", "add", name)
        self.roles.append(role)
        _OPEN.add(self)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, addr_a: str, b: str, addr_b: str, prefixlen: int = 24) -> None:
        """A veth pair between roles ``a`` and ``b`` (interfaces ``to-<b>`` in a, ``to-<a>`` in b)."""
        if_a, if_b = f"to-{b}"[:15], f"to-{a}"[:15]
        _ip("link", "add", if_a, "netns", self.name(a), "type", "veth",
            "peer", "name", if_b, "netns", self.name(b))
        for role, ifname, addr in ((a, if_a, addr_a), (b, if_b, addr_b)):
            _ip("-n", self.name(role), "addr", "add", f"{addr}/{prefixlen}", "dev", ifname)
            _ip("-n", self.name(role), "link", "set", ifname, "up")

    def popen(self, role: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              log_path: str | os.PathLike[str] | None = None, cwd: str = "/") -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``role``'s namespace; it is killed at :meth:`close`."""
        full = netns_exec_argv(self.name(role), argv)
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # Dies with the test process even if that is SIGKILLed (see support.sshd).
            full = [setpriv, "--pdeathsig", "KILL", "--", *full]
        with open(log_path or os.devnull, "ab") as log:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=dict(env) if env is not None else None, cwd=cwd,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def call(self, role: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` run inside ``role``'s namespace (see :func:`call_in_netns`)."""
        return call_in_netns(self.name(role), fn, *args, **kwargs)

    def entered(self, role: str) -> contextlib.AbstractContextManager[None]:
        """The calling thread inside ``role``'s namespace for a block (see :func:`entered`)."""
        return entered(self.name(role))

    def pids(self, role: str) -> list[int]:
        """Every process inside ``role``'s namespace."""
        done = subprocess.run([IP, "netns", "pids", self.name(role)], capture_output=True, text=True)
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    def close(self) -> None:
        """Kill every process in the namespaces, then delete them; safe to call twice."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for role in self.roles:
            # What the list above misses: sshd's sessions (their own sessions), strays.
            for _attempt in range(20):
                pids = [pid for pid in self.pids(role) if pid != os.getpid()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        for role in list(self.roles):
            subprocess.run([IP, "netns", "del", self.name(role)], capture_output=True)
            self.roles.remove(role)
        _OPEN.discard(self)


@atexit.register
def _close_all_at_exit() -> None:
    for topology in list(_OPEN):
        topology.close()

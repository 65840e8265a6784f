"""The hub's SSH connections to login nodes (asyncssh): one pooled connection per target.

Every user of the process that names the same :class:`SSHTarget` (host, port, SSH user, key,
known_hosts) shares one connection: opened on first use, kept alive with SSH keepalives, reopened
with a bounded exponential backoff after it drops. Host keys are always checked against the
target's known_hosts file. :mod:`.ssh` runs commands on these connections, and the tunnel process
(:mod:`.tunnel`) opens its forwards on them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncssh

from .executor import ExecutorError

__all__ = [
    "PooledConnection",
    "SSHOptions",
    "SSHTarget",
    "close_all",
    "connection",
    "connections_opened",
    "loop_local",
    "open_connections",
    "pooled",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in; executors naming the same target share one connection."""

    host: str
    port: int
    username: str
    known_hosts: str
    key_file: str | None = None
    agent_path: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, how error messages name the login node."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SSHOptions:
    """How a pooled connection behaves; the first executor to open a target's connection sets them.

    ``max_sessions`` caps concurrent commands on one connection: OpenSSH's sshd refuses channels
    beyond its ``MaxSessions`` (10 by default), so more callers queue instead of failing.
    """

    connect_timeout: float = 15
    #: Ciphers in order of preference (the client's order decides). AES-GCM first: with the AES
    #: instructions of today's CPUs it moves ~1.5x the bytes of chacha20-poly1305 (asyncssh's
    #: first choice) for 40 % less CPU through a tunnel (docs/benchmarks.md); the others stay
    #: for servers without it.
    encryption_algs: tuple[str, ...] = (
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
        "aes256-ctr", "aes192-ctr", "aes128-ctr")
    keepalive_interval: float = 15
    keepalive_count_max: int = 3
    max_sessions: int = 10
    reconnect_delay: float = 0.5
    reconnect_delay_max: float = 30


# -- the process-wide pool ------------------------------------------------------------------------

#: asyncssh connections belong to the event loop that opened them: one pool per loop.
_POOLS: dict[asyncio.AbstractEventLoop, dict[SSHTarget, PooledConnection]] = {}
_OPENED: Counter[SSHTarget] = Counter()


def connections_opened(target: SSHTarget | None = None) -> int:
    """How many SSH connections this process has opened (to ``target``, or to all targets)."""
    return _OPENED[target] if target is not None else sum(_OPENED.values())


def open_connections() -> int:
    """How many pooled connections are up right now, over all event loops."""
    return sum(entry.conn is not None for pool in list(_POOLS.values()) for entry in list(pool.values()))


def loop_local(registry: dict[asyncio.AbstractEventLoop, T], make: Callable[[], T]) -> T:
    """The running event loop's entry of ``registry``, made on first use.

    asyncio objects (connections, locks) belong to the loop that made them. Entries of closed
    loops are dropped: their objects died with the loop, and keeping them would keep it alive.
    """
    loop = asyncio.get_running_loop()
    for other in [other for other in list(registry) if other.is_closed()]:
        registry.pop(other, None)
    if loop not in registry:
        registry[loop] = make()
    return registry[loop]


def _pool() -> dict[SSHTarget, PooledConnection]:
    return loop_local(_POOLS, dict)


def pooled(target: SSHTarget, options: SSHOptions) -> PooledConnection:
    pool = _pool()
    entry = pool.get(target)
    if entry is None:
        entry = pool[target] = PooledConnection(target, options)
    return entry


async def connection(target: SSHTarget, options: SSHOptions | None = None,
                     timeout: float = 30) -> asyncssh.SSHClientConnection:
    """The pooled connection to ``target`` (opened now if needed); ExecutorError when that fails.

    For callers that use the connection itself (port forwards) rather than run commands on it.
    """
    loop = asyncio.get_running_loop()
    return await pooled(target, options or SSHOptions()).connection(loop.time() + timeout)


async def close_all() -> None:
    """Close every pooled connection of the running event loop (hub shutdown, test teardown)."""
    entries = list(_pool().values())
    _pool().clear()
    await asyncio.gather(*(entry.close() for entry in entries), return_exceptions=True)


class _Client(asyncssh.SSHClient):
    """Tells the pool when a connection is gone, so the next caller reconnects at once."""

    def __init__(self, entry: PooledConnection) -> None:
        self._entry = entry
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._entry.lost(self._conn, exc)


class PooledConnection:
    """One target's connection: opened lazily, shared, reopened with backoff after it drops."""

    def __init__(self, target: SSHTarget, options: SSHOptions) -> None:
        self.target = target
        self.options = options
        self.conn: asyncssh.SSHClientConnection | None = None
        self.sessions = asyncio.Semaphore(options.max_sessions)
        # The one connection attempt in flight. Callers share it instead of taking a lock around
        # the connect: each caller can then give up at its own deadline while the attempt goes
        # on for the others, and still no two connections to the target are ever opened at once.
        self._attempt: asyncio.Task[None] | None = None
        self._failures = 0
        self._last_error: ExecutorError | None = None
        self._retry_at = 0.0

    def lost(self, conn: asyncssh.SSHClientConnection, exc: Exception | None) -> None:
        if conn is self.conn:
            self.conn = None
            log.info("SSH connection to %s lost%s", self.target.where, f": {exc}" if exc else "")

    def alive(self, conn: asyncssh.SSHClientConnection) -> bool:
        return conn is self.conn

    async def connection(self, deadline: float) -> asyncssh.SSHClientConnection:
        """The live connection, opened now if needed; ExecutorError when that fails."""
        loop = asyncio.get_running_loop()
        while self.conn is None:
            if self._attempt is None:
                now = loop.time()
                if self._last_error is not None and now < self._retry_at:
                    # Back off: while a target keeps failing, callers get the last error at
                    # once instead of each one knocking on the login node again.
                    raise ExecutorError(f"{self._last_error} (next attempt in "
                                        f"{self._retry_at - now:.1f} s)")
                self._attempt = asyncio.ensure_future(self._open())
            # asyncio.wait neither cancels the shared attempt when this caller's time is up nor
            # raises when close_all() cancels it: the attempt records its own outcome.
            done, _ = await asyncio.wait({self._attempt}, timeout=max(deadline - loop.time(), 0))
            if not done:
                raise ExecutorError(f"{self.target.where}: no SSH connection in time")
            if self.conn is None and self._last_error is not None:
                raise self._last_error
        return self.conn

    async def _open(self) -> None:
        """One connection attempt; records its outcome in ``conn`` or ``_last_error``."""
        loop = asyncio.get_running_loop()
        try:
            conn = await self._connect()
        except asyncio.CancelledError:
            # close_all() during the attempt: its waiters fail, the next caller tries at once.
            self._last_error = ExecutorError(f"{self.target.where}: connection attempt aborted")
            self._retry_at = loop.time()
            raise
        except Exception as exc:
            if not isinstance(exc, ExecutorError):
                log.exception("unexpected failure connecting to %s", self.target.where)
                exc = ExecutorError(f"{self.target.where}: {exc!r}")
            self._failures += 1
            delay = min(self.options.reconnect_delay * 2 ** (self._failures - 1),
                        self.options.reconnect_delay_max)
            self._last_error, self._retry_at = exc, loop.time() + delay
            log.warning("%s; next attempt in %.1f s", exc, delay)
        else:
            self.conn, self._failures, self._last_error = conn, 0, None
            _OPENED[self.target] += 1
            log.info("SSH connection to %s as %s opened", self.target.where, self.target.username)
        finally:
            self._attempt = None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        target, options = self.target, self.options
        where = target.where
        for what, path in (("known_hosts file", target.known_hosts), ("key file", target.key_file)):
            if path is not None and not os.access(path, os.R_OK):
                raise ExecutorError(f"{where}: the {what} {path} cannot be read")
        agent = None
        try:
            keys: list[object] = []
            if target.agent_path:
                # Keys from the configured agent only: asyncssh would otherwise also fall back
                # to SSH_AUTH_SOCK and the hub account's ~/.ssh/id_* files.
                agent = await asyncssh.connect_agent(target.agent_path)
                keys.extend(await agent.get_keys())
            if target.key_file:
                keys.append(target.key_file)
            if not keys:
                raise ExecutorError(f"{where}: no key to log in with (the agent holds none)")
            return await asyncssh.connect(
                target.host, target.port, username=target.username,
                known_hosts=target.known_hosts, client_keys=keys, agent_path=None,
                # The resource's settings are the whole truth, not the hub account's ~/.ssh/config.
                config=None,
                connect_timeout=options.connect_timeout,
                encryption_algs=list(options.encryption_algs),
                keepalive_interval=options.keepalive_interval,
                keepalive_count_max=options.keepalive_count_max,
                client_factory=lambda: _Client(self),
            )
        except ExecutorError:
            raise
        except asyncssh.HostKeyNotVerifiable:
            raise ExecutorError(
                f"{where}: host key verification failed: the host key it presented is not in the "
                f"known_hosts file {target.known_hosts} (an unknown host or a changed key); "
                "not connecting") from None
        except asyncssh.PermissionDenied:
            raise ExecutorError(f"{where}: permission denied for user {target.username} "
                                "(the server accepted none of the keys)") from None
        except asyncssh.DisconnectError as exc:
            raise ExecutorError(f"{where}: the server closed the connection: {exc.reason}") from None
        except asyncssh.KeyImportError as exc:
            raise ExecutorError(f"{where}: cannot use the key file {target.key_file}: {exc}") from None
        except asyncio.TimeoutError:
            raise ExecutorError(f"{where}: no SSH connection within {options.connect_timeout:g} s") from None
        except socket.gaierror as exc:
            raise ExecutorError(f"{where}: cannot resolve the host name: {exc.strerror}") from None
        except OSError as exc:
            # asyncio folds the errors of several addresses (IPv6 and IPv4) into one OSError.
            if exc.errno == errno.ECONNREFUSED or f"[Errno {errno.ECONNREFUSED}]" in str(exc):
                raise ExecutorError(f"{where}: connection refused") from None
            raise ExecutorError(f"{where}: {exc.strerror or exc}") from None
        except asyncssh.Error as exc:
            raise ExecutorError(f"{where}: {exc.reason}") from None
        finally:
            if agent is not None:
                agent.close()

    async def close(self) -> None:
        if self._attempt is not None:
            self._attempt.cancel()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

"""How spawners ask for SSH forwards: from the tunnel process, or (``inline``) in the hub itself.

:class:`TunnelProcessClient` talks to ``pw-spawner tunnel`` over its unix socket and starts it,
detached into its own session, when nothing answers there; so the process outlives the hub and
its forwards survive a hub restart. :class:`InlineTunnels` runs the same
:class:`~pw_spawner.remote.tunnel.TunnelService` on the hub's event loop: fewer moving parts, but
every user's traffic then crosses the hub's loop (see docs/benchmarks.md for what that costs).

The socket is trusted only when no other account can have put it there: its directory must be
the hub's own and closed to others (0700), the socket the hub's own, and the process answering on
it (SO_PEERCRED) must run as the hub's uid. Otherwise a local user could stand in for the tunnel
process and learn, or redirect, every forward the hub asks for.
"""

from __future__ import annotations

import abc
import asyncio
import os
import pwd
import socket
import stat
import struct
import sys
import time
from pathlib import Path
from typing import Any

from . import tunnel_protocol as protocol
from .ssh_pool import SSHTarget, loop_local
from .tunnel import TunnelError, TunnelService, handle_request
from .tunnel_protocol import MAX_REQUEST


class Tunnels(abc.ABC):
    """Open and close forwards by key (one key per user's server)."""

    async def open(self, key: str, target: SSHTarget, remote_host: str, remote_port: int,
                   local_port: int = 0) -> int:
        """A local forward 127.0.0.1:<port> -> remote_host:remote_port; returns the local port."""
        answer = await self.request(protocol.open_forward(key, target, remote_host, remote_port, local_port))
        return int(answer["local_port"])

    async def reverse(self, key: str, target: SSHTarget, bind_host: str, bind_port: int,
                      local_port: int) -> int:
        """A remote forward login:bind_host:bind_port -> 127.0.0.1:local_port; returns the bound port."""
        answer = await self.request(protocol.reverse_forward(key, target, bind_host, bind_port, local_port))
        return int(answer["remote_port"])

    async def close(self, key: str) -> bool:
        return bool((await self.request(protocol.close(key)))["closed"])

    async def stats(self) -> dict[str, Any]:
        return await self.request(protocol.ping())

    async def forwards(self) -> list[dict[str, Any]]:
        return (await self.request(protocol.list_forwards()))["forwards"]

    @abc.abstractmethod
    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; TunnelError when it fails."""


class InlineTunnels(Tunnels):
    """The forwards in this process (one service an event loop)."""

    _services: dict[asyncio.AbstractEventLoop, TunnelService] = {}

    @classmethod
    def service(cls) -> TunnelService:
        return loop_local(cls._services, TunnelService)

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        return _checked(await handle_request(self.service(), request))


class TunnelProcessClient(Tunnels):
    """The tunnel process at ``socket_path``; started on first use when ``autostart``."""

    #: One start at a time per socket and event loop (asyncio locks belong to one loop).
    _starting: dict[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = {}

    _reapers: set[asyncio.Future[int]] = set()

    def __init__(self, socket_path: str | os.PathLike[str], *, autostart: bool = True,
                 python: str = sys.executable, timeout: float = 60) -> None:
        self.socket_path = str(socket_path)
        self.autostart = autostart
        self.python = python
        self.timeout = timeout

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._send(request)
        except (FileNotFoundError, ConnectionRefusedError):
            # Nothing listens there. (A path or server that failed the checks raised
            # TunnelError instead: no tunnel process is started in a place others control.)
            if not self.autostart:
                raise TunnelError(f"the tunnel process does not answer on {self.socket_path}; "
                                  "start it with `pw-spawner tunnel --socket ...`") from None
        await self.start_process()
        return await self._send(request)

    def check_path(self) -> None:
        """TunnelError unless the socket's directory and the socket (if there) are ours alone.

        A missing directory or socket passes: there is nothing to connect to yet, and
        :meth:`start_process` makes the directory 0700 and checks it again.
        """
        directory = os.path.dirname(os.path.abspath(self.socket_path))
        uid = os.geteuid()
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            return
        wrong = []
        if not stat.S_ISDIR(info.st_mode):
            wrong.append("not a directory")
        if info.st_mode & 0o077:
            wrong.append(f"mode {stat.S_IMODE(info.st_mode):04o}")
        if info.st_uid != uid:
            wrong.append(f"owned by {_account(info.st_uid)}")
        if wrong:
            raise TunnelError(f"{directory} is {' and '.join(wrong)}; it must be 0700 and owned by "
                              f"{_account(uid)}")
        try:
            info = os.stat(self.socket_path)
        except FileNotFoundError:
            return
        if info.st_uid != uid:
            raise TunnelError(f"{self.socket_path} is owned by {_account(info.st_uid)}, not by "
                              f"{_account(uid)}")

    def _check_peer(self, writer: asyncio.StreamWriter) -> None:
        """TunnelError unless the process at the other end runs as our uid (the kernel says so)."""
        sock = writer.get_extra_info("socket")
        if sock is None or not hasattr(socket, "SO_PEERCRED"):
            raise TunnelError(f"cannot learn who serves {self.socket_path} (no SO_PEERCRED here)")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.geteuid():
            raise TunnelError(f"{self.socket_path} is served by process {pid} of {_account(uid)}, "
                              f"not by {_account(os.geteuid())}")

    async def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        self.check_path()
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=MAX_REQUEST)
        try:
            self._check_peer(writer)  # before a byte of the request leaves
            writer.write(protocol.encode(request))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        except asyncio.TimeoutError:
            raise TunnelError(f"the tunnel process did not answer within {self.timeout:g} s") from None
        finally:
            writer.close()
        if not line:
            raise TunnelError("the tunnel process closed the connection without an answer")
        return _checked(protocol.decode(line))

    async def start_process(self, wait: float = 15) -> None:
        """Start ``pw-spawner tunnel`` detached (its own session: it outlives this hub)."""
        locks = loop_local(self._starting, dict)
        lock = locks.setdefault(self.socket_path, asyncio.Lock())
        async with lock:
            if await self._answers():
                return
            directory = Path(self.socket_path).parent
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # One made by someone else, or left open to others, is refused, not taken over.
            self.check_path()
            log_path = f"{self.socket_path}.log"
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                process = await asyncio.create_subprocess_exec(
                    self.python, "-m", "pw_spawner.remote.tunnel", "--socket", self.socket_path,
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                    start_new_session=True, cwd="/")
            finally:
                os.close(log_fd)
            # Reaped by this loop if it exits while the hub runs (no zombie); it is meant to
            # outlive the hub, and then init reaps it.
            waiter = asyncio.ensure_future(process.wait())
            self._reapers.add(waiter)
            waiter.add_done_callback(self._reapers.discard)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if await self._answers():
                    return
                await asyncio.sleep(0.1)
            raise TunnelError(f"the tunnel process did not come up on {self.socket_path} "
                              f"within {wait:g} s (its log: {log_path})")

    async def _answers(self) -> bool:
        try:
            await self._send(protocol.ping())
        except (OSError, TunnelError, ValueError):
            return False
        return True


def _account(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    if not answer.get("ok"):
        raise TunnelError(str(answer.get("error") or "the tunnel request failed"))
    return answer

"""The tunnel process: every session's SSH port forward, kept off the hub's event loop.

Every byte between a user's browser and an app on a compute node crosses an SSH forward. Run in
the hub, all of that traffic would share the hub's one event loop, so the forwards live here, in a
process of their own (``pw-spawner tunnel``, one per hub host), which spawners drive through a small
JSON-lines API on a unix socket of mode 0600 (see :mod:`pw_spawner.remote.tunnel_client`).

It holds one asyncssh connection per (login node, SSH user) — the pool of
:mod:`pw_spawner.remote.ssh` — and on it:

- local forwards ``127.0.0.1:<local port>`` on the hub host to ``<node>:<port>`` as the login node
  sees it (what configurable-http-proxy routes a user's server to), and
- remote forwards of the hub's API to the login node, for jobs that cannot reach the hub directly.

When a connection drops it reconnects with backoff and binds every forward again on the same ports,
so the proxy's routes stay valid. The process is started detached from the hub (its own session),
so a hub restart or upgrade leaves running sessions connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from . import tunnel_protocol as protocol
from .executor import ExecutorError
from .ssh_pool import SSHOptions, SSHTarget, close_all, connection, connections_opened, open_connections
from .tunnel_protocol import MAX_REQUEST, Op

log = logging.getLogger(__name__)


class TunnelError(RuntimeError):
    """A forward could not be opened; the message is fit to show the user."""


@dataclass
class Forward:
    """One forward and where it is bound; ``kind`` is ``local`` (to a node) or ``remote`` (hub API).

    local:  hub host 127.0.0.1:``local_port`` -> ``remote_host``:``remote_port`` seen from the login node
    remote: login node ``remote_host``:``remote_port`` -> hub host 127.0.0.1:``local_port``
    """

    key: str
    kind: str
    target: SSHTarget
    remote_host: str
    remote_port: int
    local_port: int
    listener: asyncssh.SSHListener | None = field(default=None, repr=False)
    error: str = ""

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "target": asdict(self.target),
                "remote_host": self.remote_host, "remote_port": self.remote_port,
                "local_port": self.local_port, "up": self.listener is not None, "error": self.error}

    def same_route(self, kind: str, target: SSHTarget, remote_host: str, remote_port: int) -> bool:
        return (self.kind, self.target, self.remote_host, self.remote_port) == (
            kind, target, remote_host, remote_port)


class TunnelService:
    """The forwards and the watchers that bind them again after a connection drops.

    Usable in any process: the tunnel process serves it on a unix socket; tests and the
    in-process mode (``tunnel_mode = "inline"``) call it directly.
    """

    def __init__(self, options: SSHOptions | None = None, connect_timeout: float = 20) -> None:
        self.options = options or SSHOptions()
        self.connect_timeout = connect_timeout
        self.forwards: dict[str, Forward] = {}
        self._watched: dict[SSHTarget, asyncssh.SSHClientConnection] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        # One lock a login node: a slow or silent one must not hold up the others' forwards.
        self._locks: dict[SSHTarget, asyncio.Lock] = {}

    # ------------------------------------------------------------------ requests

    async def open_local(self, key: str, target: SSHTarget, remote_host: str, remote_port: int,
                         local_port: int = 0) -> int:
        """Forward 127.0.0.1:``local_port`` (0: any free port) to ``remote_host:remote_port``.

        Idempotent per ``key``: the same route again returns the port it has; a new route for
        the key replaces the old one, on the old local port unless another is asked for.
        """
        forward = await self._open_forward(key, "local", target, remote_host, remote_port, local_port)
        return forward.local_port

    async def open_remote(self, key: str, target: SSHTarget, bind_host: str, bind_port: int,
                          local_port: int) -> int:
        """Forward ``bind_host:bind_port`` on the login node to 127.0.0.1:``local_port`` here.

        Returns the port bound on the login node (``bind_port``, or the one sshd picked for 0).
        A ``bind_host`` other than loopback needs ``GatewayPorts clientspecified`` in its sshd.
        """
        forward = await self._open_forward(key, "remote", target, bind_host, bind_port, local_port)
        return forward.remote_port

    def _lock(self, target: SSHTarget) -> asyncio.Lock:
        if target not in self._locks:
            self._locks[target] = asyncio.Lock()
        return self._locks[target]

    def _up(self, key: str, kind: str, target: SSHTarget, remote_host: str,
            remote_port: int) -> Forward | None:
        """The forward ``key`` if it is up on this very route (a hub's poll after its restart)."""
        old = self.forwards.get(key)
        if old is not None and old.same_route(kind, target, remote_host, remote_port) \
                and old.listener is not None:
            return old
        return None

    async def _open_forward(self, key: str, kind: str, target: SSHTarget, remote_host: str,
                            remote_port: int, local_port: int) -> Forward:
        if up := self._up(key, kind, target, remote_host, remote_port):
            return up
        old = self.forwards.get(key)
        if old is not None and old.target != target:
            await self.close(key)  # moves to another login node: under that node's lock
        # Connecting happens outside the lock (the pool makes one attempt per target at a time).
        try:
            conn = await connection(target, self.options, self.connect_timeout)
        except ExecutorError as exc:
            raise TunnelError(str(exc)) from None
        async with self._lock(target):
            if up := self._up(key, kind, target, remote_host, remote_port):
                return up  # opened meanwhile by a request that held the lock
            old = self.forwards.get(key)
            if old is not None:
                await self._unbind(old)
                if kind == "local" and not local_port:
                    local_port = old.local_port
                if kind == "remote" and not remote_port:
                    remote_port = old.remote_port
            forward = Forward(key, kind, target, remote_host, int(remote_port), int(local_port))
            await self._bind(forward, conn)
            if forward.listener is None:
                self.forwards.pop(key, None)
                raise TunnelError(forward.error)
            self.forwards[key] = forward
            self._watch(target, conn)
            return forward

    async def close(self, key: str) -> bool:
        """Close the forward ``key``; False when there was none."""
        forward = self.forwards.get(key)
        if forward is None:
            return False
        async with self._lock(forward.target):
            if self.forwards.get(key) is not forward:
                return await self.close(key)  # replaced meanwhile: close what is there now
            del self.forwards[key]
            await self._unbind(forward)
            return True

    def describe(self) -> list[dict[str, Any]]:
        return [forward.describe() for forward in self.forwards.values()]

    def stats(self) -> dict[str, Any]:
        return {"forwards": len(self.forwards),
                "forwards_up": sum(f.listener is not None for f in self.forwards.values()),
                "connections_open": open_connections(), "connections_opened": connections_opened(),
                "pid": os.getpid()}

    async def shutdown(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        for forward in list(self.forwards.values()):
            await self._unbind(forward)
        self.forwards.clear()
        await close_all()

    # ------------------------------------------------------------------ binding

    async def _bind(self, forward: Forward, conn: asyncssh.SSHClientConnection) -> None:
        where = forward.target.where
        try:
            if forward.kind == "local":
                listener = await conn.forward_local_port(
                    "127.0.0.1", forward.local_port, forward.remote_host, forward.remote_port)
                forward.local_port = listener.get_port()
            else:
                listener = await conn.forward_remote_port(
                    forward.remote_host, forward.remote_port, "127.0.0.1", forward.local_port)
                forward.remote_port = listener.get_port()
                if not await self._reachable_on_login_node(conn, forward):
                    listener.close()
                    forward.error = (
                        f"{where}: sshd did not listen on {forward.remote_host}:{forward.remote_port} "
                        "(it bound loopback only: binding beyond loopback needs GatewayPorts "
                        "clientspecified in the login node's sshd_config)")
                    log.warning("forward %s: %s", forward.key, forward.error)
                    return
        except asyncssh.ChannelListenError as exc:
            forward.error = (f"{where}: sshd refused to listen on {forward.remote_host}:"
                             f"{forward.remote_port} ({exc}; binding beyond loopback needs "
                             "GatewayPorts clientspecified)")
        except OSError as exc:
            forward.error = f"cannot listen on 127.0.0.1:{forward.local_port}: {exc.strerror or exc}"
        except asyncssh.Error as exc:
            forward.error = f"{where}: {exc.reason}"
        else:
            forward.listener, forward.error = listener, ""
            log.info("forward %s up: %s", forward.key, forward.describe())
            return
        log.warning("forward %s: %s", forward.key, forward.error)

    @staticmethod
    async def _reachable_on_login_node(conn: asyncssh.SSHClientConnection, forward: Forward) -> bool:
        """Whether a reverse forward really listens where jobs will connect.

        OpenSSH with ``GatewayPorts no`` (its default) accepts a request to listen on any address
        and silently binds loopback instead, so jobs would get a hub API URL nobody answers on.
        A connection from the login node itself to that address tells.
        """
        if forward.remote_host in ("127.0.0.1", "localhost", "::1"):
            return True
        try:
            _, writer = await asyncio.wait_for(
                conn.open_connection(forward.remote_host, forward.remote_port), 10)
        except (asyncssh.Error, OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def _unbind(self, forward: Forward) -> None:
        listener, forward.listener = forward.listener, None
        if listener is not None:
            listener.close()
            with contextlib.suppress(Exception):
                await listener.wait_closed()

    def _watch(self, target: SSHTarget, conn: asyncssh.SSHClientConnection) -> None:
        if self._watched.get(target) is conn:
            return
        self._watched[target] = conn
        task = asyncio.ensure_future(self._rebind_after_loss(target, conn))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _rebind_after_loss(self, target: SSHTarget, conn: asyncssh.SSHClientConnection) -> None:
        await conn.wait_closed()
        if self._watched.get(target) is conn:
            del self._watched[target]
        # asyncssh closed this connection's listeners with it; the ports are free again.
        for forward in self.forwards.values():
            if forward.target == target:
                forward.listener, forward.error = None, "SSH connection lost; reconnecting"
        delay = self.options.reconnect_delay
        while any(f.target == target and f.listener is None for f in self.forwards.values()):
            try:
                new = await connection(target, self.options, self.connect_timeout)
            except ExecutorError as exc:
                log.warning("forwards over %s wait for the connection: %s", target.where, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.reconnect_delay_max)
                continue
            async with self._lock(target):
                for forward in list(self.forwards.values()):
                    if forward.target == target and forward.listener is None:
                        await self._bind(forward, new)
                if new.is_closed():
                    continue
                self._watch(target, new)
            if any(f.target == target and f.listener is None for f in self.forwards.values()):
                # A port another process took meanwhile: try again later rather than spin.
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.reconnect_delay_max)
            else:
                return


# ---------------------------------------------------------------------------------- API server

async def handle_request(service: TunnelService, request: dict[str, Any]) -> dict[str, Any]:
    """One API request -> its answer; errors are answers too (``ok: false``)."""
    try:
        op = Op(request.get("op"))
    except ValueError:
        return protocol.failure(f"unknown op {request.get('op')!r}")
    try:
        if op is Op.PING:
            return {"ok": True, **service.stats()}
        if op is Op.LIST:
            return {"ok": True, "forwards": service.describe()}
        if op is Op.OPEN:
            port = await service.open_local(str(request["key"]), protocol.target_from(request["target"]),
                                            str(request["remote_host"]), int(request["remote_port"]),
                                            int(request.get("local_port") or 0))
            return {"ok": True, "local_port": port}
        if op is Op.REVERSE:
            port = await service.open_remote(str(request["key"]), protocol.target_from(request["target"]),
                                             str(request["bind_host"]), int(request.get("bind_port") or 0),
                                             int(request["local_port"]))
            return {"ok": True, "remote_port": port}
        return {"ok": True, "closed": await service.close(str(request["key"]))}  # Op.CLOSE
    except TunnelError as exc:
        return protocol.failure(str(exc))
    except (KeyError, ValueError, TypeError) as exc:
        return protocol.failure(f"bad request: {exc!r}")


class TunnelServer:
    """Serves a :class:`TunnelService` on a unix socket that only its own user can use."""

    def __init__(self, socket_path: str | os.PathLike[str], service: TunnelService | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.service = service or TunnelService()
        self._server: asyncio.AbstractServer | None = None
        self._lock_file: int | None = None

    async def start(self) -> None:
        directory = self.socket_path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.stat().st_uid != os.geteuid() or directory.stat().st_mode & 0o077:
            raise TunnelError(f"{directory} must belong to this user and be closed to others (0700)")
        # One tunnel process a socket: a second one (two hubs starting it at once) gives way.
        lock = os.open(str(self.socket_path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise TunnelError(f"another tunnel process serves {self.socket_path}") from None
        self._lock_file = lock
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a process that died; we hold the lock
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, str(self.socket_path),
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        log.info("tunnel process %d serving %s", os.getpid(), self.socket_path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.shutdown()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = protocol.decode(line)
                except ValueError as exc:
                    answer = protocol.failure(f"bad request: {exc}")
                else:
                    answer = await handle_request(self.service, request)
                writer.write(protocol.encode(answer))
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


async def serve(socket_path: str, stop: asyncio.Event | None = None) -> None:
    """Run the tunnel process until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = TunnelServer(socket_path)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pw-spawner tunnel", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the API socket's path (its directory: 0700)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s pw-tunnel: %(message)s")
    try:
        asyncio.run(serve(args.socket))
    except TunnelError as exc:
        print(f"pw-spawner tunnel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

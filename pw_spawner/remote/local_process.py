"""A command on the hub host, started off the event loop and followed on it.

asyncio's own subprocesses fork in the event loop's thread, and a fork returns only once the child
has run ``exec``: on a host whose CPUs are busy (jobs of the local target share the hub's host)
that wait was measured at up to 4.5 s for a ``true`` among 40 busy processes, during which the hub
answered nobody. Here the fork happens in a worker thread (``subprocess.Popen``, which releases the
interpreter lock while it waits), and the loop takes over the pipes and learns of the exit through a
pidfd, so nothing but reading output happens on the loop.

:class:`LocalProcess` feeds stdin, hands each chunk of stdout and stderr to a :class:`Sink` as it
arrives (which may stop it being kept, see the executor's output cap), and says when the command
has exited. The command leads a session and process group of its own, so :meth:`signal_group`
reaches whatever it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol


class Sink(Protocol):
    """Where a command's output and end go (the executor's capture)."""

    def pipe_data_received(self, fd: int, data: bytes) -> None: ...

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None: ...

    def process_exited(self) -> None: ...


class _Pipe(asyncio.Protocol):
    def __init__(self, sink: Sink, fd: int) -> None:
        self.sink, self.fd = sink, fd

    def data_received(self, data: bytes) -> None:
        self.sink.pipe_data_received(self.fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.pipe_connection_lost(self.fd, exc)


class LocalProcess:
    """A running command; see the module docstring. Make one with :meth:`start`."""

    def __init__(self, popen: subprocess.Popen[bytes], sink: Sink) -> None:
        self.popen, self.sink = popen, sink
        self.pid = popen.pid
        self._transports: list[asyncio.BaseTransport] = []
        self._pidfd = -1
        self._exited = False

    @classmethod
    async def start(cls, argv: Sequence[str], sink: Sink, *, env: Mapping[str, str],
                    input: bytes | None) -> LocalProcess:
        """Start ``argv``; OSError when it cannot be started (as from Popen)."""
        starting = asyncio.ensure_future(asyncio.to_thread(
            subprocess.Popen, list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), start_new_session=True))
        try:
            popen = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while the thread forks: the command still starts, and must not be left.
            with contextlib.suppress(Exception):
                orphan = await starting
                _kill_group(orphan.pid)
                await asyncio.to_thread(orphan.wait)
                for pipe in (orphan.stdin, orphan.stdout, orphan.stderr):
                    if pipe is not None:
                        pipe.close()
            raise
        process = cls(popen, sink)
        await process._follow(input)
        return process

    async def _follow(self, input: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        for fd, pipe in ((1, self.popen.stdout), (2, self.popen.stderr)):
            transport, _ = await loop.connect_read_pipe(functools.partial(_Pipe, self.sink, fd), pipe)
            self._transports.append(transport)
        if self.popen.stdin is not None:
            stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, self.popen.stdin)
            self._transports.append(stdin)
            # Buffered by the transport and fed as the command reads; close() sends EOF after the
            # last byte. A command that exits without reading is no error.
            if input:
                stdin.write(input)
            stdin.close()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            # No pidfd (an old kernel): a thread waits for the exit instead.
            threading.Thread(target=self._wait_in_thread, args=(loop,), daemon=True).start()
        else:
            loop.add_reader(self._pidfd, self._on_exit)

    def _wait_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        self.popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(self._on_exit)

    def _on_exit(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if self._exited:
            return
        self._exited = True
        self.popen.poll()  # reaps it: the pidfd said it has exited
        self.sink.process_exited()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def signal_group(self, sig: signal.Signals) -> None:
        """``sig`` to the command's process group (gone already, or of an account out of reach: nothing)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def close(self) -> None:
        """Close the pipes (whoever still holds the other end no longer keeps anyone waiting)."""
        for transport in self._transports:
            transport.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)

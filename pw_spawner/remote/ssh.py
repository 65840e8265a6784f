"""Running commands on a cluster's login node over SSH (asyncssh), on connections the hub shares.

:class:`SSHExecutor` is the remote twin of :class:`~pw_spawner.remote.executor.LocalExecutor`:
schedulers hand it argv lists and it runs them on the login node, on the pooled connection of
its :class:`SSHTarget` (:mod:`.ssh_pool`: one per host, port, SSH user and key; host keys always
checked). The hub's environment is never sent; an executor's small ``env`` mapping travels on the
command line (``env NAME=value ...``) because sshd's ``AcceptEnv`` is usually off.

Command lines are visible to other users of the login node (``ps``): secrets go through ``input``.
The remote account's shell must be a POSIX shell (sh, bash, zsh, ksh); csh-family login shells
parse single quotes differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence

import asyncssh

from .executor import MAX_OUTPUT, CommandResult, Executor, ExecutorError

# The pool's names, also importable from here as before the pool had a module of its own.
from .ssh_pool import (
    PooledConnection,
    SSHOptions,
    SSHTarget,
    close_all,
    connection,
    connections_opened,
    loop_local,
    open_connections,
    pooled,
)

__all__ = [
    "SSHExecutor",
    "SSHOptions",
    "SSHTarget",
    "close_all",
    "connection",
    "connections_opened",
    "loop_local",
    "open_connections",
    "shell_command",
]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def shell_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The remote shell command line that runs ``argv`` with each word arriving literally.

    sshd hands the command to the account's login shell, so every word is quoted here, and only
    here. ``env`` becomes an ``env -- NAME=value`` prefix (values quoted like any other word).
    """
    words = [str(word) for word in argv]
    if not words:
        raise ValueError("an empty command")
    if any("\0" in word for word in words):
        raise ValueError("a command argument holds a NUL byte")
    if env:
        if "=" in words[0]:
            # env(1) would read it as one more assignment, not as the command.
            raise ValueError(f"the command name {words[0]!r} holds '=' and cannot follow env")
        words = ["env", "--", *(f"{name}={value}" for name, value in env.items()), *words]
    return shlex.join(words)


# -- the executor ---------------------------------------------------------------------------------

class SSHExecutor(Executor):
    """Commands on a login node over a pooled asyncssh connection.

    ``known_hosts`` is required: there is no way to turn host key checking off. Give ``key_file``
    (a private key without passphrase) or ``agent_path`` (an ssh-agent socket), or both. ``env``
    sets a few variables for every command (e.g. ``SLURM_CONF``); it is not for secrets.
    """

    def __init__(self, host: str, *, username: str, known_hosts: str | os.PathLike[str],
                 port: int = 22, key_file: str | os.PathLike[str] | None = None,
                 agent_path: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, options: SSHOptions | None = None) -> None:
        if not host or not username:
            raise ValueError("an SSH executor needs a host and a user name")
        if not isinstance(known_hosts, (str, os.PathLike)) or not os.fspath(known_hosts):
            raise ValueError("a known_hosts file is required (host keys are always verified)")
        if key_file is None and agent_path is None:
            raise ValueError("an SSH executor needs a key_file or an agent_path")
        for name in env or {}:
            if not _ENV_NAME.match(name):
                raise ValueError(f"not an environment variable name: {name!r}")

        def absolute(path: str | os.PathLike[str] | None) -> str | None:
            return os.path.abspath(os.fspath(path)) if path is not None else None

        self.target = SSHTarget(host=host, port=int(port), username=username,
                                known_hosts=absolute(known_hosts) or "", key_file=absolute(key_file),
                                agent_path=absolute(agent_path))
        self.env = dict(env or {})
        self.options = options or SSHOptions()
        self._home: str | None = None

    def __repr__(self) -> str:
        return f"SSHExecutor({self.target.username}@{self.target.where})"

    @classmethod
    def for_target(cls, target: SSHTarget, env: Mapping[str, str] | None = None) -> SSHExecutor:
        """An executor that logs in as ``target`` says (host, port, account, keys, known_hosts)."""
        return cls(target.host, username=target.username, port=target.port,
                   known_hosts=target.known_hosts, key_file=target.key_file,
                   agent_path=target.agent_path, env=env)

    @classmethod
    async def close_all(cls) -> None:
        """Close every pooled connection of the running event loop (see :func:`close_all`)."""
        await close_all()

    def command_line(self, argv: Sequence[str]) -> str:
        """The shell command line :meth:`run` sends for ``argv`` (with this executor's env)."""
        return shell_command(argv, self.env)

    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float = 30, max_output: int = MAX_OUTPUT) -> CommandResult:
        """Run ``argv`` on the login node; a non-zero exit is a result, an SSH failure an error."""
        argv = tuple(str(word) for word in argv)
        return await self._execute(argv, self.command_line(argv), input, timeout, max_output)

    @property
    def account(self) -> str:
        return self.target.username

    async def home(self) -> str:
        if self._home is None:
            result = await self._execute(("printf", "%s", "$HOME"), 'printf %s "$HOME"', None, 30)
            if not result.ok or not result.stdout.startswith("/"):
                raise ExecutorError(f"{self.target.where}: cannot learn the home directory of "
                                    f"{self.target.username}: {result.message()}")
            self._home = result.stdout
        return self._home

    async def _execute(self, argv: tuple[str, ...], command: str, input: str | None,
                       timeout: float, max_output: int = MAX_OUTPUT) -> CommandResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        entry = pooled(self.target, self.options)
        shown = shlex.join(argv[:3])
        where = self.target.where

        def late() -> ExecutorError:
            return ExecutorError(f"{where}: {shown} did not finish within {timeout:g} s")

        try:
            await asyncio.wait_for(entry.sessions.acquire(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise late() from None
        try:
            process = await self._start(entry, command, deadline, late)
            finished = False
            try:
                # Always end stdin: a command that reads it must see EOF, not wait for more.
                if input:
                    process.stdin.write(input.encode())
                process.stdin.write_eof()
                stdout, stderr = await asyncio.wait_for(_collect(process, max_output),
                                                        max(deadline - loop.time(), 0))
                finished = True
            except asyncio.TimeoutError:
                raise late() from None
            except _TooMuchOutput as exc:
                raise ExecutorError(f"{where}: {shown} printed more than {max_output} bytes "
                                    f"on {exc.stream}") from None
            except (asyncssh.Error, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
                raise ExecutorError(f"{where}: connection lost while running {shown}: {reason}") from None
            finally:
                if not finished:
                    # Timed out, printing too much, cancelled or cut off: ask sshd to kill the
                    # command, then drop the channel (and whatever it still had buffered).
                    if process.returncode is None:
                        with contextlib.suppress(OSError):
                            process.kill()
                    process.close()
        finally:
            entry.sessions.release()
        if process.returncode is None:
            raise ExecutorError(f"{where}: connection lost while running {shown} (no exit status)")
        return CommandResult(argv, process.returncode, _text(stdout), _text(stderr))

    async def _start(self, entry: PooledConnection, command: str, deadline: float,
                     late: Callable[[], ExecutorError]) -> asyncssh.SSHClientProcess[bytes]:
        loop = asyncio.get_running_loop()
        reconnected = False
        pause = 0.05
        while True:
            conn = await entry.connection(deadline)
            try:
                return await asyncio.wait_for(
                    # Bytes, decoded at the end: the output cap counts bytes, not characters.
                    conn.create_process(command, encoding=None),
                    max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise late() from None
            except asyncssh.ChannelOpenError as exc:
                if entry.alive(conn):
                    # On a live connection this is nearly always sshd's MaxSessions (OpenSSH says
                    # just "open failed"), full although this process keeps within it: a command
                    # that timed out can still run (sshd ignores signal requests in a root login)
                    # and holds its slot until it ends. Wait for a slot rather than open a second
                    # connection.
                    if loop.time() + pause >= deadline:
                        raise ExecutorError(f"{self.target.where}: no free session on the connection "
                                            f"(sshd MaxSessions reached?): {exc.reason}") from None
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
                    continue
                error: Exception = exc
            except (asyncssh.Error, OSError) as exc:
                error = exc
            if not reconnected and not entry.alive(conn):
                # The pooled connection had died unnoticed (sshd restarted, network cut); the
                # command never started, so it is safe to run it on a fresh connection.
                reconnected = True
                continue
            reason = getattr(error, "reason", None) or str(error) or type(error).__name__
            raise ExecutorError(f"{self.target.where}: cannot start a command: {reason}")


class _TooMuchOutput(Exception):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.stream = stream


async def _collect(process: asyncssh.SSHClientProcess[bytes], cap: int) -> tuple[bytes, bytes]:
    """A command's stdout and stderr, read as they come, until it has exited and closed them.

    Neither is kept past ``cap`` bytes: _TooMuchOutput instead. What the channel buffers besides
    is bounded by its receive window (asyncssh stops reading when that much is unread).
    """

    async def drain(reader: asyncssh.SSHReader[bytes], stream: str) -> bytes:
        data = bytearray()
        while chunk := await reader.read(_READ_SIZE):
            if len(data) + len(chunk) > cap:
                raise _TooMuchOutput(stream)
            data += chunk
        return bytes(data)

    readers = [asyncio.ensure_future(drain(process.stdout, "stdout")),
               asyncio.ensure_future(drain(process.stderr, "stderr"))]
    try:
        stdout, stderr = await asyncio.gather(*readers)
    finally:
        for reader in readers:  # the other one, when one raised or the caller gave up
            reader.cancel()
    # EOF on both comes before the exit status: wait for the channel's close, which follows it.
    await process.wait_closed()
    return stdout, stderr


_READ_SIZE = 65536


def _text(data: bytes) -> str:
    return data.decode(errors="replace")

"""Running commands and reading files for the spawner, without blocking the hub's event loop.

:class:`LocalExecutor` runs argv lists with :mod:`asyncio` subprocesses on the hub host, optionally
behind a prefix such as ``sudo -u {username} --`` (batchspawner's ``exec_prefix``). Commands get a
small allow-listed environment, never the hub's own (which holds the proxy's and hub's secrets).

Whatever a command prints, and whatever a job leaves in its directory, may be the work of a
hostile cluster user: commands are stopped (their whole process group) when they run too long or
print too much, and :meth:`Executor.read_file` reads a job's file through a small program that
refuses anything but a small regular file of the job's own account.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import pwd
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import file_reader
from .local_process import LocalProcess

__all__ = [
    "MAX_OUTPUT",
    "PASSED_ENV",
    "READ_FILE_SNIPPET",
    "CommandResult",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "UntrustedFileError",
]

#: Variables every command gets from the hub's environment, with those each scheduler's client
#: needs (:func:`passed_environment`); everything else stays behind.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


def passed_environment() -> tuple[str, ...]:
    """:data:`PASSED_ENV` and every registered scheduler's ``client_environment`` (SLURM_CONF...)."""
    try:
        from ..schedulers import client_environment  # here: the schedulers import this module
    except ImportError:  # this module on its own, outside pw_spawner (standard library only)
        return PASSED_ENV
    return (*PASSED_ENV, *client_environment())

#: How much a command may print on stdout, and on stderr, before it is stopped. squeue's output
#: for 10,000 jobs is about 1 MB; a command printing 8 times that is not a scheduler answering.
MAX_OUTPUT = 8 * 1024 * 1024

#: Between SIGTERM and SIGKILL to a command's process group. SIGTERM comes first because sudo
#: relays it to the command it runs as another user (which the hub may not signal itself), and
#: SIGKILL, which sudo cannot catch, would leave that command running.
TERM_GRACE = 0.5

#: How long to wait, after SIGKILL, for the command's exit to be reported before giving up on it.
KILL_WAIT = 0.3

#: How many bytes of a job's file :meth:`Executor.read_file` takes by default (service.json is <1 KiB).
MAX_FILE = 65536

#: The program :meth:`Executor.read_file` runs as ``python3 -I -S -c READ_FILE_SNIPPET PATH MAX``, as
#: the job's account, on the host that has the file: the source of :mod:`.file_reader`.
READ_FILE_SNIPPET = Path(file_reader.__file__).read_text()
READ_MISSING, READ_REFUSED, READ_FAILED = file_reader.MISSING, file_reader.REFUSED, file_reader.FAILED


class ExecutorError(RuntimeError):
    """A command could not be run at all (not found, timed out, connection lost)."""


class UntrustedFileError(ExecutorError):
    """A job-written file the hub refuses to read: not a small regular file of the job's account."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        """What the command said, for an error shown to the user (stderr first)."""
        text = (self.stderr.strip() or self.stdout.strip())
        return text[-2000:] if text else f"{self.argv[0]} exited with status {self.returncode}"


class Executor(abc.ABC):
    """Runs commands where jobs are managed; the spawner's only way to touch a cluster."""

    @abc.abstractmethod
    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float = 30, max_output: int = MAX_OUTPUT) -> CommandResult:
        """Run ``argv``; ``input`` goes to its stdin (how scripts and secrets travel), then EOF.

        ExecutorError when it cannot start, runs longer than ``timeout`` seconds, or prints more
        than ``max_output`` bytes on stdout or on stderr; the command is stopped in those cases.
        """

    @abc.abstractmethod
    async def home(self) -> str:
        """The home directory of the account jobs run as."""

    @property
    @abc.abstractmethod
    def account(self) -> str:
        """The account commands run as (whose jobs a leftover search may cancel)."""

    @property
    def in_hub_process(self) -> bool:
        """Whether commands would run as the hub's own account on the hub host.

        Work that a standard-library helper would do there (reading a job's file, the local
        runner's status) may then run in a thread of the hub instead, costing no command: a follow
        loop may read often, and a poll costs no process start.
        """
        return False

    async def remove_file(self, path: str) -> None:
        """Remove ``path`` if it exists (``rm -f``); ExecutorError when that fails."""
        result = await self.run(["rm", "-f", "--", path])
        if not result.ok:
            raise ExecutorError(f"cannot remove {path}: {result.message()}")

    async def read_file(self, path: str, *, max_bytes: int = MAX_FILE,
                        timeout: float = 15) -> str | None:
        """A small file a job wrote, or None when it does not exist (yet).

        It is read by :data:`READ_FILE_SNIPPET`, run through this executor: as the account the job
        runs as, which must own the file. UntrustedFileError when the file is not a regular file of
        that account of at most ``max_bytes`` bytes; ExecutorError when it cannot be read at all.
        """
        result = await self.run(["python3", "-I", "-S", "-c", READ_FILE_SNIPPET, path, str(max_bytes)],
                                timeout=timeout, max_output=max_bytes + 4096)
        if result.returncode == 0:
            return result.stdout
        if result.returncode == READ_MISSING:
            return None
        if result.returncode == READ_REFUSED and result.stderr.strip():
            raise UntrustedFileError(path, result.stderr.strip().splitlines()[-1][:200])
        raise ExecutorError(f"cannot read {path}: {result.message()}")


class _Capture:
    """A command's stdout and stderr, each kept up to a cap, and when the command is done.

    Data beyond the cap is never stored: the first chunk that would pass it marks the stream as
    overflowed and the caller ends the command.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int) -> None:
        self.cap = cap
        self.output = {1: bytearray(), 2: bytearray()}
        self.open_pipes = {1, 2}
        self.overflowed: int | None = None
        #: Set when the command has exited and closed both pipes, or overflowed.
        self.finished: asyncio.Future[None] = loop.create_future()
        #: Set when the command itself has exited (its pipes may still be held by others).
        self.exited: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.overflowed is not None:
            return
        buffer = self.output[fd]
        if len(buffer) + len(data) > self.cap:
            self.overflowed = fd
            self._settle()
            return
        buffer += data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.open_pipes.discard(fd)
        if self.exited.done() and not self.open_pipes:
            self._settle()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        if not self.open_pipes:
            self._settle()

    def _settle(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


#: Cleanups of commands being ended, kept referenced until they finish (see _end_group).
_ENDING: set[asyncio.Future[None]] = set()


async def _end_group(process: LocalProcess, capture: _Capture) -> None:
    """Stop a command and everything it started in its session: SIGTERM, a grace, SIGKILL.

    The command leads a process group of its own (a session), so killpg reaches what it forked
    too, e.g. a background child that holds its stdout. The pipes are closed at the end so that
    nothing still holding them (a process that left the group, a command sudo runs as an account
    the hub cannot signal) can keep the caller waiting.
    """
    try:
        if not capture.exited.done():
            process.signal_group(signal.SIGTERM)
            await asyncio.wait({capture.exited}, timeout=TERM_GRACE)
        # Even when the leader is gone, what it forked may still be in the group.
        process.signal_group(signal.SIGKILL)
    finally:
        process.close()
    if not capture.exited.done():
        await asyncio.wait({capture.exited}, timeout=KILL_WAIT)


def _remove_if_there(path: str) -> None:
    # As rm -f: a path that cannot exist (a component is not a directory) is simply not there.
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)



class LocalExecutor(Executor):
    """Commands on the hub host, as the hub's user or behind a prefix like ``sudo -u alice --``."""

    def __init__(self, prefix: Sequence[str] = (), username: str | None = None,
                 env: Mapping[str, str] | None = None):
        self.prefix = tuple(prefix)
        self.username = username
        self.extra_env = dict(env or {})

    def _env(self) -> dict[str, str]:
        passed = passed_environment()
        env = {k: v for k, v in os.environ.items() if k in passed}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if not self.prefix:
            # Without sudo the command runs as the hub's user: let it keep that home.
            env["HOME"] = os.path.expanduser("~")
        env.update(self.extra_env)
        return env

    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float = 30, max_output: int = MAX_OUTPUT) -> CommandResult:
        full = (*self.prefix, *argv)
        shown = shlex.join(full[:3])
        loop = asyncio.get_running_loop()
        capture = _Capture(loop, max_output)
        try:
            # Output is counted as it arrives and never kept past the cap, and the end of the
            # command is known without waiting for pipes that something else may hold open.
            process = await LocalProcess.start(full, capture, env=self._env(),
                                               input=input.encode() if input is not None else None)
        except OSError as exc:
            raise ExecutorError(f"cannot run {shown}: {exc.strerror}") from exc
        try:
            # asyncio.wait, not wait_for: the future must stay uncancelled for _end_group.
            await asyncio.wait({capture.finished}, timeout=timeout)
            if not capture.finished.done():
                raise ExecutorError(f"{shown} did not answer within {timeout:g} s")
            if capture.overflowed is not None:
                stream = "stdout" if capture.overflowed == 1 else "stderr"
                raise ExecutorError(f"{shown} printed more than {max_output} bytes on {stream}")
        except BaseException:
            # Timed out, too much output, or cancelled: end the command before giving up on it.
            # The cleanup runs as a task of its own, so that a second cancellation of this call
            # cannot cut it short.
            ending = asyncio.ensure_future(_end_group(process, capture))
            _ENDING.add(ending)
            ending.add_done_callback(_ENDING.discard)
            await asyncio.shield(ending)
            raise
        finally:
            process.close()
        return CommandResult(tuple(full), process.returncode or 0, capture.output[1].decode(errors="replace"),
                             capture.output[2].decode(errors="replace"))

    @property
    def in_hub_process(self) -> bool:
        # Without a prefix the hub is the job's account: it opens the job's files itself, with the
        # same checks and the same permissions as the reader would have.
        return not self.prefix

    async def remove_file(self, path: str) -> None:
        if not self.in_hub_process:
            return await super().remove_file(path)
        try:
            await asyncio.to_thread(_remove_if_there, path)
        except OSError as exc:
            raise ExecutorError(f"cannot remove {path}: {exc.strerror}") from None

    async def read_file(self, path: str, *, max_bytes: int = MAX_FILE,
                        timeout: float = 15) -> str | None:
        """As :meth:`Executor.read_file`; in the hub's process (a thread) where it may open the file."""
        if not self.in_hub_process:
            return await super().read_file(path, max_bytes=max_bytes, timeout=timeout)
        try:
            data = await asyncio.wait_for(
                asyncio.to_thread(file_reader.read_limited, path, max_bytes, os.geteuid()), timeout)
        except file_reader.Missing:
            return None
        except file_reader.Refused as exc:
            raise UntrustedFileError(path, str(exc)) from None
        except (file_reader.Unreadable, asyncio.TimeoutError) as exc:
            raise ExecutorError(f"cannot read {path}: {exc or 'timed out'}") from None
        return data.decode(errors="replace")

    @property
    def account(self) -> str:
        if self.prefix and self.username:
            return self.username
        return pwd.getpwuid(os.getuid()).pw_name

    async def home(self) -> str:
        if self.prefix and self.username:
            try:
                return pwd.getpwnam(self.username).pw_dir
            except KeyError:
                raise ExecutorError(f"there is no account {self.username!r} on this host") from None
        return os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir

"""Running commands and reading files for the spawner, without blocking the hub's event loop.

:class:`LocalExecutor` runs argv lists with :mod:`asyncio` subprocesses on the hub host, optionally
behind a prefix such as ``sudo -u {username} --`` (batchspawner's ``exec_prefix``). Commands get a
small allow-listed environment, never the hub's own (which holds the proxy's and hub's secrets).
"""

from __future__ import annotations

import abc
import asyncio
import os
import pwd
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Variables a scheduler client needs from the hub's environment; everything else stays behind.
#: The PW_FAKE_* knobs are those of :mod:`pw_spawner.testing.fake_scheduler` (tests check the list).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SLURM_CONF", "PBS_CONF_FILE",
              "PBS_DEFAULT", "PBS_SERVER", "PW_FAKE_SCHED_DIR", "PW_FAKE_PBS_FLAVOR",
              "PW_FAKE_PARTITIONS", "PW_FAKE_QUEUES", "PW_FAKE_PENDING_SECONDS",
              "PW_FAKE_PENDING_REASON", "PW_FAKE_SUBMIT_FAIL", "PW_FAKE_QUERY_FAIL", "PW_FAKE_HOSTNAME",
              "PW_FAKE_MIN_JOB_AGE", "PW_FAKE_JOB_HISTORY", "PW_FAKE_PBS_SPOOL")


class ExecutorError(RuntimeError):
    """A command could not be run at all (not found, timed out, connection lost)."""


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
                  timeout: float = 30) -> CommandResult:
        """Run ``argv``; ``input`` goes to its stdin (how scripts and secrets travel)."""

    @abc.abstractmethod
    async def home(self) -> str:
        """The home directory of the account jobs run as."""

    @property
    @abc.abstractmethod
    def account(self) -> str:
        """The account commands run as (whose jobs a leftover search may cancel)."""

    async def read_file(self, path: str, timeout: float = 15) -> str | None:
        """A small text file's contents, or None when it does not exist (yet)."""
        # C locale: "No such file" is how a missing file is told, whatever the login node's language.
        result = await self.run(["env", "LC_ALL=C", "cat", "--", path], timeout=timeout)
        if result.ok:
            return result.stdout
        if "No such file" in result.stderr:
            return None
        raise ExecutorError(f"cannot read {path}: {result.message()}")


class LocalExecutor(Executor):
    """Commands on the hub host, as the hub's user or behind a prefix like ``sudo -u alice --``."""

    def __init__(self, prefix: Sequence[str] = (), username: str | None = None,
                 env: Mapping[str, str] | None = None):
        self.prefix = tuple(prefix)
        self.username = username
        self.extra_env = dict(env or {})

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if not self.prefix:
            # Without sudo the command runs as the hub's user: let it keep that home.
            env["HOME"] = os.path.expanduser("~")
        env.update(self.extra_env)
        return env

    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float = 30) -> CommandResult:
        full = (*self.prefix, *argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self._env(), start_new_session=True,
            )
        except OSError as exc:
            raise ExecutorError(f"cannot run {shlex.join(full[:3])}: {exc.strerror}") from exc
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ExecutorError(f"{shlex.join(full[:3])} did not answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        return CommandResult(tuple(full), proc.returncode or 0, out.decode(errors="replace"),
                             err.decode(errors="replace"))

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

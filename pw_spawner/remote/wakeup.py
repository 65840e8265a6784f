"""A wake-up line from a job on the hub host to the spawner that follows its start.

Where the hub is the job's own account on the same host (the local target without a prefix), the
spawner makes a named pipe, ``wake``, in the job directory when it begins to follow a start (its
first look at service.json comes after that), and holds it open until the start ends; the job's
helper writes a byte to it each time it has replaced service.json. The follow loop then reads
service.json the moment it changed, instead of at its next pause, and can pause longer in between.

What comes through the pipe is never used as data: a byte only says "look again", and the bytes are
drained and dropped. A job that writes there without end wakes the follow loop no more often than
:data:`MIN_GAP` allows; elsewhere (a cluster's shared file system, a prefix such as ``sudo -u``) there
is no pipe, the helper's write finds nothing to open, and the follow loop keeps its pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time

#: The shortest time between two wake-ups the follow loop acts on.
MIN_GAP = 0.01

#: The pipe's name in the job directory (the job's helper writes to the same name).
PIPE_NAME = "wake"


class Wakeup:
    """The hub's end of one job directory's wake-up pipe; see the module docstring."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd, self._loop = fd, loop
        self._woken = asyncio.Event()
        self._last = 0.0
        loop.add_reader(fd, self._drain)

    @classmethod
    async def open(cls, job_dir: str) -> Wakeup | None:
        """The pipe in ``job_dir``, made afresh; None where it cannot be made (then: plain pauses)."""
        try:
            fd = await asyncio.to_thread(_make_pipe, os.path.join(job_dir, PIPE_NAME))
        except OSError:
            return None
        return cls(fd, asyncio.get_running_loop())

    def _drain(self) -> None:
        # Level-triggered: read until empty, or the loop would call again at once.
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        except OSError:
            self.close()
        self._woken.set()

    async def wait(self, timeout: float) -> None:
        """Until the job writes to the pipe, or ``timeout`` seconds pass."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        # Python 3.11's wait_for can swallow a cancellation that arrives as the pipe is written;
        # the task still counts it (cancelling()), so it is raised here, not lost.
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise asyncio.CancelledError()
        self._woken.clear()
        gap = self._last + MIN_GAP - time.monotonic()
        if gap > 0:
            await asyncio.sleep(gap)
        self._last = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


def _make_pipe(path: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.mkfifo(path, 0o600)
    # Read and write: with a writer always there (this end), the pipe never reports end-of-file,
    # which a level-triggered reader would see again and again once a job's helper had closed it.
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISFIFO(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(f"{path} is not this account's named pipe")
    return fd

"""Tests of the hub's end of a job directory's wake-up pipe (pw_spawner.remote.wakeup.Wakeup): that
opening it makes a fresh 0600 named pipe called ``wake`` in the job directory (replacing a stale
file, pipe or symbolic link of that name without touching what a link pointed to) and gives up
quietly where the directory is missing; that ``wait`` returns soon after another thread or process
writes a byte and only after its timeout when nothing is written; that a job flooding the pipe
cannot wake the follow loop more often than ``MIN_GAP`` allows and a writer that closed its end does
not leave the loop spinning; that ``close`` is idempotent and really lets go of the pipe; and that
the job's own helper, writing its status, wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from pw_spawner.remote.wakeup import MIN_GAP, PIPE_NAME, Wakeup

HELPER_SOURCE = (Path(__file__).resolve().parent.parent / "pw_spawner" / "templates"
                 / "job_helper.py").read_text()

# A writer that floods the pipe, one byte a write, until it is killed (or 60 s pass).
FLOODER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK)
print("open", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    try:
        os.write(fd, b"x")
    except BlockingIOError:
        pass
"""

# A writer that writes one byte after a short pause, closes its end and exits.
ONE_BYTE = """
import os, sys, time
time.sleep(float(sys.argv[2]))
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK)
os.write(fd, b"x")
os.close(fd)
"""


def poke(path: str) -> None:
    """What the job's helper does: a byte to the pipe, opened without blocking."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"\n")
    finally:
        os.close(fd)


def fds_on(path: str) -> list[int]:
    """This process's descriptors open on ``path``."""
    found = []
    for entry in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{entry}") == path:
                found.append(int(entry))
    return found


@pytest.fixture
async def wakeup(tmp_path):
    """A Wakeup on tmp_path/job, closed after the test."""
    job_dir = tmp_path / "job"
    job_dir.mkdir(mode=0o700)
    opened = await Wakeup.open(str(job_dir))
    assert opened is not None
    try:
        yield opened, str(job_dir / PIPE_NAME)
    finally:
        opened.close()


@pytest.fixture
async def processes():
    """asyncio subprocesses a test starts; killed and reaped after it, whatever happened."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


def test_pipe_name_is_the_one_the_job_helper_writes_to():
    assert PIPE_NAME == "wake"
    assert 'os.path.join(directory, "wake")' in HELPER_SOURCE


async def test_open_makes_a_0600_named_pipe_in_the_job_dir(wakeup):
    _, path = wakeup
    info = os.lstat(path)
    assert stat.S_ISFIFO(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    # The hub holds it open: a writer that does not block finds a reader there.
    poke(path)


async def test_open_replaces_a_stale_regular_file(tmp_path):
    path = tmp_path / PIPE_NAME
    path.write_text("left by an earlier job\n")
    path.chmod(0o644)
    w = await Wakeup.open(str(tmp_path))
    assert w is not None
    try:
        info = os.lstat(path)
        assert stat.S_ISFIFO(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
    finally:
        w.close()


async def test_open_replaces_a_stale_named_pipe(tmp_path):
    path = tmp_path / PIPE_NAME
    os.mkfifo(path, 0o644)
    # Held open, so that its inode cannot be reused for the new pipe.
    old = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        w = await Wakeup.open(str(tmp_path))
        assert w is not None
        try:
            info = os.lstat(path)
            assert stat.S_ISFIFO(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o600
            assert info.st_ino != os.fstat(old).st_ino
            # A byte to the new pipe wakes the new Wakeup; the old pipe got nothing.
            poke(str(path))
            started = time.monotonic()
            await w.wait(60)
            assert time.monotonic() - started < 30
            with pytest.raises(BlockingIOError):
                os.read(old, 10)
        finally:
            w.close()
    finally:
        os.close(old)


async def test_open_replaces_a_symlink_and_leaves_its_target_alone(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("not the hub's\n")
    target.chmod(0o644)
    (job_dir / PIPE_NAME).symlink_to(target)
    w = await Wakeup.open(str(job_dir))
    assert w is not None
    try:
        info = os.lstat(job_dir / PIPE_NAME)
        assert stat.S_ISFIFO(info.st_mode) and not stat.S_ISLNK(info.st_mode)
        target_info = os.lstat(target)
        assert stat.S_ISREG(target_info.st_mode)
        assert stat.S_IMODE(target_info.st_mode) == 0o644
        assert target.read_text() == "not the hub's\n"
    finally:
        w.close()


async def test_open_gives_none_where_the_dir_does_not_exist(tmp_path):
    assert await Wakeup.open(str(tmp_path / "missing")) is None
    assert not (tmp_path / "missing").exists()


async def test_open_gives_none_where_the_dir_is_a_file(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert await Wakeup.open(str(afile)) is None
    assert afile.read_text() == "x"


async def test_wait_returns_soon_after_a_thread_writes(wakeup):
    w, path = wakeup
    timer = threading.Timer(0.05, poke, args=(path,))
    timer.start()
    try:
        started = time.monotonic()
        await w.wait(60)
        assert time.monotonic() - started < 30  # woken, not timed out
    finally:
        timer.cancel()
        timer.join()


async def test_wait_returns_soon_after_another_process_writes(wakeup, processes):
    w, path = wakeup
    processes.append(await asyncio.create_subprocess_exec(sys.executable, "-c", ONE_BYTE, path, "0.05"))
    started = time.monotonic()
    await w.wait(60)
    assert time.monotonic() - started < 30
    assert await processes[0].wait() == 0


async def test_wait_lasts_its_timeout_when_nothing_is_written(wakeup):
    w, _ = wakeup
    started = time.monotonic()
    await w.wait(0.2)
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 10


async def test_a_flooding_writer_wakes_no_more_often_than_min_gap(wakeup, processes):
    w, path = wakeup
    flooder = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOODER, path,
                                                   stdout=asyncio.subprocess.PIPE)
    processes.append(flooder)
    assert (await asyncio.wait_for(flooder.stdout.readline(), 30)) == b"open\n"
    await w.wait(60)  # the flood has begun
    window = 0.3
    stamps = []
    end = time.monotonic() + window
    while time.monotonic() < end:
        await w.wait(30)
        stamps.append(time.monotonic())
    # Woken by the flood (each wait would otherwise last 30 s), but at most once a MIN_GAP.
    assert len(stamps) >= 3
    assert len(stamps) <= window / MIN_GAP + 3
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= MIN_GAP * 0.9
    assert flooder.returncode is None  # it was still flooding all along


async def test_a_closed_writer_does_not_make_the_loop_spin(wakeup, processes):
    w, path = wakeup
    processes.append(await asyncio.create_subprocess_exec(sys.executable, "-c", ONE_BYTE, path, "0"))
    started = time.monotonic()
    await w.wait(60)
    assert time.monotonic() - started < 30
    assert await processes[0].wait() == 0  # its end is closed now
    # End-of-file from a closed writer must not read as a wake-up again and again.
    for _ in range(3):
        started = time.monotonic()
        await w.wait(0.2)
        assert time.monotonic() - started >= 0.18
    # And it still wakes for the next writer.
    timer = threading.Timer(0.05, poke, args=(path,))
    timer.start()
    try:
        started = time.monotonic()
        await w.wait(60)
        assert time.monotonic() - started < 30
    finally:
        timer.cancel()
        timer.join()


async def test_close_is_idempotent_and_lets_go_of_the_pipe(tmp_path):
    w = await Wakeup.open(str(tmp_path))
    assert w is not None
    path = str(tmp_path / PIPE_NAME)
    held = fds_on(path)
    assert len(held) == 1
    loop = asyncio.get_running_loop()
    w.close()
    w.close()
    assert fds_on(path) == []
    # No reader is left registered for the descriptor.
    assert loop.remove_reader(held[0]) is False
    # Nobody reads the pipe any more: a writer that does not block finds no reader there.
    with pytest.raises(OSError) as caught:
        poke(path)
    assert caught.value.errno == errno.ENXIO


async def test_the_job_helper_status_wakes_it(wakeup, processes):
    w, path = wakeup
    job_dir = os.path.dirname(path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PW_JOB_DIR": job_dir, "PW_PORT": "8888",
           "PW_HOST": "127.0.0.1", "PW_JOB_ID": "42"}
    processes.append(await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", "-c", HELPER_SOURCE, "status", "RUNNING", "", env=env))
    started = time.monotonic()
    await w.wait(60)
    assert time.monotonic() - started < 30
    assert await processes[0].wait() == 0
    assert '"RUNNING"' in (Path(job_dir) / "service.json").read_text()


async def test_a_stop_that_comes_as_the_job_writes_is_not_lost(wakeup):
    """The job's byte and a cancellation (the hub's Stop) in the same turn of the event loop:
    Python 3.11's wait_for then returns the inner wait's result and drops the cancellation; wait()
    raises it all the same (a lost one kept a start following its job for minutes)."""
    opened, path = wakeup
    waiting = asyncio.ensure_future(opened.wait(30))
    for _ in range(3):  # until it waits on the pipe
        await asyncio.sleep(0)
    writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"\n")
    finally:
        os.close(writer)
    opened._drain()  # what the loop runs for the readable pipe, here in the same turn as the Stop
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

"""Fault suite: a job directory root that cannot be written (the ``local`` target).

The root is a regular file, a path under /proc, a directory nobody may write into (immutable with
``chattr +i`` when the tests run as root, whom mode bits do not stop; mode 0500 otherwise), or a place
where every write fails (``prlimit --fsize=0`` in the exec prefix: writes fail with EFBIG as they
fail with ENOSPC on a full disk). Each spawn must fail with a SpawnException whose message says what
is wrong with which directory, without a Python traceback, and leave no job process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.hub import group_members
from support.requirements import require

pytestmark = pytest.mark.faults

TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', "Error: [Errno")


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot create anything in; made writable again at the end."""
    path = tmp_path / "readonly"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    require("chattr", chattr is not None, "chattr is missing (Debian: e2fsprogs)")
    made = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    require("chattr", made.returncode == 0, f"chattr +i is not supported here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if text in argv or cwd.startswith(text):
            found.append((int(entry.name), argv.strip()))
    return found


def _root(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(job_dir_root, exec_prefix) of one kind of unwritable root."""
    if kind == "file-in-its-place":
        blocker = tmp_path / "jobs-root"
        blocker.write_text("not a directory\n")
        return f"{blocker}/{{username}}", []
    if kind == "under-proc":
        return "/proc/pw-spawner-nowhere/{username}", []
    if kind == "read-only-dir":
        return f"{request.getfixturevalue('immutable_dir')}/{{username}}", []
    if kind == "writes-fail":
        prlimit = shutil.which("prlimit")
        require("prlimit", prlimit is not None, "prlimit is missing (Debian: util-linux)")
        return str(tmp_path / "full" / "{username}"), [prlimit, "--fsize=0", "--"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["file-in-its-place", "under-proc", "read-only-dir", "writes-fail"])
async def test_unwritable_job_dir_root_is_a_clear_spawn_error(kind: str, tmp_path: Path, spawner_factory,
                                                              request: pytest.FixtureRequest, faults) -> None:
    faults.case()
    root, prefix = _root(kind, tmp_path, request)
    spawner = spawner_factory(job_dir_root=root, exec_prefix=prefix, start_timeout=60)
    shown_root = root.replace("/{username}", "")
    with pytest.raises(Exception) as raised:
        await spawner.start()
    message = getattr(raised.value, "jupyterhub_message", None)
    print(f"{kind}: {message!r}")

    job_dir = f"{root.format(username='alice')}/{spawner.job_name}"
    left = _processes_mentioning(job_dir)
    if spawner.job is not None:
        pgid = spawner.job.job_id
        if pgid.isdigit() and group_members(int(pgid)):
            left.append((int(pgid), f"job {pgid} the spawner still holds"))
    faults.record("orphans", len(left), f"{kind}: {left}")
    faults.check()

    assert type(raised.value).__name__ == "SpawnException", f"not a SpawnException: {raised.value!r}"
    assert message, f"no message for the spawn page: {raised.value!r}"
    assert not any(sign in message for sign in TRACEBACK_SIGNS), f"a traceback reached the user:\n{message}"
    assert len(message) < 600, f"{len(message)} characters is not a message:\n{message}"
    assert shown_root in message or job_dir in message, f"the message does not name the directory:\n{message}"

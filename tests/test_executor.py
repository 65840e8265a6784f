"""LocalExecutor: the command environment (the hub's secrets stay behind, the fake scheduler's
knobs pass); commands ended, with everything they forked, when they time out, are cancelled or
print too much, also behind ``sudo -u`` and from a hub that is not root; read_file refusing what a
hostile job could leave in place of its service.json.

Run as root, the sudo tests make ordinary accounts (pwtestuser, pwhubtest) and a sudoers drop-in
that they remove afterwards; without root they fail in CI and are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from support.requirements import require
from support.sshd import ensure_login_user

from pw_spawner.remote import executor as executor_module
from pw_spawner.remote.executor import (
    MAX_OUTPUT,
    PASSED_ENV,
    ExecutorError,
    LocalExecutor,
    UntrustedFileError,
    passed_environment,
)
from pw_spawner.testing import fake, plugin


def test_no_test_hook_in_the_passed_environment():
    # The fake scheduler's knobs reach it through its state directory (FakeScheduler.set_knobs).
    # Every module of the fake's package: the store and each scheduler.
    sources = sorted(Path(fake.__file__).parent.glob("*.py"))
    assert {"store.py", "slurm.py", "pbs.py"} <= {path.name for path in sources}
    read = {name for path in sources for name in re.findall(r"PW_FAKE_[A-Z_]+", path.read_text())}
    assert {"PW_FAKE_PENDING_SECONDS", "PW_FAKE_PARTITIONS", "PW_FAKE_PBS_SPOOL"} <= read
    assert read - {"PW_FAKE_SCHED_DIR"} <= set(plugin.KNOBS)
    assert not [name for name in passed_environment() if name.startswith("PW_")]
    # The schedulers' own variables come from their modules.
    assert {"SLURM_CONF", "PBS_SERVER", "SGE_ROOT"} <= set(passed_environment()) - set(PASSED_ENV)


async def test_only_the_passed_environment_reaches_a_command(monkeypatch):
    monkeypatch.setenv("PW_FAKE_PENDING_REASON", "QOSMaxJobsPerUserLimit")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "secret")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/other.conf")
    result = await LocalExecutor().run(["env"])
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert "SLURM_CONF=/etc/slurm/other.conf" in result.stdout.splitlines()
    assert "PW_FAKE_PENDING_REASON" not in names and "secret" not in result.stdout
    assert names <= {*passed_environment(), "HOME", "PWD", "SHLVL", "_"}, names


# -- ending a command: timeouts, cancellation, too much output ---------------------------------

JOB_USER = "pwtestuser"  # an ordinary account that commands run as behind sudo
HUB_USER = "pwhubtest"  # an ordinary account standing in for a hub that is not root
SUDOERS = Path("/etc/sudoers.d/pw-spawner-tests")


def tag() -> str:
    """A sleep length no other process's command line has, so that pgrep finds only ours."""
    return f"{30 + secrets.randbelow(10**6) / 10**6:.6f}"


def running(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


async def gone(pattern: str, within: float = 2) -> bool:
    """Whether every process matching ``pattern`` is gone (or goes within ``within`` s)."""
    deadline = time.monotonic() + within
    while running(pattern):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.fixture(scope="module")
def job_user() -> pwd.struct_passwd:
    """An ordinary account, for commands run behind ``sudo -u``; needs root to make it."""
    require("sudo", os.geteuid() == 0 and shutil.which("sudo") is not None,
            "commands behind `sudo -u` as another account need root and sudo "
            "(run .ci/install-system.sh as root)")
    return ensure_login_user(JOB_USER)


def sudo_executor(user: pwd.struct_passwd) -> LocalExecutor:
    return LocalExecutor(prefix=["sudo", "-n", "-u", user.pw_name, "--"], username=user.pw_name)


async def test_a_timeout_ends_the_command_and_what_it_forked():
    slow = tag()
    start = time.monotonic()
    # The background sleep holds stdout: waiting for the pipes to close would wait for it.
    with pytest.raises(ExecutorError, match=r"^sh -c .* did not answer within 1 s$"):
        await LocalExecutor().run(["sh", "-c", f"sleep {slow} & sleep {slow}"], timeout=1)
    assert time.monotonic() - start < 2
    assert await gone(f"sleep {slow}"), "a process of the timed-out command still runs"


async def test_a_timeout_holds_behind_sudo(job_user):
    ex = sudo_executor(job_user)
    for argv in (["sleep", "{t}"], ["sh", "-c", "sleep {t} & sleep {t}"]):
        slow = tag()
        argv = [word.replace("{t}", slow) for word in argv]
        start = time.monotonic()
        with pytest.raises(ExecutorError, match="sudo -n -u did not answer within 3 s"):
            await ex.run(argv, timeout=3)
        took = time.monotonic() - start
        assert took < 4, f"{argv} took {took:.1f} s to time out"
        assert await gone(f"sleep {slow}"), f"{argv} still runs as {job_user.pw_name}"


async def test_cancelling_ends_the_command(job_user):
    slow = tag()
    task = asyncio.ensure_future(sudo_executor(job_user).run(["sleep", slow]))
    await asyncio.sleep(0.5)
    assert running(f"sleep {slow}")
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 1.5
    assert await gone(f"sleep {slow}")


@pytest.fixture
def shared() -> Path:
    """A fresh directory every account can reach (a test's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pw-executor-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def hub_user(job_user) -> pwd.struct_passwd:
    """An ordinary account allowed `sudo -u pwtestuser` without a password, like a hub's account.

    The sudoers drop-in is checked with visudo before it is put in place, and removed afterwards.
    """
    user = ensure_login_user(HUB_USER)
    rule = f"{user.pw_name} ALL=({job_user.pw_name}) NOPASSWD: ALL\n"
    staged = SUDOERS.with_name(".pw-spawner-tests.new")
    staged.write_text(rule)
    staged.chmod(0o440)
    subprocess.run(["visudo", "-c", "-q", "-f", str(staged)], check=True, capture_output=True)
    staged.replace(SUDOERS)
    try:
        yield user
    finally:
        SUDOERS.unlink(missing_ok=True)


HUB_SCRIPT = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
from remote.executor import ExecutorError, LocalExecutor

async def main():
    ex = LocalExecutor(prefix=["sudo", "-n", "-u", sys.argv[2], "--"], username=sys.argv[2])
    start = time.monotonic()
    try:
        result = await ex.run(["sleep", sys.argv[3]], timeout=1.5)
        print("finished", result)
    except ExecutorError as exc:
        print("%.2f %s" % (time.monotonic() - start, exc))

asyncio.run(main())
"""


async def test_a_hub_that_is_not_root_ends_a_command_behind_sudo(job_user, hub_user, shared):
    """The hub's account may not signal the job's account: sudo must relay the SIGTERM."""
    # The executor module uses the standard library only: the system python3 runs it as is.
    # The executor and the reader it imports, as a package of their own the other account can read.
    package = shared / "remote"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("executor.py", "file_reader.py", "local_process.py"):
        shutil.copyfile(Path(executor_module.__file__).with_name(module), package / module)
    for path in package.iterdir():
        path.chmod(0o644)
    package.chmod(0o755)
    (shared / "hub.py").write_text(HUB_SCRIPT)
    slow = tag()
    done = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={hub_user.pw_uid}", f"--regid={hub_user.pw_gid}", "--init-groups",
        "/usr/bin/python3", str(shared / "hub.py"), str(shared), job_user.pw_name, slow,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    out, err = await asyncio.wait_for(done.communicate(), 20)
    took, _, message = out.decode().strip().partition(" ")
    assert message == "sudo -n -u did not answer within 1.5 s", (out, err)
    assert float(took) < 2.5
    assert await gone(f"sleep {slow}"), f"the command still runs as {job_user.pw_name}"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_beyond_the_cap_ends_the_command(stream):
    redirect = "" if stream == "stdout" else " >&2"
    before = maxrss_mib()
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"printed more than 1048576 bytes on {stream}$"):
        await LocalExecutor().run(["sh", "-c", f"exec cat /dev/zero{redirect}"], max_output=1 << 20)
    with pytest.raises(ExecutorError, match=rf"printed more than {MAX_OUTPUT} bytes on {stream}$"):
        await LocalExecutor().run(["sh", "-c", f"exec cat /dev/zero{redirect}"])
    assert time.monotonic() - start < 5
    assert maxrss_mib() - before < 3 * MAX_OUTPUT / (1 << 20)
    assert await gone("cat /dev/zero")


async def test_output_up_to_the_cap_is_whole():
    result = await LocalExecutor().run(["head", "-c", "100000", "/dev/urandom"], max_output=100_000)
    assert result.ok and len(result.stdout.encode(errors="surrogateescape")) > 0
    exact = await LocalExecutor().run(["sh", "-c", "printf %0100000d 0; printf %05d 0 >&2"],
                                      max_output=100_000)
    assert (len(exact.stdout), len(exact.stderr)) == (100_000, 5)
    with pytest.raises(ExecutorError, match="printed more than 99999 bytes on stdout"):
        await LocalExecutor().run(["sh", "-c", "printf %0100000d 0"], max_output=99_999)


async def test_output_cap_behind_sudo(job_user):
    with pytest.raises(ExecutorError, match="printed more than 65536 bytes on stdout"):
        await sudo_executor(job_user).run(["cat", "/dev/zero"], max_output=65536, timeout=5)
    assert await gone("cat /dev/zero")


async def test_input_output_and_exit_status():
    ex = LocalExecutor()
    result = await ex.run(["sh", "-c", "cat; echo err >&2; exit 3"], input="line 1\nline 2\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, "line 1\nline 2\n", "err\n")
    big = "x" * 3_000_000  # more than a pipe holds: fed while the command reads
    assert (await ex.run(["wc", "-c"], input=big)).stdout.strip() == str(len(big))
    assert (await ex.run(["true"], input=big)).ok  # a command that does not read is no error
    start = time.monotonic()
    assert (await ex.run(["cat"], timeout=5)).stdout == ""  # no input: EOF at once
    assert (await ex.run(["cat"], input="", timeout=5)).stdout == ""
    assert time.monotonic() - start < 3
    with pytest.raises(ExecutorError, match="cannot run pw-no-such-command"):
        await ex.run(["pw-no-such-command"])


# -- reading a job's file ----------------------------------------------------------------------

async def test_read_file_reads_a_small_file_and_tells_a_missing_one(tmp_path):
    ex = LocalExecutor()
    text = '{"PORT": 8888, "URL": "/me", "é": 1}\n'
    (tmp_path / "service.json").write_text(text)
    assert await ex.read_file(str(tmp_path / "service.json")) == text
    (tmp_path / "empty").write_text("")
    assert await ex.read_file(str(tmp_path / "empty")) == ""
    assert await ex.read_file(str(tmp_path / "absent.json")) is None
    assert await ex.read_file(str(tmp_path / "no-such-dir" / "service.json")) is None
    (tmp_path / "limit").write_bytes(b"x" * 100)
    assert await ex.read_file(str(tmp_path / "limit"), max_bytes=100) == "x" * 100
    with pytest.raises(UntrustedFileError, match=r"is larger than 99 bytes$"):
        await ex.read_file(str(tmp_path / "limit"), max_bytes=99)
    # A path that looks like an option is still a path.
    (tmp_path / "-c").write_text("dash")
    assert await ex.read_file(str(tmp_path / "-c")) == "dash"


async def test_read_file_refuses_what_is_not_a_small_regular_file(tmp_path):
    ex = LocalExecutor()
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")  # and no writer: a blocking open would wait forever
    (tmp_path / "dir").mkdir()
    (tmp_path / "big").write_bytes(b"")
    os.truncate(tmp_path / "big", 10_000_000)
    (tmp_path / "real").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    expected = {
        "zero": "is a symbolic link",
        "link": "is a symbolic link",
        "fifo": "is not a regular file (FIFO)",
        "dir": "is not a regular file (directory)",
        "big": "is larger than 65536 bytes",
    }
    before = maxrss_mib()
    for name, reason in expected.items():
        path = str(tmp_path / name)
        start = time.monotonic()
        with pytest.raises(UntrustedFileError) as raised:
            await ex.read_file(path)
        assert time.monotonic() - start < 2, name
        assert str(raised.value) == f"{path} {reason}"
        assert (raised.value.path, raised.value.reason) == (path, reason)
        assert isinstance(raised.value, ExecutorError)
    with pytest.raises(UntrustedFileError, match=r"is not a regular file \(character device\)$"):
        await ex.read_file("/dev/zero")
    assert maxrss_mib() - before < 10


async def test_read_file_refuses_a_file_of_another_account(tmp_path, job_user, shared):
    # As root: a file that another account owns.
    other = tmp_path / "other.json"
    other.write_text("{}")
    os.chown(other, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(UntrustedFileError,
                       match=rf"^{re.escape(str(other))} is owned by uid \d+, not by root$"):
        await LocalExecutor().read_file(str(other))
    # Behind sudo, as the job's account: its own file is read, root's is refused.
    mine, roots = shared / "mine.json", shared / "roots.json"
    mine.write_text('{"mine": 1}')
    os.chown(mine, job_user.pw_uid, job_user.pw_gid)
    roots.write_text('{"root": 1}')
    os.chmod(roots, 0o644)
    ex = sudo_executor(job_user)
    assert await ex.read_file(str(mine)) == '{"mine": 1}'
    with pytest.raises(UntrustedFileError, match=rf"is owned by uid 0, not by {JOB_USER}$"):
        await ex.read_file(str(roots))
    assert await ex.read_file(str(shared / "absent")) is None
    os.chmod(shared, 0o700)  # the job's account cannot reach it any more: an error, not "missing"
    with pytest.raises(ExecutorError, match="Permission denied") as raised:
        await ex.read_file(str(mine))
    assert not isinstance(raised.value, UntrustedFileError)

"""SSHExecutor against a real OpenSSH server on 127.0.0.1 (tests/support/sshd.py).

Commands, stdin and exit codes; argv words that reach the remote side literally whatever they
hold; one pooled connection however many callers; reconnecting after sshd restarts, drops the
session or goes silent; refusing an unknown host key; failing fast when nothing listens; output
capped (the command is killed); read_file refusing what a hostile job leaves for service.json.

Run as root, the tests log in as an ordinary account (``pwsshuser``, shell /bin/sh) as cluster
users do: sshd serves such logins with privilege separation, which its signal requests (how a
timed-out command is killed) need. One test logs in as root itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pw_spawner.remote.executor import MAX_OUTPUT, ExecutorError, UntrustedFileError
from pw_spawner.remote.ssh import (
    SSHExecutor,
    SSHOptions,
    close_all,
    connections_opened,
    open_connections,
    shell_command,
)

pytestmark = pytest.mark.ssh

HOSTILE = ["a b", "it's", '"dq"', "$(touch {marker})", "`touch {marker}`", "x\ny", "a;b", "&&", "|",
           "*", "~", "$HOME", "-n", "", "\\", "!", "#c", ">out", "<in", "\t", "${IFS}", "é€", "--"]


@pytest.fixture
def sshd(ssh_server):
    """The session's sshd (tests/conftest.py); tests here stop, restart and pause it."""
    return ssh_server


@pytest.fixture
def login_user(ssh_user) -> pwd.struct_passwd:
    return ssh_user


@pytest.fixture(autouse=True)
async def _fresh_pool(sshd):
    """Every test starts on a running sshd without pooled connections and leaves none behind."""
    if not sshd.running:
        sshd.start()
    yield
    await close_all()


@pytest.fixture
def make(sshd, login_user):
    """make(**overrides) -> an SSHExecutor for the test server, as the login user."""
    def make(**kwargs) -> SSHExecutor:
        defaults = dict(port=sshd.port, username=login_user.pw_name, key_file=sshd.client_key,
                        known_hosts=sshd.known_hosts)
        return SSHExecutor("127.0.0.1", **{**defaults, **kwargs})
    return make


class Opened:
    """Counts the connections an executor's target opens from now on (the counter is per process)."""

    def __init__(self, ex: SSHExecutor) -> None:
        self.target, self.before = ex.target, connections_opened(ex.target)

    @property
    def count(self) -> int:
        return connections_opened(self.target) - self.before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remote_pids(user: str, pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


async def test_command_output_and_exit_code(make):
    ex = make()
    result = await ex.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    missing = await ex.run(["pw-no-such-command"])
    assert missing.returncode == 127 and not missing.ok  # a result, not an exception


async def test_stdin_reaches_the_command_and_always_ends(make):
    ex = make()
    assert (await ex.run(["cat"], input="line 1\nline 2\n")).stdout == "line 1\nline 2\n"
    big = "x" * 300_000 + "\n"
    assert (await ex.run(["wc", "-c"], input=big)).stdout.strip() == str(len(big))
    # Without input the command sees EOF at once instead of waiting for more.
    start = time.monotonic()
    assert (await ex.run(["cat"], timeout=5)).stdout == ""
    assert time.monotonic() - start < 3


async def test_hostile_words_arrive_literally(make):
    ex = make()
    marker = f"/tmp/pw-ssh-injected-{secrets.token_hex(4)}"  # where the login user could write
    words = [word.replace("{marker}", marker) for word in HOSTILE]
    try:
        result = await ex.run(["printf", r"%s\0", *words])
        assert result.ok, result.message()
        assert result.stdout.split("\0")[:-1] == words
        assert (await ex.run(["test", "-e", marker])).returncode == 1  # nothing was run
    finally:
        await ex.run(["rm", "-f", marker])


def test_hostile_words_fuzzed(make):
    """Hypothesis: any words (no NUL, which argv cannot hold) come back from printf unchanged."""
    loop = asyncio.new_event_loop()
    ex = make()
    pieces = st.sampled_from([*"ab '\"`$(){};|&<>\\\n\r\t#!*?~=%-é€\x1b", "$(id)", "'\\''", "${HOME}"])
    word = st.one_of(st.lists(pieces, max_size=10).map("".join),
                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                             max_size=20))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(words=st.lists(word, min_size=1, max_size=6))
    def check(words):
        result = loop.run_until_complete(ex.run(["printf", r"%s\0", *words]))
        assert result.ok, result.message()
        assert result.stdout.split("\0")[:-1] == words

    opened = Opened(ex)
    try:
        check()
        # The same connection served every example (the pool is per event loop).
        assert opened.count == 1
    finally:
        loop.run_until_complete(close_all())
        loop.close()


def test_shell_command_quoting():
    assert shell_command(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
    assert shell_command(["sbatch"], {"SLURM_CONF": "/etc/slurm x/slurm.conf"}) == \
        "env -- 'SLURM_CONF=/etc/slurm x/slurm.conf' sbatch"
    for bad in ([], ["a\0b"]):
        with pytest.raises(ValueError):
            shell_command(bad)
    with pytest.raises(ValueError):
        shell_command(["A=1"], {"B": "2"})


async def test_env_is_explicit_and_the_hubs_stays_behind(make, monkeypatch):
    monkeypatch.setenv("PW_HUB_SECRET", "hub-secret")
    value = "two words 'and' $(quotes)\nline"
    ex = make(env={"SLURM_CONF": value})
    result = await ex.run(["sh", "-c", 'printf %s "$SLURM_CONF"'])
    assert result.stdout == value
    assert "hub-secret" not in (await ex.run(["env"])).stdout
    with pytest.raises(ValueError):
        make(env={"BAD NAME": "x"})


async def test_one_connection_for_many_callers_and_executors(make):
    first, second = make(), make()
    assert first.target == second.target
    opened = Opened(first)
    # 20 at once: more than sshd's MaxSessions (10) on one connection, so callers queue.
    results = await asyncio.gather(
        *(ex.run(["sh", "-c", 'sleep 0.2; echo "$0"', str(i)]) for i, ex in
          enumerate([first, second] * 10)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(20)]
    assert opened.count == 1 and open_connections() == 1
    await close_all()
    assert open_connections() == 0


async def test_home_and_read_file(make, login_user):
    ex = make()
    assert await ex.home() == login_user.pw_dir
    assert await ex.home() == login_user.pw_dir  # cached
    path = f"/tmp/pw-ssh-{secrets.token_hex(4)}.json"
    text = '{"PORT": 8888, "URL": "/me"}\n'
    try:
        assert (await ex.run(["sh", "-c", 'umask 077 && cat > "$1"', "sh", path], input=text)).ok
        assert await ex.read_file(path) == text
    finally:
        await ex.run(["rm", "-f", path])
    assert await ex.read_file(path) is None


async def test_root_login(make):
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in only its own account when not root")
    ex = make(username="root")
    assert await ex.home() == pwd.getpwnam("root").pw_dir
    assert (await ex.run(["id", "-u"])).stdout == "0\n"


async def test_timeout_is_an_error_and_kills_the_command(make, login_user):
    ex = make()
    opened = Opened(ex)
    tag = f"{secrets.randbelow(10**6)}.5"  # a sleep whose command line no other process has
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"127\.0\.0\.1:\d+: sleep {tag} did not finish within 0.5 s"):
        await ex.run(["sleep", tag], timeout=0.5)
    assert time.monotonic() - start < 2
    if login_user.pw_uid != 0:  # sshd honours signal requests only with privilege separation
        for _ in range(60):
            if not remote_pids(login_user.pw_name, f"sleep {tag}"):
                break
            await asyncio.sleep(0.05)
        assert not remote_pids(login_user.pw_name, f"sleep {tag}"), "the timed-out command still runs"
    assert (await ex.run(["echo", "still here"])).stdout == "still here\n"
    assert opened.count == 1


@pytest.mark.parametrize("cut", ["restart", "drop"])
async def test_reconnects_after_sshd_cuts_the_connection(make, sshd, cut):
    ex = make()
    opened = Opened(ex)
    assert (await ex.run(["true"])).ok
    if cut == "restart":
        sshd.restart()  # same port, same host key; the old sessions are killed
    else:
        assert sshd.drop_sessions() > 0
    start = time.monotonic()
    assert (await ex.run(["echo", "back"], timeout=10)).stdout == "back\n"
    assert time.monotonic() - start < 5
    assert opened.count == 2


async def test_keepalive_notices_a_silent_server(make, sshd):
    ex = make(options=SSHOptions(keepalive_interval=0.2, keepalive_count_max=2))
    opened = Opened(ex)
    assert (await ex.run(["true"])).ok
    frozen = sshd.session_pids()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the connection stays open but nothing answers
    try:
        start = time.monotonic()
        assert (await ex.run(["echo", "back"], timeout=10)).stdout == "back\n"
        assert time.monotonic() - start < 5
        assert opened.count == 2
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_unknown_host_key_is_refused(make, sshd):
    ex = make(known_hosts=sshd.foreign_known_hosts())
    opened = Opened(ex)
    for _ in range(2):  # the second call gets the same answer from the backoff, not a new attempt
        with pytest.raises(ExecutorError) as info:
            await ex.run(["true"])
        message = str(info.value)
        assert message.startswith(f"127.0.0.1:{sshd.port}: host key verification failed")
        assert "not in the known_hosts file" in message and str(ex.target.known_hosts) in message
    assert opened.count == 0


async def test_known_hosts_is_required(make, tmp_path):
    with pytest.raises(ValueError, match="known_hosts"):
        make(known_hosts=None)
    with pytest.raises(ValueError, match="known_hosts"):
        make(known_hosts="")
    ex = make(known_hosts=tmp_path / "absent")
    with pytest.raises(ExecutorError, match=r"known_hosts file .* cannot be read"):
        await ex.run(["true"])


async def test_nothing_listening_fails_fast_then_recovers(make, sshd):
    port = free_port()
    ex = make(port=port)
    opened = Opened(ex)
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"^127\.0\.0\.1:{port}: connection refused$"):
        await ex.run(["true"])
    with pytest.raises(ExecutorError, match=r"connection refused \(next attempt in"):
        await ex.run(["true"])
    assert time.monotonic() - start < 2
    assert opened.count == 0

    # sshd down, then back: the executor gets there after its (short) backoff.
    ex = make(options=SSHOptions(reconnect_delay=0.2))
    sshd.stop()
    with pytest.raises(ExecutorError, match="connection refused"):
        await ex.run(["true"])
    sshd.start()
    await asyncio.sleep(0.25)
    assert (await ex.run(["echo", "up"])).stdout == "up\n"


@pytest.fixture
def ssh_agent(sshd, tmp_path):
    """An ssh-agent holding the server's user key; yields its socket."""
    agent = shutil.which("ssh-agent")
    if agent is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([agent, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        yield sock
    finally:
        proc.kill()
        proc.wait()


async def test_agent_keys(make, ssh_agent):
    ex = make(key_file=None, agent_path=ssh_agent)
    assert (await ex.run(["echo", "agent"])).stdout == "agent\n"


def test_known_hosts_names_the_port(sshd):
    assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_beyond_the_cap_ends_the_command(make, login_user, stream):
    ex = make()
    opened = Opened(ex)
    marker = f"pw-flood-{secrets.token_hex(4)}"  # names the remote shell, for pgrep
    redirect = "" if stream == "stdout" else " >&2"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=rf"^127\.0\.0\.1:\d+: sh -c .* printed more than "
                                            rf"1048576 bytes on {stream}$"):
        await ex.run(["sh", "-c", f"cat /dev/zero{redirect}", marker], max_output=1 << 20)
    with pytest.raises(ExecutorError, match=rf"printed more than {MAX_OUTPUT} bytes on {stream}$"):
        await ex.run(["sh", "-c", f"cat /dev/zero{redirect}", marker])
    assert time.monotonic() - start < 5
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert grown < 3 * MAX_OUTPUT / (1 << 20), f"the hub grew by {grown:.0f} MiB"
    if login_user.pw_uid != 0:  # sshd honours signal requests only with privilege separation
        for _ in range(60):
            if not remote_pids(login_user.pw_name, marker):
                break
            await asyncio.sleep(0.05)
        assert not remote_pids(login_user.pw_name, marker), "the flooding command still runs"
    assert (await ex.run(["echo", "still here"])).stdout == "still here\n"
    assert opened.count == 1


async def test_output_up_to_the_cap_is_whole(make):
    ex = make()
    exact = await ex.run(["sh", "-c", "printf %0100000d 0; printf %05d 0 >&2"], max_output=100_000)
    assert (len(exact.stdout), len(exact.stderr)) == (100_000, 5)
    with pytest.raises(ExecutorError, match="printed more than 99999 bytes on stdout"):
        await ex.run(["sh", "-c", "printf %0100000d 0"], max_output=99_999)
    # Bytes that are not UTF-8 are replaced, as before, not an error.
    assert (await ex.run(["printf", "a\\377b"])).stdout == "a\ufffdb"


@pytest.fixture
async def job_dir(make):
    """A directory of the login user's on the login node, removed after the test."""
    ex = make()
    path = f"/tmp/pw-ssh-job-{secrets.token_hex(4)}"
    assert (await ex.run(["mkdir", "-m", "0700", path])).ok
    yield path
    await ex.run(["rm", "-rf", path])


async def test_read_file_refuses_what_a_hostile_job_leaves(make, job_dir, login_user):
    ex = make()
    setup = (f"cd {job_dir} && printf '{{}}' > ok && ln -s /dev/zero zero && ln -s ok link && "
             "mkfifo fifo && mkdir dir && truncate -s 10000000 big")
    assert (await ex.run(["sh", "-c", setup])).ok
    assert await ex.read_file(f"{job_dir}/ok") == "{}"
    assert await ex.read_file(f"{job_dir}/absent") is None
    assert await ex.read_file(f"{job_dir}/no-dir/service.json") is None
    expected = {
        f"{job_dir}/zero": "is a symbolic link",
        f"{job_dir}/link": "is a symbolic link",
        f"{job_dir}/fifo": "is not a regular file (FIFO)",  # no writer: must not wait for one
        f"{job_dir}/dir": "is not a regular file (directory)",
        f"{job_dir}/big": "is larger than 65536 bytes",
        "/etc/passwd": f"is owned by uid 0, not by {login_user.pw_name}",
    }
    if login_user.pw_uid == 0:  # root owns /etc/passwd: give it a file of someone else's
        other = f"{job_dir}/other"
        assert (await ex.run(["sh", "-c", f"echo x > {other} && chown nobody {other}"])).ok
        del expected["/etc/passwd"]
        expected[other] = f"is owned by uid {pwd.getpwnam('nobody').pw_uid}, not by root"
    for path, reason in expected.items():
        start = time.monotonic()
        with pytest.raises(UntrustedFileError, match=f"^{re.escape(path)} {re.escape(reason)}$"):
            await ex.read_file(path)
        assert time.monotonic() - start < 2, path
    with pytest.raises(UntrustedFileError, match=r"is larger than 1 bytes$"):
        await ex.read_file(f"{job_dir}/ok", max_bytes=1)

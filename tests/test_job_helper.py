"""Tests of the job's own helper (pw_spawner/templates/job_helper.py), run the way the job script
runs it, ``python3 -I -S -c "$SOURCE" SUBCOMMAND ...`` with the PW_* variables in its environment:
that ``begin`` checks the job directory (refusing a symbolic link, a directory open to others or
another account's, with exit 1 and the reason on stderr) and writes STARTING only when given a
message; that ``status`` writes a 0600 service.json the hub's parser accepts, with any message text
surviving the JSON round trip exactly, and pokes the hub's wake-up pipe where there is one without
writing through a symbolic link or into a file that is not a pipe; that ``port`` prints a free port
and records it; that ``ready`` and ``listen-wait`` tell a listener of the job's own process tree
(exit 0, RUNNING written) from someone else's (exit 3), a process that ended (4) and a timeout (5);
that ``secret`` prints a fresh 48-digit hex token each time; and that the question of who listens
on a port (asked of netlink, else of /proc/net/tcp) names the same listener either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pw_spawner.status import JobState, ServiceStatus, clean_message

SOURCE = (Path(__file__).resolve().parent.parent / "pw_spawner" / "templates" / "job_helper.py").read_text()
NOBODY = 65534

# Listens on a free port of 127.0.0.1, prints it, and stays.
LISTENER = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""

HOSTILE = ('say "hi" \\ back\\\\slashes \\n not a newline\nbut this is\r\n\ttab '
           "ünïcødé ✓ 日本語 🎉 \u2028 </script> {\"JOB_STATUS\": \"RUNNING\"} ' $(id) `id`")


@pytest.fixture
def job_dir(tmp_path):
    path = tmp_path / "job"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def env_for(job_dir, **extra) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PW_JOB_DIR": str(job_dir),
           "PW_URL": "/me", "PW_PORT": "", "PW_SLUG": "lab", "PW_HOST": "127.0.0.1", "PW_JOB_ID": "4242"}
    env.update(extra)
    return env


def helper(job_dir, *args: str, timeout: float = 60, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", "-c", SOURCE, *args], capture_output=True,
                          text=True, timeout=timeout, env=env_for(job_dir, **extra))


def record(job_dir) -> dict:
    return json.loads((Path(job_dir) / "service.json").read_text())


@pytest.fixture
def processes():
    """Processes a test starts, each in a session of its own: their groups are killed after it."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def start(processes, argv: list[str], **kw) -> subprocess.Popen:
    proc = subprocess.Popen(argv, start_new_session=True, **kw)
    processes.append(proc)
    return proc


def start_listener(processes, via_shell: bool = False) -> tuple[subprocess.Popen, int]:
    """A process listening on 127.0.0.1 (or a shell whose child listens), and the port."""
    argv = [sys.executable, "-c", LISTENER]
    if via_shell:
        argv = ["bash", "-c", f"{shlex.join(argv)} & wait"]
    proc = start(processes, argv, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- begin


def test_begin_without_a_message_checks_the_dir_and_writes_nothing(job_dir):
    result = helper(job_dir, "begin", str(job_dir))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    assert list(job_dir.iterdir()) == []


def test_begin_with_a_message_writes_starting(job_dir):
    result = helper(job_dir, "begin", str(job_dir), "setting up the environment")
    assert result.returncode == 0, result.stderr
    assert record(job_dir) == {"JOB_STATUS": "STARTING", "URL": "/me", "PORT": None, "SLUG": "lab",
                               "HOST": "127.0.0.1", "ERROR_MESSAGE": "setting up the environment",
                               "JOB_ID": "4242"}


def test_begin_refuses_a_symlinked_dir(tmp_path, job_dir):
    link = tmp_path / "link"
    link.symlink_to(job_dir)
    result = helper(link, "begin", str(link), "setting up")
    assert result.returncode == 1
    assert "symbolic link" in result.stderr and str(link) in result.stderr
    assert list(job_dir.iterdir()) == []


def test_begin_refuses_a_dir_open_to_others(job_dir):
    job_dir.chmod(0o755)
    result = helper(job_dir, "begin", str(job_dir), "setting up")
    assert result.returncode == 1
    assert "mode 0755" in result.stderr and "0700" in result.stderr
    assert list(job_dir.iterdir()) == []


def test_begin_refuses_a_missing_dir_or_a_file(tmp_path):
    missing = helper(tmp_path / "missing", "begin", str(tmp_path / "missing"))
    assert missing.returncode == 1 and "cannot use the job directory" in missing.stderr
    afile = tmp_path / "file"
    afile.write_text("x")
    result = helper(afile, "begin", str(afile))
    assert result.returncode == 1 and "not a directory" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_begin_refuses_another_accounts_dir(job_dir):
    os.chown(job_dir, NOBODY, NOBODY)
    result = helper(job_dir, "begin", str(job_dir), "setting up")
    assert result.returncode == 1
    assert f"belongs to uid {NOBODY}" in result.stderr
    assert list(job_dir.iterdir()) == []


# ---- status


@pytest.mark.parametrize("state", ["STARTING", "RUNNING", "FAILED"])
def test_status_writes_a_record_the_hub_accepts(job_dir, state):
    result = helper(job_dir, "status", state, HOSTILE, PW_PORT="8888", PW_URL="/sme")
    assert result.returncode == 0, result.stderr
    path = job_dir / "service.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in job_dir.iterdir()] == ["service.json"]  # no temporary left behind
    text = path.read_text()
    data = json.loads(text)
    assert data["ERROR_MESSAGE"] == HOSTILE  # exactly, quotes, backslashes, newlines and all
    assert data == {"JOB_STATUS": state, "URL": "/sme", "PORT": 8888, "SLUG": "lab",
                    "HOST": "127.0.0.1", "ERROR_MESSAGE": HOSTILE, "JOB_ID": "4242"}
    parsed = ServiceStatus.from_json(text)
    assert parsed.job_status is JobState[state]
    assert (parsed.url, parsed.port, parsed.slug, parsed.host, parsed.job_id) == \
        ("/sme", 8888, "lab", "127.0.0.1", "4242")
    assert parsed.error_message == clean_message(HOSTILE)


def test_status_without_a_message_or_a_port(job_dir):
    assert helper(job_dir, "status", "STARTING").returncode == 0
    data = record(job_dir)
    assert data["ERROR_MESSAGE"] == "" and data["PORT"] is None
    assert ServiceStatus.from_json((job_dir / "service.json").read_text()).port is None


def test_status_replaces_the_record_whole(job_dir):
    earlier = {"JOB_STATUS": "RUNNING", "PORT": 1, "EXTRA": "x" * 5000}
    (job_dir / "service.json").write_text(json.dumps(earlier))
    assert helper(job_dir, "status", "FAILED", "it broke").returncode == 0
    data = record(job_dir)
    assert data["JOB_STATUS"] == "FAILED" and "EXTRA" not in data


def test_status_wakes_the_hubs_pipe(job_dir):
    pipe = job_dir / "wake"
    os.mkfifo(pipe, 0o600)
    fd = os.open(pipe, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 100)  # empty before
        assert helper(job_dir, "status", "RUNNING", PW_PORT="8888").returncode == 0
        assert os.read(fd, 100) == b"\n"
    finally:
        os.close(fd)
    assert record(job_dir)["JOB_STATUS"] == "RUNNING"


def test_status_with_a_pipe_nobody_reads_is_no_error(job_dir):
    os.mkfifo(job_dir / "wake", 0o600)
    result = helper(job_dir, "status", "RUNNING", timeout=30)
    assert result.returncode == 0, result.stderr
    assert record(job_dir)["JOB_STATUS"] == "RUNNING"


@pytest.mark.parametrize("kind", ["none", "directory"])
def test_status_without_a_pipe_is_no_error(job_dir, kind):
    if kind == "directory":
        (job_dir / "wake").mkdir()
    result = helper(job_dir, "status", "RUNNING")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert record(job_dir)["JOB_STATUS"] == "RUNNING"


def test_status_leaves_a_regular_file_named_wake_as_it_was(job_dir):
    wake = job_dir / "wake"
    wake.write_text("not a pipe\n")
    result = helper(job_dir, "status", "RUNNING")
    assert result.returncode == 0, result.stderr
    assert record(job_dir)["JOB_STATUS"] == "RUNNING"
    # Only the hub's named pipe gets the byte: a file of that name is no pipe, and stays as it was.
    assert wake.read_text() == "not a pipe\n"


@pytest.mark.parametrize("target_kind", ["regular file", "named pipe"])
def test_status_does_not_write_through_a_symlink_named_wake(tmp_path, job_dir, target_kind):
    target = tmp_path / "elsewhere"
    if target_kind == "regular file":
        target.write_text("someone else's\n")
        fd = None
    else:
        os.mkfifo(target, 0o600)
        fd = os.open(target, os.O_RDWR | os.O_NONBLOCK)
    (job_dir / "wake").symlink_to(target)
    try:
        result = helper(job_dir, "status", "RUNNING")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert record(job_dir)["JOB_STATUS"] == "RUNNING"
        if fd is None:
            assert target.read_text() == "someone else's\n"
        else:
            with pytest.raises(BlockingIOError):
                os.read(fd, 100)
    finally:
        if fd is not None:
            os.close(fd)
    assert (job_dir / "wake").is_symlink()


# ---- port


def test_port_prints_a_free_port_and_records_it(job_dir):
    result = helper(job_dir, "port", "127.0.0.1", "starting JupyterLab")
    assert result.returncode == 0, result.stderr
    port = int(result.stdout.strip())
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it is free (the helper's own socket is closed)
    data = record(job_dir)
    assert (data["JOB_STATUS"], data["PORT"]) == ("STARTING", port)
    assert data["ERROR_MESSAGE"] == "starting JupyterLab"


def test_port_without_a_message_writes_no_record(job_dir):
    result = helper(job_dir, "port", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0
    assert not (job_dir / "service.json").exists()


# ---- ready and listen-wait


@pytest.mark.parametrize("via_shell", [False, True], ids=["the-pid-itself", "a-child-of-the-pid"])
def test_ready_with_the_jobs_own_listener_writes_running(job_dir, processes, via_shell):
    proc, port = start_listener(processes, via_shell=via_shell)
    result = helper(job_dir, "ready", str(proc.pid), str(port), "30")
    assert result.returncode == 0, result.stderr
    data = record(job_dir)
    assert (data["JOB_STATUS"], data["PORT"]) == ("RUNNING", port)
    assert ServiceStatus.from_json((job_dir / "service.json").read_text()).port == port


def test_listen_wait_with_the_jobs_own_listener_writes_nothing(job_dir, processes):
    proc, port = start_listener(processes)
    assert helper(job_dir, "listen-wait", str(proc.pid), str(port), "30").returncode == 0
    assert not (job_dir / "service.json").exists()


@pytest.mark.parametrize("command", ["ready", "listen-wait"])
def test_someone_elses_listener_is_exit_3(job_dir, processes, command):
    _, port = start_listener(processes)
    job = start(processes, ["sleep", "120"])
    result = helper(job_dir, command, str(job.pid), str(port), "30")
    assert result.returncode == 3
    assert not (job_dir / "service.json").exists()


@pytest.mark.parametrize("command", ["ready", "listen-wait"])
def test_a_pid_that_ends_first_is_exit_4(job_dir, processes, command):
    job = start(processes, ["sleep", "0.2"])
    result = helper(job_dir, command, str(job.pid), str(free_port()), "60")
    assert result.returncode == 4
    assert not (job_dir / "service.json").exists()


@pytest.mark.parametrize("command", ["ready", "listen-wait"])
def test_nobody_listening_in_time_is_exit_5(job_dir, processes, command):
    job = start(processes, ["sleep", "120"])
    result = helper(job_dir, command, str(job.pid), str(free_port()), "0.3")
    assert result.returncode == 5
    assert job.poll() is None  # it was the timeout, not the process ending
    assert not (job_dir / "service.json").exists()


# ---- secret and the rest


def test_secret_is_48_hex_digits_and_fresh_each_time(job_dir):
    secrets = []
    for _ in range(2):
        result = helper(job_dir, "secret")
        assert result.returncode == 0
        secrets.append(result.stdout.strip())
    for secret in secrets:
        assert len(secret) == 48 and all(c in "0123456789abcdef" for c in secret)
    assert secrets[0] != secrets[1]


def test_unknown_command_is_exit_2(job_dir):
    result = helper(job_dir, "frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr


# ---- who listens on a port (the hub asks the same function, pw_spawner.status.listener_uids)

PROC_NET = ("/proc/net/tcp", "/proc/net/tcp6")


@pytest.mark.parametrize("family", ["ipv4", "ipv6 dual stack"])
def test_netlink_and_proc_net_tcp_name_the_same_listener(family):
    from pw_spawner.templates import job_helper

    if family == "ipv4":
        server = socket.create_server(("127.0.0.1", 0))
    else:
        server = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    with server, socket.socket() as unrelated:
        port = server.getsockname()[1]
        unrelated.bind(("127.0.0.1", 0))
        unrelated.listen()
        inode = os.fstat(server.fileno()).st_ino
        found = job_helper._listening_by_netlink(port)
        assert found == {(os.geteuid(), inode)} == job_helper._listening_in_proc(port, PROC_NET)
        # A connection to it is not a listener.
        with socket.create_connection(("127.0.0.1", port)):
            assert job_helper.listening_sockets(port) == found
    assert job_helper.listening_sockets(port) == set()


def test_without_netlink_the_helper_reads_proc_net_tcp(monkeypatch):
    from pw_spawner.templates import job_helper

    def refused(port):
        raise PermissionError(13, "sock_diag refused")

    monkeypatch.setattr(job_helper, "_listening_by_netlink", refused)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert job_helper.listening_sockets(port) == {(os.geteuid(), os.fstat(server.fileno()).st_ino)}


def test_a_malformed_or_refused_netlink_answer_is_an_error_not_a_listener():
    import struct

    from pw_spawner.templates import job_helper

    found: set = set()
    with pytest.raises(OSError):
        job_helper._read_dump(struct.pack("=IHHII", 8, 20, 0, 1, 0), 80, found)
    with pytest.raises(OSError) as raised:
        job_helper._read_dump(struct.pack("=IHHIIi", 20, 2, 0, 1, 0, -1), 80, found)
    assert raised.value.errno == 1
    assert job_helper._read_dump(struct.pack("=IHHII", 16, 3, 0, 1, 0), 80, found) and not found

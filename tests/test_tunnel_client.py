"""TunnelProcessClient trusts its socket only when no other account can have put it there.

The socket's directory must be the hub's own and closed to others (0700), the socket the hub's own,
and the process answering on it must run as the hub's uid (SO_PEERCRED); otherwise the client
refuses before a byte of a request leaves, and does not start a tunnel process there either.
Tests that need another account (a directory, a socket or a server of ``nobody``) need root.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from support.requirements import require
from support.tunnels import stop_tunnel_process

from pw_spawner.remote.tunnel import TunnelError, TunnelServer
from pw_spawner.remote.tunnel_client import TunnelProcessClient

ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    require("root", os.geteuid() == 0, "a directory, socket or process of another account needs root")
    return pwd.getpwnam("nobody")


@pytest.fixture
def private_dir(tmp_path) -> Path:
    path = tmp_path / "tun"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
async def server(private_dir):
    """A real tunnel server (in this process) on ``private_dir/t.sock``."""
    server = TunnelServer(private_dir / "t.sock")
    await server.start()
    yield server
    await server.stop()


async def test_a_private_directory_and_socket_are_used(server, private_dir):
    client = TunnelProcessClient(private_dir / "t.sock", autostart=False)
    assert (await client.stats())["forwards"] == 0


async def test_a_directory_open_to_others_is_refused(server, private_dir):
    client = TunnelProcessClient(private_dir / "t.sock", autostart=False)
    for mode in (0o755, 0o710, 0o701):
        os.chmod(private_dir, mode)
        with pytest.raises(TunnelError) as raised:
            await client.stats()
        assert str(raised.value) == (f"{private_dir} is mode {mode:04o}; it must be 0700 and owned by {ME}")
    os.chmod(private_dir, 0o700)
    assert (await client.stats())["forwards"] == 0


async def test_autostart_does_not_start_in_a_directory_open_to_others(tmp_path):
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o755)
    client = TunnelProcessClient(directory / "t.sock", autostart=True)
    start = time.monotonic()
    with pytest.raises(TunnelError, match=r"is mode 0755; it must be 0700"):
        await client.stats()
    assert time.monotonic() - start < 2  # refused at once, not after waiting for a process
    assert list(directory.iterdir()) == []  # no log file, no socket: nothing was started


async def test_autostart_makes_a_missing_directory_0700(tmp_path):
    socket_path = tmp_path / "a" / "tunnel" / "t.sock"
    client = TunnelProcessClient(socket_path)
    try:
        assert (await client.stats())["forwards"] == 0
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
        assert os.stat(socket_path.parent).st_uid == os.geteuid()
    finally:
        await stop_tunnel_process(socket_path)


async def test_a_directory_of_another_account_is_refused(server, private_dir, nobody):
    client = TunnelProcessClient(private_dir / "t.sock", autostart=True)
    os.chown(private_dir, nobody.pw_uid, -1)
    with pytest.raises(TunnelError) as raised:
        await client.stats()
    assert str(raised.value) == f"{private_dir} is owned by nobody; it must be 0700 and owned by {ME}"
    os.chmod(private_dir, 0o750)
    with pytest.raises(TunnelError, match=r"is mode 0750 and owned by nobody; it must be 0700"):
        await client.stats()
    os.chown(private_dir, os.geteuid(), -1)
    os.chmod(private_dir, 0o700)
    assert (await client.stats())["forwards"] == 0


async def test_a_socket_of_another_account_is_refused(server, private_dir, nobody):
    socket_path = private_dir / "t.sock"
    os.chown(socket_path, nobody.pw_uid, -1)
    with pytest.raises(TunnelError) as raised:
        await TunnelProcessClient(socket_path, autostart=True).stats()
    assert str(raised.value) == f"{socket_path} is owned by nobody, not by {ME}"


#: A stand-in tunnel process: answers every connection as the real one would answer a ping, and
#: logs how many bytes of request it got.
IMPOSTOR = r"""
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(8)
while True:
    conn, _ = listener.accept()
    got = conn.recv(65536)
    sys.stdout.write("got %d\n" % len(got))
    sys.stdout.flush()
    try:
        conn.sendall(b'{"ok": true, "pid": 4242, "forwards": 0}\n')
    except OSError:
        pass
    conn.close()
"""


@pytest.fixture
def impostor(private_dir, nobody, tmp_path):
    """A server run as nobody whose socket sits, owned by us, in our private directory.

    Only SO_PEERCRED can tell it from the real tunnel process: nobody binds in a directory of its
    own, then (as root) the socket is moved into ours and handed to us.
    """
    own = Path(tempfile.mkdtemp(prefix="pw-impostor-"))
    os.chown(own, nobody.pw_uid, nobody.pw_gid)
    log = tmp_path / "impostor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
             "/usr/bin/python3",  # the venv's interpreter may be out of nobody's reach
             "-c", IMPOSTOR, str(own / "s.sock")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/")
    try:
        deadline = time.monotonic() + 10
        while not (own / "s.sock").exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        os.rename(own / "s.sock", private_dir / "t.sock")
        os.chown(private_dir / "t.sock", os.geteuid(), os.getegid())
        yield proc, log
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(own, ignore_errors=True)


def _ask(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b'{"op": "ping"}\n')
        return sock.recv(4096)


async def test_a_server_of_another_account_is_refused(private_dir, impostor, nobody):
    proc, log = impostor
    socket_path = private_dir / "t.sock"
    # It does answer like a tunnel process would (the client would take its word)...
    assert b'"ok": true' in _ask(socket_path)
    for autostart in (False, True):
        client = TunnelProcessClient(socket_path, autostart=autostart)
        with pytest.raises(TunnelError) as raised:
            await client.stats()
        assert str(raised.value) == (f"{socket_path} is served by process {proc.pid} of nobody, "
                                     f"not by {ME}")
    # ...but the client hung up on it before sending a byte, and started no process of its own.
    deadline = time.monotonic() + 5
    while log.read_text().count("got") < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert log.read_text().split("\n")[:3] == ["got 15", "got 0", "got 0"]
    assert not (private_dir / "t.sock.log").exists()


def test_the_wire_protocol_is_one_module_for_both_sides():
    """Every operation the client asks for is one the process answers, through the same module."""
    from pw_spawner.remote import tunnel, tunnel_client, tunnel_protocol
    from pw_spawner.remote.ssh import SSHTarget

    target = SSHTarget(host="login1", port=22, username="alice", known_hosts="/kh")
    requests = [tunnel_protocol.ping(), tunnel_protocol.list_forwards(), tunnel_protocol.close("k"),
                tunnel_protocol.open_forward("k", target, "node1", 8888),
                tunnel_protocol.reverse_forward("k", target, "0.0.0.0", 0, 8081)]
    assert {r["op"] for r in requests} == {op.value for op in tunnel_protocol.Op}
    for request in requests:
        assert tunnel_protocol.decode(tunnel_protocol.encode(request)) == request
    assert tunnel_protocol.target_from(requests[3]["target"]) == target
    for module in (tunnel, tunnel_client):
        source = Path(module.__file__).read_text()
        assert '"op":' not in source and "json." not in source, module.__name__

"""PWSpawner on a resource reached over SSH: a real OpenSSH on 127.0.0.1, a real tunnel process.

The "login node" is this machine as seen through sshd (as the ordinary account ``pwsshuser`` when
the tests run as root). Jobs run on the ``controller`` target (on the login node itself) and on a
real single-node Slurm submitted through SSH; the hub reaches each app through the tunnel process's
forward on 127.0.0.1, and the job reaches a stand-in hub API through the reverse forward. Faults:
sshd restarted under a running session, an unknown host key, a login node that is down.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from conftest import SIMPLE_PROFILES
from jupyterhub.objects import Hub
from support.tunnels import stop_tunnel_process

from pw_spawner.remote.ssh import close_all

pytestmark = pytest.mark.ssh


def fetch(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def process_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def remote_job_alive(job_dir: str) -> bool:
    try:
        pid = int(Path(job_dir, "job.pid").read_text().split()[0])
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.fixture
async def tunnel_socket(tmp_path_factory):
    """A tunnel process of this test's own (started on first use by the spawner), stopped after."""
    directory = tmp_path_factory.mktemp("tun")
    directory.chmod(0o700)
    path = str(directory / "t.sock")
    yield path
    await stop_tunnel_process(path)


@pytest.fixture
async def remote(ssh_server, ssh_user, spawner_factory, fake_app_for_others, tunnel_socket):
    """make(resource overrides, **traits) -> a spawner on an SSH resource of the test sshd."""
    if not ssh_server.running:
        ssh_server.start()

    def make(resource: dict | None = None, **traits):
        base = {"name": "loop", "display_name": "Loopback login node", "host": "127.0.0.1",
                "port": ssh_server.port, "ssh_user": ssh_user.pw_name,
                "key_file": str(ssh_server.client_key), "known_hosts": str(ssh_server.known_hosts),
                "scheduler": "controller", "job_dir_root": "~/.pw_spawner/jobs"}
        defaults = dict(resources=[{**base, **(resource or {})}], cmd=fake_app_for_others,
                        tunnel_socket=tunnel_socket, status_interval=0.3, stop_timeout=20,
                        user_options={"resource": "loop"})
        return spawner_factory(username="alice", **{**defaults, **traits})

    yield make
    await close_all()


async def test_controller_spawn_through_the_tunnel_then_stop(remote, ssh_user):
    spawner = remote()
    url = await spawner.start()
    assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) == spawner.tunnel_port
    record = fetch(url + "/user/alice/x")
    assert record["user"] == "alice" and record["has_token"]
    # The job runs on the login node as the SSH account, in its home.
    assert spawner.job.job_dir.startswith(ssh_user.pw_dir + "/")
    stats = await spawner.tunnels().stats()
    assert stats["forwards_up"] == 1 and stats["connections_open"] == 1
    assert await spawner.poll() is None
    state = spawner.get_state()["pw_spawner"]
    assert state["resource"] == "loop" and state["tunnel_port"] == spawner.tunnel_port
    port, job_dir = spawner.tunnel_port, spawner.job.job_dir
    await spawner.stop()
    assert refused(port), "stop must close the tunnel"
    assert not remote_job_alive(job_dir)
    assert (await spawner.tunnels().stats())["forwards"] == 0


async def test_hub_restart_reopens_the_tunnel_on_the_same_port(remote):
    first = remote()
    url = await first.start()
    state = first.get_state()
    # The tunnel process forgets the forward (as after its own restart); a new hub re-attaches.
    await first.tunnels().close(first.tunnel_key)
    port = first.tunnel_port
    assert refused(port)
    second = remote()
    second.load_state(state)
    assert await second.poll() is None
    assert fetch(url + "/again")["user"] == "alice"
    assert second.tunnel_port == port
    first.job = None  # the second spawner owns the job now
    await second.stop()


async def test_tunnel_returns_after_sshd_restart_and_the_session_is_kept(remote, ssh_server):
    spawner = remote()
    url = await spawner.start()
    job_id = spawner.job.job_id
    ssh_server.stop()
    began = time.monotonic()
    ssh_server.start()
    while True:
        try:
            record = fetch(url + "/back", timeout=2)
            break
        except OSError:
            assert time.monotonic() - began < 30, "the tunnel did not come back within 30 s"
            await asyncio.sleep(0.2)
    back_after = time.monotonic() - began
    print(f"tunnel back {back_after:.2f} s after sshd restarted")
    assert record["user"] == "alice"
    assert spawner.job.job_id == job_id and await spawner.poll() is None
    await spawner.stop()


async def test_unknown_host_key_is_refused_with_a_clear_message(remote, ssh_server, tmp_path):
    spawner = remote({"known_hosts": str(ssh_server.foreign_known_hosts(tmp_path / "kh"))})
    with pytest.raises(Exception) as raised:
        await spawner.start()
    message = getattr(raised.value, "jupyterhub_message", str(raised.value))
    assert "host key verification failed" in message and spawner.job is None


async def test_login_node_down_is_a_clear_error_and_submits_nothing(remote, ssh_server):
    spawner = remote({"host": None, "hosts": ["127.0.0.1"], "port": _free_port()})
    with pytest.raises(Exception) as raised:
        await spawner.start()
    message = getattr(raised.value, "jupyterhub_message", str(raised.value))
    assert "could not be reached" in message and "connection refused" in message
    assert spawner.job is None


async def test_second_login_node_is_used_when_the_first_is_down(remote):
    # sshd listens on 127.0.0.1 only: 127.0.0.2 (loopback too) refuses.
    spawner = remote({"host": None, "hosts": ["127.0.0.2", "127.0.0.1"]})
    url = await spawner.start()
    assert spawner.ssh_host == "127.0.0.1" and fetch(url)["user"] == "alice"
    await spawner.stop()


async def test_many_sessions_share_one_ssh_connection(remote):
    spawners = [remote() for _ in range(5)]
    for i, spawner in enumerate(spawners):
        spawner.user.name = spawner.user.escaped_name = f"user{i}"
    urls = await asyncio.gather(*(s.start() for s in spawners))
    assert len(set(urls)) == 5
    stats = await spawners[0].tunnels().stats()
    assert stats["forwards_up"] == 5 and stats["connections_opened"] == 1
    await asyncio.gather(*(s.stop() for s in spawners))


class _HubAPI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"version": "stand-in hub"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_job_reaches_the_hub_api_through_the_reverse_forward(remote):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubAPI)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        spawner = remote({"hub_api_forward": {"bind_host": "127.0.0.1", "connect_host": "127.0.0.1"}})
        spawner.hub = Hub(ip="127.0.0.1", port=server.server_address[1], base_url="/hub/")
        url = await spawner.start()
        seen = fetch(url + "/hub-check")["hub_api"]
        assert seen.get("status") == 200, seen
        # The job was given the login node's end of the forward, not the hub's own port.
        assert f":{server.server_address[1]}/" not in seen["url"] and seen["url"].endswith("/hub/api")
        await spawner.stop()
    finally:
        server.shutdown()


async def test_hub_connect_url_is_what_the_job_is_given(remote):
    spawner = remote({"hub_connect_url": "http://hub.example.org:8081"},
                     environment={"PW_FAKE_APP_SHOW": "JUPYTERHUB_API_URL,JUPYTERHUB_ACTIVITY_URL"})
    spawner.hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    env = fetch(await spawner.start())["env"]
    assert env["JUPYTERHUB_API_URL"] == "http://hub.example.org:8081/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"].startswith("http://hub.example.org:8081/hub/api/users/alice/")
    await spawner.stop()


async def test_slurm_through_ssh(remote, slurm_cluster, ssh_user):
    spawner = remote({"scheduler": "slurm", "env": {"SLURM_CONF": str(slurm_cluster.conf_path)}},
                     profile_list=SIMPLE_PROFILES)
    url = await spawner.start()
    assert fetch(url)["user"] == "alice"
    line = slurm_cluster.run("squeue", "-h", "-j", spawner.job.job_id, "-o", "%u|%T").stdout.strip()
    assert line == f"{ssh_user.pw_name}|RUNNING"
    job_id = spawner.job.job_id
    await spawner.stop()
    assert "RUNNING" not in slurm_cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_killed_tunnel_process_is_restarted_and_the_forward_reopened_by_poll(remote):
    spawner = remote()
    url = await spawner.start()
    port = spawner.tunnel_port
    pid = (await spawner.tunnels().stats())["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not process_exists(pid):
            break
        await asyncio.sleep(0.05)
    assert refused(port)
    # The hub's next poll starts a new tunnel process and asks for the same port again.
    assert await spawner.poll() is None
    assert (await spawner.tunnels().stats())["pid"] != pid
    assert spawner.tunnel_port == port and fetch(url)["user"] == "alice"
    await spawner.stop()


async def test_inline_tunnels_run_in_the_hub_process(remote):
    spawner = remote(tunnel_mode="inline")
    url = await spawner.start()
    stats = await spawner.tunnels().stats()
    assert stats["pid"] == os.getpid() and stats["forwards_up"] == 1
    # The forward runs on this event loop: fetch from a thread so the loop can serve it.
    assert (await asyncio.to_thread(fetch, url))["user"] == "alice"
    port = spawner.tunnel_port
    await spawner.stop()
    assert refused(port)

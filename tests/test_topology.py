"""The tunnel across real hosts: hub, login node and compute node in three network namespaces.

Loopback tests cannot tell a forward that crosses hosts from a direct connection. Here the hosts
are separate network stacks linked as on a cluster::

    hub 10.231.1.1 ---- 10.231.1.2 login 10.231.2.1 ---- 10.231.2.2 node
    (tunnel process,     (sshd, GatewayPorts             (the app, standing in
     stand-in hub API)    clientspecified)                for a user's server)

Nothing routes between hub and node, and the test first proves it: each side fails to connect to
a listener the login node does reach. Then the real tunnel process, in the hub namespace, opens
a local forward to the app through the login node's sshd and a reverse forward of the stand-in
hub API bound on the login node's node-side address. The app's answer arriving on 127.0.0.1 in
the hub, and the app's own GET of JUPYTERHUB_API_URL reaching the hub API, can then only have
travelled through the SSH connection: the tunnel and the hub-API reverse forward cross hosts.
Last, a whole PWSpawner runs on the hub host (the test's thread enters the hub namespace) with the
``controller`` target: its job starts on the login node over SSH, the tunnel process it starts
runs on the hub, and the job reaches the hub API through the reverse forward.

Needs root (namespaces) and OpenSSH's sshd; skipped without them outside CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SIMPLE_PROFILES
from jupyterhub.objects import Hub
from support.netns import Topology, netns_available
from support.requirements import require
from support.sshd import SSHServer, ensure_login_user, sshd_available

from pw_spawner.remote.ssh import SSHTarget, close_all
from pw_spawner.remote.tunnel import TunnelError
from pw_spawner.remote.tunnel_client import TunnelProcessClient
from pw_spawner.testing.spawners import make_spawner

pytestmark = pytest.mark.ssh

HUB_ADDR, LOGIN_HUB_SIDE = "10.231.1.1", "10.231.1.2"
LOGIN_NODE_SIDE, NODE_ADDR = "10.231.2.1", "10.231.2.2"
#: Fixed ports are safe: every namespace is new, so nothing else listens in it.
APP_PORT = 8765
HUB_API_FORWARD_PORT = 18081
PROBE_PORT = 9999


def connect_error(host: str, port: int, timeout: float = 2) -> str | None:
    """None when a TCP connection to host:port succeeds, else why not (run inside a namespace)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))


def http_get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(check, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


@pytest.fixture
def topology() -> Iterator[Topology]:
    """hub <-> login <-> node; the namespaces and everything in them go at teardown, even on failure."""
    ok, why = netns_available()
    require("netns", ok, why)
    ok, why = sshd_available()
    require("sshd", ok, why)
    with Topology() as topo:
        for role in ("hub", "login", "node"):
            topo.add(role)
        topo.link("hub", HUB_ADDR, "login", LOGIN_HUB_SIDE)
        topo.link("login", LOGIN_NODE_SIDE, "node", NODE_ADDR)
        yield topo
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert topo.prefix not in leftover, f"namespaces left behind:\n{leftover}"


@pytest.fixture
def login_sshd(topology, tmp_path) -> Iterator[SSHServer]:
    """The login node's sshd, on its hub-side address; reverse forwards may bind beyond loopback."""
    server = SSHServer(tmp_path / "sshd", listen=LOGIN_HUB_SIDE, netns=topology.name("login"),
                       extra_config=["GatewayPorts clientspecified"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


class HubAPI:
    """The stand-in hub API: a listener on 127.0.0.1 in the hub namespace, served from this process."""

    def __init__(self, topology: Topology) -> None:
        self.nonce = secrets.token_hex(8)
        self.peers: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.peers.append(self.client_address[0])
                body = json.dumps({"stand_in_hub": api.nonce, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        # Made inside the namespace, the listening socket stays there whichever thread serves it.
        self.server = topology.call("hub", ThreadingHTTPServer, ("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_api(topology) -> Iterator[HubAPI]:
    api = HubAPI(topology)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def node_app(topology, fake_app_for_others, tmp_path) -> Iterator[Path]:
    """The app on the compute node, told to find the hub API at the login node's reverse forward."""
    env = {"PATH": "/usr/bin:/bin", "JUPYTERHUB_USER": "alice", "JUPYTERHUB_API_TOKEN": "t0ken",
           "JUPYTERHUB_API_URL": f"http://{LOGIN_NODE_SIDE}:{HUB_API_FORWARD_PORT}/hub/api/"}
    log = tmp_path / "app.log"
    proc = topology.popen("node", [*fake_app_for_others, "--ip", NODE_ADDR, "--port", str(APP_PORT)],
                          env=env, log_path=log)
    wait_until(lambda: proc.poll() is not None
               or topology.call("node", connect_error, NODE_ADDR, APP_PORT) is None,
               "the app listens on the node")
    assert proc.poll() is None, f"the app exited: {log.read_text()}"
    return log


@pytest.fixture
async def tunnel(topology, tmp_path_factory) -> TunnelProcessClient:
    """The real tunnel process, started in the hub namespace; its API socket is reachable from here
    (unix sockets are not network-namespaced). Killed with the topology."""
    directory = tmp_path_factory.mktemp("tun")
    directory.chmod(0o700)
    socket_path = directory / "t.sock"
    log = Path(f"{socket_path}.log")
    proc = topology.popen("hub", [sys.executable, "-m", "pw_spawner.remote.tunnel",
                                  "--socket", str(socket_path)], log_path=log)
    client = TunnelProcessClient(socket_path, autostart=False, timeout=20)
    deadline = time.monotonic() + 10
    while True:
        try:
            await client.stats()
            break
        except (OSError, TunnelError):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = log.read_text()  # noqa: ASYNC240 - a failing test's last words
                raise AssertionError(f"the tunnel process did not come up: {why}") from None
            await asyncio.sleep(0.05)
    return client


def test_hub_and_node_cannot_reach_each_other(topology):
    # Listeners the login node can reach, so a failure below is the missing route, not a closed port.
    with contextlib.ExitStack() as stack:
        for role, addr in (("hub", HUB_ADDR), ("node", NODE_ADDR)):
            listener = topology.call(role, socket.create_server, (addr, PROBE_PORT))
            stack.enter_context(listener)
        assert topology.call("login", connect_error, HUB_ADDR, PROBE_PORT) is None
        assert topology.call("login", connect_error, NODE_ADDR, PROBE_PORT) is None
        assert topology.call("hub", connect_error, NODE_ADDR, PROBE_PORT) is not None
        assert topology.call("node", connect_error, HUB_ADDR, PROBE_PORT) is not None
        # (Not checked from the test's own namespace: a sandbox's default route may lead to a proxy
        # that accepts any TCP connection; the namespaces have no default route at all.)


async def test_tunnel_and_hub_api_reverse_forward_cross_hosts(
        topology, login_sshd, hub_api, node_app, tunnel):
    # The premise: the hub cannot reach the app, nor the app the hub, except through the login node.
    assert topology.call("hub", connect_error, NODE_ADDR, APP_PORT) is not None
    assert topology.call("node", connect_error, HUB_ADDR, login_sshd.port) is not None
    assert topology.call("hub", connect_error, LOGIN_HUB_SIDE, login_sshd.port) is None

    target = SSHTarget(host=LOGIN_HUB_SIDE, port=login_sshd.port, username=login_sshd.user,
                       known_hosts=str(login_sshd.known_hosts), key_file=str(login_sshd.client_key))
    local_port = await tunnel.open("topo-app", target, NODE_ADDR, APP_PORT)
    bound = await tunnel.reverse("topo-hub-api", target, LOGIN_NODE_SIDE, HUB_API_FORWARD_PORT,
                                 hub_api.port)
    assert bound == HUB_API_FORWARD_PORT

    # The app answers on 127.0.0.1 of the hub, through the login node's sshd.
    record = topology.call("hub", http_get, f"http://127.0.0.1:{local_port}/user/alice/x")
    assert record["user"] == "alice" and record["has_token"] and record["path"] == "/user/alice/x"

    # The app, on the node, reaches the hub API through the reverse forward on the login node.
    record = topology.call("hub", http_get, f"http://127.0.0.1:{local_port}/user/alice/hub-check")
    check = record["hub_api"]
    assert check.get("status") == 200, check
    assert check["url"] == f"http://{LOGIN_NODE_SIDE}:{HUB_API_FORWARD_PORT}/hub/api/"
    assert json.loads(check["body"]) == {"stand_in_hub": hub_api.nonce, "path": "/hub/api/"}
    # It arrived from the tunnel process on the hub's loopback, not from the node's address.
    assert hub_api.peers == ["127.0.0.1"]
    # sshd saw the hub's address as its client: the SSH connection itself crossed hub -> login.
    assert f"from {HUB_ADDR} port" in login_sshd.log.read_text()

    stats = await tunnel.stats()
    assert stats["forwards_up"] == 2 and stats["connections_open"] == 1

    # Closing the forwards closes both ends: no listener on the hub, none on the login node.
    assert await tunnel.close("topo-app") and await tunnel.close("topo-hub-api")
    assert topology.call("hub", connect_error, "127.0.0.1", local_port) is not None
    wait_until(lambda: topology.call("node", connect_error, LOGIN_NODE_SIDE, HUB_API_FORWARD_PORT)
               is not None, "the reverse forward's port closes on the login node")


@pytest.fixture
def on_the_hub(topology) -> Iterator[None]:
    """This test's own thread (its event loop) on the hub host: the spawner's SSH connections and
    the tunnel process it starts are then the hub's. Left before the namespaces go."""
    before = os.stat("/proc/thread-self/ns/net").st_ino
    with topology.entered("hub"):
        yield
    assert os.stat("/proc/thread-self/ns/net").st_ino == before, "the test thread must come back"


async def test_spawner_on_the_hub_reaches_its_app_and_the_app_the_hub_api(
        topology, login_sshd, hub_api, fake_app_for_others, tmp_path, on_the_hub):
    # The spawner, on the hub host, with the controller target: the job runs on the login node.
    assert connect_error(NODE_ADDR, APP_PORT, timeout=1) is not None  # we are on the hub now
    user = ensure_login_user()
    tunnel_dir = tmp_path / "tun"
    tunnel_dir.mkdir(mode=0o700)
    resource = {"name": "topo", "host": LOGIN_HUB_SIDE, "port": login_sshd.port, "ssh_user": user.pw_name,
                "key_file": str(login_sshd.client_key), "known_hosts": str(login_sshd.known_hosts),
                "scheduler": "controller", "job_dir_root": "~/.pw_spawner/jobs",
                "hub_api_forward": {"bind_host": LOGIN_NODE_SIDE, "bind_port": HUB_API_FORWARD_PORT,
                                    "connect_host": LOGIN_NODE_SIDE}}
    # One SSH test account stands for every user here.
    spawner = make_spawner(profile_list=SIMPLE_PROFILES, resources=[resource], cmd=fake_app_for_others,
                           allow_shared_account=True,
                           tunnel_socket=str(tunnel_dir / "t.sock"), status_interval=0.2,
                           stop_timeout=15, user_options={"resource": "topo"})
    spawner.hub = Hub(ip="127.0.0.1", port=hub_api.port, base_url="/hub/")
    try:
        url = await asyncio.wait_for(spawner.start(), 20)
        assert url == f"http://127.0.0.1:{spawner.tunnel_port}"
        check = (await asyncio.to_thread(topology.call, "hub", http_get, url + "/user/alice/hub-check"))
        assert check["user"] == "alice"
        seen = check["hub_api"]
        assert seen.get("status") == 200, seen
        assert seen["url"] == f"http://{LOGIN_NODE_SIDE}:{HUB_API_FORWARD_PORT}/hub/api"
        assert json.loads(seen["body"])["stand_in_hub"] == hub_api.nonce
        # The job runs on the login node, the tunnel process the spawner started on the hub host.
        pid_file = Path(spawner.job.job_dir, "job.pid")  # the login node's home is this machine's
        job_pid = int((await asyncio.to_thread(pid_file.read_text)).split()[0])
        assert job_pid in topology.pids("login")
        pid = (await spawner.tunnels().stats())["pid"]
        assert pid in topology.pids("hub")
        await spawner.stop()
        assert spawner.job is None
    finally:
        if spawner.job is not None:
            with contextlib.suppress(Exception):
                await spawner.stop()
        await close_all()


async def test_reverse_forward_without_gatewayports_is_an_error_not_a_dead_url(topology, hub_api, tunnel,
                                                                                tmp_path):
    # OpenSSH's default GatewayPorts no: sshd accepts the request but binds loopback only.
    server = SSHServer(tmp_path / "sshd-default", listen=LOGIN_HUB_SIDE, netns=topology.name("login"))
    server.start()
    try:
        target = SSHTarget(host=LOGIN_HUB_SIDE, port=server.port, username=server.user,
                           known_hosts=str(server.known_hosts), key_file=str(server.client_key))
        with pytest.raises(TunnelError, match="GatewayPorts clientspecified"):
            await tunnel.reverse("topo-hub-api", target, LOGIN_NODE_SIDE, HUB_API_FORWARD_PORT,
                                 hub_api.port)
        assert (await tunnel.stats())["forwards"] == 0
    finally:
        server.stop()

"""A real JupyterHub and configurable-http-proxy routing to an app through the SSH tunnel process.

The resource is the test sshd on 127.0.0.1 (a real OpenSSH, as ``pwsshuser`` when run as root),
with the ``controller`` target: the job runs on the "login node" and the proxy's route for the
user points at the tunnel process's forward on 127.0.0.1. The app is the fake app under Debian's
python3 (the job's account cannot use the test venv); jupyterhub-singleuser's own authentication
is covered by tests/test_hub.py. The hub restart keeps the job and its tunnel: the tunnel process
is not the hub's child.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from support.hub import HubProcess, hub_available, running_hub, timing
from support.requirements import require
from support.tunnels import stop_tunnel_process

from pw_spawner.remote.tunnel_client import TunnelProcessClient

pytestmark = [pytest.mark.hub, pytest.mark.ssh]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, ssh_server, ssh_user, fake_app_for_others):
    ok, why = hub_available()
    require("hub", ok, why)
    if not ssh_server.running:
        ssh_server.start()
    tunnel_dir = tmp_path_factory.mktemp("tunnel")
    tunnel_dir.chmod(0o700)
    resource = {"name": "loop", "display_name": "Loopback login node", "host": "127.0.0.1",
                "port": ssh_server.port, "ssh_user": ssh_user.pw_name,
                "key_file": str(ssh_server.client_key), "known_hosts": str(ssh_server.known_hosts),
                "scheduler": "controller", "job_dir_root": "~/.pw_spawner/hubjobs"}
    profile = {"slug": "plain", "display_name": "Plain", "job": {"cores": 1}}
    extra = f"""
c.JupyterHub.cleanup_servers = False
c.PWSpawner.resources = [{resource!r}]
c.PWSpawner.profile_list = [{profile!r}]
c.PWSpawner.cmd = {fake_app_for_others!r}
c.PWSpawner.args = []
c.PWSpawner.default_url = ""
c.PWSpawner.tunnel_socket = {str(tunnel_dir / "tunnel.sock")!r}
c.PWSpawner.status_interval = 0.3
"""
    with running_hub(tmp_path_factory.mktemp("hub-ssh"), extra_config=extra) as hub:
        hub.tunnel_socket = str(tunnel_dir / "tunnel.sock")
        yield hub
    # The tunnel process outlives hubs by design; the test stops its own.
    asyncio.run(stop_tunnel_process(tunnel_dir / "tunnel.sock"))


def _forwards(hub: HubProcess) -> list[dict]:
    return asyncio.run(TunnelProcessClient(hub.tunnel_socket, autostart=False).forwards())


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_route_through_the_tunnel_survives_a_hub_restart_and_stop_closes_it(hub: HubProcess) -> None:
    user = "ssh-user"
    assert hub.api("POST", f"/users/{user}").status in (201, 409)
    started = time.monotonic()
    resp = hub.api("POST", f"/users/{user}/server", {"profile": "plain", "resource": "loop"})
    assert resp.status in (201, 202), f"{resp.status} {resp.text}\n{hub.log_tail()}"
    hub.wait_ready(user, timeout=90)
    timing("REST spawn-to-ready through SSH", time.monotonic() - started)

    token = hub.user_token(user)
    resp = hub.get(f"/user/{user}/probe", token=token)
    assert resp.status == 200 and resp.json()["user"] == user, f"{resp.status} {resp.text[:300]}"
    forwards = _forwards(hub)
    assert [f["key"] for f in forwards] == [f"{user}/"] and forwards[0]["up"]
    port = forwards[0]["local_port"]

    # The hub and its proxy go; the job and the tunnel process stay.
    hub.stop(stop_servers=False)
    hub.start(timeout=60)
    timing("hub restart (SSH resource)", hub.start_seconds)
    deadline = time.monotonic() + 30
    while (resp := hub.get(f"/user/{user}/probe", token=token)).status != 200:
        assert time.monotonic() < deadline, f"not reachable after the restart: {resp.status}"
        time.sleep(0.5)
    assert resp.json()["user"] == user
    assert [f["local_port"] for f in _forwards(hub)] == [port], "the route must keep its port"

    resp = hub.api("DELETE", f"/users/{user}/server")
    assert resp.status in (202, 204), resp.text
    hub.wait_gone(user, timeout=60)
    assert hub.get(f"/user/{user}/probe", token=token, follow_redirects=False).status != 200
    assert _forwards(hub) == [] and _refused(port)

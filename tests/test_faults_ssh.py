"""Fault suite: the SSH connection under a running session is cut again and again.

A session runs on the ``controller`` target of the session's real OpenSSH on 127.0.0.1 (the app on
the "login node", reached through the tunnel process's forward). The test kills every connection sshd
serves (as a dropped network or a restarted firewall would) several times while sshd keeps listening.
Each time, the tunnel process alone must bring the forward back on the same port, so the proxy's
route stays valid: the app must answer through it again within RECOVERY seconds, before the hub
would poll. A session that does not come back, or whose job ended, counts as lost.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from support.tunnels import stop_tunnel_process

from pw_spawner.remote.ssh import close_all

pytestmark = [pytest.mark.faults, pytest.mark.ssh]
DROPS = 3
RECOVERY = 5.0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read()).get("user") == "alice"
    except (OSError, ValueError):
        return False


@pytest.fixture
async def tunnel_socket(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("fault-tun")
    directory.chmod(0o700)
    path = str(directory / "t.sock")
    try:
        yield path
    finally:
        await stop_tunnel_process(path)
        await close_all()


async def test_repeated_connection_drops_keep_the_session(ssh_server, ssh_user, spawner_factory,
                                                          fake_app_for_others, tunnel_socket, faults) -> None:
    faults.case()
    if not ssh_server.running:
        ssh_server.start()
    resource = {"name": "loop", "display_name": "Loopback login node", "host": "127.0.0.1",
                "port": ssh_server.port, "ssh_user": ssh_user.pw_name, "key_file": str(ssh_server.client_key),
                "known_hosts": str(ssh_server.known_hosts), "scheduler": "controller",
                "job_dir_root": "~/.pw_spawner/jobs"}
    spawner = spawner_factory(resources=[resource], cmd=fake_app_for_others, tunnel_socket=tunnel_socket,
                              status_interval=0.3, stop_timeout=20, user_options={"resource": "loop"})
    url = await spawner.start()
    job_id, port = spawner.job.job_id, spawner.tunnel_port
    assert answers(url), "the app did not answer through the tunnel before any drop"
    tunnels = spawner.tunnels()

    back_after = []
    for drop in range(1, DROPS + 1):
        opened = (await tunnels.stats())["connections_opened"]
        killed = ssh_server.drop_sessions()
        assert killed > 0, "sshd served no connection to drop"
        began = time.monotonic()
        while True:
            # Back means: a new SSH connection, and the app answering on the old port through it.
            reconnected = (await tunnels.stats())["connections_opened"] > opened
            if reconnected and await asyncio.to_thread(answers, url):
                back_after.append(time.monotonic() - began)
                break
            if time.monotonic() - began > RECOVERY:
                faults.record("lost sessions", 1, f"drop {drop}: the app did not answer through the tunnel "
                              f"within {RECOVERY} s (reconnected: {reconnected}); "
                              f"forwards {await tunnels.forwards()}")
                break
            await asyncio.sleep(0.1)
    print("tunnel back after each drop: " + ", ".join(f"{s:.2f} s" for s in back_after))

    # The hub's next poll: the same job, running, on the same port.
    status = await spawner.poll()
    same = spawner.job is not None and spawner.job.job_id == job_id and spawner.tunnel_port == port
    if status is not None or not same:
        faults.record("lost sessions", 1, f"after {DROPS} drops poll() says {status}, job "
                      f"{spawner.job}, port {spawner.tunnel_port} (was {job_id}, {port})")
    faults.check()
    assert answers(url)
    await spawner.stop()

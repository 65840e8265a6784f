"""Tunnel faults that OpenSSH cannot be made to show on cue, against asyncssh's own SSH server.

The server runs in the test's event loop on 127.0.0.1 with a generated host key, and refuses
what a locked-down login node refuses: remote forwards (no ``GatewayPorts``/``AllowTcpForwarding
remote``) and, in the second test, direct TCP channels to the nodes.
"""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from pw_spawner.remote.ssh import SSHTarget, close_all
from pw_spawner.remote.tunnel import TunnelError, TunnelService

pytestmark = pytest.mark.ssh


class _LockedDown(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # public key auth, checked against authorized_client_keys

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "forwarding is off here")


@pytest.fixture
async def locked_down(tmp_path):
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(tmp_path / "id"))
    server = await asyncssh.create_server(
        _LockedDown, "127.0.0.1", 0, server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()))
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    target = SSHTarget(host="127.0.0.1", port=port, username="tester",
                       known_hosts=str(tmp_path / "known_hosts"), key_file=str(tmp_path / "id"))
    yield target
    await close_all()
    server.close()
    await server.wait_closed()


async def test_a_refused_reverse_forward_says_what_sshd_needs(locked_down):
    service = TunnelService()
    with pytest.raises(TunnelError) as raised:
        await service.open_remote("hub-api", locked_down, "0.0.0.0", 0, 8081)
    assert "refused to listen" in str(raised.value) and "GatewayPorts clientspecified" in str(raised.value)
    assert service.forwards == {}
    await service.shutdown()


async def test_a_refused_channel_closes_the_client_connection_not_the_forward(locked_down):
    service = TunnelService()
    port = await service.open_local("alice/", locked_down, "node1", 8888)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # The login node refuses the channel: this client's connection ends, nothing hangs ...
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # ... and the forward stays, for when the app (or the policy) allows it.
    assert service.stats()["forwards_up"] == 1
    await service.shutdown()


async def test_a_silent_login_node_does_not_hold_up_other_clusters(locked_down, tmp_path):
    # A login node that takes the TCP connection and never speaks SSH (a hung sshd, a firewall).
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    hung = SSHTarget(host="127.0.0.1", port=silent.sockets[0].getsockname()[1], username="x",
                     known_hosts=locked_down.known_hosts, key_file=locked_down.key_file)
    service = TunnelService(connect_timeout=30)
    try:
        stuck = asyncio.ensure_future(service.open_local("bob/", hung, "node2", 8888))
        await asyncio.sleep(0.2)
        # Opening and closing on the healthy cluster goes on while the other one hangs.
        port = await service.open_local("alice/", locked_down, "node1", 8888)
        assert port and not stuck.done()
        assert await service.close("alice/") and not stuck.done()
        stuck.cancel()
    finally:
        silent.close()
        await service.shutdown()

"""Stopping a tunnel process that a test started (it is detached by design and outlives its hub)."""

from __future__ import annotations

import asyncio
import os
import signal

from pw_spawner.remote.tunnel import TunnelError
from pw_spawner.remote.tunnel_client import TunnelProcessClient


async def stop_tunnel_process(socket_path: str | os.PathLike[str], timeout: float = 5) -> None:
    """SIGTERM the tunnel process serving ``socket_path`` (if one does) and wait until it is gone."""
    try:
        pid = (await TunnelProcessClient(socket_path, autostart=False).stats())["pid"]
    except (OSError, TunnelError):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(int(timeout / 0.1)):
        if not _exists(pid):
            return
        await asyncio.sleep(0.1)


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")

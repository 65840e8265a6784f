"""The tunnel process's API, both sides of it: operations, the requests that ask for them, and
how a message travels (one JSON object per line on a unix socket).

The hub (:mod:`.tunnel_client`) builds requests with the functions below and reads answers with
:func:`decode`; the tunnel process (:mod:`.tunnel`) reads requests with :func:`decode` and writes
answers with :func:`encode`. An answer has ``ok`` (true or false) and, when false, ``error``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict
from typing import Any

from .ssh_pool import SSHTarget

#: The longest line either side reads (a request names a target and a few ports).
MAX_REQUEST = 64 * 1024


class Op(str, enum.Enum):
    """What a request asks for (its ``op``)."""

    #: Is the process alive; its counters.
    PING = "ping"
    #: Every forward it holds.
    LIST = "list"
    #: A local forward 127.0.0.1:<port> on the hub host to a host and port behind a login node.
    OPEN = "open"
    #: A remote forward on a login node to a port on the hub host (the hub's API for jobs).
    REVERSE = "reverse"
    #: End one key's forwards.
    CLOSE = "close"


def ping() -> dict[str, Any]:
    return {"op": Op.PING.value}


def list_forwards() -> dict[str, Any]:
    return {"op": Op.LIST.value}


def open_forward(key: str, target: SSHTarget, remote_host: str, remote_port: int,
                 local_port: int = 0) -> dict[str, Any]:
    """Answer: ``local_port``."""
    return {"op": Op.OPEN.value, "key": key, "target": asdict(target), "remote_host": remote_host,
            "remote_port": remote_port, "local_port": local_port}


def reverse_forward(key: str, target: SSHTarget, bind_host: str, bind_port: int,
                    local_port: int) -> dict[str, Any]:
    """Answer: ``remote_port``."""
    return {"op": Op.REVERSE.value, "key": key, "target": asdict(target), "bind_host": bind_host,
            "bind_port": bind_port, "local_port": local_port}


def close(key: str) -> dict[str, Any]:
    """Answer: ``closed`` (whether there was anything to close)."""
    return {"op": Op.CLOSE.value, "key": key}


def failure(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def encode(message: dict[str, Any]) -> bytes:
    """One message as the line that carries it."""
    return json.dumps(message).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The message a line carries; ValueError when it is not one JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


def target_from(data: Any) -> SSHTarget:
    """An :class:`SSHTarget` from a request's ``target`` (the dataclass's fields)."""
    if not isinstance(data, dict):
        raise ValueError("target must be an object")
    try:
        return SSHTarget(host=str(data["host"]), port=int(data["port"]), username=str(data["username"]),
                         known_hosts=str(data["known_hosts"]), key_file=data.get("key_file"),
                         agent_path=data.get("agent_path"))
    except KeyError as exc:
        raise ValueError(f"target lacks {exc.args[0]}") from None

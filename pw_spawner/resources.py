"""Resources: the clusters an admin declares, and how the hub reaches each one over SSH.

A resource names its login node(s), the SSH account (a fixed service account, or ``{username}``
for the hub user's own), a key file or an ssh-agent, the known_hosts file its host keys are checked
against, its scheduler (``slurm``, ``pbs``, ``torque``, or ``controller`` to run the app on the
login node itself), where job directories go, which profiles and groups it serves, and how its jobs
reach the hub's API (a direct ``hub_connect_url``, or a reverse forward through the SSH connection).
Errors name the resource and the key, like profile errors do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .profiles import ENV_NAME_RE
from .remote.ssh_pool import SSHTarget
from .schedulers import resource_scheduler_kinds

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
_KEYS = ("name", "display_name", "host", "hosts", "port", "ssh_user", "key_file", "agent_path",
         "known_hosts", "scheduler", "job_dir_root", "profiles", "groups", "env",
         "hub_connect_url", "hub_api_forward")
_FORWARD_KEYS = ("bind_host", "bind_port", "connect_host")


class ResourceError(ValueError):
    """A resource in the configuration is wrong: names the resource and the key."""

    def __init__(self, resource: str, key: str, reason: str):
        self.resource, self.key, self.reason = resource, key, reason
        super().__init__(f"resources[{resource}]: {key}: {reason}")


@dataclass(frozen=True)
class HubAPIForward:
    """A reverse forward of the hub's API to the login node, for jobs that cannot reach the hub."""

    #: Where sshd on the login node listens (beyond loopback: GatewayPorts clientspecified).
    bind_host: str = "127.0.0.1"
    #: 0: the port sshd picks (kept across reconnects).
    bind_port: int = 0
    #: The name or address of the login node as compute nodes reach it.
    connect_host: str = ""


@dataclass(frozen=True)
class Resource:
    """One cluster (or one login node running apps itself) reachable over SSH."""

    name: str
    display_name: str
    hosts: tuple[str, ...]
    known_hosts: str
    scheduler: str
    port: int = 22
    ssh_user: str = "{username}"
    key_file: str | None = None
    agent_path: str | None = None
    job_dir_root: str | None = None
    profiles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    hub_connect_url: str = ""
    hub_api_forward: HubAPIForward | None = None

    def allowed_for(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))

    def offers(self, profile_slug: str) -> bool:
        return not self.profiles or profile_slug in self.profiles

    def target(self, host: str, username: str) -> SSHTarget:
        """The SSH target for ``host`` as the hub user ``username`` maps to."""
        def fill(value: str | None) -> str | None:
            return value.format(username=username) if value is not None else None

        return SSHTarget(host=host, port=self.port, username=fill(self.ssh_user) or username,
                         known_hosts=self.known_hosts, key_file=fill(self.key_file),
                         agent_path=fill(self.agent_path))


def resource_from_dict(data: Any, index: int) -> Resource:
    """One resource from its configuration dict; ResourceError names what is wrong."""
    if not isinstance(data, Mapping):
        raise ResourceError(str(index), "(entry)", "must be a dict")
    name = data.get("name")
    label = str(name) if isinstance(name, str) and name else str(index)

    def error(key: str, reason: str) -> ResourceError:
        return ResourceError(label, key, reason)

    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise error(unknown[0], f"unknown key (known: {', '.join(_KEYS)})")
    if not isinstance(name, str) or not _NAME.match(name):
        raise error("name", "required: lower-case letters, digits, '-' or '_' (it is the form's value)")

    def text(key: str, default: str | None = None, required: bool = False) -> str | None:
        value = data.get(key, default)
        if value is None:
            if required:
                raise error(key, "required")
            return None
        if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\0"):
            raise error(key, "must be a non-empty one-line string")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise error(key, "must be a list of strings")
        return tuple(value)

    host = text("host")
    hosts = strings("hosts") or ((host,) if host is not None else ())
    if not hosts:
        raise error("host", "required: the login node (or `hosts`, a list tried in order)")
    for host in hosts:
        if host.startswith("-") or any(c.isspace() for c in host):
            raise error("hosts", f"not a host name: {host!r}")
    port = data.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise error("port", "must be a port number")
    scheduler = text("scheduler", required=True)
    if scheduler not in resource_scheduler_kinds():
        raise error("scheduler", f"{scheduler!r} is not one of {', '.join(resource_scheduler_kinds())}")
    known_hosts = text("known_hosts", required=True)
    key_file, agent_path = text("key_file"), text("agent_path")
    if key_file is None and agent_path is None:
        raise error("key_file", "give a key_file or an agent_path (how the hub logs in)")
    for key in ("ssh_user", "key_file", "agent_path", "job_dir_root"):
        value = data.get(key)
        if isinstance(value, str):
            try:
                value.format(username="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise error(key, f"only {{username}} may be filled in ({exc!r})") from None
    env = data.get("env", {})
    if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and ENV_NAME_RE.match(k) and isinstance(v, str)
            for k, v in env.items()):
        raise error("env", "must map variable names to strings")
    hub_connect_url = text("hub_connect_url") or ""
    if hub_connect_url:
        parts = urlsplit(hub_connect_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise error("hub_connect_url", "must be an http(s) URL such as http://hub.example.org:8081")
    forward = data.get("hub_api_forward")
    hub_api_forward = None
    if forward is not None:
        if hub_connect_url:
            raise error("hub_api_forward", "give hub_connect_url or hub_api_forward, not both")
        if not isinstance(forward, Mapping) or set(forward) - set(_FORWARD_KEYS):
            raise error("hub_api_forward", f"must be a dict with keys among {', '.join(_FORWARD_KEYS)}")
        bind_port = forward.get("bind_port", 0)
        if not isinstance(bind_port, int) or not 0 <= bind_port < 65536:
            raise error("hub_api_forward.bind_port", "must be a port number (0: sshd picks)")
        bind_host = str(forward.get("bind_host", "127.0.0.1"))
        hub_api_forward = HubAPIForward(
            bind_host=bind_host, bind_port=bind_port,
            connect_host=str(forward.get("connect_host") or hosts[0]))
    return Resource(
        name=name, display_name=text("display_name", name) or name, hosts=hosts,
        known_hosts=known_hosts or "", scheduler=scheduler, port=port,
        ssh_user=text("ssh_user", "{username}") or "{username}", key_file=key_file,
        agent_path=agent_path, job_dir_root=text("job_dir_root"), profiles=strings("profiles"),
        groups=strings("groups"), env=dict(env), hub_connect_url=hub_connect_url.rstrip("/"),
        hub_api_forward=hub_api_forward)


def build_resources(config: Iterable[Any]) -> list[Resource]:
    """All resources of the configuration; names must be unique."""
    resources = [resource_from_dict(data, i) for i, data in enumerate(config or [])]
    seen: set[str] = set()
    for resource in resources:
        if resource.name in seen:
            raise ResourceError(resource.name, "name", "used by two resources")
        seen.add(resource.name)
    return resources


__all__ = ["HubAPIForward", "Resource", "ResourceError", "build_resources", "resource_from_dict"]

"""Resources: the clusters an admin declares, and how the hub reaches each one over SSH.

A resource names its login node(s), the SSH account (a fixed service account, or ``{username}``
for the hub user's own), a key file or an ssh-agent, the known_hosts file its host keys are checked
against, its scheduler (``slurm``, ``pbs``, ``torque``, or ``controller`` to run the app on the
login node itself), where job directories go, which profiles and groups it serves, and how its jobs
reach the hub's API (a direct ``hub_connect_url``, or a reverse forward through the SSH connection).
Errors name the resource and the key, like profile errors do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .config_schema import (
    ENV_NAME_RE,
    Declared,
    OneLine,
    enum_schema,
    first_error,
    json_schema,
    key_error,
    matching,
)
from .remote.ssh_pool import SSHTarget
from .schedulers import SettingsError, resource_scheduler_kinds, scheduler_class

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_NAME_RULE = "required: lower-case letters, digits, '-' or '_' (it is the form's value)"


class ResourceError(ValueError):
    """A resource in the configuration is wrong: names the resource and the key."""

    def __init__(self, resource: str, key: str, reason: str):
        self.resource, self.key, self.reason = resource, key, reason
        super().__init__(f"resources[{resource}]: {key}: {reason}")


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty one-line string")
    return value


def _username_only(value: str) -> str:
    try:
        value.format(username="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"only {{username}} may be filled in ({exc!r})") from None
    return value


def _a_scheduler(value: str) -> str:
    kinds = resource_scheduler_kinds()
    if value not in kinds:
        raise ValueError(f"{value!r} is not one of {', '.join(kinds)}")
    return value


def _variables(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"{name[:40]!r} is not a variable name")
    return env


def _fixed_account(value: str) -> str:
    if "{" in value or "}" in value:
        raise ValueError("a fixed account (nothing filled in): it answers for every user's jobs")
    return value


def _host_name(host: str) -> str:
    if host.startswith("-") or any(c.isspace() for c in host):
        raise ValueError(f"not a host name: {host!r}")
    return host


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as http://hub.example.org:8081")
    return url.rstrip("/")


Line = Annotated[OneLine, AfterValidator(_non_empty)]
Template = Annotated[Line, AfterValidator(_username_only)]
Host = Annotated[Line, AfterValidator(_host_name)]
Account = Annotated[Line, AfterValidator(_fixed_account)]
Port = Annotated[StrictInt, Field(gt=0, lt=65536)]


class HubAPIForward(Declared):
    """A reverse forward of the hub's API to the login node, for jobs that cannot reach the hub."""

    bind_host: Line = "127.0.0.1"
    """Where sshd on the login node listens (beyond loopback: ``GatewayPorts clientspecified``)."""
    bind_port: Annotated[StrictInt, Field(ge=0, lt=65536)] = 0
    """The port on the login node; 0: the port sshd picks (kept across reconnects)."""
    connect_host: Line | None = None
    """The name or address of the login node as compute nodes reach it (the first host if not given)."""


class StatusQueryLogin(Declared):
    """The SSH login the resource's status queries run as: one account that sees every user's jobs.

    Without it the queries run as each server's own SSH account, which, with ``ssh_user:
    "{username}"``, is one scheduler query per user per interval. A user's own account cannot
    answer for other users' jobs (the user controls what its ``squeue`` prints), so this is an
    account the site runs: a Slurm operator, a PBS manager, or one that ``PrivateData`` does not
    restrict.
    """

    ssh_user: Account
    """The account (fixed: nothing is filled in)."""
    key_file: Account | None = None
    """Its private key on the hub host."""
    agent_path: Account | None = None
    """An ssh-agent socket that holds its key, instead of (or beside) ``key_file``."""

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("key_file") is None and data.get("agent_path") is None:
            raise key_error("key_file", "give a key_file or an agent_path (how the query account logs in)")
        return data


class Resource(Declared):
    """One cluster (or one login node running apps itself) reachable over SSH."""

    name: Annotated[OneLine, matching(_NAME_PATTERN, _NAME_RULE)]
    """What the form posts for it (``user_options["resource"]``); unique."""
    display_name: Line = ""
    """What the form's "Service host" menu shows (the name if not given)."""
    host: Host | None = None
    """The login node the hub logs in to over SSH."""
    hosts: tuple[Host, ...] = ()
    """Several login nodes, tried in order at each spawn (instead of ``host``)."""
    port: Port = 22
    """sshd's port on the login node(s)."""
    ssh_user: Template = "{username}"
    """The account the hub logs in as: ``{username}`` for the hub user's own, or a service account."""
    key_file: Template | None = None
    """The private key the hub logs in with (``{username}`` may be filled in)."""
    agent_path: Template | None = None
    """An ssh-agent socket to log in with, instead of (or beside) ``key_file``."""
    known_hosts: Line
    """The known_hosts file the login nodes' host keys are checked against (required: host keys are
    always verified)."""
    scheduler: Annotated[Line, AfterValidator(_a_scheduler),
                         Field(json_schema_extra=enum_schema(resource_scheduler_kinds))]
    """The scheduler jobs are submitted to, or ``controller`` to run apps on the login node itself."""
    job_dir_root: Template | None = None
    """Where job directories go on the cluster (``{username}`` may be filled in); the home directory
    if not given."""
    profiles: tuple[Line, ...] = ()
    """The profiles (slugs) it offers; every profile if empty."""
    groups: tuple[Line, ...] = ()
    """Only members of one of these hub groups may use it (everyone if empty)."""
    env: Annotated[dict[str, str], AfterValidator(_variables)] = {}
    """Environment variables every job on it gets."""
    hub_connect_url: Annotated[Line, AfterValidator(_http_url)] = ""
    """How jobs reach the hub's API (``http://hub.example.org:8081``), when the hub's own URL is not it."""
    hub_api_forward: HubAPIForward | None = None
    """A reverse forward of the hub's API through the SSH connection, for jobs that cannot reach the hub."""
    status_query_login: StatusQueryLogin | None = None
    """The SSH account every status query of this resource runs as (one query per interval for all
    its users' jobs, on its first login node); the server's own SSH account if not given."""
    scheduler_settings: dict[str, Any] = {}
    """The site's settings of its scheduler, by name (what each scheduler takes is on its page:
    Grid Engine's `parallel_environment`...)."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _settings_per_scheduler(schema))

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        hosts = data.get("hosts")
        if isinstance(hosts, str):
            data = {**data, "hosts": [hosts]}
        if not data.get("hosts") and data.get("host") is None:
            raise key_error("host", "required: the login node (or `hosts`, a list tried in order)")
        if data.get("key_file") is None and data.get("agent_path") is None:
            raise key_error("key_file", "give a key_file or an agent_path (how the hub logs in)")
        if data.get("hub_connect_url") and data.get("hub_api_forward") is not None:
            raise key_error("hub_api_forward", "give hub_connect_url or hub_api_forward, not both")
        return {**data, "display_name": data.get("display_name") or data.get("name")}

    @model_validator(mode="after")
    def _settings_of_its_scheduler(self) -> Resource:
        try:
            scheduler_class(self.scheduler).read_settings(self.scheduler_settings)
        except SettingsError as exc:
            raise key_error(("scheduler_settings", *exc.key.split(".")), exc.reason) from None
        return self

    @model_validator(mode="after")
    def _hosts_in_order(self) -> Resource:
        # One list of the login nodes to try, whichever key gave them.
        if not self.hosts and self.host is not None:
            object.__setattr__(self, "hosts", (self.host,))
        forward = self.hub_api_forward
        if forward is not None and forward.connect_host is None:
            object.__setattr__(self, "hub_api_forward",
                               forward.model_copy(update={"connect_host": self.hosts[0]}))
        return self

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


    def status_query_target(self) -> SSHTarget | None:
        """Where status queries for every server on this resource run, if the admin named a login."""
        login = self.status_query_login
        if login is None:
            return None
        return SSHTarget(host=self.hosts[0], port=self.port, username=login.ssh_user,
                         known_hosts=self.known_hosts, key_file=login.key_file,
                         agent_path=login.agent_path)


def _settings_per_scheduler(schema: dict[str, Any]) -> None:
    """In the JSON Schema, ``scheduler_settings`` as the chosen scheduler's settings declare them."""
    rules = []
    for kind in resource_scheduler_kinds():
        settings = scheduler_class(kind).Settings.model_json_schema(by_alias=True, mode="validation")
        settings.pop("title", None)
        rules.append({"if": {"properties": {"scheduler": {"const": kind}}, "required": ["scheduler"]},
                      "then": {"properties": {"scheduler_settings": settings}}})
    schema["allOf"] = rules


def resource_from_dict(data: Any, index: int) -> Resource:
    """One resource from its configuration dict; ResourceError names what is wrong."""
    if not isinstance(data, Mapping):
        raise ResourceError(str(index), "(entry)", "must be a dict")
    name = data.get("name")
    label = name if isinstance(name, str) and name else str(index)
    if name is None:
        raise ResourceError(label, "name", _NAME_RULE)
    try:
        return Resource.model_validate(data)
    except ValidationError as exc:
        key, reason = first_error(exc)
        raise ResourceError(label, key, reason) from None


def build_resources(config: Iterable[Any]) -> list[Resource]:
    """All resources of the configuration; names must be unique."""
    resources = [resource_from_dict(data, i) for i, data in enumerate(config or [])]
    seen: set[str] = set()
    for resource in resources:
        if resource.name in seen:
            raise ResourceError(resource.name, "name", "used by two resources")
        seen.add(resource.name)
    return resources


def resources_schema() -> dict[str, Any]:
    """The JSON Schema of ``c.PWSpawner.resources``: a list of resources."""
    return json_schema(TypeAdapter(list[Resource]), "pw_spawner resources",
                       "The clusters the hub reaches over SSH (c.PWSpawner.resources): a list of resources.")


__all__ = ["HubAPIForward", "Resource", "ResourceError", "StatusQueryLogin", "build_resources",
           "resource_from_dict", "resources_schema"]

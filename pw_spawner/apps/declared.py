"""Apps an admin declares as data: any web app, behind the hub's authentication, without Python.

A definition (``c.PWSpawner.app_definitions``, or a YAML file in ``c.PWSpawner.apps_dir``: the same
model both ways, and ``pw-spawner schema apps``) gives the app's command with a ``{port}`` or
``{unix_socket}`` placeholder (and ``{prefix}``, the server's URL prefix), how it listens, where users
land, the path that must answer before it counts as ready, and the variables and modules it needs on
top of the profile's environment. Each definition becomes an :class:`~.base.App` class, so the
registry, profiles, the form and ``pw-spawner render`` treat it like a built-in app. It always runs
behind jupyter-standaloneproxy, like RStudio, VNC and Xpra: only its owner, logged in to the hub,
reaches it, websockets included. Its command words are quoted in one place (:func:`shell_words`), so
nothing in a definition can change the meaning of the job script.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, Field, StrictBool, TypeAdapter, ValidationError, model_validator

from ..config_schema import (
    Declared,
    EnvName,
    ModuleName,
    OneLine,
    ScriptLine,
    Slug,
    first_error,
    json_schema,
    key_error,
)
from .base import App, AppLaunch, LaunchContext, require

#: The placeholders a command word may hold, and the shell variable the job script gives each.
PLACEHOLDERS = {"port": '"${PW_APP_PORT}"', "unix_socket": '"${PW_APP_SOCKET}"',
                "prefix": '"${JUPYTERHUB_SERVICE_PREFIX:-/}"'}


class AppDefinitionError(ValueError):
    """An app definition is wrong: names where (config or file), the key and why."""

    def __init__(self, source: str, key: str, reason: str):
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


def _placeholders(word: str) -> list[str]:
    """The placeholders of one command word; ValueError for a malformed or unknown one."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(word)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"{word!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(f"{word!r}: {{{name}}} is not a placeholder (those are "
                             f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return [name for name, _, _ in fields]


def _url_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value) or "//" in value or "\\" in value:
        raise ValueError("must be a path on the app's server, starting with / (such as /healthz)")
    return value


UrlPath = Annotated[OneLine, AfterValidator(_url_path)]


class AppDefinition(Declared):
    """A web app declared by the admin."""

    name: Slug
    """What profiles' `apps` and `user_options["app"]` call it; not the name of a built-in app."""
    display_name: OneLine = ""
    """What the spawn form's application menu shows (the name if not given)."""
    command: Annotated[tuple[ScriptLine, ...], Field(min_length=1)]
    """The app's command, as a list of words: `{port}` or `{unix_socket}` (as `listen` says) is where it
    listens, `{prefix}` the server's URL prefix (`/user/alice/`); `{{` and `}}` are literal braces."""
    listen: Literal["port", "unix_socket"] = "port"
    """How the app listens: on a TCP port on 127.0.0.1 (`{port}`), or on a unix socket in the job's
    private directory (`{unix_socket}`), which nobody else on the node can reach. Prefer the socket
    where the app can."""
    landing_path: UrlPath = "/"
    """Where users land on the app."""
    websockets: StrictBool = True
    """Whether the app uses websockets (the proxy passes them to the owner only, like every request)."""
    ready_path: UrlPath | None = None
    """A path that must answer (any status below 500) before the server counts as ready; none: ready
    as soon as it listens."""
    scheme: Literal["http", "https"] = "http"
    """How the app speaks to the proxy in front of it; only `http` works (see the admin guide)."""
    absolute_url: StrictBool = False
    """Whether the app gets each request's whole path (`/user/alice/x`, for apps told their prefix with
    `{prefix}`) instead of the path below the prefix (`/x`)."""
    environment: dict[EnvName, OneLine] = {}
    """Variables the app gets, on top of the profile's environment."""
    modules: tuple[ModuleName, ...] = ()
    """Modules loaded before the app starts (after the profile's environment)."""

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "display_name": data.get("display_name") or data.get("name")}

    @model_validator(mode="after")
    def _listens_where_it_says(self) -> AppDefinition:
        used: list[str] = []
        for i, word in enumerate(self.command):
            try:
                used += _placeholders(word)
            except ValueError as exc:
                raise key_error(("command", i), str(exc)) from None
        wanted = "port" if self.listen == "port" else "unix_socket"
        other = "unix_socket" if wanted == "port" else "port"
        if wanted not in used:
            raise key_error("command", f"must hold {{{wanted}}} (listen: {self.listen}), so that the app "
                                       "listens where the proxy looks for it")
        if other in used:
            raise key_error("command", f"holds {{{other}}}, but listen is {self.listen}")
        if self.scheme == "https":
            raise key_error("scheme", "jupyter-standaloneproxy reaches the app over plain http only: run the "
                                      "app without TLS (only the proxy can reach it)")
        return self


def shell_words(command: Sequence[str]) -> str:
    """The command as one line of bash: literal text quoted, placeholders as the job's variables."""
    words = []
    for word in command:
        parts = []
        for literal, name, _, _ in string.Formatter().parse(word):
            if literal:
                parts.append(shlex.quote(literal))
            if name is not None:
                parts.append(PLACEHOLDERS[name])
        words.append("".join(parts) or "''")
    return " ".join(words)


class DeclaredApp(App):
    """The app of one :class:`AppDefinition` (a subclass per definition carries it)."""

    definition: ClassVar[AppDefinition]

    def launch(self, context: LaunchContext) -> AppLaunch:
        d = self.definition
        return AppLaunch(
            name=d.display_name,
            template="app_declared.sh.j2",
            command=d.command,
            slug=d.landing_path.lstrip("/"),
            proxy=require(context.proxy, "jupyter-standaloneproxy"),
            options={"shell_command": shell_words(d.command), "listen": d.listen,
                     "ready_path": d.ready_path or "", "environment": dict(d.environment),
                     "modules": d.modules, "absolute_url": d.absolute_url},
        )


def app_class(definition: AppDefinition) -> type[App]:
    """The App class of a definition."""
    class_name = "DeclaredApp_" + "".join(c if c.isalnum() else "_" for c in definition.name)
    return type(class_name, (DeclaredApp,), {"name": definition.name, "display_name": definition.display_name,
                                             "definition": definition, "__module__": __name__})


def read_definition(data: Any, source: str, path: str = "") -> AppDefinition:
    """One definition; :class:`AppDefinitionError` names the key that is wrong."""
    try:
        return AppDefinition.model_validate(data)
    except ValidationError as exc:
        key, reason = first_error(exc, path)
        raise AppDefinitionError(source, key or path or "app", reason) from None


def load_definitions(config: Iterable[Any] = (), directory: str | Path | None = None) -> list[AppDefinition]:
    """The definitions of ``app_definitions`` and of the YAML files of ``apps_dir`` (a file holds
    one definition or a list), checked as a set: names unique."""
    definitions = [read_definition(item, "app_definitions", f"[{i}]") for i, item in enumerate(config or ())]
    sources = ["app_definitions"] * len(definitions)
    if directory:
        root = Path(directory)
        if not root.is_dir():
            raise AppDefinitionError(str(root), "", "apps directory does not exist")
        for file in sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
            try:
                data = yaml.safe_load(file.read_text())
            except yaml.YAMLError as exc:
                raise AppDefinitionError(str(file), "", f"not valid YAML: {exc}") from exc
            except OSError as exc:
                raise AppDefinitionError(str(file), "", f"cannot read: {exc.strerror}") from exc
            items = data if isinstance(data, list) else [data]
            for i, item in enumerate(items):
                where = f"[{i}]" if isinstance(data, list) else ""
                definitions.append(read_definition(item, str(file), where))
                sources.append(str(file))
    seen: dict[str, str] = {}
    for definition, source in zip(definitions, sources, strict=True):
        if definition.name in seen:
            raise AppDefinitionError(source, "name", f"{definition.name!r} is already declared in "
                                                     f"{seen[definition.name]}")
        seen[definition.name] = source
    return definitions


def apps_schema() -> dict[str, Any]:
    """The JSON Schema of an apps file (one definition or a list) and of ``c.PWSpawner.app_definitions``."""
    apps_file: Any = AppDefinition | list[AppDefinition]
    return json_schema(TypeAdapter(apps_file), "pw_spawner app definitions",
                       "A web app declared by the admin (or a list of them), as in a YAML file of "
                       "c.PWSpawner.apps_dir or an entry of c.PWSpawner.app_definitions.")


__all__ = ["PLACEHOLDERS", "AppDefinition", "AppDefinitionError", "DeclaredApp", "app_class", "apps_schema",
           "load_definitions", "read_definition", "shell_words"]

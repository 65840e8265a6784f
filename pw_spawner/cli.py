"""``pw-spawner``: print the submit script a profile makes, or check a configuration's profiles.

    pw-spawner render --profile cpu-short [--env ...] [--app jupyter] [--user alice] \
        [--config jupyterhub_config.py] [--profiles DIR] [--scheduler slurm] [--set hours=2]
    pw-spawner check [--config jupyterhub_config.py] [--profiles DIR]
    pw-spawner schema profiles|resources|apps

``render`` builds the spawner a ``jupyterhub_config.py`` configures (``c.JupyterHub.spawner_class``,
every setting of its classes) for a stand-in user and prints the script it would submit, byte for
byte, submitting nothing. ``check`` validates the profiles and resources of that configuration.
``schema`` prints the JSON Schema (draft 2020-12) of a profile file, of ``c.PWSpawner.resources`` or
of an app definition,
for editors that complete and check YAML (e.g. a ``# yaml-language-server: $schema=...`` line).
Exit 0 on success, 1 with the reason on a bad profile or option.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pwd
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyterhub.objects import Hub
from tornado import web
from traitlets.config import Config, PyFileConfigLoader
from traitlets.utils.importstring import import_item

from .accounts import refuse_shared_account
from .apps import App, registry
from .apps.declared import (
    AppDefinition,
    AppDefinitionError,
    app_class,
    apps_schema,
    load_definitions,
    shell_words,
)
from .options import OptionsError
from .profiles import Profile, ProfileError, build_profiles, profiles_schema
from .remote.executor import CommandResult, Executor, ExecutorError
from .resources import ResourceError, build_resources, resources_schema
from .schedulers import scheduler_kinds

if TYPE_CHECKING:
    from .spawner import PWSpawner

#: The API token in a printed script; the real one is made at spawn and never appears here.
PLACEHOLDER_TOKEN = "<the server's API token, set at spawn>"


def load_config(path: str | None) -> Config:
    """A jupyterhub_config.py read with traitlets, as JupyterHub reads it."""
    if not path:
        return Config()
    file = Path(path)
    loader = PyFileConfigLoader(file.name, path=str(file.parent.resolve()))
    return loader.load_config()


def spawner_settings(config: Config) -> dict[str, Any]:
    """The configured spawner class's settings, as traitlets applies them: the sections of its
    classes from ``Spawner`` down, later (more derived) sections overriding earlier ones."""
    from jupyterhub.spawner import Spawner

    settings: dict[str, Any] = {}
    for cls in reversed(spawner_class(config).__mro__):
        if isinstance(cls, type) and issubclass(cls, Spawner) and cls.__name__ in config:
            settings.update({k: v for k, v in config[cls.__name__].items()})
    return settings


#: Said (on stdout) whenever a callable profile_list is left out.
CALLABLE_NOTE = ("pw_spawner: profile_list is a callable; its profiles are made per user at spawn "
                 "and are not checked here")


def has_callable_profiles(config: Config) -> bool:
    return callable(spawner_settings(config).get("profile_list"))


def profiles_from(config: Config, profiles_dir: str | None, user: str = "admin") -> list[Profile]:
    """The configured profiles, except those of a callable ``profile_list`` (only a spawn can make them)."""
    settings = spawner_settings(config)
    source = settings.get("profile_list") or []
    if callable(source):
        source = []
    directory = profiles_dir or settings.get("profiles_dir") or None
    return build_profiles(source, directory, apps=apps_from(config))


def declared_apps_from(config: Config) -> list[AppDefinition]:
    """The apps the configuration declares (``app_definitions``, ``apps_dir``)."""
    settings = spawner_settings(config)
    return load_definitions(settings.get("app_definitions") or [], settings.get("apps_dir") or None)


def apps_from(config: Config) -> dict[str, type[App]]:
    """The configuration's app registry: the built-in apps and those it declares."""
    return registry(app_class(d) for d in declared_apps_from(config))


def _parse_sets(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionsError(key, "--set takes KEY=VALUE")
        values[key] = value
    return values


def configured_scheduler(config: Config) -> str:
    """The ``scheduler`` of the configured spawner: the config's, else its class's default
    (``pw-slurm`` submits to Slurm without saying so)."""
    named = spawner_settings(config).get("scheduler")
    if named:
        return str(named).lower()
    # A bare instance (no config, no user) has the class's dynamic default.
    return str(spawner_class(config)().scheduler)


def scheduler_settings_refusal(config: Config) -> str | None:
    """What is wrong with ``scheduler_settings`` for the configured scheduler, or None."""
    from .schedulers import SettingsError, scheduler_class

    try:
        scheduler_class(configured_scheduler(config)).read_settings(
            spawner_settings(config).get("scheduler_settings"))
    except (SettingsError, ValueError) as exc:
        return f"scheduler_settings: {exc}"
    return None


def shared_account_refusal(config: Config) -> str | None:
    """Why the configuration is refused (users' jobs would share one account), or None."""
    settings = spawner_settings(config)
    return refuse_shared_account(configured_scheduler(config),
                                 list(settings.get("exec_prefix") or []),
                                 list(settings.get("resources") or []),
                                 bool(settings.get("allow_shared_account", False)))


def spawner_class(config: Config) -> type[PWSpawner]:
    """The PWSpawner class ``c.JupyterHub.spawner_class`` names (an entry point such as ``pw-slurm``,
    a dotted name or the class itself); PWSpawner when it names something else or nothing."""
    from .spawner import PWSpawner

    named = config.JupyterHub.get("spawner_class") if "JupyterHub" in config else None
    cls: Any = named
    if isinstance(named, str):
        found = [e for e in entry_points(group="jupyterhub.spawners") if e.name == named]
        try:
            cls = found[0].load() if found else import_item(named)
        except (ImportError, AttributeError, ValueError):
            cls = None
    return cls if isinstance(cls, type) and issubclass(cls, PWSpawner) else PWSpawner


def hub_from_config(config: Config) -> Hub:
    """The hub as ``c.JupyterHub`` describes it (address, base URL, the URL jobs connect to), so
    that a printed script's ``JUPYTERHUB_API_URL`` is the one a start would give its job."""
    settings = config.JupyterHub if "JupyterHub" in config else {}
    base_url = "/" + str(settings.get("base_url", "/")).strip("/")
    hub = Hub(ip=settings.get("hub_ip") or "127.0.0.1", port=int(settings.get("hub_port", 8081)),
              base_url=(base_url.rstrip("/") + "/hub/"))
    if settings.get("hub_connect_url"):
        hub.connect_url = str(settings["hub_connect_url"])
    elif settings.get("hub_connect_ip"):
        hub.connect_ip = str(settings["hub_connect_ip"])
    return hub


class _HomeOnly(Executor):
    """Where ``~`` in a job directory points, for a script that is printed, not submitted: the
    job account's home from this host's account database, else ``/home/<account>``. It runs no
    command (a render must not log in to a cluster)."""

    def __init__(self, account: str) -> None:
        self._account = account

    async def run(self, argv, *, input=None, timeout=30, max_output=0) -> CommandResult:
        raise ExecutorError("pw-spawner render runs no command")

    @property
    def account(self) -> str:
        return self._account

    async def home(self) -> str:
        try:
            return pwd.getpwnam(self._account).pw_dir
        except KeyError:
            return f"/home/{self._account}"


async def render_with_spawner(spawner: PWSpawner, options: dict[str, Any]) -> str:
    """The script ``spawner`` would submit for ``options``: its own selection, job directory,
    hub environment and renderer, without submitting anything."""
    await spawner.load_profiles()  # a bad profile: ProfileError, naming file and key
    selection = await spawner.selection(options)
    if selection.resource:
        spawner.resource = {r.name: r for r in spawner.user_resources()}[selection.resource]
    executor = spawner.make_executor()
    account = spawner.ssh_target().username if spawner.resource is not None else executor.account
    job_dir = await spawner.job_dir(_HomeOnly(account))
    if spawner.resource is not None and spawner.resource.hub_api_forward is not None:
        env = spawner.get_env()  # the forward's port is known only once its tunnel is open
    else:
        env = await spawner.job_env()
    return spawner.render(selection, job_dir, env)


def cmd_render(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not profiles_from(config, args.profiles) and has_callable_profiles(config):
        raise ProfileError("profile_list", "", "is a callable: give --profiles to render from files")
    options: dict[str, Any] = {**_parse_sets(args.set)}
    if args.profile:
        options["profile"] = args.profile
    if args.env:
        options["environment"] = args.env
    if args.app:
        options["app"] = args.app
    if args.var:
        options["env"] = "\n".join(args.var)
    if args.logging:
        options["logging"] = True
    from .standalone import make_spawner

    traits: dict[str, Any] = {}
    if args.profiles:
        traits["profiles_dir"] = args.profiles
    if args.scheduler:
        traits["scheduler"] = args.scheduler
    spawner = make_spawner(spawner_class(config), username=args.user, groups=args.group,
                           api_token=PLACEHOLDER_TOKEN, config=config, **traits)
    spawner.hub = hub_from_config(config)
    try:
        script = asyncio.run(render_with_spawner(spawner, options))
    except web.HTTPError as exc:
        raise OptionsError("options", getattr(exc, "jupyterhub_message", None) or str(exc)) from None
    sys.stdout.write(script)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    profiles = profiles_from(config, args.profiles)
    if has_callable_profiles(config):
        print(CALLABLE_NOTE)
    elif not profiles:
        print("no profiles are configured (give profile_list or profiles_dir)", file=sys.stderr)
        return 1
    for profile in profiles:
        envs = ", ".join(e.slug for e in profile.environments) or "no environments"
        flags = " (default)" if profile.default else ""
        groups = f" [groups: {', '.join(profile.groups)}]" if profile.groups else ""
        print(f"ok  {profile.slug}{flags}: {profile.display_name} - {profile.job.summary}; "
              f"{envs}; apps: {', '.join(profile.apps)}{groups}  ({profile.source})")
    for definition in declared_apps_from(config):
        print(f"ok  app {definition.name}: {definition.display_name} - {shell_words(definition.command)} "
              f"(listens on a {definition.listen.replace('_', ' ')})")
    for resource in build_resources(spawner_settings(config).get("resources") or []):
        print(f"ok  resource {resource.name}: {resource.display_name} - {resource.scheduler} via "
              f"{', '.join(resource.hosts)}:{resource.port} as {resource.ssh_user}")
    wrong = scheduler_settings_refusal(config)
    if wrong:
        print(f"bad: {wrong}", file=sys.stderr)
        return 1
    # Without a config there is no account setting to check (only profile files).
    refused = shared_account_refusal(config) if args.config else None
    if refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    return 0


def check_config(config: Config) -> None:
    """For the end of a jupyterhub_config.py: stop the hub at start-up if a profile is bad.

    A callable ``profile_list`` cannot be checked before a spawn: it is skipped (with a note on
    stdout) and the files of ``profiles_dir`` are still checked.
    """
    if has_callable_profiles(config):
        print(CALLABLE_NOTE)
    try:
        declared_apps_from(config)
    except AppDefinitionError as exc:
        raise SystemExit(f"pw_spawner: bad app configuration: {exc}") from None
    try:
        profiles_from(config, None)
    except ProfileError as exc:
        raise SystemExit(f"pw_spawner: bad profile configuration: {exc}") from None
    try:
        build_resources(spawner_settings(config).get("resources") or [])
    except ResourceError as exc:
        raise SystemExit(f"pw_spawner: bad resource configuration: {exc}") from None
    wrong = scheduler_settings_refusal(config)
    if wrong:
        raise SystemExit(f"pw_spawner: bad scheduler configuration: {wrong}")
    refused = shared_account_refusal(config)
    if refused:
        raise SystemExit(f"pw_spawner: refused configuration: {refused}")


#: What ``pw-spawner schema`` prints: the JSON Schema of each part of the admin's configuration.
SCHEMAS = {"profiles": profiles_schema, "resources": resources_schema, "apps": apps_schema}


def cmd_schema(args: argparse.Namespace) -> int:
    json.dump(SCHEMAS[args.part](), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pw-spawner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tunnel = sub.add_parser("tunnel", help="run the tunnel process (SSH forwards for remote apps)")
    tunnel.add_argument("--socket", required=True, help="its API socket (the directory: mode 0700)")
    tunnel.add_argument("--log-level", default="INFO")
    schema = sub.add_parser("schema", help="print the JSON Schema of profile files or of resources")
    schema.add_argument("part", choices=tuple(SCHEMAS), help="which part of the configuration")
    for name in ("render", "check"):
        p = sub.add_parser(name, help={"render": "print the submit script of a profile",
                                       "check": "validate the configured profiles"}[name])
        p.add_argument("--config", help="a jupyterhub_config.py to read PWSpawner settings from")
        p.add_argument("--profiles", help="a directory of profile YAML files")
        if name == "render":
            p.add_argument("--profile", help="the profile's slug (default: the default profile)")
            p.add_argument("--env", help="the environment's slug")
            p.add_argument("--app", help="the app (jupyter, ...)")
            p.add_argument("--user", default="alice", help="the user name to render for")
            p.add_argument("--group", action="append", default=[], help="a group of the user")
            p.add_argument("--scheduler", choices=scheduler_kinds())
            p.add_argument("--var", action="append", default=[], help="NAME=value, as typed on the form")
            p.add_argument("--logging", action="store_true", help="as if the logging box were ticked")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="an override the profile allows: hours, cores, memory, gpus")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tunnel":
        from .remote.tunnel import main as tunnel_main

        return tunnel_main(["--socket", args.socket, "--log-level", args.log_level])
    try:
        commands = {"render": cmd_render, "check": cmd_check, "schema": cmd_schema}
        return commands[args.command](args)
    except (ProfileError, OptionsError, ResourceError, AppDefinitionError) as exc:
        print(f"pw-spawner: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pw-spawner: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``pw-spawner``: print the submit script a profile makes, or check a configuration's profiles.

    pw-spawner render --profile cpu-short [--env ...] [--app jupyter] [--user alice] \
        [--config jupyterhub_config.py] [--profiles DIR] [--scheduler slurm] [--set hours=2]
    pw-spawner check [--config jupyterhub_config.py] [--profiles DIR]

Both read the PWSpawner settings of a ``jupyterhub_config.py`` (profile_list, profiles_dir, scheduler,
templates) the way the hub does, so what they print is what the hub will do. Exit 0 on success,
1 with the reason on a bad profile or option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from traitlets.config import Config, PyFileConfigLoader

from .accounts import refuse_shared_account
from .apps import PROXIED_APPS, AppLaunch, jupyter_launch, proxied_launch
from .profiles import OptionsError, Profile, ProfileError, Selection, build_profiles, validate_options
from .resources import ResourceError, build_resources
from .schedulers import scheduler_class, scheduler_kinds
from .scripts import DEFAULT_JOB_NAME_TEMPLATE, ScriptRequest, job_name_for, render_script

_SPAWNER_SECTIONS = ("Spawner", "PWSpawner", "PWSlurmSpawner", "PWPBSSpawner")
#: What the hub would put in the script's hub section; the real token never appears here.
PLACEHOLDER_HUB_ENV = {"JUPYTERHUB_API_TOKEN": "<the server's API token, set at spawn>"}


def load_config(path: str | None) -> Config:
    """A jupyterhub_config.py read with traitlets, as JupyterHub reads it."""
    if not path:
        return Config()
    file = Path(path)
    loader = PyFileConfigLoader(file.name, path=str(file.parent.resolve()))
    return loader.load_config()


def spawner_settings(config: Config) -> dict[str, Any]:
    """The spawner settings that matter here, later sections overriding earlier ones."""
    settings: dict[str, Any] = {}
    for section in _SPAWNER_SECTIONS:
        if section in config:
            settings.update({k: v for k, v in config[section].items()})
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
    return build_profiles(source, directory)


def _parse_sets(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionsError(key, "--set takes KEY=VALUE")
        values[key] = value
    return values


def _app_launch(selection: Selection, settings: dict[str, Any]) -> AppLaunch:
    """The launch the spawner would make, from the config's settings and PWSpawner's defaults."""
    if selection.app not in PROXIED_APPS:
        return jupyter_launch(settings.get("cmd") or ["jupyterhub-singleuser"], [])
    from .spawner import PWSpawner  # the hub's classes, only when an app needs the defaults

    traits = PWSpawner.class_traits()
    return proxied_launch(selection.app, lambda name: settings.get(name, traits[name].default()),
                          selection.resolution, selection.profile.app_settings)


def shared_account_refusal(config: Config) -> str | None:
    """Why the configuration is refused (users' jobs would share one account), or None."""
    settings = spawner_settings(config)
    return refuse_shared_account(str(settings.get("scheduler") or "local"),
                                 list(settings.get("exec_prefix") or []),
                                 list(settings.get("resources") or []),
                                 bool(settings.get("allow_shared_account", False)))


def cmd_render(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = spawner_settings(config)
    profiles = profiles_from(config, args.profiles)
    if not profiles and has_callable_profiles(config):
        raise ProfileError("profile_list", "", "is a callable: give --profiles to render from files")
    options: dict[str, Any] = {"profile": args.profile, **_parse_sets(args.set)}
    if args.env:
        options["environment"] = args.env
    if args.app:
        options["app"] = args.app
    if args.var:
        options["env"] = "\n".join(args.var)
    if args.logging:
        options["logging"] = True
    selection = validate_options(profiles, options, groups=args.group,
                                 forbidden_env=settings.get("forbidden_env_names", []))
    scheduler = args.scheduler or settings.get("scheduler") or "local"
    job_name = job_name_for(args.user, "", settings.get("job_name_template", DEFAULT_JOB_NAME_TEMPLATE))
    root = settings.get("job_dir_root", "~/.pw_spawner/jobs").replace("~", f"/home/{args.user}", 1)
    request = ScriptRequest(
        selection=selection,
        scheduler=scheduler,
        job_name=job_name,
        job_dir=f"{root}/{job_name}",
        app=_app_launch(selection, settings),
        bind_ip=settings.get("bind_ip") or scheduler_class(scheduler).default_bind_ip(),
        hub_env=PLACEHOLDER_HUB_ENV,
        start_timeout=settings.get("job_start_timeout", 300),
        setup_lines=settings.get("setup_lines", []),
    )
    sys.stdout.write(render_script(request, settings.get("script_template_dirs", [])))
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
    for resource in build_resources(spawner_settings(config).get("resources") or []):
        print(f"ok  resource {resource.name}: {resource.display_name} - {resource.scheduler} via "
              f"{', '.join(resource.hosts)}:{resource.port} as {resource.ssh_user}")
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
        profiles_from(config, None)
    except ProfileError as exc:
        raise SystemExit(f"pw_spawner: bad profile configuration: {exc}") from None
    try:
        build_resources(spawner_settings(config).get("resources") or [])
    except ResourceError as exc:
        raise SystemExit(f"pw_spawner: bad resource configuration: {exc}") from None
    refused = shared_account_refusal(config)
    if refused:
        raise SystemExit(f"pw_spawner: refused configuration: {refused}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pw-spawner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tunnel = sub.add_parser("tunnel", help="run the tunnel process (SSH forwards for remote apps)")
    tunnel.add_argument("--socket", required=True, help="its API socket (the directory: mode 0700)")
    tunnel.add_argument("--log-level", default="INFO")
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
        return cmd_render(args) if args.command == "render" else cmd_check(args)
    except (ProfileError, OptionsError, ResourceError) as exc:
        print(f"pw-spawner: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pw-spawner: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

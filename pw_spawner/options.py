"""User options: what a user picked on the form (or sent to the REST API), checked against a profile.

``validate_options`` turns ``user_options`` into a :class:`Selection`, everything the script renderer
needs and nothing unchecked, or refuses it with an :class:`OptionsError` that names the form field
and says why in words for the user. Unknown keys are refused, so that a typo in a REST call is not
silently ignored; environment variables a user sets may not be ones the spawner, the scheduler or
bash itself reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .apps import app_classes, form_option_names
from .config_schema import ENV_NAME_RE
from .profiles import OVERRIDE_KEYS, Environment, JobSpec, Profile
from .schedulers import job_environment_prefixes, scheduler_classes
from .units import format_memory, parse_memory_mb

#: The keys of ``user_options`` (the form and the REST API share them), beside those the apps add
#: (:func:`option_keys`).
OPTION_KEYS = ("profile", "environment", "app", "resource", "env", "logging",
               "hours", "cores", "memory", "gpus")


def option_keys() -> tuple[str, ...]:
    """Every ``user_options`` key: the spawner's, and the form options of every app (``resolution``)."""
    return (*OPTION_KEYS, *form_option_names())
#: Names the spawner and the job's launcher set: a user may not override them (nor those the
#: schedulers set in their jobs: see :func:`reserved_env_prefixes`).
RESERVED_ENV_PREFIXES = ("JUPYTERHUB_", "JPY_", "PW_", "BASH_")
# ... and names that change how bash itself reads the rest of the script.
RESERVED_ENV_NAMES = ("HOME", "USER", "LOGNAME", "SHELL", "_", "IFS", "ENV", "SHELLOPTS", "BASHOPTS",
                      "PS4", "PROMPT_COMMAND", "POSIXLY_CORRECT", "CDPATH", "GLOBIGNORE", "OPTIND")


def reserved_env_prefixes() -> tuple[str, ...]:
    """The spawner's reserved prefixes and those of every registered scheduler's job variables."""
    return (*RESERVED_ENV_PREFIXES, *job_environment_prefixes())


def reserved_env_names() -> tuple[str, ...]:
    """The reserved names: bash's own, and each scheduler's job id variable (Grid Engine's JOB_ID)."""
    return (*RESERVED_ENV_NAMES, *(cls.job_id_variable for cls in scheduler_classes().values()))
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class OptionsError(ValueError):
    """A user's choice is not allowed: names the form field and says why, in words for the user."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Selection:
    """A validated choice: everything the script renderer needs, nothing unchecked."""

    profile: Profile
    environment: Environment | None
    app: str
    job: JobSpec
    env: Mapping[str, str] = field(default_factory=dict)
    logging: bool = False
    resource: str | None = None
    #: The user's values of the chosen app's form options (the desktop's ``resolution``); a key not
    #: given: the app's own setting.
    app_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def resolution(self) -> str | None:
        """The VNC desktop's screen size the user picked (None: the admin's)."""
        return self.app_options.get("resolution")


def parse_env_lines(text: str) -> dict[str, str]:
    """The form's textarea: one ``NAME=value`` per line; blank lines and ``#`` comments ignored."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionsError("env", f"line {number}: expected NAME=value, got {raw.strip()[:40]!r}")
        if name in env:
            raise OptionsError("env", f"line {number}: {name} is set twice")
        env[name] = value
    return env


def _validate_env(env: Any, profile: Profile, forbidden: Iterable[str]) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, str):
        env = parse_env_lines(env)
    if not isinstance(env, Mapping):
        raise OptionsError("env", "expected a mapping of NAME to value")
    denied = set(profile.forbidden_env) | set(forbidden)
    result: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            raise OptionsError("env", f"{str(name)[:40]!r} is not a valid variable name "
                               "(letters, digits and _, not starting with a digit)")
        if name.startswith(reserved_env_prefixes()) or name in reserved_env_names():
            raise OptionsError("env", f"{name} is reserved and cannot be set")
        if name in denied:
            raise OptionsError("env", f"{name} may not be set in this profile")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise OptionsError("env", f"the value of {name} must be text")
        value = str(value)
        if _CONTROL_CHARS.search(value):
            raise OptionsError("env", f"the value of {name} contains a newline or control character")
        result[name] = value
    return result


def _as_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise OptionsError(field_name, "expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        return int(value)
    raise OptionsError(field_name, f"expected a whole number, got {str(value)[:20]!r}")


def _as_bool(field_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "on", "yes", "0", "false", "off", "no", ""):
        return value.lower() in ("1", "true", "on", "yes")
    raise OptionsError(field_name, "expected true or false")


def _is_own_value(job: JobSpec, name: str, raw: Any) -> bool:
    """Whether ``raw`` is the profile's own value, which the form prefills (``hours`` may be 1.5)."""
    if isinstance(raw, bool):
        return False
    try:
        if name == "hours":
            return round(float(raw) * 3600) == job.walltime_s
        if name == "memory":
            return job.memory_mb is not None and parse_memory_mb(raw) == job.memory_mb
        return int(str(raw).strip()) == getattr(job, name)
    except (ValueError, TypeError, OverflowError):  # "inf" hours: not the profile's
        return False


def _apply_overrides(profile: Profile, options: Mapping[str, Any]) -> JobSpec:
    job = profile.job
    changes: dict[str, Any] = {}
    for name in OVERRIDE_KEYS:
        if options.get(name) in (None, ""):
            continue
        rule = profile.overrides.get(name)
        if rule is None:
            raise OptionsError(name, f"the profile {profile.display_name!r} does not let you change {name}")
        raw = options[name]
        if _is_own_value(job, name, raw):
            # A field left as the form filled it: the admin's value, even outside the override.
            continue
        if name == "memory":
            try:
                value = parse_memory_mb(raw)
            except ValueError:
                raise OptionsError(name, f"expected a size like 8G, got {str(raw)[:20]!r}") from None
            rule.check(name, value, format_memory(value))
            changes["memory_mb"] = value
        else:
            value = _as_int(name, raw)
            rule.check(name, value, str(value))
            changes[{"hours": "walltime_s"}.get(name, name)] = value * 3600 if name == "hours" else value
    return job.with_changes(**changes)


def pick_profile(profiles: list[Profile], slug: str | None, groups: Iterable[str]) -> Profile:
    """The profile a user asked for (or the default) if their groups allow it."""
    groups = list(groups)
    allowed = [p for p in profiles if p.allowed_for(groups)]
    if not profiles:
        raise OptionsError("profile", "no profiles are configured")
    if slug in (None, ""):
        if not allowed:
            raise OptionsError("profile", "none of the profiles is available to you")
        return next((p for p in allowed if p.default), allowed[0])
    for profile in profiles:
        if profile.slug == slug:
            if not profile.allowed_for(groups):
                raise OptionsError("profile", f"you may not use the profile {slug!r}")
            return profile
    raise OptionsError("profile", f"unknown profile {str(slug)[:40]!r}")


def validate_options(
    profiles: list[Profile],
    options: Mapping[str, Any] | None,
    *,
    groups: Iterable[str] = (),
    resources: Iterable[str] = (),
    forbidden_env: Iterable[str] = (),
    default_app: str = "",
) -> Selection:
    """Check ``user_options`` against what the profiles allow; returns a :class:`Selection`.

    Raises :class:`OptionsError` naming the offending field. Unknown keys are refused so that
    a typo in a REST call is not silently ignored. With no ``app`` chosen, ``default_app`` is
    taken where the profile offers it (a sibling spawner's own app), else the profile's first.
    """
    options = dict(options or {})
    keys = option_keys()
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise OptionsError(unknown[0], f"unknown option (allowed: {', '.join(keys)})")
    profile = pick_profile(profiles, options.get("profile"), groups)

    env_slug = options.get("environment")
    environment = profile.default_environment()
    if env_slug not in (None, ""):
        environment = next((e for e in profile.environments if e.slug == env_slug), None)
        if environment is None:
            raise OptionsError("environment",
                               f"{str(env_slug)[:40]!r} is not an environment of {profile.display_name!r}")

    app = options.get("app") or (default_app if default_app in profile.apps else profile.apps[0])
    if app not in profile.apps:
        raise OptionsError("app", f"{str(app)[:40]!r} is not offered by {profile.display_name!r}")

    # The form posts every option of every app a profile offers; only the chosen app's count.
    app_options: dict[str, str] = {}
    for cls in app_classes().values():
        for option in cls.form_options:
            value = options.get(option.name) or None
            if value is None:
                continue
            if value not in option.choices:
                raise OptionsError(option.name, f"{str(value)[:20]!r} is not one of the offered choices "
                                                f"({option.label})")
            if cls.name == app:
                app_options[option.name] = value

    resource = options.get("resource") or None
    resources = list(resources)
    if resource is not None and resource not in resources:
        raise OptionsError("resource", f"unknown resource {str(resource)[:40]!r}")

    return Selection(
        profile=profile,
        environment=environment,
        app=app,
        job=_apply_overrides(profile, options),
        env=_validate_env(options.get("env"), profile, forbidden_env),
        # null is "not given" here as for every other key (a saved user_options may hold it).
        logging=_as_bool("logging", False if options.get("logging") is None else options["logging"]),
        resource=resource or (resources[0] if resources else None),
        app_options=app_options,
    )


__all__ = [
    "OPTION_KEYS",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "OptionsError",
    "Selection",
    "option_keys",
    "parse_env_lines",
    "pick_profile",
    "reserved_env_names",
    "reserved_env_prefixes",
    "validate_options",
]

"""Profiles: what an admin offers, and the validation of what a user picked.

A profile is a job type (partition, cores, memory, walltime, GPUs, ...), the environments a user may
choose (module lists or an activation command), the apps it allows and the overrides a user may make.
Profiles come from YAML files in a directory and/or from ``jupyterhub_config.py`` as dicts in
KubeSpawner's ``profile_list`` shape. This module parses them strictly (a bad file names the file, the
key and the reason) and turns a user's ``user_options`` into a validated :class:`Selection`. It knows
nothing of schedulers or SSH.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import yaml

from .apps.vnc import RESOLUTIONS

#: Apps a profile may name. Each needs a launcher in :mod:`pw_spawner.apps`.
KNOWN_APPS = ("jupyter", "rstudio", "vnc", "xpra")

#: The keys of ``user_options`` (the form and the REST API share them).
OPTION_KEYS = ("profile", "environment", "app", "resource", "env", "logging",
               "hours", "cores", "memory", "gpus", "resolution")
OVERRIDE_KEYS = ("hours", "cores", "memory", "gpus")

SLUG_RE = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,62}\Z")
ENV_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
#: Names the spawner and the job's launcher set: a user may not override them.
RESERVED_ENV_PREFIXES = ("JUPYTERHUB_", "JPY_", "PW_", "SLURM_", "PBS_", "BASH_")
# ... and names that change how bash itself reads the rest of the script.
RESERVED_ENV_NAMES = ("HOME", "USER", "LOGNAME", "SHELL", "_", "IFS", "ENV", "SHELLOPTS", "BASHOPTS",
                      "PS4", "PROMPT_COMMAND", "POSIXLY_CORRECT", "CDPATH", "GLOBIGNORE", "OPTIND")
# Scheduler directive values the admin writes are trusted, but they still must not contain a
# newline: one would end the directive line and start a new one.
_SAFE_DIRECTIVE_VALUE = re.compile(r"\A[^\n\r\x00]*\Z")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Names are shown on one line (the form, progress messages, the script's comments): no control
# characters at all, nor the Unicode line and paragraph separators. The script's `comment` filter
# (pw_spawner.scripts) folds the same characters.
LINE_BREAKING_CHARS = r"[\x00-\x1f\x7f\x85\u2028\u2029]"
_NOT_ONE_LINE = re.compile(LINE_BREAKING_CHARS)


class ProfileError(ValueError):
    """A profile definition is invalid: says where (file or config), which key, and why."""

    def __init__(self, source: str, key: str, reason: str):
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


class OptionsError(ValueError):
    """A user's choice is not allowed: names the form field and says why, in words for the user."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


# --------------------------------------------------------------------------------------- units


def parse_memory_mb(value: Any, source: str = "", key: str = "memory") -> int:
    """Memory as MiB from ``16G``, ``16GB``, ``512M``, ``1T`` or a bare number of MiB."""
    if isinstance(value, bool):
        raise ProfileError(source, key, f"expected a size like 16G, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ProfileError(source, key, "must be positive")
        return value
    text = str(value)
    # A size has a few digits: anything longer (a 1 MB string of digits) is refused before parsing.
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([kmgt]?)i?b?\s*", text[:64], re.IGNORECASE)
    if not match or len(text) > 64:
        raise ProfileError(source, key, f"expected a size like 16G or 512M, got {text[:20]!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]
    mb = int(number * factor)
    if mb <= 0:
        raise ProfileError(source, key, "must be at least 1M")
    return mb


def format_memory(mb: int) -> str:
    """The shortest exact spelling: 16384 -> ``16G``, 1536 -> ``1536M``."""
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


_SLURM_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<rest>\d+(?::\d+){0,2})")


def parse_walltime(value: Any, source: str = "", key: str = "walltime") -> int:
    """Seconds from a walltime string in one of Slurm's ``--time`` formats.

    ``MINUTES``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM`` and ``D-HH:MM:SS``. A number is
    refused: YAML 1.1 reads an unquoted ``4:00:00`` as the base-60 integer 14400, so a number
    here is most likely a walltime that lost its quotes (``hours:`` takes a number of hours).
    Fields after the first must be below 60 (24 for hours after a day), catching typos.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ProfileError(source, key, f"got the number {value!r} (YAML reads an unquoted 4:00:00 as "
                           'the number 14400): quote it, as in walltime: "04:00:00", or give hours: '
                           "for a number of hours")
    if not isinstance(value, str):
        raise ProfileError(source, key, f'expected a quoted duration like "04:00:00", got {value!r}')
    text = value.strip()
    match = _SLURM_TIME.fullmatch(text)
    if not match:
        raise ProfileError(source, key, f"expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                           f"D-HH:MM:SS, got {value!r}")
    parts = [int(p) for p in match.group("rest").split(":")]
    if match.group("days") is not None:
        days = int(match.group("days"))
        hours, minutes, secs = [*parts, 0, 0][:3]  # D-HH, D-HH:MM, D-HH:MM:SS
        limits = [(hours, 24), (minutes, 60), (secs, 60)][:len(parts)]
    else:
        days = 0
        if len(parts) == 3:  # HH:MM:SS
            hours, minutes, secs = parts
        else:  # MINUTES, MM:SS
            hours, minutes, secs = 0, parts[0], parts[1] if len(parts) == 2 else 0
        limits = [(p, 60) for p in parts[1:]]
    for number, limit in limits:
        if number >= limit:
            raise ProfileError(source, key, f"{value!r}: {number} is out of range in that position")
    seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise ProfileError(source, key, "must be positive")
    return seconds


def hours_to_seconds(value: Any, source: str = "", key: str = "hours") -> int:
    """A job's ``hours:`` (a number, ``1.5`` is 1 h 30 min) as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(source, key, f"expected a number of hours, got {value!r}")
    seconds = round(value * 3600)
    if seconds <= 0:
        raise ProfileError(source, key, "must be positive")
    return seconds


def format_hours(seconds: int) -> str:
    """A walltime as the hours field shows it: ``4``, ``1.5``, ``0.3333`` (close enough to round back)."""
    return f"{seconds / 3600:.4f}".rstrip("0").rstrip(".")


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), which Slurm and PBS both read."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


# --------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class JobSpec:
    """The resources a job asks the scheduler for."""

    partition: str | None = None
    nodes: int = 1
    cores: int = 1
    memory_mb: int | None = None
    walltime_s: int = 3600
    gpus: int = 0
    account: str | None = None
    qos: str | None = None
    #: Raw directive lines the admin trusts, as (scheduler kind or "*", line).
    extra_directives: tuple[tuple[str, str], ...] = ()

    def extra_for(self, scheduler: str) -> list[str]:
        """The extra directives that apply to one scheduler kind, plus those for every kind.

        ``pbs`` lines are PBS Pro's and ``torque`` lines Torque's: the two read different
        resource syntax (``-l select=...:ngpus=1`` against ``-l nodes=1:gpus=1``), so neither
        gets the other's.
        """
        return [line for kind, line in self.extra_directives if kind in (scheduler, "*")]

    @property
    def summary(self) -> str:
        """A short human description, e.g. ``4c, 16G, 04:00:00``."""
        parts = [f"{self.cores}c"]
        if self.memory_mb:
            parts.append(format_memory(self.memory_mb))
        parts.append(format_walltime(self.walltime_s))
        if self.gpus:
            parts.append(f"{self.gpus} GPU")
        return ", ".join(parts)


@dataclass(frozen=True)
class Environment:
    """A software environment: modules to load and/or an admin-written activation command."""

    slug: str
    display_name: str
    modules: tuple[str, ...] = ()
    activate: str | None = None
    default: bool = False


@dataclass(frozen=True)
class Override:
    """How far a user may change one job value: a range or a list of choices."""

    name: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[int, ...] = ()

    def check(self, value: int, shown: str) -> None:
        if self.choices and value not in self.choices:
            raise OptionsError(self.name, f"{shown} is not one of the allowed values")
        if self.minimum is not None and value < self.minimum:
            raise OptionsError(self.name, f"{shown} is below the minimum of this profile")
        if self.maximum is not None and value > self.maximum:
            raise OptionsError(self.name, f"{shown} is above the maximum of this profile")


@dataclass(frozen=True)
class Profile:
    """One entry of the spawn form's job type list."""

    slug: str
    display_name: str
    description: str = ""
    default: bool = False
    groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ("jupyter",)
    job: JobSpec = field(default_factory=JobSpec)
    environments: tuple[Environment, ...] = ()
    overrides: Mapping[str, Override] = field(default_factory=dict)
    forbidden_env: tuple[str, ...] = ()
    #: Per app, spawner settings this profile sets for itself (e.g. the program an Xpra session shows).
    app_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "<config>"

    def allowed_for(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))

    def default_environment(self) -> Environment | None:
        for env in self.environments:
            if env.default:
                return env
        return self.environments[0] if self.environments else None


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
    #: The VNC desktop's screen size (one of :data:`pw_spawner.apps.RESOLUTIONS`); None: the admin's.
    resolution: str | None = None


# --------------------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one mapping of a profile, remembering where it is so errors can say so."""

    def __init__(self, data: Any, source: str, path: str, allowed: Iterable[str]):
        if not isinstance(data, Mapping):
            raise ProfileError(source, path or "profile", f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise ProfileError(source, self._key(path, unknown[0]),
                               f"unknown key (allowed: {', '.join(sorted(allowed))})")
        self.data, self.source, self.path = data, source, path

    @staticmethod
    def _key(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key(self, name: str) -> str:
        return self._key(self.path, name)

    def error(self, name: str, reason: str) -> ProfileError:
        return ProfileError(self.source, self.key(name), reason)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False):
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"expected {kinds[0].__name__}, got a boolean")
        if not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.get(name, (str, int, float), default, required)
        return None if value is None else str(value)

    def line(self, name: str, default: str | None = None) -> str | None:
        """Text shown on one line: a newline or control character is refused, not cleaned up."""
        value = self.text(name, default)
        if value is not None and _NOT_ONE_LINE.search(value):
            raise self.error(name, "must be a single line without control characters")
        return value

    def slug(self, name: str, required: bool = True) -> str:
        value = self.text(name, required=required)
        if value is not None and not SLUG_RE.match(value):
            raise self.error(name, f"{value!r} is not a slug (lower-case letters, digits, '-', '_', '.')")
        return value  # type: ignore[return-value]

    @overload
    def positive_int(self, name: str, default: int, minimum: int = 1) -> int: ...

    @overload
    def positive_int(self, name: str, default: None, minimum: int = 1) -> int | None: ...

    def positive_int(self, name: str, default: int | None, minimum: int = 1) -> int | None:
        # A missing or null value is the default (see get()).
        value = self.get(name, int, default)
        if value is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.get(name, (list, tuple), [])
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{name}[{i}]", "expected a non-empty string")
            if not _SAFE_DIRECTIVE_VALUE.match(item):
                raise self.error(f"{name}[{i}]", "must be a single line")
        return tuple(value)


_JOB_KEYS = ("partition", "queue", "nodes", "cores", "memory", "walltime", "hours", "gpus",
             "account", "qos", "extra_directives")


def _parse_job(data: Any, source: str, path: str) -> JobSpec:
    r = _Reader(data or {}, source, path, _JOB_KEYS)
    partition = r.text("partition") or r.text("queue")
    for name in ("partition", "queue", "account", "qos"):
        value = r.text(name)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.@:+-]+", value):
            raise r.error(name, f"{value!r} has characters a scheduler name cannot have")
    if "walltime" in r.data and "hours" in r.data:
        raise r.error("hours", "give walltime or hours, not both")
    walltime = 3600
    if r.data.get("walltime") is not None:
        walltime = parse_walltime(r.data["walltime"], source, r.key("walltime"))
    elif r.data.get("hours") is not None:
        walltime = hours_to_seconds(r.get("hours", (int, float)), source, r.key("hours"))
    memory = r.data.get("memory")
    return JobSpec(
        partition=partition,
        nodes=r.positive_int("nodes", 1),
        cores=r.positive_int("cores", 1),
        memory_mb=None if memory is None else parse_memory_mb(memory, source, r.key("memory")),
        walltime_s=walltime,
        gpus=r.positive_int("gpus", 0, minimum=0),
        account=r.text("account"),
        qos=r.text("qos"),
        extra_directives=_parse_extra_directives(r),
    )


def _parse_extra_directives(r: _Reader) -> tuple[tuple[str, str], ...]:
    """A list (for every scheduler) or a mapping of scheduler kind to a list of directive lines."""
    value = r.data.get("extra_directives")
    if value is None or isinstance(value, list | tuple):
        return tuple(("*", line) for line in r.str_list("extra_directives"))
    from .schedulers import directive_kinds  # here: the scheduler modules import this one

    kinds = directive_kinds()
    sub = _Reader(value, r.source, r.key("extra_directives"), kinds)
    return tuple((kind, line) for kind in kinds for line in sub.str_list(kind))


def _parse_environment(data: Any, source: str, path: str) -> Environment:
    r = _Reader(data, source, path, ("slug", "display_name", "modules", "activate", "default"))
    modules = r.str_list("modules")
    for i, module in enumerate(modules):
        if not re.fullmatch(r"[A-Za-z0-9_.+/@-]+", module):
            raise r.error(f"modules[{i}]", f"{module!r} is not a module name")
    activate = r.text("activate")
    if activate is not None and not _SAFE_DIRECTIVE_VALUE.match(activate):
        raise r.error("activate", "must be a single line")
    slug = r.slug("slug")
    return Environment(slug=slug, display_name=r.line("display_name") or slug, modules=modules,
                       activate=activate, default=bool(r.get("default", bool, False)))


def _parse_override(name: str, data: Any, source: str, path: str) -> Override:
    if data is True:
        data = {}
    r = _Reader(data, source, path, ("min", "max", "choices"))
    convert = (lambda v, k: parse_memory_mb(v, source, r.key(k))) if name == "memory" else None

    def number(key: str, value: Any) -> int:
        if convert:
            return convert(value, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise r.error(key, f"expected a whole number, got {value!r}")
        return value

    choices = tuple(number(f"choices[{i}]", v) for i, v in enumerate(r.get("choices", list, [])))
    minimum = None if r.data.get("min") is None else number("min", r.data["min"])
    maximum = None if r.data.get("max") is None else number("max", r.data["max"])
    if minimum is None and not choices:
        minimum = 0 if name == "gpus" else 1
    if not choices and maximum is None:
        raise r.error("max", "an override needs max or choices, so that a user cannot ask for anything")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise r.error("min", "is above max")
    return Override(name=name, minimum=minimum, maximum=maximum, choices=choices)


_PROFILE_KEYS = ("slug", "display_name", "description", "default", "groups", "apps", "job",
                 "environments", "overrides", "forbidden_env", "app_settings")


def _parse_app_settings(r: _Reader, apps: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``app_settings: {xpra: {xpra_start_command: fiji}}``: the app's spawner settings for this
    profile. Only an app's own settings, for an app the profile offers; one-line text or a list."""
    from .apps import APP_SETTINGS

    settings: dict[str, dict[str, Any]] = {}
    for app, values in r.get("app_settings", Mapping, {}).items():
        key = f"app_settings.{app}"
        if app not in apps or app not in APP_SETTINGS:
            raise r.error(key, f"not an app of this profile with settings (those: "
                               f"{', '.join(a for a in apps if a in APP_SETTINGS) or 'none'})")
        if not isinstance(values, Mapping):
            raise r.error(key, "must be a mapping of setting names to values")
        settings[app] = {}
        for name, value in values.items():
            if name not in APP_SETTINGS[app]:
                raise r.error(f"{key}.{name}", f"unknown setting (allowed: {', '.join(APP_SETTINGS[app])})")
            words = value if APP_SETTINGS[app][name] else [value]
            if not isinstance(words, list) or not all(
                    isinstance(w, str) and not _NOT_ONE_LINE.search(w) for w in words):
                kind = "a list of one-line strings" if APP_SETTINGS[app][name] else "one line of text"
                raise r.error(f"{key}.{name}", f"must be {kind}")
            settings[app][name] = tuple(value) if APP_SETTINGS[app][name] else value
    return settings


def profile_from_dict(data: Any, source: str = "<config>", path: str = "") -> Profile:
    """Parse one profile mapping; raises :class:`ProfileError` naming the key that is wrong."""
    r = _Reader(data, source, path, _PROFILE_KEYS)
    slug = r.slug("slug")
    apps = r.str_list("apps") or ("jupyter",)
    for i, app in enumerate(apps):
        if app not in KNOWN_APPS:
            raise r.error(f"apps[{i}]", f"unknown app {app!r} (known: {', '.join(KNOWN_APPS)})")
    environments = tuple(
        _parse_environment(env, source, r.key(f"environments[{i}]"))
        for i, env in enumerate(r.get("environments", list, []))
    )
    env_slugs = [env.slug for env in environments]
    if len(set(env_slugs)) != len(env_slugs):
        raise r.error("environments", "environment slugs must be unique within a profile")
    if sum(env.default for env in environments) > 1:
        raise r.error("environments", "only one environment may be the default")
    overrides_data = r.get("overrides", Mapping, {})
    overrides = {}
    for name, value in overrides_data.items():
        if name not in OVERRIDE_KEYS:
            raise r.error(f"overrides.{name}", f"unknown override (allowed: {', '.join(OVERRIDE_KEYS)})")
        overrides[name] = _parse_override(name, value, source, r.key(f"overrides.{name}"))
    forbidden = r.str_list("forbidden_env")
    for i, name in enumerate(forbidden):
        if not ENV_NAME_RE.match(name):
            raise r.error(f"forbidden_env[{i}]", f"{name!r} is not a variable name")
    return Profile(
        slug=slug,
        display_name=r.line("display_name") or slug,
        # May span lines (the form shows it as a paragraph); scripts only use it through the
        # `comment` filter of pw_spawner.scripts.
        description=r.text("description", "") or "",
        default=bool(r.get("default", bool, False)),
        groups=r.str_list("groups"),
        apps=apps,
        job=_parse_job(r.data.get("job"), source, r.key("job")),
        environments=environments,
        overrides=overrides,
        forbidden_env=forbidden,
        app_settings=_parse_app_settings(r, apps),
        source=source,
    )


def load_profile_file(path: str | Path) -> list[Profile]:
    """Profiles from one YAML file: a single mapping or a list of them."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(source, "", f"not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ProfileError(source, "", f"cannot read: {exc.strerror}") from exc
    if isinstance(data, list):
        return [profile_from_dict(item, source, f"[{i}]") for i, item in enumerate(data)]
    return [profile_from_dict(data, source)]


#: Parsed profile files by (path, mtime, size): a spawn re-reads only the files that changed.
_FILE_CACHE: dict[Path, tuple[tuple[int, int], list[Profile]]] = {}


def load_profiles_dir(directory: str | Path) -> list[Profile]:
    """All ``*.yaml`` / ``*.yml`` files of a directory, in name order.

    Each file is parsed again only when its modification time or size changed, so that an edit
    takes effect at the next spawn without every spawn paying for parsing every file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ProfileError(str(root), "", "profiles directory does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    profiles: list[Profile] = []
    for file in files:
        try:
            info = file.stat()
        except OSError as exc:
            raise ProfileError(str(file), "", f"cannot read: {exc.strerror}") from exc
        signature = (info.st_mtime_ns, info.st_size)
        cached = _FILE_CACHE.get(file)
        if cached is None or cached[0] != signature:
            cached = _FILE_CACHE[file] = (signature, load_profile_file(file))
        profiles.extend(cached[1])
    return profiles


def build_profiles(config_list: Iterable[Any] = (), directory: str | Path | None = None) -> list[Profile]:
    """Profiles from config dicts (and/or ready Profile objects) and a directory, checked as a set."""
    profiles: list[Profile] = []
    for i, item in enumerate(config_list or ()):
        profiles.append(item if isinstance(item, Profile)
                        else profile_from_dict(item, "profile_list", f"[{i}]"))
    if directory:
        profiles.extend(load_profiles_dir(directory))
    seen: dict[str, str] = {}
    for profile in profiles:
        if profile.slug in seen:
            raise ProfileError(profile.source, "slug",
                               f"{profile.slug!r} is already defined in {seen[profile.slug]}")
        seen[profile.slug] = profile.source
    defaults = [p for p in profiles if p.default]
    if len(defaults) > 1:
        raise ProfileError(defaults[1].source, "default",
                           f"only one profile may be the default ({defaults[0].slug!r} is too)")
    return profiles


# --------------------------------------------------------------------------------------- options


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
        if name.startswith(RESERVED_ENV_PREFIXES) or name in RESERVED_ENV_NAMES:
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
    except (ValueError, TypeError, OverflowError, ProfileError):  # "inf" hours: not the profile's
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
            except ProfileError:
                raise OptionsError(name, f"expected a size like 8G, got {str(raw)[:20]!r}") from None
            rule.check(value, format_memory(value))
            changes["memory_mb"] = value
        else:
            value = _as_int(name, raw)
            rule.check(value, str(value))
            changes[{"hours": "walltime_s"}.get(name, name)] = value * 3600 if name == "hours" else value
    return replace(job, **changes)


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
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise OptionsError(unknown[0], f"unknown option (allowed: {', '.join(OPTION_KEYS)})")
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

    resolution = options.get("resolution") or None
    if resolution is not None and resolution not in RESOLUTIONS:
        raise OptionsError("resolution", f"{str(resolution)[:20]!r} is not one of the offered screen sizes")
    # The form posts the size with every app of a profile that offers the desktop; only it uses it.
    resolution = resolution if app == "vnc" else None

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
        resolution=resolution,
    )

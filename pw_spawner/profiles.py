"""Profiles: the job types an admin offers, declared once as typed models.

A profile is a job type (partition, cores, memory, walltime, GPUs, ...), the environments a user may
choose (module lists or an activation command), the apps it allows and how far a user may change
its values. Profiles come from YAML files in a directory and/or from ``jupyterhub_config.py`` as
dicts in KubeSpawner's ``profile_list`` shape; both are read by the models below, so a bad file
names the file, the key and the reason (``profiles/gpu.yaml: job.cores: must be at least 1``). The
same models give the JSON Schema of a profile file (``pw-spawner schema profiles``) and the profile
reference of the docs. What a user picks is checked against a profile in :mod:`pw_spawner.options`;
this module knows nothing of schedulers or SSH beyond the names of their directive kinds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from .config_schema import (
    ENV_NAME_RE,
    LINE_BREAKING_CHARS,
    Declared,
    EnvName,
    ModuleName,
    NonEmptyLine,
    OneLine,
    SchedulerName,
    ScriptLine,
    ScriptText,
    Slug,
    Text,
    first_error,
    json_schema,
    key_error,
)
from .units import (
    MEMORY_PATTERN,
    WALLTIME_PATTERN,
    format_hours,
    format_memory,
    format_walltime,
    hours_to_seconds,
    parse_memory_mb,
    parse_walltime,
)

#: The job values a profile may let users change (its ``overrides``).
OVERRIDE_KEYS = ("hours", "cores", "memory", "gpus")

_NOT_ONE_LINE = re.compile(LINE_BREAKING_CHARS)


class ProfileError(ValueError):
    """A profile definition is invalid: says where (file or config), which key, and why."""

    def __init__(self, source: str, key: str, reason: str):
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


# --------------------------------------------------------------------------------- value types

#: A size: 16G, 16GB, 512M, 1T, or a bare number of MiB; kept as MiB.
MemorySize = Annotated[int, BeforeValidator(parse_memory_mb), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": MEMORY_PATTERN}, {"type": "integer", "minimum": 1}]})]
#: A walltime in one of Slurm's --time formats, quoted; kept as seconds.
Walltime = Annotated[int, BeforeValidator(parse_walltime),
                     WithJsonSchema({"type": "string", "pattern": WALLTIME_PATTERN})]
#: A number of hours (1.5 is 1 h 30 min); kept as seconds.
Hours = Annotated[int, BeforeValidator(hours_to_seconds),
                  WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
Count = Annotated[StrictInt, Field(ge=1)]
AppName = Annotated[Slug, Field(json_schema_extra=lambda schema: _app_examples(schema))]


def _app_examples(schema: dict[str, Any]) -> None:
    # The built-in apps; an app the configuration declares is valid too, so no enum.
    from .apps import app_names

    schema["examples"] = list(app_names())


def _directive_kinds() -> tuple[str, ...]:
    from .schedulers import directive_kinds  # here: the scheduler modules import this one

    return directive_kinds()


def _extra_directives(value: Any) -> tuple[tuple[str, str], ...]:
    """A list (lines for every scheduler) or a mapping of scheduler kind to a list of lines."""
    lines = TypeAdapter(tuple[ScriptLine, ...])
    if isinstance(value, list | tuple):
        return tuple(("*", line) for line in _lines(lines, value, ()))
    if isinstance(value, dict):
        kinds = _directive_kinds()
        pairs: list[tuple[str, str]] = []
        for kind, kind_lines in value.items():
            if kind not in kinds:
                raise key_error(str(kind), f"unknown key (allowed: {', '.join(kinds)})")
            pairs += [(kind, line) for line in _lines(lines, kind_lines, (kind,))]
        # In the registry's order, whatever order the file has.
        return tuple(sorted(pairs, key=lambda pair: kinds.index(pair[0])))
    raise ValueError("expected a list of lines, or a mapping of scheduler to lines; "
                     f"got {type(value).__name__}")


def _lines(adapter: TypeAdapter[tuple[str, ...]], value: Any, where: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        reason = str((error.get("ctx") or {}).get("error", error["msg"]))
        raise key_error((*where, *error["loc"]), reason) from None


class _ExtraDirectivesSchema:
    """The JSON Schema of ``extra_directives``: its keys are the registered directive kinds."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        lines = {"type": "array", "items": {"type": "string", "pattern": r"^[^\n\r\x00]+$"}}
        by_kind = {"type": "object", "propertyNames": {"enum": list(_directive_kinds())},
                   "additionalProperties": lines}
        return {"anyOf": [lines, by_kind]}


ExtraDirectives = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_extra_directives),
                            _ExtraDirectivesSchema()]


# --------------------------------------------------------------------------------- the models


class JobSpec(Declared):
    """The resources a job asks the scheduler for (a profile's ``job``)."""

    partition: SchedulerName | None = None
    """The partition (Slurm) or queue (PBS, Grid Engine, LSF); the scheduler's default if not given."""
    queue: SchedulerName | None = None
    """Another name for ``partition``, as PBS and Grid Engine users say it."""
    nodes: Count = 1
    """Nodes for the job."""
    cores: Count = 1
    """Cores (CPUs) for the job, on one node unless ``nodes`` says more."""
    memory: MemorySize | None = None
    """The job's memory: ``16G``, ``512M``, ``1T``, or a number of MiB; the scheduler's default if
    not given."""
    walltime: Walltime | None = None
    """How long the job may run, quoted, in one of Slurm's formats: ``"04:00:00"``, ``"90"`` (minutes),
    ``"1-12:00"``. One hour if neither this nor ``hours`` is given."""
    hours: Hours | None = None
    """How long the job may run, as a number of hours (``1.5``); instead of ``walltime``."""
    gpus: Annotated[StrictInt, Field(ge=0)] = 0
    """GPUs for the job."""
    account: SchedulerName | None = None
    """The account (Slurm ``--account``, PBS ``-A``, LSF ``-P``) charged for the job."""
    qos: SchedulerName | None = None
    """The quality of service (Slurm ``--qos``)."""
    extra_directives: ExtraDirectives = ()
    """Directive lines the admin trusts, written as is after the generated ones: a list (for every
    scheduler), or a mapping of scheduler kind to a list (``pbs`` lines are PBS Pro's and ``torque``
    lines Torque's)."""

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        if "walltime" in data and "hours" in data:
            raise key_error("hours", "give walltime or hours, not both")
        if "queue" in data and "partition" not in data:
            data = {**data, "partition": data["queue"]}
        return data

    @property
    def memory_mb(self) -> int | None:
        return self.memory

    @property
    def walltime_s(self) -> int:
        return self.walltime or self.hours or 3600

    def with_changes(self, *, memory_mb: int | None = None, walltime_s: int | None = None,
                     cores: int | None = None, gpus: int | None = None) -> JobSpec:
        """This job with a user's overrides (already checked against the profile)."""
        update: dict[str, Any] = {}
        if memory_mb is not None:
            update["memory"] = memory_mb
        if walltime_s is not None:
            update.update(walltime=walltime_s, hours=None)
        if cores is not None:
            update["cores"] = cores
        if gpus is not None:
            update["gpus"] = gpus
        return self.model_copy(update=update)

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


class Environment(Declared):
    """A software environment: modules to load and/or an admin-written activation command."""

    slug: Slug
    """What the form posts for it; unique within the profile."""
    display_name: OneLine = ""
    """What the form shows (the slug if not given)."""
    modules: tuple[ModuleName, ...] = ()
    """Modules loaded (``module load``) before the app starts, in this order."""
    activate: ScriptText | None = None
    """A shell line run before the app starts, e.g. ``source /opt/conda/bin/activate base``."""
    default: StrictBool = False
    """Whether the form selects it first (else the first environment)."""

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "display_name": data.get("display_name") or data.get("slug")}


class Override(Declared):
    """How far a user may change one job value: a range (``min``, ``max``) or a list of ``choices``."""

    minimum: StrictInt | None = Field(None, alias="min")
    """The smallest value a user may ask for (1, or 0 for GPUs, when not given)."""
    maximum: StrictInt | None = Field(None, alias="max")
    """The largest value a user may ask for: required unless ``choices`` is given."""
    choices: tuple[StrictInt, ...] = ()
    """The only values a user may pick."""

    @model_validator(mode="after")
    def _bounded(self) -> Override:
        if not self.choices and self.maximum is None:
            raise key_error("max", "an override needs max or choices, so that a user cannot ask for anything")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise key_error("min", "is above max")
        return self

    def check(self, name: str, value: int, shown: str) -> None:
        """Raise :class:`pw_spawner.options.OptionsError` (naming ``name``) if ``value`` is not allowed."""
        from .options import OptionsError

        if self.choices and value not in self.choices:
            raise OptionsError(name, f"{shown} is not one of the allowed values")
        if self.minimum is not None and value < self.minimum:
            raise OptionsError(name, f"{shown} is below the minimum of this profile")
        if self.maximum is not None and value > self.maximum:
            raise OptionsError(name, f"{shown} is above the maximum of this profile")


class MemoryOverride(Override):
    """An override of memory: its bounds and choices are sizes (``8G``)."""

    minimum: MemorySize | None = Field(None, alias="min")
    """The smallest size a user may ask for (1M when not given)."""
    maximum: MemorySize | None = Field(None, alias="max")
    """The largest size a user may ask for: required unless ``choices`` is given."""
    choices: tuple[MemorySize, ...] = ()
    """The only sizes a user may pick."""


def _rule(default_minimum: int) -> BeforeValidator:
    """``true`` allows the default range; a range without ``min`` starts at ``default_minimum``."""
    def prepare(value: Any) -> Any:
        if value is True:
            value = {}
        if isinstance(value, dict) and value.get("min") is None and not value.get("choices"):
            value = {**value, "min": default_minimum}
        return value

    return BeforeValidator(prepare)


class Overrides(Declared):
    """The job values a user may change on the form, each with its limits."""

    key_word: ClassVar[str] = "override"

    hours: Annotated[Override | None, _rule(1)] = None
    """The walltime, in hours."""
    cores: Annotated[Override | None, _rule(1)] = None
    """The cores."""
    memory: Annotated[MemoryOverride | None, _rule(1)] = None
    """The memory, as a size."""
    gpus: Annotated[Override | None, _rule(0)] = None
    """The GPUs."""

    def items(self) -> Iterator[tuple[str, Override]]:
        """The overrides given, by name, in the form's order."""
        for name in OVERRIDE_KEYS:
            rule = getattr(self, name)
            if rule is not None:
                yield name, rule

    def get(self, name: str) -> Override | None:
        return getattr(self, name, None) if name in OVERRIDE_KEYS else None

    def __bool__(self) -> bool:
        return any(True for _ in self.items())


def _apps(info: ValidationInfo) -> Mapping[str, Any]:
    """The apps profiles may offer: the validation's ``apps`` (a spawner's registry, with the apps
    its configuration declares), else the built-in ones."""
    if info.context and info.context.get("apps") is not None:
        return info.context["apps"]
    from .apps import app_classes

    return app_classes()


class Profile(Declared):
    """One entry of the spawn form's job type list."""

    slug: Slug
    """What the form posts for it (``user_options["profile"]``); unique among all profiles."""
    display_name: OneLine = ""
    """What the form shows (the slug if not given)."""
    description: Text = ""
    """A paragraph under the name on the form; may span lines."""
    default: StrictBool = False
    """Whether the form selects it first; at most one profile may be the default."""
    groups: tuple[NonEmptyLine, ...] = ()
    """Only members of one of these hub groups see and may use it (everyone if empty)."""
    apps: tuple[AppName, ...] = ("jupyter",)
    """The apps it offers, the first being the default."""
    job: JobSpec = JobSpec()
    """What the job asks the scheduler for."""
    environments: tuple[Environment, ...] = ()
    """The software environments a user picks from."""
    overrides: Overrides = Overrides()
    """The job values a user may change, with their limits."""
    forbidden_env: tuple[EnvName, ...] = ()
    """Variables users may not set in this profile (beside those the spawner reserves)."""
    app_settings: dict[str, dict[str, Any]] = {}
    """Per app, spawner settings this profile sets for itself, e.g. ``{xpra: {xpra_start_command: fiji}}``
    (the program an Xpra session shows)."""

    _source: str = PrivateAttr("<config>")

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = {**data, "display_name": data.get("display_name") or data.get("slug")}
        if data.get("apps") == []:
            data["apps"] = ("jupyter",)
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Profile:
        slugs = [env.slug for env in self.environments]
        if len(set(slugs)) != len(slugs):
            raise key_error("environments", "environment slugs must be unique within a profile")
        if sum(env.default for env in self.environments) > 1:
            raise key_error("environments", "only one environment may be the default")
        apps = _apps(info)
        for i, app in enumerate(self.apps):
            if app not in apps:
                raise key_error(("apps", i), f"unknown app {app!r} (known: {', '.join(apps)})")
        self._check_app_settings(apps)
        if info.context and "source" in info.context:
            self._source = info.context["source"]
        return self

    def _check_app_settings(self, apps: Mapping[str, Any]) -> None:
        for app, values in self.app_settings.items():
            key = ("app_settings", app)
            offered = [a for a in self.apps if apps[a].profile_settings]
            if app not in offered:
                those = ", ".join(offered) or "none"
                raise key_error(key, f"not an app of this profile with settings (those: {those})")
            if not isinstance(values, dict):
                raise key_error(key, "must be a mapping of setting names to values")
            try:
                checked = apps[app].check_profile_settings(values, f"app_settings.{app}")
            except ValueError as exc:
                name, _, reason = str(exc).partition(": ")
                raise key_error((*key, name), reason) from None
            values.clear()
            values.update({name: tuple(v) if isinstance(v, list) else v for name, v in checked.items()})

    @property
    def source(self) -> str:
        """The file it came from, or ``profile_list``."""
        return self._source

    def allowed_for(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))

    def default_environment(self) -> Environment | None:
        for env in self.environments:
            if env.default:
                return env
        return self.environments[0] if self.environments else None


# --------------------------------------------------------------------------------- reading


def profile_from_dict(data: Any, source: str = "<config>", path: str = "",
                      apps: Mapping[str, Any] | None = None) -> Profile:
    """Parse one profile mapping; raises :class:`ProfileError` naming the key that is wrong.
    ``apps``: the apps it may offer by name (the built-in ones if not given)."""
    try:
        return Profile.model_validate(data, context={"source": source, "apps": apps})
    except ValidationError as exc:
        key, reason = first_error(exc, path)
        raise ProfileError(source, key or path or "profile", reason) from None


def load_profile_file(path: str | Path, apps: Mapping[str, Any] | None = None) -> list[Profile]:
    """Profiles from one YAML file: a single mapping or a list of them."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(source, "", f"not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ProfileError(source, "", f"cannot read: {exc.strerror}") from exc
    if isinstance(data, list):
        return [profile_from_dict(item, source, f"[{i}]", apps) for i, item in enumerate(data)]
    return [profile_from_dict(data, source, apps=apps)]


#: Parsed profile files by path, with (mtime, size, the apps they were checked against): a spawn
#: re-reads only the files that changed.
_FILE_CACHE: dict[Path, tuple[tuple[int, int, tuple[str, ...]], list[Profile]]] = {}


def load_profiles_dir(directory: str | Path, apps: Mapping[str, Any] | None = None) -> list[Profile]:
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
        signature = (info.st_mtime_ns, info.st_size, tuple(apps or ()))
        cached = _FILE_CACHE.get(file)
        if cached is None or cached[0] != signature:
            cached = _FILE_CACHE[file] = (signature, load_profile_file(file, apps))
        profiles.extend(cached[1])
    return profiles


def build_profiles(config_list: Iterable[Any] = (), directory: str | Path | None = None,
                   apps: Mapping[str, Any] | None = None) -> list[Profile]:
    """Profiles from config dicts (and/or ready Profile objects) and a directory, checked as a set;
    ``apps``: the apps they may offer (a spawner's registry; the built-in ones if not given)."""
    profiles: list[Profile] = []
    for i, item in enumerate(config_list or ()):
        profiles.append(item if isinstance(item, Profile)
                        else profile_from_dict(item, "profile_list", f"[{i}]", apps))
    if directory:
        profiles.extend(load_profiles_dir(directory, apps))
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


def profiles_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file: one profile, or a list of them."""
    profile_file: Any = Profile | list[Profile]
    return json_schema(TypeAdapter(profile_file), "pw_spawner profile file",
                       "A profile (a job type of the spawn form) or a list of profiles, as in a YAML file "
                       "of c.PWSpawner.profiles_dir or an entry of c.PWSpawner.profile_list.")


__all__ = ["ENV_NAME_RE", "LINE_BREAKING_CHARS", "OVERRIDE_KEYS", "Environment", "JobSpec",
           "MemoryOverride", "Override", "Overrides", "Profile", "ProfileError", "build_profiles",
           "format_hours", "format_memory", "format_walltime", "hours_to_seconds", "load_profile_file",
           "load_profiles_dir", "parse_memory_mb", "parse_walltime", "profile_from_dict", "profiles_schema"]

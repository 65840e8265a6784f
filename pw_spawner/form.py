"""The spawn page's form: rendering it from the profiles, and turning a posted form into user_options.

The form fits inside JupyterHub's own ``spawn.html`` (Bootstrap 5). What a user typed is kept when the
form comes back with an error, so a typo in one field costs nothing else. Validation proper is
:func:`pw_spawner.profiles.validate_options`; this module only reshapes form fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2

from .apps import App, app_classes, form_option_names
from .options import parse_env_lines
from .profiles import OVERRIDE_KEYS, Override, Profile
from .scripts import TEMPLATE_DIR
from .units import format_hours, format_memory

OVERRIDE_LABELS = {"hours": "Hours", "cores": "Cores", "memory": "Memory", "gpus": "GPUs"}


def _per_profile() -> tuple[str, ...]:
    """The fields each profile's fieldset has (named ``<field>--<profile slug>``)."""
    return ("environment", "app", *form_option_names(), *OVERRIDE_KEYS)

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True)


def _current(profile: Profile, name: str) -> Any:
    """The profile's own value of an override field, as the form prefills it (not rounded)."""
    job = profile.job
    if name == "hours":
        return format_hours(job.walltime_s)
    if name == "memory":
        return format_memory(job.memory_mb) if job.memory_mb else ""
    return getattr(job, name)


def _number_box(profile: Profile, name: str, rule: Override) -> dict[str, Any]:
    """min, max and step of a number field.

    The override's range, widened to take the profile's own value: the form prefills it and the
    server accepts it unchanged, so the browser must not refuse it (1.5 hours, or a walltime
    above the override's max).
    """
    own = float(_current(profile, name))

    def shown(number: float) -> str:
        return str(int(number)) if number == int(number) else format_hours(round(number * 3600))

    low = own if rule.minimum is None else min(rule.minimum, own)
    high = own if rule.maximum is None else max(rule.maximum, own)
    return {"min": shown(low), "max": shown(high), "step": "1" if own == int(own) else "any"}


def render_form(
    profiles: Sequence[Profile],
    *,
    resources: Iterable[tuple[str, str] | tuple[str, str, Sequence[str]]] = (),
    values: Mapping[str, Any] | None = None,
    apps: Mapping[str, type[App]] | None = None,
) -> str:
    """The form's HTML for the profiles a user may use; ``values`` are the last submitted options.

    ``resources``: (name, label) or (name, label, slugs of the profiles offered there; empty: all).
    ``apps``: the app registry (a spawner's, with its declared apps; the built-in ones if not given).
    """
    apps = apps if apps is not None else app_classes()
    values = dict(values or {})
    resources = [(r[0], r[1], " ".join(r[2]) if len(r) > 2 else "") for r in resources]
    if isinstance(values.get("env"), Mapping):
        values["env"] = "\n".join(f"{k}={v}" for k, v in values["env"].items())
    selected = next((p for p in profiles if p.slug == values.get("profile")), None)
    selected = selected or next((p for p in profiles if p.default), profiles[0])

    def value(profile: Profile, name: str, default: Any) -> Any:
        # Previous values only count for the profile they were posted with.
        if profile.slug == values.get("profile") and values.get(name) not in (None, ""):
            return values[name]
        return default

    return _env.get_template("form.html.j2").render(
        profiles=profiles, selected=selected, resources=resources, values=values,
        value=value, current=_current, number_box=_number_box, format_memory=format_memory,
        app_names={name: cls.display_name for name, cls in apps.items()}, apps=apps,
        override_labels=OVERRIDE_LABELS,
    )


def options_from_form(formdata: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``user_options`` from the posted form (every value arrives as a list of strings).

    The environment-variable textarea is parsed here (its line errors name the field ``env``).
    """

    def first(name: str) -> str | None:
        items = formdata.get(name) or []
        return items[0] if items else None

    options: dict[str, Any] = {}
    profile = first("profile")
    if profile:
        options["profile"] = profile
    if first("resource"):
        options["resource"] = first("resource")
    for name in _per_profile():
        value = first(f"{name}--{profile}")
        if value not in (None, ""):
            options[name] = value
    options["logging"] = first("logging") in ("on", "true", "1")
    env_text = first("env") or ""
    options["env"] = parse_env_lines(env_text)
    return options

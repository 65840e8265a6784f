"""Sphinx extension: the configuration reference, generated from PWSpawner's traitlets.

At ``builder-inited`` it imports :mod:`pw_spawner.spawner`, walks the configurable traits of
``PWSpawner`` and of its subclasses in pw_spawner, and writes ``_generated/configuration.md``,
which ``configuration.md`` pulls in with ``{include}``. A trait added to the code shows up in the
documentation without editing it; a trait renamed breaks every ``{ref}`` to its old name, and so
the ``-W`` build. The file is only rewritten when its text changes, so incremental builds stay
incremental.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

GENERATED = "_generated/configuration.md"
PACKAGE = "pw_spawner"

# Characters that mean something to Markdown/MyST outside code spans. Every ASCII punctuation
# character may be backslash-escaped in CommonMark, so escaping a few too many is harmless.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#!|~$&:+])")
_CODE_SPAN = re.compile(r"(`[^`\n]+`)")


# --------------------------------------------------------------------------------- Markdown


def escape(text: str) -> str:
    """``text`` as literal Markdown (no emphasis, roles, links or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def code(text: str) -> str:
    """``text`` as one inline code span, whatever backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def inline(text: str) -> str:
    """Help text as Markdown: its single-backtick spans stay code, everything else is literal."""
    parts = _CODE_SPAN.split(text)
    return "".join(part if i % 2 else escape(part) for i, part in enumerate(parts))


def cell(text: str) -> str:
    """Markdown for a table cell (a pipe would end the cell, even inside a code span)."""
    return text.replace("|", r"\|").replace("\n", " ")


def help_markdown(help_text: str) -> str:
    """A trait's ``help`` as Markdown paragraphs; lines that start with ``-`` or ``*`` form a list."""
    text = inspect.cleandoc(help_text or "")
    if not text:
        return "*(no help text)*"
    blocks = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines and all(re.match(r"[-*] ", line) for line in lines):
            blocks.append("\n".join(f"- {inline(line[2:])}" for line in lines))
        else:
            blocks.append(inline(" ".join(lines)))
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------------- traits


def pw_classes(base: type) -> list[type]:
    """``base`` and every subclass of it defined in the pw_spawner package, base first."""
    found: list[type] = []

    def walk(cls: type) -> None:
        if cls.__module__.split(".")[0] == PACKAGE and cls not in found:
            found.append(cls)
        for sub in sorted(cls.__subclasses__(), key=lambda c: c.__name__):
            walk(sub)

    walk(base)
    return found


def owner_of(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO whose body defines the trait ``name``."""
    from traitlets import TraitType

    for klass in cls.__mro__:
        if isinstance(klass.__dict__.get(name), TraitType):
            return klass
    return None


def default_handlers(cls: type) -> Iterator[tuple[str, Any]]:
    """(trait name, function) for every ``@default`` method defined in ``cls``'s own body."""
    from traitlets.traitlets import DefaultHandler

    for value in cls.__dict__.values():
        if isinstance(value, DefaultHandler):
            yield value.trait_name, value.func


def type_name(trait: Any) -> str:
    """The trait's class name, with what a container holds, e.g. ``List of Unicode``."""
    from traitlets import Container, Union

    name = type(trait).__name__
    if isinstance(trait, Union):
        return f"{name} of {', '.join(type_name(t) for t in trait.trait_types)}"
    inner = getattr(trait, "_trait", None)
    if isinstance(trait, Container) and inner is not None:
        return f"{name} of {type_name(inner)}"
    return name


def static_default(trait: Any) -> str:
    """The declared default as Python would write it."""
    from traitlets import Undefined, Union

    if trait.default_value is Undefined and isinstance(trait, Union):
        return static_default(trait.trait_types[0])
    text = trait.default_value_repr()
    return "(none)" if text == repr(Undefined) else text


def dynamic_default(func: Any) -> str:
    """What a ``@default`` method returns when it needs no instance; otherwise "dynamic"."""
    try:
        value = func(None)
    except Exception:
        doc = inspect.getdoc(func)
        return "dynamic" + (f": {doc.splitlines()[0]}" if doc else "")
    if callable(value):
        return f"callable {getattr(value, '__qualname__', repr(value))}"
    return repr(value)


def spawner_entry_points() -> dict[str, list[str]]:
    """Class path -> the ``jupyterhub.spawners`` entry point names that load it."""
    names: dict[str, list[str]] = {}
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.value.split(".")[0] == PACKAGE:
            names.setdefault(ep.value.replace(":", "."), []).append(ep.name)
    return names


# --------------------------------------------------------------------------------- page


def render() -> str:
    from jupyterhub.spawner import Spawner

    from pw_spawner.spawner import PWSpawner

    classes = pw_classes(PWSpawner)
    base_traits = Spawner.class_traits(config=True)

    # Traits defined by pw_spawner classes, in the order the code declares them.
    own: dict[str, tuple[type, Any]] = {}
    for cls in classes:
        traits = cls.class_traits(config=True)
        for name in cls.__dict__:
            if name in traits and owner_of(cls, name) is cls and name not in own:
                own[name] = (cls, traits[name])

    # Defaults a pw_spawner class sets with @default: on its own traits (per subclass) or on
    # JupyterHub's Spawner traits.
    own_overrides: dict[str, list[tuple[type, str]]] = {}
    base_overrides: dict[str, tuple[type, str]] = {}
    for cls in classes:
        for name, func in default_handlers(cls):
            value = dynamic_default(func)
            if name in own and own[name][0] is not cls:
                own_overrides.setdefault(name, []).append((cls, value))
            elif name in base_traits and name not in own:
                base_overrides.setdefault(name, (cls, value))
    # A Spawner trait a pw_spawner class declares anew counts as a changed default too.
    for cls in classes:
        for name in cls.__dict__:
            if name in base_traits and owner_of(cls, name) is cls and name not in base_overrides:
                base_overrides[name] = (cls, static_default(cls.class_traits()[name]))

    eps = spawner_entry_points()
    if not eps:
        logger.warning("traitlets_reference: no jupyterhub.spawners entry points of %s found; "
                       "is the package installed (pip install -e .)?", PACKAGE)

    out: list[str] = [
        "<!-- Generated by docs/_ext/traitlets_reference.py at build time. Do not edit. -->",
        "",
        "## Spawner classes",
        "",
        "| `spawner_class` | class | `scheduler` default |",
        "| --- | --- | --- |",
    ]
    for cls in classes:
        path = f"{cls.__module__}.{cls.__qualname__}"
        names = ", ".join(code(f'"{n}"') for n in sorted(eps.get(path, []))) or "(no entry point)"
        sched = cls.class_traits()["scheduler"]
        handler = dict(default_handlers(cls)).get("scheduler")
        value = dynamic_default(handler) if handler else static_default(sched)
        out.append(f"| {cell(names)} | {cell(code(path))} | {cell(code(value))} |")
    out += [
        "",
        "Settings made on `c.PWSpawner` apply to the subclasses too (traitlets reads the "
        "sections of every class in the MRO).",
        "",
        "## PWSpawner options",
        "",
        "| option | type | default |",
        "| --- | --- | --- |",
    ]
    for name, (_cls, trait) in own.items():
        out.append(f"| [{code(name)}](#config-{name.replace('_', '-')}) | {cell(type_name(trait))} "
                   f"| {cell(code(static_default(trait)))} |")
    out.append("")

    for name, (cls, trait) in own.items():
        out += [
            f"(config-{name.replace('_', '-')})=",
            f"### {code(name)}",
            "",
            f"`c.{cls.__name__}.{name}`",
            "",
            f"- type: {escape(type_name(trait))}",
            f"- default: {code(static_default(trait))}",
        ]
        values = getattr(trait, "values", None)
        if values:
            out.append(f"- values: {', '.join(code(str(v)) for v in values)}"
                       + (" (case-insensitive)" if type(trait).__name__.startswith("Caseless") else ""))
        for sub, value in own_overrides.get(name, []):
            out.append(f"- default in {code(sub.__name__)}: {code(value)}")
        out += ["", help_markdown(trait.help), ""]

    out += [
        "## JupyterHub options with a different default",
        "",
        "These are JupyterHub's own `Spawner` options; PWSpawner only changes their default. "
        "Their meaning is documented by JupyterHub.",
        "",
        "| option | type | JupyterHub's default | PWSpawner's default |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(base_overrides):
        cls, value = base_overrides[name]
        trait = base_traits[name]
        out.append(f"| `c.{cls.__name__}.{name}` | {cell(type_name(trait))} "
                   f"| {cell(code(static_default(trait)))} | {cell(code(value))} |")
    out.append("")
    out += app_sections()
    return "\n".join(out)


def app_sections() -> list[str]:
    """One section per registered app: its own settings (``c.VNCApp.geometry``), from its class."""
    from pw_spawner.apps import app_classes

    out = ["## App options", "",
           "Each app has its own section; a profile may set the settings marked *profile* for itself in "
           "its `app_settings`. The former `c.PWSpawner` names still work, with a deprecation warning.",
           ""]
    for app, cls in app_classes().items():
        traits = {name: trait for name, trait in cls.class_traits(config=True).items()
                  if owner_of(cls, name) is cls}
        old = {new: old for old, new in cls.old_setting_names.items()}
        out += [f"### {code(cls.__name__)} ({code(app)}: {escape(cls.display_name)})", "",
                help_markdown((inspect.getdoc(cls) or "").replace("``", "`")), ""]
        if not traits:
            out += ["It has no settings of its own.", ""]
            continue
        out += ["| option | type | default | profile | formerly | help |",
                "| --- | --- | --- | --- | --- | --- |"]
        for name, trait in traits.items():
            formerly = code(f"c.PWSpawner.{old[name]}") if name in old else ""
            profile = "yes" if name in cls.profile_settings else ""
            out.append(f"| {code(f'c.{cls.__name__}.{name}')} | {cell(type_name(trait))} "
                       f"| {cell(code(static_default(trait)))} | {profile} | {cell(formerly)} "
                       f"| {cell(help_markdown(trait.help))} |")
        out.append("")
    return out


def generate(app: Sphinx) -> None:
    text = render()
    target = Path(app.srcdir) / GENERATED
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
        logger.info("traitlets_reference: wrote %s", target)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

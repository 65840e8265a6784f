"""Sphinx extension: the registered schedulers, from the registry of :mod:`pw_spawner.schedulers`.

Two directives, written in the pages as MyST directives:

- ``{scheduler-table}``: one row per registered scheduler (this package's modules and the
  entry-point group ``pw_spawner.schedulers``): kind, summary, directive prefix, whether a
  resource (a cluster over SSH) may use it, the job's id variable, the variables its client
  commands get from the hub, the prefixes users may not set, and the page that describes it
  (``schedulers/<module>.md``, where one exists).
- ``{scheduler-settings} KIND``: the site settings of one scheduler (its ``Settings`` model), as the
  key tables of profiles and resources are made (``config_reference.table``), or a sentence saying
  it takes none.

A scheduler added to the package or installed from another one shows up without editing a page;
a kind that is no longer registered fails the ``-W`` build.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from traitlets_reference import cell, code, inline

#: Where the page of a scheduler module lives, relative to the docs' source directory.
PAGES = "schedulers"


def _classes() -> dict[str, Any]:
    from pw_spawner.schedulers import scheduler_classes

    return scheduler_classes()


def page_of(cls: type, srcdir: Path) -> str | None:
    """The docname of the page about ``cls``'s module (``schedulers/slurm``), if there is one."""
    module = cls.__module__
    if module.split(".")[0] != "pw_spawner":
        return None
    name = f"{PAGES}/{module.rsplit('.', 1)[-1]}"
    return name if (srcdir / f"{name}.md").is_file() else None


def _names(values: tuple[str, ...], suffix: str = "") -> str:
    return ", ".join(code(f"{value}{suffix}") for value in values) or "none"


def scheduler_table(srcdir: Path) -> str:
    """The Markdown table of every registered scheduler."""
    rows = ["| kind | what it is | directives | on a resource | job id | client environment "
            "| reserved prefixes | page |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, cls in _classes().items():
        page = page_of(cls, srcdir)
        link = f"{{doc}}`/{page}`" if page else f"from {code(cls.__module__)}"
        prefix = code(cls.directive_prefix) if cls.directive_prefix else "none"
        where = "yes" if cls.on_resources else "no (the hub host)"
        cells = [code(kind), inline(cls.summary), prefix, where,
                 code(cls.job_id_variable) if cls.job_id_variable else "none",
                 _names(tuple(cls.client_environment)),
                 _names(tuple(getattr(cls, "environment_prefixes", ())), "*"), link]
        rows.append("| " + " | ".join(cell(text) for text in cells) + " |")
    return "\n".join(rows) + "\n"


def settings_table(kind: str) -> str:
    """The Markdown of one scheduler's site settings."""
    from config_reference import table

    classes = _classes()
    if kind not in classes:
        raise ValueError(f"no scheduler {kind!r} is registered (known: {', '.join(classes)})")
    model = getattr(classes[kind], "Settings", None)
    if model is None or not model.model_fields:
        return f"{code(kind)} takes no site settings.\n"
    return table(model)


class _Markdown(SphinxDirective):
    """A directive whose output is Markdown, parsed as the page's own text."""

    def markdown(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        try:
            text = self.markdown()
        except Exception as exc:  # a wrong kind, an import error: a build error, not a blank
            raise self.error(f"{self.name}: {exc}") from None
        # The page is read again when a scheduler's module changes (an incremental build).
        for cls in _classes().values():
            self.env.note_dependency(inspect.getfile(cls))
        container = nodes.container()
        self.state.nested_parse(StringList(text.splitlines(), source=self.get_source_info()[0]),
                                self.content_offset, container)
        return container.children


class SchedulerTable(_Markdown):
    has_content = False

    def markdown(self) -> str:
        return scheduler_table(Path(self.env.srcdir))


class SchedulerSettings(_Markdown):
    has_content = False
    required_arguments = 1

    def markdown(self) -> str:
        return settings_table(self.arguments[0])


def fake_table() -> str:
    """The Markdown table of the mocked schedulers: one row per module of pw_spawner.testing.fake
    that declares commands (fixtures, commands, knobs, and what it emulates)."""
    from pw_spawner.testing.fake import store
    from pw_spawner.testing.fake.cli import schedulers

    rows = ["| module | fixtures | commands | knobs of its own | emulates |",
            "| --- | --- | --- | --- | --- |"]
    for name, module in schedulers().items():
        fixtures = ", ".join(code(f"fake_{flavour}") for flavour in module.FLAVORS)
        commands = ", ".join(code(command) for command in module.COMMANDS)
        knobs = ", ".join(code(knob) for knob in getattr(module, "KNOBS", ())) or "none"
        summary = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ").replace("``", "`")
        cells = [code(name), fixtures, commands, knobs, inline(summary)]
        rows.append("| " + " | ".join(cell(text) for text in cells) + " |")
    shared = ", ".join(code(knob) for knob in store.KNOBS)
    return "\n".join(rows) + f"\n\nKnobs every one reads: {shared}.\n"


class FakeSchedulerTable(_Markdown):
    has_content = False

    def markdown(self) -> str:
        return fake_table()


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("fake-scheduler-table", FakeSchedulerTable)
    app.add_directive("scheduler-table", SchedulerTable)
    app.add_directive("scheduler-settings", SchedulerSettings)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

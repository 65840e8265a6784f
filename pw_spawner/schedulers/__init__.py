"""Schedulers: submit, query and cancel jobs, read each scheduler's output, write its directives.

One module per scheduler, each with one or more :class:`Scheduler` classes that have a ``kind``
(``local`` and ``controller`` share :mod:`.local`, ``pbs`` and ``torque`` :mod:`.pbs`;
:func:`scheduler_kinds` lists them all). They run their commands through an executor, so they
work the same on the hub host and over SSH, and they never raise on an unreadable answer: a query
that fails is :data:`JobState.UNKNOWN`, not "gone".

The registry is found, not typed: every module of this package is read for Scheduler classes with
a ``kind``, and other packages add theirs through the entry-point group ``pw_spawner.schedulers``
(``name = "package.module:Class"``). Everything that lists schedulers (the ``scheduler`` option
and its help, a resource's ``scheduler``, ``pw-spawner --scheduler``, a profile's
``extra_directives`` keys, the docs) asks :func:`scheduler_classes`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..plugins import discover
from .base import JobInfo, JobRef, Scheduler, SchedulerError, SettingsError, SubmitError

#: The entry-point group through which other packages register schedulers.
ENTRY_POINT_GROUP = "pw_spawner.schedulers"


@functools.cache
def scheduler_classes() -> dict[str, type[Scheduler]]:
    """Every registered scheduler class by kind: this package's modules first, then entry points."""
    found = discover(__name__, __path__, Scheduler, "kind", ENTRY_POINT_GROUP)  # type: ignore[type-abstract]
    # The embedded default first, then the others by name.
    return dict(sorted(found.items(), key=lambda item: (item[0] != "local", item[0])))


def scheduler_kinds() -> tuple[str, ...]:
    """The names ``c.PWSpawner.scheduler`` takes."""
    return tuple(scheduler_classes())


def resource_scheduler_kinds() -> tuple[str, ...]:
    """The names a resource's ``scheduler`` takes (those that work through a login node)."""
    return tuple(kind for kind, cls in scheduler_classes().items() if cls.on_resources)


def directive_kinds() -> tuple[str, ...]:
    """The schedulers that read directive lines: the keys of a profile's ``extra_directives``."""
    return tuple(kind for kind, cls in scheduler_classes().items() if cls.directive_prefix)


def client_environment() -> tuple[str, ...]:
    """Every variable some scheduler's client commands need from the hub's environment."""
    names: dict[str, None] = {}
    for cls in scheduler_classes().values():
        names.update(dict.fromkeys(cls.client_environment))
    return tuple(names)


def scheduler_help() -> str:
    """One sentence per scheduler, for the ``scheduler`` option's help."""
    return "; ".join(f"`{kind}` {cls.summary}" for kind, cls in scheduler_classes().items()) + "."


def scheduler_class(kind: str) -> type[Scheduler]:
    try:
        return scheduler_classes()[kind]
    except KeyError:
        raise ValueError(f"unknown scheduler {kind!r} (known: {', '.join(scheduler_kinds())})") from None


def get_scheduler(kind: str, *, job_niceness: int = 0,
                  settings: Mapping[str, Any] | None = None) -> Scheduler:
    """The scheduler for a ``scheduler`` setting, with the spawner's settings that apply to it and
    the site's ``settings`` for it (:class:`SettingsError` when they are wrong)."""
    return scheduler_class(kind).configured(job_niceness=job_niceness, settings=settings)


def job_environment_prefixes() -> tuple[str, ...]:
    """Prefixes of the variables some scheduler sets in its jobs (``SLURM_``, ``PBS_``...)."""
    prefixes: dict[str, None] = {}
    for cls in scheduler_classes().values():
        prefixes.update(dict.fromkeys(cls.environment_prefixes))
    return tuple(prefixes)


__all__ = ["ENTRY_POINT_GROUP", "JobInfo", "JobRef", "Scheduler", "SchedulerError", "SettingsError",
           "SubmitError", "client_environment", "directive_kinds", "get_scheduler",
           "job_environment_prefixes", "resource_scheduler_kinds",
           "scheduler_class", "scheduler_classes", "scheduler_help", "scheduler_kinds"]

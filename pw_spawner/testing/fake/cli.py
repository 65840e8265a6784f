"""The fake schedulers' dispatcher: finds the scheduler modules and runs the command asked for.

A scheduler module is any module of this package that defines ``COMMANDS``; its name is the
``kind`` of its job records. Nothing here names one: adding ``lsf.py`` adds its commands, its
flavours (and so its wrappers and pytest fixture) and its knobs. See the package docstring.

    python -m pw_spawner.testing.fake SCHEDULER COMMAND [ARGS...]   (what the wrappers run)
    python -m pw_spawner.testing.fake COMMAND [ARGS...]             (when one scheduler has it)
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from types import ModuleType
from typing import NamedTuple

from . import processes, store


class Flavor(NamedTuple):
    """One flavour of a fake scheduler: what ``install_fake_scheduler`` writes for it."""

    scheduler: str  # the module's name, which the wrappers pass
    commands: tuple[str, ...]
    settings: dict[str, str]  # environment defaults its wrappers set (PW_FAKE_PBS_FLAVOR=torque)


@functools.cache
def schedulers() -> dict[str, ModuleType]:
    """Every scheduler module of the package, by name (``slurm``, ``pbs``, ...)."""
    package = __name__.rpartition(".")[0]
    # The directory's files rather than pkgutil, whose import costs every fake command 25 ms.
    names = sorted(name[:-3] for name in os.listdir(os.path.dirname(__file__))
                   if name.endswith(".py") and not name.startswith("_"))
    found = {}
    for name in names:
        module = importlib.import_module(f"{package}.{name}")
        if hasattr(module, "COMMANDS"):
            found[name] = module
    return found


def flavors() -> dict[str, Flavor]:
    """Every flavour the scheduler modules declare in their ``FLAVORS``."""
    return {name: Flavor(scheduler, tuple(module.COMMANDS), dict(settings))
            for scheduler, module in schedulers().items()
            for name, settings in module.FLAVORS.items()}


def knobs() -> tuple[str, ...]:
    """Every knob the fake reads (``PW_FAKE_SCHED_DIR`` aside): the store's and the schedulers'."""
    names = [*store.KNOBS, *(k for module in schedulers().values() for k in getattr(module, "KNOBS", ()))]
    return tuple(dict.fromkeys(names))


def _job_variables(job: store.Job) -> dict[str, str]:
    return schedulers()[job["kind"]].job_environment(job)


def _internal(name: str) -> store.Handler | None:
    """The commands the fake runs itself, detached: a job's supervisor and a cancel's reaper."""
    if name == "_supervise":
        return functools.partial(processes.supervise, variables=_job_variables)
    return processes.reap if name == "_reap" else None


def _handler(args: list[str]) -> store.Handler | None:
    """The command named by ``args`` (which loses the scheduler and command names)."""
    modules = schedulers()
    if args and args[0] in modules:
        table = modules[args.pop(0)].COMMANDS
        return table.get(args.pop(0) if args else "")
    name = args.pop(0) if args else ""
    owners = [module for module in modules.values() if name in module.COMMANDS]
    return owners[0].COMMANDS[name] if len(owners) == 1 else _internal(name)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    handler = _handler(args)
    if handler is None:
        listed = "; ".join(f"{s}: {' '.join(m.COMMANDS)}" for s, m in schedulers().items())
        store.err("usage: python -m pw_spawner.testing.fake [SCHEDULER] COMMAND [ARGS...]",
                  f"commands ({listed}); name the scheduler where two have the command")
        return 2
    try:
        return handler(args)
    except store.CommandError as exc:
        sys.stdout.flush()
        store.err(*exc.lines)
        return exc.rc

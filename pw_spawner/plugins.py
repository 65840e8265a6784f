"""Finding the parts of one kind (schedulers, apps): in the modules of a package, and in an
entry-point group through which other packages add theirs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, TypeVar

T = TypeVar("T")


def discover(package: str, paths: Iterable[str], base: type[T], key: str, group: str) -> dict[str, type[T]]:
    """Every subclass of ``base`` with a non-empty ``key`` attribute (its name) defined in a module
    of ``package`` (not those named ``_x``), then those of the entry points of ``group`` (each
    named as its class's ``key``): the first of a name wins."""
    found: dict[str, type[T]] = {}
    for module_info in pkgutil.iter_modules(list(paths)):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        members: list[tuple[str, Any]] = inspect.getmembers(module, inspect.isclass)
        for _, member in members:
            if issubclass(member, base) and getattr(member, key) and member.__module__ == module.__name__:
                found.setdefault(getattr(member, key), member)
    for entry in entry_points(group=group):
        cls: Any = entry.load()
        if not (inspect.isclass(cls) and issubclass(cls, base) and getattr(cls, key) == entry.name):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a {base.__name__} "
                            f"with {key} {entry.name!r}")
        found.setdefault(entry.name, cls)
    return found


__all__ = ["discover"]

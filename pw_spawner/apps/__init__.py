"""Apps: what a job launches on its node, one module per app, and the registry that lists them.

Each module defines an :class:`~.base.App` subclass (``JupyterApp``, ``RStudioApp``, ``VNCApp``,
``XpraApp``) that owns its settings (its own configurable section, e.g. ``c.VNCApp.geometry``), the
form options it adds, its template and how it is reached. Jupyter logs users in with the hub itself.
The others, and every app an admin declares as data (:mod:`.declared`), run behind
``jupyter-standaloneproxy`` (jupyter-server-proxy's ``[standalone]`` extra), which is the server the
hub sees: it logs its owner in with the hub's OAuth and lets nobody else through. The app behind it
listens on a unix socket in the job's 0700 directory where it can, otherwise on 127.0.0.1.

The registry is found, not typed: every module of this package is read for App classes with a
``name``, and other packages add theirs through the entry-point group ``pw_spawner.apps``. Profiles'
``apps``, the form's application menu and options, ``user_options`` and the docs ask
:func:`app_classes` (and :func:`registry` adds the apps a configuration declares).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from ..plugins import discover
from .base import App, AppLaunch, FormOption, LaunchContext
from .jupyter import jupyter_launch
from .rstudio import rstudio_launch
from .vnc import RESOLUTIONS, vnc_launch
from .xpra import xpra_launch

#: The entry-point group through which other packages register apps.
ENTRY_POINT_GROUP = "pw_spawner.apps"


@functools.cache
def app_classes() -> dict[str, type[App]]:
    """Every built-in and installed app class by name: Jupyter first, then this package's, then
    entry points'."""
    found = discover(__name__, __path__, App, "name", ENTRY_POINT_GROUP)
    return dict(sorted(found.items(), key=lambda item: item[0] != "jupyter"))


def app_names() -> tuple[str, ...]:
    """The names of the built-in and installed apps (without those a configuration declares)."""
    return tuple(app_classes())


def registry(declared: Iterable[type[App]] = ()) -> dict[str, type[App]]:
    """The built-in and installed apps, then the declared ones (which may not take a built-in name)."""
    apps = dict(app_classes())
    for cls in declared:
        if cls.name in apps:
            raise ValueError(f"{cls.name!r} is the name of an app pw_spawner has; choose another")
        apps[cls.name] = cls
    return apps


def form_option_names() -> tuple[str, ...]:
    """The ``user_options`` keys apps add (``resolution``)."""
    names: dict[str, None] = {}
    for cls in app_classes().values():
        names.update(dict.fromkeys(option.name for option in cls.form_options))
    return tuple(names)


def old_setting_names() -> dict[str, tuple[type[App], str]]:
    """Former ``PWSpawner`` trait names of the apps' settings: old name -> (app class, new name)."""
    return {old: (cls, new) for cls in app_classes().values() for old, new in cls.old_setting_names.items()}


__all__ = ["ENTRY_POINT_GROUP", "RESOLUTIONS", "App", "AppLaunch", "FormOption", "LaunchContext",
           "app_classes", "app_names", "form_option_names", "jupyter_launch", "old_setting_names",
           "registry", "rstudio_launch", "vnc_launch", "xpra_launch"]

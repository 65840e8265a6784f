"""What every app is: the record a job script is rendered from, and the class an app module defines.

An app module (``jupyter.py``, ``rstudio.py``, ...) defines one :class:`App` subclass with a ``name``.
The class owns everything about the app: its settings (traitlets of its own configurable section,
``c.VNCApp.geometry``, with help), which of them a profile may set for itself (``app_settings``), the
options it adds to the spawn form (the desktop's screen size), and how it is launched (its template,
whether it sits behind jupyter-standaloneproxy, its landing path), which :meth:`App.launch` returns as
an :class:`AppLaunch`. The registry (:mod:`pw_spawner.apps`) finds the classes; profiles, the form,
user options, ``pw-spawner render`` and the docs list apps from it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from traitlets import List, TraitError
from traitlets.config import Configurable

from ..config_schema import LINE_BREAKING_CHARS

_NOT_ONE_LINE = re.compile(LINE_BREAKING_CHARS)


@dataclass(frozen=True)
class AppLaunch:
    """How the job script starts one app."""

    name: str
    template: str
    command: tuple[str, ...]
    slug: str = ""
    #: ``/me`` for an http server, ``/sme`` for https (what service.json's URL field means).
    url: str = "/me"
    #: For apps behind ``jupyter-standaloneproxy``: the proxy's command (it authenticates with the hub).
    proxy: tuple[str, ...] = ()
    #: The app's own settings, as its template reads them (admin traits, the user's resolution...).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FormOption:
    """A choice an app adds to the spawn form (and to ``user_options``) when a profile offers it."""

    #: The ``user_options`` key and the form field's name.
    name: str
    label: str
    choices: tuple[str, ...]
    #: What the empty choice (the app's own setting) is called on the form.
    default_label: str = "Default"
    #: How the form shows a choice, where not as itself.
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchContext:
    """What an app's launch needs from the spawner and the user's choice."""

    #: jupyter-standaloneproxy's command (the spawner's ``standaloneproxy_cmd``).
    proxy: tuple[str, ...] = ("jupyter-standaloneproxy",)
    #: The single-user server's command and arguments, and its default URL (Jupyter).
    singleuser_cmd: tuple[str, ...] = ()
    singleuser_args: tuple[str, ...] = ()
    default_url: str = ""
    #: The user's values of this app's form options (``{"resolution": "1920x1080"}``).
    options: Mapping[str, str] = field(default_factory=dict)


class App(Configurable):
    """One app a job can launch. Subclasses set the class attributes and implement :meth:`launch`;
    their settings are traitlets with ``config=True`` (their section is the class name)."""

    #: The name profiles' ``apps`` and ``user_options["app"]`` use.
    name: ClassVar[str] = ""
    #: What the spawn form's application menu shows.
    display_name: ClassVar[str] = ""
    #: Whether it runs behind jupyter-standaloneproxy (every app that does not log users in with
    #: the hub itself).
    behind_proxy: ClassVar[bool] = True
    #: Settings a profile may set for itself in ``app_settings`` (trait names).
    profile_settings: ClassVar[tuple[str, ...]] = ()
    #: The options it adds to the spawn form.
    form_options: ClassVar[tuple[FormOption, ...]] = ()
    #: Former names of its settings as ``PWSpawner`` traits (``vnc_geometry`` -> ``geometry``): still
    #: read, in the spawner's config and in profiles' ``app_settings``, with a deprecation warning.
    old_setting_names: ClassVar[Mapping[str, str]] = {}

    def launch(self, context: LaunchContext) -> AppLaunch:
        """The launch of this app with its settings; ValueError when a setting cannot work."""
        raise NotImplementedError

    @classmethod
    def setting_name(cls, name: str, source: str) -> str:
        """The current name of a setting given by ``name`` (an old name is translated, with a warning
        that says where it was given)."""
        new = cls.old_setting_names.get(name)
        if new is None:
            return name
        warnings.warn(f"{source}: {name} is deprecated; use {cls.__name__}.{new} "
                      f"(c.{cls.__name__}.{new}, or `{new}` in a profile's app_settings.{cls.name})",
                      DeprecationWarning, stacklevel=3)
        return new

    @classmethod
    def check_profile_settings(cls, values: Mapping[str, Any],
                               source: str = "app_settings") -> dict[str, Any]:
        """A profile's ``app_settings`` for this app with current names, each value checked by its
        trait; ValueError (naming the setting) for an unknown one or a bad value."""
        checked: dict[str, Any] = {}
        probe = cls()
        traits = cls.class_traits()
        for given, value in values.items():
            name = cls.setting_name(str(given), source)
            if name not in cls.profile_settings:
                allowed = ", ".join(cls.profile_settings) or "none"
                raise ValueError(f"{given}: unknown setting (allowed: {allowed})")
            # Profile values go into the job script's lines: text on one line, lists of such text.
            is_list = isinstance(traits[name], List)
            words = value if is_list and isinstance(value, list | tuple) else [value]
            if (is_list and not isinstance(value, list | tuple)) or not all(
                    isinstance(w, str) and not _NOT_ONE_LINE.search(w) for w in words):
                kind = "a list of one-line strings" if is_list else "one line of text"
                raise ValueError(f"{given}: must be {kind}")
            try:
                setattr(probe, name, list(value) if isinstance(value, tuple) else value)
            except TraitError as exc:
                raise ValueError(f"{given}: {_trait_reason(exc)}") from None
            checked[name] = getattr(probe, name)
        return checked


def _trait_reason(exc: TraitError) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "not allowed"
    return text


def require(command: Sequence[str], what: str) -> tuple[str, ...]:
    """``command`` as a tuple, or ValueError saying which command is empty."""
    if not command:
        raise ValueError(f"the {what} command is empty")
    return tuple(command)


__all__ = ["App", "AppLaunch", "FormOption", "LaunchContext", "require"]

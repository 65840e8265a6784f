"""What a job launches on its node, one module per app.

An app contributes an :class:`AppLaunch`: the command, the template block that starts it and waits for
its port, and the landing path (SLUG) that service.json reports. Schedulers and SSH are not its business.

Jupyter authenticates with the hub itself. RStudio, the VNC desktop and Xpra do not: they run behind
``jupyter-standaloneproxy`` (jupyter-server-proxy's ``[standalone]`` extra), which is the server the hub
sees, logs its owner in with the hub's OAuth and lets nobody else through. The app behind it listens on a
unix socket in the job's 0700 directory where it can, otherwise on 127.0.0.1 with a per-session secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


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


from .jupyter import jupyter_launch  # noqa: E402  (AppLaunch must exist first)
from .rstudio import rstudio_launch  # noqa: E402
from .vnc import RESOLUTIONS, vnc_launch  # noqa: E402
from .xpra import xpra_launch  # noqa: E402

#: The apps behind jupyter-standaloneproxy, which :func:`proxied_launch` makes.
PROXIED_APPS = ("rstudio", "vnc", "xpra")


#: The spawner settings a profile may set for itself, per app (a profile's ``app_settings``):
#: name -> whether the setting is a list of words (else one line of text).
APP_SETTINGS: dict[str, dict[str, bool]] = {
    "rstudio": {"rstudio_rserver_cmd": True, "rstudio_rsession_cmd": True, "rstudio_args": True},
    "vnc": {"vnc_geometry": False, "vnc_xstartup": False, "vnc_window_managers": True,
            "vnc_terminal": False},
    "xpra": {"xpra_start_command": False, "xpra_args": True},
}


def proxied_launch(app: str, spawner_setting: Callable[[str], Any], resolution: str | None = None,
                   profile_settings: Mapping[str, Mapping[str, Any]] | None = None) -> AppLaunch:
    """The launch of ``rstudio``, ``vnc`` or ``xpra`` from the spawner's settings.

    ``spawner_setting(name)`` returns the value of PWSpawner's trait ``name`` (the spawner's own,
    or a config's for ``pw-spawner render``); ``profile_settings`` is the profile's
    ``app_settings``, whose values for ``app`` win; ``resolution`` is the user's desktop size.
    Raises ValueError for an unknown app or a setting the launch refuses.
    """
    own = (profile_settings or {}).get(app, {})

    def setting(name: str) -> Any:
        return own[name] if name in own else spawner_setting(name)

    proxy = setting("standaloneproxy_cmd")
    if app == "rstudio":
        return rstudio_launch(proxy, rserver=setting("rstudio_rserver_cmd"),
                              rsession=setting("rstudio_rsession_cmd"), extra_args=setting("rstudio_args"))
    if app == "vnc":
        return vnc_launch(proxy, vnc_server=setting("vnc_server"),
                          geometry=resolution or setting("vnc_geometry"), xstartup=setting("vnc_xstartup"),
                          window_managers=setting("vnc_window_managers"), terminal=setting("vnc_terminal"),
                          novnc_dirs=setting("novnc_dirs"), websockify=setting("websockify_cmd"))
    if app == "xpra":
        return xpra_launch(proxy, xpra=setting("xpra_cmd"), start_command=setting("xpra_start_command"),
                           extra_args=setting("xpra_args"), xvfb=setting("xpra_xvfb_cmd"))
    raise ValueError(f"{app!r} is not an app behind the proxy (those are {', '.join(PROXIED_APPS)})")


__all__ = ["APP_SETTINGS", "PROXIED_APPS", "RESOLUTIONS", "AppLaunch", "jupyter_launch", "proxied_launch",
           "rstudio_launch", "vnc_launch", "xpra_launch"]

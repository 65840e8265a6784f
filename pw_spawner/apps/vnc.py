"""The VNC desktop app: Xvnc (TigerVNC or TurboVNC), a window manager or the admin's xstartup, noVNC.

The chain, all on the job's node: jupyter-standaloneproxy (the port the hub routes to, hub OAuth, owner
only) -> websockify on 127.0.0.1 (serves noVNC's files, and bridges noVNC's websocket to the VNC server
only for requests carrying the session's secret, which the proxy adds and the browser never sees) -> Xvnc
on a unix socket in the job's private directory (``-rfbunixpath``, ``-rfbport -1``: no TCP port at all).
The X display itself takes only clients with the session's MIT cookie (``-auth``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from traitlets import List, TraitError, Unicode, validate

from .base import App, AppLaunch, FormOption, LaunchContext, require

#: Screen sizes a user may pick on the spawn page (and the REST API's ``resolution``).
RESOLUTIONS = ("1024x768", "1280x800", "1280x1024", "1440x900", "1600x900", "1680x1050", "1920x1080",
               "1920x1200", "2560x1440")
_GEOMETRY = re.compile(r"\A([1-9][0-9]{2,4})x([1-9][0-9]{2,4})\Z")


def check_geometry(value: str) -> str:
    """``WIDTHxHEIGHT`` with sane numbers, or ValueError."""
    match = _GEOMETRY.match(value or "")
    if not match or not (320 <= int(match.group(1)) <= 8192 and 240 <= int(match.group(2)) <= 8192):
        raise ValueError(f"{value!r} is not a screen size like 1280x800")
    return value


def vnc_launch(
    proxy: Sequence[str],
    *,
    vnc_server: str = "Xvnc",
    geometry: str = "1280x800",
    xstartup: str = "",
    window_managers: Sequence[str] = ("xfce4-session", "startxfce4", "openbox-session", "twm"),
    terminal: str = "xterm",
    novnc_dirs: Sequence[str] = ("/usr/share/novnc",),
    websockify: Sequence[str] = ("websockify",),
) -> AppLaunch:
    """The desktop's launch; ``proxy`` is the jupyter-standaloneproxy command."""
    require(proxy, "jupyter-standaloneproxy")
    require(websockify, "websockify")
    return AppLaunch(
        name="the VNC desktop",
        template="app_vnc.sh.j2",
        command=(vnc_server,),
        # noVNC lands through the index page the job writes (it knows the server's prefix).
        slug="",
        proxy=tuple(proxy),
        options={
            "geometry": check_geometry(geometry),
            "xstartup": xstartup,
            "window_managers": tuple(window_managers),
            "terminal": terminal,
            "novnc_dirs": tuple(novnc_dirs),
            "websockify": tuple(websockify),
        },
    )


class VNCApp(App):
    """A desktop in the browser: Xvnc on a unix socket, websockify and noVNC, behind the proxy."""

    name = "vnc"
    display_name = "Desktop (VNC)"
    profile_settings = ("geometry", "xstartup", "window_managers", "terminal")
    form_options = (FormOption("resolution", "Desktop size (VNC)", RESOLUTIONS,
                               labels={size: size.replace("x", " \u00d7 ") for size in RESOLUTIONS}),)
    old_setting_names = {"vnc_server": "server", "vnc_geometry": "geometry", "vnc_xstartup": "xstartup",
                         "vnc_window_managers": "window_managers", "vnc_terminal": "terminal",
                         "novnc_dirs": "novnc_dirs", "websockify_cmd": "websockify_cmd"}

    server = Unicode(
        "Xvnc",
        config=True,
        help="The VNC X server: TigerVNC's Xvnc, or TurboVNC's (e.g. /opt/TurboVNC/bin/Xvnc, 3.0 or newer "
        "for -rfbunixpath). It listens on a unix socket only.",
    )
    geometry = Unicode(
        "1280x800",
        config=True,
        help="The desktop's screen size (WIDTHxHEIGHT) when the user picks none on the spawn page.",
    )
    xstartup = Unicode(
        "",
        config=True,
        help="An executable the desktop runs once its display is up (like ~/.vnc/xstartup), with DISPLAY "
        "and XAUTHORITY set. Empty: the first of `window_managers` found, and `terminal`.",
    )
    window_managers = List(
        Unicode(),
        default_value=["xfce4-session", "startxfce4", "openbox-session", "twm"],
        config=True,
        help="Window managers (or desktop sessions) tried in order when `xstartup` is empty.",
    )
    terminal = Unicode(
        "xterm",
        config=True,
        help="A terminal opened on the desktop when `xstartup` is empty ('' for none).",
    )
    novnc_dirs = List(
        Unicode(),
        default_value=["/usr/share/novnc", "/usr/local/share/novnc", "/opt/novnc"],
        config=True,
        help="Where the nodes have noVNC's web client (the directory holding vnc.html); the first found "
        "is used.",
    )
    websockify_cmd = List(
        Unicode(),
        default_value=["websockify"],
        config=True,
        help="websockify on the nodes (Debian: websockify), which serves noVNC and bridges it to the "
        "VNC server for the proxy.",
    )

    @validate("geometry")
    def _check_geometry(self, proposal: dict[str, Any]) -> str:
        try:
            return check_geometry(proposal["value"])
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    def launch(self, context: LaunchContext) -> AppLaunch:
        return vnc_launch(context.proxy, vnc_server=self.server,
                          geometry=context.options.get("resolution") or self.geometry,
                          xstartup=self.xstartup, window_managers=self.window_managers,
                          terminal=self.terminal, novnc_dirs=self.novnc_dirs, websockify=self.websockify_cmd)

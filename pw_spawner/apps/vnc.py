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

from . import AppLaunch

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
    if not proxy:
        raise ValueError("the jupyter-standaloneproxy command is empty")
    if not websockify:
        raise ValueError("the websockify command is empty")
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

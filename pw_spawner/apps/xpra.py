"""The Xpra app: ``xpra start`` with its HTML5 client, behind jupyter-standaloneproxy.

The job starts the X server (Xvfb, with the session's cookie) and Xpra attaches to it
(``--use-display``). Xpra serves its HTML5 client and the client's websocket on a unix socket
(``--bind``) in the job's private directory; the proxy (hub OAuth, owner only) is the only way in.
The session runs the command the admin names (an xterm, Fiji...) and ends with it; closing the
browser tab leaves it running, so the user can come back to it from the hub's home page while the
job lasts.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import AppLaunch

#: Xpra features a browser session does not use and that look for desktop services a node lacks.
DEFAULT_XPRA_ARGS = ("--mdns=no", "--pulseaudio=no", "--notifications=no", "--webcam=no", "--printing=no",
                     "--dbus-proxy=no", "--systemd-run=no", "--speaker=off", "--microphone=off")

#: The X server the job starts for the session (xpra's own default, less the display and -auth).
DEFAULT_XVFB = ("Xvfb", "+extension", "GLX", "+extension", "Composite", "-screen", "0", "5760x2560x24+32",
                "-dpi", "96", "-nolisten", "tcp", "-noreset")


def xpra_launch(
    proxy: Sequence[str],
    *,
    xpra: Sequence[str] = ("xpra",),
    start_command: str = "xterm",
    extra_args: Sequence[str] = DEFAULT_XPRA_ARGS,
    xvfb: Sequence[str] = DEFAULT_XVFB,
) -> AppLaunch:
    """Xpra's launch; ``start_command`` is the program the session shows (a shell command line)."""
    if not proxy:
        raise ValueError("the jupyter-standaloneproxy command is empty")
    if not xpra:
        raise ValueError("the xpra command is empty")
    if not xvfb:
        raise ValueError("the Xvfb command is empty")
    if not start_command.strip():
        raise ValueError("the Xpra session needs a command to start")
    return AppLaunch(
        name="Xpra",
        template="app_xpra.sh.j2",
        command=tuple(xpra),
        slug="",
        proxy=tuple(proxy),
        options={"start_command": start_command, "extra_args": tuple(extra_args), "xvfb": tuple(xvfb)},
    )

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

from traitlets import List, Unicode

from .base import App, AppLaunch, LaunchContext, require

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
    require(proxy, "jupyter-standaloneproxy")
    require(xpra, "xpra")
    require(xvfb, "Xvfb")
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


class XpraApp(App):
    """An Xpra session of one program, with Xpra's HTML5 client, behind the proxy."""

    name = "xpra"
    display_name = "Xpra"
    profile_settings = ("start_command", "args")
    old_setting_names = {"xpra_cmd": "cmd", "xpra_start_command": "start_command", "xpra_args": "args",
                         "xpra_xvfb_cmd": "xvfb_cmd"}

    cmd = List(
        Unicode(),
        default_value=["xpra"],
        config=True,
        help="Xpra on the nodes; its HTML5 client must be installed too (Debian's xpra has it).",
    )
    start_command = Unicode(
        "xterm",
        config=True,
        help="The program an Xpra session shows (a command line, e.g. 'xterm' or 'fiji'); the session "
        "ends when it exits.",
    )
    args = List(
        Unicode(),
        default_value=list(DEFAULT_XPRA_ARGS),
        config=True,
        help="Extra arguments for `xpra start`; the default turns off sound, printing and other "
        "desktop services a browser session does not use.",
    )
    xvfb_cmd = List(
        Unicode(),
        default_value=list(DEFAULT_XVFB),
        config=True,
        help="The X server the job starts for an Xpra session (Xpra attaches to it); the job adds "
        "-auth and -displayfd.",
    )

    def launch(self, context: LaunchContext) -> AppLaunch:
        return xpra_launch(context.proxy, xpra=self.cmd, start_command=self.start_command,
                           extra_args=self.args, xvfb=self.xvfb_cmd)

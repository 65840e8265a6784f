"""The RStudio app: ``rserver`` behind jupyter-standaloneproxy, on a unix socket (``--www-socket``).

rserver runs as the job's user (``--server-user``) with its state in the job's private directory (data
dir, an sqlite database config, a secure-cookie key), no login of its own (``--auth-none=1``: the proxy
has authenticated the owner, and nobody else can reach the socket), and ``--www-root-path`` set to the
server's prefix so that its links and redirects stay below it. rserver starts each R session with an
environment of its own, so the job writes an ``rsession`` wrapper that restores the job's environment
(the profile's modules and variables) before it starts the real rsession. Flags that differ between
RStudio versions are passed only when ``rserver --help`` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence

from traitlets import List, Unicode

from .base import App, AppLaunch, LaunchContext, require


def rstudio_launch(
    proxy: Sequence[str],
    *,
    rserver: Sequence[str] = ("rserver",),
    rsession: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> AppLaunch:
    """RStudio's launch. ``rsession`` empty: the ``rsession`` next to rserver (or on PATH)."""
    require(proxy, "jupyter-standaloneproxy")
    require(rserver, "rserver")
    return AppLaunch(
        name="RStudio",
        template="app_rstudio.sh.j2",
        command=tuple(rserver),
        slug="",
        proxy=tuple(proxy),
        options={"rsession": tuple(rsession), "extra_args": tuple(extra_args)},
    )


class RStudioApp(App):
    """RStudio Server (``rserver``) behind jupyter-standaloneproxy, on a unix socket."""

    name = "rstudio"
    display_name = "RStudio"
    profile_settings = ("rserver_cmd", "rsession_cmd", "args")
    old_setting_names = {"rstudio_rserver_cmd": "rserver_cmd", "rstudio_rsession_cmd": "rsession_cmd",
                         "rstudio_args": "args"}

    rserver_cmd = List(
        Unicode(),
        default_value=["rserver"],
        config=True,
        help="RStudio Server's rserver (a version with --www-socket, which the job checks), e.g. "
        '["/usr/lib/rstudio-server/bin/rserver"].',
    )
    rsession_cmd = List(
        Unicode(),
        default_value=[],
        config=True,
        help="The rsession the job's wrapper starts with the job's environment. Empty: the rsession "
        "next to rserver, else rsession on PATH.",
    )
    args = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Extra arguments for rserver, e.g. ['--rsession-which-r=/opt/R/4.3/bin/R'].",
    )

    def launch(self, context: LaunchContext) -> AppLaunch:
        return rstudio_launch(context.proxy, rserver=self.rserver_cmd, rsession=self.rsession_cmd,
                              extra_args=self.args)

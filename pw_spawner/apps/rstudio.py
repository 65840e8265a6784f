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

from . import AppLaunch


def rstudio_launch(
    proxy: Sequence[str],
    *,
    rserver: Sequence[str] = ("rserver",),
    rsession: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> AppLaunch:
    """RStudio's launch. ``rsession`` empty: the ``rsession`` next to rserver (or on PATH)."""
    if not proxy:
        raise ValueError("the jupyter-standaloneproxy command is empty")
    if not rserver:
        raise ValueError("the rserver command is empty")
    return AppLaunch(
        name="RStudio",
        template="app_rstudio.sh.j2",
        command=tuple(rserver),
        slug="",
        proxy=tuple(proxy),
        options={"rsession": tuple(rsession), "extra_args": tuple(extra_args)},
    )

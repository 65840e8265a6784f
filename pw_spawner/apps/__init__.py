"""What a job launches on its node, one module an app.

An app contributes an :class:`AppLaunch`: the command, the template block that starts it and waits for
its port, and the landing path (SLUG) that service.json reports. Schedulers and SSH are not its business.

Jupyter authenticates with the hub itself. RStudio, the VNC desktop and Xpra do not: they run behind
``jupyter-standaloneproxy`` (jupyter-server-proxy's ``[standalone]`` extra), which is the server the hub
sees, logs its owner in with the hub's OAuth and lets nobody else through. The app behind it listens on a
unix socket in the job's 0700 directory where it can, otherwise on 127.0.0.1 with a per-session secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AppLaunch:
    """How the job script starts one app."""

    name: str
    template: str
    command: tuple[str, ...]
    slug: str = ""
    #: ``/me`` for an http server, ``/sme`` for https (the seed's service.json convention).
    url: str = "/me"
    #: For apps behind ``jupyter-standaloneproxy``: the proxy's command (it authenticates with the hub).
    proxy: tuple[str, ...] = ()
    #: The app's own settings, as its template reads them (admin traits, the user's resolution...).
    options: Mapping[str, Any] = field(default_factory=dict)


from .jupyter import jupyter_launch  # noqa: E402  (AppLaunch must exist first)
from .rstudio import rstudio_launch  # noqa: E402
from .vnc import RESOLUTIONS, vnc_launch  # noqa: E402
from .xpra import xpra_launch  # noqa: E402

__all__ = ["RESOLUTIONS", "AppLaunch", "jupyter_launch", "rstudio_launch", "vnc_launch", "xpra_launch"]

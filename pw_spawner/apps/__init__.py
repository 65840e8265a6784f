"""What a job launches on its node, one module an app.

An app contributes an :class:`AppLaunch`: the command, the template block that starts it and waits for
its port, and the landing path (SLUG) that service.json reports. Schedulers and SSH are not its business.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppLaunch:
    """How the job script starts one app."""

    name: str
    template: str
    command: tuple[str, ...]
    slug: str = ""
    #: ``/me`` for an http server, ``/sme`` for https (the seed's service.json convention).
    url: str = "/me"


from .jupyter import jupyter_launch  # noqa: E402  (AppLaunch must exist first)

__all__ = ["AppLaunch", "jupyter_launch"]

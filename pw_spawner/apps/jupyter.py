"""The Jupyter app: ``jupyterhub-singleuser`` (JupyterLab), which authenticates with the hub itself."""

from __future__ import annotations

from collections.abc import Sequence

from . import AppLaunch


def jupyter_launch(cmd: Sequence[str], args: Sequence[str], default_url: str = "") -> AppLaunch:
    """The launch of ``cmd + args``; ``--ip`` and ``--port`` are added by the job, which picks the port."""
    if not cmd:
        raise ValueError("the single-user command is empty")
    return AppLaunch(
        name="JupyterLab",
        template="app_jupyter.sh.j2",
        command=(*cmd, *args),
        slug=default_url.lstrip("/"),
    )

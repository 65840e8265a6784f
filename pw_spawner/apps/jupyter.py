"""The Jupyter app: ``jupyterhub-singleuser`` (JupyterLab), which authenticates with the hub itself."""

from __future__ import annotations

from collections.abc import Sequence

from .base import App, AppLaunch, LaunchContext


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


class JupyterApp(App):
    """JupyterLab through ``jupyterhub-singleuser``: the spawner's ``cmd``, ``args`` and
    ``default_url`` say what runs, and it logs users in with the hub itself (no proxy in front)."""

    name = "jupyter"
    display_name = "JupyterLab"
    behind_proxy = False

    def launch(self, context: LaunchContext) -> AppLaunch:
        return jupyter_launch(context.singleuser_cmd, context.singleuser_args, context.default_url)

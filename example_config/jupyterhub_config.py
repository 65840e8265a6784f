"""The demo hub: log in as any user (no password), pick a profile, land in JupyterLab.

Runs everything on this machine with pw_spawner's `local` target (no scheduler): each server is a
process group started by the spawner, reached through configurable-http-proxy on 127.0.0.1:8000.
Start it with `make demo` (which sets up .venv and node_modules first).
"""

import os
import sys
from pathlib import Path

from pw_spawner.cli import check_config
from pw_spawner.sessions.page import configure_sessions_page

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATE = Path(os.environ.get("PW_DEMO_STATE", REPO / "demo-state"))
STATE.mkdir(parents=True, exist_ok=True)

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("PW_DEMO_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
proxy = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
if proxy.exists():
    c.ConfigurableHTTPProxy.command = [str(proxy)]

# Any user name logs in, no password: this is a demo on loopback. Never use it on a network.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}

c.JupyterHub.spawner_class = "pw-local"
c.PWSpawner.scheduler = "local"
c.PWSpawner.job_dir_root = str(STATE / "jobs" / "{username}")
# Every user's server runs as the hub's own account here (no `sudo -u {username}` prefix): fine on a
# demo machine that you alone use, where every "user" is you. On a cluster it would let each user
# read the others' job scripts (with their API tokens) and the hub's own files, so pw_spawner
# refuses such a configuration unless it is allowed by name.
c.PWSpawner.allow_shared_account = True
c.PWSpawner.default_url = "/lab"
if os.getuid() == 0:
    # Jupyter refuses to run as root without this; only a demo on a throw-away machine runs as root.
    c.PWSpawner.args = ["--allow-root"]
# The demo's "cluster" is this machine: the environments activate this virtualenv.
venv_activate = Path(sys.prefix) / "bin" / "activate"
c.PWSpawner.profile_list = [
    {
        "slug": "demo-small",
        "display_name": "Demo small (1c, 2gb, 1h)",
        "description": "Runs on the hub host itself with the local target: no scheduler needed.",
        "default": True,
        "job": {"cores": 1, "memory": "2G", "hours": 1},
        "overrides": {"hours": {"min": 1, "max": 4}},
        "environments": [
            {"slug": "venv", "display_name": f"this virtualenv ({Path(sys.prefix).name})",
             "activate": f"source {venv_activate}", "default": True},
        ],
    },
    {
        "slug": "demo-large",
        "display_name": "Demo large (2c, 4gb, 2h)",
        "description": "The same machine with more declared resources; shows a second job type.",
        "job": {"cores": 2, "memory": "4G", "hours": 2},
        "environments": [
            {"slug": "venv", "display_name": "this virtualenv", "activate": f"source {venv_activate}"},
        ],
    },
]
# The sessions page (/hub/sessions, "Sessions" in the navbar): every session of a user, running,
# queued or finished, kept in a small database next to the hub's; named servers on, so that a user
# runs a notebook and a desktop at once ("New session").
configure_sessions_page(c, store_url=f"sqlite:///{STATE / 'pw_sessions.sqlite'}")
# Stop the hub at start-up, with the file and key, if a profile is wrong.
check_config(c)

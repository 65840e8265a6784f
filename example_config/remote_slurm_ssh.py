"""A hub that is NOT on the cluster: it drives a remote Slurm login node over SSH.

One SSH connection per (cluster, SSH user), shared by every server, runs sbatch/squeue/scancel
on the login node (asyncssh). The tunnel process (`pw-spawner tunnel`, started by the hub on first
use, detached so that it outlives hub restarts) forwards 127.0.0.1:<local port> on the hub host
to the job's node:port through the same kind of connection, and the proxy routes users there.
Host keys are checked against the known_hosts file given; an unknown or changed key is refused.
"""

from pw_spawner.cli import check_config

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.authenticator_class = "pam"
c.JupyterHub.spawner_class = "pw-slurm"
c.PWSpawner.profiles_dir = "/etc/jupyterhub/profiles"
c.PWSpawner.default_url = "/lab"
c.PWSpawner.start_timeout = 1800

# The clusters users may pick on the spawn page ("Service host"; shown when there are several).
c.PWSpawner.resources = [
    {
        "name": "cluster-a",
        "display_name": "Cluster A (Slurm)",
        # Tried in order at each spawn: the first that takes the login is used for that server.
        "hosts": ["login1.cluster-a.example", "login2.cluster-a.example"],
        "port": 22,
        "ssh_user": "{username}",  # the hub user's own account; or a fixed service account
        "key_file": "/etc/jupyterhub/ssh/{username}/id_ed25519",
        "known_hosts": "/etc/jupyterhub/ssh/known_hosts",
        "scheduler": "slurm",
        "job_dir_root": "~/.pw_spawner/jobs",
        "profiles": ["cpu-short", "cpu-long", "gpu"],
        # How jobs reach the hub's API: a URL the compute nodes can reach directly ...
        "hub_connect_url": "https://hub.example.org",
    },
    {
        "name": "viz",
        "display_name": "Visualisation login node (no queue)",
        "host": "viz1.cluster-a.example",
        "ssh_user": "{username}",
        "key_file": "/etc/jupyterhub/ssh/{username}/id_ed25519",
        "known_hosts": "/etc/jupyterhub/ssh/known_hosts",
        # The app runs on the login node itself (needs only python3 there).
        "scheduler": "controller",
        # ... or a reverse forward of the hub's API through the SSH connection, bound on the
        # login node where jobs reach it (beyond loopback, its sshd needs GatewayPorts clientspecified).
        "hub_api_forward": {"bind_host": "127.0.0.1", "bind_port": 0},
    },
]
# Forwards live in a process of their own (default), keeping users' traffic off the hub's loop.
c.PWSpawner.tunnel_mode = "process"
c.PWSpawner.tunnel_socket = "/var/lib/jupyterhub/tunnel/tunnel.sock"

check_config(c)

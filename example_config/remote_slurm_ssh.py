"""A hub that is NOT on the cluster: it drives a remote Slurm login node over SSH.

NOT YET AVAILABLE: this is the configuration planned for remote clusters (the asyncssh executor,
shared SSH connections and the tunnel process; see the issue "Remote clusters over SSH"). The
settings below marked PLANNED do not exist yet and are kept in comments so that this file loads;
the rest works today. Until then, run the hub on a login node (slurm_hub_host.py).

How it will work: one SSH connection per (cluster, SSH user), shared by every server, runs
sbatch/squeue/scancel on the login node; a tunnel process on the hub host forwards
127.0.0.1:<local port> to the job's node:port, and the proxy routes users there. Host keys are
checked against the known_hosts file given; an unknown or changed key is refused.
"""

from pw_spawner.cli import check_config

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.authenticator_class = "pam"
c.JupyterHub.spawner_class = "pw-slurm"
c.PWSpawner.profiles_dir = "/etc/jupyterhub/profiles"
c.PWSpawner.default_url = "/lab"
c.PWSpawner.start_timeout = 1800

# PLANNED: the clusters users may pick on the spawn page ("service host").
# c.PWSpawner.resources = [
#     {
#         "name": "cluster-a",
#         "display_name": "Cluster A (Slurm)",
#         "login_hosts": ["login1.cluster-a.example", "login2.cluster-a.example"],
#         "port": 22,
#         "ssh_user": "{username}",             # or a fixed service account
#         "key_file": "/etc/jupyterhub/ssh/id_ed25519",
#         "known_hosts": "/etc/jupyterhub/ssh/known_hosts",
#         "scheduler": "slurm",
#         "job_dir_root": "~/.pw_spawner/jobs",
#         "profiles": ["cpu-short", "cpu-long", "gpu"],
#     },
# ]
# PLANNED: how jobs reach the hub's API: a URL the nodes can reach directly ...
# c.JupyterHub.hub_connect_url = "https://hub.example.org/hub/api"
# ... or a reverse forward through the same SSH connection (sshd: GatewayPorts clientspecified).
# c.PWSpawner.hub_reverse_forward = True

check_config(c)

"""A hub that runs on a Slurm login node (or any host with the Slurm client and munge set up).

Each user's server is a Slurm job submitted as that user with `sudo -u <user> sbatch`; the hub
reaches the job's node directly over the cluster network (no tunnel). Copy this file to
/etc/jupyterhub/jupyterhub_config.py and adapt the marked lines.

The hub's account needs a sudoers rule that lets it run exactly the Slurm commands as users
(batchspawner's rule has the same shape):

    Cmnd_Alias PW_SLURM = /usr/bin/sbatch, /usr/bin/squeue, /usr/bin/sacct, /usr/bin/scancel, \
                          /usr/bin/scontrol, /usr/bin/mkdir, /usr/bin/cat, /usr/bin/bash
    Runas_Alias PW_USERS = %hpcusers
    jupyterhub ALL=(PW_USERS) NOPASSWD: PW_SLURM

Check the result before starting the hub:

    pw-spawner check --config /etc/jupyterhub/jupyterhub_config.py
    pw-spawner render --config /etc/jupyterhub/jupyterhub_config.py --profile cpu-short --user alice
"""

from pw_spawner.cli import check_config

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# The public side: put TLS in front (a reverse proxy, or c.JupyterHub.ssl_cert/ssl_key).
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
# Jobs on compute nodes call the hub's API: listen where nodes can reach it.
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://login01.cluster.example:8081"  # <- this host, as nodes see it

# Your site's authenticator (PAM shown: user names are the cluster's accounts).
c.JupyterHub.authenticator_class = "pam"

c.JupyterHub.spawner_class = "pw-slurm"
c.PWSpawner.exec_prefix = ["sudo", "-u", "{username}", "--"]
c.PWSpawner.profiles_dir = "/etc/jupyterhub/profiles"  # <- e.g. a copy of the repository's profiles/
c.PWSpawner.job_dir_root = "~/.pw_spawner/jobs"        # in each user's home, shared with the nodes
c.PWSpawner.default_url = "/lab"
# The batch shell is not a login shell: make `module` available before profiles load modules.
c.PWSpawner.setup_lines = ["source /etc/profile.d/modules.sh"]
# Queue waits count against the start; give long queues room (seconds).
c.PWSpawner.start_timeout = 1800
# Users may not point the server at other binaries from the spawn page.
c.PWSpawner.forbidden_env_names = ["PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH"]

# Stop the hub at start-up, naming file and key, if a profile is wrong.
check_config(c)

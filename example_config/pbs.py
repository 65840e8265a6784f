"""A hub on a PBS Pro (or Torque) cluster's login node.

The same shape as slurm_hub_host.py: jobs are submitted as the user with `sudo -u <user> qsub`
and the hub reaches the job's node directly. PBS Pro gets `-l select=1:ncpus=..:mem=..`
directives; set the scheduler to "torque" for `-l nodes=1:ppn=..` instead. Profiles' `partition`
becomes the queue (`-q`).

sudoers for the hub's account:

    Cmnd_Alias PW_PBS = /opt/pbs/bin/qsub, /opt/pbs/bin/qstat, /opt/pbs/bin/qdel, \
                        /usr/bin/mkdir, /usr/bin/cat, /usr/bin/bash
    jupyterhub ALL=(%hpcusers) NOPASSWD: PW_PBS
"""

from pw_spawner.cli import check_config

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://login01.cluster.example:8081"  # <- this host, as nodes see it
c.JupyterHub.authenticator_class = "pam"

c.JupyterHub.spawner_class = "pw-pbs"
c.PWSpawner.scheduler = "pbs"  # or "torque"
c.PWSpawner.exec_prefix = ["sudo", "-u", "{username}", "--"]
c.PWSpawner.default_url = "/lab"
c.PWSpawner.setup_lines = ["source /etc/profile.d/modules.sh"]
c.PWSpawner.start_timeout = 1800

# Profiles may live in the config as well as in files; KubeSpawner's profile_list shape.
c.PWSpawner.profile_list = [
    {
        "slug": "workq-small",
        "display_name": "workq small (2c, 8gb, 2h)",
        "default": True,
        "job": {"partition": "workq", "cores": 2, "memory": "8G", "walltime": "02:00:00",
                "account": "hpc-users",
                # Raw directives the admin trusts, per flavour of PBS.
                "extra_directives": {"pbs": ["-l place=free"], "torque": ["-l naccesspolicy=shared"]}},
        "overrides": {"hours": {"min": 1, "max": 8}, "cores": {"choices": [1, 2, 4]}},
        "environments": [
            {"slug": "py311", "display_name": "env modules (Python 3.11)", "modules": ["python/3.11"]},
            {"slug": "conda", "display_name": "conda base", "activate": "source /opt/conda/bin/activate"},
        ],
    },
]

check_config(c)

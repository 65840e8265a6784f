"""pw_spawner: a JupyterHub spawner for interactive applications on HPC clusters.

The spawner classes live in :mod:`pw_spawner.spawner`; they are imported lazily so that the
profile code and the job-side helpers do not pay for importing JupyterHub.
"""

__version__ = "0.1.0"

#: Every spawner class (each is also a ``jupyterhub.spawners`` entry point).
SPAWNER_CLASSES = ("PWSpawner", "PWSlurmSpawner", "PWPBSSpawner", "PWRStudioSpawner", "PWVNCSpawner",
                   "PWXpraSpawner")

__all__ = [*SPAWNER_CLASSES, "__version__"]


def __getattr__(name: str):
    if name in SPAWNER_CLASSES:
        from . import spawner

        return getattr(spawner, name)
    raise AttributeError(name)

"""pw_spawner: a JupyterHub spawner for interactive applications on HPC clusters.

The spawner classes live in :mod:`pw_spawner.spawner`; they are imported lazily so that
``pw-spawner render`` and the profile code do not pay for importing JupyterHub.
"""

__version__ = "0.1.0"

__all__ = ["PWPBSSpawner", "PWSlurmSpawner", "PWSpawner", "__version__"]


def __getattr__(name: str):
    if name in ("PWSpawner", "PWSlurmSpawner", "PWPBSSpawner"):
        from . import spawner

        return getattr(spawner, name)
    raise AttributeError(name)

"""Making a PWSpawner outside a running hub, for admins' tests of their own configuration.

    spawner = make_spawner(profile_list=[...], scheduler="slurm", username="alice")
    url = await spawner.start()

The same function as :func:`pw_spawner.standalone.make_spawner` (which ``pw-spawner render``
uses), kept here where tests have always imported it from.
"""

from __future__ import annotations

from ..standalone import make_spawner

__all__ = ["make_spawner"]

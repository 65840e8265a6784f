"""A PWSpawner outside a running hub: for ``pw-spawner render`` and for admins' own tests.

    spawner = make_spawner(profile_list=[...], scheduler="slurm", username="alice")
    url = await spawner.start()

The spawner gets a stand-in user (name, groups) and hub; everything else is the real class, so
what it renders or starts is what the hub's spawner would.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from jupyterhub.objects import Hub

from .spawner import PWSpawner


def make_spawner(cls: type[PWSpawner] = PWSpawner, *, username: str = "alice", server_name: str = "",
                 groups: Iterable[str] = (), user_options: dict | None = None,
                 api_token: str = "test-token", **traits: Any) -> PWSpawner:
    """A spawner of ``cls`` for ``username``, configured with ``traits`` (``config=`` included)."""
    user = SimpleNamespace(
        name=username, escaped_name=username, url=f"/user/{username}/", id=1, orm_user=None,
        server=None, spawners={}, groups=[SimpleNamespace(name=g) for g in groups],
    )
    # Spawner.name comes from its database row; a stand-in row carries the server's name.
    orm_spawner = SimpleNamespace(name=server_name, server=None, display_name="", user_options=None)
    spawner = cls(user=user, hub=Hub(), orm_spawner=orm_spawner, api_token=api_token,
                  oauth_client_id=f"jupyterhub-user-{username}", **traits)
    spawner.user_options = dict(user_options or {})
    return spawner

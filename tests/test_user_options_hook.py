"""The default apply_user_options hook: options are checked before start(), after group_overrides."""

from __future__ import annotations

import logging

import pytest
from tornado import web

from pw_spawner.testing.spawners import make_spawner

SMALL = {"slug": "small", "display_name": "Small", "default": True}
GPU = {"slug": "gpu", "display_name": "GPU", "job": {"gpus": 1}}
# Members of gpu-users get the GPU profile through JupyterHub's own group_overrides.
GROUP_OVERRIDES = {"01-gpu": {"groups": ["gpu-users"], "spawner_override": {"profile_list": [SMALL, GPU]}}}


async def _apply(spawner) -> None:
    """What the hub does between the spawn request and start()."""
    await spawner.apply_group_overrides()
    await spawner._run_apply_user_options(spawner.user_options)


async def test_options_checked_against_group_overrides(caplog):
    caplog.set_level(logging.WARNING)
    member = make_spawner(profile_list=[SMALL], group_overrides=GROUP_OVERRIDES, groups=["gpu-users"],
                          user_options={"profile": "gpu"})
    await _apply(member)
    assert "unhandled user_options" not in caplog.text

    other = make_spawner(profile_list=[SMALL], group_overrides=GROUP_OVERRIDES, groups=["staff"],
                         user_options={"profile": "gpu"})
    with pytest.raises(web.HTTPError) as info:
        await _apply(other)
    assert info.value.status_code == 400
    assert info.value.jupyterhub_message == "profile: unknown profile 'gpu'"


async def test_admin_hook_replaces_the_default():
    seen = []
    spawner = make_spawner(profile_list=[SMALL], apply_user_options=lambda s, o: seen.append(o),
                           user_options={"profile": "nosuch"})
    await _apply(spawner)  # the admin's hook decides; start() still validates
    assert seen == [{"profile": "nosuch"}]

"""The example configs in example_config/ name only settings that exist, and their profiles pass.

An example that sets a misspelt or removed trait would be silently ignored by traitlets (a warning
in the hub's log at most), so each file is loaded and every key it sets is looked up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator
from jupyterhub.proxy import ConfigurableHTTPProxy
from traitlets.config.loader import PyFileConfigLoader

import pw_spawner.cli
from pw_spawner import PWSpawner

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_config"
SECTIONS = {cls.__name__: cls for cls in (JupyterHub, Authenticator, ConfigurableHTTPProxy, PWSpawner)}
real_check_config = pw_spawner.cli.check_config


def load(name: str, monkeypatch) -> tuple[object, list]:
    calls: list = []
    monkeypatch.setattr(pw_spawner.cli, "check_config", calls.append)
    return PyFileConfigLoader(name, path=str(EXAMPLES)).load_config(), calls


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_config_sets_only_real_settings(name, monkeypatch, tmp_path):
    monkeypatch.setenv("PW_DEMO_STATE", str(tmp_path))
    config, calls = load(name, monkeypatch)
    assert calls, f"{name} should end with check_config(c), so a bad profile stops the hub"
    assert set(config) <= set(SECTIONS), f"{name}: unexpected sections {set(config) - set(SECTIONS)}"
    for section, values in config.items():
        known = set(SECTIONS[section].class_traits(config=True))
        assert set(values) <= known, f"{name}: c.{section} has no {sorted(set(values) - known)}"
    # The profiles it refers to are valid (the repository's examples stand in for /etc/jupyterhub).
    if "profiles_dir" in config.PWSpawner:
        config.PWSpawner.profiles_dir = str(REPO / "profiles")
    real_check_config(config)

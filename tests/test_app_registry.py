"""The app registry: every app a module of pw_spawner.apps defines, its own settings section, the old
PWSpawner names of those settings, and apps from other packages through an entry point."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint

import pytest
from traitlets import Unicode
from traitlets.config import Config

from pw_spawner import apps, plugins
from pw_spawner.apps import App, AppLaunch, LaunchContext, app_classes, form_option_names, old_setting_names
from pw_spawner.apps.vnc import VNCApp
from pw_spawner.form import render_form
from pw_spawner.options import option_keys
from pw_spawner.profiles import ProfileError, build_profiles
from pw_spawner.spawner import PWSpawner, PWVNCSpawner
from pw_spawner.testing.spawners import make_spawner

PROFILE = {"slug": "apps", "apps": ["jupyter", "vnc", "xpra", "rstudio"]}


def test_the_built_in_apps_are_found_in_their_modules():
    found = app_classes()
    assert next(iter(found)) == "jupyter" and {"rstudio", "vnc", "xpra"} <= set(found)
    assert all(cls.name == name and cls.display_name for name, cls in found.items())
    assert form_option_names() == ("resolution",) and "resolution" in option_keys()
    # The 14 app settings PWSpawner had are now the apps' own.
    assert len(old_setting_names()) == 14
    assert not any(name.startswith(("vnc_", "xpra_", "rstudio_")) for name in vars(PWSpawner))


async def test_an_apps_own_section_wins_over_nothing_and_its_old_name_still_works(caplog):
    config = Config()
    config.VNCApp.geometry = "1600x900"
    spawner = make_spawner(PWVNCSpawner, config=config, profile_list=[PROFILE])
    assert spawner.app_launch(await spawner.selection()).options["geometry"] == "1600x900"
    old = Config()
    old.PWSpawner.vnc_geometry = "1440x900"
    with caplog.at_level(logging.WARNING):
        spawner = make_spawner(PWVNCSpawner, config=old, profile_list=[PROFILE])
        assert spawner.app_launch(await spawner.selection()).options["geometry"] == "1440x900"
    assert spawner.vnc_geometry == "1440x900"
    # The user's pick still comes first.
    launch = spawner.app_launch(await spawner.selection({"profile": "apps", "resolution": "1920x1080"}))
    assert launch.options["geometry"] == "1920x1080"


class ExampleApp(App):
    """A site's app from another package."""

    name = "example"
    display_name = "Example"
    greeting = Unicode("hi", config=True, help="What it says.")
    profile_settings = ("greeting",)

    def launch(self, context: LaunchContext) -> AppLaunch:
        return AppLaunch(name="Example", template="app_declared.sh.j2", command=("example", self.greeting),
                         proxy=context.proxy)


@pytest.fixture
def registered(monkeypatch):
    entry = EntryPoint(name="example", value=f"{__name__}:ExampleApp", group=apps.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [entry] if group == apps.ENTRY_POINT_GROUP else [])
    app_classes.cache_clear()
    yield
    monkeypatch.undo()
    app_classes.cache_clear()


async def test_an_app_from_an_entry_point_appears_everywhere(registered):
    profile = {"slug": "ex", "apps": ["example"], "app_settings": {"example": {"greeting": "hello"}}}
    (built,) = build_profiles([profile])
    assert built.app_settings == {"example": {"greeting": "hello"}}
    assert "Example" in render_form(build_profiles([{**profile, "apps": ["jupyter", "example"]}]))
    spawner = make_spawner(profile_list=[profile])
    assert spawner.app_launch(await spawner.selection()).command == ("example", "hello")
    with pytest.raises(ProfileError, match=r"app_settings.example.colour: unknown setting"):
        build_profiles([{**profile, "app_settings": {"example": {"colour": "red"}}}])


def test_a_bad_old_setting_is_refused_like_the_new_one():
    with pytest.raises(Exception, match="not a screen size"):
        make_spawner(PWVNCSpawner, vnc_geometry="huge")
    with pytest.raises(Exception, match="not a screen size"):
        VNCApp(geometry="huge")

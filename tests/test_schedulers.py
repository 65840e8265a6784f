"""The scheduler registry: every list of scheduler kinds comes from it, and a scheduler added from
outside the package (an entry point) appears in all of them without any other file being edited."""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint

import pytest

from pw_spawner import PWSpawner, plugins, schedulers
from pw_spawner.cli import build_parser
from pw_spawner.options import Selection
from pw_spawner.profiles import ProfileError, profile_from_dict
from pw_spawner.resources import ResourceError, resource_from_dict
from pw_spawner.schedulers import (
    Scheduler,
    directive_kinds,
    get_scheduler,
    resource_scheduler_kinds,
    scheduler_class,
    scheduler_classes,
    scheduler_help,
    scheduler_kinds,
)
from pw_spawner.schedulers.local import ControllerScheduler, LocalScheduler
from pw_spawner.schedulers.pbs import PBSScheduler, TorqueScheduler
from pw_spawner.schedulers.sge import GridEngineScheduler
from pw_spawner.schedulers.slurm import SlurmScheduler
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.testing.spawners import make_spawner

RESOURCE = {"name": "cluster-a", "host": "login1.example.org", "key_file": "/k", "known_hosts": "/kh"}
PROFILE = {"slug": "p", "display_name": "P", "job": {"cores": 2, "memory": "2G", "walltime": "01:00:00"}}


class ExampleScheduler(Scheduler):
    """A scheduler of another package, registered through the entry-point group."""

    kind = "example"
    summary = "submits with exsub"
    directive_prefix = "#EX"

    def directives(self, job, name, output):
        return self._prefixed([f"--name {name}", f"--cores {job.cores}"], job)

    async def submit(self, executor, script, *, name, job_dir):
        raise NotImplementedError

    async def query(self, executor, jobs):
        return {}

    async def cancel(self, executor, job):
        return None

    async def find(self, executor, name, job_dir):
        return []


def _entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=schedulers.ENTRY_POINT_GROUP)


@pytest.fixture
def registered(monkeypatch):
    """Registers ExampleScheduler as an installed package would, for one test."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: [
        _entry("example", f"{__name__}:ExampleScheduler")] if group == schedulers.ENTRY_POINT_GROUP else [])
    scheduler_classes.cache_clear()
    yield
    monkeypatch.undo()
    scheduler_classes.cache_clear()


BUILT_IN = {"local": LocalScheduler, "controller": ControllerScheduler, "pbs": PBSScheduler,
            "sge": GridEngineScheduler, "slurm": SlurmScheduler, "torque": TorqueScheduler}


def test_the_built_in_schedulers_are_found_in_their_modules():
    # Other modules of the package may add schedulers; these must be among them, each once.
    found = scheduler_classes()
    assert {kind: found.get(kind) for kind in BUILT_IN} == BUILT_IN
    assert all(kind == cls.kind for kind, cls in found.items())
    # The embedded default first, then by name.
    kinds = list(found)
    assert kinds[0] == "local" and kinds[1:] == sorted(kinds[1:])
    assert set(BUILT_IN) - set(resource_scheduler_kinds()) == {"local"}
    assert {"pbs", "sge", "slurm", "torque"} <= set(directive_kinds())
    assert not {"local", "controller"} & set(directive_kinds())
    assert [scheduler_class(k).default_bind_ip() for k in BUILT_IN] == \
        ["127.0.0.1", "127.0.0.1", "0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0"]
    assert all(cls.job_id_variable for cls in scheduler_classes().values())


def test_every_list_of_kinds_is_the_registry():
    assert tuple(PWSpawner.scheduler.values) == scheduler_kinds()
    for kind in scheduler_kinds():
        assert f"`{kind}` " in PWSpawner.scheduler.help
    render = build_parser()._subparsers._group_actions[0].choices["render"]
    (option,) = [a for a in render._actions if "--scheduler" in a.option_strings]
    assert tuple(option.choices) == scheduler_kinds()


def test_an_unknown_kind_is_refused_with_the_known_ones():
    known = re.escape(f"unknown scheduler 'loadleveler' (known: {', '.join(scheduler_kinds())})")
    with pytest.raises(ValueError, match=known):
        get_scheduler("loadleveler")
    refused = re.escape(f"scheduler: 'local' is not one of {', '.join(resource_scheduler_kinds())}")
    with pytest.raises(ResourceError, match=refused):
        resource_from_dict({**RESOURCE, "scheduler": "local"}, 0)
    with pytest.raises(ProfileError, match="loadleveler"):
        profile_from_dict({**PROFILE, "job": {**PROFILE["job"],
                                              "extra_directives": {"loadleveler": ["-x"]}}})


def test_the_spawners_settings_reach_the_schedulers_that_use_them():
    assert get_scheduler("local", job_niceness=7).niceness == 7
    assert get_scheduler("controller", job_niceness=7).runner[:4] == ("python3", "-I", "-S", "-c")
    assert isinstance(get_scheduler("slurm", job_niceness=7), SlurmScheduler)


def test_a_scheduler_from_an_entry_point_appears_everywhere(registered):
    assert "example" in scheduler_kinds() and set(BUILT_IN) < set(scheduler_kinds())
    assert "example" in resource_scheduler_kinds() and "example" in directive_kinds()
    assert "`example` submits with exsub" in scheduler_help()
    resource = resource_from_dict({**RESOURCE, "scheduler": "example"}, 0)
    assert resource.scheduler == "example"
    job = {**PROFILE["job"], "extra_directives": {"example": ["--x 1"]}}
    profile = profile_from_dict({**PROFILE, "job": job})
    spawner = make_spawner(profile_list=[PROFILE])
    selection = Selection(profile=profile, environment=None, app="jupyter", job=profile.job)
    script = render_script(ScriptRequest(selection=selection, scheduler="example", job_name="pw-a-1",
                                         job_dir="/tmp/jobs/a", app=spawner.app_launch(selection)))
    assert script.splitlines()[1:4] == ["#EX --name pw-a-1", "#EX --cores 2", "#EX --x 1"]


def test_an_entry_point_that_is_not_a_scheduler_is_refused(monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [
        _entry("bad", "os:getcwd")] if group == schedulers.ENTRY_POINT_GROUP else [])
    scheduler_classes.cache_clear()
    try:
        with pytest.raises(TypeError, match="entry point bad = os:getcwd is not a Scheduler"):
            scheduler_classes()
    finally:
        monkeypatch.undo()
        scheduler_classes.cache_clear()

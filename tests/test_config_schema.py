"""The JSON Schemas of the admin's configuration: valid 2020-12 schemas that agree with the loaders.

``pw-spawner schema profiles|resources`` is what editors check YAML with; a schema that accepted what
the hub refuses (or refused what it accepts) would mislead admins, so each case below is put to
both the schema (jsonschema) and the loader (pydantic).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pw_spawner.apps.declared import apps_schema
from pw_spawner.config_schema import JSON_SCHEMA_DIALECT, error_key
from pw_spawner.profiles import ProfileError, profile_from_dict, profiles_schema
from pw_spawner.resources import ResourceError, build_resources, resources_schema
from pw_spawner.schedulers import directive_kinds, resource_scheduler_kinds

REPO = Path(__file__).resolve().parent.parent
RESOURCE = {"name": "cluster-a", "host": "login1", "key_file": "/k", "known_hosts": "/kh",
            "scheduler": "slurm"}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("part", ["profiles", "resources", "apps"])
def test_the_command_prints_a_2020_12_schema(part):
    out = subprocess.run([sys.executable, "-m", "pw_spawner.cli", "schema", part],
                         capture_output=True, text=True, check=True).stdout
    schema = json.loads(out)
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    _validator(schema)


def test_every_shipped_profile_file_matches_the_schema():
    validator = _validator(profiles_schema())
    files = sorted((REPO / "profiles").glob("*.yaml")) + sorted(
        f for f in (REPO / "example_config").glob("**/*.yaml") if "apps" not in f.parts)
    assert files
    for file in files:
        errors = list(validator.iter_errors(yaml.safe_load(file.read_text())))
        assert not errors, (file, [e.message for e in errors])


def test_every_shipped_app_definition_matches_the_schema():
    validator = _validator(apps_schema())
    files = sorted((REPO / "example_config" / "apps").glob("*.yaml"))
    assert files
    for file in files:
        errors = list(validator.iter_errors(yaml.safe_load(file.read_text())))
        assert not errors, (file, [e.message for e in errors])


def test_the_registry_is_in_the_schema():
    schema = json.dumps(profiles_schema())
    assert json.dumps(list(directive_kinds())) in schema
    assert json.dumps(list(resource_scheduler_kinds())) in json.dumps(resources_schema())


GOOD_PROFILES = [
    {"slug": "p"},
    {"slug": "p", "job": {"cores": 4, "memory": "16G", "walltime": "04:00:00", "partition": "short"}},
    {"slug": "p", "job": {"hours": 1.5, "memory": 2048, "queue": "workq"}},
    {"slug": "p", "job": {"extra_directives": ["--exclusive"]}},
    {"slug": "p", "job": {"extra_directives": {"slurm": ["--exclusive"], "pbs": ["-l place=excl"]}}},
    {"slug": "p", "overrides": {"hours": {"max": 8}, "memory": {"min": "1G", "max": "32G"},
                                "cores": {"choices": [1, 2]}}},
    {"slug": "p", "environments": [{"slug": "e", "modules": ["python/3.11"], "default": True}]},
    {"slug": "p", "apps": ["jupyter", "vnc"], "groups": ["g"], "forbidden_env": ["PATH"]},
    [{"slug": "a"}, {"slug": "b"}],
]
BAD_PROFILES = [
    {"slug": "Bad Slug"},
    {"slug": "p", "colour": "red"},
    {"slug": "p", "job": {"cores": 0}},
    {"slug": "p", "job": {"cores": "four"}},
    {"slug": "p", "job": {"memory": "lots"}},
    {"slug": "p", "job": {"walltime": 14400}},
    {"slug": "p", "job": {"partition": "short; rm -rf /"}},
    {"slug": "p", "job": {"extra_directives": {"loadleveler": ["x"]}}},
    {"slug": "p", "job": {"extra_directives": ["a\nb"]}},
    {"slug": "p", "apps": ["Not An App"]},  # ("emacs" is valid in a file: an app may be declared)
    {"slug": "p", "overrides": {"nodes": {"max": 2}}},
    {"slug": "p", "environments": [{"slug": "e", "modules": ["x; reboot"]}]},
    {"slug": "p", "forbidden_env": ["1BAD"]},
    {"slug": "p", "default": "yes"},
    {"display_name": "no slug"},
]


@pytest.mark.parametrize("document", GOOD_PROFILES, ids=str)
def test_what_the_loader_accepts_the_schema_accepts(document):
    for item in document if isinstance(document, list) else [document]:
        profile_from_dict(item)
    assert not list(_validator(profiles_schema()).iter_errors(document))


@pytest.mark.parametrize("document", BAD_PROFILES, ids=str)
def test_what_the_schema_refuses_the_loader_refuses(document):
    with pytest.raises(ProfileError):
        profile_from_dict(document)
    assert list(_validator(profiles_schema()).iter_errors(document))


BAD_RESOURCES = [
    {**RESOURCE, "scheduler": "loadleveler"},
    {**RESOURCE, "port": "22"},
    {**RESOURCE, "name": "Has Space"},
    {**RESOURCE, "login_hosts": ["x"]},
    {k: v for k, v in RESOURCE.items() if k != "known_hosts"},
    {**RESOURCE, "hub_api_forward": {"port": 1}},
    {**RESOURCE, "scheduler_settings": {"parallel_environment": "mpi"}},  # Slurm takes none
    {**RESOURCE, "scheduler": "sge", "scheduler_settings": {"pe": "mpi"}},
    {**RESOURCE, "scheduler": "sge", "scheduler_settings": {"memory_resources": "h_vmem"}},
]


@pytest.mark.parametrize("resource", BAD_RESOURCES, ids=str)
def test_a_bad_resource_is_refused_by_both(resource):
    with pytest.raises(ResourceError):
        build_resources([resource])
    assert list(_validator(resources_schema()).iter_errors([resource]))


def test_a_good_resource_is_accepted_by_both():
    resource = {**RESOURCE, "hosts": ["login1", "login2"], "env": {"A": "b"}, "scheduler": "sge",
                "scheduler_settings": {"parallel_environment": "mpi", "memory_resources": ["mem_free"]},
                "hub_api_forward": {"bind_host": "0.0.0.0", "connect_host": "login1"}}
    (built,) = build_resources([resource])
    assert built.hosts == ("login1", "login2") and built.hub_api_forward is not None
    assert not list(_validator(resources_schema()).iter_errors([resource]))


def test_error_keys_read_like_the_yaml():
    assert error_key(("environments", 0, "modules", 1)) == "environments[0].modules[1]"
    assert error_key(("job", "cores"), "[2]") == "[2].job.cores"

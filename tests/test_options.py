"""User options against the profiles: every rule, with the form field it names."""

from __future__ import annotations

import pytest

from pw_spawner.options import OptionsError, parse_env_lines, validate_options
from pw_spawner.profiles import build_profiles

BASE = {
    "slug": "cpu",
    "display_name": "CPU",
    "default": True,
    "job": {"partition": "short", "cores": 4, "memory": "16G", "walltime": "04:00:00"},
    "overrides": {"hours": {"max": 8}, "cores": {"choices": [1, 2, 4]},
                  "memory": {"min": "1G", "max": "32G"}},
    "environments": [
        {"slug": "mods", "display_name": "modules", "modules": ["python/3.11"], "default": True},
        {"slug": "conda", "activate": "source /opt/conda/bin/activate base"},
    ],
}
GPU = {"slug": "gpu", "display_name": "GPU", "groups": ["gpu-users"], "job": {"gpus": 1},
       "overrides": {"gpus": {"max": 2}}}


@pytest.fixture
def profiles():
    return build_profiles([BASE, GPU])


def test_defaults_when_no_options(profiles):
    sel = validate_options(profiles, {})
    assert sel.profile.slug == "cpu"
    assert sel.environment.slug == "mods"
    assert sel.app == "jupyter"
    assert sel.job.cores == 4 and sel.job.memory_mb == 16384 and sel.job.walltime_s == 4 * 3600
    assert sel.env == {} and sel.logging is False


def test_overrides_within_limits(profiles):
    sel = validate_options(profiles, {"hours": "8", "cores": 2, "memory": "8G", "logging": True,
                                      "environment": "conda"})
    assert sel.job.walltime_s == 8 * 3600 and sel.job.cores == 2 and sel.job.memory_mb == 8192
    assert sel.environment.slug == "conda" and sel.logging is True


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"profile": "nope"}, "profile", "unknown profile"),
        ({"profile": "gpu"}, "profile", "may not use"),
        ({"environment": "other"}, "environment", "is not an environment"),
        ({"app": "rstudio"}, "app", "is not offered"),
        ({"hours": 9}, "hours", "above the maximum"),
        ({"hours": 0}, "hours", "below the minimum"),
        ({"hours": "2h"}, "hours", "whole number"),
        ({"hours": "inf"}, "hours", "whole number"),
        ({"hours": "nan"}, "hours", "whole number"),
        ({"cores": 3}, "cores", "not one of the allowed"),
        ({"memory": "64G"}, "memory", "above the maximum"),
        ({"memory": "big"}, "memory", "size like"),
        ({"gpus": 1}, "gpus", "does not let you change"),
        ({"resource": "mars"}, "resource", "unknown resource"),
        ({"logging": "maybe"}, "logging", "true or false"),
        ({"image": "x"}, "image", "unknown option"),
        ({"env": {"JUPYTERHUB_API_TOKEN": "x"}}, "env", "reserved"),
        ({"env": {"PW_JOB_DIR": "/"}}, "env", "reserved"),
        ({"env": {"SLURM_JOB_ID": "1"}}, "env", "reserved"),
        ({"env": {"SGE_ROOT": "/x"}}, "env", "reserved"),
        ({"env": {"JOB_ID": "1"}}, "env", "reserved"),
        ({"env": {"PBS_O_WORKDIR": "/"}}, "env", "reserved"),
        ({"env": {"HOME": "/tmp"}}, "env", "reserved"),
        ({"env": {"IFS": "/"}}, "env", "reserved"),
        ({"env": {"BASH_ENV": "/tmp/x"}}, "env", "reserved"),
        ({"env": {"_": ""}}, "env", "reserved"),
        ({"env": {"1X": "y"}}, "env", "not a valid variable name"),
        ({"env": {"A-B": "y"}}, "env", "not a valid variable name"),
        ({"env": {"A": "line\nnext"}}, "env", "newline"),
        ({"env": {"A": ["list"]}}, "env", "must be text"),
        ({"env": ["A=1"]}, "env", "mapping"),
    ],
)
def test_refused_options_name_the_field(profiles, options, field, words):
    with pytest.raises(OptionsError) as info:
        validate_options(profiles, options)
    assert info.value.field == field
    assert words in info.value.message


def test_null_logging_is_not_given(profiles):
    # JupyterHub stores user_options as JSON and may hand back None for a value; null is "left out".
    assert validate_options(profiles, {"logging": None}).logging is False


def test_groups_unlock_profiles(profiles):
    sel = validate_options(profiles, {"profile": "gpu", "gpus": 2}, groups=["gpu-users"])
    assert sel.job.gpus == 2


def test_forbidden_env_from_profile_and_config():
    profiles = build_profiles([{**BASE, "forbidden_env": ["PATH"]}])
    with pytest.raises(OptionsError, match="PATH may not be set"):
        validate_options(profiles, {"env": {"PATH": "/evil"}})
    with pytest.raises(OptionsError, match="LD_PRELOAD may not be set"):
        validate_options(profiles, {"env": {"LD_PRELOAD": "x.so"}}, forbidden_env=["LD_PRELOAD"])


def test_env_textarea_lines():
    assert parse_env_lines("A=1\n\n# comment\n B = two words \nC=a=b\n") == {
        "A": "1", "B": " two words", "C": "a=b"}
    with pytest.raises(OptionsError, match="line 2: expected NAME=value"):
        parse_env_lines("A=1\njust text")
    with pytest.raises(OptionsError, match="line 2: A is set twice"):
        parse_env_lines("A=1\nA=2")


def test_no_profiles_configured():
    with pytest.raises(OptionsError, match="no profiles"):
        validate_options([], {})

"""Profiles: the declared model and the loading of files and config, every rule with the key it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pw_spawner.profiles import ProfileError, build_profiles, load_profile_file, profile_from_dict

REPO = Path(__file__).resolve().parent.parent

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


def test_repo_profiles_are_valid():
    profiles = build_profiles(directory=REPO / "profiles")
    assert {p.slug for p in profiles} >= {"cpu-short", "cpu-long", "gpu"}
    short = next(p for p in profiles if p.slug == "cpu-short")
    assert short.display_name == "CPU short (4c, 16gb, 4h)"
    assert short.default_environment().display_name == "env modules (Python 3.6.6)"


def test_unquoted_walltime_in_yaml_is_refused(tmp_path):
    # YAML 1.1 reads 4:00:00 as the integer 14400; it once became 14400 hours.
    (tmp_path / "p.yaml").write_text("slug: p\njob:\n  walltime: 4:00:00\n")
    with pytest.raises(ProfileError) as info:
        load_profile_file(tmp_path / "p.yaml")
    assert info.value.key == "job.walltime" and "14400" in info.value.reason
    (tmp_path / "p.yaml").write_text('slug: p\njob:\n  walltime: "4:00:00"\n  gpus: 0\n')
    assert load_profile_file(tmp_path / "p.yaml")[0].job.walltime_s == 14400
    (tmp_path / "p.yaml").write_text("slug: p\njob:\n  hours: 1.5\n")
    assert load_profile_file(tmp_path / "p.yaml")[0].job.walltime_s == 5400


def test_extra_directives_per_pbs_flavour():
    job = profile_from_dict({"slug": "p", "job": {"extra_directives": {
        "pbs": ["-l place=excl"], "torque": ["-l naccesspolicy=singlejob"], "slurm": ["--exclusive"]}}}).job
    assert job.extra_for("pbs") == ["-l place=excl"]
    assert job.extra_for("torque") == ["-l naccesspolicy=singlejob"]  # not PBS Pro's select syntax
    both = profile_from_dict({"slug": "p", "job": {"extra_directives": ["-V"]}}).job
    assert both.extra_for("torque") == both.extra_for("pbs") == ["-V"]


def test_multiline_description_is_kept():
    profile = profile_from_dict({**BASE, "description": "First line.\nSecond line."})
    assert profile.description == "First line.\nSecond line."


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"slug": "Bad Slug"}, "slug", "is not a slug"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"job": {"cores": 0}}, "job.cores", "at least 1"),
        ({"job": {"cores": "four"}}, "job.cores", "expected int"),
        ({"job": {"memory": "lots"}}, "job.memory", "expected a size"),
        ({"job": {"walltime": "4h"}}, "job.walltime", "HH:MM:SS"),
        ({"job": {"walltime": "01:00:00", "hours": 1}}, "job.hours", "not both"),
        ({"job": {"partition": "short; rm -rf /"}}, "job.partition", "characters"),
        ({"job": {"extra_directives": ["--a\n#SBATCH --b"]}}, "job.extra_directives[0]", "single line"),
        ({"job": {"extra_directives": {"ll": ["x"]}}}, "job.extra_directives.ll", "unknown key"),
        ({"apps": ["emacs"]}, "apps[0]", "unknown app"),
        ({"environments": [{"slug": "a"}, {"slug": "a"}]}, "environments", "unique"),
        ({"environments": [{"slug": "a", "modules": ["x; reboot"]}]}, "environments[0].modules[0]", "module"),
        ({"environments": [{"slug": "a", "activate": "a\nb"}]}, "environments[0].activate", "single line"),
        ({"overrides": {"hours": {}}}, "overrides.hours.max", "needs max or choices"),
        ({"overrides": {"hours": {"min": 5, "max": 2}}}, "overrides.hours.min", "above max"),
        ({"overrides": {"nodes": {"max": 2}}}, "overrides.nodes", "unknown override"),
        ({"forbidden_env": ["1BAD"]}, "forbidden_env[0]", "not a variable name"),
        ({"default": "yes"}, "default", "expected bool"),
        ({"display_name": "CPU\n#SBATCH --x"}, "display_name", "single line"),
        ({"display_name": "CPU\rx"}, "display_name", "single line"),
        ({"environments": [{"slug": "a", "display_name": "A\u2028B"}]}, "environments[0].display_name",
         "single line"),
        ({"job": {"walltime": 14400}}, "job.walltime", "quote it"),
    ],
)
def test_bad_profile_names_key_and_reason(change, key, reason):
    with pytest.raises(ProfileError) as info:
        profile_from_dict({**BASE, **change}, "cfg.yaml")
    assert info.value.source == "cfg.yaml"
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"cfg.yaml: {key}: ")


def test_duplicate_slugs_and_defaults_refused(tmp_path):
    with pytest.raises(ProfileError, match="already defined"):
        build_profiles([BASE, BASE])
    with pytest.raises(ProfileError, match="only one profile may be the default"):
        build_profiles([BASE, {**GPU, "default": True}])


def test_bad_file_names_file_and_key(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(textwrap.dedent("""\
        - slug: ok
        - slug: nope
          job:
            memory: plenty
    """))
    with pytest.raises(ProfileError) as info:
        load_profile_file(bad)
    assert str(info.value) == f"{bad}: [1].job.memory: expected a size like 16G or 512M, got 'plenty'"
    (tmp_path / "syntax.yaml").write_text("slug: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile_file(tmp_path / "syntax.yaml")
    with pytest.raises(ProfileError, match="does not exist"):
        build_profiles(directory=tmp_path / "missing")


def test_profile_files_are_parsed_again_only_when_changed(tmp_path, monkeypatch):
    import os

    from pw_spawner import profiles as profiles_module

    path = tmp_path / "p.yaml"
    path.write_text("slug: one\ndisplay_name: One\n")
    parsed = []
    real = profiles_module.load_profile_file
    monkeypatch.setattr(profiles_module, "load_profile_file", lambda f, *a: parsed.append(f) or real(f, *a))
    assert [p.display_name for p in profiles_module.load_profiles_dir(tmp_path)] == ["One"]
    assert [p.display_name for p in profiles_module.load_profiles_dir(tmp_path)] == ["One"]
    assert len(parsed) == 1
    path.write_text("slug: one\ndisplay_name: Two\n")
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # an edit within the same clock tick still counts
    assert [p.display_name for p in profiles_module.load_profiles_dir(tmp_path)] == ["Two"]
    assert len(parsed) == 2

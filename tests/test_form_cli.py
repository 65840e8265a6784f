"""The spawn form (render and parse) and the pw-spawner command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pw_spawner.cli import PLACEHOLDER_TOKEN, hub_from_config, load_config, main, spawner_class
from pw_spawner.form import options_from_form, render_form
from pw_spawner.options import OptionsError, validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.schedulers import SubmitError, scheduler_classes, scheduler_kinds
from pw_spawner.scripts import job_name_for
from pw_spawner.testing.spawners import make_spawner

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def profiles():
    return build_profiles(directory=REPO / "profiles")


def test_form_lists_profiles_envs_and_fields(profiles):
    html = render_form(profiles)
    assert 'name="profile"' in html and "CPU short (4c, 16gb, 4h)" in html
    assert 'name="environment--cpu-short"' in html and "env modules (Python 3.6.6)" in html
    assert 'name="hours--cpu-short"' in html and 'max="4"' in html
    assert 'name="logging"' in html and "pw_spawner_{jobid}.log" in html
    assert 'name="env"' in html
    assert '<option value="cpu-short" selected>' in html


def test_form_keeps_what_was_typed_and_escapes_it(profiles):
    html = render_form(profiles, values={"profile": "cpu-long", "hours": "7", "logging": True,
                                         "env": "A=<script>alert(1)</script>"})
    assert '<option value="cpu-long" selected>' in html
    assert 'value="7"' in html and "checked" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_options_from_form_reads_only_the_chosen_profile():
    options = options_from_form({
        "profile": ["cpu-long"], "hours--cpu-short": ["3"], "hours--cpu-long": ["40"],
        "environment--cpu-long": ["modules-py36"], "env": ["A=1\r\nB=x y"], "logging": ["on"]})
    assert options == {"profile": "cpu-long", "hours": "40", "environment": "modules-py36",
                       "logging": True, "env": {"A": "1", "B": "x y"}}


def test_options_from_form_bad_env_line_names_field():
    with pytest.raises(OptionsError) as info:
        options_from_form({"profile": ["p"], "env": ["GOOD=1\nnot a pair"]})
    assert info.value.field == "env" and "line 2" in info.value.message


def test_cli_render_slurm(capsys):
    assert main(["render", "--profiles", str(REPO / "profiles"), "--profile", "cpu-short",
                 "--scheduler", "slurm", "--set", "hours=2", "--var", "A=1", "--logging"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"#!/bin/bash\n#SBATCH --job-name={job_name_for('alice')}\n")
    assert "#SBATCH --time=02:00:00" in out and "export A=1" in out
    assert "export JUPYTERHUB_API_TOKEN='<the server'\"'\"'s API token, set at spawn>'" in out


@pytest.mark.parametrize(("scheduler", "bind"), [("local", "127.0.0.1"), ("controller", "127.0.0.1"),
                                               ("slurm", "0.0.0.0")])
def test_cli_render_binds_where_the_spawner_does(capsys, scheduler, bind):
    # The controller target's app is reached through the tunnel from its own login node.
    assert main(["render", "--profiles", str(REPO / "profiles"), "--profile", "cpu-short",
                 "--scheduler", scheduler]) == 0
    assert f"\nPW_BIND_IP={bind}\n" in capsys.readouterr().out


def test_cli_render_refuses_bad_option(capsys):
    assert main(["render", "--profiles", str(REPO / "profiles"), "--set", "hours=99"]) == 1
    assert "hours: 99 is above the maximum" in capsys.readouterr().err


def test_cli_reads_jupyterhub_config(tmp_path, capsys):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(textwrap.dedent(f"""\
        c.PWSpawner.scheduler = "pbs"
        c.PWSpawner.exec_prefix = ["sudo", "-u", "{{username}}", "--"]
        c.PWSpawner.profiles_dir = {str(REPO / 'profiles')!r}
        c.PWSpawner.profile_list = [{{"slug": "extra", "display_name": "Extra", "job": {{"queue": "q1"}}}}]
    """))
    assert main(["render", "--config", str(config), "--profile", "extra"]) == 0
    assert "#PBS -q q1" in capsys.readouterr().out
    assert main(["check", "--config", str(config)]) == 0
    assert "ok  extra" in capsys.readouterr().out


def test_cli_check_names_file_and_key(tmp_path):
    (tmp_path / "good.yaml").write_text("slug: fine\n")
    (tmp_path / "bad.yaml").write_text("slug: broken\njob:\n  cores: -2\n")
    result = subprocess.run([sys.executable, "-m", "pw_spawner.cli", "check", "--profiles", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}: job.cores: must be at least 1" in result.stderr


def test_console_script_installed():
    console_script = str(Path(sys.executable).parent / "pw-spawner")
    result = subprocess.run([console_script, "check", "--profiles", str(REPO / "profiles")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ok  cpu-short (default)" in result.stdout


def test_example_config_stops_on_bad_profile(tmp_path):
    from traitlets.config import Config

    from pw_spawner.cli import check_config

    config = Config()
    config.PWSpawner.profile_list = [{"slug": "x", "job": {"memory": "lots"}}]
    with pytest.raises(SystemExit, match=r"profile_list: \[0\].job.memory"):
        check_config(config)


def test_form_fieldsets_all_usable_without_javascript(profiles):
    html = render_form(profiles, values={"profile": "cpu-long"})
    markup = html.split("<script>")[0]
    # The script hides the other profiles' fields; the server renders them all usable.
    assert markup.count('class="pw-profile-options') == len(profiles)
    assert " hidden" not in markup and " disabled" not in markup


def test_form_element_ids_are_unique(profiles):
    import re

    ids = re.findall(r'\bid="([^"]+)"', render_form(profiles))
    assert len(ids) == len(set(ids))
    assert "pw-profile-help--cpu-short" in ids and "pw-profile-help--cpu-long" in ids
    described = re.findall(r'aria-describedby="([^"]+)"', render_form(profiles))
    assert described and set(described) <= set(ids)


def test_form_prefills_the_profiles_own_values_unrounded():
    profiles = build_profiles([
        {"slug": "short", "display_name": "Short", "job": {"hours": 1.5, "memory": "16G"},
         "overrides": {"hours": {"max": 4}, "memory": {"min": "1G", "max": "32G"}}},
        {"slug": "day", "display_name": "Day", "job": {"walltime": "08:00:00"},
         "overrides": {"hours": {"max": 4}}},
    ])
    html = render_form(profiles)
    assert 'step="any" value="1.5"' in html
    assert 'type="text" id="pw-memory--short" name="memory--short"\n             value="16G"' in html
    assert 'min="1" max="8" step="1" value="8"' in html  # the box takes the profile's own 8 hours
    # Posted back untouched, the prefilled values are the profile's own and pass.
    for slug, seconds in (("short", 5400), ("day", 8 * 3600)):
        form = {"profile": [slug], f"hours--{slug}": ["1.5" if slug == "short" else "8"]}
        selection = validate_options(profiles, options_from_form(form))
        assert selection.job.walltime_s == seconds
    with pytest.raises(OptionsError, match="whole number"):
        validate_options(profiles, {"profile": "short", "hours": "2.5"})
    with pytest.raises(OptionsError, match="above the maximum"):
        validate_options(profiles, {"profile": "day", "hours": "7"})


def test_check_config_skips_a_callable_profile_list(tmp_path, capsys):
    from traitlets.config import Config

    from pw_spawner.cli import check_config

    config = Config()
    config.PWSpawner.allow_shared_account = True
    config.PWSpawner.profile_list = lambda spawner: [{"slug": "x", "job": {"memory": "lots"}}]
    check_config(config)  # does not stop the hub
    assert "profile_list is a callable" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("slug: broken\njob:\n  cores: -2\n")
    config.PWSpawner.profiles_dir = str(tmp_path)
    with pytest.raises(SystemExit, match=r"bad\.yaml: job\.cores"):  # the files are still checked
        check_config(config)


def test_cli_check_with_a_callable_profile_list(tmp_path, capsys):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c.PWSpawner.profile_list = lambda spawner: []\n"
                      "c.PWSpawner.allow_shared_account = True\n")
    assert main(["check", "--config", str(config)]) == 0
    assert "not checked here" in capsys.readouterr().out
    assert main(["render", "--config", str(config)]) == 1
    assert "give --profiles" in capsys.readouterr().err
    assert main(["render", "--config", str(config), "--profiles", str(REPO / "profiles")]) == 0


# ---- pw-spawner render is the spawner ----------------------------------------------------------

SHIPPED = build_profiles(directory=REPO / "profiles")


# Every scheduler but `controller`, whose start needs a resource's login node over SSH (its
# scripts are those of `local`; tests/test_ssh_spawner.py starts it for real).
@pytest.mark.parametrize("scheduler", [kind for kind in scheduler_kinds() if kind != "controller"])
@pytest.mark.parametrize("profile", [p.slug for p in SHIPPED])
def test_render_prints_what_a_start_submits(tmp_path, capsys, monkeypatch, profile, scheduler):
    """For every shipped profile and every scheduler, `pw-spawner render` prints byte for byte the
    script a real start of the configured spawner submits (captured at the scheduler's submit)."""
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(textwrap.dedent(f"""\
        c.PWSpawner.scheduler = {scheduler!r}
        c.PWSpawner.profiles_dir = {str(REPO / "profiles")!r}
        c.PWSpawner.job_dir_root = {str(tmp_path / "jobs" / "{username}")!r}
        c.PWSpawner.setup_lines = ["echo site setup"]
        c.PWSpawner.allow_shared_account = True
        c.JupyterHub.hub_connect_url = "http://hub.example.org:8081"
    """))
    groups = sorted({g for p in SHIPPED for g in p.groups})
    assert main(["render", "--config", str(config), "--profile", profile, "--user", "alice",
                 *[f"--group={g}" for g in groups]]) == 0
    rendered = capsys.readouterr().out

    submitted: list[str] = []

    async def capture(self, executor, script, *, name, job_dir):
        submitted.append(script)
        raise SubmitError("captured")

    async def nothing_left(self, executor, name, job_dir):
        return []

    for cls in scheduler_classes().values():
        monkeypatch.setattr(cls, "submit", capture)
        monkeypatch.setattr(cls, "find", nothing_left)
    spawner = make_spawner(spawner_class(load_config(str(config))), username="alice", groups=groups,
                           api_token=PLACEHOLDER_TOKEN, config=load_config(str(config)),
                           user_options={"profile": profile})
    spawner.hub = hub_from_config(load_config(str(config)))
    with pytest.raises(Exception, match="captured"):
        asyncio.run(spawner.start())
    assert submitted == [rendered]

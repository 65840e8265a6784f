"""Rendered submit scripts: golden files for each scheduler, bash syntax, and the job side at work."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from conftest import FAKE_APP
from scriptcases import CASES, GOLDEN, render_case

from pw_spawner.apps import jupyter_launch
from pw_spawner.options import validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.scripts import ScriptRequest, directives, render_script


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    # After an intended change: `python tests/scriptcases.py`, then read the diff before committing.
    assert render_case(case) == (GOLDEN / case).read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bash_syntax(case, tmp_path):
    path = tmp_path / case
    path.write_text(render_case(case))
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_directive_spellings():
    profiles = build_profiles(directory=GOLDEN.parent.parent / "profiles")
    job = validate_options(profiles, {"profile": "gpu"}, groups=["gpu-users"]).job
    assert "#SBATCH --gres=gpu:1" in directives("slurm", job, "n", "/o")
    assert "#SBATCH --mem=65536M" in directives("slurm", job, "n", "/o")
    assert "#PBS -l select=1:ncpus=8:mem=64gb:ngpus=1" in directives("pbs", job, "n", "/o")
    assert "#PBS -l nodes=1:ppn=8:gpus=1" in directives("torque", job, "n", "/o")
    assert "#PBS -l place=excl" in directives("pbs", job, "n", "/o")
    assert not any("a100" in d for d in directives("pbs", job, "n", "/o"))
    assert directives("local", job, "n", "/o") == []
    with pytest.raises(ValueError, match="unknown scheduler"):
        directives("loadleveler", job, "n", "/o")


def _request(tmp_path, cmd, **options):
    profiles = build_profiles([{"slug": "p", "display_name": "P",
                                "environments": [{"slug": "none"},
                                                 {"slug": "mods", "modules": ["nosuch/1.0"]}]}])
    selection = validate_options(profiles, options)
    return ScriptRequest(selection=selection, scheduler="local", job_name="pw-test",
                         job_dir=str(tmp_path / "job"), app=jupyter_launch(cmd, []),
                         hub_env={"JUPYTERHUB_API_TOKEN": "s3cret"}, start_timeout=20)


def _run(tmp_path, request, timeout=30):
    script = tmp_path / "job.sh"
    script.write_text(render_script(request))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout)


def _service(tmp_path):
    path = tmp_path / "job" / "service.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "job").stat().st_mode) == 0o700
    return json.loads(path.read_text())


def test_job_reports_missing_module(tmp_path):
    result = _run(tmp_path, _request(tmp_path, ["true"], environment="mods"))
    assert result.returncode == 1
    record = _service(tmp_path)
    assert record["JOB_STATUS"] == "FAILED"
    assert record["ERROR_MESSAGE"] == "module load failed: nosuch/1.0"


def test_job_reports_missing_command(tmp_path):
    _run(tmp_path, _request(tmp_path, ["no-such-singleuser"]))
    assert _service(tmp_path)["ERROR_MESSAGE"] == "no-such-singleuser was not found in this environment"


def test_job_reports_app_that_dies_before_listening(tmp_path):
    _run(tmp_path, _request(tmp_path, [*FAKE_APP, "--fail-at-start"]))
    record = _service(tmp_path)
    assert record["JOB_STATUS"] == "FAILED"
    assert "exited with status 2 before it listened" in record["ERROR_MESSAGE"]


def test_job_runs_app_then_reports_its_exit(tmp_path):
    _run(tmp_path, _request(tmp_path, [*FAKE_APP, "--fail-after-start"],
                            logging=True))
    record = _service(tmp_path)
    assert record["JOB_STATUS"] == "FAILED" and isinstance(record["PORT"], int)
    assert "exited with status 3" in record["ERROR_MESSAGE"]
    logs = list(tmp_path.glob("pw_spawner_*.log"))
    assert len(logs) == 1 and "fake_app" in logs[0].read_text()


def test_job_names_stay_distinct_after_sanitizing():
    from pw_spawner.scripts import safe_job_name

    assert safe_job_name("pw-alice-gpu-work") == "pw-alice-gpu-work"  # nothing to change, nothing added
    names = {safe_job_name(t) for t in ("pw-alice-a b", "pw-alice-a_b", "pw-alice-a/b", "pw-alice-a\u00e9b")}
    assert len(names) == 4
    assert all(len(n) <= 64 and all(c.isalnum() or c in "_.-" for c in n) for n in names)
    long_a, long_b = "pw-alice-" + "x" * 80 + "a", "pw-alice-" + "x" * 80 + "b"
    assert safe_job_name(long_a) != safe_job_name(long_b)
    assert len(safe_job_name(long_a)) == 64


def test_setup_lines_run_before_the_environment(tmp_path):
    # A batch shell may lack `module` (a function from /etc/profile.d); setup_lines can define it.
    from dataclasses import replace

    request = replace(_request(tmp_path, ["true"], environment="mods"),
                      setup_lines=['module() { echo "$*" >"$HOME/module-args"; }'])
    script = render_script(request)
    assert script.index("module() {") < script.index("# ---- environment:")
    _run(tmp_path, request)
    assert (tmp_path / "module-args").read_text() == "load nosuch/1.0\n"
    assert "module load failed" not in _service(tmp_path)["ERROR_MESSAGE"]


def test_setup_lines_trait_reaches_the_script(tmp_path):
    from pw_spawner.testing.spawners import make_spawner

    spawner = make_spawner(profile_list=[{"slug": "p"}], setup_lines=["source /etc/profile.d/lmod.sh"])
    profiles = build_profiles([{"slug": "p"}])
    script = spawner.render(validate_options(profiles, {}), str(tmp_path / "job"), {})
    assert "\nsource /etc/profile.d/lmod.sh\n" in script
    assert make_spawner().setup_lines == []


def test_admin_template_edit_is_picked_up(tmp_path):
    """Environments are cached per template directory; an edited template still takes effect."""
    templates = tmp_path / "templates"
    templates.mkdir()
    override = templates / "app_jupyter.sh.j2"
    override.write_text("echo first\n")
    request = _request(tmp_path, ["true"])
    assert "echo first" in render_script(request, [templates])
    override.write_text("echo second\n")
    # FileSystemLoader compares mtimes in whole seconds on some filesystems: make the change visible.
    os.utime(override, (override.stat().st_atime + 5, override.stat().st_mtime + 5))
    script = render_script(request, [templates])
    assert "echo second" in script and "echo first" not in script

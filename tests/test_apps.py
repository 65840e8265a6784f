"""The apps' launches without a hub: what each app renders, the sibling spawners' defaults, the desktop
size option, and the job's own failure reports (a missing noVNC, an rserver too old for a unix socket).

The end-to-end runs through a real hub and browser are in test_apps_hub.py; the rendered scripts are
compared with tests/golden/{rstudio,vnc,xpra}.sh by test_scripts.py.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scriptcases import CASES
from scriptcases import app_launch as scriptcase_launch
from traitlets import TraitError

from pw_spawner.apps import RESOLUTIONS, rstudio_launch, vnc_launch, xpra_launch
from pw_spawner.cli import main as cli_main
from pw_spawner.form import options_from_form, render_form
from pw_spawner.options import OptionsError, validate_options
from pw_spawner.profiles import ProfileError, build_profiles
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.spawner import PWRStudioSpawner, PWSpawner, PWVNCSpawner, PWXpraSpawner
from pw_spawner.testing.spawners import make_spawner

REPO = Path(__file__).resolve().parent.parent
APPS_PROFILE = {"slug": "apps", "display_name": "Apps", "apps": ["jupyter", "vnc", "xpra", "rstudio"]}
JUPYTER_ONLY = {"slug": "lab", "display_name": "Lab"}
FAKE_RSERVER = [sys.executable, "-m", "pw_spawner.testing.fake_rserver"]


def spawner(cls: type[PWSpawner] = PWSpawner, options: dict | None = None, **traits) -> PWSpawner:
    return make_spawner(cls, profile_list=[APPS_PROFILE, JUPYTER_ONLY], user_options=options or {},
                        **traits)


# ------------------------------------------------------------------------------- selection


@pytest.mark.parametrize(("cls", "app"), [(PWSpawner, "jupyter"), (PWRStudioSpawner, "rstudio"),
                                          (PWVNCSpawner, "vnc"), (PWXpraSpawner, "xpra")])
async def test_sibling_spawners_start_their_app_when_none_is_chosen(cls, app) -> None:
    selection = await spawner(cls, {"profile": "apps"}).selection()
    assert selection.app == app
    launch = spawner(cls).app_launch(selection)
    assert launch.template == f"app_{app}.sh.j2"
    assert bool(launch.proxy) == (app != "jupyter")  # everything but Jupyter sits behind the proxy


async def test_a_chosen_app_wins_and_a_profile_without_the_default_app_keeps_its_own() -> None:
    assert (await spawner(PWVNCSpawner, {"profile": "apps", "app": "rstudio"}).selection()).app == "rstudio"
    assert (await spawner(PWVNCSpawner, {"profile": "lab"}).selection()).app == "jupyter"


async def test_an_app_the_profile_does_not_offer_is_refused() -> None:
    with pytest.raises(Exception, match="is not offered"):
        await spawner(PWVNCSpawner, {"profile": "lab", "app": "vnc"}).selection()


# ------------------------------------------------------------------------------- resolution


def test_resolution_is_checked_and_kept_only_for_the_desktop() -> None:
    profiles = build_profiles([APPS_PROFILE])
    assert validate_options(profiles, {"app": "vnc", "resolution": "1920x1080"}).resolution == "1920x1080"
    # The form posts the size with every app of the profile; only the desktop uses it.
    assert validate_options(profiles, {"app": "xpra", "resolution": "1920x1080"}).resolution is None
    for bad in ("1920x1080; rm -rf ~", "99999x1", "1920X1080", ["1920x1080"], 1920):
        with pytest.raises(OptionsError) as info:
            validate_options(profiles, {"app": "vnc", "resolution": bad})
        assert info.value.field == "resolution"


async def test_sibling_default_app_keeps_the_resolution() -> None:
    s = spawner(PWVNCSpawner, {"profile": "apps", "resolution": "1024x768"})
    selection = await s.selection()
    assert (selection.app, selection.resolution) == ("vnc", "1024x768")
    assert s.app_launch(selection).options["geometry"] == "1024x768"
    assert spawner(PWVNCSpawner).app_launch(await spawner(PWVNCSpawner, {"profile": "apps"}).selection()) \
        .options["geometry"] == "1280x800"


def test_admin_geometry_is_validated() -> None:
    with pytest.raises(TraitError):
        spawner(PWVNCSpawner, vnc_geometry="huge")
    assert spawner(PWVNCSpawner, vnc_geometry="1600x900").vnc_geometry == "1600x900"


def test_form_offers_the_desktop_size_for_profiles_with_the_desktop() -> None:
    profiles = build_profiles([APPS_PROFILE, JUPYTER_ONLY])
    html = render_form(profiles)
    assert 'name="resolution--apps"' in html and 'name="resolution--lab"' not in html
    assert all(f'value="{r}"' in html for r in RESOLUTIONS)
    options = options_from_form({"profile": ["apps"], "app--apps": ["vnc"], "resolution--apps": ["1440x900"]})
    assert options["resolution"] == "1440x900"
    html = render_form(profiles, values={"profile": "apps", "resolution": "1440x900"})
    assert 'value="1440x900" selected' in html


# ------------------------------------------------------------------------------- launches


def test_launch_arguments_are_quoted_in_the_script() -> None:
    profiles = build_profiles([APPS_PROFILE])
    hostile = "fiji --title 'a b' ; touch /tmp/pw-owned $(id)"
    selection = validate_options(profiles, {"app": "xpra"})
    script = render_script(ScriptRequest(selection=selection, scheduler="local", job_name="pw-t",
                                         job_dir="/tmp/pw-t", app=xpra_launch(["jupyter-standaloneproxy"],
                                                                              start_command=hostile)))
    line = next(line for line in script.splitlines() if "--start-child=" in line)
    words = shlex.split(line.rstrip("\\"))
    assert f"--start-child={hostile}" in words


def test_launch_helpers_refuse_empty_commands() -> None:
    with pytest.raises(ValueError):
        vnc_launch([])
    with pytest.raises(ValueError):
        rstudio_launch(["jupyter-standaloneproxy"], rserver=[])
    with pytest.raises(ValueError):
        xpra_launch(["jupyter-standaloneproxy"], start_command="  ")


@pytest.mark.parametrize("case", ["rstudio.sh", "vnc.sh", "xpra.sh"])
async def test_golden_launches_are_the_spawners_defaults(case) -> None:
    # The golden scripts render scriptcases' launches; they must be what PWSpawner makes.
    _scheduler, profile, options = CASES[case]
    s = make_spawner(PWSpawner, profiles_dir=str(REPO / "profiles"),
                     user_options={"profile": profile, **options})
    selection = await s.selection()
    assert s.app_launch(selection) == scriptcase_launch(selection.app)


def test_cli_renders_the_chosen_app(capsys) -> None:
    assert cli_main(["render", "--profiles", str(REPO / "profiles"), "--profile", "desktop",
                     "--set", "resolution=1440x900"]) == 0
    script = capsys.readouterr().out
    assert "-geometry 1440x900" in script and "jupyter-standaloneproxy" in script
    assert "jupyterhub-singleuser" not in script


def test_entry_points_name_the_sibling_spawners() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["jupyterhub.spawners"].split("\n")
    points = dict(line.replace(" ", "").split("=") for line in lines if line.strip())
    assert points["pw-rstudio"] == "pw_spawner.spawner:PWRStudioSpawner"
    assert points["pw-vnc"] == "pw_spawner.spawner:PWVNCSpawner"
    assert points["pw-xpra"] == "pw_spawner.spawner:PWXpraSpawner"


# ------------------------------------------------------------------------------- the job's reports


def run_job(tmp_path: Path, s: PWSpawner, options: dict, env: dict | None = None,
            timeout: float = 60) -> dict:
    """Render the job for ``options`` and run it with bash; returns its last service.json."""
    selection = validate_options(build_profiles([APPS_PROFILE]), options)
    job_dir = tmp_path / "job"
    script = tmp_path / "job.sh"
    script.write_text(s.render(selection, str(job_dir), {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}))
    run_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "HOME": str(tmp_path), **(env or {})}
    done = subprocess.run(["bash", str(script)], env=run_env, capture_output=True, text=True, timeout=timeout)
    return {"rc": done.returncode, "stderr": done.stderr,
            **json.loads((job_dir / "service.json").read_text())}


def test_rserver_without_www_socket_is_refused(tmp_path: Path) -> None:
    s = spawner(PWRStudioSpawner, rstudio_rserver_cmd=FAKE_RSERVER)
    started = time.monotonic()
    result = run_job(tmp_path, s, {"app": "rstudio"}, env={"PW_FAKE_RSERVER_WITHOUT": "www-socket"})
    assert result["JOB_STATUS"] == "FAILED", result
    assert "no --www-socket" in result["ERROR_MESSAGE"]
    assert not (tmp_path / "job" / "app" / "rstudio.sock").exists()
    assert time.monotonic() - started < 30


def test_missing_novnc_is_reported(tmp_path: Path) -> None:
    s = spawner(PWVNCSpawner, novnc_dirs=[str(tmp_path / "no-novnc")], vnc_server="bash",
                websockify_cmd=["bash"])
    result = run_job(tmp_path, s, {"app": "vnc"})
    assert result["JOB_STATUS"] == "FAILED", result
    assert "noVNC (vnc.html) was not found" in result["ERROR_MESSAGE"]


def test_missing_standaloneproxy_is_reported(tmp_path: Path) -> None:
    s = spawner(PWXpraSpawner, standaloneproxy_cmd=["no-such-standaloneproxy"])
    result = run_job(tmp_path, s, {"app": "xpra"})
    assert result["JOB_STATUS"] == "FAILED", result
    assert "no-such-standaloneproxy was not found" in result["ERROR_MESSAGE"]
    assert "jupyter-server-proxy[standalone]" in result["ERROR_MESSAGE"]


def start_job(tmp_path: Path, job_dir: Path, s: PWSpawner, options: dict) -> subprocess.Popen:
    """Render the job and start it with bash in a session of its own; waits until it is RUNNING."""
    selection = validate_options(build_profiles([APPS_PROFILE]), options)
    script = tmp_path / "job.sh"
    script.write_text(s.render(selection, str(job_dir), {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}))
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path)}
    log = (tmp_path / "job.log").open("w")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            status = json.loads((job_dir / "service.json").read_text())["JOB_STATUS"]
        except (OSError, ValueError):
            status = ""
        if status == "RUNNING":
            return proc
        if status == "FAILED" or proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, 15)
            proc.wait(10)
            pytest.fail(f"the job did not get to RUNNING ({status}):\n{(tmp_path / 'job.log').read_text()}")
        time.sleep(0.2)


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of the processes that are there to read."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(entry.name), cmdline))
            except (OSError, UnicodeDecodeError):
                continue
    return found


def end_job(proc: subprocess.Popen) -> None:
    """TERM the job's group (as the local runner's cancel does) and wait for it."""
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        pass
    proc.wait(30)


def test_a_deep_job_dir_gets_a_private_socket_dir_that_goes_with_the_job(tmp_path: Path) -> None:
    job_dir = tmp_path / ("d" * 60) / "jobs" / "pw-alice"
    s = spawner(PWRStudioSpawner, rstudio_rserver_cmd=FAKE_RSERVER)
    proc = start_job(tmp_path, job_dir, s, {"app": "rstudio"})
    try:
        args = json.loads((job_dir / "app" / "rstudio-data" / "fake-rserver-args.json").read_text())
        socket_dir = Path(args["www-socket"]).parent
        assert socket_dir.parent == tmp_path and socket_dir.name.startswith("pw-")  # mktemp in $TMPDIR
        assert len(args["www-socket"]) < 108
        assert oct(socket_dir.stat().st_mode & 0o777) == "0o700"
    finally:
        end_job(proc)
    assert json.loads((job_dir / "service.json").read_text())["JOB_STATUS"] == "CANCELLED"
    assert not socket_dir.exists()


def test_the_job_ends_when_the_app_does(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    s = spawner(PWRStudioSpawner, rstudio_rserver_cmd=FAKE_RSERVER)
    proc = start_job(tmp_path, job_dir, s, {"app": "rstudio"})
    try:
        args = json.loads((job_dir / "app" / "rstudio-data" / "fake-rserver-args.json").read_text())
        rserver = next(pid for pid, cmdline in processes()
                       if "fake_rserver" in cmdline and args["www-socket"] in cmdline)
        os.kill(rserver, 9)
        assert proc.wait(30) != 0
        # The proxy went with it (and the command it supervised, which follows the job's shell).
        deadline = time.monotonic() + 5
        while any(str(job_dir) in cmdline for _pid, cmdline in processes()):
            assert time.monotonic() < deadline, [c for _p, c in processes() if str(job_dir) in c]
            time.sleep(0.2)
    finally:
        end_job(proc)
    service = json.loads((job_dir / "service.json").read_text())
    assert service["JOB_STATUS"] == "FAILED"
    assert service["ERROR_MESSAGE"].startswith("RStudio exited with status 137")


def test_form_names_the_environment_for_what_the_profile_runs() -> None:
    html = render_form(build_profiles([{**APPS_PROFILE, "environments": [{"slug": "e"}]},
                                       {**JUPYTER_ONLY, "environments": [{"slug": "e"}]}]))
    assert html.count("Software environment") == 1 and html.count("Jupyter environment") == 1


# ------------------------------------------------------------------------------- per-profile settings

FIJI_PROFILE = {"slug": "fiji", "display_name": "Fiji", "apps": ["xpra", "vnc"],
                "app_settings": {"xpra": {"xpra_start_command": "ImageJ-linux64 --no-splash"},
                                 "vnc": {"vnc_window_managers": ["openbox-session"]}}}


async def test_a_profile_names_the_program_its_xpra_session_shows() -> None:
    s = make_spawner(PWSpawner, profile_list=[FIJI_PROFILE, APPS_PROFILE], user_options={"profile": "fiji"})
    launch = s.app_launch(await s.selection())
    assert launch.options["start_command"] == "ImageJ-linux64 --no-splash"
    # Another profile keeps the spawner's setting.
    other = s.app_launch(await s.selection({"profile": "apps", "app": "xpra"}))
    assert other.options["start_command"] == s.xpra_start_command == "xterm"
    vnc = s.app_launch(await s.selection({"profile": "fiji", "app": "vnc"}))
    assert "openbox-session" in json.dumps(vnc.options) and "twm" not in json.dumps(vnc.options)


def test_cli_renders_a_profiles_own_app_settings(tmp_path, capsys) -> None:
    (tmp_path / "fiji.yaml").write_text(json.dumps(FIJI_PROFILE))
    assert cli_main(["render", "--profiles", str(tmp_path), "--profile", "fiji"]) == 0
    assert "--start-child='ImageJ-linux64 --no-splash'" in capsys.readouterr().out


@pytest.mark.parametrize(("settings", "key"), [
    ({"jupyter": {"cmd": "x"}}, "app_settings.jupyter"),
    ({"rstudio": {"rstudio_args": ["x"]}}, "app_settings.rstudio"),
    ({"xpra": {"xpra_cmd": ["x"]}}, "app_settings.xpra.xpra_cmd"),
    ({"xpra": {"xpra_start_command": "a\nb"}}, "app_settings.xpra.xpra_start_command"),
    ({"xpra": {"xpra_args": "--one"}}, "app_settings.xpra.xpra_args"),
    ({"xpra": ["xterm"]}, "app_settings.xpra"),
])
def test_bad_app_settings_name_the_key(settings, key) -> None:
    with pytest.raises(ProfileError) as raised:
        build_profiles([{**FIJI_PROFILE, "app_settings": settings}])
    assert f"].{key}: " in str(raised.value), str(raised.value)

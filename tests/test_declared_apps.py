"""Apps declared as data: the definition's rules, its one quoting, and how it joins the registry.

The same web app running for real through a hub, its proxy and Chromium is in
tests/test_declared_apps_hub.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from pw_spawner.apps import app_classes, registry
from pw_spawner.apps.declared import (
    AppDefinitionError,
    app_class,
    load_definitions,
    read_definition,
    shell_words,
)
from pw_spawner.cli import check_config
from pw_spawner.cli import main as cli_main
from pw_spawner.form import render_form
from pw_spawner.options import validate_options
from pw_spawner.profiles import ProfileError, build_profiles
from pw_spawner.testing.spawners import make_spawner

DASH = {"name": "dash", "display_name": "Dashboard",
        "command": ["bokeh", "serve", "--unix-socket", "{unix_socket}", "--prefix", "{prefix}",
                    "/srv/app.py"],
        "listen": "unix_socket", "ready_path": "/", "environment": {"BOKEH_LOG": "info"}}
WEB = {"name": "web", "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]}
PROFILE = {"slug": "dash", "display_name": "Dash", "apps": ["jupyter", "dash", "web"]}


def test_a_definition_with_its_defaults():
    web = read_definition(WEB, "app_definitions")
    assert (web.display_name, web.listen, web.landing_path, web.websockets, web.scheme) == \
        ("web", "port", "/", True, "http")


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({"command": ["serve"]}, "command", "must hold {port}"),
    ({"command": ["serve", "{port}", "{unix_socket}"]}, "command", "holds {unix_socket}, but listen is port"),
    ({"command": ["serve", "{host}:{port}"]}, "command[1]", "{host} is not a placeholder"),
    ({"command": ["serve", "{port!r}"]}, "command[1]", "not a placeholder"),
    ({"command": ["serve", "{port", "x"]}, "command[1]", "literal braces"),
    ({"command": []}, "command", "at least 1"),
    ({"command": ["serve {port}\nrm -rf ~"]}, "command[0]", "single line"),
    ({"listen": "tcp"}, "listen", "'port' or 'unix_socket'"),
    ({"scheme": "https"}, "scheme", "plain http only"),
    ({"name": "VS Code"}, "name", "is not a slug"),
    ({"landing_path": "lab"}, "landing_path", "starting with /"),
    ({"ready_path": "//evil.example/"}, "ready_path", "starting with /"),
    ({"environment": {"A B": "x"}}, "environment", "variable name"),
    ({"modules": ["x; reboot"]}, "modules[0]", "module name"),
    ({"colour": "blue"}, "colour", "unknown key"),
])
def test_a_bad_definition_names_the_key(change, key, reason):
    with pytest.raises(AppDefinitionError) as raised:
        load_definitions([{**WEB, **change}])
    assert raised.value.key.startswith(f"[0].{key}") and reason in raised.value.reason, str(raised.value)


def test_names_are_unique_and_not_built_in(tmp_path):
    (tmp_path / "a.yaml").write_text(json.dumps([WEB, DASH]))
    (tmp_path / "b.yml").write_text(json.dumps(WEB))
    with pytest.raises(AppDefinitionError, match=r"b.yml: name: 'web' is already declared in .*a.yaml"):
        load_definitions(directory=tmp_path)
    with pytest.raises(ValueError, match="'vnc' is the name of an app pw_spawner has"):
        registry([app_class(read_definition({**WEB, "name": "vnc"}, "x"))])
    (tmp_path / "b.yml").write_text("name: [unclosed\n")
    with pytest.raises(AppDefinitionError, match="not valid YAML"):
        load_definitions(directory=tmp_path)


@pytest.mark.parametrize("word", ["$(reboot)", "`id`", "a;b", "it's", '"', "\\", "*", "--x={{y}}", "~"])
def test_every_word_reaches_the_app_as_written(word, tmp_path):
    line = shell_words(["printf", "%s\\n", word, "<{port}>"])
    out = subprocess.run(["bash", "-c", f"PW_APP_PORT=8080; {line}"], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert out.splitlines() == [word.replace("{{", "{").replace("}}", "}"), "<8080>"]


def test_a_declared_app_joins_profiles_the_form_and_the_script(tmp_path):
    apps = registry(app_class(d) for d in load_definitions([DASH, WEB]))
    assert list(apps)[:len(app_classes())] == list(app_classes())  # the built-in ones first
    profiles = build_profiles([PROFILE], apps=apps)
    with pytest.raises(ProfileError, match=r"apps\[1\]: unknown app 'dash'"):
        build_profiles([PROFILE])  # without its declaration
    html = render_form(profiles, apps=apps)
    assert '<option value="dash" >Dashboard</option>' in html.replace('value="dash"  ', 'value="dash" ')
    spawner = make_spawner(app_definitions=[DASH, WEB], profile_list=[PROFILE])
    selection = validate_options(profiles, {"app": "dash"})
    launch = spawner.app_launch(selection)
    assert launch.template == "app_declared.sh.j2" and launch.proxy == ("jupyter-standaloneproxy",)
    script = tmp_path / "job.sh"
    script.write_text(spawner_script(spawner, selection))
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert ('bokeh serve --unix-socket "${PW_APP_SOCKET}" --prefix "${JUPYTERHUB_SERVICE_PREFIX:-/}"'
            in text)
    assert "export BOKEH_LOG=info" in text and "--unix-socket=\"$PW_APP_SOCKET\"" in text
    assert "pw_helper http-ready" in text


def spawner_script(spawner, selection) -> str:
    from pw_spawner.scripts import render_script

    return render_script(spawner.script_request(selection, "/tmp/pw-job", {"JUPYTERHUB_API_TOKEN": "t"}))


def test_a_bad_definition_stops_the_hub_at_startup(tmp_path):
    with pytest.raises(TraitError, match=r"app_definitions: \[0\].command: must hold \{port\}"):
        make_spawner(app_definitions=[{**WEB, "command": ["serve"]}])
    (tmp_path / "x.yaml").write_text("name: x\ncommand: [serve]\n")
    config = Config()
    config.PWSpawner.profile_list = [PROFILE]
    config.PWSpawner.apps_dir = str(tmp_path)
    with pytest.raises(SystemExit, match=r"bad app configuration: .*x.yaml: command: must hold \{port\}"):
        check_config(config)


def test_the_cli_renders_and_checks_declared_apps(tmp_path, capsys):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c.PWSpawner.app_definitions = {[DASH, WEB]!r}\n"
                      f"c.PWSpawner.profile_list = {[PROFILE]!r}\n")
    assert cli_main(["render", "--config", str(config), "--app", "web"]) == 0
    assert 'python3 -m http.server --bind 127.0.0.1 "${PW_APP_PORT}" &' in capsys.readouterr().out
    assert cli_main(["check", "--config", str(config)]) in (0, 1)  # 1: the demo account rule
    assert "ok  app dash: Dashboard - bokeh serve" in capsys.readouterr().out
    assert cli_main(["schema", "apps"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")


def test_example_app_definitions_are_valid():
    examples = Path(__file__).resolve().parent.parent / "example_config" / "apps"
    definitions = load_definitions(directory=examples)
    assert {d.name for d in definitions} >= {"code-server"}

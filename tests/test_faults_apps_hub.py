"""Fault suite against a real hub with every app: raw REST bodies, who reaches a server, where secrets are.

One hub serves the module: the demo config as tests/test_apps_hub.py runs it (``pw-vnc``, a profile
offering JupyterLab, RStudio (the fake rserver), the VNC desktop and Xpra), plus a profile with
overrides so that numbers have somewhere to go, and named servers. Four sessions run for the whole
module, one of each app, each its own user's; the RStudio one was asked for with every hostile
environment value the validation accepts.

- REST bodies (POST /hub/api/users/<u>/server): unknown fields, wrong types, 1 MB values, NUL bytes,
  Unicode line separators, ``#SBATCH`` in variable names and values, path traversal in every slug and
  path-like field (and in a named server's name and a user name). Each is refused with HTTP 400 and a
  message naming the field, or accepted and provably inert: the script rendered for it (Slurm, PBS,
  local) has every line of a harmless choice unchanged and bash sees exactly the values typed, and a
  running session gets them byte for byte. "injections": a line that changed meaning, a value that
  changed on its way, a command that ran (a canary file), a hub answer of 500 or with a traceback, a
  job directory outside the job root.
- Access: another user's token and hub login cookie, an anonymous client, and direct requests to the
  node's ports (service.json's PORT and every other TCP port the job's processes listen on) never
  reach a session: "cross-user accesses". The owner's own token and cookie do, so every probe can tell.
- Secrets: each session's API token (from its job.sh) and its app's secrets (VNC's websockify token,
  RStudio's cookie key, X authority cookies) must appear in no process's argv (sampled every 30 ms from
  before the first spawn), in no file another account may read, and not in the hub's log (a file of the
  hub's account, not the user's). Job directories must be 0700, service.json 0600, job scripts closed
  to others: "secrets found".

The helpers that reach the apps (``assert_no_access``, ``first_ws_message``, ``tcp_listen_ports``...) are
tests/test_apps_hub.py's own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from support.hub import HubProcess, Response, group_members, http, hub_available, running_hub
from support.requirements import require
from test_apps_hub import (
    EXTRA_CONFIG,
    VENV_ACTIVATE,
    assert_no_access,
    create_user,
    first_ws_message,
    job_pgid,
    service,
    tcp_listen_ports,
    vnc_available,
    xpra_available,
)

from pw_spawner.apps import jupyter_launch
from pw_spawner.options import OptionsError, validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.scripts import ScriptRequest, render_script

pytestmark = [pytest.mark.faults, pytest.mark.hub]

VENV = {"slug": "venv", "display_name": "venv", "activate": f"source {VENV_ACTIVATE}"}
PROFILE_LIST = [
    {"slug": "apps", "display_name": "Apps", "default": True, "apps": ["jupyter", "vnc", "xpra", "rstudio"],
     "environments": [VENV]},
    {"slug": "tunable", "display_name": "Tunable", "apps": ["rstudio"],
     "job": {"partition": "short", "cores": 1, "memory": "1G", "hours": 1},
     "overrides": {"hours": {"min": 1, "max": 4}, "cores": {"max": 2}, "memory": {"max": "2G"},
                   "gpus": {"max": 1}},
     "environments": [VENV]},
]
PROFILES = build_profiles(PROFILE_LIST)
CONFIG = EXTRA_CONFIG + f"""
c.PWSpawner.profile_list = {PROFILE_LIST!r}
c.JupyterHub.allow_named_servers = True
"""
#: The owner of each app's session, and what a request of theirs to it shows.
OWNERS = {"jupyter": "f-jupyter", "rstudio": "f-rstudio", "vnc": "f-vnc", "xpra": "f-xpra"}
MARKERS = {"jupyter": '"last_activity"', "rstudio": "fake-rserver", "vnc": "vnc.html", "xpra": "Xpra"}
PATHS = {"jupyter": "api/status", "rstudio": "", "vnc": "", "xpra": ""}
#: What shows the session itself (not files that are public by design, such as noVNC's).
SESSION_MARKERS = {"jupyter": '"last_activity"', "rstudio": "fake-rserver", "vnc": None, "xpra": "Xpra"}
#: What a browser (a cookie, not a token) opens, and what the app's page then holds.
PAGES = {"jupyter": ("lab", "jupyter-config-data"), "rstudio": ("", "fake-rserver"), "vnc": ("", "vnc.html"),
         "xpra": ("", "Xpra")}
OTHER = "f-other"
MB = 1024 * 1024
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"/[^\"]+\", line \d+")


# ------------------------------------------------------------------------------------- argv sampler


class ArgvSampler(threading.Thread):
    """Every distinct command line of every process on this host, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.03) -> None:
        super().__init__(daemon=True, name="argv-sampler")
        self.interval = interval
        self.seen: dict[str, int] = {}
        self.rounds = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue
                if raw:
                    self.seen.setdefault(raw.decode(errors="replace").replace("\0", " ").strip(),
                                         int(entry.name))
            self.rounds += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# ------------------------------------------------------------------------------------- hostile input

#: Environment values that do not change a script when quoted; the RStudio session carries those the
#: validation accepts (the others are REST cases that must be refused). {canary} is a file that exists
#: only if one of them ran as a command.
HOSTILE_ENV = {
    "SUBST": "$(touch {canary})", "BACKTICKS": "`touch {canary}`", "QUOTES": "'; touch {canary}; '",
    "DQUOTES": '"; touch {canary}; "', "SBATCH_VALUE": "#SBATCH --mem=1T", "PBS_VALUE": "#PBS -l select=99",
    "LSEP": "x\u2028#SBATCH --mem=1T", "PSEP": "x\u2029y", "NEL": "x\u0085#SBATCH --mem=1T",
    "TAB": "a\tb", "BACKSLASH": "a\\", "GLOB": "* ~ ?", "BRACES": "${HOME} {{ 7*7 }} {% raw %}",
    "DASHES": "-n -e --", "BANG": "!!", "UNICODE": "é€😀", "EMPTY": "", "SEMI": "a; touch {canary} &",
    "LONG": "y" * 65536,
}


def rest_cases(canary: Path) -> list[tuple[str, Any, str]]:
    """(case id, body, the field a refusal must name)."""
    big = "x" * MB
    t = {"profile": "tunable"}
    cases: list[tuple[str, Any, str]] = [
        ("unknown-field", {"image": "evil:latest"}, "image"),
        ("unknown-field-beside-valid", {**t, "sbatch_args": "--mem=1T"}, "sbatch_args"),
        ("unknown-field-new-schema", {"display_name": "x", "user_options": {"partition": "gpu"}},
         "partition"),
        ("unknown-field-1MB-name", {**t, big: 1}, big),
        ("unknown-field-nul", {**t, "profile\x00": "apps"}, "profile\x00"),
    ]
    for value in ([1, 2], {"$gt": 0}, True, 1.5, -1, 10**30, "NaN", "2\x00", "9" * MB):
        for name in ("cores", "hours", "gpus"):
            cases.append((f"{name}-{_label(value)}", {**t, name: value}, name))
    for value in ({"x": 1}, ["1G"], "-1G", "1e400G", "9" * MB + "G", "1G\u2028"):
        cases.append((f"memory-{_label(value)}", {**t, "memory": value}, "memory"))
    for value in ({"slug": "apps"}, ["apps"], 1):
        cases.append((f"profile-{_label(value)}", {"profile": value}, "profile"))
    cases += [
        ("environment-dict", {"environment": {"slug": "venv"}}, "environment"),
        ("app-list", {"app": ["rstudio"]}, "app"),
        ("resource-dict", {"resource": {"name": "x"}}, "resource"),
        ("resolution-dict", {"app": "vnc", "resolution": {"w": 1}}, "resolution"),
        ("logging-dict", {**t, "logging": {"on": True}}, "logging"),
        ("logging-word", {**t, "logging": "maybe"}, "logging"),
        ("env-list", {**t, "env": ["A=1"]}, "env"),
        ("env-number", {**t, "env": 5}, "env"),
        ("env-value-list", {**t, "env": {"A": ["x"]}}, "env"),
        ("env-value-dict", {**t, "env": {"A": {"x": 1}}}, "env"),
        ("env-value-null", {**t, "env": {"A": None}}, "env"),
        ("env-value-bool", {**t, "env": {"A": True}}, "env"),
        ("env-name-sbatch", {**t, "env": {"#SBATCH --mem": "1T"}}, "env"),
        ("env-name-newline-sbatch", {**t, "env": {"A\n#SBATCH --mem=1T\nB": "x"}}, "env"),
        ("env-value-newline-sbatch", {**t, "env": {"A": "x\n#SBATCH --mem=1T"}}, "env"),
        ("env-value-cr-sbatch", {**t, "env": {"A": "x\r#SBATCH --mem=1T"}}, "env"),
        ("env-text-newline-sbatch", {**t, "env": f"A=1\n#SBATCH --mem=1T\nB=$(touch {canary})"}, "env"),
        ("env-name-nul", {**t, "env": {"A\x00B": "x"}}, "env"),
        ("env-value-nul", {**t, "env": {"A": "x\x00y"}}, "env"),
        ("env-name-lsep", {**t, "env": {"A\u2028B": "x"}}, "env"),
        ("env-name-nel", {**t, "env": {"A\u0085B": "x"}}, "env"),
        ("env-name-reserved", {**t, "env": {"JUPYTERHUB_API_URL": "http://evil"}}, "env"),
        ("env-name-ld-preload", {**t, "env": {"BASH_ENV": "/tmp/evil"}}, "env"),
        ("env-name-1MB", {**t, "env": {"A" * MB: "x"}}, "env"),
        ("env-value-1MB", {**t, "env": {"BIG": big}}, "env"),
        ("profile-1MB", {"profile": big}, "profile"),
        ("environment-1MB", {**t, "environment": big}, "environment"),
        ("app-1MB", {**t, "app": big}, "app"),
        ("resource-1MB", {**t, "resource": big}, "resource"),
        ("resolution-1MB", {"app": "vnc", "resolution": big}, "resolution"),
        ("profile-sbatch", {"profile": "tunable\n#SBATCH --mem=1T"}, "profile"),
        ("environment-sbatch", {**t, "environment": "venv\n#SBATCH --mem=1T"}, "environment"),
    ]
    for name, good in (("profile", "tunable"), ("environment", "venv"), ("app", "rstudio"), ("resource", ""),
                       ("resolution", "1024x768")):
        for label, value in (("traversal", "../../etc"), ("absolute", "/etc/passwd"),
                             ("dotted", f"{good}/../../etc"), ("dotdot", ".."),
                             ("encoded", "%2e%2e%2fetc"), ("nul", f"{good}\x00"),
                             ("lsep", f"{good}\u2028"), ("nel", f"{good}\u0085")):
            body = {**t, name: value} if name != "resolution" else {"app": "vnc", name: value}
            if name == "profile":
                body = {"profile": value}
            cases.append((f"{name}-{label}", body, name))
    return cases


def _label(value: Any) -> str:
    if isinstance(value, str) and len(value) > 100:
        return f"{len(value) // MB}MB" if len(value) >= MB else f"{len(value)}ch"
    text = json.dumps(value, ensure_ascii=True)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")[:30] or "empty"


def user_options(body: Any) -> Any:
    """What JupyterHub 6 hands the spawner for a POST body (the new schema or the old one)."""
    if isinstance(body, dict) and ("user_options" in body or "display_name" in body):
        return body.get("user_options") or {}
    return body


def _script(selection: Any, scheduler: str) -> str:
    return render_script(ScriptRequest(
        selection=selection, scheduler=scheduler, job_name="pw-f-rest", job_dir="/home/f-rest/jobs/pw-f-rest",
        app=jupyter_launch(["jupyterhub-singleuser"], []), hub_env={"JUPYTERHUB_API_TOKEN": "t"}))


def changed_meaning(selection: Any) -> list[str]:
    """How a selection's scripts differ from the same choice without its variables, beyond the user's
    own export lines; and values that bash does not read back as typed. Empty: inert."""
    problems = []
    user_lines = {f"export {name}={shlex.quote(value)}" for name, value in selection.env.items()}
    marker = "# ---- environment variables from the spawn page"
    for scheduler in ("slurm", "pbs", "local"):
        # Lines as bash and sbatch split them: on \n only (\u2028 and \x85 break no line for them).
        lines = [ln for ln in _script(selection, scheduler).split("\n")
                 if ln not in user_lines and ln != marker]
        baseline = [ln for ln in _script(replace(selection, env={}), scheduler).split("\n") if ln != marker]
        if [ln for ln in lines if ln] != [ln for ln in baseline if ln]:
            extra = sorted(set(lines) - set(baseline))[:3]
            problems.append(f"{scheduler} script gained lines {[ln[:80] for ln in extra]}")
    if selection.env:
        exports = [ln for ln in _script(selection, "local").split("\n") if ln in user_lines]
        program = "\n".join([*exports, *(f'printf "%s\\0" "${{{name}}}"' for name in selection.env)])
        out = subprocess.run(["bash", "-s"], input=program.encode(), capture_output=True,
                             env={"PATH": "/usr/bin:/bin"}, timeout=60).stdout
        if out.decode("utf-8", "surrogateescape").split("\0")[:-1] != list(selection.env.values()):
            problems.append("bash read back other values than those typed")
    return problems


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    ok, why = hub_available()
    require("hub", ok, why)
    for what, (ok, why) in (("vnc", vnc_available()), ("xpra", xpra_available())):
        require(what, ok, why)
    with running_hub(tmp_path_factory.mktemp("faults-hub"), extra_config=CONFIG) as hub:
        yield hub


@pytest.fixture(scope="module")
def canary(hub: HubProcess) -> Path:
    return hub.tmp_dir / "canary-ran"


def accepted_env(canary: Path) -> dict[str, str]:
    """The hostile values the validation accepts (the hub's apply_user_options runs the same code)."""
    env = {}
    for name, value in HOSTILE_ENV.items():
        value = value.format(canary=canary) if "{canary}" in value else value
        try:
            validate_options(PROFILES, {"profile": "apps", "env": {name: value}})
        except OptionsError:
            continue
        env[name] = value
    return env


@pytest.fixture(scope="module")
def sampler() -> Iterator[ArgvSampler]:
    sampler = ArgvSampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


@pytest.fixture(scope="module")
def sessions(hub: HubProcess, sampler: ArgvSampler, canary: Path) -> dict[str, str]:
    """One running session of each app (app -> owner), spawned together."""
    options = {"jupyter": {"profile": "apps", "app": "jupyter"},
               "rstudio": {"profile": "apps", "app": "rstudio", "env": accepted_env(canary)},
               "vnc": {"profile": "apps", "app": "vnc"}, "xpra": {"profile": "apps", "app": "xpra"}}
    for app, owner in OWNERS.items():
        create_user(hub, owner)
        resp = hub.api("POST", f"/users/{owner}/server", options[app])
        assert resp.status in (201, 202), f"{app}: {resp.status} {resp.text[:500]}\n{hub.log_tail()}"
    for owner in OWNERS.values():
        hub.wait_ready(owner, timeout=120)
    create_user(hub, OTHER)
    return dict(OWNERS)


# ------------------------------------------------------------------------------------- REST bodies


def _outside_job_root(hub: HubProcess) -> list[str]:
    """Job directories (a job.sh) anywhere under the hub's tmp dir but below state/jobs/<user>/."""
    root = hub.state_dir / "jobs"
    found = []
    for script in hub.tmp_dir.rglob("job.sh"):
        try:
            relative = script.parent.relative_to(root)
        except ValueError:
            found.append(str(script.parent))
            continue
        if len(relative.parts) != 2:
            found.append(str(script.parent))
    return found


def _settle_accepted(hub: HubProcess, user: str, server: str = "") -> str:
    """A spawn the hub accepted: wait until it is ready or has failed, then stop it. Its fate."""
    deadline = time.monotonic() + 90
    fate = "pending"
    while time.monotonic() < deadline:
        model = hub.server_model(user, server)
        if model is None:
            fate = "failed"
            break
        if model.get("ready"):
            fate = "ready"
            break
        time.sleep(0.5)
    path = f"/users/{user}/server"
    if server:
        path = f"/users/{user}/servers/{urllib.parse.quote(server, safe='')}"
    if hub.server_model(user, server) is not None:
        hub.api("DELETE", path)
        hub.wait_gone(user, server, timeout=60)
    return fate


def _judge_answer(resp: Response, case: str, field: str, problems: list[str] | None,
                  faults: Any) -> str | None:
    """Count what the hub's answer shows. ``problems``: None when the validation refuses the body, else
    how its script changed meaning (empty: inert). Returns a complaint that is not a count, if any."""
    if resp.status >= 500 or TRACEBACK.search(resp.text):
        faults.record("injections", 1, f"{case}: the hub answered {resp.status}: {resp.text[:200]!r}")
        return None
    if problems is None:
        if resp.status in (201, 202):
            faults.record("injections", 1, f"{case}: the hub started what the validation refuses")
            return None
        if resp.status != 400:
            return f"{case}: unexpected answer {resp.status}: {resp.text[:200]!r}"
        try:
            message = resp.json().get("message", "")
        except ValueError:
            message = resp.text
        if not message.startswith(field[:40]):
            return f"{case}: refused, but the message does not name {field[:40]!r}: {message[:200]!r}"
        return None
    if problems:
        faults.record("injections", 1, f"{case}: accepted, and its script changed: {problems}")
    # Accepted: 201/202, or 400 when the accepted spawn failed within the hub's slow_spawn_timeout.
    if resp.status not in (201, 202, 400):
        return f"{case}: unexpected answer {resp.status}: {resp.text[:200]!r}"
    if resp.status == 400:
        print(f"{case}: accepted; the spawn failed at once: {resp.text[:200]}")
    return None


def test_raw_rest_bodies_are_refused_or_inert(hub: HubProcess, sessions: dict[str, str], canary: Path,
                                              faults) -> None:
    user = "f-rest"
    create_user(hub, user)
    token = hub.user_token(user)
    complaints = []
    for case, body, field in rest_cases(canary):
        faults.case()
        try:
            selection = validate_options(PROFILES, user_options(body), default_app="vnc")
            problems: list[str] | None = changed_meaning(selection)
        except OptionsError:
            problems = None
        except Exception as exc:  # the validation itself broke: the hub's answer (500) is counted
            print(f"{case}: validate_options raised {exc!r}")
            problems = None
        resp = hub.api("POST", f"/users/{user}/server", body, token=token, timeout=60)
        complaint = _judge_answer(resp, case, field, problems, faults)
        if complaint:
            complaints.append(complaint)
        if resp.status in (201, 202):
            print(f"{case}: accepted; the spawn {_settle_accepted(hub, user)}")
        elif hub.server_model(user) is not None:
            if problems is None:
                complaints.append(f"{case}: refused ({resp.status}) yet a server is listed")
            _settle_accepted(hub, user)
    outside = _outside_job_root(hub)
    faults.record("injections", len(outside), f"job directories outside the job root: {outside}")
    faults.record("injections", int(canary.exists()), f"{canary} was created: a value ran as a command")
    faults.check("injections")
    assert not complaints, "\n".join(complaints)


def _refused_or_contained(hub: HubProcess, resp: Response, what: str, user: str, server: str,
                          faults: Any) -> None:
    """A path-like name: refused with 400 (JupyterHub refuses some itself), or its job stays in the root."""
    print(f"{what}: {resp.status} {resp.text[:120]}")
    if resp.status >= 500 or TRACEBACK.search(resp.text):
        faults.record("injections", 1, f"{what}: the hub answered {resp.status}: {resp.text[:200]!r}")
    elif resp.status in (201, 202):
        print(f"{what}: accepted; the spawn {_settle_accepted(hub, user, server)}")
    outside = _outside_job_root(hub)
    faults.record("injections", len(outside), f"{what}: job directories {outside}")
    faults.check("injections")
    assert resp.status in (201, 202, 400), f"{what}: {resp.status} {resp.text[:300]}"


@pytest.mark.parametrize("server", ["../../etc", "..", "a/../../b", "x\u2028y"])
def test_path_like_server_names_stay_in_the_job_root(hub: HubProcess, sessions: dict[str, str], server: str,
                                                     faults) -> None:
    faults.case()
    user = "f-named"
    create_user(hub, user)
    path = f"/users/{user}/servers/{urllib.parse.quote(server, safe='')}"
    resp = hub.api("POST", path, {"profile": "tunable"}, timeout=60)
    _refused_or_contained(hub, resp, f"server name {server!r}", user, server, faults)


def test_path_like_user_name_stays_in_the_job_root(hub: HubProcess, sessions: dict[str, str], faults) -> None:
    """A user name from an authenticator that allows "/" (the demo's job root has {username} in it)."""
    faults.case()
    user = "../f-escape"
    resp = hub.api("POST", f"/users/{urllib.parse.quote(user, safe='')}")
    if resp.status in (201, 409):
        resp = hub.api("POST", f"/users/{urllib.parse.quote(user, safe='')}/server", {"profile": "tunable"})
    _refused_or_contained(hub, resp, f"user name {user!r}", user, "", faults)


def test_hostile_env_values_reach_the_session_unchanged(hub: HubProcess, sessions: dict[str, str],
                                                        canary: Path, faults) -> None:
    """The RStudio session was spawned with every accepted hostile value: its R session (through
    rserver, which starts it with an empty environment, and the job's wrapper) sees each as typed."""
    faults.case()
    owner = sessions["rstudio"]
    expected = accepted_env(canary)
    assert {"SUBST", "QUOTES", "LSEP", "SBATCH_VALUE"} <= set(expected), \
        f"the validation refuses values this case relies on: {sorted(set(HOSTILE_ENV) - set(expected))}"
    resp = hub.get(f"/user/{owner}/", token=hub.user_token(owner))
    assert resp.status == 200, f"{resp.status} {resp.text[:300]}"
    seen = resp.json()["rsession_env"]
    changed = sorted(name for name, value in expected.items() if seen.get(name) != value)
    faults.record("injections", len(changed), f"values changed on the way to the session: "
                  f"{[(n, expected[n][:40], (seen.get(n) or '')[:40]) for n in changed]}")
    faults.record("injections", int(canary.exists()), f"{canary} was created: a value ran as a command")
    script = (hub.job_dir(owner) / "job.sh").read_text()
    directives = [line for line in script.split("\n") if line.startswith(("#SBATCH", "#PBS"))]
    faults.record("injections", len(directives), f"directive lines in a local job's script: {directives}")
    faults.check("injections")


# ------------------------------------------------------------------------------------- access


def cookie_client(hub: HubProcess, user: str) -> urllib.request.OpenerDirector:
    """A browser-like client logged in to the hub as ``user`` (the demo takes any password)."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{hub.url}/hub/login", timeout=30) as page:
        html = page.read().decode()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', html)
    form = {"username": user, "password": "any", **({"_xsrf": xsrf.group(1)} if xsrf else {})}
    with opener.open(f"{hub.url}/hub/login", data=urllib.parse.urlencode(form).encode(), timeout=30) as page:
        page.read()
    assert any(c.name.startswith("jupyterhub-") for c in jar), f"no hub cookie for {user}: {list(jar)}"
    return opener


def browse(opener: urllib.request.OpenerDirector, url: str) -> tuple[Response, str]:
    """GET with the client's cookies, following redirects (the OAuth dance) to the end; and where."""
    try:
        with opener.open(url, timeout=30) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                            resp.read().decode(errors="replace")), resp.url
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()},
                        exc.read().decode(errors="replace")), exc.url


def chase(url: str, headers: dict[str, str] | None = None, hops: int = 5) -> Response:
    """GET, following redirects that stay on the server (jupyter_server's / -> /lab) but not those to
    the hub (its login or OAuth page: a refusal, judged as it is)."""
    resp = http("GET", url, headers=headers, follow_redirects=False)
    while hops and resp.status in (301, 302, 303, 307, 308):
        target = urllib.parse.urljoin(url, resp.headers.get("location", ""))
        if urllib.parse.urlsplit(target).path.startswith("/hub/"):
            break
        url, hops = target, hops - 1
        resp = http("GET", url, headers=headers, follow_redirects=False)
    return resp


def job_tcp_ports(hub: HubProcess, owner: str) -> set[int]:
    ports: set[int] = set()
    for pid in group_members(job_pgid(hub, owner)):
        try:
            ports.update(tcp_listen_ports(pid))
        except OSError:
            continue
    return ports


@pytest.mark.parametrize("app", list(OWNERS))
def test_nobody_else_reaches_a_session(hub: HubProcess, sessions: dict[str, str], app: str, faults) -> None:
    faults.case()
    owner, marker, path = sessions[app], MARKERS[app], PATHS[app]
    owner_token, other_token = hub.user_token(owner), hub.user_token(OTHER)
    port = service(hub, owner)["PORT"]
    reached: list[str] = []

    def probe(what: str, resp: Response | bytes | Exception, *, strict: bool = True,
              into: list[str] = reached) -> None:
        """``strict``: anything but a login redirect, 403 or 404 counts; else only the app's content."""
        if isinstance(resp, bytes | Exception):
            if isinstance(resp, bytes) and resp:
                into.append(f"{what}: websocket answered {resp[:20]!r}")
            return
        if marker in resp.text:
            into.append(f"{what}: {resp.status} with the app's page")
            return
        if strict:
            try:
                assert_no_access(resp, hub, what)
            except AssertionError as exc:
                into.append(str(exc).splitlines()[0])

    # The probe counts a request that gets in: the owner's own, through the proxy and on the port.
    control: list[str] = []
    for base in (hub.url, f"http://127.0.0.1:{port}"):
        probe("the owner", chase(f"{base}/user/{owner}/{path}", {"Authorization": f"token {owner_token}"}),
              into=control)
    assert len(control) == 2, f"the probe did not see the owner get in: {control}"

    # The owner gets in, with a token and with a cookie: the probes below can tell access from none.
    mine = hub.get(f"/user/{owner}/{path}", token=owner_token)
    assert mine.status == 200 and marker in mine.text, f"the owner: {mine.status} {mine.text[:300]}"
    page, page_marker = PAGES[app]
    own, _ = browse(cookie_client(hub, owner), f"{hub.url}/user/{owner}/{page}")
    assert own.status == 200 and page_marker in own.text, f"the owner's cookie: {own.status} {own.text[:300]}"

    theirs, where = browse(cookie_client(hub, OTHER), f"{hub.url}/user/{owner}/{page}")
    if page_marker in theirs.text or (theirs.status == 200 and urllib.parse.urlsplit(where).path
                                      .startswith(f"/user/{owner}/")):
        reached.append(f"{OTHER}'s hub cookie: {theirs.status} at {where}")
    direct = f"http://127.0.0.1:{port}"
    for base, where in ((hub.url, "through the proxy"), (direct, "on the node's port")):
        for sub in (path, "", "x/../", "api/status", "hub/api/user"):
            url = f"{base}/user/{owner}/{sub}"
            probe(f"anonymous {where} {sub!r}", chase(url))
            probe(f"{OTHER}'s token {where} {sub!r}", chase(url, {"Authorization": f"token {other_token}"}))
        probe(f"{OTHER}'s token {where}, as a query parameter",
              chase(f"{base}/user/{owner}/{path}?token={other_token}"))
    probe("anonymous on the node's port, its root", chase(f"{direct}/"), strict=False)
    # Every other port the job listens on (websockify's, a helper's): the session must not answer
    # there. noVNC's own files are public by design (websockify serves them); its desktop is not.
    for extra in sorted(job_tcp_ports(hub, owner) - {port}):
        if SESSION_MARKERS[app]:
            for sub in ("", f"user/{owner}/", f"user/{owner}/{path}"):
                resp = chase(f"http://127.0.0.1:{extra}/{sub}")
                if SESSION_MARKERS[app] in resp.text:
                    reached.append(f"anonymous on the job's port {extra} {sub!r}: {resp.status}")
        if app == "vnc":
            probe(f"websocket on the job's port {extra}", first_ws_message(f"ws://127.0.0.1:{extra}/websockify"))
    if app == "vnc":
        ws = hub.url.replace("http:", "ws:") + f"/user/{owner}/websockify"
        assert first_ws_message(ws, {"Authorization": f"token {owner_token}"}) == b"RFB 003.008\n"
        probe("anonymous websocket through the proxy", first_ws_message(ws))
        probe(f"{OTHER}'s websocket through the proxy",
              first_ws_message(ws, {"Authorization": f"token {other_token}"}))
        probe(f"{OTHER}'s websocket on the node's port",
              first_ws_message(f"ws://127.0.0.1:{port}/user/{owner}/websockify",
                               {"Authorization": f"token {other_token}"}))
    faults.record("cross-user accesses", len(reached), "; ".join(reached))
    faults.check("cross-user accesses")


# ------------------------------------------------------------------------------------- secrets


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|COOKIE|KEY", re.IGNORECASE)


def job_secrets(hub: HubProcess, owner: str) -> dict[str, str]:
    """What must stay private in one session: name -> value (values of 8 characters or more)."""
    job_dir = hub.job_dir(owner)
    found: dict[str, str] = {}
    for line in (job_dir / "job.sh").read_text().split("\n"):
        match = re.match(r"export ([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if match and _SECRET_NAME.search(match.group(1)):
            words = shlex.split(match.group(2))
            if words:
                found[match.group(1)] = words[0]
    app_dir = job_dir / "app"
    if (app_dir / "vnc-tokens").exists():
        found["websockify token"] = (app_dir / "vnc-tokens").read_text().split(":")[0].strip()
    if (app_dir / "secure-cookie-key").exists():
        found["RStudio cookie key"] = (app_dir / "secure-cookie-key").read_text().strip()
    if (app_dir / "Xauthority").exists():
        listed = subprocess.run(["xauth", "-f", str(app_dir / "Xauthority"), "list"], capture_output=True,
                                text=True, timeout=30).stdout
        for number, line in enumerate(listed.splitlines()):
            found[f"X cookie {number}"] = line.split()[-1]
    return {name: value for name, value in found.items() if len(value) >= 8}


def readable_by_others(path: Path) -> bool:
    """Whether an account other than the file's owner may read it: group or other read bits on it,
    and search bits for them on every directory above."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return False
    return all(p.stat().st_mode & (stat.S_IXGRP | stat.S_IXOTH) for p in path.parents)


def test_no_secret_where_another_account_can_read_it(hub: HubProcess, sessions: dict[str, str],
                                                     sampler: ArgvSampler, faults) -> None:
    faults.case()
    secrets = {f"{owner}: {name}": value for owner in sessions.values()
               for name, value in job_secrets(hub, owner).items()}
    assert any(name.endswith("JUPYTERHUB_API_TOKEN") for name in secrets), f"no API token found: {secrets}"
    assert any("websockify token" in name for name in secrets) and any("X cookie" in n for n in secrets)
    assert sampler.rounds > 10, f"only {sampler.rounds} argv samples"
    found: list[str] = []

    # argv: readable by every account on the host (/proc/<pid>/cmdline).
    for cmdline, pid in list(sampler.seen.items()):
        for name, value in secrets.items():
            if value in cmdline:
                found.append(f"{name} in the argv of pid {pid}: {cmdline[:160]}")

    # The hub's log: the hub's account's, not the user's.
    log = hub.log()
    found += [f"{name} in the hub's log" for name, value in secrets.items() if value in log]

    # Job directories: modes, and secrets in files others may read.
    for owner in sessions.values():
        job_dir = hub.job_dir(owner)
        checks = [(job_dir, 0o700, "the job directory"), (job_dir / "service.json", 0o600, "service.json")]
        for path, wanted, what in checks:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != wanted:
                found.append(f"{owner}: {what} has mode {mode:o}, not {wanted:o}")
        if stat.S_IMODE((job_dir / "job.sh").stat().st_mode) & 0o077:
            found.append(f"{owner}: job.sh (with the API token) is open to others: "
                         f"{stat.S_IMODE((job_dir / 'job.sh').stat().st_mode):o}")
        for path in sorted(job_dir.rglob("*")):
            if not path.is_file() or path.is_symlink() or not readable_by_others(path):
                continue
            try:
                text = path.read_bytes()[:4 * MB].decode(errors="replace")
            except OSError:
                continue
            found += [f"{name} in {path} (mode {stat.S_IMODE(path.stat().st_mode):o})"
                      for name, value in secrets.items() if value in text]
    print(f"secrets checked: {len(secrets)} in {len(sampler.seen)} command lines "
          f"({sampler.rounds} samples), the hub's log and {len(sessions)} job directories")
    faults.record("secrets found", len(found), "; ".join(found))
    faults.check("secrets found")

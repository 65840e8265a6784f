"""RStudio, the VNC desktop and Xpra through a real JupyterHub, its proxy and jupyter-standaloneproxy.

One hub (the demo config with ``pw-vnc``, the sibling spawner whose default app is the desktop) serves
the module. Each app is spawned through the REST API and reached as its owner; another user and an
anonymous client must get a login redirect or a 403/404 and never the app, through the hub's proxy and
on the node's port directly. The VNC desktop and Xpra are real (TigerVNC, websockify + noVNC, Xpra's
HTML5 client, from Debian); RStudio is a fake rserver (``pw_spawner.testing.fake_rserver``) since RStudio
Server is not in Debian. The browser tests open the desktop and Xpra in headless Chromium as their
owner, wait for the remote screen to draw, and save screenshots (``PW_UPDATE_DOC_SCREENSHOTS=1`` also
copies them to the docs).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.browser import browser_available, browser_login, chromium, screenshot, submit_spawn_form
from support.hub import HubProcess, Response, group_members, http, hub_available, running_hub, timing
from support.requirements import require

pytestmark = pytest.mark.hub

VENV_ACTIVATE = Path(sys.prefix) / "bin" / "activate"
FAKE_RSERVER = [sys.executable, "-m", "pw_spawner.testing.fake_rserver"]
EXTRA_CONFIG = f"""
c.JupyterHub.spawner_class = "pw-vnc"
# The hub collects its proxy's per-route activity this often (default 300 s), for the activity test.
c.JupyterHub.last_activity_interval = 2
c.PWSpawner.job_start_timeout = 60
c.PWSpawner.profile_list = [{{
    "slug": "apps", "display_name": "Apps", "default": True,
    "apps": ["jupyter", "vnc", "xpra", "rstudio"],
    "environments": [{{"slug": "venv", "display_name": "venv", "activate": "source {VENV_ACTIVATE}"}}],
}}]
c.PWSpawner.rstudio_rserver_cmd = {FAKE_RSERVER!r}
c.PWSpawner.rstudio_rsession_cmd = {[*FAKE_RSERVER, "--rsession"]!r}
"""


def vnc_available() -> tuple[bool, str]:
    for binary, package in (("Xvnc", "tigervnc-standalone-server"), ("websockify", "websockify"),
                            ("xauth", "xauth"), ("xterm", "xterm")):
        if shutil.which(binary) is None:
            return False, f"{binary} is missing (Debian: {package}; .ci/install-system.sh)"
    if not Path("/usr/share/novnc/vnc.html").exists():
        return False, "noVNC is missing (Debian: novnc; .ci/install-system.sh)"
    return True, ""


def xpra_available() -> tuple[bool, str]:
    if shutil.which("xpra") is None:
        return False, "xpra is missing (Debian: xpra; .ci/install-system.sh)"
    if not Path("/usr/share/xpra/www/index.html").exists():
        return False, "Xpra's HTML5 client is missing (/usr/share/xpra/www)"
    return True, ""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    ok, why = hub_available()
    require("hub", ok, why)
    with running_hub(tmp_path_factory.mktemp("apps-hub"), extra_config=EXTRA_CONFIG) as hub:
        yield hub


# ------------------------------------------------------------------------------------- helpers


def create_user(hub: HubProcess, name: str) -> None:
    resp = hub.api("POST", f"/users/{name}")
    assert resp.status in (201, 409), resp.text


def spawn(hub: HubProcess, user: str, options: dict) -> float:
    create_user(hub, user)
    started = time.monotonic()
    resp = hub.api("POST", f"/users/{user}/server", options)
    assert resp.status in (201, 202), f"{resp.status} {resp.text}\n{hub.log_tail()}"
    hub.wait_ready(user, timeout=90)
    return time.monotonic() - started


def ensure_running(hub: HubProcess, user: str, options: dict) -> None:
    """The user's server from an earlier test of the module, or a new one (a test run alone)."""
    create_user(hub, user)
    if hub.server_model(user) is None:
        spawn(hub, user, options)


def stop(hub: HubProcess, user: str) -> None:
    pgid = job_pgid(hub, user)
    resp = hub.api("DELETE", f"/users/{user}/server")
    assert resp.status in (202, 204), f"{resp.status} {resp.text}"
    hub.wait_gone(user, timeout=60)
    deadline = time.monotonic() + 20
    while group_members(pgid):
        assert time.monotonic() < deadline, f"the app's processes outlived stop: {group_members(pgid)}"
        time.sleep(0.2)


def job_pgid(hub: HubProcess, user: str) -> int:
    return int((hub.job_dir(user) / "job.pid").read_text().split()[0])


def service(hub: HubProcess, user: str) -> dict:
    return json.loads((hub.job_dir(user) / "service.json").read_text())


def cmdlines(hub: HubProcess, user: str) -> list[list[str]]:
    result = []
    for pid in group_members(job_pgid(hub, user)):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        result.append([a for a in raw.decode(errors="replace").split("\0") if a])
    return result


def process(hub: HubProcess, user: str, name: str) -> tuple[int, list[str]]:
    for pid in group_members(job_pgid(hub, user)):
        try:
            argv = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") if a]
        except OSError:
            continue
        if argv and (Path(argv[0]).name == name or any(Path(a).name == name for a in argv[1:2])):
            return pid, argv
    pytest.fail(f"no {name} process in {user}'s job: {cmdlines(hub, user)}")


def tcp_listen_ports(pid: int) -> list[int]:
    """TCP ports a process listens on (from its socket inodes and /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def assert_x_display_needs_the_cookie(hub: HubProcess, user: str, server: str) -> None:
    """The session's X display takes a client with the job's cookie and refuses one without."""
    require("xdpyinfo", shutil.which("xdpyinfo") is not None, "xdpyinfo is missing (Debian: x11-utils)")
    process(hub, user, server)  # it runs
    app_dir = hub.job_dir(user) / "app"
    display = ":" + (app_dir / "display").read_text().strip()
    env = {"PATH": os.environ["PATH"], "DISPLAY": display}
    with_cookie = subprocess.run(["xdpyinfo"], env={**env, "XAUTHORITY": str(app_dir / "Xauthority")},
                                 capture_output=True, text=True, timeout=30)
    assert with_cookie.returncode == 0, with_cookie.stderr
    without = subprocess.run(["xdpyinfo"], env={**env, "XAUTHORITY": "/dev/null"},
                             capture_output=True, text=True, timeout=30)
    assert without.returncode != 0, f"{server} on {display} let a client in without the cookie"


def assert_no_access(resp: Response, hub: HubProcess, what: str) -> None:
    """A login redirect (to the hub) or 403/404; never the app."""
    if resp.status in (301, 302, 303, 307):
        location = resp.headers.get("location", "")
        assert "/hub/" in location and ("oauth2/authorize" in location or "login" in location), \
            f"{what}: redirected to {location!r}"
    else:
        assert resp.status in (403, 404), f"{what}: got {resp.status}: {resp.text[:300]}"


def check_cross_user(hub: HubProcess, owner: str, other: str, marker: str) -> None:
    """Another user and an anonymous client get no access, through the proxy and on the node's port."""
    create_user(hub, other)
    other_token = hub.user_token(other)
    owner_token = hub.user_token(owner)
    port = service(hub, owner)["PORT"]
    direct = f"http://127.0.0.1:{port}"
    for base, where in ((hub.url, "through the hub's proxy"), (direct, "on the node's port")):
        url = f"{base}/user/{owner}/"
        resp = http("GET", url, follow_redirects=False)
        assert_no_access(resp, hub, f"anonymous {where}")
        assert marker not in resp.text
        resp = http("GET", url, headers={"Authorization": f"token {other_token}"}, follow_redirects=False)
        assert_no_access(resp, hub, f"{other} {where}")
        assert marker not in resp.text
        # A path below the prefix, and one outside it (the proxy answers only below its prefix).
        resp = http("GET", f"{base}/user/{owner}/x/../", follow_redirects=False)
        assert_no_access(resp, hub, f"anonymous {where}, dotted path")
    resp = http("GET", f"{direct}/", headers={"Authorization": f"token {other_token}"},
                follow_redirects=False)
    assert resp.status in (302, 403, 404) and marker not in resp.text, resp.status
    # ... while the owner gets the app.
    resp = http("GET", f"{hub.url}/user/{owner}/", headers={"Authorization": f"token {owner_token}"})
    assert resp.status == 200 and marker in resp.text, f"{resp.status} {resp.text[:300]}"


async def _first_ws_message(url: str, headers: dict[str, str], host_header: str | None = None) -> bytes:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(url, headers={**headers, **({"Host": host_header} if host_header else {})},
                          connect_timeout=10, request_timeout=10)
    ws = await websocket_connect(request, subprotocols=["binary"])
    try:
        message = await asyncio.wait_for(ws.read_message(), 10)
    finally:
        ws.close()
    return message or b""


def first_ws_message(url: str, headers: dict[str, str] | None = None) -> bytes | Exception:
    try:
        return asyncio.run(_first_ws_message(url, headers or {}))
    except Exception as exc:  # a refused upgrade or a closed stream: what the no-access checks expect
        return exc


# ------------------------------------------------------------------------------------- VNC


def test_vnc_is_the_sibling_spawners_default_and_runs_without_tcp(hub: HubProcess) -> None:
    ok, why = vnc_available()
    require("vnc", ok, why)
    seconds = spawn(hub, "vnc-owner", {"profile": "apps", "resolution": "1024x768"})
    timing("REST spawn-to-ready, VNC desktop", seconds)
    job_dir = hub.job_dir("vnc-owner")
    # No app was asked for: pw-vnc's default, not the profile's first app (jupyter), runs.
    assert "app" not in hub.server_model("vnc-owner")["user_options"]

    xvnc_pid, xvnc = process(hub, "vnc-owner", "Xvnc")
    assert xvnc[xvnc.index("-geometry") + 1] == "1024x768"
    assert xvnc[xvnc.index("-rfbport") + 1] == "-1"
    assert tcp_listen_ports(xvnc_pid) == [], "Xvnc listens on TCP"
    socket_path = Path(xvnc[xvnc.index("-rfbunixpath") + 1])
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    app_dir = job_dir / "app"
    assert stat.S_IMODE(app_dir.stat().st_mode) == 0o700
    for secret in ("vnc-tokens", "proxy_config.py", "Xauthority"):
        assert stat.S_IMODE((app_dir / secret).stat().st_mode) == 0o600, secret
    # No secret in any command line of the job.
    token = (app_dir / "vnc-tokens").read_text().split(":")[0]
    assert not any(token in " ".join(argv) for argv in cmdlines(hub, "vnc-owner"))
    assert_x_display_needs_the_cookie(hub, "vnc-owner", "Xvnc")


def test_vnc_owner_gets_rfb_and_others_get_nothing(hub: HubProcess) -> None:
    ok, why = vnc_available()
    require("vnc", ok, why)
    ensure_running(hub, "vnc-owner", {"profile": "apps"})
    check_cross_user(hub, "vnc-owner", "vnc-other", marker="vnc.html")

    owner = {"Authorization": f"token {hub.user_token('vnc-owner')}"}
    other = {"Authorization": f"token {hub.user_token('vnc-other')}"}
    ws_url = hub.url.replace("http:", "ws:") + "/user/vnc-owner/websockify"
    assert first_ws_message(ws_url, owner) == b"RFB 003.008\n"
    for headers, who in ((other, "another user"), ({}, "anonymous")):
        answer = first_ws_message(ws_url, headers)
        assert isinstance(answer, Exception), f"{who} got a websocket answer: {answer!r}"
    port = service(hub, "vnc-owner")["PORT"]
    answer = first_ws_message(f"ws://127.0.0.1:{port}/user/vnc-owner/websockify", other)
    assert isinstance(answer, Exception), f"another user on the node's port got {answer!r}"

    # websockify's own port on the node: noVNC's files are public, the desktop is not.
    _pid, websockify = process(hub, "vnc-owner", "websockify")
    web_port = int(websockify[-1].rsplit(":", 1)[1])
    answer = first_ws_message(f"ws://127.0.0.1:{web_port}/websockify")
    assert isinstance(answer, Exception), f"websockify bridged a client without the secret: {answer!r}"


# ------------------------------------------------------------------------------------- RStudio


def test_rstudio_fake_rserver_behind_the_proxy(hub: HubProcess) -> None:
    seconds = spawn(hub, "rs-owner", {"profile": "apps", "app": "rstudio", "env": {"R_GREETING": "hi there"}})
    timing("REST spawn-to-ready, RStudio (fake rserver)", seconds)
    token = hub.user_token("rs-owner")
    resp = hub.get("/user/rs-owner/some/page?x=1", token=token)
    assert resp.status == 200, resp.text
    record = resp.json()
    assert record["server"] == "fake-rserver"
    assert record["path"] == "/some/page?x=1"  # the proxy strips the prefix ...
    args = record["args"]
    assert args["www-root-path"] == "/user/rs-owner/"  # ... and rserver knows it
    assert args["auth-none"] == "1"
    assert args["server-user"] == pwd.getpwuid(os.getuid()).pw_name
    app_dir = hub.job_dir("rs-owner") / "app"
    socket_dir = Path(args["www-socket"]).parent
    assert socket_dir == app_dir or socket_dir.name.startswith("pw-")  # a deep job dir: one in /tmp
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    assert args["server-data-dir"] == str(app_dir / "rstudio-data")
    assert "provider=sqlite" in Path(args["database-config-file"]).read_text()
    key = Path(args["secure-cookie-key-file"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) >= 32
    # rserver gives R sessions a short environment; the wrapper brings back the job's.
    env = record["rsession_env"]
    assert isinstance(env, dict), env
    assert env.get("R_GREETING") == "hi there"
    assert env.get("JUPYTERHUB_USER") == "rs-owner"
    assert env.get("VIRTUAL_ENV") == sys.prefix  # the profile's environment was activated

    check_cross_user(hub, "rs-owner", "rs-other", marker="fake-rserver")

    # Use through the hub counts as activity (for idle culling); the proxy claims none of its own.
    _pid, proxy = process(hub, "rs-owner", "jupyter-standaloneproxy")
    assert "--activity-interval=0" in proxy
    time.sleep(3)  # the hub has collected the traffic of the checks above
    before = hub.server_model("rs-owner")["last_activity"]
    time.sleep(1.5)
    assert hub.get("/user/rs-owner/", token=token).status == 200
    deadline = time.monotonic() + 15
    while hub.server_model("rs-owner")["last_activity"] <= before:
        assert time.monotonic() < deadline, "the server's last_activity did not move after a request"
        time.sleep(0.5)
    stop(hub, "rs-owner")


# ------------------------------------------------------------------------------------- Xpra


def test_xpra_html5_client_behind_the_proxy(hub: HubProcess) -> None:
    ok, why = xpra_available()
    require("xpra", ok, why)
    seconds = spawn(hub, "xpra-owner", {"profile": "apps", "app": "xpra"})
    timing("REST spawn-to-ready, Xpra", seconds)
    pid, _argv = process(hub, "xpra-owner", "xpra")
    assert tcp_listen_ports(pid) == [], "xpra listens on TCP"
    assert_x_display_needs_the_cookie(hub, "xpra-owner", "Xvfb")
    check_cross_user(hub, "xpra-owner", "xpra-other", marker="Xpra")


# ------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def driver(hub: HubProcess, tmp_path_factory: pytest.TempPathFactory):
    ok, why = browser_available()
    require("browser", ok, why)
    driver = chromium(tmp_path_factory.mktemp("apps-chromium"))
    try:
        yield driver
    finally:
        driver.quit()


def keep_failure(driver, name: str) -> None:
    screenshot(driver, f"failure-{name}.png").with_suffix(".html").write_text(driver.page_source)


def novnc_connected(driver) -> bool:
    return bool(driver.execute_script(
        "return document.documentElement.classList.contains('noVNC_connected') && "
        "document.querySelector('#noVNC_container canvas, canvas') !== null"))


@pytest.mark.browser
def test_vnc_desktop_from_the_spawn_form_in_chromium(hub: HubProcess, driver) -> None:
    """The whole way: the spawn form (app and desktop size), the progress page, noVNC's desktop."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ok, why = vnc_available()
    require("vnc", ok, why)
    user = "vnc-browser"
    create_user(hub, user)
    browser_login(driver, hub, user)
    driver.get(f"{hub.url}/hub/spawn")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "pw-app--apps"))
    Select(driver.find_element(By.ID, "pw-app--apps")).select_by_value("vnc")
    Select(driver.find_element(By.ID, "pw-resolution--apps")).select_by_value("1024x768")
    started = time.monotonic()
    submit_spawn_form(driver)
    try:
        # The progress page, then the hub sends the browser to the server, which logs it in
        # (OAuth) and lands on noVNC through the job's index page.
        WebDriverWait(driver, 120, poll_frequency=0.3).until(novnc_connected)
        time.sleep(3)  # the desktop draws its windows a moment after connecting
    except Exception:
        keep_failure(driver, "vnc-desktop")
        raise
    timing("browser spawn-form-to-desktop, VNC", time.monotonic() - started)
    assert f"/user/{user}/vnc.html" in driver.current_url
    assert hub.server_model(user)["user_options"]["resolution"] == "1024x768"
    _pid, xvnc = process(hub, user, "Xvnc")
    assert xvnc[xvnc.index("-geometry") + 1] == "1024x768"
    screenshot(driver, "vnc-desktop.png", for_docs=True)

    # Another user, logged in to the hub, who knows the URL: the hub refuses the OAuth step.
    browser_login(driver, hub, "vnc-other")
    for path in ("", "vnc.html"):
        driver.get(f"{hub.url}/user/{user}/{path}")
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(1)
        html = driver.page_source
        assert "noVNC_container" not in html and not novnc_connected(driver), "another user got noVNC"
        assert "403" in html or "Forbidden" in html, html[:500]
    screenshot(driver, "vnc-other-user.png")


@pytest.mark.browser
def test_xpra_in_chromium_as_owner(hub: HubProcess, driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    ok, why = xpra_available()
    require("xpra", ok, why)
    ensure_running(hub, "xpra-owner", {"profile": "apps", "app": "xpra"})
    browser_login(driver, hub, "xpra-owner")
    started = time.monotonic()
    driver.get(f"{hub.url}/user/xpra-owner/")

    def window_drawn(d) -> bool:
        return bool(d.execute_script("return document.querySelector('#screen .window canvas') !== null"))

    try:
        WebDriverWait(driver, 60, poll_frequency=0.3).until(window_drawn)
        time.sleep(3)
    except Exception:
        keep_failure(driver, "xpra")
        raise
    timing("browser open-to-window, Xpra", time.monotonic() - started)
    screenshot(driver, "xpra-session.png", for_docs=True)

    # Leave the session and come back to it: the same application, still running.
    pid, _argv = process(hub, "xpra-owner", "xterm")
    driver.get(f"{hub.url}/hub/home")
    driver.get(f"{hub.url}/user/xpra-owner/")
    WebDriverWait(driver, 60, poll_frequency=0.3).until(window_drawn)
    assert process(hub, "xpra-owner", "xterm")[0] == pid

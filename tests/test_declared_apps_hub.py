"""A web app declared as data only (``c.PWSpawner.app_definitions``), through a real JupyterHub.

The app is a real third-party one: Bokeh's server (``bokeh serve``), a dashboard served over http with
a websocket per session, on a unix socket in the job's private directory. The hub's config declares it
with no Python of its own: a command with ``{unix_socket}`` and ``{prefix}``, a landing path, a ready
path, an environment variable; a profile offers it beside JupyterLab.

How Bokeh works behind jupyter-standaloneproxy (found by hand):
the proxy strips the server's prefix by default, but Bokeh's page names its scripts by absolute paths
(``/static/js/bokeh.min.js``), which would leave the prefix. So Bokeh is told the prefix
(``--prefix {prefix}``) and the proxy passes each request's whole path (``absolute_url: true``, the
proxy's ``--absolute-url``); ``/dashboard/metadata`` answers without making a session, for the ready
check. On a unix socket Bokeh allows no websocket origin unless told (tornado 6.6 lets a same-origin
upgrade through without asking it, older tornado asks it for every one), and
``--allow-websocket-origin=*`` is safe here: only the proxy reaches the socket, and the proxy itself
refuses an upgrade whose origin is not its host (checked below).

The owner reaches the dashboard and its websocket session through the hub's proxy; another user and an
anonymous client never do, through the proxy or on the node's port; Bokeh listens on no TCP port; and in
headless Chromium the owner picks the app on the spawn form and watches the dashboard update.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.browser import browser_available, browser_login, chromium, screenshot, submit_spawn_form
from support.hub import HubProcess, group_members, http, hub_available, running_hub, timing
from support.requirements import require
from test_apps_hub import (
    VENV_ACTIVATE,
    assert_no_access,
    create_user,
    ensure_running,
    job_pgid,
    keep_failure,
    process,
    service,
    spawn,
    tcp_listen_ports,
)

pytestmark = pytest.mark.hub

APP = "bokeh-dash"
PROFILE = "dash"
OPTIONS = {"profile": PROFILE, "app": APP}
GREETING = "hello from the app definition"
#: The document's title, the page's <title>: what only the app's own page holds.
TITLE = "pw-bokeh-dashboard"

#: The Bokeh app: a counter a periodic callback advances, and a slider whose server-side callback
#: redraws the line; both reach the page over the session's websocket only.
DASHBOARD = '''\
"""pw_spawner's declared-app test (tests/test_declared_apps_hub.py): a Bokeh dashboard."""

import os

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import figure

XS = [0, 1, 2, 3]
greeting = Div(text=os.environ.get("PW_DASH_GREETING", "no greeting"), name="pw-greeting")
ticks = Div(text="ticks: 0", name="pw-ticks")
slope = Slider(start=1, end=10, value=3, step=1, title="slope", name="pw-slope")
source = ColumnDataSource({"x": XS, "y": [3 * x for x in XS]}, name="pw-line")
plot = figure(width=600, height=320, title="TITLE")
plot.line("x", "y", source=source, line_width=3)
count = {"ticks": 0}


def tick():
    count["ticks"] += 1
    ticks.text = f"ticks: {count['ticks']}"


def new_slope(_attr, _old, new):
    source.data = {"x": XS, "y": [new * x for x in XS]}


slope.on_change("value", new_slope)
doc = curdoc()
doc.title = "TITLE"
doc.add_root(column(greeting, ticks, slope, plot))
doc.add_periodic_callback(tick, 500)
'''.replace("TITLE", TITLE)


def app_definition(script: Path) -> dict[str, Any]:
    """The declared app, as an admin writes it (Bokeh names the app after its script: /dashboard)."""
    return {
        "name": APP,
        "display_name": "Bokeh dashboard",
        "command": ["bokeh", "serve", "--unix-socket", "{unix_socket}", "--prefix", "{prefix}",
                    "--allow-websocket-origin=*", str(script)],
        "listen": "unix_socket",
        "landing_path": "/dashboard",
        "websockets": True,
        "ready_path": "/dashboard/metadata",
        "scheme": "http",
        "absolute_url": True,
        "environment": {"PW_DASH_GREETING": GREETING},
    }


def extra_config(script: Path) -> str:
    return f"""
c.PWSpawner.job_start_timeout = 60
c.PWSpawner.app_definitions = [{app_definition(script)!r}]
c.PWSpawner.profile_list = [{{
    "slug": "{PROFILE}", "display_name": "Dashboards", "default": True,
    "apps": ["jupyter", "{APP}"],
    "environments": [{{"slug": "venv", "display_name": "venv", "activate": "source {VENV_ACTIVATE}"}}],
}}]
"""


def bokeh_available() -> tuple[bool, str]:
    if not (Path(sys.prefix) / "bin" / "bokeh").exists():
        return False, f"bokeh is not installed in {sys.prefix} (pip install 'bokeh>=3.4,<4', the test extra)"
    return True, ""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    ok, why = hub_available()
    require("hub", ok, why)
    ok, why = bokeh_available()
    require("bokeh", ok, why)
    app_dir = tmp_path_factory.mktemp("declared-app")
    script = app_dir / "dashboard.py"
    script.write_text(DASHBOARD)
    with running_hub(tmp_path_factory.mktemp("declared-apps-hub"), extra_config=extra_config(script)) as hub:
        yield hub


# ------------------------------------------------------------------------------------- helpers


def owner_headers(hub: HubProcess, user: str) -> dict[str, str]:
    return {"Authorization": f"token {hub.user_token(user)}"}


def session_token(page: str) -> str:
    """The Bokeh session token a dashboard page embeds (its websocket's second subprotocol)."""
    found = re.search(r'"token":\s*"([^"]+)"', page)
    assert found, f"no Bokeh session token in the page: {page[:500]}"
    return found.group(1)


async def _bokeh_session(ws_url: str, headers: dict[str, str], token: str, patches: int) -> dict[str, Any]:
    """Open a Bokeh session over its websocket: the ACK, the document (PULL-DOC), then ``patches``
    changes the server pushes. Each Bokeh message is three frames: header, metadata, content."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(ws_url, headers=headers, connect_timeout=10, request_timeout=10)
    ws = await websocket_connect(request, subprotocols=["bokeh", token])

    async def message() -> tuple[dict, dict, dict]:
        frames = []
        for _ in range(3):
            frame = await asyncio.wait_for(ws.read_message(), 10)
            if frame is None:
                raise ConnectionError("the websocket closed")
            frames.append(json.loads(frame))
        return frames[0], frames[1], frames[2]

    try:
        ack, _, _ = await message()
        for frame in ({"msgid": "pw-1", "msgtype": "PULL-DOC-REQ"}, {}, {}):
            await ws.write_message(json.dumps(frame))
        reply, _, doc = await message()
        pushed = []
        while len(pushed) < patches:
            header, _, content = await message()
            if header["msgtype"] == "PATCH-DOC":
                pushed.append(content)
    finally:
        ws.close()
    return {"ack": ack, "reply": reply, "doc": doc, "patches": pushed}


def bokeh_session(ws_url: str, headers: dict[str, str], token: str,
                  patches: int = 0) -> dict[str, Any] | Exception:
    try:
        return asyncio.run(_bokeh_session(ws_url, headers, token, patches))
    except Exception as exc:  # a refused upgrade or a closed stream: what the no-access checks expect
        return exc


def short(answer: object) -> str:
    return repr(answer)[:300]


def no_bokeh(text: str) -> bool:
    return TITLE not in text and "bokeh" not in text.lower()


# ------------------------------------------------------------------------------------- the owner


def test_owner_gets_the_dashboard_and_its_websocket_session(hub: HubProcess) -> None:
    user = "bk-owner"
    seconds = spawn(hub, user, OPTIONS)
    timing("REST spawn-to-ready, declared Bokeh app", seconds)
    assert hub.server_model(user)["user_options"]["app"] == APP
    headers = owner_headers(hub, user)

    # The server's root: Bokeh redirects to its only app, inside the prefix.
    root = http("GET", f"{hub.url}/user/{user}/", headers=headers, follow_redirects=False)
    assert root.status in (301, 302, 307), f"{root.status} {root.text[:300]}"
    assert root.headers["location"] in (f"/user/{user}/dashboard", f"{hub.url}/user/{user}/dashboard")

    resp = http("GET", f"{hub.url}/user/{user}/dashboard", headers=headers)
    assert resp.status == 200, f"{resp.status} {resp.text[:300]}\n{hub.log_tail()}"
    assert f"<title>{TITLE}</title>" in resp.text
    # BokehJS by the page's own URLs: all inside the prefix, and they load through the hub's proxy
    # (without the prefix Bokeh would name /static/..., the hub's, which it does not have).
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', resp.text)
    assert scripts, resp.text[:1000]
    for src in scripts:
        assert src.startswith(f"/user/{user}/"), f"a script outside the server's prefix: {src}"
        js = http("GET", hub.url + src, headers=headers)
        assert js.status == 200 and "Bokeh" in js.text, f"{src}: {js.status} {js.text[:200]}"

    # The session's websocket, as BokehJS opens it (the page's path + /ws): the document, with the
    # definition's environment, and the counter the server advances, pushed over the socket.
    ws_url = hub.url.replace("http:", "ws:") + f"/user/{user}/dashboard/ws"
    session = bokeh_session(ws_url, headers, session_token(resp.text), patches=3)
    assert not isinstance(session, Exception), f"the owner's websocket failed: {session!r}\n{hub.log_tail()}"
    assert session["ack"]["msgtype"] == "ACK"
    assert session["reply"]["msgtype"] == "PULL-DOC-REPLY"
    doc = json.dumps(session["doc"])
    assert GREETING in doc and TITLE in doc, doc[:500]
    pushed = [re.findall(r"ticks: (\d+)", json.dumps(patch)) for patch in session["patches"]]
    counts = [int(found[-1]) for found in pushed if found]
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] > counts[0], session["patches"]


# ------------------------------------------------------------------------------------- the others


def test_others_get_neither_the_dashboard_nor_its_websocket(hub: HubProcess) -> None:
    owner, other = "bk-owner", "bk-other"
    ensure_running(hub, owner, OPTIONS)
    create_user(hub, other)
    owner_auth = owner_headers(hub, owner)
    other_auth = owner_headers(hub, other)
    port = service(hub, owner)["PORT"]
    direct = f"http://127.0.0.1:{port}"

    page = http("GET", f"{hub.url}/user/{owner}/dashboard", headers=owner_auth)
    assert page.status == 200 and TITLE in page.text, f"{page.status} {page.text[:300]}"
    token = session_token(page.text)  # the worst case: the others even know a live session's token

    for base, where in ((hub.url, "through the hub's proxy"), (direct, "on the node's port")):
        for path in ("", "dashboard", "dashboard/metadata", "static/js/bokeh.min.js", "x/../dashboard"):
            url = f"{base}/user/{owner}/{path}"
            for headers, who in (({}, "anonymous"), (other_auth, other)):
                resp = http("GET", url, headers=headers, follow_redirects=False)
                assert_no_access(resp, hub, f"{who} {where}, /{path}")
                assert no_bokeh(resp.text), f"{who} {where} got Bokeh's answer to /{path}: {resp.text[:300]}"
        ws_url = base.replace("http:", "ws:") + f"/user/{owner}/dashboard/ws"
        for headers, who in (({}, "anonymous"), (other_auth, other)):
            answer = bokeh_session(ws_url, headers, token)
            assert isinstance(answer, Exception), f"{who} {where} opened the owner's session: {short(answer)}"
    # Outside the prefix, on the node's port: nothing either.
    resp = http("GET", f"{direct}/dashboard", headers=other_auth, follow_redirects=False)
    assert resp.status in (302, 403, 404) and no_bokeh(resp.text), resp.status

    # Bokeh accepts any origin (--allow-websocket-origin=*); the proxy in front must not: a page of
    # another site cannot open the owner's session even with the owner's credentials.
    ws_url = hub.url.replace("http:", "ws:") + f"/user/{owner}/dashboard/ws"
    answer = bokeh_session(ws_url, {**owner_auth, "Origin": "http://evil.example"}, token)
    assert isinstance(answer, Exception), f"a foreign origin opened the owner's session: {short(answer)}"
    # ... while the owner, from the hub's own origin, gets it: every refusal above could have failed.
    answer = bokeh_session(ws_url, {**owner_auth, "Origin": hub.url}, token)
    assert not isinstance(answer, Exception), f"the owner's websocket failed: {short(answer)}"
    assert answer["ack"]["msgtype"] == "ACK"


# ------------------------------------------------------------------------------------- unix socket


def test_bokeh_listens_on_its_private_unix_socket_only(hub: HubProcess) -> None:
    user = "bk-owner"
    ensure_running(hub, user, OPTIONS)
    pid, argv = process(hub, user, "bokeh")
    assert tcp_listen_ports(pid) == [], f"Bokeh listens on TCP: {argv}"
    # The placeholders were filled in: the socket and the server's prefix.
    socket_path = Path(argv[argv.index("--unix-socket") + 1])
    assert argv[argv.index("--prefix") + 1] == f"/user/{user}/"
    assert socket_path.is_socket(), socket_path
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700, "others can enter the socket's directory"
    # Only the authenticating proxy listens on TCP in the whole job (on the port the hub routes to),
    # and it is the one in front of Bokeh's socket.
    port = service(hub, user)["PORT"]
    listening = {p: tcp_listen_ports(p) for p in group_members(job_pgid(hub, user))}
    assert {port for ports in listening.values() for port in ports} == {port}, listening
    proxy_pid, proxy = process(hub, user, "jupyter-standaloneproxy")
    assert listening.get(proxy_pid) == [port], (proxy, listening)
    assert any(str(socket_path) in arg for arg in proxy), f"the proxy is not in front of Bokeh: {proxy}"
    # The definition's environment reached the app.
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"PW_DASH_GREETING={GREETING}".encode() in environ


# ------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def driver(hub: HubProcess, tmp_path_factory: pytest.TempPathFactory):
    ok, why = browser_available()
    require("browser", ok, why)
    driver = chromium(tmp_path_factory.mktemp("declared-apps-chromium"))
    try:
        yield driver
    finally:
        driver.quit()


#: The dashboard as BokehJS has it (its models, synchronised over the websocket) and as it shows it
#: (the text of the page, shadow roots included); null until the session is there.
DASHBOARD_STATE_JS = """
const docs = (window.Bokeh && window.Bokeh.documents) || [];
const model = (name) => docs.length ? docs[0].get_model_by_name(name) : null;
if (!model('pw-ticks') || !model('pw-line')) return null;
const texts = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) texts.push(node.textContent);
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.childNodes) walk(child);
};
walk(document.body);
const data = model('pw-line').data;
const y = data instanceof Map ? data.get('y') : data.y;
return {ticks: model('pw-ticks').text, greeting: model('pw-greeting').text, y: Array.from(y),
        shown: texts.join(' '), canvases: (function count(node) {
          let n = node.tagName === 'CANVAS' ? 1 : 0;
          if (node.shadowRoot) n += count(node.shadowRoot);
          for (const child of node.children || []) n += count(child);
          return n; })(document.body)};
"""


def dashboard_state(driver) -> dict[str, Any] | None:
    return driver.execute_script(DASHBOARD_STATE_JS)


def ticks_shown(state: dict[str, Any] | None) -> int:
    found = re.search(r"ticks: (\d+)", (state or {}).get("shown", ""))
    return int(found.group(1)) if found else -1


@pytest.mark.browser
def test_declared_app_from_the_spawn_form_in_chromium(hub: HubProcess, driver) -> None:
    """The whole way: the spawn form's Application menu, the progress page, Bokeh's live dashboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    user = "bk-browser"
    create_user(hub, user)
    browser_login(driver, hub, user)
    driver.get(f"{hub.url}/hub/spawn")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, f"pw-app--{PROFILE}"))
    menu = Select(driver.find_element(By.ID, f"pw-app--{PROFILE}"))
    assert "Bokeh dashboard" in [option.text for option in menu.options]
    menu.select_by_value(APP)
    started = time.monotonic()
    submit_spawn_form(driver)
    try:
        # The progress page, then the hub sends the browser to the landing path, which logs it in
        # (OAuth) and shows the dashboard; its counter moves only if the websocket session works.
        WebDriverWait(driver, 120, poll_frequency=0.3).until(lambda d: ticks_shown(dashboard_state(d)) >= 0)
        first = ticks_shown(dashboard_state(driver))
        WebDriverWait(driver, 30, poll_frequency=0.3).until(
            lambda d: ticks_shown(dashboard_state(d)) >= first + 3)
    except Exception:
        keep_failure(driver, "declared-app")
        raise
    timing("browser spawn-form-to-dashboard, declared Bokeh app", time.monotonic() - started)
    assert driver.current_url.split("?")[0] == f"{hub.url}/user/{user}/dashboard"
    assert hub.server_model(user)["user_options"]["app"] == APP
    state = dashboard_state(driver)
    assert state["greeting"] == GREETING and GREETING in state["shown"], state
    assert state["canvases"] >= 1, "the plot did not draw"

    # Both ways over the socket: the browser moves the slider, the server's callback redraws the line.
    driver.execute_script("window.Bokeh.documents[0].get_model_by_name('pw-slope').value = 7")
    try:
        WebDriverWait(driver, 30, poll_frequency=0.3).until(
            lambda d: (dashboard_state(d) or {}).get("y") == [0, 7, 14, 21])
    except Exception:
        keep_failure(driver, "declared-app-slider")
        raise
    time.sleep(1)  # the plot redraws a moment after its data changed
    screenshot(driver, "declared-app.png", for_docs=True)

    # Another user, logged in to the hub, who knows the URL: the hub refuses the OAuth step.
    browser_login(driver, hub, "bk-other")
    driver.get(f"{hub.url}/user/{user}/dashboard")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    time.sleep(1)
    html = driver.page_source
    assert dashboard_state(driver) is None and TITLE not in html, "another user got the dashboard"
    assert "403" in html or "Forbidden" in html, html[:500]


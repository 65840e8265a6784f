"""Sharing a running session with another hub user, on a real JupyterHub and in headless Chromium.

alice runs two sessions: JupyterLab (her default server) and a Bokeh dashboard behind
jupyter-standaloneproxy (the declared app of tests/test_declared_apps_hub.py, with its websocket).
She shares both from the sessions page (Share, a link with a JupyterHub share code); bob, logged in,
opens the links, accepts, and reaches both apps, websockets included; carol, who never had a link,
gets a 403 or a login redirect on the same URLs. After Revoke sharing, bob's access is gone too. A
hub with sharing turned off (``configure_sessions_page(c, sharing=False)``) offers no Share and its
share-code API refuses alice.

One hub per test module part: the sharing-off hub lives for its own test only (it runs first), so two
hubs never run at once; alice's two sessions are the only servers the sharing hub starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import browser_available, browser_login, chromium, screenshot
from support.hub import HubProcess, Response, http, hub_available, running_hub
from support.requirements import require
from test_apps_hub import assert_no_access, create_user
from test_declared_apps_hub import (
    DASHBOARD,
    TITLE,
    bokeh_available,
    bokeh_session,
    extra_config,
    session_token,
)

pytestmark = pytest.mark.hub

JUPYTER = {"profile": "dash", "app": "jupyter"}
BOKEH = {"profile": "dash", "app": "bokeh-dash"}
#: How long after Revoke sharing a request may still get in: the apps' hub-auth cache (see
#: pw_spawner/templates: the job tells jupyterhub-singleuser and jupyter-standaloneproxy to ask the
#: hub again after this long, instead of the default five minutes).
REVOKE_SECONDS = 30

SHARING_OFF = """
from pw_spawner.sessions.page import configure_sessions_page as _pw_configure
# The demo turned the sessions page on with sharing; a site without sharing calls it with sharing=False:
# the demo's handlers and its user role are taken out first.
c.JupyterHub.extra_handlers = [h for h in c.JupyterHub.extra_handlers if not h[0].startswith("/sessions")]
c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != "user"]
_pw_configure(c, store_url=c.PWSpawner.sessions_db_url, sharing=False)
"""


def login(driver: Any, hub: HubProcess, user: str) -> None:
    """Log ``user`` in on the sessions page, with no cookie left of another user's apps."""
    browser_login(driver, hub, user, next_path="/hub/sessions", forget_apps=True)


def job_id(hub: HubProcess, user: str, server: str = "") -> str:
    import json

    return str(json.loads((hub.job_dir(user, server) / "service.json").read_text())["JOB_ID"])


def start(hub: HubProcess, user: str, server: str, options: dict[str, str]) -> str:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    resp = hub.api("POST", path, options)
    assert resp.status in (201, 202), f"{resp.status} {resp.text}\n{hub.log_tail()}"
    hub.wait_ready(user, server, timeout=120)
    return job_id(hub, user, server)


def on_row(driver: Any, job: str, action: Callable[[Any], Any], timeout: float = 30) -> Any:
    """``action(row)`` on the running row of ``job`` once it returns something true. The page redraws
    its rows every 5 s, which leaves a row found before a redraw stale: then it is found again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    selector = f"tr[data-job-id='{job}'][data-state='running']"
    redrawn = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, timeout, ignored_exceptions=redrawn)
    return wait.until(lambda d: action(d.find_element(By.CSS_SELECTOR, selector)))


def buttons(element: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [b.text for b in element.find_elements(By.TAG_NAME, "button")]


def row_text(driver: Any, job: str, has: Callable[[str, list[str]], bool] = lambda text, labels: True,
             timeout: float = 30) -> tuple[str, list[str]]:
    """The row's text and button labels, once ``has(text, labels)``."""
    def read(element: Any) -> tuple[str, list[str]] | None:
        text, labels = element.text, buttons(element)
        return (text, labels) if has(text, labels) else None

    return on_row(driver, job, read, timeout)


def click(driver: Any, job: str, label: str) -> None:
    from selenium.webdriver.common.by import By

    def press(element: Any) -> bool:
        element.find_element(By.XPATH, f".//button[text()='{label}']").click()
        return True

    on_row(driver, job, press)


def get(hub: HubProcess, path: str, token: str) -> Response:
    return http("GET", hub.url + path, headers={"Authorization": f"token {token}"}, follow_redirects=False)


async def _handshake(url: str, token: str) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=10,
                          request_timeout=10)
    ws = await websocket_connect(request)
    ws.close()
    return "open"


def handshake(url: str, token: str) -> str | Exception:
    """``"open"`` when the server accepts the websocket upgrade, else what refused it."""
    try:
        return asyncio.run(_handshake(url, token))
    except Exception as exc:  # a refused upgrade: what the no-access checks expect
        return exc


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(1)


@pytest.fixture(scope="module")
def browser_ok() -> None:
    ok, why = browser_available()
    require("browser", ok, why)


@pytest.fixture
def driver(browser_ok: None, tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path / "profile", window="1400,900")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def app_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ok, why = hub_available()
    require("hub", ok, why)
    ok, why = bokeh_available()
    require("bokeh", ok, why)
    script = tmp_path_factory.mktemp("sharing-app") / "dashboard.py"
    script.write_text(DASHBOARD)
    return script


@pytest.fixture(scope="module")
def hub(app_script: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with running_hub(tmp_path_factory.mktemp("sharing-hub"), extra_config=extra_config(app_script)) as hub:
        yield hub


# ------------------------------------------------------------------------------------- sharing off


@pytest.mark.browser
def kept_out(hub: HubProcess, token: str, who: str, lab_ws: str, dash_ws: str, bokeh_token: str) -> None:
    """``token`` reaches none of alice's apps: a 403 or the hub's login on every page, and neither
    websocket (Jupyter's events, a Bokeh session) opens."""
    for path in ("/user/alice/api/status", "/user/alice/lab", "/user/alice/dash/dashboard"):
        resp = get(hub, path, token)
        assert_no_access(resp, hub, f"{who} on {path}")
        assert TITLE not in resp.text and "started" not in resp.text
    assert isinstance(handshake(lab_ws, token), Exception)
    assert isinstance(bokeh_session(dash_ws, {"Authorization": f"token {token}"}, bokeh_token), Exception)


def test_sharing_off_offers_no_share_and_the_hub_refuses(app_script: Path, driver: Any,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    # A hub of this test alone, stopped before the sharing hub starts: one hub at a time.
    with running_hub(tmp_path_factory.mktemp("no-sharing-hub"),
                     extra_config=extra_config(app_script) + SHARING_OFF) as hub:
        create_user(hub, "alice")
        job = start(hub, "alice", "", JUPYTER)
        alice = hub.user_token("alice")
        refused = hub.api("POST", "/share-codes/alice/", {}, token=alice)
        assert refused.status == 403, refused.text
        assert hub.api("POST", "/shares/alice/", {"user": "bob"}, token=alice).status == 403
        login(driver, hub, "alice")
        driver.get(f"{hub.url}/hub/sessions")
        text, labels = row_text(driver, job)
        assert "Join" in text and "Share" not in labels, labels
        assert driver.find_elements("id", "pw-share-dialog") == []


# ------------------------------------------------------------------------------------- sharing on


@pytest.mark.browser
def test_a_shared_user_gets_in_a_third_does_not_and_revoke_ends_it(hub: HubProcess, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for name in ("alice", "bob", "carol"):
        create_user(hub, name)
    lab_job = start(hub, "alice", "", JUPYTER)
    dash_job = start(hub, "alice", "dash", BOKEH)
    bob, carol, alice = (hub.user_token(name) for name in ("bob", "carol", "alice"))
    ws = hub.url.replace("http:", "ws:")
    lab_ws = f"{ws}/user/alice/api/events/subscribe"
    dash_ws = f"{ws}/user/alice/dash/dashboard/ws"

    # Before any share, bob is a third user like carol: the checks below can fail. (Another token of
    # his: the server keeps its answer about a token for a while, REVOKE_SECONDS.)
    assert_no_access(get(hub, "/user/alice/api/status", hub.user_token("bob")), hub, "bob before sharing")

    # alice shares both sessions from the page: each Share makes a link shown in the dialog.
    login(driver, hub, "alice")
    driver.get(f"{hub.url}/hub/sessions")
    links = {}
    for job in (lab_job, dash_job):
        assert "Revoke sharing" not in row_text(driver, job)[1]
        click(driver, job, "Share")
        field = driver.find_element(By.ID, "pw-share-link")
        WebDriverWait(driver, 30).until(lambda d, f=field: f.is_displayed() and f.get_attribute("value"))
        links[job] = field.get_attribute("value")
        assert links[job].startswith(f"{hub.url}/hub/accept-share?code="), links[job]
        assert driver.find_element(By.ID, "pw-share-copy").is_displayed()
        if job == lab_job:
            screenshot(driver, "sessions-share.png", for_docs=True)
        driver.find_element(By.CSS_SELECTOR, "#pw-share-dialog .modal-footer button").click()
        WebDriverWait(driver, 10).until(lambda d: not d.find_element(By.ID, "pw-share-dialog").is_displayed())
    # An unused link already counts as sharing: it can be revoked.
    row_text(driver, lab_job, lambda text, labels: "Revoke sharing" in labels, timeout=20)
    assert links[lab_job] != links[dash_job]

    # bob opens each link, logged in as himself, and accepts: JupyterLab opens (the hub's OAuth with
    # his cookie), then the dashboard.
    login(driver, hub, "bob")
    for job in (lab_job, dash_job):
        driver.get(links[job])
        assert "invited to access alice's server" in driver.page_source, driver.page_source[:500]
        driver.find_element(By.XPATH, "//button[text()='Accept invitation']").click()
        # The hub asks a user who is not the server's owner to authorise the server, once per server.
        authorize = WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.XPATH, "//button[text()='Authorize']"))
        assert "/hub/api/oauth2/authorize" in driver.current_url
        authorize[0].click()
        if job == lab_job:
            WebDriverWait(driver, 60).until(lambda d: d.title == "JupyterLab" or "JupyterLab" in d.title)
        else:
            WebDriverWait(driver, 60).until(lambda d: TITLE in d.title)
    driver.get(f"{hub.url}/user/alice/api/status")
    assert '"started"' in driver.page_source, driver.page_source[:300]

    # bob's own token (no share of its own: it inherits his share) reaches both apps and their
    # websockets, through the hub's proxy; carol's reaches neither.
    status = get(hub, "/user/alice/api/status", bob)
    assert status.status == 200 and "started" in status.text, status.text[:300]
    page = get(hub, "/user/alice/dash/dashboard", bob)
    assert page.status == 200 and TITLE in page.text, page.text[:300]
    assert handshake(lab_ws, bob) == "open"
    session = bokeh_session(dash_ws, {"Authorization": f"token {bob}"}, session_token(page.text))
    assert not isinstance(session, Exception), f"bob's Bokeh session failed: {session!r}"
    assert session["ack"]["msgtype"] == "ACK"
    kept_out(hub, carol, "carol", lab_ws, dash_ws, session_token(page.text))
    shares = hub.api("GET", "/shares/alice", token=alice).json()["items"]
    assert sorted((s["server"]["name"], s["user"]["name"]) for s in shares) == [("", "bob"), ("dash", "bob")]

    # alice revokes sharing on both, from the page (with confirmation).
    login(driver, hub, "alice")
    driver.get(f"{hub.url}/hub/sessions")
    for job in (lab_job, dash_job):
        text, _ = row_text(driver, job, lambda text, labels: "Revoke sharing" in labels, timeout=20)
        assert "shared with bob" in text
        click(driver, job, "Revoke sharing")
        alert = driver.switch_to.alert
        assert "bob" in alert.text
        alert.accept()
        row_text(driver, job, lambda text, labels: "Revoke sharing" not in labels, timeout=20)
    assert hub.api("GET", "/shares/alice", token=alice).json()["items"] == []
    assert hub.api("GET", "/share-codes/alice", token=alice).json()["items"] == []

    # bob's access ends: his token and his browser get a 403 or a login redirect, never the apps;
    # the links no longer work; alice still gets in.
    revoked = time.monotonic()

    def bob_is_out() -> bool:
        answers = [get(hub, p, bob) for p in ("/user/alice/api/status", "/user/alice/dash/dashboard")]
        return all(a.status != 200 for a in answers)

    wait_until(bob_is_out, REVOKE_SECONDS + 10, "bob's access ended")
    print(f"\nTIMING revoke to bob's 403: {time.monotonic() - revoked:.1f} s")
    kept_out(hub, bob, "bob after revoke", lab_ws, dash_ws, session_token(page.text))
    login(driver, hub, "bob")
    driver.get(f"{hub.url}/user/alice/api/status")
    assert '"started"' not in driver.page_source
    driver.get(links[lab_job])
    assert "Accept invitation" not in driver.page_source
    assert get(hub, "/user/alice/api/status", alice).status == 200

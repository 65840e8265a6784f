"""The sessions page and its JSON view on a real JupyterHub (the demo config, which turns them on).

Sessions of the local target with JupyterLab: the JSON view lists a user's running and finished
sessions with their job ids; another user, an anonymous client and a token of another user get none
of them; the page, in headless Chromium, shows the rows and cancels one.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from support.browser import browser_available, browser_login, chromium, screenshot, submit_spawn_form
from support.hub import HubProcess, http, hub_available, running_hub
from support.requirements import require

pytestmark = pytest.mark.hub

API = "/hub/sessions/api/sessions"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    ok, why = hub_available()
    require("hub", ok, why)
    # carol may read alice's servers (a helpdesk role), nobody else's.
    extra = ('c.JupyterHub.load_roles.append({"name": "alice-helpdesk", "users": ["carol"], '
             '"scopes": ["self", "read:servers!user=alice"]})')
    with running_hub(tmp_path_factory.mktemp("sessions-hub"), extra_config=extra) as hub:
        yield hub


def create_user(hub: HubProcess, name: str) -> None:
    resp = hub.api("POST", f"/users/{name}")
    assert resp.status in (201, 409), resp.text


def rows(hub: HubProcess, token: str | None, **params: Any) -> tuple[int, list[dict[str, Any]]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    headers = {"Authorization": f"token {token}"} if token else {}
    resp = http("GET", f"{hub.url}{API}?{query}", headers=headers, follow_redirects=False)
    if resp.status != 200:
        return resp.status, []
    return 200, resp.json()["sessions"]


def job_id(hub: HubProcess, user: str, server: str = "") -> str:
    return str(json.loads((hub.job_dir(user, server) / "service.json").read_text())["JOB_ID"])


def wait_for_row(hub: HubProcess, token: str, predicate, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        _, seen = rows(hub, token)
        for row in seen:
            if predicate(row):
                return row
        time.sleep(0.3)
    raise AssertionError(f"no such row among {seen}")


def test_a_users_running_and_finished_sessions(hub: HubProcess) -> None:
    create_user(hub, "alice")
    token = hub.user_token("alice")
    resp = hub.api("POST", "/users/alice/server", {"profile": "demo-small", "hours": 2})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready("alice", timeout=90)
    resp = hub.api("POST", "/users/alice/servers/desk", {"profile": "demo-large"})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready("alice", "desk", timeout=90)
    first, second = job_id(hub, "alice"), job_id(hub, "alice", "desk")
    row = wait_for_row(hub, token, lambda r: r["job_id"] == first and r["state"] == "running")
    assert (row["user"], row["server_name"], row["app"], row["profile"]) == \
        ("alice", "", "jupyter", "demo-small")
    assert (row["hours"], row["cores"], row["memory_gb"], row["gpus"]) == (2, 1, 2, 0)
    assert row["detail"].startswith("running on ") and "left" in row["detail"]
    assert row["submitted"] and row["started"] and row["ends"] and row["end_reason"] is None
    assert row["active"] and row["url"] == "/user/alice/"
    desk = wait_for_row(hub, token, lambda r: r["job_id"] == second)
    assert (desk["server_name"], desk["cores"], desk["url"]) == ("desk", 2, "/user/alice/desk/")

    resp = hub.api("DELETE", "/users/alice/servers/desk")
    assert resp.status in (202, 204), resp.text
    hub.wait_gone("alice", "desk", timeout=60)
    done = wait_for_row(hub, token, lambda r: r["job_id"] == second and r["state"] == "finished")
    assert done["end_reason"] == "cancelled" and not done["active"]
    assert done["spawn_url"] == "/hub/spawn/alice/desk"
    # Newest first.
    _, listed = rows(hub, token)
    assert [r["job_id"] for r in listed][:2] == [second, first]


def test_nobody_else_sees_a_users_rows(hub: HubProcess) -> None:
    create_user(hub, "alice")
    create_user(hub, "bob")
    bob = hub.user_token("bob")
    status, seen = rows(hub, bob)
    assert status == 200 and all(r["user"] == "bob" for r in seen)
    assert rows(hub, bob, user="alice")[0] == 403
    assert rows(hub, None)[0] == 403
    page = http("GET", f"{hub.url}/hub/sessions", follow_redirects=False)
    assert page.status == 302 and "/hub/login" in page.headers.get("location", "")
    # The tests' service holds admin:servers (read:servers for everyone): it sees alice's rows.
    status, every = rows(hub, hub.api_token, user="alice")
    assert status == 200 and every and all(r["user"] == "alice" for r in every)
    assert rows(hub, bob, limit="x")[0] == 400


def test_a_filtered_scope_reads_that_users_rows_only(hub: HubProcess) -> None:
    for name in ("alice", "bob", "carol"):
        create_user(hub, name)
    for name in ("alice", "bob"):  # (alice's may still run from an earlier test)
        if hub.server_model(name) is None:
            assert hub.api("POST", f"/users/{name}/server", {"profile": "demo-small"}).status in (201, 202)
        hub.wait_ready(name, timeout=90)
    carol = hub.user_token("carol")
    status, seen = rows(hub, carol, user="alice")
    assert status == 200 and seen and {r["user"] for r in seen} == {"alice"}
    assert rows(hub, carol, user="bob")[0] == 403
    status, own = rows(hub, carol)
    assert status == 200 and all(r["user"] == "carol" for r in own)


def edit_hours_and_start(driver: Any, url_part: str, profile: str, shown: str, wanted: str) -> None:
    """On the spawn form Settings opened (its URL holds ``url_part``): ``profile`` chosen and its
    hours pre-filled with ``shown``; changed to ``wanted``, then Start."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    hours = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, f"pw-hours--{profile}"))
    assert url_part in driver.current_url
    assert driver.find_element(By.ID, "pw-profile").get_attribute("value") == profile
    assert hours.get_attribute("value") == shown
    hours.clear()
    hours.send_keys(wanted)
    submit_spawn_form(driver)


def relaunch(hub: HubProcess, token: str | None, body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"token {token}"} if token else {}
    resp = http("POST", f"{hub.url}/hub/sessions/api/relaunch", body=json.dumps(body), headers=headers,
                follow_redirects=False)
    return resp.status, (resp.json() if resp.status == 200 else {"error": resp.text})


def test_relaunch_as_it_was_and_pre_filled(hub: HubProcess) -> None:
    create_user(hub, "dora")
    create_user(hub, "bob")
    dora = hub.user_token("dora")
    options = {"profile": "demo-small", "hours": 2}
    assert hub.api("POST", "/users/dora/servers/big", options).status in (201, 202)
    hub.wait_ready("dora", "big", timeout=90)
    first = job_id(hub, "dora", "big")
    key = {"user": "dora", "server_name": "big", "job_id": first}

    # While it runs, a relaunch goes to a new server: a second session like this one.
    status, answer = relaunch(hub, dora, {**key, "edit": True})
    assert status == 200 and answer["server_name"] == "session-1", answer
    assert answer["spawn_url"] == "/hub/spawn/dora/session-1"
    servers = hub.api("GET", "/users/dora?include_stopped_servers=1").json()["servers"]
    assert servers["session-1"]["user_options"] == options

    assert hub.api("DELETE", "/users/dora/servers/big").status in (202, 204)
    hub.wait_gone("dora", "big", timeout=60)
    wait_for_row(hub, dora, lambda r: r["job_id"] == first and r["state"] == "finished")
    # Stopped: the session's own server, and its own options (not the request's).
    status, answer = relaunch(hub, dora, {**key, "edit": False, "options": {"profile": "x"}})
    assert status == 200 and answer["server_name"] == "big"
    assert answer["options"] == options and answer["server_api"] == "users/dora/servers/big"
    started = http("POST", f"{hub.url}/hub/api/{answer['server_api']}", body=json.dumps(answer["options"]),
                   headers={"Authorization": f"token {dora}"})
    assert started.status in (201, 202), started.text
    hub.wait_ready("dora", "big", timeout=90)
    row = wait_for_row(hub, dora, lambda r: r["server_name"] == "big" and r["job_id"] != first)
    assert (row["profile"], row["hours"], row["cores"]) == ("demo-small", 2, 1)

    # Nobody else relaunches dora's sessions, or learns her options; bad bodies are refused.
    assert relaunch(hub, hub.user_token("bob"), key)[0] == 404
    assert relaunch(hub, None, key)[0] == 403
    assert relaunch(hub, dora, {**key, "job_id": "999999"})[0] == 404
    assert relaunch(hub, dora, {**key, "edit": "yes"})[0] == 400
    assert relaunch(hub, dora, ["dora"])[0] == 400
    assert hub.api("DELETE", "/users/dora/servers/big").status in (202, 204)
    hub.wait_gone("dora", "big", timeout=60)


def test_the_page_in_chromium_shows_the_rows_and_cancels(hub: HubProcess, tmp_path) -> None:
    ok, why = browser_available()
    require("browser", ok, why)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = "page-user"
    create_user(hub, user)
    resp = hub.api("POST", f"/users/{user}/server", {"profile": "demo-small", "hours": 3})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready(user, timeout=90)
    wanted = job_id(hub, user)
    driver = chromium(tmp_path / "profile", window="1400,900")
    try:
        browser_login(driver, hub, user)
        driver.get(f"{hub.url}/hub/sessions")
        assert driver.find_element(By.LINK_TEXT, "Sessions")  # the navbar item
        row = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{wanted}'][data-state='running']"))
        text = row.text
        assert "JupyterLab" in text and "demo-small" in text and "running on" in text
        screenshot(driver, "sessions-page.png", for_docs=True)
        row.find_element(By.XPATH, ".//button[text()='Cancel']").click()
        driver.switch_to.alert.accept()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{wanted}'][data-state='finished']"))
        finished = driver.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{wanted}']").text
        assert "cancelled" in finished and "Relaunch" in finished

        # Settings: the spawn form, pre-filled with this session's options; one edit, then start.
        row = driver.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{wanted}']")
        row.find_element(By.XPATH, ".//button[text()='Settings']").click()
        edit_hours_and_start(driver, f"/hub/spawn/{user}", "demo-small", "3", "2")
        hub.wait_ready(user, timeout=90)
        again = job_id(hub, user)
        assert again != wanted
        row = wait_for_row(hub, hub.user_token(user), lambda r: r["job_id"] == again)
        assert (row["hours"], row["profile"]) == (2, "demo-small")

        # Relaunch: the same settings again at once, through the hub's API, to the pending page.
        assert hub.api("DELETE", f"/users/{user}/server").status in (202, 204)
        hub.wait_gone(user, timeout=60)
        driver.get(f"{hub.url}/hub/sessions")
        button = f"tr[data-job-id='{again}'][data-state='finished'] button"
        WebDriverWait(driver, 60).until(lambda d: any(
            b.text == "Relaunch" for b in d.find_elements(By.CSS_SELECTOR, button)))
        next(b for b in driver.find_elements(By.CSS_SELECTOR, button) if b.text == "Relaunch").click()
        WebDriverWait(driver, 30).until(lambda d: f"/user/{user}/" in d.current_url
                                        or f"/hub/spawn-pending/{user}" in d.current_url)
        hub.wait_ready(user, timeout=90)
        third = job_id(hub, user)
        assert third not in (wanted, again)
        row = wait_for_row(hub, hub.user_token(user), lambda r: r["job_id"] == third)
        assert (row["hours"], row["profile"]) == (2, "demo-small")
    finally:
        driver.quit()


def test_every_hub_page_warns_of_a_session_that_ends_soon(hub: HubProcess, tmp_path) -> None:
    """A running session 5 minutes before its walltime ends (a row of the store, as its spawner
    writes it): the home page and the sessions page say so, for its user only."""
    ok, why = browser_available()
    require("browser", ok, why)
    import asyncio
    from datetime import datetime, timedelta, timezone

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pw_spawner.sessions.store import SessionRecord, SessionStore

    for name in ("late", "early"):
        create_user(hub, name)
    now = datetime.now(timezone.utc)
    began = now - timedelta(minutes=55)
    record = SessionRecord(
        user="late", server_name="desk", job_id="424242", resource=None, scheduler="local", app="jupyter",
        profile="demo-small", hours=1, cores=1, memory_gb=2, gpus=0, state="running",
        detail="running on localhost", submitted=began, started=began,
        ends=now + timedelta(minutes=5, seconds=30), finished=None, end_reason=None, options={},
        node="localhost")

    async def write() -> None:
        async with SessionStore(f"sqlite:///{hub.state_dir / 'pw_sessions.sqlite'}") as store:
            await store.save(record)

    asyncio.run(write())
    driver = chromium(tmp_path / "profile", window="1400,700")
    try:
        for user in ("early", "late"):
            browser_login(driver, hub, user)
            driver.get(f"{hub.url}/hub/home")
            if user == "early":  # nothing of late's, and nothing of its own
                time.sleep(2)
                assert driver.find_elements(By.CSS_SELECTOR, "#pw-ending-soon .alert") == []
                continue
            note = WebDriverWait(driver, 30).until(
                lambda d: d.find_element(By.CSS_SELECTOR, "#pw-ending-soon .alert[data-job-id='424242']"))
            assert note.text == ('Your session "desk" (JupyterLab, job 424242) reaches its time limit: '
                                 "5 min left. Save your work; when it ends, the app stops.")
            screenshot(driver, "sessions-ending-soon.png", for_docs=True)
            driver.get(f"{hub.url}/hub/sessions")
            row = WebDriverWait(driver, 30).until(
                lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-job-id='424242']"))
            assert "table-warning" in (row.get_attribute("class") or "")
            assert driver.find_element(By.CSS_SELECTOR, "#pw-ending-soon .alert[data-job-id='424242']")
    finally:
        driver.quit()

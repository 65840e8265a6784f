"""The sessions page's history outlives the hub: a session started and stopped on a real JupyterHub,
then the hub process stopped and a new one started on the same configuration and databases, still
lists the finished row, with the same job id and end reason, in its JSON view and on its page.

Once with the store on a real PostgreSQL server (tests/support/postgres.py, on loopback; the row
is read back from its ``pw_sessions`` table too, so the store did not fall back to a file), once on
the default SQLite file next to the hub's database. Sessions run on the demo's local target:
what is tested is the store, not a scheduler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import browser_available, browser_login, chromium
from support.hub import HubProcess, hub_available, timing
from support.postgres import PostgresServer, postgres_available
from support.requirements import require
from test_apps_hub import keep_failure

pytestmark = [pytest.mark.hub, pytest.mark.browser]

API = "/hub/sessions/api/sessions"


def postgres_config(url: str) -> str:
    """The demo's sessions page moved from its SQLite file to ``url``: the page's handlers and the
    spawners' journal both (the demo config has set them up for SQLite before this runs)."""
    return f"""
from pw_spawner.sessions.page import sessions_handlers
_others = [h for h in c.JupyterHub.extra_handlers if not h[0].startswith("/sessions")]
c.JupyterHub.extra_handlers = [*_others, *sessions_handlers({url!r})]
c.PWSpawner.sessions_db_url = {url!r}
"""


@pytest.fixture(autouse=True)
def _needs_a_hub_and_a_browser() -> None:
    for what, available in (("hub", hub_available), ("browser", browser_available)):
        require(what, *available())


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    ok, why = postgres_available()
    require("postgres", ok, why)
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


def wait_row(hub: HubProcess, token: str, job_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = hub.get(API, token=token)
        assert resp.status == 200, resp.text
        seen = resp.json()["sessions"]
        for row in seen:
            if row["job_id"] == job_id and row["state"] == state:
                return row
        time.sleep(0.3)
    raise AssertionError(f"no {state} row of job {job_id} among {seen}\n{hub.log_tail(30)}")


def finished_session(hub: HubProcess, user: str) -> dict[str, Any]:
    """A session of ``user`` started and stopped: its finished row."""
    assert hub.api("POST", f"/users/{user}").status in (201, 409)
    resp = hub.api("POST", f"/users/{user}/servers/kept", {"profile": "demo-small", "hours": 3})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready(user, "kept", timeout=90)
    job_id = str(json.loads((hub.job_dir(user, "kept") / "service.json").read_text())["JOB_ID"])
    token = hub.user_token(user)
    wait_row(hub, token, job_id, "running")
    assert hub.api("DELETE", f"/users/{user}/servers/kept").status in (202, 204)
    hub.wait_gone(user, "kept", timeout=60)
    return wait_row(hub, token, job_id, "finished")


def restart(hub: HubProcess) -> None:
    """Stop the hub process (and its proxy) and start a new one on the same config and databases."""
    old = hub.proc.pid if hub.proc else None
    hub.stop()
    hub.start(timeout=60)
    assert hub.proc is not None and hub.proc.pid != old
    timing("hub restart", hub.start_seconds or 0)


def assert_kept(hub: HubProcess, user: str, before: dict[str, Any], profile_dir: Path) -> None:
    """After the restart: the same finished row in the JSON view and on the page."""
    after = wait_row(hub, hub.user_token(user), before["job_id"], "finished")
    keys = ("job_id", "server_name", "end_reason", "detail", "profile", "hours", "submitted", "started")
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
    assert (after["end_reason"], after["detail"]) == ("cancelled", "finished: cancelled")
    driver = chromium(profile_dir)
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        browser_login(driver, hub, user)
        driver.get(f"{hub.url}/hub/sessions")
        cells = WebDriverWait(driver, 30, poll_frequency=0.5).until(lambda d: d.execute_script(
            "const tr = document.querySelector(`tr[data-job-id='${arguments[0]}'][data-state='finished']`);"
            "return tr && Array.from(tr.cells, td => td.textContent);", before["job_id"]))
    except Exception:
        keep_failure(driver, "sessions-after-restart")
        raise
    finally:
        driver.quit()
    assert cells[0] == before["job_id"] and cells[2] == "demo-small" and cells[4] == "3", cells
    assert cells[8] == "finished: cancelled" and "Relaunch" in cells[9], cells


def restarted_keeps(hub: HubProcess, user: str, profile_dir: Path) -> dict[str, Any]:
    """Start the hub, finish a session of ``user``, restart the hub: its row is still shown."""
    try:
        hub.start(timeout=60)
        before = finished_session(hub, user)
        restart(hub)
        assert_kept(hub, user, before, profile_dir)
    finally:
        hub.stop()
    assert not hub.leftovers, f"processes outlived the hub: {hub.leftovers}"
    return before


@pytest.mark.postgres
def test_rows_survive_a_hub_restart_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database()
    database = url.rsplit("/", 1)[1]
    hub = HubProcess(tmp_path / "hub", extra_config=postgres_config(url))
    before = restarted_keeps(hub, "pg-user", tmp_path / "chromium")
    # The rows are PostgreSQL's, and no SQLite file stood in for it.
    with postgres.connect(database) as conn:
        stored = conn.execute("SELECT job_id, state, end_reason FROM pw_sessions WHERE user_name = %s",
                              ("pg-user",)).fetchall()
    assert stored == [(before["job_id"], "finished", "cancelled")]
    assert not (hub.state_dir / "pw_sessions.sqlite").exists()


def test_rows_survive_a_hub_restart_on_sqlite(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub")
    restarted_keeps(hub, "sqlite-user", tmp_path / "chromium")
    assert (hub.state_dir / "pw_sessions.sqlite").exists()

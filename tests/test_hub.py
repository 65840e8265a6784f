"""End-to-end tests with a real JupyterHub, configurable-http-proxy and jupyterhub-singleuser.

One hub (the demo config, the ``local`` target) serves the whole module. Servers are spawned
through the REST API, reached through the proxy with a user's token, stopped, and survive a hub
restart. Timings are printed (``pytest -s``) as ``TIMING <what>: <seconds>``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.hub import HubProcess, group_members, hub_available, running_hub, timing
from support.requirements import require

pytestmark = pytest.mark.hub

# The restart test stops the hub and leaves its servers running; HubProcess.stop() still stops
# them through the API first when the module ends.
EXTRA_CONFIG = """
c.JupyterHub.cleanup_servers = False
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    ok, why = hub_available()
    require("hub", ok, why)
    with running_hub(tmp_path_factory.mktemp("hub"), extra_config=EXTRA_CONFIG) as hub:
        yield hub


def job_pgid(job_dir: Path) -> int:
    return int((job_dir / "job.pid").read_text().split()[0])


def wait_group_gone(pgid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            pytest.fail(f"the job's process group {pgid} still has processes {group_members(pgid)}")
        time.sleep(0.2)


def create_user(hub: HubProcess, name: str) -> None:
    resp = hub.api("POST", f"/users/{name}")
    assert resp.status in (201, 409), resp.text  # 409: made by an earlier test


def spawn(hub: HubProcess, user: str, options: dict) -> float:
    """Ask for the user's server and wait until it is ready; returns the seconds it took."""
    started = time.monotonic()
    resp = hub.api("POST", f"/users/{user}/server", options)
    assert resp.status in (201, 202), f"{resp.status} {resp.text}\n{hub.log_tail()}"
    hub.wait_ready(user, timeout=90)
    return time.monotonic() - started


def stop_server(hub: HubProcess, user: str) -> None:
    resp = hub.api("DELETE", f"/users/{user}/server")
    assert resp.status in (202, 204), f"{resp.status} {resp.text}"
    hub.wait_gone(user, timeout=60)


def test_admin_token_works(hub: HubProcess) -> None:
    resp = hub.api("GET", "/user")
    assert resp.status == 200, resp.text
    assert resp.json()["kind"] == "service"
    assert resp.json()["name"] == "pwtest"


def test_rest_spawn_reach_through_proxy_and_stop(hub: HubProcess) -> None:
    user = "rest-user"
    create_user(hub, user)
    seconds = spawn(hub, user, {"profile": "demo-small", "hours": 2})
    timing("REST spawn-to-ready", seconds)

    model = hub.server_model(user)
    assert model["user_options"] == {"profile": "demo-small", "hours": 2}
    job_dir = hub.job_dir(user)
    pgid = job_pgid(job_dir)
    assert group_members(pgid), "the job's process group is not running"

    token = hub.user_token(user)
    resp = hub.get(f"/user/{user}/api/status", token=token)
    assert resp.status == 200, f"{resp.status} {resp.text[:500]}"
    assert resp.headers.get("content-type", "").startswith("application/json")
    assert "last_activity" in resp.json()
    # Without a token the server sends us to the hub to log in: it sits behind the hub's auth.
    anonymous = hub.get(f"/user/{user}/api/status", follow_redirects=False)
    assert anonymous.status in (302, 403), f"{anonymous.status} {anonymous.text[:300]}"

    stop_server(hub, user)
    wait_group_gone(pgid)
    assert hub.get(f"/user/{user}/api/status", token=token, follow_redirects=False).status != 200


@pytest.mark.parametrize(("options", "named"), [
    ({"hours": 99}, "hours"),
    ({"profile": "demo-small", "hours": 99}, "hours"),
    ({"image": "x"}, "image"),
], ids=["hours-above-max", "hours-above-max-with-profile", "unknown-key"])
def test_rest_spawn_rejects_options(hub: HubProcess, options: dict, named: str) -> None:
    user = "bad-options-user"
    create_user(hub, user)
    resp = hub.api("POST", f"/users/{user}/server", options)
    assert resp.status == 400, f"{resp.status} {resp.text}"
    message = resp.json()["message"]
    assert message.startswith(f"{named}:"), message
    assert hub.server_model(user) is None
    # Refused before anything was submitted.
    assert not hub.job_dir(user).exists()


def test_hub_restart_reattaches(hub: HubProcess) -> None:
    user = "restart-user"
    create_user(hub, user)
    spawn(hub, user, {"profile": "demo-small"})
    pgid = job_pgid(hub.job_dir(user))
    token = hub.user_token(user)
    assert hub.get(f"/user/{user}/api/status", token=token).status == 200

    # Hub and proxy go (cleanup_servers is False); the job stays.
    hub.stop(stop_servers=False)
    assert group_members(pgid), "the job did not survive the hub's shutdown"
    log_before = len(hub.log())

    hub.start(timeout=60)
    timing("hub restart", hub.start_seconds)
    model = hub.server_model(user)
    assert model is not None and model["ready"], f"{model}\n{hub.log()[log_before:]}"
    assert job_pgid(hub.job_dir(user)) == pgid, "the server was started anew, not re-attached"
    # The new proxy gets the route once the hub has polled the job; allow it a moment.
    deadline = time.monotonic() + 30
    while (resp := hub.get(f"/user/{user}/api/status", token=token)).status != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"not reachable after the restart: {resp.status} {resp.text[:300]}\n"
                        + hub.log()[log_before:])
        time.sleep(0.5)
    assert "last_activity" in resp.json()

    stop_server(hub, user)
    wait_group_gone(pgid)

"""The sessions page on the real parts: a real JupyterHub and its proxy whose PWSpawner submits to a
real Slurm on loopback, seen by one user in headless Chromium.

What it proves, in the order the module runs it:

- a session kept queued on real Slurm (a blocker job of another account is ahead of it for the
  whole node) is listed with its job id (the one squeue shows), its service host and "queued: " with
  Slurm's reason in words and the backfill scheduler's estimated start (every job ahead of it has a
  time limit), beside a running desktop (the VNC app), "running on <node>, N min left";
- Cancel on the queued row (confirmed in the browser's dialog) cancels its job and the row says
  "finished: cancelled";
- a session with a two-minute walltime, started first so that its minutes run while the rest
  does, gets Slurm's walltime warning a minute before the end (``--signal=B:USR1@60``: its job
  logs it and runs on), then ends on real Slurm and its row says "finished: time limit reached";
- a session whose app writes past its memory ends "finished: out of memory": on real Slurm when
  this host lets the cluster confine memory with cgroups (then the module's cluster is one of its
  own that does, as in test_slurm_end_reasons.py), and always on a recorded state: the Slurm
  module's parser applied to recorded ``scontrol`` output, written into the store as a finished
  row, shown by the page;
- Settings on a finished row opens the spawn form pre-filled with that session's hours; an edited
  hour count starts a new job whose row has the new hours.

Jobs run as the hub's own account (root here, ``allow_shared_account`` as in the demo), not through
``sudo -u``: the desktop and JupyterLab need the test virtualenv, whose interpreter lives under
/root, which no other account can enter. The node has a few CPUs (two here), so the steps share
them: the two-minute session and the desktop hold them, the blocker waits ahead of the queued
session (which therefore cannot start, nor be backfilled: its walltime ends after the desktop's),
and is cancelled before the later sessions need a CPU.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.browser import browser_available, browser_login, chromium, screenshot
from support.hub import HubProcess, hub_available, running_hub, timing
from support.requirements import require
from support.slurm_cluster import (
    SlurmCluster,
    ensure_user,
    memory_enforcement_available,
    run_as,
    slurm_available,
)
from test_apps_hub import keep_failure, vnc_available
from test_sessions_hub import edit_hours_and_start

from pw_spawner.schedulers.reasons import SLURM_REASONS
from pw_spawner.schedulers.slurm import parse_scontrol
from pw_spawner.scripts import job_name_for
from pw_spawner.sessions.journal import ended_in_words
from pw_spawner.sessions.store import SessionRecord, SessionStore

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

USER = "slurm-sessions"
#: The account whose job blocks the node (any account but the hub's will do).
BLOCKER_USER = "pwtestuser"
#: The two-minute session: slurmctld checks time limits every 30 s, kills after KillWait (5 s);
#: the hub polls every 5 s.
TIME_LIMIT_BUDGET_S = 210.0
RECORDED = Path(__file__).resolve().parent / "data" / "slurm" / "scontrol-o-show-job-out-of-memory.txt"
VENV = [{"slug": "venv", "display_name": "venv",
         "activate": f"source {Path(sys.prefix) / 'bin' / 'activate'}"}]
#: An app that listens, then (once its session runs) writes far more than its job's --mem.
HOG = ("import http.server as h, sys, threading, time; "
       "s = h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h.SimpleHTTPRequestHandler); "
       "threading.Thread(target=s.serve_forever, daemon=True).start(); "
       "time.sleep(25); x = b'x' * (768 << 20); time.sleep(120)")
APPS = [
    {"name": "web", "display_name": "Web page", "command": ["python3", "-m", "http.server", "--bind",
                                                             "127.0.0.1", "{port}"]},
    {"name": "memhog", "display_name": "Memory hog", "command": ["python3", "-c", HOG, "{port}"]},
]


def profile(slug: str, app: str, memory: str, **job: Any) -> dict[str, Any]:
    return {"slug": slug, "display_name": slug.capitalize(), "apps": [app], "environments": VENV,
            "job": {"partition": "debug", "cores": 1, "memory": memory, **job}}


PROFILES = [
    {**profile("lab", "jupyter", "1G", hours=2), "default": True,
     "overrides": {"hours": {"min": 1, "max": 4}}},
    profile("desktop", "vnc", "1G", hours=1),
    profile("minute", "web", "512M", walltime="00:02:00"),
    profile("hog", "memhog", "256M", hours=1),
]
EXTRA_CONFIG = f"""
c.PWSpawner.scheduler = "slurm"
# The app on loopback: the node is this host, and nothing else need reach it.
c.PWSpawner.bind_ip = "127.0.0.1"
c.PWSpawner.status_interval = 1
c.PWSpawner.stop_timeout = 30
c.PWSpawner.job_start_timeout = 90
# A minute before the two-minute session's end: Slurm's warning signal (--signal=B:USR1@60).
c.PWSpawner.walltime_warning_minutes = 1
# JupyterHub polls running servers this often (30 s by default): a job's end shows within seconds.
c.Spawner.poll_interval = 5
c.PWSpawner.app_definitions = {APPS!r}
c.PWSpawner.profile_list = {PROFILES!r}
"""


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A cluster that confines memory when this host allows it (the real out-of-memory test needs
    one), else the session's cluster."""
    ok, why = slurm_available()
    require("slurm", ok, why)
    if not memory_enforcement_available()[0]:
        yield request.getfixturevalue("slurm_cluster")
        return
    # Job ids of its own: the host's cgroup tree is shared with any other cluster that confines memory.
    with SlurmCluster(tmp_path_factory.mktemp("slurm-sessions"), memory_enforcement=True,
                      first_job_id=random.randint(100_000, 9_000_000)) as own:
        yield own


@pytest.fixture(scope="module")
def hub(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    for what, available in (("hub", hub_available), ("browser", browser_available), ("vnc", vnc_available)):
        require(what, *available())
    with running_hub(tmp_path_factory.mktemp("sessions-slurm-hub"), extra_config=EXTRA_CONFIG,
                     env=cluster.env) as hub:
        assert hub.api("POST", f"/users/{USER}").status in (201, 409)
        yield hub


@pytest.fixture(scope="module")
def minute(hub: HubProcess) -> float:
    """The two-minute session, asked for before anything else; when it was asked for."""
    asked = time.monotonic()
    resp = hub.api("POST", f"/users/{USER}/servers/minute", {"profile": "minute"})
    assert resp.status in (201, 202), resp.text
    return asked


@pytest.fixture(scope="module")
def token(hub: HubProcess) -> str:
    return hub.user_token(USER)


@pytest.fixture(scope="module")
def driver(hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = chromium(tmp_path_factory.mktemp("sessions-chromium"), window="1500,900")
    try:
        browser_login(driver, hub, USER)
        yield driver
    finally:
        driver.quit()


class Blocker:
    """A job of another account that asks for the whole node; cancelled by the fixture at the end."""

    def __init__(self, cluster: SlurmCluster):
        self.cluster = cluster
        # A time limit, as every job ahead of the queued session has: Slurm can then estimate when
        # that one starts (behind a job without one it shows a year ahead: no estimate).
        out = run_as(BLOCKER_USER, ["sbatch", "--parsable", "--exclusive", "--mem=64M", "--output=/dev/null",
                                    "--time=00:10:00", "--job-name=pw-sessions-blocker", "--wrap=sleep 600"],
                     env=cluster.env)
        self.job_id = out.stdout.strip().split(";")[0]
        assert out.returncode == 0 and self.job_id.isdigit(), out.stderr

    def cancel(self) -> None:
        self.cluster.run("scancel", self.job_id)


@pytest.fixture(scope="module")
def blocker(cluster: SlurmCluster) -> Iterator[Callable[[], Blocker]]:
    ensure_user(BLOCKER_USER)
    made: list[Blocker] = []

    def make() -> Blocker:
        made.append(Blocker(cluster))
        return made[-1]

    try:
        yield make
    finally:
        for job in made:
            job.cancel()


# ------------------------------------------------------------------------------------- helpers


def rows(hub: HubProcess, token: str) -> list[dict[str, Any]]:
    resp = hub.get("/hub/sessions/api/sessions?limit=50", token=token)
    assert resp.status == 200, resp.text
    return resp.json()["sessions"]


def wait_row(hub: HubProcess, token: str, predicate: Callable[[dict[str, Any]], bool],
             timeout: float = 60, what: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = rows(hub, token)
        for row in seen:
            if predicate(row):
                return row
        time.sleep(0.5)
    raise AssertionError(f"no row {what} within {timeout:g} s among {seen}\n{hub.log_tail(30)}")


def server_row(server: str, state: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["server_name"] == server and (state is None or r["state"] == state)


def squeue(cluster: SlurmCluster, *selector: str) -> list[str]:
    """``id|state|reason|node`` of the jobs the selector picks (finished ones too)."""
    out = cluster.run("squeue", "-h", "-t", "all", *selector, "-o", "%i|%T|%r|%N")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def page_cells(driver: Any, job_id: str, timeout: float = 30, state: str | None = None) -> list[str]:
    """The text of each cell of the page's row of ``job_id`` (read at once: the table is redrawn
    every few seconds), once the row is there (in ``state``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = ("const tr = document.querySelector(`tr[data-job-id='${arguments[0]}']`);"
              "if (!tr || (arguments[1] && tr.dataset.state !== arguments[1])) return null;"
              "return Array.from(tr.cells, td => td.textContent);")
    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(
        lambda d: d.execute_script(script, job_id, state))


def click_in_row(driver: Any, job_id: str, label: str) -> None:
    """Click a row's button; the row may be redrawn between finding and clicking it: try again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            driver.find_element(By.CSS_SELECTOR, f"tr[data-job-id='{job_id}']").find_element(
                By.XPATH, f".//button[text()='{label}']").click()
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError(f"the {label} button of job {job_id} kept being redrawn")


def open_sessions_page(driver: Any, hub: HubProcess) -> None:
    driver.get(f"{hub.url}/hub/sessions")


# ------------------------------------------------------------------------------------- tests


def test_queued_and_running_sessions(hub: HubProcess, cluster: SlurmCluster, minute: float, token: str,
                                     blocker: Callable[[], Blocker], driver: Any) -> None:
    """The page lists a session kept queued by a blocker, with Slurm's reason in words, beside a
    running desktop; Cancel on the queued row ends its job."""
    started = time.monotonic()
    resp = hub.api("POST", f"/users/{USER}/servers/desk", {"profile": "desktop"})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready(USER, "minute", timeout=90)
    hub.wait_ready(USER, "desk", timeout=120)
    timing("two sessions on real Slurm, submit to ready", time.monotonic() - started)
    # Both CPUs are taken now: the blocker waits for the whole node, ahead of the queued session.
    block = blocker()
    resp = hub.api("POST", f"/users/{USER}/servers/queued", {"profile": "lab", "hours": 2})
    assert resp.status == 202, resp.text
    expected = {f"queued: {SLURM_REASONS[r]}": r for r in ("Resources", "Priority")}

    def words(detail: str) -> str:
        """The reason's part of a queued row (Slurm may add an estimated start after it)."""
        return re.sub(r" \(estimated start [^)]*\)$", "", detail)

    queued = wait_row(hub, token, lambda r: r["server_name"] == "queued" and words(r["detail"]) in expected,
                      timeout=60, what="of the queued session with its reason")
    # The job squeue shows under the session's name is the row's, pending for that reason.
    [line] = squeue(cluster, "-n", job_name_for(USER, "queued"))
    job_id, state, reason, _node = line.split("|")
    assert (job_id, state) == (queued["job_id"], "PENDING"), line
    assert squeue(cluster, "-j", block.job_id)[0].split("|")[1] == "PENDING"
    assert expected.get(words(queued["detail"])) == reason, line
    print(f"real Slurm: the queued session's reason {reason!r}, row {queued['detail']!r}")
    # The backfill scheduler's estimate comes within its interval (30 s) and stays in the words.
    estimated = wait_row(hub, token, lambda r: r["job_id"] == job_id and "(estimated start " in r["detail"],
                         timeout=75, what="of the queued session with an estimated start")
    assert re.fullmatch(r"queued: .+ \(estimated start (\d\d:\d\d|\w{3} \d+ \w{3} \d\d:\d\d)\)",
                        estimated["detail"]), estimated["detail"]
    print(f"real Slurm: the queued session's row {estimated['detail']!r}")
    assert (queued["resource"], queued["hours"], queued["cores"], queued["app"]) == (None, 2, 1, "jupyter")

    desk = wait_row(hub, token, server_row("desk", "running"), what="of the running desktop")
    [desk_line] = squeue(cluster, "-j", desk["job_id"])
    node = desk_line.split("|")[3]
    assert desk_line.split("|")[1] == "RUNNING" and node == cluster.nodename, desk_line

    open_sessions_page(driver, hub)
    try:
        cells = page_cells(driver, queued["job_id"], state="queued")
        # ID, Application, Profile, Service host, Hours, Cores, Memory (GB), GPUs, State, Actions
        assert cells[:8] == [job_id, "JupyterLab", "lab", "hub host", "2", "1", "1", "0"], cells
        assert words(cells[8]) == words(queued["detail"]), cells
        assert "Cancel" in cells[9] and "Join" not in cells[9]
        cells = page_cells(driver, desk["job_id"], state="running")
        assert cells[:8] == [desk["job_id"], "Desktop (VNC)", "desktop", "hub host",
                             "1", "1", "1", "0"], cells
        assert re.fullmatch(rf"running on {re.escape(node)}, (59|60) min left", cells[8]), cells[8]
        assert "Join" in cells[9] and "Cancel" in cells[9]
        page_cells(driver, wait_row(hub, token, server_row("minute", "running"))["job_id"], state="running")
        screenshot(driver, "sessions-queued-running.png", for_docs=True)

        # Cancel, confirmed in the browser's own dialog.
        click_in_row(driver, job_id, "Cancel")
        alert = driver.switch_to.alert
        assert f"job {job_id}" in alert.text
        alert.accept()
        cells = page_cells(driver, job_id, timeout=60, state="finished")
    except Exception:
        keep_failure(driver, "sessions-queued")
        raise
    assert cells[8] == "finished: cancelled", cells
    deadline = time.monotonic() + 30
    while (left := squeue(cluster, "-j", job_id)) and "CANCELLED" not in left[0]:
        assert time.monotonic() < deadline, f"job {job_id} still in the queue after Cancel: {left}"
        time.sleep(0.5)
    hub.wait_gone(USER, "queued", timeout=30)
    # The later sessions need the CPU the two-minute session gives back.
    block.cancel()


def test_two_minute_walltime_warns_then_ends_time_limit_reached(
        hub: HubProcess, cluster: SlurmCluster, minute: float, token: str, driver: Any) -> None:
    row = wait_row(hub, token, server_row("minute", "finished"),
                   timeout=max(1.0, TIME_LIMIT_BUDGET_S - (time.monotonic() - minute)),
                   what="of the two-minute session, finished")
    took = time.monotonic() - minute
    print(f"real Slurm: the two-minute session ended {took:.0f} s after it was asked for: {row['detail']!r}")
    assert (row["detail"], row["end_reason"]) == ("finished: time limit reached", "time limit reached"), row
    assert row["hours"] == round(2 / 60, 4) and not row["active"]
    # Slurm's warning a minute before the end reached the job's shell, which logged it and ran on
    # to the time limit (its app undisturbed: the end is TIMEOUT, not the app's exit).
    log = (hub.job_dir(USER, "minute") / "job.out").read_text()
    assert "pw_spawner: the walltime ends in 1 minute\n" in log, log[-2000:]
    [line] = squeue(cluster, "-j", row["job_id"])
    assert line.split("|")[1:3] == ["TIMEOUT", "TimeLimit"], line
    open_sessions_page(driver, hub)
    try:
        cells = page_cells(driver, row["job_id"], state="finished")
    except Exception:
        keep_failure(driver, "sessions-time-limit")
        raise
    assert cells[1] == "Web page" and cells[2:5] == ["minute", "hub host", "0.0333"], cells
    assert cells[8] == "finished: time limit reached" and "Relaunch" in cells[9], cells
    screenshot(driver, "sessions-time-limit.png", for_docs=True)


def test_out_of_memory_on_real_slurm(hub: HubProcess, cluster: SlurmCluster, token: str, driver: Any) -> None:
    ok, why = memory_enforcement_available()
    if not ok:  # the recorded-state test below shows the same row from Slurm's own recorded words
        pytest.skip(f"this host cannot confine a Slurm job's memory ({why}); the recorded state is tested")
    assert cluster.memory_enforcement
    resp = hub.api("POST", f"/users/{USER}/servers/hog", {"profile": "hog"})
    assert resp.status in (201, 202), resp.text
    hub.wait_ready(USER, "hog", timeout=90)
    row = wait_row(hub, token, server_row("hog", "finished"), timeout=90, what="of the memory hog, finished")
    print(f"real Slurm: the memory hog's row {row['detail']!r}")
    [line] = squeue(cluster, "-j", row["job_id"])
    assert line.split("|")[1] == "OUT_OF_MEMORY", line
    assert (row["detail"], row["end_reason"]) == ("finished: out of memory", "out of memory"), row
    open_sessions_page(driver, hub)
    cells = page_cells(driver, row["job_id"], state="finished")
    assert cells[1] == "Memory hog" and cells[2] == "hog" and cells[6] == "0.25", cells
    assert cells[8] == "finished: out of memory", cells


def test_out_of_memory_on_a_recorded_state(hub: HubProcess, driver: Any) -> None:
    """Slurm's recorded words for a job its memory cgroup killed, through the Slurm module's parser
    and the journal's wording, as a finished row of the store: the page says "out of memory"."""
    info = parse_scontrol(RECORDED.read_text())
    assert info is not None and info.end_reason == "OUT_OF_MEMORY"
    words = ended_in_words("slurm", info)
    assert words == "out of memory"
    user = "recorded-oom"
    assert hub.api("POST", f"/users/{user}").status in (201, 409)
    now = datetime.now(timezone.utc)
    record = SessionRecord(
        user=user, server_name="", job_id=info.job_id, resource=None, scheduler="slurm", app="jupyter",
        profile="lab", hours=1, cores=1, memory_gb=0.0625, gpus=0, state="finished",
        detail=f"finished: {words}", submitted=now, started=now, ends=None, finished=now,
        end_reason=words, options={"profile": "lab"}, node=info.node)

    async def write() -> None:
        async with SessionStore(f"sqlite:///{hub.state_dir / 'pw_sessions.sqlite'}") as store:
            await store.save(record)

    asyncio.run(write())
    try:
        browser_login(driver, hub, user)
        open_sessions_page(driver, hub)
        cells = page_cells(driver, info.job_id, state="finished")
    finally:
        browser_login(driver, hub, USER)
    assert cells[0] == info.job_id and cells[8] == "finished: out of memory", cells


def test_relaunch_with_edited_hours(hub: HubProcess, cluster: SlurmCluster, token: str, driver: Any) -> None:
    """Settings on the cancelled session's finished row: the spawn form, its hours pre-filled with the
    session's 2; edited to 3 and submitted, a new job on Slurm whose row has 3 hours."""

    old = wait_row(hub, token, server_row("queued", "finished"), timeout=10, what="of the cancelled session")
    open_sessions_page(driver, hub)
    try:
        page_cells(driver, old["job_id"], state="finished")
        click_in_row(driver, old["job_id"], "Settings")
        edit_hours_and_start(driver, f"/hub/spawn/{USER}/queued", "lab", "2", "3")
        hub.wait_ready(USER, "queued", timeout=120)
    except Exception:
        keep_failure(driver, "sessions-relaunch")
        raise
    new = wait_row(hub, token, lambda r: r["server_name"] == "queued" and r["job_id"] != old["job_id"]
                   and r["state"] == "running", timeout=30, what="of the relaunched session")
    assert (new["hours"], new["profile"], new["app"]) == (3, "lab", "jupyter")
    [line] = squeue(cluster, "-j", new["job_id"])
    assert line.split("|")[1] == "RUNNING", line
    assert int(new["job_id"]) > int(old["job_id"])
    open_sessions_page(driver, hub)
    cells = page_cells(driver, new["job_id"], state="running")
    assert cells[1:5] == ["JupyterLab", "lab", "hub host", "3"] and cells[8].startswith("running on "), cells
    # The old row is still there, as it ended.
    assert page_cells(driver, old["job_id"], state="finished")[8] == "finished: cancelled"

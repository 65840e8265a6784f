"""PWSpawner's lifecycle on the local target: real processes, the fake app as the server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request

import pytest

from pw_spawner.schedulers import JobRef
from pw_spawner.schedulers.local import LocalScheduler
from pw_spawner.status import JobState


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def pgid_alive(job_id: str) -> bool:
    """Whether any live (not zombie) process is in the job's process group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == job_id and fields[0] != "Z":
            return True
    return False


async def test_start_poll_stop(spawner_factory):
    spawner = spawner_factory(user_options={"hours": 2})
    url = await spawner.start()
    assert url.startswith("http://127.0.0.1:")
    record = fetch(url)
    assert record["user"] == "alice" and record["has_token"] is True
    assert await spawner.poll() is None
    job_id = spawner.job.job_id
    assert pgid_alive(job_id)
    messages = [e["message"] for e in spawner._events]
    assert messages[:2] == ["Preparing Small", "Submitting a job for 1c, 512M, 02:00:00"]
    assert f"Submitted job {job_id}" in messages
    assert messages[-1].startswith("The app is listening on 127.0.0.1:")

    await spawner.stop()
    assert spawner.job is None and not pgid_alive(job_id)
    assert await spawner.poll() == 0
    await spawner.stop()  # idempotent


async def test_user_env_reaches_the_app(spawner_factory):
    spawner = spawner_factory(user_options={"env": {"GREETING": "it's $(not run)"}})
    # The app reports variables named in PW_FAKE_APP_SHOW; a user may not set PW_* so the hub does.
    spawner.environment = {"PW_FAKE_APP_SHOW": "GREETING"}
    url = await spawner.start()
    assert fetch(url)["env"] == {"GREETING": "it's $(not run)"}


async def test_progress_replays_for_every_listener(spawner_factory):
    spawner = spawner_factory()

    async def listen():
        return [event["message"] async for event in spawner.progress()]

    early = asyncio.ensure_future(listen())
    await asyncio.sleep(0)
    await spawner.start()
    late = await listen()
    assert await early == late and len(late) >= 4


async def test_bad_options_refused_before_submitting(spawner_factory, tmp_path):
    spawner = spawner_factory(user_options={"hours": 5})
    with pytest.raises(Exception) as info:
        await spawner.start()
    assert info.value.jupyterhub_message == "hours: 5 is above the maximum of this profile"
    assert info.value.status_code == 400
    assert spawner.job is None and not (tmp_path / "jobs").exists()


async def test_app_failure_shown_and_job_cancelled(spawner_factory):
    spawner = spawner_factory(cmd=[*spawner_factory().cmd, "--fail-at-start"])
    with pytest.raises(Exception) as info:
        await spawner.start()
    message = info.value.jupyterhub_message
    assert "exited with status 2 before it listened" in message
    assert spawner.job is None


async def test_missing_command_message(spawner_factory):
    spawner = spawner_factory(cmd=["no-such-jupyterhub-singleuser"])
    with pytest.raises(Exception) as info:
        await spawner.start()
    assert "no-such-jupyterhub-singleuser was not found in this environment" in info.value.jupyterhub_message


async def test_poll_reports_app_exit(spawner_factory):
    spawner = spawner_factory(cmd=[*spawner_factory().cmd, "--fail-after-start"])
    await spawner.start()
    for _ in range(50):
        status = await spawner.poll()
        if status is not None:
            break
        await asyncio.sleep(0.2)
    assert status == 3


async def test_cancel_during_start_cancels_the_job(spawner_factory):
    # An app that never listens, so start() waits until it is cancelled, as the hub's Stop button
    # does. (Not `sleep 600`: it exits at once on the --ip/--port arguments the script adds.)
    spawner = spawner_factory(cmd=[sys.executable, "-c", "import time; time.sleep(600)"])
    task = asyncio.ensure_future(spawner.start())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if spawner.job is not None:
            break
    job_id = spawner.job.job_id
    assert pgid_alive(job_id)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spawner.job is None
    for _ in range(50):
        if not pgid_alive(job_id):
            break
        await asyncio.sleep(0.1)
    assert not pgid_alive(job_id)


async def test_state_survives_a_hub_restart(spawner_factory):
    first = spawner_factory()
    url = await first.start()
    state = first.get_state()
    assert state["pw_spawner"]["version"] == 1

    second = spawner_factory()
    second.load_state(state)
    assert second.job == first.job
    assert await second.poll() is None
    assert fetch(url)["user"] == "alice"
    await second.stop()
    assert await first.poll() == 0 or first.job is not None
    first.job = None
    second.clear_state()
    assert second.get_state() == {}


async def test_named_servers_do_not_share_jobs(spawner_factory):
    a = spawner_factory()
    b = spawner_factory(server_name="gpu-work")
    url_a, url_b = await asyncio.gather(a.start(), b.start())
    assert a.job_name.startswith("pw-alice-") and b.job_name.startswith("pw-alice-gpu-work-")
    assert a.job.job_dir != b.job.job_dir and url_a != url_b
    await a.stop()
    assert await b.poll() is None


def test_job_names_differ_for_every_user_and_server(spawner_factory):
    """alice's server "x" and user alice-x's default server once had one name (and job dir)."""
    pairs = [("alice", "x"), ("alice-x", ""), ("alice", ""), ("alice", "x-"), ("alice-", "x")]
    names = {spawner_factory(username=u, server_name=s).job_name for u, s in pairs}
    assert len(names) == len(pairs)
    assert all(len(name) <= 64 for name in names)


async def test_leftover_job_is_cancelled_on_next_start(spawner_factory):
    lost = spawner_factory()
    await lost.start()
    orphan = lost.job.job_id
    lost.job = None  # the hub died before saving state
    fresh = spawner_factory()
    await fresh.start()
    assert fresh.job.job_id != orphan
    for _ in range(50):
        if not pgid_alive(orphan):
            break
        await asyncio.sleep(0.1)
    assert not pgid_alive(orphan)


async def test_polls_of_many_servers_make_one_query(spawner_factory):
    spawners = [spawner_factory(server_name=f"s{i}") for i in range(4)]
    await asyncio.gather(*(s.start() for s in spawners))
    cache = await spawners[0].status_cache()
    assert all([await s.status_cache() is cache for s in spawners])
    await asyncio.sleep(cache.refresh_interval)  # every answer is now too old for poll()
    before = cache.queries
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * 4
    assert cache.queries == before + 1


async def test_local_scheduler_states(tmp_path):
    from pw_spawner.remote.executor import LocalExecutor

    scheduler, executor = LocalScheduler(), LocalExecutor()
    job_dir = str(tmp_path / "j")
    job_id = await scheduler.submit(executor, "exit 7\n", name="t", job_dir=job_dir)
    ref = JobRef(job_id, "t", job_dir)
    for _ in range(50):
        info = (await scheduler.query(executor, [ref]))[job_id]
        if info.state.finished:
            break
        await asyncio.sleep(0.1)
    assert info.state is JobState.FAILED and info.exit_code == 7
    job_id = await scheduler.submit(executor, "sleep 60\n", name="t", job_dir=job_dir)
    ref = JobRef(job_id, "t", job_dir)
    assert (await scheduler.query(executor, [ref]))[job_id].state is JobState.RUNNING
    assert await scheduler.find(executor, "t", job_dir) == [job_id]
    await scheduler.cancel(executor, ref)
    assert (await scheduler.query(executor, [ref]))[job_id].state is JobState.CANCELLED


async def test_typed_form_is_forgotten_once_a_start_succeeds(spawner_factory):
    spawner = spawner_factory()
    spawner.user_options = spawner.options_from_form({"profile": ["small"], "hours--small": ["2"],
                                                      "env": ["A=1"]})
    assert spawner._last_form["hours"] == "2"
    await spawner.start()
    assert spawner._last_form is None


async def test_servers_whose_names_sanitize_alike_keep_their_jobs(spawner_factory):
    # "a b" and "a_b" both became pw-alice-a_b; the second start took the first's job for its
    # own leftover (same name, same job directory) and cancelled it.
    first = spawner_factory(server_name="a b")
    second = spawner_factory(server_name="a_b")
    assert first.job_name != second.job_name
    await first.start()
    await second.start()
    assert await first.poll() is None and await second.poll() is None


async def test_progress_messages_say_each_thing_once(spawner_factory):
    # A display name that carries its own summary, as the example profiles' names do.
    profile = {"slug": "cpu", "display_name": "CPU short (1c, 1h)", "job": {"walltime": "01:00:00"},
               "environments": [{"slug": "plain"}]}
    spawner = spawner_factory(profile_list=[profile])
    await spawner.start()
    messages = [e["message"] for e in spawner._events]
    assert messages[0] == "Preparing CPU short (1c, 1h)"
    assert sum("01:00:00" in m for m in messages) == 1
    # The job's own note ("Starting JupyterLab"), not "Waiting for the app to start: starting ...".
    assert not any(m.startswith("Waiting for the app to start:") for m in messages)


async def test_a_stop_while_start_reads_service_json_ends_the_start_with_a_message(spawner_factory,
                                                                                    monkeypatch):
    """stop() may clear the job while start()'s read of service.json is under way: the start then
    ends with the page's "stopped" message, not an internal error."""
    from pw_spawner.remote.executor import LocalExecutor

    reading, release = asyncio.Event(), asyncio.Event()
    original = LocalExecutor.read_file

    async def held_once(self, path, **kwargs):
        # The first read that finds the job's record returns it only after the stop (as a slow
        # read from a login node would).
        text = await original(self, path, **kwargs)
        if path.endswith("/service.json") and text and not reading.is_set():
            reading.set()
            await release.wait()
        return text

    monkeypatch.setattr(LocalExecutor, "read_file", held_once)
    spawner = spawner_factory()
    start = asyncio.ensure_future(spawner.start())
    try:
        await asyncio.wait_for(reading.wait(), 30)
        await asyncio.wait_for(spawner.stop(), 60)
        assert spawner.job is None
        release.set()
        with pytest.raises(Exception) as raised:
            await asyncio.wait_for(start, 30)
        assert "stopped before it started" in getattr(raised.value, "jupyterhub_message", ""), raised.value
    finally:
        release.set()
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)

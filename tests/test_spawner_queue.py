"""What the spawner says while its job waits in the queue: the scheduler's reason, its meaning in
words, and the estimated start, on the spawn-pending page (progress events) and in the session's row,
with the mocked Slurm and PBS Pro (which estimate a pending job's start as the end of its set wait)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pw_spawner.sessions.journal import shared_store
from pw_spawner.testing.plugin import FakeScheduler

PROFILES = [{"slug": "small", "display_name": "Small", "default": True,
             "job": {"cores": 1, "memory": "512M", "walltime": "00:30:00"}}]


#: Per scheduler: its fake, and how its reason reads in the progress message.
SAID = {"slurm": ("fake_slurm", "(Resources)"),
        "pbs": ("fake_pbs", "(Not Running: Insufficient amount of resource)")}


@pytest.mark.parametrize("kind", sorted(SAID))
async def test_a_queued_job_shows_its_reason_and_estimated_start(kind: str, request: pytest.FixtureRequest,
                                                                 spawner_factory, tmp_path) -> None:
    fake: FakeScheduler = request.getfixturevalue(SAID[kind][0])
    fake.set_knobs(PW_FAKE_PENDING_SECONDS=3)
    url = f"sqlite:///{tmp_path / 'sessions.sqlite'}"
    spawner = spawner_factory(scheduler=kind, profile_list=PROFILES, bind_ip="127.0.0.1",
                              connect_host="127.0.0.1", sessions_db_url=url)
    start = asyncio.ensure_future(spawner.start())
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not start.done():
            if any("estimated start" in e["message"] for e in spawner._events):
                break
            await asyncio.sleep(0.1)
        queued = [e["message"] for e in spawner._events if "is queued" in e["message"]]
        job_id = spawner.job.job_id
        assert queued, spawner._events
        assert queued[0].startswith(f"Job {job_id} is queued {SAID[kind][1]}: waiting for free resources, "
                                    "estimated start ")
        rows, _ = await (await shared_store(url)).list(user=spawner.user.name)
        assert rows[0].detail.startswith("queued: waiting for free resources (estimated start ")
        await start
    finally:
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)


def test_the_follow_loop_looks_often_in_a_starts_first_seconds_then_less(monkeypatch) -> None:
    """Pauses: short at first, at most FOLLOW_EARLY_PAUSE for FOLLOW_EARLY_SECONDS (a job with room
    starts within seconds, and is seen within a quarter second), then growing to status_interval."""
    from pw_spawner import spawner as spawner_module
    from pw_spawner.testing.spawners import make_spawner

    now = [1000.0]
    monkeypatch.setattr(spawner_module.time, "monotonic", lambda: now[0])
    delays = make_spawner(status_interval=5.0)._follow_delays()
    early = []
    while now[0] < 1000.0 + spawner_module.FOLLOW_EARLY_SECONDS:
        early.append(next(delays))
        now[0] += early[-1]
    assert early[:3] == pytest.approx([0.05, 0.075, 0.1125])
    assert max(early) == spawner_module.FOLLOW_EARLY_PAUSE == early[-1]
    later = [next(delays) for _ in range(8)]
    assert later == sorted(later) and later[0] > spawner_module.FOLLOW_EARLY_PAUSE and later[-1] == 5.0
    # A short status_interval is never exceeded, early or late.
    now[0] = 1000.0
    brisk = make_spawner(status_interval=0.1)._follow_delays()
    assert max(next(brisk) for _ in range(50)) == 0.1

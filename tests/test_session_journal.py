"""A session's journal (what the spawner writes) and the rows of the sessions page, on a SQLite store."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from pw_spawner.options import validate_options
from pw_spawner.profiles import build_profiles
from pw_spawner.schedulers.base import JobInfo
from pw_spawner.sessions.journal import SessionJournal, clock_words, ended_in_words, shared_store
from pw_spawner.sessions.page import row_json, time_left
from pw_spawner.status import JobState

PROFILES = build_profiles([{"slug": "p", "job": {"cores": 4, "memory": "6G", "hours": 2, "gpus": 1},
                            "overrides": {"hours": {"max": 8}}}])
WEEK = timedelta(days=7)


async def test_a_session_from_submission_to_its_end(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    selection = validate_options(PROFILES, {"hours": 3})
    journal = SessionJournal.submitted(url, WEEK, user="alice", server_name="desk", job_id="17",
                                       scheduler="slurm", selection=selection, options={"hours": 3})
    await journal.queued("waiting for free resources")
    store = await shared_store(url, WEEK)
    row = await store.get("alice", "desk", "17")
    assert row is not None and (row.state, row.detail) == ("queued", "queued: waiting for free resources")
    assert (row.hours, row.cores, row.memory_gb, row.gpus, row.options) == (3, 4, 6, 1, {"hours": 3})
    await journal.starting("node12")
    await journal.running("node12")
    row = await store.get("alice", "desk", "17")
    assert row is not None and row.state == "running" and row.ends == row.started + timedelta(hours=3)
    await journal.finished("time limit reached")
    await journal.finished("cancelled")  # the first end is the one that counts
    reopened = await SessionJournal.reopen(url, WEEK, user="alice", server_name="desk", job_id="17")
    assert reopened is not None and reopened.record.end_reason == "time limit reached"
    assert reopened.record.state == "finished" and reopened.record.finished is not None


async def test_a_store_that_cannot_be_written_fails_no_spawn(tmp_path, caplog):
    url = "sqlite:////proc/pw-no-such-dir/s.sqlite"  # nothing can be made there
    selection = validate_options(PROFILES, {})
    journal = SessionJournal.submitted(url, WEEK, user="bob", server_name="", job_id="1", scheduler="local",
                                       selection=selection, options={})
    with caplog.at_level(logging.WARNING):
        await journal.queued()
    assert "could not save session bob/ job 1" in caplog.text


def test_end_words_with_and_without_a_schedulers_reason():
    assert ended_in_words("slurm", JobInfo("1", JobState.CANCELLED)) == "cancelled"
    assert ended_in_words("slurm", JobInfo("1", JobState.FAILED, exit_code=3)) == "failed: exit code 3"
    assert ended_in_words("local", JobInfo("1", JobState.COMPLETED, exit_code=0)) == "completed"
    assert ended_in_words("slurm", JobInfo("1", JobState.FAILED, "OUT_OF_MEMORY",
                                           end_reason="OUT_OF_MEMORY")) == "out of memory"
    assert ended_in_words("slurm", JobInfo("1", JobState.FAILED, "TIMEOUT",
                                           end_reason="TIMEOUT")) == "time limit reached"


def test_time_left_and_the_row_of_a_running_session(tmp_path):
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert time_left(now + timedelta(hours=2, minutes=14, seconds=30), now) == "2 h 14 min left"
    assert time_left(now + timedelta(minutes=5), now) == "5 min left"
    assert time_left(now + timedelta(seconds=20), now) == "less than a minute left"
    selection = validate_options(PROFILES, {})
    record = SessionJournal.submitted("sqlite://", WEEK, user="a b", server_name="x/y", job_id="9",
                                      scheduler="slurm", selection=selection, options={}).record
    from dataclasses import replace

    record = replace(record, state="running", detail="running on n1", started=now - timedelta(hours=1),
                     ends=now + timedelta(minutes=8))
    row = row_json(record, now=now, active=True, base_url="/hub/", user_prefix="/user/a%20b/")
    assert row["detail"] == "running on n1, 8 min left" and row["ending_soon"]
    assert row["url"] == "/user/a%20b/x/y/" and row["spawn_url"] == "/hub/spawn/a%20b/x/y"
    assert row["ends"] == "2026-12-02T12:08:00+00:00" and row["end_reason"] is None
    # The warning's minutes are the spawner's: 5 of them, and 8 minutes left, is not "ending soon".
    assert not row_json(record, now=now, active=True, base_url="/hub/", user_prefix="/",
                        warn_before=timedelta(minutes=5))["ending_soon"]
    assert not row_json(record, now=now, active=True, base_url="/hub/", user_prefix="/",
                        warn_before=timedelta(0))["ending_soon"]


async def test_a_queued_session_says_when_it_may_start(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    journal = SessionJournal.submitted(url, WEEK, user="erin", server_name="", job_id="5", scheduler="slurm",
                                       selection=validate_options(PROFILES, {}), options={})
    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    await journal.queued("waiting for free resources", soon)
    row = await (await shared_store(url, WEEK)).get("erin", "", "5")
    assert row is not None and row.detail == (
        f"queued: waiting for free resources (estimated start {clock_words(soon)})")


def test_clock_words_today_and_another_day():
    now = datetime(2026, 12, 2, 9, 0).astimezone()
    assert clock_words(now.replace(hour=14, minute=5), now) == "14:05"
    assert clock_words(now.replace(day=3, hour=8, minute=30), now) == "Thu 3 Dec 08:30"
    next_year = now.replace(year=2028, month=1, day=4, hour=14, minute=5)
    assert clock_words(next_year, now) == "Tue 4 Jan 2028 14:05"

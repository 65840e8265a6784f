"""The session store (pw_spawner/sessions/store.py), each test against an SQLite file and against a
real PostgreSQL server (tests/support/postgres.py: a private cluster on 127.0.0.1 for the session,
a fresh database per test).

The PostgreSQL half is marked ``postgres``; it is skipped when PostgreSQL or psycopg is missing,
unless ``CI``, ``PW_REQUIRE_ALL=1`` or ``PW_REQUIRE_POSTGRES=1`` is set: then it fails.

What is checked: save/get and the upsert keeping the row (and its place in the list); the list's
order (newest first, unsubmitted first, ties by row id), paging and per-user filtering; purge of old
finished rows only; the caps on strings (PostgreSQL would refuse a detail over its column's 500
characters, SQLite would keep it whole) and what cannot be stored (NUL, unpaired surrogates, long
keys, options that are not plain JSON); options round-tripped as JSON text; times returned
timezone-aware in UTC; rows surviving a close and a reopen; concurrent saves and concurrent opens
of a new database; the event loop running on while the database makes a save wait; a schema
version newer than the code refused; an upgrade step run exactly once, and a failing one leaving
the database as it was. Then the test server itself: loopback only, a password, its own account,
and gone after a clean stop and after its test process was killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pwd
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.postgres import SUPERUSER, PostgresServer, postgres_available
from support.processes import pid_alive
from support.requirements import require

from pw_spawner.sessions import store as store_module
from pw_spawner.sessions.store import (
    NAME_MAX,
    OPTIONS_MAX_CHARS,
    OPTIONS_MAX_DEPTH,
    PAGE_MAX,
    SCHEMA_TABLE,
    SESSIONS_TABLE,
    TEXT_MAX,
    UPGRADES,
    SchemaVersionError,
    SessionRecord,
    SessionStore,
    default_url,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One private PostgreSQL server on 127.0.0.1 for the whole session, stopped at its end."""
    ok, why = postgres_available()
    require("postgres", ok, why)
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: an SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SessionStore]:
    s = SessionStore(db_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@contextmanager
def raw(db_url: str) -> Iterator[sa.Connection]:
    """A plain SQLAlchemy connection to the store's database, for looking behind the store."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def schema_versions(db_url: str) -> list[int]:
    with raw(db_url) as conn:
        return [r[0] for r in conn.execute(sa.text(f"SELECT version FROM {SCHEMA_TABLE}"))]


def columns(db_url: str) -> set[str]:
    with raw(db_url) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(SESSIONS_TABLE)}


def record(job_id: str = "1", user: str = "alice", **changes: Any) -> SessionRecord:
    base = SessionRecord(
        user=user, server_name="", job_id=job_id, resource="cluster-a", scheduler="slurm",
        app="jupyterlab", profile="small", hours=2.0, cores=4, memory_gb=8.0, gpus=0,
        state="queued", detail="queued: waiting for free resources", submitted=T0, started=None,
        ends=None, finished=None, end_reason=None, options={"profile": "small", "hours": 2},
    )
    return dataclasses.replace(base, **changes)


def keys(records: list[SessionRecord]) -> list[tuple[str, str]]:
    return [(r.user, r.job_id) for r in records]


# -- save, get, list ---------------------------------------------------------------------------------


async def test_save_then_get_returns_the_same_record(store: SessionStore) -> None:
    saved = record("17", server_name="gpu", node="node-3", gpus=1, memory_gb=None, resource=None)
    await store.save(saved)
    assert await store.get("alice", "gpu", "17") == saved
    assert await store.get("alice", "", "17") is None  # another server name
    assert await store.get("alice", "gpu", "18") is None
    assert await store.get("bob", "gpu", "17") is None


async def test_saving_the_same_key_again_updates_its_row(store: SessionStore, db_url: str) -> None:
    await store.save(record("1"))
    await store.save(record("2", submitted=T0 + timedelta(minutes=1)))
    with raw(db_url) as conn:
        ids_before = dict(conn.execute(sa.text(f"SELECT job_id, id FROM {SESSIONS_TABLE}")).all())
    running = record(
        "1", state="running", detail="running on node-7", node="node-7",
        started=T0 + timedelta(minutes=5), ends=T0 + timedelta(hours=2, minutes=5),
    )
    await store.save(running)
    assert await store.get("alice", "", "1") == running
    page, total = await store.list()
    assert total == 2
    assert keys(page) == [("alice", "2"), ("alice", "1")]
    with raw(db_url) as conn:
        ids_after = dict(conn.execute(sa.text(f"SELECT job_id, id FROM {SESSIONS_TABLE}")).all())
    assert ids_after == ids_before  # updated in place, not deleted and inserted again

    finished = dataclasses.replace(
        running, state="finished", detail="finished", finished=T0 + timedelta(hours=1),
        end_reason="stopped by the user",
    )
    await store.save(finished)
    assert await store.get("alice", "", "1") == finished


async def test_list_is_newest_first_in_pages(store: SessionStore) -> None:
    made = [record(f"a{i}", "alice", submitted=T0 + timedelta(minutes=i)) for i in range(15)]
    made += [record(f"b{i}", "bob", submitted=T0 + timedelta(minutes=i, seconds=30)) for i in range(10)]
    for r in made:
        await store.save(r)
    expected = sorted(made, key=lambda r: r.submitted or T0, reverse=True)
    seen: list[SessionRecord] = []
    for offset in (0, 10, 20):
        page, total = await store.list(limit=10, offset=offset)
        assert total == 25
        assert len(page) == (10 if offset < 20 else 5)
        seen += page
    assert seen == expected
    assert await store.list(limit=0) == ([], 25)
    assert await store.list(offset=25) == ([], 25)
    page, _ = await store.list(limit=10_000)
    assert len(page) == 25
    with pytest.raises(ValueError):
        await store.list(limit=-1)
    with pytest.raises(ValueError):
        await store.list(offset=-1)


async def test_a_page_is_at_most_page_max_long(store: SessionStore) -> None:
    await asyncio.gather(*(store.save(record(str(i), submitted=T0 + timedelta(seconds=i)))
                           for i in range(PAGE_MAX + 5)))
    page, total = await store.list(limit=PAGE_MAX + 5)
    assert total == PAGE_MAX + 5
    assert len(page) == PAGE_MAX


async def test_list_of_one_user(store: SessionStore) -> None:
    for i in range(6):
        await store.save(record(f"a{i}", "alice", submitted=T0 + timedelta(minutes=2 * i)))
        await store.save(record(f"b{i}", "bob", submitted=T0 + timedelta(minutes=2 * i + 1)))
    page, total = await store.list(user="alice", limit=4)
    assert total == 6
    assert keys(page) == [("alice", f"a{i}") for i in (5, 4, 3, 2)]
    page, total = await store.list(user="bob", limit=4, offset=4)
    assert total == 6
    assert keys(page) == [("bob", "b1"), ("bob", "b0")]
    assert await store.list(user="carol") == ([], 0)
    assert await store.list(user="x" * (NAME_MAX + 1)) == ([], 0)
    _, everyone = await store.list()
    assert everyone == 12


async def test_list_puts_unsubmitted_first_and_breaks_ties_by_row(store: SessionStore) -> None:
    for job in ("first", "second", "third"):
        await store.save(record(job, submitted=T0))
    await store.save(record("older", submitted=T0 - timedelta(days=1)))
    await store.save(record("preparing", submitted=None))
    page, _ = await store.list()
    order = ["preparing", "third", "second", "first", "older"]
    assert [r.job_id for r in page] == order
    await store.save(record("first", submitted=T0, state="running"))  # an update keeps its place
    page, _ = await store.list()
    assert [r.job_id for r in page] == order


# -- purge -----------------------------------------------------------------------------------------


async def test_purge_deletes_old_finished_sessions_only(store: SessionStore) -> None:
    now = T0 + timedelta(days=30)
    old = now - timedelta(days=8)
    recent = now - timedelta(days=6)
    await store.save(record("old-finished", state="finished", submitted=old, finished=old,
                            end_reason="walltime reached"))
    await store.save(record("recent-finished", state="finished", submitted=recent, finished=recent,
                            end_reason="stopped"))
    await store.save(record("old-running", state="running", submitted=T0, started=T0))
    await store.save(record("old-queued", state="queued", submitted=T0))
    assert await store.purge(now) == 1
    page, total = await store.list()
    assert sorted(r.job_id for r in page) == ["old-queued", "old-running", "recent-finished"]
    assert total == 3
    assert await store.purge(now) == 0
    assert await store.purge(now + timedelta(days=2)) == 1  # recent-finished is 8 days old then
    assert sorted(r.job_id for r in (await store.list())[0]) == ["old-queued", "old-running"]


async def test_purge_by_the_clock_and_by_the_last_write(store: SessionStore) -> None:
    real_now = datetime.now(timezone.utc)
    await store.save(record("long-ago", state="finished", finished=real_now - timedelta(days=7, hours=1)))
    await store.save(record("yesterday", state="finished", finished=real_now - timedelta(days=1)))
    await store.save(record("no-finish-time", state="finished", finished=None))
    assert await store.purge() == 1  # now: the current time
    assert await store.get("alice", "", "long-ago") is None
    # Finished without a finish time: by when it was written (just now).
    assert await store.purge(real_now + timedelta(days=6, minutes=1)) == 1
    assert await store.get("alice", "", "yesterday") is None
    assert await store.get("alice", "", "no-finish-time") is not None
    assert await store.purge(real_now + timedelta(days=7, minutes=1)) == 1
    assert (await store.list())[1] == 0
    with pytest.raises(ValueError):
        await store.purge(datetime(2026, 1, 1))  # naive


async def test_keep_finished_is_configurable(db_url: str) -> None:
    async with SessionStore(db_url, keep_finished=timedelta(hours=1)) as s:
        now = T0 + timedelta(days=1)
        await s.save(record("2h", state="finished", finished=now - timedelta(hours=2)))
        await s.save(record("30min", state="finished", finished=now - timedelta(minutes=30)))
        assert await s.purge(now) == 1
        assert [r.job_id for r in (await s.list())[0]] == ["30min"]
    with pytest.raises(ValueError):
        SessionStore(db_url, keep_finished=timedelta(seconds=-1))


# -- what comes in -----------------------------------------------------------------------------------


async def test_long_strings_are_capped(store: SessionStore) -> None:
    long = record(
        "1", detail="d" * 10_000, end_reason="e" * 10_000, state="finished", finished=T0,
        app="a" * 1000, profile="p" * 1000, scheduler="s" * 1000, resource="r" * 1000, node="n" * 1000,
    )
    await store.save(long)
    got = await store.get("alice", "", "1")
    assert got is not None
    assert got.detail == "d" * TEXT_MAX
    assert got.end_reason == "e" * TEXT_MAX
    for name in ("app", "profile", "scheduler", "resource", "node"):
        assert getattr(got, name) == getattr(long, name)[:NAME_MAX], name


async def test_a_key_that_would_be_cut_is_refused(store: SessionStore) -> None:
    for changes in ({"job_id": "9" * (NAME_MAX + 1)}, {"user": "u" * (NAME_MAX + 1)},
                    {"server_name": "s" * (NAME_MAX + 1)}):
        with pytest.raises(ValueError, match="at most 255"):
            await store.save(record(**changes))
    assert await store.list() == ([], 0)
    await store.save(record("9" * NAME_MAX, user="u" * NAME_MAX))  # exactly the limit is fine
    assert await store.get("u" * NAME_MAX, "", "9" * NAME_MAX) is not None
    assert await store.get("alice", "", "9" * (NAME_MAX + 1)) is None


async def test_nul_and_unpaired_surrogates_are_replaced(store: SessionStore) -> None:
    # PostgreSQL refuses NUL in text; UTF-8 (both drivers) cannot encode a lone surrogate.
    await store.save(record("1", detail="a\x00b\ud800c", options={"k\x00": "v\udfff", "ok": "ü"}))
    got = await store.get("alice", "", "1")
    assert got is not None
    assert got.detail == "a\ufffdb?c"
    assert got.options == {"k\ufffd": "v?", "ok": "ü"}


async def test_records_that_cannot_be_stored_are_refused(store: SessionStore) -> None:
    bad: list[dict[str, Any]] = [
        {"state": "paused"},
        {"submitted": datetime(2026, 3, 1, 12, 0)},  # naive
        {"hours": float("nan")},
        {"hours": -1.0},
        {"cores": 2**40},
        {"cores": 1.5},
        {"gpus": -1},
        {"memory_gb": float("inf")},
        {"detail": None},
        {"scheduler": 3},
    ]
    for changes in bad:
        with pytest.raises((ValueError, TypeError)):
            await store.save(record(**changes))
    assert await store.list() == ([], 0)


async def test_options_round_trip_as_json(store: SessionStore, db_url: str) -> None:
    options = {
        "profile": "gpu-large", "hours": 12, "cores": 8, "memory": 64.5, "gpus": True, "note": None,
        "modules": ["cuda/12.2", "python/3.11"], "environment": {"MODE": "fast", "empty": {}},
        "text": "Grüße, 日本語, 😀 \"quoted\" \\ back", "big": 2**53, "small": 1e-300,
        "pair": ("a", 1),
    }
    await store.save(record("1", options=options))
    got = await store.get("alice", "", "1")
    assert got is not None
    expected = {**options, "pair": ["a", 1]}
    assert got.options == expected
    assert isinstance(got.options["hours"], int) and isinstance(got.options["memory"], float)
    with raw(db_url) as conn:
        text = conn.execute(sa.text(f"SELECT options FROM {SESSIONS_TABLE}")).scalar_one()
    assert json.loads(text) == expected  # JSON text in the database, readable by anyone


async def test_options_that_are_not_plain_json_are_refused(store: SessionStore) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(OPTIONS_MAX_DEPTH + 1):
        node["x"] = {}
        node = node["x"]
    cyclic: dict[str, Any] = {}
    cyclic["me"] = cyclic
    for options in ({"s": {1, 2}}, {"f": float("nan")}, {"o": object()}, {1: "int key"}, deep, cyclic,
                    {"big": "x" * (OPTIONS_MAX_CHARS + 1)}, {"many": list(range(20_000))}):
        with pytest.raises(ValueError):
            await store.save(record(options=options))
    with pytest.raises(TypeError):
        await store.save(record(options=["not", "a", "mapping"]))  # type: ignore[arg-type]
    assert await store.list() == ([], 0)


async def test_times_are_timezone_aware_utc(store: SessionStore, db_url: str) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    pacific = timezone(timedelta(hours=-7))
    submitted = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=india)
    started = datetime(2026, 3, 1, 0, 1, 2, 999999, tzinfo=pacific)
    ends = started + timedelta(hours=3)
    await store.save(record("1", submitted=submitted, started=started, ends=ends, state="running"))
    got = await store.get("alice", "", "1")
    assert got is not None
    for name, want in (("submitted", submitted), ("started", started), ("ends", ends)):
        value = getattr(got, name)
        assert value == want, name  # the same instant, to the microsecond
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), (name, value)
    assert got.submitted is not None and got.submitted.hour == 6 and got.submitted.minute == 30
    assert got.finished is None
    with raw(db_url) as conn:
        stored = conn.execute(sa.text(f"SELECT submitted FROM {SESSIONS_TABLE}")).scalar_one()
    if db_url.startswith("sqlite"):
        assert stored == "2026-03-01 06:30:00.123456"  # UTC wall-clock time
    else:
        assert stored == submitted and stored.tzinfo is not None  # timestamp with time zone
        with raw(db_url) as conn:
            kind = conn.execute(sa.text(
                "SELECT data_type FROM information_schema.columns "
                f"WHERE table_name = '{SESSIONS_TABLE}' AND column_name = 'submitted'"
            )).scalar_one()
        assert kind == "timestamp with time zone"


# -- restarts and concurrency ------------------------------------------------------------------------


async def test_rows_survive_closing_and_reopening(db_url: str) -> None:
    made = [
        record("1", submitted=T0),
        record("2", user="bob", submitted=T0 + timedelta(minutes=1), state="running", started=T0),
        record("3", submitted=T0 + timedelta(minutes=2), state="finished", finished=T0,
               end_reason="walltime reached", options={"nested": {"a": [1, 2]}}),
    ]
    first = SessionStore(db_url)
    await first.open()
    for r in made:
        await first.save(r)
    await first.close()
    with pytest.raises(RuntimeError):
        await first.get("alice", "", "1")  # closed

    second = SessionStore(db_url)  # the hub restarted
    await second.open()
    try:
        page, total = await second.list()
        assert total == 3
        assert page == list(reversed(made))
        await second.save(record("4", submitted=T0 + timedelta(minutes=3)))
    finally:
        await second.close()
    await first.open()  # a closed store opens again
    try:
        assert (await first.list())[1] == 4
        assert await first.get("bob", "", "2") == made[1]
    finally:
        await first.close()
    assert schema_versions(db_url) == [1]


async def test_concurrent_saves_from_many_tasks(store: SessionStore) -> None:
    distinct = [record(f"job-{i}", user=f"user{i % 5}", submitted=T0 + timedelta(seconds=i))
                for i in range(40)]
    same_key = [record("shared", detail=f"write {i}") for i in range(20)]
    results = await asyncio.gather(*(store.save(r) for r in distinct + same_key), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    page, total = await store.list(limit=100)
    assert total == 41
    assert {r.job_id for r in page} == {r.job_id for r in distinct} | {"shared"}
    shared = await store.get("alice", "", "shared")
    assert shared is not None and shared.detail in {r.detail for r in same_key}
    for i in range(5):
        assert (await store.list(user=f"user{i}"))[1] == 8


async def test_several_hub_processes_open_a_new_database_at_once(db_url: str) -> None:
    stores = [SessionStore(db_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert schema_versions(db_url) == [1]
        await asyncio.gather(*(s.save(record(f"from-{i}")) for i, s in enumerate(stores)))
        for s in stores:
            assert (await s.list())[1] == 4
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@contextmanager
def write_lock(db_url: str, server: PostgresServer | None) -> Iterator[Callable[[], None]]:
    """Another client holding the sessions table's write lock; yields what releases it (callable
    from any thread)."""
    if server is None:
        path = db_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        release = once(lambda: conn.execute("ROLLBACK"))
        try:
            yield release
        finally:
            release()
            conn.close()
    else:
        pg = server.connect(db_url.rsplit("/", 1)[1])
        pg.autocommit = False
        pg.execute(f"LOCK TABLE {SESSIONS_TABLE} IN ACCESS EXCLUSIVE MODE")
        release = once(pg.rollback)
        try:
            yield release
        finally:
            release()
            pg.close()


def once(fn: Callable[[], object]) -> Callable[[], None]:
    lock = threading.Lock()
    done = False

    def once() -> None:
        nonlocal done
        with lock:
            if not done:
                done = True
                fn()

    return once


async def test_the_event_loop_runs_on_while_the_database_makes_a_save_wait(
    store: SessionStore, db_url: str, request: pytest.FixtureRequest
) -> None:
    server = None if db_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    with write_lock(db_url, server) as release:
        # Released by another thread after 1 s: were the save run on the loop, the loop would
        # stand still for that second instead of ticking.
        timer = threading.Timer(1.0, release)
        timer.start()
        t0 = time.monotonic()
        saving = asyncio.ensure_future(store.save(record("1")))
        ticks = 0
        while not saving.done():
            await asyncio.sleep(0.02)
            ticks += 1
        await saving
        waited = time.monotonic() - t0
        timer.join()
    assert waited >= 0.8, waited  # the save did wait for the lock
    assert ticks >= 15, (ticks, waited)
    assert await store.get("alice", "", "1") is not None


# -- the schema ----------------------------------------------------------------------------------------


async def test_a_new_database_gets_version_1(store: SessionStore, db_url: str) -> None:
    assert schema_versions(db_url) == [1]
    assert {"user_name", "server_name", "job_id", "options", "submitted", "updated"} <= columns(db_url)
    await store.open()  # again: nothing happens
    reopened = SessionStore(db_url)
    await reopened.open()
    await reopened.close()
    assert schema_versions(db_url) == [1]


async def test_a_newer_schema_version_is_refused(db_url: str) -> None:
    async with SessionStore(db_url) as s:
        await s.save(record("1"))
    with raw(db_url) as conn:
        conn.execute(sa.text(f"UPDATE {SCHEMA_TABLE} SET version = 99"))
        conn.commit()
    newer = SessionStore(db_url)
    with pytest.raises(SchemaVersionError, match=r"schema version 99.*up to 1"):
        await newer.open()
    with pytest.raises(RuntimeError, match="not open"):
        await newer.get("alice", "", "1")
    assert schema_versions(db_url) == [99]  # untouched
    with raw(db_url) as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {SESSIONS_TABLE}")).scalar_one() == 1


def _version_2_adding(column: str, calls: list[int], fail: bool = False) -> type[SessionStore]:
    def upgrade_to_v2(conn: sa.Connection) -> None:
        calls.append(2)
        conn.execute(sa.text(f"ALTER TABLE {SESSIONS_TABLE} ADD COLUMN {column} VARCHAR(255)"))
        if fail:
            raise RuntimeError("step 2 failed half-way")

    class StoreV2(SessionStore):
        upgrades = {**UPGRADES, 2: upgrade_to_v2}

    return StoreV2


async def test_an_upgrade_step_runs_once_and_keeps_the_rows(db_url: str) -> None:
    async with SessionStore(db_url) as v1:
        await v1.save(record("1", options={"keep": "me"}))
    calls: list[int] = []
    store_v2 = _version_2_adding("note", calls)
    async with store_v2(db_url) as v2:
        assert calls == [2]
        assert schema_versions(db_url) == [2]
        assert "note" in columns(db_url)
        assert await v2.get("alice", "", "1") == record("1", options={"keep": "me"})
        await v2.save(record("2"))
    async with store_v2(db_url) as v2:  # a restart: already at version 2
        assert (await v2.list())[1] == 2
    assert calls == [2]
    with pytest.raises(SchemaVersionError):  # and version 1 code no longer writes there
        await SessionStore(db_url).open()


async def test_a_failing_upgrade_leaves_the_database_as_it_was(db_url: str) -> None:
    async with SessionStore(db_url) as v1:
        await v1.save(record("1"))
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="half-way"):
        await _version_2_adding("note", calls, fail=True)(db_url).open()
    assert calls == [2]
    assert schema_versions(db_url) == [1]
    assert "note" not in columns(db_url)  # the ALTER TABLE was rolled back with the rest
    async with SessionStore(db_url) as v1:
        assert await v1.get("alice", "", "1") == record("1")


def test_upgrade_steps_must_be_numbered_without_gaps() -> None:
    store_module._check_steps(UPGRADES)
    for steps in ({}, {2: UPGRADES[1]}, {1: UPGRADES[1], 3: UPGRADES[1]}):
        with pytest.raises(ValueError):
            store_module._check_steps(steps)


# -- opening -------------------------------------------------------------------------------------------


async def test_calls_before_open_fail_clearly(db_url: str) -> None:
    s = SessionStore(db_url)
    for call in (s.save(record()), s.get("alice", "", "1"), s.list(), s.purge()):
        with pytest.raises(RuntimeError, match="not open"):
            await call
    await s.close()  # closing a store that never opened is fine


async def test_the_sqlite_file_is_the_hubs_alone(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    async with SessionStore(f"sqlite:///{path}") as s:
        await s.save(record())
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await SessionStore(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}").open()


async def test_an_in_memory_sqlite_store_works(tmp_path: Path) -> None:
    async with SessionStore("sqlite://") as s:
        await asyncio.gather(*(s.save(record(str(i))) for i in range(10)))
        assert (await s.list())[1] == 10


def test_default_url_is_next_to_the_hubs_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / 'pw_sessions.sqlite'}"
    assert default_url("sqlite:///jupyterhub.sqlite") == f"sqlite:///{tmp_path / 'pw_sessions.sqlite'}"
    assert default_url("sqlite:////srv/hub/jupyterhub.sqlite") == "sqlite:////srv/hub/pw_sessions.sqlite"
    assert default_url("postgresql://hub@db/jupyterhub") == f"sqlite:///{tmp_path / 'pw_sessions.sqlite'}"


def test_a_plain_postgresql_url_uses_psycopg_when_psycopg2_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = store_module.importlib.util.find_spec
    monkeypatch.setattr(store_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "psycopg2" else real(name, *a))
    url = store_module._engine_url("postgresql://hub:secret@db.example.org/jupyterhub")
    if real("psycopg") is not None:
        assert url.drivername == "postgresql+psycopg"
    assert store_module._engine_url("postgresql+psycopg2://h/db").drivername == "postgresql+psycopg2"
    assert store_module._engine_url("sqlite:///x.sqlite").drivername == "sqlite"


async def test_a_missing_driver_is_named() -> None:
    s = SessionStore("postgresql+pg8000://hub:secret@127.0.0.1:1/jupyterhub")
    with pytest.raises(RuntimeError, match="pg8000") as info:
        await s.open()
    assert "secret" not in str(info.value)
    assert "secret" not in repr(s)


# -- the test PostgreSQL itself -------------------------------------------------------------------------


def _listeners(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=False).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


@pytest.mark.postgres
def test_the_test_server_is_private(postgres_server: PostgresServer) -> None:
    pid = postgres_server.pid
    assert pid is not None and postgres_server.running
    assert _listeners(pid) == [f"127.0.0.1:{postgres_server.port}"]
    if os.geteuid() == 0:
        assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == "pwtestuser"
    assert os.stat(postgres_server.socket_dir).st_mode & 0o777 == 0o700
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=SUPERUSER,
                        password="wrong", dbname="postgres", connect_timeout=5)
    with postgres_server.connect() as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
        assert row == ("127.0.0.1",)
    assert postgres_server.version.startswith(("15", "16", "17", "18")), postgres_server.version
    with socket.create_connection(("127.0.0.1", postgres_server.port), timeout=5):
        pass


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


@pytest.mark.postgres
def test_stop_ends_the_server_and_removes_its_data(postgres_server: PostgresServer, tmp_path: Path) -> None:
    other = PostgresServer(tmp_path / "other").start()
    try:
        assert other.port != postgres_server.port
        pid, data_dir = other.pid, other.data_dir
        assert pid is not None
        conn = other.connect()  # a client still connected does not hold up the stop
    finally:
        other.stop()
    conn.close()
    assert _gone(pid, 1)
    assert not data_dir.exists()
    with postgres_server.connect() as c:  # the session's server is unharmed
        assert c.execute("SELECT 1").fetchone() == (1,)


_ORPHAN_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from support.postgres import PostgresServer
server = PostgresServer(Path(sys.argv[2])).start()
conn = server.connect()
print(server.pid, server.root, server.data_dir, flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_the_watchdog_ends_a_server_whose_test_process_was_killed(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    tests_dir = Path(__file__).resolve().parent
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(tests_dir), str(tmp_path / "orphan")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert len(line) == 3, child.communicate(timeout=30)
        pid, root, data_dir = int(line[0]), Path(line[1]), Path(line[2])
        assert pid_alive(pid)
    finally:
        child.kill()  # SIGKILL: no atexit, no finally
        child.wait()
    assert _gone(pid, 15), f"postgres {pid} still running"
    deadline = time.monotonic() + 5
    while data_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not data_dir.exists()
    if root.name.startswith("pw-postgres-"):
        assert not root.exists()
    with postgres_server.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)

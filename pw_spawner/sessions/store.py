"""The session store: one row per session (a user's server and the batch job behind it), kept after
the server stops so that the sessions page can list finished sessions and relaunch them.

Where the rows live
    Any database SQLAlchemy 2 can reach, named by a URL. The default is an SQLite file next to the
    hub's own database (:func:`default_url`); a site that runs its hub on PostgreSQL points the
    store at it too, e.g. ``postgresql+psycopg://hub:secret@db.example.org/jupyterhub`` (the store's
    tables are prefixed ``pw_`` and can share the hub's database). The PostgreSQL driver is not a
    dependency of pw_spawner: a site installs it into the hub's environment
    (``pip install 'psycopg[binary]>=3.1,<4'``). A plain ``postgresql://`` URL means psycopg2 to
    SQLAlchemy; when only psycopg 3 is installed the store uses that instead.

What is kept
    The table ``pw_sessions`` holds a row per (user, server name, job id): what was asked for
    (app, profile, hours, cores, memory, GPUs, and the user options for a relaunch, as JSON text),
    where it is (state and the words the page shows), and when (submitted, started, ends, finished,
    all stored as UTC and returned timezone-aware in UTC). Finished rows are deleted by
    :meth:`SessionStore.purge` once they are older than ``keep_finished`` (seven days by default);
    rows that are not finished are never purged.

    The strings come from users and from their jobs, so every one is capped (names at 255
    characters, the detail and end reason at 500), NUL characters and unpaired surrogates are
    replaced (PostgreSQL refuses the first, UTF-8 the second), and the options are limited to plain
    JSON values, 64 KiB of text and 16 levels of nesting. A key (user, server name, job id) longer
    than 255 characters is refused rather than cut, so that two sessions never share a row.

The schema and its upgrades
    ``pw_sessions_schema`` holds the schema's version. :meth:`SessionStore.open` brings a database
    up to the version this code knows by running each missing step of :data:`UPGRADES` in order,
    all in one transaction (SQLite and PostgreSQL run DDL in transactions, so a failed upgrade
    leaves the database as it was), and records the new version. Version 1 is the first step;
    version 2 will be one more function in :data:`UPGRADES`, plus the new columns in the table the
    queries use. Several hub processes may open the same database at once: on PostgreSQL the
    upgrade holds an advisory lock, on SQLite a write transaction (``BEGIN IMMEDIATE``), so exactly
    one of them upgrades and the others find the work done. A database whose version is newer than
    this code knows is refused with :class:`SchemaVersionError` (an older pw_spawner must not write
    rows it does not understand); nothing in it is changed.

Not blocking the hub
    The hub is an asyncio application; every call that reaches the database runs in a worker
    thread of the store's own small pool (:data:`WORKERS` threads, one connection each), and the
    coroutines only await it. Threads rather than SQLAlchemy's asyncio extension because: the
    extension needs an asyncio driver for each database (aiosqlite, asyncpg or psycopg's async
    mode) and greenlet, none of which the hub otherwise has, and aiosqlite itself runs SQLite in a
    thread; with threads, the same sync drivers and URLs as the hub's own ``db_url`` work, for
    every database SQLAlchemy supports. The pool is the store's own rather than the loop's default
    executor (``asyncio.to_thread``), which the spawner uses for file reads and local jobs: a slow
    or unreachable database then holds up at most these threads, never the spawner's other work.
    A caller that is cancelled stops waiting; the statement it started still finishes (or fails) in
    its thread.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Dialect, Engine

__all__ = [
    "SCHEMA_TABLE",
    "SESSIONS_TABLE",
    "STATES",
    "UPGRADES",
    "SchemaVersionError",
    "SessionRecord",
    "SessionStore",
    "default_url",
]

SCHEMA_TABLE = "pw_sessions_schema"
SESSIONS_TABLE = "pw_sessions"
#: A session's states, in the order a session goes through them.
STATES = ("queued", "starting", "running", "finished")

#: The longest user name, server name, job id, and any other name kept (characters).
NAME_MAX = 255
#: The longest detail and end reason kept (characters).
TEXT_MAX = 500
#: The most JSON text a session's options may take (characters), how deep it may nest, and how many
#: values it may hold.
OPTIONS_MAX_CHARS = 64 * 1024
OPTIONS_MAX_DEPTH = 16
OPTIONS_MAX_ITEMS = 10_000
#: The most rows :meth:`SessionStore.list` returns at once.
PAGE_MAX = 200
#: Worker threads (and database connections) of one store.
WORKERS = 4
#: How long a statement waits for another process's SQLite write lock (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long connecting to a database server may take (seconds).
CONNECT_TIMEOUT = 10
#: pg_advisory_xact_lock key held while the schema is checked and upgraded ("pw_s").
_PG_SCHEMA_LOCK = 0x70775F73
#: Execution option that makes an SQLite transaction take the write lock at once.
_WRITE = "pw_sessions_write"

_INT_MAX = 2**31 - 1
_KEY_COLUMNS = ("user_name", "server_name", "job_id")

T = TypeVar("T")


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this pw_spawner knows."""


@dataclass(frozen=True)
class SessionRecord:
    """One session: a user's server and the job behind it, as the sessions page shows it."""

    user: str
    server_name: str  # "" for the default server
    job_id: str
    resource: str | None
    scheduler: str
    app: str
    profile: str
    hours: float
    cores: int
    memory_gb: float | None
    gpus: int
    state: str  # one of STATES
    detail: str  # the words the page shows ("queued: waiting for free resources", ...)
    submitted: datetime | None
    started: datetime | None
    ends: datetime | None
    finished: datetime | None
    end_reason: str | None  # None until finished
    options: Mapping[str, Any]  # the user_options it was started with (for a relaunch)
    node: str | None = None


# -- column types ------------------------------------------------------------------------------


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware time, stored as UTC; read back timezone-aware in UTC.

    PostgreSQL keeps it as ``timestamp with time zone``; other databases (SQLite has no time type)
    as the UTC wall-clock time. A naive datetime is refused: it names no instant.
    """

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give it a time zone")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


class JSONText(sa.types.TypeDecorator[Any]):
    """A JSON value kept as text, the same way in every database (compact, keys sorted)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# -- the tables ----------------------------------------------------------------------------------


def _sessions_table_v1(metadata: sa.MetaData) -> sa.Table:
    """``pw_sessions`` as version 1 of the schema creates it (kept as it is when v2 comes)."""
    return sa.Table(
        SESSIONS_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("user_name", sa.String(NAME_MAX), nullable=False),
        sa.Column("server_name", sa.String(NAME_MAX), nullable=False),
        sa.Column("job_id", sa.String(NAME_MAX), nullable=False),
        sa.Column("resource", sa.String(NAME_MAX), nullable=True),
        sa.Column("scheduler", sa.String(NAME_MAX), nullable=False),
        sa.Column("app", sa.String(NAME_MAX), nullable=False),
        sa.Column("profile", sa.String(NAME_MAX), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_gb", sa.Float(), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(TEXT_MAX), nullable=False),
        sa.Column("submitted", UTCDateTime(), nullable=True),
        sa.Column("started", UTCDateTime(), nullable=True),
        sa.Column("ends", UTCDateTime(), nullable=True),
        sa.Column("finished", UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(TEXT_MAX), nullable=True),
        sa.Column("options", JSONText(), nullable=False),
        sa.Column("node", sa.String(NAME_MAX), nullable=True),
        sa.Column("updated", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(*_KEY_COLUMNS, name="uq_pw_sessions_key"),
        sa.Index("ix_pw_sessions_user_submitted", "user_name", "submitted"),
        sa.Index("ix_pw_sessions_state_finished", "state", "finished"),
    )


def _schema_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(SCHEMA_TABLE, metadata, sa.Column("version", sa.Integer(), nullable=False))


_METADATA = sa.MetaData()
#: The table as the queries see it: the newest schema's. A v2 that adds columns defines its own.
SESSIONS = _sessions_table_v1(_METADATA)
SCHEMA = _schema_table(_METADATA)


# -- schema upgrades -------------------------------------------------------------------------------

#: One upgrade step: brings the database from the version before it to its own, inside the
#: transaction it is given.
UpgradeStep = Callable[[Connection], None]


def _upgrade_to_v1(conn: Connection) -> None:
    """Version 1: the sessions table and its indexes."""
    _sessions_table_v1(sa.MetaData()).create(conn)


#: Step n takes the database from version n - 1 to n; the highest n is the version this code writes.
UPGRADES: Mapping[int, UpgradeStep] = {1: _upgrade_to_v1}


def _check_steps(steps: Mapping[int, UpgradeStep]) -> int:
    if not steps or sorted(steps) != list(range(1, len(steps) + 1)):
        raise ValueError(f"upgrade steps must be numbered 1..n without gaps, not {sorted(steps)}")
    return len(steps)


# -- cleaning what comes in ------------------------------------------------------------------------


def _clean_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, NULs and unpaired surrogates replaced."""
    value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return _clean_text(value, limit)


def _optional_text(name: str, value: object, limit: int) -> str | None:
    return None if value is None else _text(name, value, limit)


def _key(name: str, value: object) -> str:
    """A key field as stored; a key that would have to be cut is refused."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > NAME_MAX:
        raise ValueError(f"{name} is {len(value)} characters long; at most {NAME_MAX} are kept")
    return _clean_text(value, NAME_MAX)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if not 0 <= value <= _INT_MAX:
        raise ValueError(f"{name} must be between 0 and {_INT_MAX}, not {value}")
    return value


def _amount(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value}")
    return value


def _clean_options(options: object) -> dict[str, Any]:
    """A copy of ``options`` made of plain JSON values only, within the limits; else ValueError."""
    items = 0

    def clean(value: object, depth: int) -> Any:
        nonlocal items
        items += 1
        if items > OPTIONS_MAX_ITEMS:
            raise ValueError(f"options hold more than {OPTIONS_MAX_ITEMS} values")
        if depth > OPTIONS_MAX_DEPTH:
            raise ValueError(f"options nest deeper than {OPTIONS_MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"options hold {value}, which JSON cannot")
            return value
        if isinstance(value, str):
            return _clean_text(value, OPTIONS_MAX_CHARS)
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError(f"options have a key {k!r} that is not a string")
                out[_clean_text(k, OPTIONS_MAX_CHARS)] = clean(v, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [clean(v, depth + 1) for v in value]
        raise ValueError(f"options hold a {type(value).__name__}, which is not a JSON value")

    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping, not {type(options).__name__}")
    cleaned: dict[str, Any] = clean(options, 0)
    size = len(_dumps(cleaned))
    if size > OPTIONS_MAX_CHARS:
        raise ValueError(f"options take {size} characters as JSON; at most {OPTIONS_MAX_CHARS} are kept")
    return cleaned


def _row(record: SessionRecord, now: datetime) -> dict[str, Any]:
    """The row ``record`` is stored as (checked, capped and cleaned)."""
    if record.state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {record.state!r}")
    times = {}
    for name in ("submitted", "started", "ends", "finished"):
        value = getattr(record, name)
        if value is not None:
            if not isinstance(value, datetime):
                raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} is a naive datetime ({value.isoformat()}): give it a time zone")
            value = value.astimezone(timezone.utc)
        times[name] = value
    return {
        "user_name": _key("user", record.user),
        "server_name": _key("server_name", record.server_name),
        "job_id": _key("job_id", record.job_id),
        "resource": _optional_text("resource", record.resource, NAME_MAX),
        "scheduler": _text("scheduler", record.scheduler, NAME_MAX),
        "app": _text("app", record.app, NAME_MAX),
        "profile": _text("profile", record.profile, NAME_MAX),
        "hours": _amount("hours", record.hours),
        "cores": _count("cores", record.cores),
        "memory_gb": None if record.memory_gb is None else _amount("memory_gb", record.memory_gb),
        "gpus": _count("gpus", record.gpus),
        "state": record.state,
        "detail": _text("detail", record.detail, TEXT_MAX),
        **times,
        "end_reason": _optional_text("end_reason", record.end_reason, TEXT_MAX),
        "options": _clean_options(record.options),
        "node": _optional_text("node", record.node, NAME_MAX),
        "updated": now,
    }


def _record(row: sa.Row[Any]) -> SessionRecord:
    m = row._mapping
    return SessionRecord(
        user=m["user_name"], server_name=m["server_name"], job_id=m["job_id"],
        resource=m["resource"], scheduler=m["scheduler"], app=m["app"], profile=m["profile"],
        hours=m["hours"], cores=m["cores"], memory_gb=m["memory_gb"], gpus=m["gpus"],
        state=m["state"], detail=m["detail"], submitted=m["submitted"], started=m["started"],
        ends=m["ends"], finished=m["finished"], end_reason=m["end_reason"],
        options=m["options"], node=m["node"],
    )


def _safe_key(value: str) -> str | None:
    """A key as it would be stored, or None when no row can have it (too long, not a string)."""
    try:
        return _key("key", value)
    except (TypeError, ValueError):
        return None


# -- URLs and engines -----------------------------------------------------------------------------


def default_url(hub_db_url: str | None = None, filename: str = "pw_sessions.sqlite") -> str:
    """The default store: an SQLite file ``filename`` next to the hub's SQLite database (JupyterHub's
    ``db_url``, ``sqlite:///jupyterhub.sqlite`` by default), or in the current directory when the
    hub's database is not an SQLite file."""
    directory = os.getcwd()
    if hub_db_url:
        url = sa.engine.make_url(hub_db_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            directory = os.path.dirname(os.path.abspath(url.database))
    return "sqlite:///" + os.path.join(directory, filename)


def _engine_url(url: str) -> sa.URL:
    parsed = sa.engine.make_url(url)
    if (
        parsed.drivername == "postgresql"
        and importlib.util.find_spec("psycopg2") is None
        and importlib.util.find_spec("psycopg") is not None
    ):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _create_engine(url: sa.URL) -> Engine:
    safe = url.render_as_string(hide_password=True)
    kwargs: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if _memory_sqlite(url):
            # One database shared by the single worker thread (see SessionStore.open).
            kwargs["poolclass"] = sa.pool.StaticPool
            connect_args["check_same_thread"] = False
        else:
            path = os.path.abspath(url.database or "")
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                raise FileNotFoundError(f"the session store's directory {parent} does not exist")
            if not os.path.exists(path):
                # Users' sessions are nobody else's business: the file (and SQLite's journal, which
                # takes the database's mode) readable by the hub's account only.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            kwargs.update(pool_size=WORKERS, max_overflow=0)
    else:
        kwargs.update(pool_size=WORKERS, max_overflow=0, pool_pre_ping=True, pool_recycle=3600)
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    except ModuleNotFoundError as e:
        raise RuntimeError(
            f"the session store's database {safe} needs the Python module {e.name!r}; install its "
            "driver into the hub's environment (PostgreSQL: pip install 'psycopg[binary]>=3.1,<4')"
        ) from e
    except sa.exc.NoSuchModuleError as e:
        raise ValueError(f"the session store's URL {safe} names no database SQLAlchemy knows: {e}") from e
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """SQLite's transactions begun by SQLAlchemy, not by the sqlite3 module (which leaves DDL out of
    them), and writes begun with ``BEGIN IMMEDIATE``: they wait (busy_timeout) for another writer
    instead of failing when a read lock cannot be upgraded."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


# -- the store ---------------------------------------------------------------------------------------


class SessionStore:
    """The sessions of every user, in the database at ``url``; finished ones kept ``keep_finished``.

    Use ``await store.open()`` (or ``async with SessionStore(url) as store``) before anything else,
    and ``await store.close()`` at the end. Every method may be called from many tasks at once.
    """

    #: The schema's upgrade steps (see :data:`UPGRADES`); the highest is the version written.
    upgrades: ClassVar[Mapping[int, UpgradeStep]] = UPGRADES

    def __init__(self, url: str, *, keep_finished: timedelta = timedelta(days=7)) -> None:
        if keep_finished < timedelta(0):
            raise ValueError(f"keep_finished must not be negative, not {keep_finished}")
        self.url = url
        self.keep_finished = keep_finished
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._opening: asyncio.Lock | None = None

    def __repr__(self) -> str:
        try:
            shown = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            shown = "<invalid URL>"
        return f"<SessionStore {shown} open={self._engine is not None}>"

    async def __aenter__(self) -> SessionStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- opening and closing --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and create the schema or upgrade it to this code's version.

        Safe to call again, and from several processes on one database at once. Raises
        :class:`SchemaVersionError` for a database written by a newer pw_spawner.
        """
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._engine is not None:
                return
            target = _check_steps(self.upgrades)
            url = _engine_url(self.url)
            workers = 1 if _memory_sqlite(url) else WORKERS
            executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pw-sessions")
            loop = asyncio.get_running_loop()
            engine: Engine | None = None
            try:
                engine = await loop.run_in_executor(executor, _create_engine, url)
                await loop.run_in_executor(executor, self._migrate, engine, target)
            except BaseException:
                if engine is not None:
                    await loop.run_in_executor(executor, engine.dispose)
                executor.shutdown(wait=False)
                raise
            self._engine, self._executor = engine, executor

    async def close(self) -> None:
        """Wait for the calls under way, then close the database connections. Safe to call again."""
        engine, executor = self._engine, self._executor
        self._engine = self._executor = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    # -- the calls ----------------------------------------------------------------------------------

    async def save(self, record: SessionRecord) -> None:
        """Insert ``record``, or replace the row with its (user, server_name, job_id).

        Raises ValueError or TypeError, before touching the database, for a record that cannot be
        stored (an unknown state, a naive time, a key over 255 characters, options that are not
        plain JSON or too large).
        """
        values = _row(record, datetime.now(timezone.utc))
        await self._run(self._save, values)

    async def get(self, user: str, server_name: str, job_id: str) -> SessionRecord | None:
        """The session with this key, or None."""
        key = [_safe_key(user), _safe_key(server_name), _safe_key(job_id)]
        if None in key:
            return None
        return await self._run(self._get, key)

    async def list(
        self, *, user: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[SessionRecord], int]:
        """A page of sessions, newest first (by submission time, unsubmitted ones first, then by
        row id), and how many there are in all: ``user``'s, or every user's when None (for admins).

        ``limit`` is at most :data:`PAGE_MAX`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an integer >= 0, not {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an integer >= 0, not {offset!r}")
        who: str | None = None
        if user is not None:
            who = _safe_key(user)
            if who is None:
                return [], 0
        return await self._run(self._list, who, min(limit, PAGE_MAX), offset)

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the finished sessions that finished more than ``keep_finished`` before ``now``
        (default: the current time); how many were deleted. Other sessions are never deleted."""
        if now is None:
            now = datetime.now(timezone.utc)
        elif now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"naive datetime {now.isoformat()}: give it a time zone")
        return await self._run(self._purge, now - self.keep_finished)

    # -- in the worker threads -------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(engine, *args)`` in a worker thread (close() waits for the calls already queued)."""
        executor, engine = self._executor, self._engine
        if executor is None or engine is None:
            raise RuntimeError("the session store is not open: await open() first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, engine, *args))

    @staticmethod
    @contextmanager
    def _writing(engine: Engine) -> Iterator[Connection]:
        """A connection in a write transaction, committed at the end (rolled back on an error)."""
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def _migrate(self, engine: Engine, target: int) -> None:
        last: Exception | None = None
        for _attempt in range(3):
            try:
                with self._writing(engine) as conn:
                    self._migrate_in(conn, target)
                return
            except sa.exc.DBAPIError as e:
                # Another process created the tables first (databases with neither an advisory
                # lock nor BEGIN IMMEDIATE); the next attempt finds its work.
                last = e
        assert last is not None
        raise last

    def _migrate_in(self, conn: Connection, target: int) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
        has_schema = sa.inspect(conn).has_table(SCHEMA_TABLE)
        version = 0
        if has_schema:
            version = conn.execute(sa.select(sa.func.max(SCHEMA.c.version))).scalar() or 0
        if version > target:
            url = conn.engine.url.render_as_string(hide_password=True)
            raise SchemaVersionError(
                f"the session store {url} has schema version {version}, but this pw_spawner knows "
                f"versions up to {target}: it was written by a newer pw_spawner. Upgrade pw_spawner, "
                "or give this one a database of its own."
            )
        if version == target:
            return
        if not has_schema:
            SCHEMA.create(conn)
        for step in range(version + 1, target + 1):
            self.upgrades[step](conn)
        conn.execute(sa.delete(SCHEMA))
        conn.execute(sa.insert(SCHEMA).values(version=target))

    def _save(self, engine: Engine, values: dict[str, Any]) -> None:
        dialect = engine.dialect.name
        changes = {k: v for k, v in values.items() if k not in _KEY_COLUMNS}
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite_dialect.insert if dialect == "sqlite" else pg_dialect.insert)(SESSIONS)
            stmt = insert.values(values).on_conflict_do_update(
                index_elements=[SESSIONS.c[k] for k in _KEY_COLUMNS],
                set_={k: insert.excluded[k] for k in changes},
            )
            with self._writing(engine) as conn:
                conn.execute(stmt)
            return
        # Other databases: update, else insert; an insert that lost a race to another one
        # fails on the unique key and the update of the next attempt finds its row.
        where = sa.and_(*(SESSIONS.c[k] == values[k] for k in _KEY_COLUMNS))
        for attempt in range(3):
            try:
                with self._writing(engine) as conn:
                    if conn.execute(sa.update(SESSIONS).where(where).values(changes)).rowcount == 0:
                        conn.execute(sa.insert(SESSIONS).values(values))
                return
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise

    def _get(self, engine: Engine, key: builtins.list[str]) -> SessionRecord | None:
        where = sa.and_(*(SESSIONS.c[k] == v for k, v in zip(_KEY_COLUMNS, key, strict=True)))
        with engine.connect() as conn:
            row = conn.execute(sa.select(SESSIONS).where(where)).first()
        return None if row is None else _record(row)

    def _list(
        self, engine: Engine, user: str | None, limit: int, offset: int
    ) -> tuple[builtins.list[SessionRecord], int]:
        c = SESSIONS.c
        where = sa.true() if user is None else c.user_name == user
        page = (
            sa.select(SESSIONS)
            .where(where)
            .order_by(sa.case((c.submitted.is_(None), 0), else_=1), c.submitted.desc(), c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(SESSIONS).where(where)
        with engine.connect() as conn, conn.begin():
            rows = conn.execute(page).all()
            total = conn.execute(count).scalar_one()
        return [_record(r) for r in rows], int(total)

    def _purge(self, engine: Engine, cutoff: datetime) -> int:
        c = SESSIONS.c
        old = sa.or_(
            sa.and_(c.finished.is_not(None), c.finished < cutoff),
            # finished without a finish time: by when it was last written
            sa.and_(c.finished.is_(None), c.updated < cutoff),
        )
        with self._writing(engine) as conn:
            result = conn.execute(sa.delete(SESSIONS).where(c.state == "finished", old))
        return int(result.rowcount)

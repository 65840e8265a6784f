"""A session's journal: what one server's spawner writes into the sessions store as its job moves.

The spawner tells its journal when the job is submitted, waits in the queue, starts, runs and ends;
the journal keeps the session's row (:class:`~.store.SessionRecord`) and saves it when what the
page shows changes. A failure to write is logged and never fails a spawn: the page is a view, the
job is what matters. One store is shared by every spawner (and the page) of a hub process, by URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..schedulers.base import JobInfo
from ..schedulers.reasons import job_words
from ..status import JobState
from .store import SessionRecord, SessionStore

if TYPE_CHECKING:
    from ..options import Selection

log = logging.getLogger(__name__)

#: One store per database URL and event loop in this process.
_STORES: dict[tuple[str, int], SessionStore] = {}
_OPENING: dict[tuple[str, int], asyncio.Lock] = {}


async def shared_store(url: str, keep_finished: timedelta = timedelta(days=7)) -> SessionStore:
    """The store of ``url`` for this event loop, opened (its schema made or upgraded) once."""
    key = (url, id(asyncio.get_running_loop()))
    store = _STORES.get(key)
    if store is not None:
        return store
    lock = _OPENING.setdefault(key, asyncio.Lock())
    async with lock:
        store = _STORES.get(key)
        if store is None:
            store = SessionStore(url, keep_finished=keep_finished)
            await store.open()
            _STORES[key] = store
    return store


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SessionJournal:
    """The row of one session of one server, saved as the spawner reports."""

    def __init__(self, url: str, keep_finished: timedelta, record: SessionRecord,
                 saved: SessionRecord | None = None):
        self.url, self.keep_finished, self.record = url, keep_finished, record
        #: The row as the store last took it (None: not saved yet).
        self.saved = saved

    @classmethod
    def submitted(cls, url: str, keep_finished: timedelta, *, user: str, server_name: str, job_id: str,
                  scheduler: str, selection: Selection, options: Mapping[str, Any]) -> SessionJournal:
        job = selection.job
        return cls(url, keep_finished, SessionRecord(
            user=user, server_name=server_name, job_id=job_id, resource=selection.resource,
            scheduler=scheduler, app=selection.app, profile=selection.profile.slug,
            hours=round(job.walltime_s / 3600, 4), cores=job.cores,
            memory_gb=round(job.memory_mb / 1024, 3) if job.memory_mb else None, gpus=job.gpus,
            state="queued", detail="queued", submitted=_now(), started=None, ends=None, finished=None,
            end_reason=None, options=dict(options), node=None))

    @classmethod
    async def reopen(cls, url: str, keep_finished: timedelta, *, user: str, server_name: str,
                     job_id: str) -> SessionJournal | None:
        """The journal of a session the store has (after a hub restart), or None."""
        try:
            store = await shared_store(url, keep_finished)
            record = await store.get(user, server_name, job_id)
        except Exception as exc:
            log.warning("pw_spawner: could not read session %s/%s job %s: %s", user, server_name,
                        job_id, exc)
            return None
        return cls(url, keep_finished, record, saved=record) if record is not None else None

    async def _update(self, **changes: Any) -> None:
        new = self.record = dataclasses.replace(self.record, **changes)
        if new == self.saved:
            return
        try:
            store = await shared_store(self.url, self.keep_finished)
            await store.save(new)
            self.saved = new
        except Exception as exc:  # the page is a view: a database problem must not fail a spawn
            log.warning("pw_spawner: could not save session %s/%s job %s: %s", new.user,
                        new.server_name, new.job_id, exc)

    async def queued(self, words: str = "", estimated_start: datetime | None = None) -> None:
        detail = f"queued: {words}" if words else "queued"
        if estimated_start is not None:
            detail += f" (estimated start {clock_words(estimated_start)})"
        await self._update(state="queued", detail=detail)

    async def starting(self, node: str | None) -> None:
        await self._update(state="starting", node=node,
                           detail=f"starting on {node}" if node else "starting",
                           started=self.record.started or _now())

    async def running(self, node: str | None) -> None:
        started = self.record.started or _now()
        await self._update(state="running", node=node, started=started,
                           ends=started + timedelta(hours=self.record.hours),
                           detail=f"running on {node}" if node else "running")

    async def ending(self, ends: datetime) -> None:
        """The job's own word on when its walltime ends (recorded at its scheduler's warning)."""
        await self._update(ends=ends)

    async def finished(self, reason: str) -> None:
        if self.record.state == "finished":
            return
        await self._update(state="finished", finished=_now(), end_reason=reason[:500],
                           detail=f"finished: {reason}"[:500])


def clock_words(when: datetime, now: datetime | None = None) -> str:
    """``14:05`` today, ``Thu 3 Dec 14:05`` another day, ``Tue 4 Jan 2028 14:05`` another year: the
    hub's local time, as a user near the cluster reads it."""
    local = when.astimezone()
    today = (now or _now()).astimezone().date()
    if local.date() == today:
        return local.strftime("%H:%M")
    year = f" {local.year}" if local.year != today.year else ""
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b')}{year} {local.strftime('%H:%M')}"


def ended_in_words(kind: str, info: JobInfo) -> str:
    """Why a job of scheduler ``kind`` ended, in words for the page: the scheduler's own reason where
    it gave one ("out of memory", "time limit reached"), else from its state and exit code."""
    words = job_words(kind, info) if info.end_reason else ""
    if words:
        return words
    if info.state is JobState.CANCELLED:
        return "cancelled"
    if info.exit_code not in (None, 0):
        return f"failed: exit code {info.exit_code}"
    if info.state is JobState.FAILED:
        return "failed"
    return "completed"


__all__ = ["SessionJournal", "clock_words", "ended_in_words", "shared_store"]

"""Whose jobs one status query can answer for: the whole cluster's, or only one user's.

One query per cluster needs an account that sees every user's jobs. Where jobs run as the hub's
own account, or the admin names a query account (``status_query_prefix``), that is settled. Else
the scheduler is asked once (Slurm: is ``PrivateData=jobs`` set?) and, when the hub's account
cannot see other users' jobs, queries fall back to one per user, with a warning that says what
to configure. The answer is kept for the life of the process. A resource reached over SSH as each
user's own account gets the same kind of warning, unless the admin gave it a ``status_query_login``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..accounts import uses_username
from ..remote.executor import LocalExecutor
from . import get_scheduler

_DECIDED: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {}
#: Questions being asked: every poll at hub start waits for the one answer.
_ASKING: dict[tuple[str, tuple[str, ...], tuple[str, ...]], asyncio.Future[bool | None]] = {}

FALLBACK_ADVICE = (
    "status queries fall back to one per user (one scheduler query per user per interval). Set "
    "c.PWSpawner.status_query_prefix to an account that sees every job (e.g. a Slurm operator "
    "through sudo), or c.PWSpawner.status_query_scope = 'cluster' if the hub's account does")


RESOURCE_FALLBACK_ADVICE = (
    "its status queries run as each user's own SSH account (ssh_user has {username}): one "
    "scheduler query per user per interval. Give the resource a status_query_login, an account "
    "that sees every user's jobs")

_WARNED_RESOURCES: set[str] = set()


def warn_per_user_queries(resource: str, log: logging.Logger | logging.LoggerAdapter) -> None:
    """Say once per resource that its status queries are one per user, and what to configure."""
    if resource not in _WARNED_RESOURCES:
        _WARNED_RESOURCES.add(resource)
        log.warning("pw_spawner: resource %s: %s", resource, RESOURCE_FALLBACK_ADVICE)


async def query_scope(configured: str, kind: str, exec_prefix: Sequence[str],
                      query_prefix: Sequence[str], log: logging.Logger | logging.LoggerAdapter) -> str:
    """``cluster`` or ``user`` for hub-host jobs of scheduler ``kind`` (see ``status_query_scope``)."""
    if configured in ("cluster", "user"):
        return configured
    if query_prefix or not uses_username(exec_prefix):
        return "cluster"
    key = (kind, tuple(exec_prefix), tuple(query_prefix))
    if key not in _DECIDED:
        asking = _ASKING.get(key)
        if asking is None or asking.get_loop() is not asyncio.get_running_loop():
            asking = _ASKING[key] = asyncio.ensure_future(
                get_scheduler(kind).shows_other_users_jobs(LocalExecutor()))
        sees_all = await asyncio.shield(asking)
        _ASKING.pop(key, None)
        if key in _DECIDED:  # another poll decided (and warned) while this one waited
            return _DECIDED[key]
        _DECIDED[key] = "cluster" if sees_all else "user"
        if not sees_all:
            why = ("the scheduler hides other users' jobs from the hub's account" if sees_all is False
                   else "whether the hub's account sees other users' jobs could not be told")
            log.warning("pw_spawner: %s (%s): %s", why, kind, FALLBACK_ADVICE)
    return _DECIDED[key]

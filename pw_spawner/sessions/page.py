"""The sessions page of the hub (``/hub/sessions``) and its JSON view (``/hub/sessions/api/sessions``).

Both are handlers of the hub itself, so the page has the hub's navbar and Bootstrap (it extends the
hub's ``page.html``), and both see who asks the way the hub's own pages and API do: the login cookie
or a token, and its scopes. A user sees the rows of their own sessions; whoever holds
``read:servers`` for other users (admins) sees theirs too, with a user filter. The rows come from
the sessions store the spawners write (:mod:`.journal`), joined with what the hub knows right now
(whether the server is still active, its URL). :func:`configure_sessions_page` turns it all on from
``jupyterhub_config.py``, with sharing: the page's Share action makes a share code through the hub's
own API (JupyterHub 5+), so the hub, not this module, decides who may share and who gets in.
Relaunch and Settings go through ``/hub/sessions/api/relaunch`` (:class:`RelaunchAPIHandler`),
which hands back a session's own stored options; every hub page's note of a session about to
reach its walltime (``static/ending.js``, included by ``templates/hub/page.html``) reads the JSON
view.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from .journal import shared_store
from .store import SessionRecord

TEMPLATES = str(Path(__file__).resolve().parent.parent / "templates" / "hub")
STATIC = str(Path(__file__).resolve().parent / "static")
#: The database of the sessions store when the configuration names none: next to the hub's.
DEFAULT_URL = "sqlite:///pw_sessions.sqlite"
#: From how long before the walltime's end a running session is flagged on the page, where the
#: session's spawner does not say (its ``walltime_warning_minutes``).
ENDING_SOON = timedelta(minutes=10)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def time_left(ends: datetime, now: datetime) -> str:
    """``2 h 14 min left``, ``5 min left``, ``less than a minute left``."""
    seconds = int((ends - now).total_seconds())
    if seconds < 60:
        return "less than a minute left"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes} min left" if hours else f"{minutes} min left"


def row_json(record: SessionRecord, *, now: datetime, active: bool, base_url: str, user_prefix: str,
             app_name: str = "", warn_before: timedelta = ENDING_SOON) -> dict[str, Any]:
    """One row of the JSON view (the stable interface: scripts read these keys); ``ending_soon``
    from ``warn_before`` the walltime's end."""
    detail = record.detail
    ending_soon = False
    if record.state == "running" and record.ends is not None:
        detail = f"{detail}, {time_left(record.ends, now)}"
        ending_soon = bool(warn_before) and record.ends - now <= warn_before
    spawn_path = _server_path(record.user, record.server_name)
    return {
        "user": record.user, "server_name": record.server_name, "job_id": record.job_id,
        "app": record.app, "app_name": app_name or record.app, "profile": record.profile,
        "resource": record.resource, "hours": record.hours, "cores": record.cores,
        "memory_gb": record.memory_gb, "gpus": record.gpus, "state": record.state, "detail": detail,
        "submitted": _iso(record.submitted), "started": _iso(record.started), "ends": _iso(record.ends),
        "end_reason": record.end_reason, "node": record.node, "active": active,
        "ending_soon": ending_soon,
        "url": f"{user_prefix}{quote(record.server_name)}/" if record.server_name else user_prefix,
        "spawn_url": f"{base_url}spawn/{spawn_path}",
    }


class _SessionsMixin:
    """What the page and its JSON view share: the store, who may see what, the rows."""

    store_url: str = DEFAULT_URL
    keep_finished: timedelta = timedelta(days=7)
    sharing: bool = True

    def initialize(self, store_url: str = DEFAULT_URL, keep_days: float = 7, sharing: bool = True) -> None:
        self.store_url, self.keep_finished = store_url, timedelta(days=keep_days)
        self.sharing = sharing

    def sees_everyone(self) -> bool:
        return bool(self.has_scope("read:servers"))  # type: ignore[attr-defined]

    def may_see(self, user: str) -> bool:
        return bool(self.has_scope(f"read:servers!user={user}"))  # type: ignore[attr-defined]

    async def rows(self, *, user: str | None, limit: int, offset: int) -> dict[str, Any]:
        store = await shared_store(self.store_url, self.keep_finished)
        await _purge_now_and_then(store)
        records, total = await store.list(user=user, limit=limit, offset=offset)
        now = datetime.now(timezone.utc)
        handler: Any = self
        rows = []
        for record in records:
            if not self.may_see(record.user):
                continue
            owner = handler.users.get(record.user) if hasattr(handler, "users") else None
            spawner = _spawner_of(owner, record.server_name)
            active = bool(spawner is not None and spawner.active and _same_job(spawner, record.job_id))
            warn = getattr(spawner, "walltime_warning_minutes", None)
            rows.append(row_json(record, now=now, active=active, base_url=handler.hub.base_url,
                                 user_prefix=owner.prefix if owner is not None else f"/user/{record.user}/",
                                 app_name=_app_name(spawner or _any_spawner_of(owner), record.app),
                                 warn_before=ENDING_SOON if warn is None else timedelta(minutes=warn)))
        return {"sessions": rows, "total": total, "offset": offset, "limit": limit}


#: When each store was last purged of finished sessions older than it keeps (by store).
_PURGED: dict[int, float] = {}
PURGE_EVERY = 3600.0


async def _purge_now_and_then(store: Any) -> None:
    """Drop the finished sessions the store no longer keeps, at most once an hour per store."""
    import time

    now = time.monotonic()
    if now - _PURGED.get(id(store), -PURGE_EVERY) >= PURGE_EVERY:
        _PURGED[id(store)] = now
        await store.purge()


def _server_path(user: str, server_name: str) -> str:
    """``alice/desk`` (``alice`` for the default server), quoted: the tail of the hub's spawn and
    spawn-pending URLs."""
    return quote(user) + (f"/{quote(server_name)}" if server_name else "")


def _spawner_of(owner: Any, server_name: str) -> Any:
    """The hub's spawner of a user's server (loaded from the hub's database if need be: a stopped
    server's is not kept loaded), or None for a server the hub no longer has."""
    if owner is None or server_name not in owner.orm_spawners:
        return None
    return owner.spawners[server_name]


def _any_spawner_of(owner: Any) -> Any:
    """One of a user's spawners, for what every spawner of the hub knows alike (the apps' names) of
    a session whose server is gone; None when the user has none."""
    if owner is None:
        return None
    return next(iter(owner.spawners.values()), None) or next(
        (owner.spawners[name] for name in owner.orm_spawners), None)


def _same_job(spawner: Any, job_id: str) -> bool:
    job = getattr(spawner, "job", None)
    return job is None or getattr(job, "job_id", job_id) == job_id


def _app_name(spawner: Any, app: str) -> str:
    try:
        return spawner.app_registry()[app].display_name if spawner is not None else app
    except Exception:  # a spawner of another class, or an app no longer declared
        return app


def _int_argument(handler: web.RequestHandler, name: str, default: int, most: int) -> int:
    text = handler.get_argument(name, str(default))
    if not text.isdigit():
        raise web.HTTPError(400, f"{name} must be a whole number")
    return min(int(text), most)


def next_session_name(user: Any) -> str:
    """The first free ``session-N`` among ``user``'s servers (the name "New session" starts)."""
    taken = set(user.orm_spawners) if user is not None else set()
    number = 1
    while f"session-{number}" in taken:
        number += 1
    return f"session-{number}"


class SessionsPageHandler(_SessionsMixin, BaseHandler):
    """``GET /hub/sessions``: the page (rows are filled in by its script from the JSON view)."""

    def may_share(self) -> bool:
        """Whether the page offers Share: sharing is on and the hub lets this user share their own
        servers (the scope the share-code API asks for), so a button never leads to a 403."""
        user = self.current_user
        return bool(self.sharing and user is not None and self.has_scope(f"shares!user={user.name}"))

    @web.authenticated
    async def get(self) -> None:
        html = await self.render_template("pw_sessions.html", see_all=self.sees_everyone(),
                                          new_server_name=next_session_name(self.current_user),
                                          sharing=self.may_share())
        self.finish(html)


class SessionsAPIHandler(_SessionsMixin, APIHandler):
    """``GET /hub/sessions/api/sessions?user=&limit=&offset=``: ``{"sessions": [row, ...], "total": n}``."""

    async def get(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "log in, or send a token")
        wanted = self.get_argument("user", "") or None
        limit = _int_argument(self, "limit", 20, 200)
        offset = _int_argument(self, "offset", 0, 10**9)
        if self.sees_everyone():
            user = wanted
        elif wanted is not None:
            # A filtered scope (read:servers!user=alice, a role for a helpdesk) reads that user's rows.
            if not self.may_see(wanted):
                raise web.HTTPError(403, "you may not see that user's sessions")
            user = wanted
        else:
            user = getattr(self.current_user, "name", None)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(await self.rows(user=user, limit=limit, offset=offset)))


class RelaunchAPIHandler(_SessionsMixin, APIHandler):
    """``POST /hub/sessions/api/relaunch`` with ``{"user", "server_name", "job_id", "edit"}``: get a
    server ready to start again with a session's options.

    The options are the session's own (from the store, not from the request), so a relaunch asks for
    nothing the user could not choose on the spawn form, and they are checked again when the server
    starts. The server is the session's own when it is stopped, else a new ``session-N`` (a second
    session like a running one). With ``edit`` the options become that server's saved options, which
    the spawn form shows pre-filled, and the answer's ``spawn_url`` is the form; without, the answer
    carries the ``options`` and the hub API path (``server_api``) that starts the server with them
    as they are, through the hub's own API and its checks, and then ``pending_url``.
    """

    async def post(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "log in, or send a token")
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "send a JSON object with user, server_name and job_id")
        user, server_name, job_id = (body.get(key) for key in ("user", "server_name", "job_id"))
        if not (isinstance(user, str) and isinstance(server_name, str) and isinstance(job_id, str)):
            raise web.HTTPError(400, "user, server_name and job_id must be strings")
        edit = body.get("edit", False)
        if not isinstance(edit, bool):
            raise web.HTTPError(400, "edit must be true or false")
        # Starting someone's server needs the scope the hub's own API asks for.
        if not self.has_scope(f"servers!user={user}"):
            raise web.HTTPError(404, "no such session")
        store = await shared_store(self.store_url, self.keep_finished)
        record = await store.get(user, server_name, job_id)
        owner = self.find_user(user)
        if record is None or owner is None:
            raise web.HTTPError(404, "no such session")
        target = record.server_name
        current = _spawner_of(owner, target)
        if current is not None and (current.active or current.pending):
            target = next_session_name(owner)
        if target not in owner.orm_spawners:
            await self._check_named_server_request(owner, target, target)
            spawner = owner.get_or_create_spawner(target, target, replace_failed=True)
        else:
            spawner = owner.get_spawner(target, replace_failed=True)
        spawn_path = _server_path(owner.name, target)
        base = self.hub.base_url
        answer: dict[str, Any] = {"server_name": target, "spawn_url": f"{base}spawn/{spawn_path}",
                                  "pending_url": f"{base}spawn-pending/{spawn_path}"}
        if edit:
            spawner.orm_spawner.user_options = spawner.user_options = dict(record.options)
            self.db.commit()
        else:
            answer["options"] = record.options
            answer["server_api"] = (f"users/{quote(owner.name)}/servers/{quote(target)}" if target
                                    else f"users/{quote(owner.name)}/server")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))


def sessions_handlers(store_url: str = DEFAULT_URL, keep_days: float = 7,
                      sharing: bool = True) -> list[tuple[str, Any, dict[str, Any]]]:
    """The hub handlers of the page, its JSON view and its script, for ``c.JupyterHub.extra_handlers``.
    ``sharing`` off: the page offers no Share action."""
    options = {"store_url": store_url, "keep_days": keep_days, "sharing": sharing}
    return [
        (r"/sessions/?", SessionsPageHandler, options),
        (r"/sessions/api/sessions", SessionsAPIHandler, options),
        (r"/sessions/api/relaunch", RelaunchAPIHandler, options),
        (r"/sessions/static/(sessions\.js|ending\.js)", web.StaticFileHandler, {"path": STATIC}),
    ]


#: The scope JupyterHub (5+) asks of a user who makes a share code for their own server. Sharing with
#: a user or group by name would need ``read:users:name``/``read:groups:name`` too, which lets every
#: user list everyone's names: share codes (a link) need neither, so they are not granted.
SHARE_SCOPE = "shares!user"


def grant_sharing(c: Any) -> None:
    """Let every user share their own servers: add :data:`SHARE_SCOPE` to the hub's ``user`` role
    (which every user holds) in ``c.JupyterHub.load_roles``, keeping the roles already there.

    A ``user`` role the config defines gets the scope added to its own; else one is appended with
    ``self`` (the default role's scope) and any ``extra_user_scopes`` (JupyterHub 6), which the hub
    ignores once the role is defined here. A ``user`` role defined after this call would clash
    with this one (JupyterHub refuses a role defined twice) or replace it (assigned, not appended).
    Accepting a share code needs no scope: being logged in is enough, and the share it makes
    grants ``access:servers!server=<owner>/<server>``.
    """
    from traitlets.config.loader import LazyConfigValue

    roles = c.JupyterHub.get("load_roles", [])
    if isinstance(roles, LazyConfigValue):  # c.JupyterHub.load_roles.append(...) before any assignment
        roles = roles.get_value([])
    roles = [dict(role) for role in roles]
    extra = sorted(c.JupyterHub.get("extra_user_scopes", set()))
    for role in roles:
        if role.get("name") == "user":
            # Without scopes of its own it has the default role's, which the hub merges in.
            scopes = list(role.get("scopes", ["self", *extra]))
            if SHARE_SCOPE not in scopes:
                scopes.append(SHARE_SCOPE)
            role["scopes"] = scopes
            break
    else:
        roles.append({"name": "user", "scopes": ["self", *extra, SHARE_SCOPE]})
    c.JupyterHub.load_roles = roles


def configure_sessions_page(c: Any, store_url: str | None = None, keep_days: float = 7,
                            sharing: bool = True) -> None:
    """Turn the sessions page on in a ``jupyterhub_config.py``: its handlers, the navbar item, named
    servers (so a user runs a notebook and a desktop at once), and the spawner's journal writing to
    the same store.

    ``sharing`` (on by default) lets users share a running session with another hub user: the page
    offers Share (a link with a JupyterHub share code) and Revoke sharing, and every user gets the
    scope JupyterHub asks for to share their own servers (:func:`grant_sharing`). Off, the page offers
    neither and no scope is granted, so the hub's share API refuses users too (403); admins keep
    theirs (the hub's admin role has ``shares``), as do roles the config grants it to itself.
    """
    url = store_url or c.PWSpawner.get("sessions_db_url", DEFAULT_URL)
    c.PWSpawner.sessions_db_url = url
    c.PWSpawner.sessions_keep_days = keep_days
    handlers = sessions_handlers(url, keep_days, sharing=sharing)
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), *handlers]
    c.JupyterHub.template_paths = [TEMPLATES, *c.JupyterHub.get("template_paths", [])]
    c.JupyterHub.allow_named_servers = True
    if sharing:
        grant_sharing(c)


__all__ = ["DEFAULT_URL", "SHARE_SCOPE", "RelaunchAPIHandler", "SessionsAPIHandler", "SessionsPageHandler",
           "configure_sessions_page", "grant_sharing", "next_session_name", "row_json", "sessions_handlers",
           "time_left"]

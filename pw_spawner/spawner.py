"""PWSpawner: JupyterHub's spawner for interactive apps on the hub host, Slurm or PBS.

It wires the parts and holds no parsing or quoting of its own: profiles validate the user's choice,
scripts renders the job script, a scheduler submits and follows it through an executor, and the job's
service.json says when the app listens and where. Every expected failure reaches the spawn page as a
message (``SpawnException``), and every job the hub no longer wants is cancelled.
"""

from __future__ import annotations

import asyncio
import copy
import html
import inspect
import os
import pwd
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any as AnyTrait
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    observe,
    validate,
)
from traitlets.config import LoggingConfigurable

from .accounts import UnsafeNameError, check_name, refuse_shared_account, uses_username
from .apps import App, AppLaunch, LaunchContext, old_setting_names, registry
from .apps.declared import AppDefinitionError, app_class, load_definitions
from .errors import spawn_error
from .form import options_from_form, render_form
from .options import OptionsError, Selection, validate_options
from .profiles import Profile, ProfileError, build_profiles
from .remote.executor import Executor, ExecutorError, LocalExecutor, UntrustedFileError
from .remote.ssh import SSHExecutor
from .remote.ssh_pool import connection
from .remote.tunnel import TunnelError
from .remote.tunnel_client import InlineTunnels, TunnelProcessClient, Tunnels
from .remote.wakeup import Wakeup
from .resources import Resource, ResourceError, build_resources
from .schedulers import (
    JobRef,
    Scheduler,
    SchedulerError,
    SettingsError,
    SubmitError,
    get_scheduler,
    scheduler_class,
    scheduler_help,
    scheduler_kinds,
)
from .schedulers.cache import StatusCache
from .schedulers.reasons import queue_words
from .schedulers.visibility import query_scope, warn_per_user_queries
from .scripts import DEFAULT_JOB_NAME_TEMPLATE, ScriptRequest, job_name_for, render_script
from .sessions.journal import SessionJournal, clock_words, ended_in_words
from .status import (
    MAX_SERVICE_BYTES,
    JobState,
    ServiceStatus,
    ServiceStatusError,
    app_host,
    check_identity,
    clean_message,
    is_an_earlier_jobs_last_word,
    listener_uids,
)

STATE_VERSION = 1
#: The most progress events one start keeps (a job's STARTING notes are its own text).
MAX_EVENTS = 100
#: For this long after a start began to follow its job, the follow loop pauses at most
#: FOLLOW_EARLY_PAUSE seconds. Measured on a real Slurm (benchmarks/bench_slurm_spawn.py): a job that
#: wrote RUNNING was seen 60 ms later (median), against 330 ms with pauses grown to 0.4 s by then.
FOLLOW_EARLY_SECONDS = 10.0
FOLLOW_EARLY_PAUSE = 0.25


class InvalidServiceRecord(Exception):
    """The job wrote a service.json the hub does not accept: the start fails, the job is cancelled."""


def _old_app_settings() -> type[LoggingConfigurable]:
    """A base class with the apps' settings under their former PWSpawner names (c.PWSpawner.vnc_geometry),
    so that old configurations keep working: :meth:`PWSpawner.make_app` hands them to the app (whose
    own section, e.g. c.VNCApp.geometry, is the new place) with a deprecation warning."""
    table = old_setting_names()
    # Each reads as the app's own default until it is set (so old code reading it still works).
    members: dict[str, Any] = {
        old: AnyTrait(copy.copy(cls.class_traits()[new].default_value), config=True,
                      help=f"Deprecated: use c.{cls.__name__}.{new}.")
        for old, (cls, new) in table.items()}

    def check(self: Any, proposal: dict[str, Any]) -> Any:
        # Refused at start-up as the app's own setting would be (a bad vnc_geometry, say).
        cls, new = table[proposal["trait"].name]
        setattr(cls(), new, proposal["value"])
        return proposal["value"]

    def given(self: Any, change: dict[str, Any]) -> None:
        self.__dict__.setdefault("old_app_settings_given", set()).add(change["name"])

    members["_check_old_app_settings"] = validate(*table)(check)
    members["_note_old_app_settings"] = observe(*table)(given)
    return type("PWSpawnerOldAppSettings", (LoggingConfigurable,),
                {**members, "__module__": __name__, "__doc__": _old_app_settings.__doc__})


class PWSpawner(Spawner, _old_app_settings()):  # type: ignore[misc]
    """Runs the user's app as a job: on the hub host (``local``), or through Slurm or PBS."""

    # ---------------------------------------------------------------- configuration

    profile_list = Union(
        [List(), AnyTrait()],
        default_value=[],
        config=True,
        help="""Profiles offered on the spawn page, as a list of dicts in the profile schema
        (KubeSpawner's shape: slug, display_name, description, default, plus job, environments,
        apps, overrides, groups, forbidden_env), or a callable (spawner) -> list, which may be async.
        Used together with the files of `profiles_dir`.""",
    )
    profiles_dir = Unicode(
        "",
        config=True,
        help="A directory of profile YAML files (one profile, or a list of them, per file), read at each "
        "spawn so that edits need no hub restart. Check them with `pw-spawner check`.",
    )
    scheduler = CaselessStrEnum(
        list(scheduler_kinds()),
        default_value="local",
        config=True,
        help="Where jobs run (the schedulers this installation has): " + scheduler_help(),
    )
    scheduler_settings = Dict(
        config=True,
        help="""The site's settings of the scheduler named by `scheduler`, by name, e.g. for Grid
        Engine {"parallel_environment": "mpi", "memory_resources": ["mem_free"]}. What each
        scheduler takes is on its page of the documentation; an unknown name or a bad value stops
        the hub at start (with pw_spawner.cli.check_config) and fails a spawn with a message. A
        resource (a cluster over SSH) gives its own, in its `scheduler_settings`.""",
    )
    exec_prefix = List(
        Unicode(),
        default_value=[],
        config=True,
        help="""A prefix for every command the spawner runs, formatted with {username}, e.g.
        ["sudo", "-u", "{username}", "--"] so that jobs are submitted as the user (batchspawner's
        exec_prefix). Empty: commands run as the hub's own user. On the hub host only: on a
        resource (SSH), commands run as its `ssh_user`.""",
    )
    job_dir_root = Unicode(
        "~/.pw_spawner/jobs",
        config=True,
        help="Where job directories (script output, service.json) are made; `~` is the home of the "
        "account jobs run as. Each server gets `<job_dir_root>/<job name>`, mode 0700.",
    )
    job_name_template = Unicode(
        DEFAULT_JOB_NAME_TEMPLATE,
        config=True,
        help="The readable part of the job's name in the scheduler; {username}, {servername} and "
        "{servername_suffix} (`-<name>` for named servers) are filled in. The spawner appends a short "
        "hash of the user and server names, so that every (user, server) has a name of its own (a "
        "restarted hub finds jobs by it, and a start cancels the leftovers that carry it): alice's "
        "server `x` and user `alice-x`'s default server never share one.",
    )
    allow_shared_account = Bool(
        False,
        config=True,
        help="""Allow a configuration in which different users' jobs run as one account: no
        {username} in `exec_prefix` (jobs on the hub host then run as the hub's own account), or
        a resource whose `ssh_user` is a fixed service account. Such jobs can read each other's
        job scripts, which hold the users' API tokens, and on the local target the hub's own
        files and environment (its database, cookie secret and the proxy's token). Off, such a
        configuration is refused at hub start (`check_config`, `pw-spawner check`) and at every
        spawn. Turn it on only where every user is trusted with every other's servers, e.g. a
        single-user or demo machine.""",
    )
    bind_ip = Unicode(
        "",
        config=True,
        help="The address the app binds on its node. Default: 127.0.0.1 for the local target, "
        "0.0.0.0 for scheduler targets (the hub must reach the node).",
    )
    connect_host = Unicode(
        "",
        config=True,
        help="The host the proxy connects to. Default: the HOST the job wrote to service.json "
        "(its node's hostname, or its bind address).",
    )
    forbidden_env_names = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Environment variable names users may not set from the spawn page in any profile "
        "(JUPYTERHUB_*, PW_*, SLURM_*, PBS_* and HOME/USER are always reserved).",
    )
    setup_lines = List(
        Unicode(),
        default_value=[],
        config=True,
        help="""Shell lines inserted into every job script before the environment is set up,
        as written (not quoted: they are the admin's, like extra_directives). The batch shell is
        not a login shell, so where `module` is a shell function defined by /etc/profile.d it
        may be missing; e.g. ["source /etc/profile.d/modules.sh"] (Environment Modules) or
        ["source /etc/profile.d/lmod.sh"] (Lmod) makes `module load` work.""",
    )
    script_template_dirs = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Directories searched before the built-in templates (job.sh.j2, app_*.sh.j2), so an "
        "admin can override the submit script's layout.",
    )
    status_interval = Float(
        1.0,
        config=True,
        help="Seconds between status checks while a job is queued and starting.",
    )
    unknown_state_grace = Float(
        300.0,
        config=True,
        help="How long poll() tolerates scheduler queries that fail (state unknown) before it "
        "says the server is gone. A failing squeue is not a dead job.",
    )
    stop_timeout = Float(
        60.0,
        config=True,
        help="How long stop() waits for the scheduler to report the job ended after cancelling it.",
    )
    walltime_warning_minutes = Integer(
        10,
        min=0,
        max=1000,
        config=True,
        help="""How many minutes before a session's walltime ends it is flagged: the job asks its
        scheduler for a warning signal then (Slurm: ``--signal=B:USR1@<seconds>``; Slurm is the
        only scheduler with a warning that reaches the job's shell alone, see the schedulers'
        pages) and records the end in service.json (``ENDS_AT``); the sessions page highlights
        the row from then and says how long is left. 0 turns the warning off.""",
    )
    job_niceness = Integer(
        19,
        min=0,
        max=19,
        config=True,
        help="""How much lower than the hub's the CPU priority of jobs is where they share a host
        with others: the hub's host (``local``) or a login node (``controller``); batch jobs are
        left alone. The hub and its proxy then stay responsive while users' apps boot or compute
        (an idle machine runs a niced app at full speed, and jobs share the CPU among themselves
        as before). On Linux the job's session's scheduling group (autogroup) is lowered as well,
        without which a process's niceness counts only among its own session's processes. Each
        job is a group of its own, so many jobs weigh together: a hundred booting at niceness 10
        outweigh the hub ten to one, at 19 about three to two. 0 runs jobs at the hub's priority.""",
    )
    batch_window = Float(
        0.05,
        config=True,
        help="How long a status refresh waits to gather the servers that ask at about the same moment "
        "(at hub start JupyterHub polls every server at once): they share one scheduler query.",
    )
    status_refresh_interval = Float(
        0.0,
        config=True,
        help="""How old an answer about a running job poll() accepts, in seconds; 0 (the default)
        means the spawner's poll_interval (JupyterHub's 30 s). One scheduler query per cluster
        refreshes every job the hub follows there, so the cost is one query per cluster per
        interval whatever the number of servers, and a job that ended is seen within two poll
        intervals at most. Starts in progress ask for fresher answers themselves.""",
    )
    status_query_scope = CaselessStrEnum(
        ["auto", "cluster", "user"],
        default_value="auto",
        config=True,
        help="""Whose jobs one status query answers for. `cluster`: one query for every user's
        jobs, run as the hub's account or behind `status_query_prefix`, which must see every
        user's jobs. `user`: one query per user, behind `exec_prefix` (for schedulers that show an
        account only its own jobs). `auto`: `cluster` when jobs run as the hub's account, when
        `status_query_prefix` is set, or when the scheduler shows other users' jobs (Slurm
        without `PrivateData=jobs`, asked once with `scontrol show config`; PBS and the local
        target when the hub is root); `user` otherwise, with a warning at the first poll that
        says what to configure.""",
    )
    status_query_prefix = List(
        Unicode(),
        default_value=[],
        config=True,
        help="""A prefix for status queries (squeue, qstat, the local runner's status), for an
        account that sees every user's jobs, e.g. ["sudo", "-n", "-u", "slurmops", "--"] with a
        Slurm operator where PrivateData=jobs is set. Empty: the hub's own account. No
        {username}: one account asks for everyone.""",
    )
    resources = List(
        AnyTrait(),
        default_value=[],
        config=True,
        help="""Clusters reached over SSH (asyncssh), offered on the spawn form as "Service host".
        Each is a dict: name, display_name, host (or hosts: login nodes tried in order), port,
        ssh_user ("{username}": the hub user's own account, or a fixed service account), key_file
        and/or agent_path ({username} may be filled in), known_hosts (required: host keys are
        always verified), scheduler (slurm, pbs, torque, or controller: the app runs on the login
        node itself), job_dir_root, profiles (slugs offered there; empty: all), groups, env (set
        for every command, e.g. SLURM_CONF), and how jobs reach the hub's API: hub_connect_url
        ("http://hub.example.org:8081") or hub_api_forward ({bind_host, bind_port, connect_host}:
        a reverse forward through the SSH connection). Empty: jobs run as `scheduler` says, on
        the hub host.""",
    )
    tunnel_mode = CaselessStrEnum(
        ["process", "inline"],
        default_value="process",
        config=True,
        help="""Where the SSH forwards to remote apps live: `process` (default) in the tunnel
        process (`pw-spawner tunnel`), which keeps users' traffic off the hub's event loop and
        keeps sessions connected across hub restarts; `inline` in the hub process itself.""",
    )
    tunnel_socket = Unicode(
        "~/.pw_spawner/tunnel/tunnel.sock",
        config=True,
        help="The tunnel process's API socket (mode 0600, in a 0700 directory of the hub's account).",
    )
    tunnel_autostart = Bool(
        True,
        config=True,
        help="Start the tunnel process (detached, so it outlives the hub) when nothing answers on "
        "`tunnel_socket`. Off: run `pw-spawner tunnel --socket ...` yourself, e.g. as a systemd unit.",
    )
    job_start_timeout = Integer(
        300,
        config=True,
        help="Seconds the job itself waits for the app to listen before it reports FAILED.",
    )

    # ---------------------------------------------------------------- apps (RStudio, VNC, Xpra)
    # What the job launches; see pw_spawner.apps. These apps run behind jupyter-standaloneproxy.

    default_app = Unicode(
        "",
        config=True,
        help="The app started when the user picks none (jupyter, rstudio, vnc or xpra) and the profile "
        "offers it; otherwise the profile's first app. The sibling spawners (pw-rstudio, pw-vnc, "
        "pw-xpra) set it to theirs.",
    )
    standaloneproxy_cmd = List(
        Unicode(),
        default_value=["jupyter-standaloneproxy"],
        config=True,
        help="""The command of jupyter-server-proxy's standalone proxy on the nodes (`pip install
        'jupyter-server-proxy[standalone]'`, 4.5 or newer), found in the job's environment. It puts
        hub authentication (the server's owner only) in front of RStudio, VNC and Xpra.""",
    )
    app_definitions: List[Any] = List(
        config=True,
        help="""Web apps declared as data, each a dict: name, display_name, command (a list of words
        with a {port} or {unix_socket} placeholder, and {prefix} for the server's URL prefix), listen
        (port or unix_socket), landing_path, websockets, ready_path, scheme, absolute_url,
        environment, modules. A profile offers one by name in its `apps`. Every declared app runs
        behind jupyter-standaloneproxy (its owner only). The schema: `pw-spawner schema apps`.""",
    )
    apps_dir = Unicode(
        "",
        config=True,
        help="A directory of YAML files of app definitions (one, or a list, per file; the same keys as "
        "`app_definitions`), read at each spawn like `profiles_dir`.",
    )

    sessions_db_url = Unicode(
        "",
        config=True,
        help="""Where the sessions page's history goes (a SQLAlchemy URL: sqlite:///pw_sessions.sqlite
        next to the hub's database, or a PostgreSQL URL). Empty: no history is written. Set by
        pw_spawner.sessions.configure_sessions_page, which also turns the page on.""",
    )
    sessions_keep_days = Float(
        7.0,
        config=True,
        help="How many days the sessions page keeps finished sessions.",
    )

    @validate("app_definitions")
    def _check_app_definitions(self, proposal: dict[str, Any]) -> list[Any]:
        try:
            load_definitions(proposal["value"])
        except AppDefinitionError as exc:
            raise TraitError(str(exc)) from None
        return list(proposal["value"])

    # Queued HPC jobs take longer than the hub's default minute.
    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        return 900

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

    # The job's environment comes from its profile; the hub's PATH or conda env mean nothing on a node.
    @default("env_keep")
    def _default_env_keep(self) -> list[str]:
        return []

    @default("options_form")
    def _default_options_form(self):
        return PWSpawner._options_form_html

    # JupyterHub >= 5.3 runs this hook after group_overrides and before start(), and warns about
    # "unhandled user_options" without one. The options only pick from the profiles, so the hook
    # validates them: a bad choice is refused (HTTP 400) before anything runs, against the
    # configuration as group_overrides left it. It sets no traits, so it cannot undo an override.
    # Older hubs have no such trait and ignore this default.
    @default("apply_user_options")
    def _default_apply_user_options(self):
        return PWSpawner._check_user_options

    @staticmethod
    async def _check_user_options(spawner: PWSpawner, user_options: dict[str, Any]) -> None:
        await spawner.selection(user_options)

    @validate("resources")
    def _validate_resources(self, proposal: dict[str, Any]) -> list[Any]:
        # A bad resource is a startup error naming it, not a failure at someone's spawn.
        try:
            build_resources(proposal["value"])
        except ResourceError as exc:
            raise TraitError(str(exc)) from None
        return proposal["value"]

    # ---------------------------------------------------------------- runtime state

    job: JobRef | None = None
    #: The resource this server runs on (None: the hub host), the login node it uses, and the
    #: hub-side port of its tunnel.
    resource: Resource | None = None
    ssh_host: str | None = None
    tunnel_port: int | None = None
    job_node = Unicode(None, allow_none=True)
    service: ServiceStatus | None = None
    _started_unknown_at: float | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._progress_done = False
        self._last_form: dict[str, Any] | None = None
        self._starting = False
        #: When poll() last read service.json for the walltime warning (monotonic), and whether it
        #: has seen the job's ENDS_AT.
        self._ends_read_at, self._ends_at_seen = -1e9, False
        refused = self.shared_account_refusal()
        if refused:
            self.log.error("pw_spawner: %s", refused)

    def shared_account_refusal(self) -> str | None:
        """Why this configuration is refused (users' jobs would share an account), or None."""
        return refuse_shared_account(self.scheduler, self.exec_prefix, self.resources,
                                     self.allow_shared_account)

    # ---------------------------------------------------------------- parts

    def _format(self, text: str, *, account: bool = False) -> str:
        """``text`` with {username}, {servername} and {servername_suffix} filled in.

        The names it uses are checked first (UnsafeNameError): for a path (no "/", "..", blanks),
        and with ``account`` for a login name (sudo -u, ssh). The job name is made otherwise
        (:func:`~pw_spawner.scripts.job_name_for`: sanitised and made unique by a hash).
        """
        server = self.name or ""
        if "{username}" in text:
            check_name("user", self.user.name, account=account)
        if server and "{servername" in text:
            check_name("server", server)
        return text.format(username=self.user.name, servername=server,
                           servername_suffix=f"-{server}" if server else "")

    @property
    def job_name(self) -> str:
        """This server's job name, distinct for every (user, server) (see scripts.job_name_for)."""
        return job_name_for(self.user.name, self.name or "", self.job_name_template)

    def make_executor(self) -> Executor:
        """Where commands run: the resource's login node over SSH, or the hub host."""
        if self.resource is not None:
            return SSHExecutor.for_target(self.ssh_target(), env=self.resource.env)
        prefix = [self._format(part, account=True) for part in self.exec_prefix]
        return LocalExecutor(prefix=prefix, username=self.user.name if prefix else None)

    def ssh_target(self, host: str | None = None):
        """The SSH target of this server's resource (its chosen login node, or ``host``)."""
        if self.resource is None:
            raise RuntimeError("ssh_target() of a server that runs on the hub host")
        # The hub user's name becomes a login (or a key's path): refuse names such as "#1000".
        username = check_name("user", self.user.name, account=uses_username([self.resource.ssh_user]))
        return self.resource.target(host or self.ssh_host or self.resource.hosts[0], username)

    @property
    def scheduler_kind(self) -> str:
        return self.resource.scheduler if self.resource is not None else self.scheduler

    @property
    def scheduler_site_settings(self) -> dict[str, Any]:
        """The site's settings for this server's scheduler: its resource's, or the spawner's."""
        own = self.resource.scheduler_settings if self.resource is not None else self.scheduler_settings
        return dict(own)

    def make_scheduler(self) -> Scheduler:
        try:
            return get_scheduler(self.scheduler_kind, job_niceness=self.job_niceness,
                                 settings=self.scheduler_site_settings)
        except SettingsError as exc:
            raise spawn_error("The scheduler is misconfigured; please tell the administrators.",
                              reason="bad-config", log_message=f"scheduler_settings: {exc}") from None

    async def status_cache(self) -> StatusCache:
        """The cache that answers for this server's job: one per cluster and query account."""
        scheduler = self.make_scheduler()
        executor: Executor
        if self.resource is not None:
            # Over SSH the query runs as the resource's query login where the admin named one,
            # else as the server's own SSH account: one cache per such account.
            query_login = self.resource.status_query_target()
            if query_login is not None:
                executor = SSHExecutor.for_target(query_login, env=self.resource.env)
            else:
                executor = self.make_executor()
                if uses_username([self.resource.ssh_user]):
                    warn_per_user_queries(self.resource.name, log=self.log)
            key: tuple[Any, ...] = ("resource", self.resource.name, executor.account)
        else:
            scope = await query_scope(self.status_query_scope, self.scheduler_kind, self.exec_prefix,
                                      self.status_query_prefix, log=self.log)
            if scope == "cluster":
                executor = LocalExecutor(prefix=self.status_query_prefix)
                key = ("hub", self.scheduler_kind, tuple(self.status_query_prefix))
            else:
                executor = self.make_executor()
                key = ("hub", self.scheduler_kind, tuple(getattr(executor, "prefix", ())))
        interval = self.status_refresh_interval or float(self.poll_interval)
        # A query that runs in the hub's own process costs no command: nothing to gather it for.
        window = 0.0 if executor.in_hub_process else self.batch_window
        return StatusCache.shared(key, lambda: StatusCache(
            scheduler, executor, refresh_interval=interval, window=window))

    def tunnels(self) -> Tunnels:
        if self.tunnel_mode == "inline":
            return InlineTunnels()
        return TunnelProcessClient(os.path.expanduser(self.tunnel_socket), autostart=self.tunnel_autostart)

    @property
    def tunnel_key(self) -> str:
        return f"{self.user.name}/{self.name or ''}"

    def user_resources(self) -> list[Resource]:
        """The resources this user's groups may use (an invalid config failed at startup)."""
        groups = self._groups()
        return [r for r in build_resources(self.resources) if r.allowed_for(groups)]

    async def load_profiles(self) -> list[Profile]:
        """All configured profiles (config list or callable, and the profiles directory)."""
        source = self.profile_list
        if callable(source):
            source = source(self)
            if inspect.isawaitable(source):
                source = await source
        return build_profiles(source or [], self.profiles_dir or None, apps=self.app_registry())

    async def user_profiles(self) -> list[Profile]:
        """The profiles this user's groups may use."""
        groups = self._groups()
        return [p for p in await self.load_profiles() if p.allowed_for(groups)]

    def _groups(self) -> list[str]:
        return [group.name for group in getattr(self.user, "groups", []) or []]

    # ---------------------------------------------------------------- form

    @staticmethod
    async def _options_form_html(spawner: PWSpawner) -> str:
        try:
            profiles = await spawner.user_profiles()
            apps = spawner.app_registry()
        except ProfileError as exc:
            spawner.log.error("Bad profile configuration: %s", exc)
            return f"<div class='alert alert-danger'>The spawn options are misconfigured: {exc}. " \
                   "Please tell the administrators.</div>"
        except web.HTTPError as exc:
            spawner.log.error("Bad app configuration: %s", exc.log_message)
            said = html.escape(getattr(exc, "jupyterhub_message", ""))
            return f"<div class='alert alert-danger'>{said}</div>"
        if not profiles:
            return "<div class='alert alert-warning'>No job type is available to you.</div>"
        return render_form(profiles, apps=apps,
                           resources=[(r.name, r.display_name, r.profiles)
                                                for r in spawner.user_resources()],
                           values=spawner._last_form or spawner.user_options or {})

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        # Keep what was typed, so the form comes back with it when a field is refused.
        profile = (formdata.get("profile") or [""])[0]
        self._last_form = {"profile": profile, "env": (formdata.get("env") or [""])[0],
                           "resource": (formdata.get("resource") or [""])[0],
                           "logging": bool(formdata.get("logging"))}
        for key, values in formdata.items():
            if key.endswith(f"--{profile}") and values:
                self._last_form[key.rsplit("--", 1)[0]] = values[0]
        try:
            options = options_from_form(formdata)
        except OptionsError as exc:
            raise spawn_error(f"{exc.field}: {exc.message}", reason="invalid-options") from None
        return options

    # ---------------------------------------------------------------- validation and rendering

    async def selection(self, options: dict[str, Any] | None = None) -> Selection:
        """Validate ``options`` (default: ``user_options``) against the profiles this user may use.

        The REST API can send anything, so start() calls this too, after apply_user_options did:
        a pre_spawn_hook may change the configuration in between.
        """
        try:
            profiles = await self.load_profiles()
        except ProfileError as exc:
            raise spawn_error("The spawn options are misconfigured; please tell the administrators.",
                              reason="bad-profile", log_message=str(exc)) from None
        resources = {r.name: r for r in self.user_resources()}
        try:
            selection = validate_options(profiles, self.user_options if options is None else options,
                                         groups=self._groups(), resources=list(resources),
                                         forbidden_env=self.forbidden_env_names,
                                         default_app=self.default_app)
            resource = resources.get(selection.resource or "")
            if resource is not None and not resource.offers(selection.profile.slug):
                raise OptionsError("profile", f"{selection.profile.display_name!r} is not offered on "
                                              f"{resource.display_name!r}")
            return selection
        except OptionsError as exc:
            raise spawn_error(f"{exc.field}: {exc.message}", reason="invalid-options") from None

    def app_registry(self) -> dict[str, type[App]]:
        """Every app this spawner knows: the built-in and installed ones, and those declared in its
        configuration (``app_definitions``, ``apps_dir``); a bad definition is a spawn error."""
        try:
            definitions = load_definitions(self.app_definitions, self.apps_dir or None)
            return registry(app_class(d) for d in definitions)
        except (AppDefinitionError, ValueError) as exc:
            raise spawn_error("The apps are misconfigured; please tell the administrators.",
                              reason="bad-app", log_message=str(exc)) from None

    def make_app(self, cls: type[App], profile_settings: Mapping[str, Any]) -> App:
        """The app with its configuration (its own section, then its settings under their old PWSpawner
        names, then the profile's ``app_settings`` for it)."""
        app = cls(parent=self)
        given = self.__dict__.get("old_app_settings_given", set())
        for old, (owner, new) in old_setting_names().items():
            if owner is cls and old in given:
                _warn_old_name(self, old, f"{cls.__name__}.{new}")
                setattr(app, new, getattr(self, old))
        for name, value in cls.check_profile_settings(profile_settings, "app_settings").items():
            setattr(app, name, value)
        return app

    def app_launch(self, selection: Selection) -> AppLaunch:
        """What the job starts for the app the user chose (``selection.app``)."""
        cls = self.app_registry().get(selection.app)
        if cls is None:
            raise spawn_error(f"app: {selection.app!r} has no launcher", reason="invalid-options")
        try:
            app = self.make_app(cls, selection.profile.app_settings.get(selection.app, {}))
            return app.launch(LaunchContext(
                proxy=tuple(self.standaloneproxy_cmd), singleuser_cmd=tuple(self.cmd),
                singleuser_args=tuple(self.get_args()), default_url=self.default_url,
                options=selection.app_options))
        except (ValueError, TraitError) as exc:
            raise spawn_error(f"The {selection.app} app is misconfigured; please tell the administrators.",
                              reason="bad-app", log_message=str(exc)) from None

    def script_request(self, selection: Selection, job_dir: str, hub_env: dict[str, str]) -> ScriptRequest:
        app = self.app_launch(selection)
        return ScriptRequest(
            selection=selection,
            scheduler=self.make_scheduler().kind,
            scheduler_settings=self.scheduler_site_settings,
            job_name=self.job_name,
            job_dir=job_dir,
            app=app,
            bind_ip=self._bind_ip(),
            hub_env=hub_env,
            start_timeout=self.job_start_timeout,
            setup_lines=self.setup_lines,
            walltime_warning_s=self.walltime_warning_minutes * 60,
        )

    async def job_env(self) -> dict[str, str]:
        """The hub's environment for the job, with the hub's API where the job can reach it."""
        env = self.get_env()
        if self.resource is None:
            return env
        api_url = self.hub.api_url
        if self.resource.hub_connect_url:
            reachable = self.resource.hub_connect_url + urlsplit(api_url).path
        elif self.resource.hub_api_forward is not None:
            reachable = await self._hub_api_forward(api_url)
        else:
            return env
        # JUPYTERHUB_API_URL and the activity URL below it.
        return {k: reachable + v[len(api_url):] if v.startswith(api_url) else v for k, v in env.items()}

    async def _hub_api_forward(self, api_url: str) -> str:
        forward = self.resource.hub_api_forward if self.resource is not None else None
        if forward is None:
            raise RuntimeError("_hub_api_forward() of a server whose resource forwards no hub API")
        parts = urlsplit(api_url)
        hub_port = parts.port or (443 if parts.scheme == "https" else 80)
        target = self.ssh_target()
        try:
            port = await self.tunnels().reverse(f"hub-api/{target.username}@{target.where}", target,
                                                forward.bind_host, forward.bind_port, hub_port)
        except TunnelError as exc:
            raise spawn_error(f"The hub's API could not be forwarded to {target.host}: {exc}",
                              reason="tunnel") from None
        return f"{parts.scheme}://{forward.connect_host}:{port}{parts.path}"

    def render(self, selection: Selection, job_dir: str, hub_env: dict[str, str]) -> str:
        return render_script(self.script_request(selection, job_dir, hub_env), self.script_template_dirs)

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        # The job picks its own port and sets the service URL from it.
        env.pop("JUPYTERHUB_SERVICE_URL", None)
        return {k: v for k, v in env.items() if v is not None}

    def get_args(self) -> list[str]:
        # --ip/--port come from the job script; the rest of the hub's arguments stay.
        return [a for a in super().get_args() if not a.startswith(("--ip=", "--port="))]

    async def job_dir(self, executor: Executor) -> str:
        root = self._format((self.resource.job_dir_root if self.resource else None) or self.job_dir_root)
        if root == "~" or root.startswith("~/"):
            root = (await executor.home()).rstrip("/") + root[1:]
        return f"{root.rstrip('/')}/{self.job_name}"

    # ---------------------------------------------------------------- progress

    def _emit(self, progress: int, message: str) -> None:
        # Status loops say the same thing every second; the page needs each step once. Messages
        # may carry a job's text: one line each, and a bounded list.
        message = clean_message(message)
        if len(self._events) >= MAX_EVENTS or any(event["message"] == message for event in self._events):
            return
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._events_changed.set()
        self._events_changed = asyncio.Event()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Replays every event of this start, then follows new ones (one generator per browser)."""
        seen = 0
        while True:
            changed = self._events_changed
            while seen < len(self._events):
                yield self._events[seen]
                seen += 1
            if self._progress_done:
                return
            await changed.wait()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        self._events, self._progress_done = [], False
        self.service, self.job_node, self._started_unknown_at = None, None, None
        self.resource, self.ssh_host, self.tunnel_port = None, None, None
        self._starting = True
        try:
            refused = self.shared_account_refusal()
            if refused:
                raise spawn_error("This hub's configuration is refused; please tell the administrators.",
                                  reason="shared-account", log_message=refused)
            selection = await self.selection()
            # One thing a message: the profile here, the resources with the submission (display
            # names often carry a summary of their own, and overrides may have changed it).
            self._emit(5, f"Preparing {selection.profile.display_name}")
            if selection.resource:
                self.resource = {r.name: r for r in self.user_resources()}[selection.resource]
                self.ssh_host = await self._reachable_login_node(self.resource)
            executor, scheduler = self.make_executor(), self.make_scheduler()
            try:
                job_dir = await self.job_dir(executor)
                await self._cancel_leftovers(executor, scheduler, job_dir)
            except (ExecutorError, SchedulerError) as exc:
                raise spawn_error(f"The cluster could not be reached: {exc}", reason="scheduler") from None
            script = self.render(selection, job_dir, await self.job_env())
            job = await self._submit(executor, scheduler, script, job_dir, selection.job.summary)
            self._emit(20, f"Submitted job {job.job_id}")
            self._journal_submitted(job, scheduler, selection)
            await self._journal("queued")
            url = await self._follow_until_ready(job)
            # What was typed is kept only to correct a refused start; from now on the form
            # starts from these (saved) user_options.
            self._last_form = None
            return url
        except asyncio.CancelledError:
            self.log.info("%s: start cancelled", self._log_name)
            # Cancel on the sessions page (or Stop on the spawn-pending page) while the job queues:
            # stop() finds no job after this, so the session's row is finished here. Shielded: a
            # second cancellation must not keep the job below from being cancelled.
            try:
                await asyncio.shield(self._journal("finished", "cancelled"))
            except asyncio.CancelledError:
                pass
            await self._cancel_job_quietly()
            raise
        except UnsafeNameError as exc:
            # Names are checked where they are filled into a command or a path, before anything runs.
            await self._cancel_job_quietly()
            raise spawn_error(f"This server cannot be started: {exc}.", reason="bad-name") from None
        except Exception as exc:
            await self._journal("finished", "failed: " + str(getattr(exc, "jupyterhub_message", exc)))
            await self._cancel_job_quietly()
            if not hasattr(exc, "jupyterhub_message"):
                self.log.exception("%s: start failed", self._log_name)
                raise spawn_error(f"The server could not be started: {exc}", reason="error") from exc
            raise
        finally:
            self._starting = False
            self._progress_done = True
            self._events_changed.set()

    async def _reachable_login_node(self, resource: Resource) -> str:
        """The first of the resource's login nodes that takes an SSH login."""
        errors = []
        for host in resource.hosts:
            self._emit(7, f"Connecting to {host}")
            try:
                await connection(self.ssh_target(host), timeout=30)
                return host
            except ExecutorError as exc:
                self.log.warning("%s: %s", self._log_name, exc)
                errors.append(str(exc))
        raise spawn_error(f"{resource.display_name} could not be reached: " + "; ".join(errors),
                          reason="ssh")

    async def _cancel_leftovers(self, executor: Executor, scheduler: Scheduler, job_dir: str) -> None:
        """Jobs under this server's name that no hub state knows (a hub died while they queued)."""
        for job_id in await scheduler.find(executor, self.job_name, job_dir):
            self.log.warning("%s: cancelling leftover job %s", self._log_name, job_id)
            leftover = JobRef(job_id, self.job_name, job_dir)
            await scheduler.cancel(executor, leftover)
            # It shares the job directory: it must be gone before the next job writes there.
            await self._wait_ended(executor, scheduler, leftover)

    async def _wait_ended(self, executor: Executor, scheduler: Scheduler, job: JobRef) -> bool:
        """Wait (up to ``stop_timeout``) until the scheduler reports a cancelled job ended."""
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            info = (await scheduler.query(executor, [job]))[job.job_id]
            if info.state.finished:
                return True
            await asyncio.sleep(0.5)
        self.log.warning("%s: job %s still not ended %.0f s after cancel", self._log_name,
                         job.job_id, self.stop_timeout)
        return False

    async def _submit(self, executor: Executor, scheduler: Scheduler, script: str, job_dir: str,
                      summary: str) -> JobRef:
        self._emit(10, f"Submitting a job for {summary}")
        # A service.json of an earlier job must not be read as this one's (its JOB_ID is checked too).
        try:
            await executor.remove_file(f"{job_dir}/service.json")
        except ExecutorError as exc:
            raise spawn_error(f"The cluster could not be reached: {exc}", reason="scheduler") from None
        task = asyncio.ensure_future(scheduler.submit(executor, script, name=self.job_name, job_dir=job_dir))
        try:
            job_id = await asyncio.shield(task)
        except asyncio.CancelledError:
            # A Stop while sbatch runs: let it finish so the job it made is known and cancelled.
            try:
                job_id = await asyncio.wait_for(task, 60)
            except Exception:
                raise asyncio.CancelledError() from None
            self.job = JobRef(job_id, self.job_name, job_dir)
            raise
        except SubmitError as exc:
            raise spawn_error(exc.message, reason="submit") from None
        self.job = JobRef(job_id, self.job_name, job_dir)
        return self.job

    async def _read_service(self, executor: Executor) -> ServiceStatus | None:
        """The job's service.json through the trust boundary; None while there is none.

        Raises InvalidServiceRecord when the job wrote something the hub does not accept.
        """
        # The job as it was when the read began: a stop() during the read clears self.job, and the
        # caller's next _still_wanted() says so.
        job = self.job
        if job is None:  # stopped meanwhile
            return None
        try:
            text = await executor.read_file(f"{job.job_dir}/service.json", max_bytes=MAX_SERVICE_BYTES)
        except UntrustedFileError as exc:
            raise InvalidServiceRecord(str(exc)) from None
        except ExecutorError as exc:
            self.log.debug("%s: service.json not readable yet: %s", self._log_name, exc)
            return None
        if not text:
            return None
        try:
            service = ServiceStatus.from_json(text)
        except ServiceStatusError as exc:
            raise InvalidServiceRecord(str(exc)) from None
        try:
            check_identity(service, job.job_id)
        except ServiceStatusError as exc:
            if is_an_earlier_jobs_last_word(service):
                # A cancelled job of this server may write its last word after the new one was
                # submitted (its trap runs after Slurm already says CANCELLED): not this job's yet.
                self.log.debug("%s: service.json is an earlier job's: %s", self._log_name, exc)
                return None
            raise InvalidServiceRecord(str(exc)) from None
        return service

    def _refused_record(self, reason: Exception) -> Exception:
        """The spawn-page error for a service record the trust boundary refused."""
        return spawn_error(f"The job reported an invalid service record: {reason}", reason="bad-service",
                           log_message=f"job {self.job.job_id if self.job else '?'}: refused "
                                       f"service.json: {reason}")

    async def _read_service_or_fail(self, executor: Executor) -> ServiceStatus | None:
        try:
            return await self._read_service(executor)
        except InvalidServiceRecord as exc:
            raise self._refused_record(exc) from None

    def _follow_delays(self) -> Iterator[float]:
        """Pauses of the follow loop: short at first (an app may be up within a second), at most
        ``FOLLOW_EARLY_PAUSE`` for the first ``FOLLOW_EARLY_SECONDS`` (a job that has room starts
        within seconds: its start is seen within a quarter second), then growing to
        ``status_interval``. The loop starts them over whenever what it sees changes (the job began
        to run, its service.json said STARTING), since the next change then tends to follow soon.
        The scheduler queries these pauses ask for are shared by every start on the cluster.
        Where the job wakes the loop when it writes service.json (see :mod:`.remote.wakeup`), the
        pauses only cover a job that ended without a word."""
        delay, began = 0.05, time.monotonic()
        while True:
            yield delay
            early = time.monotonic() - began < FOLLOW_EARLY_SECONDS
            delay = min(delay * 1.5, self.status_interval, FOLLOW_EARLY_PAUSE if early else float("inf"))

    async def _follow_until_ready(self, job: JobRef) -> str:
        executor = self.make_executor()
        # On the hub host as the job's own account, the job wakes this loop when service.json changes.
        wakeup = await Wakeup.open(job.job_dir) if executor.in_hub_process else None
        try:
            return await self._follow(executor, wakeup)
        finally:
            if wakeup is not None:
                wakeup.close()

    async def _follow(self, executor: Executor, wakeup: Wakeup | None) -> str:
        cache = await self.status_cache()
        seen_running = False
        seen: tuple[object, ...] = ()
        delays = self._follow_delays()
        while True:
            delay = next(delays)
            job = self._still_wanted()
            # Until the job runs, the scheduler's answer is what changes; once it runs, service.json
            # does, and the scheduler is asked as often as status_interval says.
            info = await cache.status(job, max_age=self.status_interval if seen_running else delay)
            self._still_wanted()
            if info.state is JobState.PENDING:
                # The scheduler's own code for admins, the words for users, and when it may start.
                words = queue_words(self.scheduler_kind, info.reason)
                message = f"Job {job.job_id} is queued" + (f" ({info.reason})" if info.reason else "")
                if words and words != info.reason:
                    message += f": {words}"
                if info.estimated_start is not None:
                    message += f", estimated start {clock_words(info.estimated_start)}"
                self._emit(30, message)
                await self._journal("queued", words, info.estimated_start)
            elif info.state is JobState.UNKNOWN:
                self._emit(30, f"Waiting for the scheduler to answer about job {job.job_id}")
            elif info.state.finished:
                try:
                    service = await self._read_service(executor)
                except InvalidServiceRecord:
                    service = None
                said = service.error_message if service and service.error_message else ""
                raise spawn_error(
                    f"Job {job.job_id} ended ({info.raw_state.lower() or info.state.value}) "
                    f"before the app started" + (f": {said}" if said else "."), reason="job-ended")
            else:
                seen_running = True
                if info.node:
                    self.job_node = info.node
                self._emit(50, f"Job {job.job_id} is running on {info.node or 'its node'}")
                await self._journal("starting", info.node)
                service = await self._read_service_or_fail(executor)
                self._still_wanted()
                now_seen = (info.state, service.job_status if service is not None else None)
                if now_seen != seen:
                    # Just began to run, or the app's set-up moved on: look again soon.
                    seen, delays = now_seen, self._follow_delays()
                    delay = next(delays)
                if service is not None:
                    if service.job_status is JobState.FAILED:
                        raise spawn_error(service.error_message or "The app failed to start.",
                                          reason="app-failed")
                    if service.job_status is JobState.RUNNING and service.port:
                        return await self._ready(service)
                    # While STARTING, the job's note says what it is doing ("starting JupyterLab").
                    note = service.error_message.strip()
                    self._emit(70, note[:1].upper() + note[1:] if note else "Waiting for the app to start")
            if wakeup is not None and seen_running:
                await wakeup.wait(delay)
            else:
                await asyncio.sleep(delay)

    def _still_wanted(self) -> JobRef:
        """The job this start follows; raises if stop() ran meanwhile (stop has cancelled it)."""
        if self.job is None:
            raise spawn_error("The server was stopped before it started.", reason="stopped")
        return self.job

    def _app_host(self, service: ServiceStatus) -> str:
        """Where the app is reached: decided by the hub (the trust boundary), never by the job."""
        # An app the admin binds to loopback is reached on loopback: the node is the hub host (or,
        # for a resource, the login node the tunnel starts from).
        loopback = self._bind_ip().startswith("127.") or self._bind_ip() == "::1"
        admin_host = self.connect_host or ("127.0.0.1" if loopback else "")
        return app_host(service, on_hub_side=scheduler_class(self.scheduler_kind).beside_the_hub,
                        node=self.job_node, connect_host=admin_host)

    def _bind_ip(self) -> str:
        return self.bind_ip or scheduler_class(self.scheduler_kind).default_bind_ip()

    def _hub_ports(self) -> set[int]:
        """The hub's and its proxy's own ports on this host: a job's app can never be one of them."""
        ports = set()
        urls = [self.hub.url if self.hub else "", getattr(self.hub, "api_url", "") if self.hub else ""]
        proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
        urls += [getattr(proxy, "public_url", "") or "", getattr(proxy, "api_url", "") or ""]
        for url in urls:
            try:
                parts = urlsplit(url)
                if parts.port:
                    ports.add(parts.port)
            except ValueError:
                continue
        return ports

    async def _check_local_listener(self, port: int) -> None:
        """On the hub host: the port must be one the job's own account listens on, not the hub's."""
        if port in self._hub_ports():
            raise InvalidServiceRecord(f"PORT {port} is one of the hub's own ports")
        account = self.make_executor().account
        try:
            uid = pwd.getpwnam(account).pw_uid
        except KeyError:
            raise InvalidServiceRecord(f"PORT {port} cannot be checked: no account {account!r}") from None
        uids = await asyncio.to_thread(listener_uids, port)
        if uids != {uid}:
            whose = ", ".join(str(u) for u in sorted(uids)) or "nobody"
            raise InvalidServiceRecord(f"PORT {port} is not the job's own listener (held by uid {whose}, "
                                       f"the job runs as {account})")

    async def _ready(self, service: ServiceStatus) -> str:
        port = service.port
        if port is None:  # the follow loop reaches here only with a port
            raise RuntimeError("_ready() of a service record without a port")
        try:
            host = self._app_host(service)
            if self.resource is None and host in ("127.0.0.1", "localhost"):
                # The app is on the hub host itself, where the hub can see who listens on its port.
                await self._check_local_listener(port)
        except (ServiceStatusError, InvalidServiceRecord) as exc:
            raise self._refused_record(exc) from None
        self.service = service
        if service.slug and not self.default_url:
            # JupyterHub formats default_url with the user's names: braces cannot come from the job.
            self.default_url: str = "/" + service.slug.lstrip("/").replace("{", "").replace("}", "")
        self._emit(90, f"The app is listening on {host}:{service.port}")
        await self._journal("running", self.job_node or host)
        if self.resource is None:
            return f"{service.scheme}://{host}:{service.port}"
        await self._open_tunnel(host, port)
        self._emit(95, f"Tunnel from the hub to {host}:{port} is open")
        return f"{service.scheme}://127.0.0.1:{self.tunnel_port}"

    async def _open_tunnel(self, host: str, port: int) -> None:
        """Forward 127.0.0.1:<tunnel_port> on the hub host to the app at ``host:port`` (the same
        port again after a hub restart, so the proxy's route stays valid)."""
        target = self.ssh_target()
        try:
            self.tunnel_port = await self.tunnels().open(self.tunnel_key, target, host, port,
                                                         self.tunnel_port or 0)
        except (TunnelError, OSError) as exc:
            raise spawn_error(f"The tunnel to {host}:{port} through {target.host} "
                              f"could not be opened: {exc}", reason="tunnel") from None

    async def _close_tunnel(self) -> None:
        if self.resource is None:
            return
        try:
            await self.tunnels().close(self.tunnel_key)
        except (TunnelError, OSError) as exc:
            self.log.warning("%s: could not close the tunnel: %s", self._log_name, exc)
        self.tunnel_port = None

    async def poll(self) -> int | None:
        if self.job is None:
            if not self._starting:
                # A hub that died while this server's job queued saved no state; the job may still
                # be there, and JupyterHub calls no stop() for a server whose poll() says stopped.
                await self._cancel_leftovers_quietly()
            return 0
        job = self.job  # a stop() while this poll waits clears self.job
        cache = await self.status_cache()
        info = await cache.status(job)
        if info.state is JobState.UNKNOWN:
            now = time.monotonic()
            self._started_unknown_at = self._started_unknown_at or now
            if now - self._started_unknown_at > self.unknown_state_grace:
                self.log.warning("%s: job %s unknown for %.0f s, taking it as gone: %s", self._log_name,
                                 job.job_id, now - self._started_unknown_at, info.reason)
                # JupyterHub calls no stop() for a server poll() says is gone: the job is ours to end.
                cache.forget(job.job_id)
                await self._cancel_job_quietly()
                return 1
            return None
        self._started_unknown_at = None
        if info.state.active:
            service = self.service
            if self.resource is not None and service is not None and service.port and self.tunnel_port:
                # After a hub (or tunnel process) restart: the forward again, on its old port.
                try:
                    await self._open_tunnel(self._app_host(service), service.port)
                except Exception as exc:  # a failing tunnel is not a dead job
                    self.log.warning("%s: %s", self._log_name, getattr(exc, "jupyterhub_message", exc))
            await self._note_walltime_warning()
            return None
        cache.forget(job.job_id)
        await self._journal("finished", ended_in_words(self.scheduler_kind, info))
        if info.exit_code not in (None, 0):
            return info.exit_code
        return 1 if info.state is JobState.FAILED else 0

    async def _note_walltime_warning(self) -> None:
        """In a session's last minutes, the end its job recorded at the scheduler's warning
        (service.json's ENDS_AT) goes to the sessions page. service.json is read only then, at
        most once a minute, until it says: a poll costs nothing more the rest of the time."""
        journal = getattr(self, "session_journal", None)
        if journal is None or journal.record.ends is None or self._ends_at_seen:
            return
        warned = scheduler_class(self.scheduler_kind).warns_before_walltime
        if not (self.walltime_warning_minutes and warned):
            return  # no warning was asked for: the job writes no ENDS_AT to read
        left = (journal.record.ends - datetime.now(timezone.utc)).total_seconds()
        if left > self.walltime_warning_minutes * 60 + 120 or time.monotonic() - self._ends_read_at < 60:
            return
        self._ends_read_at = time.monotonic()
        try:
            service = await self._read_service(self.make_executor())
        except Exception as exc:  # a job's broken record ends no session here: poll() says it runs
            self.log.debug("%s: walltime warning not read: %s", self._log_name, exc)
            return
        if service is not None and service.ends_at is not None:
            self._ends_at_seen = True
            await self._journal("ending", datetime.fromtimestamp(service.ends_at, timezone.utc))

    async def stop(self, now: bool = False) -> None:
        if self.job is None:
            return
        job, executor, scheduler = self.job, self.make_executor(), self.make_scheduler()
        await self._close_tunnel()
        await scheduler.cancel(executor, job)
        await self._wait_ended(executor, scheduler, job)
        (await self.status_cache()).forget(job.job_id)
        await self._journal("finished", "cancelled")
        self.job = None

    async def _cancel_leftovers_quietly(self) -> None:
        """Cancel this server's unsaved jobs (found by their name); errors are logged, not raised."""
        # Jobs go to the hub host, or (with resources) to one of the user's resources.
        targets: list[Resource | None] = [*self.user_resources()] or [None]
        try:
            for resource in targets:
                self.resource = resource
                executor, scheduler = self.make_executor(), self.make_scheduler()
                # Bounded: JupyterHub polls every server at its start and waits for all of them.
                await asyncio.wait_for(
                    self._cancel_leftovers(executor, scheduler, await self.job_dir(executor)), 60)
        except (ExecutorError, SchedulerError, UnsafeNameError, OSError, asyncio.TimeoutError) as exc:
            self.log.warning("%s: could not look for leftover jobs: %s", self._log_name, exc)
        finally:
            self.resource = None

    async def _cancel_job_quietly(self) -> None:
        """Cancel the job of a start that will not finish; errors are logged, not raised."""
        job = self.job
        if job is None:
            return
        await self._close_tunnel()
        try:
            await asyncio.shield(self.make_scheduler().cancel(self.make_executor(), job))
            self.log.info("%s: cancelled job %s", self._log_name, job.job_id)
            self.job = None
        except (SchedulerError, ExecutorError, asyncio.CancelledError) as exc:
            self.log.error("%s: could not cancel job %s: %s", self._log_name, job.job_id, exc)

    # ---------------------------------------------------------------- the sessions page's history

    def _journal_submitted(self, job: JobRef, scheduler: Scheduler, selection: Selection) -> None:
        if self.sessions_db_url:
            self.session_journal = SessionJournal.submitted(
                self.sessions_db_url, timedelta(days=self.sessions_keep_days), user=self.user.name,
                server_name=self.name or "", job_id=job.job_id, scheduler=scheduler.kind,
                selection=selection, options=dict(self.user_options or {}))

    async def _journal(self, event: str, *args: Any) -> None:
        """Tell this session's journal (if the page is on) what happened: queued, starting, running
        or finished; after a hub restart the row is read back from the store first."""
        if not self.sessions_db_url or self.job is None:
            return
        journal = getattr(self, "session_journal", None)
        if journal is None or journal.record.job_id != self.job.job_id:
            journal = await SessionJournal.reopen(
                self.sessions_db_url, timedelta(days=self.sessions_keep_days), user=self.user.name,
                server_name=self.name or "", job_id=self.job.job_id)
            if journal is None:
                return
            self.session_journal = journal
        await getattr(journal, event)(*args)

    # ---------------------------------------------------------------- state

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job is not None:
            state["pw_spawner"] = {
                "version": STATE_VERSION,
                "job_id": self.job.job_id,
                "job_name": self.job.name,
                "job_dir": self.job.job_dir,
                "scheduler": self.scheduler,
                "node": self.job_node,
                "service": None if self.service is None else self.service.to_json(),
                "resource": self.resource.name if self.resource is not None else None,
                "ssh_host": self.ssh_host,
                "tunnel_port": self.tunnel_port,
            }
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        saved = state.get("pw_spawner")
        if not saved or saved.get("version") != STATE_VERSION:
            return
        self.job = JobRef(saved["job_id"], saved["job_name"], saved["job_dir"])
        self.job_node = saved.get("node")
        if saved.get("resource"):
            self.resource = {r.name: r for r in build_resources(self.resources)}.get(saved["resource"])
            if self.resource is None:
                self.log.error("%s: resource %r is no longer configured; job %s is left alone",
                               self._log_name, saved["resource"], saved["job_id"])
                self.job = None
                return
            self.ssh_host = saved.get("ssh_host")
            self.tunnel_port = saved.get("tunnel_port")
        if saved.get("service"):
            try:
                self.service = ServiceStatus.from_json(saved["service"])
            except ServiceStatusError:
                self.service = None

    def clear_state(self) -> None:
        super().clear_state()
        self.job, self.job_node, self.service = None, None, None
        self.resource, self.ssh_host, self.tunnel_port = None, None, None


_WARNED: set[str] = set()


def _warn_old_name(spawner: Spawner, old: str, new: str) -> None:
    """Say once per hub process that a setting has moved."""
    if old not in _WARNED:
        _WARNED.add(old)
        spawner.log.warning("pw_spawner: c.PWSpawner.%s is deprecated; use c.%s", old, new)


class PWSlurmSpawner(PWSpawner):
    """PWSpawner submitting to Slurm (entry point ``pw-slurm``)."""

    @default("scheduler")
    def _default_scheduler(self) -> str:
        return "slurm"


class PWPBSSpawner(PWSpawner):
    """PWSpawner submitting to PBS Pro (entry point ``pw-pbs``); set scheduler="torque" for Torque."""

    @default("scheduler")
    def _default_scheduler(self) -> str:
        return "pbs"


class PWRStudioSpawner(PWSpawner):
    """PWSpawner starting RStudio Server behind hub authentication (entry point ``pw-rstudio``).

    Everything else (scheduler, profiles, SSH) is PWSpawner's: set ``scheduler`` as for it.
    """

    @default("default_app")
    def _default_default_app(self) -> str:
        return "rstudio"


class PWVNCSpawner(PWSpawner):
    """PWSpawner starting a VNC desktop in the browser (noVNC) behind hub authentication (``pw-vnc``)."""

    @default("default_app")
    def _default_default_app(self) -> str:
        return "vnc"


class PWXpraSpawner(PWSpawner):
    """PWSpawner starting an Xpra session (HTML5 client) behind hub authentication (``pw-xpra``)."""

    @default("default_app")
    def _default_default_app(self) -> str:
        return "xpra"


__all__ = ["PWPBSSpawner", "PWRStudioSpawner", "PWSlurmSpawner", "PWSpawner", "PWVNCSpawner", "PWXpraSpawner"]

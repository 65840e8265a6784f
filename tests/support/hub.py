"""A real JupyterHub (with configurable-http-proxy) run as a subprocess, for end-to-end tests.

``HubProcess(tmp_dir)`` writes a small config that loads ``example_config/jupyterhub_config.py``
(the demo hub), puts the public port, the hub API port and the proxy API port on free ports of
127.0.0.1, adds an admin service token for the tests, and appends ``extra_config``. The demo's
state (database, cookie secret, job directories) goes to ``<tmp_dir>/state``, and HOME (where
local jobs start) to ``<tmp_dir>/home``. ``stop()`` asks the
hub to stop every server, stops the hub and its proxy, and kills whatever of the test's jobs is
left, so nothing outlives the test::

    with HubProcess(tmp_path) as hub:
        hub.api("POST", "/users/alice/server", {"profile": "demo-small"})
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pw_spawner.scripts import job_name_for
from support.net import free_ports

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "example_config" / "jupyterhub_config.py"
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE_NAME = "pwtest"

# urllib honours http_proxy & co. from the environment; every request here goes to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError, which http() returns


_OPENER_NO_REDIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def hub_available() -> tuple[bool, str]:
    """Whether a hub can run here: configurable-http-proxy (npm) and node."""
    # The demo config uses the repository's copy, else configurable-http-proxy on PATH.
    if not os.access(CHP, os.X_OK) and shutil.which("configurable-http-proxy") is None:
        return False, f"configurable-http-proxy is neither at {CHP} nor on PATH (run .ci/install-system.sh)"
    if shutil.which("node") is None:
        return False, "node is not on PATH (configurable-http-proxy needs it)"
    return True, ""


@dataclass
class Response:
    """An HTTP answer; ``headers`` has lower-case names (the proxy lower-cases them anyway)."""

    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30, follow_redirects: bool = True) -> Response:
    """One HTTP request; any status is returned, not raised. ``body`` other than str is sent as JSON."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        opener = _OPENER if follow_redirects else _OPENER_NO_REDIRECT
        with opener.open(request, timeout=timeout) as resp:
            return Response(resp.status, _lower(resp.headers), resp.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, _lower(exc.headers), exc.read().decode(errors="replace"))


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class HubProcess:
    """A JupyterHub subprocess on free ports of 127.0.0.1; see the module docstring."""

    def __init__(self, tmp_dir: str | os.PathLike[str], config_path: str | os.PathLike[str] = DEMO_CONFIG,
                 extra_config: str = "", env: dict[str, str] | None = None):
        self.tmp_dir = Path(tmp_dir).absolute()
        self.config_path = Path(config_path).absolute()
        self.extra_config = extra_config
        self.extra_env = dict(env or {})
        self.state_dir = self.tmp_dir / "state"
        #: HOME of the hub, and so of its jobs (the local target runs them as the hub's user, from
        #: their home): the developer's own home and Jupyter config stay out of the tests.
        self.home = self.tmp_dir / "home"
        self.log_path = self.tmp_dir / "hub.log"
        self.generated_config = self.tmp_dir / "jupyterhub_test_config.py"
        self.api_token = secrets.token_hex(32)
        self.port: int | None = None
        self.hub_port: int | None = None
        self.proxy_api_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        #: Seconds the last start() took until /hub/api answered through the proxy.
        self.start_seconds: float | None = None
        #: What the last stop() had to kill by hand: (pid, command line) of the test's stray processes.
        self.leftovers: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The public URL (the proxy), without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    def job_dir(self, user: str, server: str = "") -> Path:
        """The demo's job directory of a user's server (job_dir_root is ``<state>/jobs/{username}``)."""
        return self.state_dir / "jobs" / user / job_name_for(user, server)

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self) -> None:
        service = {"name": SERVICE_NAME, "api_token": self.api_token}
        role = {"name": "pwtest-admin", "services": [SERVICE_NAME],
                "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "access:servers"]}
        text = f"""\
# Written by tests/support/hub.py for one test hub; loads the real config, then moves it to free ports.
c = get_config()  # noqa: F821
load_subconfig({str(self.config_path)!r})  # noqa: F821

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"

_services = c.JupyterHub.services if isinstance(c.JupyterHub.services, list) else []
c.JupyterHub.services = [*_services, {service!r}]
_roles = c.JupyterHub.load_roles if isinstance(c.JupyterHub.load_roles, list) else []
c.JupyterHub.load_roles = [*_roles, {role!r}]

# ---- extra_config
{self.extra_config}
"""
        self.generated_config.write_text(text)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_PREFIX",
                     "CONFIGPROXY_AUTH_TOKEN"):
            env.pop(name, None)
        bin_dir = str(Path(sys.executable).parent)
        env.update(PW_DEMO_STATE=str(self.state_dir), PW_DEMO_PORT=str(self.port), HOME=str(self.home),
                   PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}")
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> HubProcess:
        """Start the hub (on the same ports as before if it ran already) and wait for /hub/api."""
        if self.proc is not None:
            raise RuntimeError("the hub is already running")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        if self.port is None:
            self.port, self.hub_port, self.proxy_api_port = free_ports(3)
        self._write_config()
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== tests/support/hub.py: starting the hub at {time.ctime()} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.generated_config)],
                cwd=self.tmp_dir, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the hub exited with status {self.proc.returncode} at start:\n"
                                       + self.log_tail())
                # The hub itself first (the proxy logs every 404 before the hub's route is there),
                # then through the proxy.
                if self._answers(f"http://127.0.0.1:{self.hub_port}/hub/api/") and \
                        self._answers(f"{self.api_url}/"):
                    break
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"the hub did not answer on {self.api_url} within {timeout} s:\n"
                                       + self.log_tail())
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return http("GET", url, timeout=2).status == 200
        except OSError:
            return False

    def stop(self, stop_servers: bool = True, timeout: float = 30) -> None:
        """Stop the hub and its proxy; with ``stop_servers`` (the default) every user server too.

        ``stop_servers=False`` leaves the jobs running (for a hub restart): only the hub and its
        proxy go. Safe to call twice and on a hub that failed to start.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            if stop_servers:
                self.kill_leftovers()
            return
        try:
            if stop_servers and proc.poll() is None:
                try:
                    self.stop_all_servers(timeout=timeout)
                except Exception as exc:  # the last resort below still runs
                    self._note(f"stopping servers through the API failed: {exc!r}")
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._note(f"the hub did not exit {timeout} s after SIGTERM; killing it")
        finally:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # JupyterHub starts the proxy in a session of its own: a hub that was killed, or told to
            # leave it running (cleanup_proxy = False), leaves it behind.
            proxies = self._proxy_groups()
            if proxies:
                self._note(f"the proxy outlived the hub; killing {proxies}")
                _kill_groups(proxies, grace=3)
            if stop_servers:
                self.kill_leftovers()

    def _proxy_groups(self) -> set[int]:
        """Process groups of configurable-http-proxy processes with this hub's proxy API port."""
        groups = set()
        port = str(self.proxy_api_port)
        for pid, argv, _cwd in _processes():
            is_proxy = any("configurable-http-proxy" in arg for arg in argv[:2])
            if is_proxy and ("--api-port", port) in itertools.pairwise(argv):
                try:
                    groups.add(os.getpgid(pid))
                except ProcessLookupError:
                    pass
        return groups

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ servers

    def stop_all_servers(self, timeout: float = 30) -> None:
        """Ask the hub to stop every server (default and named) and wait until none is left."""
        deadline = time.monotonic() + timeout
        asked: set[tuple[str, str]] = set()
        while True:
            users = self.api("GET", "/users?state=active")
            if users.status != 200:
                raise RuntimeError(f"GET /users: {users.status} {users.text}")
            running = [(u["name"], name) for u in users.json() for name in (u.get("servers") or {})]
            if not running:
                return
            for user, server in running:
                if (user, server) not in asked:
                    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
                    self.api("DELETE", path)
                    asked.add((user, server))
            if time.monotonic() > deadline:
                raise RuntimeError(f"servers still running {timeout} s after stop: {running}")
            time.sleep(0.5)

    def kill_leftovers(self, grace: float = 5.0) -> list[tuple[int, str]]:
        """Kill the test's jobs the hub did not stop: the groups in job.pid files, then any process
        whose command line or working directory mentions the tmp dir. Returns what was found."""
        found: list[tuple[int, str]] = []
        groups: set[int] = set()
        for pid_file in (self.state_dir / "jobs").glob("*/*/job.pid"):
            try:
                pgid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if group_members(pgid):
                groups.add(pgid)
                found.append((pgid, f"job group from {pid_file}"))
        own = {os.getpid(), os.getpgrp(), os.getsid(0)} | _ancestors()
        needle = f"{self.tmp_dir}/"
        for pid, argv, cwd in _processes():
            # With the slash, .../hub1 does not match .../hub10.
            mentioned = any(needle in f"{arg}/" for arg in argv) or needle in f"{cwd}/"
            if pid in own or not mentioned:
                continue
            cmdline = " ".join(argv)
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if pgid not in own:
                groups.add(pgid)
                found.append((pid, cmdline))
        _kill_groups(groups, grace)
        if found:
            self._note(f"killed leftovers: {found}")
        self.leftovers = found
        return found

    # ------------------------------------------------------------------ REST

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            timeout: float = 30) -> Response:
        """A request to the hub's REST API (``path`` below /hub/api) with the admin token by default."""
        return http(method, self.api_url + path, body,
                    {"Authorization": f"token {token or self.api_token}"}, timeout=timeout)

    def get(self, path: str, token: str | None = None, timeout: float = 30,
            follow_redirects: bool = True) -> Response:
        """A GET on the public URL (through the proxy), e.g. ``/user/alice/api/status``."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return http("GET", self.url + path, headers=headers, timeout=timeout,
                    follow_redirects=follow_redirects)

    def user_model(self, user: str) -> dict[str, Any]:
        resp = self.api("GET", f"/users/{user}")
        if resp.status != 200:
            raise RuntimeError(f"GET /users/{user}: {resp.status} {resp.text}")
        return resp.json()

    def server_model(self, user: str, server: str = "") -> dict[str, Any] | None:
        return (self.user_model(user).get("servers") or {}).get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 90) -> dict[str, Any]:
        """Poll until the server is ready; fails the test with the hub's log if it does not get there."""
        started = time.monotonic()
        while True:
            model = self.server_model(user, server)
            if model and model.get("ready"):
                return model
            waited = time.monotonic() - started
            if model is None and waited > 2:
                # A server the hub was asked for is listed while pending: gone means it failed.
                pytest.fail(f"{user}'s server {server!r} is not running (spawn failed?):\n" + self.log_tail())
            if waited > timeout:
                pytest.fail(f"{user}'s server {server!r} not ready after {timeout} s ({model}):\n"
                            + self.log_tail())
            time.sleep(0.5)

    def wait_gone(self, user: str, server: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.server_model(user, server) is not None:
            if time.monotonic() > deadline:
                pytest.fail(f"{user}'s server {server!r} still listed {timeout} s after stop:\n"
                            + self.log_tail())
            time.sleep(0.5)

    def user_token(self, user: str, note: str = "pw_spawner tests") -> str:
        """A new API token owned by ``user`` (made with the admin token)."""
        resp = self.api("POST", f"/users/{user}/tokens", {"note": note, "expires_in": 3600})
        if resp.status not in (200, 201):
            raise RuntimeError(f"POST /users/{user}/tokens: {resp.status} {resp.text}")
        return resp.json()["token"]

    # ------------------------------------------------------------------ logs

    def log(self) -> str:
        """Everything the hub (and its proxy) printed, over all starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _note(self, message: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"===== tests/support/hub.py: {message}\n")


def _kill_groups(groups: set[int], grace: float) -> None:
    """SIGTERM to each process group, SIGKILL to those still alive after ``grace`` seconds."""
    for pgid in groups:
        _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pgid in groups:
        if group_members(pgid):
            _killpg(pgid, signal.SIGKILL)


def _processes() -> list[tuple[int, list[str], str]]:
    """(pid, argv, cwd) of every process we may look at; zombies and vanished ones are left out."""
    result = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if argv and argv != [""]:
            result.append((int(entry.name), [a for a in argv if a], cwd))
    return result


def _ancestors() -> set[int]:
    """This process's ancestors, never to be killed as leftovers."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        pids.add(pid)
    return pids


def timing(what: str, seconds: float) -> None:
    """A figure for the run's log (pytest -s shows it); never a pass/fail threshold."""
    print(f"\nTIMING {what}: {seconds:.1f} s")


@contextlib.contextmanager
def running_hub(base_dir: Path, **kwargs: Any) -> Iterator[HubProcess]:
    """A started HubProcess for a module's tests; stopped at the end, with nothing left behind."""
    hub = HubProcess(base_dir, **kwargs)
    hub.start(timeout=60)
    timing("hub start", hub.start_seconds)
    try:
        yield hub
    finally:
        hub.stop()
        assert not hub.leftovers, f"processes outlived the hub: {hub.leftovers}"


"""Resources (SSH clusters) in the configuration, on the form, and the tunnel process's API socket.

No SSH server here: configuration errors, the choice of resource and profile, and what the tunnel
process's unix socket lets through are checked without one (tests/test_ssh_spawner.py has sshd).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import time

import pytest
from traitlets import TraitError
from traitlets.config import Config

from pw_spawner.cli import check_config
from pw_spawner.remote.tunnel import TunnelError, TunnelServer
from pw_spawner.remote.tunnel_client import TunnelProcessClient
from pw_spawner.resources import ResourceError, build_resources
from pw_spawner.testing.spawners import make_spawner

BASE = {"name": "cluster-a", "host": "login1.example.org", "key_file": "/k", "known_hosts": "/kh",
        "scheduler": "slurm"}
PROFILES = [{"slug": "small", "display_name": "Small", "default": True},
            {"slug": "gpu", "display_name": "GPU"}]


def test_a_resource_with_its_defaults():
    (resource,) = build_resources([BASE])
    assert resource.hosts == ("login1.example.org",) and resource.port == 22
    target = resource.target("login1.example.org", "alice")
    assert (target.username, target.key_file, target.known_hosts) == ("alice", "/k", "/kh")


def test_username_is_filled_into_account_and_key():
    (resource,) = build_resources([{**BASE, "ssh_user": "svc-{username}", "key_file": "/keys/{username}"}])
    target = resource.target("h", "bob")
    assert (target.username, target.key_file) == ("svc-bob", "/keys/bob")


@pytest.mark.parametrize(("change", "key"), [
    ({"known_hosts": None}, "known_hosts"),
    ({"scheduler": "loadleveler"}, "scheduler"),
    ({"key_file": None}, "key_file"),
    ({"name": "Has Space"}, "name"),
    ({"login_hosts": ["x"]}, "login_hosts"),
    ({"host": None}, "host"),
    ({"host": "-oProxyCommand=x"}, "host"),
    ({"host": None, "hosts": ["a", "-oProxyCommand=x"]}, "hosts[1]"),
    ({"port": "22"}, "port"),
    ({"hub_connect_url": "hub:8081"}, "hub_connect_url"),
    ({"hub_connect_url": "http://h", "hub_api_forward": {}}, "hub_api_forward"),
    ({"hub_api_forward": {"port": 1}}, "hub_api_forward.port"),
    ({"ssh_user": "{user}"}, "ssh_user"),
    ({"env": {"A B": "x"}}, "env"),
    ({"display_name": "two\nlines"}, "display_name"),
    ({"status_query_login": {"ssh_user": "{username}", "key_file": "/k"}}, "status_query_login.ssh_user"),
    ({"status_query_login": {"ssh_user": "slurmops"}}, "status_query_login.key_file"),
    ({"status_query_login": {"ssh_user": "slurmops", "key_file": "/keys/{username}"}},
     "status_query_login.key_file"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_a_bad_resource_names_the_resource_and_the_key(change, key):
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ResourceError) as raised:
        build_resources([data])
    assert raised.value.key == key, str(raised.value)
    assert str(raised.value).startswith("resources[")


def test_a_resource_gives_its_schedulers_site_settings():
    (resource,) = build_resources([{**BASE, "scheduler": "sge",
                                    "scheduler_settings": {"parallel_environment": "mpi"}}])
    assert resource.scheduler_settings == {"parallel_environment": "mpi"}
    spawner = make_spawner(resources=[{**BASE, "scheduler": "sge",
                                       "scheduler_settings": {"parallel_environment": "mpi"}}])
    spawner.resource = spawner.user_resources()[0]
    assert spawner.make_scheduler().settings.parallel_environment == "mpi"
    with pytest.raises(ResourceError) as raised:
        build_resources([{**BASE, "scheduler": "sge", "scheduler_settings": {"pe": "mpi"}}])
    assert (raised.value.key, raised.value.reason.split(" (")[0]) == ("scheduler_settings.pe", "unknown key")
    with pytest.raises(ResourceError, match=r"scheduler_settings.parallel_environment: expected str"):
        build_resources([{**BASE, "scheduler": "sge", "scheduler_settings": {"parallel_environment": 4}}])
    with pytest.raises(ResourceError, match="scheduler_settings"):  # Slurm takes none
        build_resources([{**BASE, "scheduler_settings": {"parallel_environment": "mpi"}}])


def test_bad_scheduler_settings_stop_the_hub_at_startup_and_fail_a_spawn_with_a_message():
    config = Config()
    config.PWSpawner.profile_list = PROFILES
    config.PWSpawner.scheduler = "sge"
    config.PWSpawner.exec_prefix = ["sudo", "-u", "{username}", "--"]
    config.PWSpawner.scheduler_settings = {"parallel_environment": "two words"}
    with pytest.raises(SystemExit, match=r"bad scheduler configuration: scheduler_settings: "
                                         r"parallel_environment: 'two words' is not a Grid Engine name"):
        check_config(config)
    spawner = make_spawner(scheduler="sge", exec_prefix=["sudo", "-u", "{username}", "--"],
                           scheduler_settings={"parallel_environment": "two words"})
    with pytest.raises(Exception) as raised:
        spawner.make_scheduler()
    assert "scheduler is misconfigured" in getattr(raised.value, "jupyterhub_message", "")
    config.PWSpawner.scheduler_settings = {"parallel_environment": "mpi"}
    check_config(config)


async def test_a_query_login_answers_for_every_users_jobs_on_its_resource(caplog):
    per_user = {**BASE, "name": "per-user", "hosts": ["login1", "login2"]}
    with_login = {**per_user, "name": "with-login",
                  "status_query_login": {"ssh_user": "slurmops", "key_file": "/etc/jupyterhub/ops_key"}}
    caches = {}
    for resource in (per_user, with_login):
        for user in ("alice", "bob"):
            spawner = make_spawner(username=user, resources=[resource])
            spawner.resource = spawner.user_resources()[0]
            caches[resource["name"], user] = await spawner.status_cache()
    # Each user's own account: a cache (a query) per user, and one warning that says what to set.
    assert caches["per-user", "alice"] is not caches["per-user", "bob"]
    assert [r.getMessage() for r in caplog.records if "status_query_login" in r.getMessage()] == [
        "pw_spawner: resource per-user: its status queries run as each user's own SSH account (ssh_user "
        "has {username}): one scheduler query per user per interval. Give the resource a "
        "status_query_login, an account that sees every user's jobs"]
    # With a query login: one cache for both, querying as that account on the first login node.
    shared = caches["with-login", "alice"]
    assert shared is caches["with-login", "bob"]
    assert (shared.executor.target.username, shared.executor.target.host,
            shared.executor.target.key_file) == ("slurmops", "login1", "/etc/jupyterhub/ops_key")


def test_two_resources_may_not_share_a_name():
    with pytest.raises(ResourceError, match="used by two resources"):
        build_resources([BASE, BASE])


def test_a_bad_resource_stops_the_hub_at_startup():
    with pytest.raises(TraitError, match=r"resources\[cluster-a\]: scheduler"):
        make_spawner(resources=[{**BASE, "scheduler": "loadleveler"}])
    config = Config()
    config.PWSpawner.profile_list = PROFILES
    config.PWSpawner.resources = [{**BASE, "known_hosts": None}]
    with pytest.raises(SystemExit, match=r"bad resource configuration: resources\[cluster-a\]: known_hosts"):
        check_config(config)


async def test_the_form_offers_the_resources_of_the_users_groups():
    resources = [BASE, {**BASE, "name": "cluster-b", "display_name": "Cluster B", "groups": ["b-users"]},
                 {**BASE, "name": "cluster-c", "display_name": "Cluster C"}]
    html = await make_spawner(profile_list=PROFILES, resources=resources)._options_form_html(
        make_spawner(profile_list=PROFILES, resources=resources))
    assert 'name="resource"' in html and "cluster-c" in html and "cluster-b" not in html
    member = make_spawner(profile_list=PROFILES, resources=resources, groups=["b-users"])
    assert "Cluster B" in await member._options_form_html(member)


async def test_a_resource_outside_the_users_groups_or_profiles_is_refused():
    resources = [{**BASE, "profiles": ["small"]}, {**BASE, "name": "private", "groups": ["staff"]}]
    spawner = make_spawner(profile_list=PROFILES, resources=resources)
    assert (await spawner.selection({"profile": "small"})).resource == "cluster-a"
    for options, field in (({"profile": "small", "resource": "private"}, "resource:"),
                           ({"profile": "gpu", "resource": "cluster-a"}, "profile:")):
        with pytest.raises(Exception) as raised:
            await spawner.selection(options)
        assert raised.value.jupyterhub_message.startswith(field), raised.value.jupyterhub_message


async def test_the_tunnel_socket_is_for_its_owner_only(tmp_path):
    directory = tmp_path / "tun"
    server = TunnelServer(directory / "t.sock")
    await server.start()
    try:
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(directory / "t.sock").st_mode) == 0o600
        with pytest.raises(TunnelError, match="another tunnel process"):
            await TunnelServer(directory / "t.sock").start()
        client = TunnelProcessClient(directory / "t.sock", autostart=False)
        assert (await client.stats())["forwards"] == 0
        with pytest.raises(TunnelError, match="unknown op"):
            await client.request({"op": "shell"})
        with pytest.raises(TunnelError, match="bad request"):
            await client.request({"op": "open", "key": "k"})
        reader, writer = await asyncio.open_unix_connection(str(directory / "t.sock"))
        writer.write(b"not json\n")
        assert json.loads(await reader.readline())["ok"] is False
        writer.close()
    finally:
        await server.stop()
    assert not (directory / "t.sock").exists()


async def test_a_tunnel_directory_open_to_others_is_refused(tmp_path):
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(TunnelError, match="0700"):
        await TunnelServer(directory / "t.sock").start()


async def test_no_tunnel_process_and_no_autostart_is_a_clear_error(tmp_path):
    client = TunnelProcessClient(tmp_path / "none.sock", autostart=False)
    with pytest.raises(TunnelError, match="pw-spawner tunnel"):
        await client.stats()


def _wait_gone(pid: int) -> None:
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.05)


def test_the_client_starts_the_tunnel_process_again_from_another_event_loop(tmp_path):
    client = TunnelProcessClient(tmp_path / "tun" / "t.sock")

    async def two_at_once():
        return await asyncio.gather(client.stats(), client.stats())

    pids = []
    try:
        for _ in range(2):  # e.g. one event loop per test, or a hub restarted in-process
            first, second = asyncio.run(two_at_once())
            pids.extend({first["pid"], second["pid"]})
            assert first["pid"] == second["pid"], "two requests at once started two processes"
            os.kill(first["pid"], signal.SIGTERM)
            _wait_gone(first["pid"])
        assert pids[0] != pids[1]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

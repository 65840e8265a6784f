"""Names filled into commands and paths, and the refusal of configurations where users share an account."""

from __future__ import annotations

import pytest

from pw_spawner.accounts import UnsafeNameError, check_name, refuse_shared_account, shared_account_problems
from pw_spawner.testing.spawners import make_spawner

SUDO = ["sudo", "-n", "-u", "{username}", "--"]


@pytest.mark.parametrize("name", ["#1000", "-u", "root x", "a/b", "..", "", "x" * 33, "1abc", "é"])
def test_account_names_are_refused(name):
    with pytest.raises(UnsafeNameError, match="account name"):
        check_name("user", name, account=True)


@pytest.mark.parametrize("name", ["alice", "a.b-c_d", "_svc", "Alice2"])
def test_account_names_are_taken(name):
    assert check_name("user", name, account=True) == name


def test_path_names_take_email_but_not_traversal():
    assert check_name("user", "alice@example.org") == "alice@example.org"
    for bad in ("../etc", "a/b", ".hidden", "a b", "x{y}"):
        with pytest.raises(UnsafeNameError, match="job name or path"):
            check_name("user", bad)


def test_shared_accounts_are_found():
    assert shared_account_problems("slurm", SUDO, []) == []
    assert "exec_prefix is empty" in shared_account_problems("local", [], [])[0]
    assert "exec_prefix is sudo -u svc" in shared_account_problems("pbs", ["sudo", "-u", "svc"], [])[0]
    # With resources, every job goes to one: the hub-host prefix does not matter, ssh_user does.
    assert shared_account_problems("local", [], [{"name": "c", "ssh_user": "{username}"}]) == []
    [problem] = shared_account_problems("local", SUDO, [{"name": "c", "ssh_user": "svc"}])
    assert problem.startswith("resources[c]: ssh_user is 'svc'")


def test_refusal_names_the_opt_in_and_honours_it():
    message = refuse_shared_account("local", [], [], allowed=False)
    assert message and "allow_shared_account" in message
    assert refuse_shared_account("local", [], [], allowed=True) is None


async def test_spawner_refuses_to_start_as_a_shared_account():
    spawner = make_spawner(profile_list=[{"slug": "p"}])
    with pytest.raises(Exception) as caught:
        await spawner.start()
    assert getattr(caught.value, "jupyterhub_message", "").startswith("This hub's configuration is refused")
    assert spawner.job is None


async def test_spawner_refuses_a_user_name_sudo_would_read_as_a_uid(tmp_path):
    spawner = make_spawner(username="#0", profile_list=[{"slug": "p"}], exec_prefix=SUDO,
                           job_dir_root=str(tmp_path))
    with pytest.raises(Exception) as caught:
        await spawner.start()
    assert "'#0' is not a valid account name" in getattr(caught.value, "jupyterhub_message", "")
    assert spawner.job is None

"""Which account a user's jobs run as, and the names that may be filled into commands and paths.

Two rules live here. A hub user's name and a server's name are checked before they are put into
an ``exec_prefix``, an ``ssh_user``, a job name or a job directory: JupyterHub allows names such as
``#1000`` (``sudo -u #1000`` is a uid) or ``../x``. And a configuration in which different users'
jobs would run as one account (no ``{username}`` in the submit prefix or the SSH user) is refused
unless the admin opts in by name: such users can read each other's job scripts, which carry their
API tokens, and on the hub host the hub's own files and environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .schedulers import scheduler_kinds

#: A name that is a POSIX account name on every system we know (no leading digit, '-' or '#').
ACCOUNT_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
#: What a user or server name may hold to appear in a job name or a path (e-mail style names too).
SAFE_NAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}\Z")

SHARED_ACCOUNT_HELP = (
    "set c.PWSpawner.allow_shared_account = True only if every user may read every other user's "
    "job scripts (with their API tokens) and, on the local target, the hub's own files")


class UnsafeNameError(ValueError):
    """A user or server name that cannot be filled in safely; the message says which and why."""


def check_name(kind: str, name: str, *, account: bool = False) -> str:
    """``name`` if it may be filled in; ``account``: it becomes a login (sudo -u, ssh user)."""
    if account and not ACCOUNT_NAME_RE.match(name):
        raise UnsafeNameError(f"the {kind} name {name!r} is not a valid account name on the cluster "
                         "(letters, digits, '_', '.', '-'; starting with a letter or '_'; at most 32)")
    if not SAFE_NAME_RE.match(name):
        raise UnsafeNameError(f"the {kind} name {name!r} cannot be used in a job name or path "
                         "(letters, digits and _ . @ + - only, at most 64)")
    return name


def uses_username(words: Iterable[str]) -> bool:
    return any("{username}" in word for word in words)


def shared_account_problems(scheduler: str, exec_prefix: Sequence[str],
                            resources: Sequence[Any]) -> list[str]:
    """Where different users' jobs would run as one account (empty: every user has their own).

    Jobs on the hub host run as the account of ``exec_prefix``; a resource's as its ``ssh_user``.
    With resources configured every job goes to one of them, so the prefix does not count then.
    """
    problems = []
    if not resources and scheduler in scheduler_kinds() and not uses_username(exec_prefix):
        shown = " ".join(exec_prefix) if exec_prefix else "empty"
        problems.append(f"exec_prefix is {shown}: every user's {scheduler} jobs run as the hub's "
                        "own account (use e.g. ['sudo', '-u', '{username}', '--'])")
    for resource in resources:
        if not isinstance(resource, Mapping):
            continue  # refused by the resources' own checks, with its index
        user = str(resource.get("ssh_user", "{username}"))
        if "{username}" not in user:
            problems.append(f"resources[{resource.get('name', '?')}]: ssh_user is {user!r}: every "
                            "user's jobs there run as that one account")
    return problems


def refuse_shared_account(scheduler: str, exec_prefix: Sequence[str],
                          resources: Sequence[Any], allowed: bool) -> str | None:
    """The startup error for a shared-account configuration, or None when it is fine or allowed."""
    problems = shared_account_problems(scheduler, exec_prefix, resources)
    if not problems or allowed:
        return None
    return ("users' jobs would share one account: " + "; ".join(problems) + ". To run so anyway, "
            + SHARED_ACCOUNT_HELP + ".")

"""The sessions page's sharing switch in a hub config, without a hub: which roles
``configure_sessions_page`` leaves in ``c.JupyterHub.load_roles``, and the handlers' option.
The hub itself (who gets in, revoke) is tests/test_sessions_sharing_hub.py."""

from __future__ import annotations

from traitlets.config import Config

from pw_spawner.sessions.page import SHARE_SCOPE, configure_sessions_page


def roles(c: Config) -> dict[str, dict]:
    return {role["name"]: role for role in c.JupyterHub.load_roles}


def page_options(c: Config) -> dict:
    return next(options for route, _, options in c.JupyterHub.extra_handlers if route == r"/sessions/?")


def test_sharing_adds_the_scope_to_the_user_role_and_keeps_the_others() -> None:
    c = Config()
    c.JupyterHub.load_roles = [{"name": "helpdesk", "users": ["carol"], "scopes": ["read:servers"]}]
    configure_sessions_page(c)
    assert roles(c) == {"helpdesk": {"name": "helpdesk", "users": ["carol"], "scopes": ["read:servers"]},
                        "user": {"name": "user", "scopes": ["self", SHARE_SCOPE]}}
    assert SHARE_SCOPE == "shares!user"
    assert page_options(c)["sharing"] is True


def test_a_user_role_of_the_config_gets_the_scope_added_once() -> None:
    c = Config()
    c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", "access:services"]})  # lazily
    configure_sessions_page(c)
    configure_sessions_page(c)  # a second call (a config loaded twice) adds nothing
    assert roles(c)["user"]["scopes"] == ["self", "access:services", SHARE_SCOPE]
    assert [r["name"] for r in c.JupyterHub.load_roles].count("user") == 1


def test_extra_user_scopes_are_kept_in_the_user_role() -> None:
    # JupyterHub 6 ignores extra_user_scopes once the user role is defined: they move into it.
    c = Config()
    c.JupyterHub.extra_user_scopes = {"access:services"}
    configure_sessions_page(c)
    assert roles(c)["user"]["scopes"] == ["self", "access:services", SHARE_SCOPE]


def test_sharing_off_grants_nothing_and_tells_the_page() -> None:
    c = Config()
    configure_sessions_page(c, sharing=False)
    assert "load_roles" not in c.JupyterHub
    assert page_options(c)["sharing"] is False

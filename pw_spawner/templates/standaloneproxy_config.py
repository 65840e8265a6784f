# jupyter-standaloneproxy configuration written by pw_spawner's job and loaded with --config
# (pw_spawner/templates/standaloneproxy_config.py).
#
# jupyter-server-proxy 4.6's standalone handler does not authenticate websocket upgrades: its
# prepare() is empty, and a websocket GET goes to open() without passing the @web.authenticated
# method that guards every other request. Anyone who reaches the port could then open the app's
# websocket (noVNC's desktop, Xpra's session). The wrapper below makes an upgrade need the same hub
# user as any other request, and answers 403 otherwise. If the module changes shape, this fails and
# so does the job: closed, not open.
import jupyter_server_proxy.standalone.app as _pw_standalone_app
from tornado import web as _pw_web

_pw_make_handler = _pw_standalone_app.make_standalone_proxy


def _pw_make_handler_checking_websockets(base_class, kwargs):
    handler, handler_kwargs = _pw_make_handler(base_class, kwargs)
    if handler is None:
        return handler, handler_kwargs

    class PWWebsocketAuthenticatedHandler(handler):
        async def get(self, *args, **kwargs):
            upgrade = self.request.headers.get("Upgrade", "").lower() == "websocket"
            if upgrade and not self.no_authentication and not self.current_user:
                raise _pw_web.HTTPError(403)
            return await super().get(*args, **kwargs)

    return PWWebsocketAuthenticatedHandler, handler_kwargs


_pw_standalone_app.make_standalone_proxy = _pw_make_handler_checking_websockets

# Who may use the app is the hub's answer for the browser's token (its scopes: the owner's, a hub
# admin's, or access:servers!server=<owner>/<server> from a share), which the proxy keeps for
# HubOAuth.cache_max_age, five minutes by default: a share revoked on the hub would let the shared
# user in for that long. The handlers use the one HubOAuth instance; made here first, it asks the
# hub again after 30 s (as the Jupyter server does: see pw_spawner's app_jupyter.sh.j2).
from jupyterhub.services.auth import HubOAuth as _pw_HubOAuth  # noqa: E402

_pw_HubOAuth.instance(cache_max_age=30)

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

"""Errors shown to the user on the spawn page, for JupyterHub 6 and 5 alike.

JupyterHub 6 has :class:`jupyterhub.spawner.SpawnException` (an HTTP 400 whose message the page shows
and whose traceback is not logged). JupyterHub 5 lacks it; there an HTTPError carrying
``jupyterhub_message`` gets the same message to the page.
"""

from __future__ import annotations

from tornado import web

try:
    from jupyterhub.spawner import SpawnException as _SpawnException
except ImportError:  # JupyterHub 5
    _SpawnException = None


def spawn_error(message: str, *, reason: str, log_message: str = "", status_code: int = 400) -> web.HTTPError:
    """An exception for an expected failure: ``message`` is for the user, ``reason`` a short label."""
    if _SpawnException is not None:
        exc = _SpawnException(message, reason=reason, log_message=log_message or message,
                              status_code=status_code)
    else:
        exc = web.HTTPError(status_code, log_message or message, reason=reason)
    # Both the spawn page and the progress stream read this attribute for the text they show.
    exc.jupyterhub_message = message
    return exc

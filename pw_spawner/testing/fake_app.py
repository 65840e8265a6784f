"""A stand-in for ``jupyterhub-singleuser`` in tests: an HTTP server that takes ``--ip`` and ``--port``.

``python -m pw_spawner.testing.fake_app --ip=127.0.0.1 --port=8888`` answers every GET with a small
JSON record (which user it serves, whether the hub's token reached it, the environment variables
named in ``PW_FAKE_APP_SHOW``; on a path ending in ``/hub-check``, what a GET of
``JUPYTERHUB_API_URL`` answered). ``--fail-at-start`` exits 2 at once and ``--fail-after-start``
exits 3 after listening for a moment, so tests can drive both failure paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _fetch_hub_api() -> dict[str, object]:
    """GET the hub's API URL as the job was given it (does the job reach the hub?)."""
    url = os.environ.get("JUPYTERHUB_API_URL", "")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(200).decode(errors="replace")
            return {"url": url, "status": response.status, "body": body}
    except (OSError, ValueError) as exc:
        return {"url": url, "error": str(exc)}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        shown = [n for n in os.environ.get("PW_FAKE_APP_SHOW", "").split(",") if n]
        body = json.dumps({
            "user": os.environ.get("JUPYTERHUB_USER"),
            "path": self.path,
            "has_token": bool(os.environ.get("JUPYTERHUB_API_TOKEN")),
            "prefix": os.environ.get("JUPYTERHUB_SERVICE_PREFIX"),
            "env": {name: os.environ.get(name) for name in shown},
            **({"hub_api": _fetch_hub_api()} if self.path.endswith("/hub-check") else {}),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("fake_app: " + (format % args) + "\n")


def copy_for_other_accounts(directory: Path) -> list[str]:
    """The command of this app copied into ``directory`` (made, 0755) as a file any account can
    read, run by the system's python3: another account may not reach this interpreter (pyenv under
    /root), as on a cluster whose nodes' Python is not the hub's."""
    system_python = "/usr/bin/python3"
    if not os.access(system_python, os.X_OK):
        raise RuntimeError("Debian's python3 is needed to run the fake app as another account")
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    script = directory / "fake_app.py"
    shutil.copyfile(__file__, script)
    script.chmod(0o644)
    return [system_python, str(script)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-at-start", action="store_true")
    parser.add_argument("--fail-after-start", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    if args.fail_at_start:
        print("fake_app: failing at start as asked", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((args.ip, args.port), _Handler)
    print(f"fake_app: listening on {args.ip}:{args.port}", file=sys.stderr, flush=True)
    if args.fail_after_start:
        threading.Timer(1.5, server.shutdown).start()
        server.serve_forever()
        return 3
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

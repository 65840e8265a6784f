"""A stand-in for RStudio Server's ``rserver`` in tests (RStudio is not in Debian).

``python -m pw_spawner.testing.fake_rserver --www-socket=PATH --www-root-path=/user/a/ ...`` answers
HTTP on the unix socket with a JSON record: the arguments it was started with, the request's path, and
the environment an R session gets. For the latter it runs the ``--rsession-path`` program the way rserver
does, with an almost empty environment, so a test sees whether the job's wrapper brings the job's
environment back. ``--help`` lists the options of a recent rserver (those the job looks for); the
environment variable ``PW_FAKE_RSERVER_WITHOUT`` (comma-separated) leaves some out, to stand in for an
older version. ``--rsession`` makes it the R session instead: it prints its environment as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

OPTIONS = ("www-socket", "www-root-path", "www-address", "www-port", "server-user", "server-daemonize",
           "server-data-dir", "database-config-file", "secure-cookie-key-file", "auth-none",
           "auth-timeout-minutes", "rsession-path", "rsession-which-r")
#: What rserver hands an R session: not the job's environment.
RSESSION_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def parse_args(argv: list[str]) -> dict[str, str]:
    """``--name=value`` (and ``--name value``) pairs; unknown names are kept, as a record."""
    args: dict[str, str] = {}
    i = 0
    while i < len(argv):
        item = argv[i]
        if not item.startswith("--"):
            raise SystemExit(f"fake_rserver: unexpected argument {item!r}")
        name, sep, value = item[2:].partition("=")
        if not sep and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i += 1
            value = argv[i]
        args[name] = value
        i += 1
    return args


class _UnixHTTPServer(ThreadingMixIn, HTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind reads a (host, port) address; a unix socket has a path.
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = "localhost", 0


def _handler(args: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def address_string(self) -> str:
            return "unix"

        def do_GET(self) -> None:
            body = json.dumps({"server": "fake-rserver", "path": self.path, "args": args,
                               "rsession_env": _rsession_env(args.get("rsession-path", ""))}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *log_args: object) -> None:
            sys.stderr.write("fake_rserver: " + (format % log_args) + "\n")

    return Handler


def _rsession_env(path: str) -> dict[str, str] | str:
    if not path:
        return "no --rsession-path"
    try:
        done = subprocess.run([path], env=RSESSION_ENV, capture_output=True, text=True, timeout=30)
        return json.loads(done.stdout) if done.returncode == 0 else f"exit {done.returncode}: {done.stderr}"
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"could not run {path}: {exc}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rsession"]:
        print(json.dumps(dict(os.environ)))
        return 0
    if "--help" in argv:
        left_out = set(filter(None, os.environ.get("PW_FAKE_RSERVER_WITHOUT", "").split(",")))
        print("fake rserver options:")
        for name in OPTIONS:
            if name not in left_out:
                print(f"  --{name} arg")
        return 0
    args = parse_args(argv)
    path = args.get("www-socket")
    if not path:
        print("fake_rserver: only --www-socket is supported", file=sys.stderr)
        return 2
    if args.get("server-data-dir"):
        with open(os.path.join(args["server-data-dir"], "fake-rserver-args.json"), "w") as record:
            json.dump(args, record)
    # A unix socket's address is its path (socketserver's annotation knows only (host, port)).
    server = _UnixHTTPServer(path, _handler(args))  # type: ignore[arg-type]
    print(f"fake_rserver: listening on {path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

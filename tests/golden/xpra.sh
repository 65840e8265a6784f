#!/bin/bash
#PBS -N pw-alice
#PBS -o /home/alice/.pw_spawner/jobs/pw-alice/job.out
#PBS -j oe
#PBS -l select=1:ncpus=2:mem=8gb
#PBS -l walltime=08:00:00
#PBS -q short
#
# pw_spawner job pw-alice
#   profile:     xpra-gui (2c, 8G, 08:00:00)
#   environment: (none)
#   app:         xpra
# The job writes its state to service.json in its job directory; the hub reads it.

# No `set -eu`: module and conda activation scripts use unset variables and failing commands;
# every step below checks its own result and reports it through service.json instead.
set -o pipefail
umask 077

PW_JOB_DIR=/home/alice/.pw_spawner/jobs/pw-alice
PW_JOB_ID="${PBS_JOBID:-$$}"
PW_BIND_IP=0.0.0.0
PW_SLUG=''
PW_URL=/me
PW_HOST="$PW_BIND_IP"
if [ "$PW_HOST" = 0.0.0.0 ]; then PW_HOST="$(hostname)"; fi
PW_PORT=""
PW_LOG="$PW_JOB_DIR/job.out"
export PW_JOB_DIR PW_JOB_ID PW_URL PW_SLUG PW_HOST PW_PORT

# The job's helper (service.json, ports, the job directory's checks): python3, standard library only.
# The interpreter: the local runner's own where it started this job (it runs as this account on
# this host), else python3 found once: python3 on PATH may be a wrapper (pyenv, modules) that costs
# a tenth of a second at every call.
PW_PYTHON="${PW_RUNNER_PYTHON:-}"
unset PW_RUNNER_PYTHON
[ -x "$PW_PYTHON" ] || PW_PYTHON="$(python3 -I -S -c 'import sys; print(sys.executable)' 2>/dev/null)"
[ -x "$PW_PYTHON" ] || { echo "pw_spawner: python3 is needed on this node" >&2; exit 1; }
IFS= read -r -d '' PW_HELPER <<'PW_HELPER_PY'
"""The job's own helper, run by the job script on its node with ``python3 -I -S -c``.

Standard library only (a node needs python3, not pw_spawner). Each call is a process start, so a
call does all of one step, and modules are imported where they are used (an import of ``json``
costs a few milliseconds, a start of the interpreter about eight). Subcommands:

- ``begin DIR [MESSAGE]``: refuse a job directory that is a symbolic link, not this account's, or
  open to others (another user under a shared root could plant files there); then, with MESSAGE,
  write STARTING with it.
- ``status STATE [MESSAGE]``: write service.json whole (a real JSON encoder, mode 0600, renamed into
  place) from PW_JOB_DIR, PW_URL, PW_PORT, PW_SLUG, PW_HOST and PW_JOB_ID; then a byte to the
  hub's wake-up pipe ``wake`` in the job directory, where there is one.
- ``port HOST [MESSAGE]``: print a port free on HOST now (a candidate: ``ready`` says whose it
  became); with MESSAGE, also write STARTING with MESSAGE and that port.
- ``listen-wait PID PORT SECONDS``: until a socket listening on PORT belongs to PID or one of its
  descendants (exit 0), checked (cheaply) every 5 ms in this one process;
  exit 3 when someone else listens there (another user took the port), 4 when PID ended first, 5
  when SECONDS passed.
- ``ready PID PORT SECONDS [MESSAGE]``: with MESSAGE, STARTING with it and PORT written first
  (while the app boots); then ``listen-wait``, and RUNNING written when it succeeded.
- ``ending SECONDS``: the scheduler's warning that the walltime ends in SECONDS: service.json gets
  ``ENDS_AT`` (seconds since the epoch), the rest of it as it was; the log a line in words.
- ``secret``: a random token for an app's private wiring.
- ``http-ready WHERE PATH``: exit 0 when an HTTP GET of PATH answers with a status below 500 at
  WHERE (a unix socket's path, or HOST:PORT), 1 otherwise (not listening, an error, no answer within
  two seconds); a declared app's readiness check, called again until it passes.
"""

import os
import sys


def checkdir(path):
    import stat

    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot use the job directory {path}: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return f"the job directory {path} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"the job directory {path} is not a directory"
    if info.st_uid != os.geteuid():
        return f"the job directory {path} belongs to uid {info.st_uid}, not to this job's account"
    if stat.S_IMODE(info.st_mode) != 0o700:
        return f"the job directory {path} has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def status(state, message="", port=None):
    env = os.environ
    if port is None:
        port = env.get("PW_PORT", "")
    directory = env["PW_JOB_DIR"]
    record = {
        "JOB_STATUS": state,
        "URL": env.get("PW_URL", "/me"),
        "PORT": int(port) if port.isdigit() else None,
        "SLUG": env.get("PW_SLUG", ""),
        "HOST": env.get("PW_HOST", ""),
        "ERROR_MESSAGE": message,
        "JOB_ID": env.get("PW_JOB_ID", ""),
    }
    write(directory, record)


def ending(seconds):
    """The walltime warning: service.json says when the job ends (ENDS_AT, seconds since the
    epoch), kept as it is otherwise; the log says it in words."""
    import json
    import time

    directory = os.environ["PW_JOB_DIR"]
    minutes = max(1, seconds // 60)
    print(f"pw_spawner: the walltime ends in {minutes} minute{'s' if minutes != 1 else ''}", file=sys.stderr)
    try:
        fd = os.open(os.path.join(directory, "service.json"), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return
    if isinstance(record, dict):
        record["ENDS_AT"] = int(time.time()) + seconds
        write(directory, record)


def write(directory, record):
    import json

    tmp = os.path.join(directory, f".service.json.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
        handle.write("\n")
    os.replace(tmp, os.path.join(directory, "service.json"))
    # Where the hub follows this start from the same host, it holds a named pipe here: a byte
    # wakes it to read service.json now (elsewhere there is none, and nothing happens).
    try:
        wake = os.open(os.path.join(directory, "wake"), os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        import stat

        if stat.S_ISFIFO(os.fstat(wake).st_mode):  # a file of that name is left as it is
            os.write(wake, b"\n")
    except OSError:
        pass
    finally:
        os.close(wake)


def listening_sockets(port, proc_net=None):
    """(uid, inode) of each socket listening on TCP ``port`` of this host (IPv4 and IPv6).

    Asked of the kernel over netlink (sock_diag: listening sockets on that port only), which costs
    the same however many connections the host holds. /proc/net/tcp, the fallback where netlink is
    not allowed (and what ``proc_net`` names), makes the kernel walk its whole connection table at
    each read: milliseconds on a host with a large table, and a hundred starting jobs read it often.
    """
    if proc_net is None:
        try:
            return _listening_by_netlink(port)
        except OSError:
            proc_net = ("/proc/net/tcp", "/proc/net/tcp6")
    return _listening_in_proc(port, proc_net)


def _listening_by_netlink(port):
    import socket
    import struct

    found = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as sock:  # NETLINK_SOCK_DIAG
        sock.settimeout(2)
        for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            # struct inet_diag_req_v2: family, TCP, no extensions, padding, the states wanted
            # (1 << TCP_LISTEN), then the socket id: its source port (network order), the rest 0.
            request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10)
            request += struct.pack("!H", port) + bytes(46)
            # struct nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0.
            sock.send(struct.pack("=IHHII", 16 + len(request), 20, 0x301, sequence, 0) + request)
            while not _read_dump(sock.recv(65536), port, found):
                pass
    return found


def _read_dump(data, port, found):
    """Add the (uid, inode) of each answer in ``data`` to ``found``; True once the dump is done."""
    import struct

    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            raise OSError("a malformed netlink answer")
        if kind == 3:  # NLMSG_DONE
            return True
        if kind == 2:  # NLMSG_ERROR: a negative errno follows the header
            raise OSError(-struct.unpack_from("=i", data, offset + 16)[0], "sock_diag refused")
        # struct inet_diag_msg: the source port at 4 (network order), uid and inode at 64 and 68.
        if kind == 20 and length >= 16 + 72:
            (source_port,) = struct.unpack_from("!H", data, offset + 16 + 4)
            uid, inode = struct.unpack_from("=II", data, offset + 16 + 64)
            if source_port == port:
                found.add((uid, inode))
        offset += (length + 3) & ~3
    return False


def _listening_in_proc(port, tables):
    found = set()
    wanted = f"{port:04X}"
    for table in tables:
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    parts = line.split()
                    # local_address is HEXADDR:HEXPORT; state 0A is LISTEN; uid and inode: 7 and 9.
                    if len(parts) > 9 and parts[3] == "0A" and parts[1].rsplit(":", 1)[-1] == wanted:
                        found.add((int(parts[7]), int(parts[9])))
        except (OSError, ValueError):
            pass
    return found


def process_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def owns(pid, port):
    inodes = {f"socket:[{inode}]" for _, inode in listening_sockets(port)}
    if not inodes:
        return 1
    for member in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{member}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{member}/fd/{fd}")
            except OSError:
                continue
            if link in inodes:
                return 0
    return 3


def ended(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def answers_on_loopback(port):
    """Whether something accepts connections on 127.0.0.1:PORT (a refused connect costs microseconds)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def listen_wait(pid, port, seconds):
    import time

    # The full check of who listens reads every process's descriptors once something listens. So a
    # cheap probe on loopback (an app bound to 127.0.0.1 or to all addresses answers it) runs every
    # 5 ms, and the full check when the probe is answered and every 100 ms (an app bound to another
    # address only).
    started = time.monotonic()
    checks = 0
    while True:
        if checks % 20 == 0 or answers_on_loopback(port):
            found = owns(pid, port)
            if found in (0, 3):
                return found
        checks += 1
        if ended(pid):
            return 4
        if time.monotonic() > started + seconds:
            return 5
        time.sleep(0.005)


def free_port(host):
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_ready(where, path):
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(where)

    if where.startswith("/"):
        connection = UnixConnection("localhost", timeout=2)
    else:
        host, _, port = where.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", path, headers={"Host": "localhost"})
        return 0 if connection.getresponse().status < 500 else 1
    except (OSError, http.client.HTTPException):
        return 1
    finally:
        connection.close()


def main(args):
    command = args[0] if args else ""
    if command == "begin":
        problem = checkdir(args[1])
        if problem:
            print(problem, file=sys.stderr)
            return 1
        if len(args) > 2:
            status("STARTING", args[2])
        return 0
    if command == "status":
        status(args[1], args[2] if len(args) > 2 else "")
        return 0
    if command == "port":
        port = free_port(args[1] if len(args) > 1 else "")
        if len(args) > 2:
            status("STARTING", args[2], port=str(port))
        print(port)
        return 0
    if command in ("listen-wait", "ready"):
        if command == "ready" and len(args) > 4:
            status("STARTING", args[4], port=args[2])
        elif command == "ready":
            import json  # noqa: F401  (now, while the app boots, not after it listens)
        found = listen_wait(int(args[1]), int(args[2]), float(args[3]))
        if found == 0 and command == "ready":
            status("RUNNING", "", port=args[2])
        return found
    if command == "ending":
        ending(int(args[1]))
        return 0
    if command == "secret":
        print(os.urandom(24).hex())
        return 0
    if command == "http-ready":
        return http_ready(args[1], args[2])
    print(f"job helper: unknown command {command!r}", file=sys.stderr)
    return 2


# The job runs this file as a script; the hub imports it for listening_sockets (the same check of
# who listens on a port, on its own host).
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
PW_HELPER_PY
pw_helper() { "$PW_PYTHON" -I -S -c "$PW_HELPER" "$@"; }
# The job directory must be this account's own, 0700: under a shared root another user could
# otherwise plant the files this job runs (the proxy's configuration) or reads.
[ -d "$PW_JOB_DIR" ] || mkdir -p -m 0700 "$PW_JOB_DIR" 2>/dev/null
PW_DIR_PROBLEM="$(pw_helper begin "$PW_JOB_DIR" 2>&1)" || {
    echo "pw_spawner: refusing to run: $PW_DIR_PROBLEM" >&2
    exit 1
}
# The scheduler starts jobs in the submitting directory (the hub's); apps start from home.
cd "$HOME" || cd /

# service.json is written whole, with a JSON encoder, and renamed into place.
pw_status() {
    pw_helper status "$1" "${2:-}"
}
pw_fail() {
    echo "pw_spawner: $1" >&2
    pw_status FAILED "$1"
    exit 1
}
# The app's end, and nothing else: a signal this shell traps (the walltime warning) interrupts
# `wait`, which then resumes while the app still runs.
pw_wait_app() {
    while :; do
        wait "$PW_APP_PID"
        PW_RC=$?
        [ "$PW_RC" -gt 128 ] && kill -0 "$PW_APP_PID" 2>/dev/null || return 0
    done
}

# ---- environment: none

# ---- from the hub (contains the server's API token: this script is never logged)
export JUPYTERHUB_API_TOKEN=TOKEN
export JUPYTERHUB_USER=alice
export JUPYTERHUB_SERVICE_PREFIX=/user/alice/

# ---- app: xpra
# Xpra does not authenticate with the hub: jupyter-standaloneproxy does, in front of it.
# The app listens on a unix socket in a directory only this job's user can enter, or on 127.0.0.1
# with a secret of this session, so that nobody else on the node can reach it around the proxy.
PW_APP_NAME=Xpra
PW_PROXY=(jupyter-standaloneproxy)
command -v "${PW_PROXY[0]}" >/dev/null \
    || pw_fail 'jupyter-standaloneproxy was not found in this environment (pip install '"'"'jupyter-server-proxy[standalone]'"'"')'
pw_free_port() { pw_helper port 127.0.0.1; }
pw_secret() { pw_helper secret; }
PW_PORT="$(pw_helper port "$PW_BIND_IP")" || pw_fail "no free port on this node"
export JUPYTERHUB_SERVICE_URL="http://${PW_BIND_IP}:${PW_PORT}${JUPYTERHUB_SERVICE_PREFIX:-/}"

PW_APP_DIR="$PW_JOB_DIR/app"
rm -rf "$PW_APP_DIR" && mkdir -m 0700 "$PW_APP_DIR" || pw_fail "cannot make $PW_APP_DIR"
# A unix socket's path is limited to 107 bytes: a deep job directory gets a private one in /tmp.
PW_SOCK_DIR="$PW_APP_DIR"
if [ -n "${PW_SOCK_DIR:80}" ]; then
    PW_SOCK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pw-XXXXXXXX")" || pw_fail "cannot make a socket directory"
fi

# The proxy's configuration: a fix for its websocket authentication (see the file's comments).
cat >"$PW_APP_DIR/proxy_config.py" <<'PW_PROXY_CONFIG'
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
PW_PROXY_CONFIG

PW_PIDS=()
# Helpers the session cannot do without (websockify...), as "name pid": if one ends, the job fails.
PW_SUPERVISED=()
pw_stop_all() {
    local pid
    for pid in "${PW_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
    [ "$PW_SOCK_DIR" = "$PW_APP_DIR" ] || rm -rf "$PW_SOCK_DIR"
}
# Cancelling the job (scancel, qdel, stop) signals this shell: pass it on to every part of the app.
trap 'pw_stop_all; pw_status CANCELLED "stopped"; exit 0' TERM INT HUP

# pw_wait WHAT PID CHECK...: until CHECK succeeds; fails the job if PID ends or time runs out.
pw_wait() {
    local what="$1" pid="$2" waited=0 rc
    shift 2
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; rc=$?
            pw_stop_all
            pw_fail "$what exited with status $rc before it was ready (its output: $PW_LOG)"
        fi
        waited=$((waited + 1))
        if [ "$waited" -gt 1500 ]; then
            pw_stop_all
            pw_fail "$what was not ready within 300 s"
        fi
        sleep 0.2
    done
}
# pw_wait_listen WHAT PID PORT: until PID (or a child of it) listens on PORT. Another process
# listening there (another user took the port after it was picked) fails the job: nothing may be
# routed to it.
pw_wait_listen() {
    local rc
    pw_helper listen-wait "$2" "$3" 300
    rc=$?
    [ "$rc" -eq 0 ] || pw_listen_failed "$1" "$2" "$3" "$rc"
}
# pw_listen_failed WHAT PID PORT RC: end the session with what a listen-wait's RC means.
pw_listen_failed() {
    pw_stop_all
    case $4 in
        3) pw_fail "port $3 on $(hostname) was taken by another process before $1 listened on it; please start again" ;;
        4) wait "$2"; pw_fail "$1 exited with status $? before it was ready (its output: $PW_LOG)" ;;
        *) pw_fail "$1 was not ready within 300 s" ;;
    esac
}
# pw_xauth DISPLAY: the session's X cookie for DISPLAY in $XAUTHORITY. xauth reads it from stdin, so
# it never stands in a command line. An X server given -auth takes every entry of the file, whatever
# its display number, so one for :0 serves until the server has picked its display (-displayfd).
pw_xauth() {
    echo "add $1 . $PW_X_COOKIE" | xauth -q -f "$XAUTHORITY" source - || pw_fail "xauth could not write $XAUTHORITY"
}
PW_XPRA=(xpra)
for pw_tool in "${PW_XPRA[0]}" Xvfb xauth; do
    command -v "$pw_tool" >/dev/null || pw_fail "$pw_tool was not found on this node"
done

pw_status STARTING "starting Xpra"
# The job starts the X server itself (xpra --use-display): it stays in the job's process group, so
# cancelling the job ends it even when xpra dies before it could, and only the session's cookie opens it.
export XAUTHORITY="$PW_APP_DIR/Xauthority"
PW_X_COOKIE="$(pw_secret | cut -c1-32)" || pw_fail "python3 is not available to make a secret"
pw_xauth :0
Xvfb +extension GLX +extension Composite -screen 0 5760x2560x24+32 -dpi 96 -nolisten tcp -noreset -auth "$XAUTHORITY" -displayfd 3 3>"$PW_APP_DIR/display" &
PW_XVFB_PID=$!
PW_PIDS+=("$PW_XVFB_PID")
pw_wait "the X server" "$PW_XVFB_PID" test -s "$PW_APP_DIR/display"
export DISPLAY=":$(cat "$PW_APP_DIR/display")"
pw_xauth "$DISPLAY"

PW_XPRA_SOCKET="$PW_SOCK_DIR/xpra.sock"
"${PW_XPRA[@]}" start "$DISPLAY" --use-display=yes --daemon=no --bind="$PW_XPRA_SOCKET" \
    --socket-dir="$PW_APP_DIR" --socket-dirs="$PW_APP_DIR" --html=on --exit-with-children=yes \
    --start-child=xterm --mdns=no --pulseaudio=no --notifications=no --webcam=no --printing=no --dbus-proxy=no --systemd-run=no --speaker=off --microphone=off &
PW_APP_PID=$!
PW_PIDS+=("$PW_APP_PID")
pw_wait Xpra "$PW_APP_PID" test -S "$PW_XPRA_SOCKET"
PW_PROXY_ARGS=(--unix-socket="$PW_XPRA_SOCKET")
pw_status STARTING "starting the authenticating proxy"
# jupyter-standaloneproxy (4.6) needs a command to supervise and starts it at the first request.
# The job has started the app itself (so that a failure shows on the spawn page), and gives the proxy
# a command that only lives as long as this job.
# Its own activity reports are off: they claim "active now" at every interval, used or not (and
# need a server name), which would keep idle servers from being culled. The hub learns of real use
# from its proxy's traffic instead.
# RUNNING (written by the helper) once the proxy itself listens. Jobs starting at once on one node
# can be handed the same free port: the one that loses tries another, up to three ports in all.
PW_TRIES=0
while :; do
    "${PW_PROXY[@]}" --config="$PW_APP_DIR/proxy_config.py" --address="$PW_BIND_IP" --port="$PW_PORT" \
        --activity-interval=0 "${PW_PROXY_ARGS[@]}" \
        -- tail --pid="$$" -f /dev/null &
    PW_PROXY_PID=$!
    PW_PIDS+=("$PW_PROXY_PID")
    pw_helper ready "$PW_PROXY_PID" "$PW_PORT" 300
    PW_READY=$?
    PW_TRIES=$((PW_TRIES + 1))
    [ "$PW_READY" -eq 3 ] && [ "$PW_TRIES" -lt 3 ] || break
    kill -TERM "$PW_PROXY_PID" 2>/dev/null
    wait "$PW_PROXY_PID" 2>/dev/null
    PW_PORT="$(pw_helper port "$PW_BIND_IP")" || pw_fail "no free port on this node"
    export JUPYTERHUB_SERVICE_URL="http://${PW_BIND_IP}:${PW_PORT}${JUPYTERHUB_SERVICE_PREFIX:-/}"
done
[ "$PW_READY" -eq 0 ] || pw_listen_failed jupyter-standaloneproxy "$PW_PROXY_PID" "$PW_PORT" "$PW_READY"

# The session lasts while the app, the proxy and every supervised helper do (helpers such as a
# terminal may come and go).
pw_ended=""
while [ -z "$pw_ended" ]; do
    kill -0 "$PW_APP_PID" 2>/dev/null || break
    kill -0 "$PW_PROXY_PID" 2>/dev/null || pw_ended="jupyter-standaloneproxy"
    for pw_entry in "${PW_SUPERVISED[@]}"; do
        kill -0 "${pw_entry##* }" 2>/dev/null || pw_ended="${pw_entry% *}"
    done
    [ -n "$pw_ended" ] || wait -n 2>/dev/null || sleep 1
done
if [ -n "$pw_ended" ]; then
    pw_stop_all
    pw_status FAILED "$pw_ended exited, which ends the session (its output: $PW_LOG)"
    exit 1
fi
pw_wait_app
pw_stop_all
if [ "$PW_RC" -eq 0 ]; then
    pw_status COMPLETED ""
else
    pw_status FAILED "$PW_APP_NAME exited with status $PW_RC (its output: $PW_LOG)"
fi
exit "$PW_RC"

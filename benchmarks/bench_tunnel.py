"""SSH tunnels: the pw_spawner tunnel process against OpenSSH's ``ssh -L`` and a direct connection.

Everything runs on 127.0.0.1: a private OpenSSH server (``tests/support/sshd.py``, started and
stopped by the benchmark, logged into as ``pwsshuser`` when run as root, else as the benchmark's own
account) stands in for a cluster's login node, and a small threaded HTTP server (a process of its
own) for the app on a compute node. Four measurements, each printed side by side:

1. Bulk throughput: one HTTP download of ``--bulk-mb`` MB (1 GB by default), read by a client process
   of its own, (a) directly from the server, (b) through a local forward of the pw_spawner tunnel
   process (:class:`~pw_spawner.remote.tunnel_client.TunnelProcessClient`, started on first use with
   its socket in a 0700 temp dir, one asyncssh connection to the sshd), (c) through OpenSSH
   ``ssh -N -L 127.0.0.1:P:127.0.0.1:S`` to the same sshd. Median of ``--repeats`` downloads each,
   the paths alternating; with the CPU seconds the forwarding client (tunnel process or ``ssh``) and
   the sshd side spent per GB.
2. Small-request latency: ``--requests`` sequential GETs of a 60-byte JSON answer, each on a new TCP
   connection (through a tunnel: a new SSH channel each), and as many on one kept-alive connection;
   p50, p99, max and how many took over 10 ms, for the same three paths.
3. SSH connections held for ``--sessions`` sessions (50) on one cluster: that many forwards (one key
   and one server port each) opened through the tunnel process, each used once; the tunnel
   process's ``stats()['connections_opened']``, the ESTABLISHED TCP connections from it to the sshd
   port (from ``/proc``), the sshd processes serving them and the client's memory, against one
   ``ssh -N -L`` per session.
4. Hub API latency while a tunnel carries a bulk download: a tornado app with one JSON handler (the
   stand-in for the hub's API) runs in a process H; a prober GETs it, a new connection each, every
   5 ms, and reports p50/p99/max. Three cases: H idle (baseline); "inline", where H also holds the
   forward (:class:`~pw_spawner.remote.tunnel_client.InlineTunnels`, on H's own event loop, which is
   ``tunnel_mode = "inline"``) and a client downloads ``--bulk-mb`` MB through it for the whole time;
   "process", where the same download crosses the tunnel process's forward instead. Each case runs
   twice: with every process free to use both cores (on two cores the forwarding then also takes
   CPU from H), and pinned, H and the prober on CPU 0 and everything else (sshd, tunnel process, app,
   download client) on CPU 1, which separates the event loop's share from the competition for cores
   (``--no-pinning`` skips that run).

The benchmark's own process only orchestrates and runs the latency probes (sequential, blocking);
the HTTP server, the hub stand-in and each download client are processes of their own, so that no
two measured parts share an interpreter. On two cores the parts still compete for CPU, as they
would on a small hub host. Every process it starts is stopped at its end, on an error and on
Ctrl-C or SIGTERM; the children also get SIGTERM if the benchmark is killed outright (parent-death
signal), except the tunnel process, which is detached by design and only stopped by the cleanup.

    python benchmarks/bench_tunnel.py            # 1 GB, 3 repeats, 500 requests, 50 sessions; ~100 s
    python benchmarks/bench_tunnel.py --quick    # 100 MB, 1 repeat, 100 requests; ~30 s

Run it as root (sessions log in as the ordinary account ``pwsshuser``, created if missing) or as
an ordinary user (sessions log in as that user). It needs OpenSSH's server and client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _common import command_line, machine_line, print_table, process_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
SMALL_BODY = b'{"kind": "small", "padding": "0123456789012345678901234567"}\n'
SESSION_USER = "pwsshuser"
DIRECT, TUNNEL, OPENSSH = "direct", "pw_spawner tunnel process", "OpenSSH ssh -L"


# ================================================================================ child roles
# The same file runs the HTTP server, the hub stand-in and the download client (``--role``): each
# reads its parameters from argv, prints one JSON line when ready, and exits when its stdin closes.

def _die_with_parent() -> None:
    """preexec_fn of every child: SIGTERM when the benchmark dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_when_stdin_closes(on_close: Callable[[], None] = lambda: os._exit(0)) -> None:
    def watch() -> None:
        with contextlib.suppress(OSError):
            while sys.stdin.buffer.read(4096):
                pass
        on_close()

    threading.Thread(target=watch, daemon=True).start()


def _read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _serve_connection(conn: socket.socket, chunk: memoryview) -> None:
    """HTTP/1.x: ``GET /bytes/N`` sends N bytes, anything else the small JSON body."""
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            try:
                got = _read_head(conn, buf)
            except OSError:
                return
            if got is None:
                return
            head, buf = got
            request = head.split(b"\r\n", 1)[0].split()
            path, version = request[1], request[2] if len(request) > 2 else b"HTTP/1.0"
            keep = version == b"HTTP/1.1" and b"connection: close" not in head.lower()
            size = int(path[7:]) if path.startswith(b"/bytes/") else len(SMALL_BODY)
            header = (f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: "
                      f"{'application/octet-stream' if path.startswith(b'/bytes/') else 'application/json'}"
                      f"\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode()
            try:
                if path.startswith(b"/bytes/"):
                    conn.sendall(header)
                    left = size
                    while left > 0:
                        n = min(left, len(chunk))
                        conn.sendall(chunk[:n])
                        left -= n
                else:
                    conn.sendall(header + SMALL_BODY)
            except OSError:
                return
            if not keep:
                return


def role_data(ports: int) -> None:
    """The stand-in app: ``ports`` listening sockets on 127.0.0.1, a thread per connection."""
    import selectors

    chunk = memoryview(os.urandom(4 * MB))
    sel = selectors.DefaultSelector()
    listeners = []
    for _ in range(ports):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sel.register(sock, selectors.EVENT_READ)
        listeners.append(sock)
    print(json.dumps({"ports": [s.getsockname()[1] for s in listeners]}), flush=True)
    _exit_when_stdin_closes()
    while True:
        for key, _ in sel.select():
            with contextlib.suppress(OSError):
                conn, _ = key.fileobj.accept()
                threading.Thread(target=_serve_connection, args=(conn, chunk), daemon=True).start()


def role_hub(inline_target: str | None, data_port: int) -> None:
    """The hub stand-in: tornado on asyncio, one JSON handler; with a target, also an inline forward."""
    import tornado.httpserver
    import tornado.netutil
    import tornado.web

    from pw_spawner.remote.ssh import SSHTarget
    from pw_spawner.remote.tunnel_client import InlineTunnels

    class Api(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"version": "6", "server": {"name": "", "ready": True}, "t": time.time()})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        _exit_when_stdin_closes(lambda: loop.call_soon_threadsafe(stop.set))
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hub/api/.*", Api)]))
        server.add_sockets(sockets)
        ready = {"api_port": sockets[0].getsockname()[1], "pid": os.getpid()}
        if inline_target:
            target = SSHTarget(**json.loads(inline_target))
            ready["forward_port"] = await InlineTunnels().open("bench-inline", target, "127.0.0.1", data_port)
        print(json.dumps(ready), flush=True)
        await stop.wait()
        server.stop()
        if inline_target:
            await InlineTunnels.service().shutdown()

    asyncio.run(main())


def download(port: int, size: int, bufsize: int = 4 * MB) -> float:
    """GET /bytes/size from 127.0.0.1:port, read to the last byte; seconds from connect to it."""
    buf = bytearray(bufsize)
    view = memoryview(buf)
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        got = _read_head(sock, b"")
        if got is None:
            raise RuntimeError(f"no answer on port {port}")
        head, rest = got
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"unexpected answer: {head[:80]!r}")
        left = size - len(rest)
        while left > 0:
            n = sock.recv_into(view, min(left, bufsize))
            if not n:
                raise RuntimeError(f"connection closed with {left} bytes to go")
            left -= n
    return time.perf_counter() - began


def role_download(port: int, size: int) -> None:
    print(json.dumps({"seconds": download(port, size)}), flush=True)


# ============================================================================== measurement

def http_get(port: int, path: str = "/small", sock: socket.socket | None = None) -> None:
    """One GET; on ``sock`` (kept alive) or on a new connection that is closed after it."""
    own = sock is None
    if own:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        close = "Connection: close\r\n" if own else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{close}\r\n".encode())
        got = _read_head(sock, b"")
        if got is None:
            raise RuntimeError(f"no answer on port {port}")
        head, body = got
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"unexpected answer: {head[:80]!r}")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed mid-body")
            body += chunk
    finally:
        if own:
            sock.close()


def latencies(port: int, count: int, keep_alive: bool, path: str = "/small") -> list[float]:
    sock = None
    if keep_alive:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            http_get(port, path, sock)
            times.append(time.perf_counter() - began)
    finally:
        if sock is not None:
            sock.close()
    return times


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def fmt_ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def established_to(pids: Sequence[int], port: int) -> int:
    """ESTABLISHED TCP connections owned by ``pids`` whose remote end is 127.0.0.1:port."""
    mine = set().union(*(socket_inodes(pid) for pid in pids)) if pids else set()
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and remote_port == port and fields[9] in mine:
            count += 1
    return count


def listening(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            return True
    return False


def free_ports(count: int) -> list[int]:
    """The test suite's (tests/support/net.py): distinct free ports on 127.0.0.1."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.net import free_ports as free

    return free(count)


# ================================================================================ the bench

class Bench:
    """Owns every process the run starts, so that ``stop()`` can end each one by its pid."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="pw-bench-tunnel-"))
        self.work.chmod(0o755)  # sshd's AuthorizedKeysCommand cats a file below it
        self.children: list[subprocess.Popen[bytes]] = []
        self.sshs: list[subprocess.Popen[bytes]] = []
        self.sshd = None
        self.tunnel_pid: int | None = None
        tun_dir = self.work / "tun"
        tun_dir.mkdir(mode=0o700)
        self.socket_path = str(tun_dir / "tunnel.sock")
        self.loop = asyncio.new_event_loop()

    # -- processes ---------------------------------------------------------------------------
    def spawn_role(self, *role_args: str) -> tuple[subprocess.Popen[bytes], dict]:
        proc = subprocess.Popen([sys.executable, __file__, "--role", *role_args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                preexec_fn=_die_with_parent, cwd=str(REPO))
        self.children.append(proc)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {role_args[0]} process exited at start ({proc.wait()})")
        return proc, json.loads(line)

    def end(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self.children:
            self.children.remove(proc)

    def start_download(self, port: int, size: int, cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
        def prepare() -> None:
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        proc = subprocess.Popen([sys.executable, __file__, "--role", "download", str(port), str(size)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=prepare,
                                cwd=str(REPO))
        self.children.append(proc)
        return proc

    def finish_download(self, proc: subprocess.Popen[bytes]) -> float:
        out = proc.stdout.read()
        code = proc.wait()
        self.end(proc)
        if code:
            raise RuntimeError(f"a download failed (exit {code})")
        return json.loads(out)["seconds"]

    def start_ssh_forward(self, local_port: int, remote_port: int, log: Path | None = None
                          ) -> subprocess.Popen[bytes]:
        argv = ["ssh", "-N", "-F", "/dev/null",
                "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
                "-i", str(self.sshd.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-p", str(self.sshd.port), f"{self.user}@127.0.0.1"]
        if log is not None:
            argv.insert(1, "-v")
        with open(log or os.devnull, "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, preexec_fn=_die_with_parent)
        self.sshs.append(proc)
        return proc

    def wait_listening(self, procs_ports: Sequence[tuple[subprocess.Popen[bytes], int]],
                       timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        pending = list(procs_ports)
        while pending:
            pending = [(p, port) for p, port in pending if not listening(port)]
            for proc, port in pending:
                if proc.poll() is not None:
                    raise RuntimeError(f"ssh -L for port {port} exited ({proc.returncode}); "
                                       f"sshd log:\n{self.sshd.tail(10)}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"ssh -L did not listen within {timeout:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        for proc in list(self.children):
            self.end(proc)
        for proc in self.sshs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.sshs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.sshs.clear()
        if self.tunnel_pid is not None:
            pid, self.tunnel_pid = self.tunnel_pid, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
        if self.sshd is not None:
            self.sshd.stop()
        self.loop.run_until_complete(asyncio.sleep(0.1))  # the child watcher reaps the tunnel process
        self.loop.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from support.sshd import SSHServer, ensure_login_user, sshd_available

        from pw_spawner.remote.ssh import SSHTarget
        from pw_spawner.remote.tunnel_client import TunnelProcessClient

        ok, why = sshd_available()
        if not ok:
            raise SystemExit(f"cannot start sshd: {why}")
        if shutil.which("ssh") is None:
            raise SystemExit("the OpenSSH client (ssh) is not on PATH")
        self.user = ensure_login_user(SESSION_USER).pw_name if os.geteuid() == 0 \
            else pwd.getpwuid(os.getuid()).pw_name
        self.sshd = SSHServer(self.work / "sshd").start()
        self.target = SSHTarget(host="127.0.0.1", port=self.sshd.port, username=self.user,
                                known_hosts=str(self.sshd.known_hosts), key_file=str(self.sshd.client_key))
        self.data, ready = self.spawn_role("data", str(1 + self.args.sessions))
        self.data_port, self.session_ports = ready["ports"][0], ready["ports"][1:]
        self.tunnels = TunnelProcessClient(self.socket_path)

    def run(self, coro):
        # One loop for the whole run: asyncio's child watcher follows the tunnel process (started
        # by the client with create_subprocess_exec) on the loop that started it.
        return self.loop.run_until_complete(coro)

    async def _open(self, key: str, port: int) -> tuple[int, dict]:
        local = await self.tunnels.open(key, self.target, "127.0.0.1", port)
        return local, await self.tunnels.stats()

    async def ciphers(self) -> str:
        """The cipher pw_spawner's connections negotiate with this sshd (what the tunnel process uses)."""
        import asyncssh

        from pw_spawner.remote.ssh import SSHOptions

        async with asyncssh.connect("127.0.0.1", self.sshd.port, username=self.user,
                                    known_hosts=self.target.known_hosts, client_keys=[self.target.key_file],
                                    agent_path=None, config=None,
                                    encryption_algs=list(SSHOptions().encryption_algs)) as conn:
            return str(conn.get_extra_info("recv_cipher"))

    # -- 1 and 2: throughput and latency ---------------------------------------------------
    def sshd_cpu(self) -> float:
        return sum(process_cpu_seconds(pid) or 0.0 for pid in self.sshd.session_pids())

    def paths(self) -> None:
        args = self.args
        size = args.bulk_mb * MB
        began = time.monotonic()
        tunnel_port, stats = self.run(self._open("bench-bulk", self.data_port))
        self.tunnel_pid = stats["pid"]
        print(f"tunnel process {self.tunnel_pid} up with its forward in {time.monotonic() - began:.2f} s",
              file=sys.stderr)
        self.tunnel_port = tunnel_port
        ssh_port = free_ports(1)[0]
        ssh_log = self.work / "ssh-bulk.log"
        ssh = self.start_ssh_forward(ssh_port, self.data_port, ssh_log)
        self.wait_listening([(ssh, ssh_port)])
        # Open each tunnel's SSH channel path once (sshd's forwarding code, the page cache).
        for port in (self.data_port, tunnel_port, ssh_port):
            http_get(port)
        asyncssh_cipher = self.run(self.ciphers())
        openssh_cipher = next((line.split("cipher:")[1].split()[0] for line in
                               ssh_log.read_text(errors="replace").splitlines()
                               if "server->client cipher:" in line), "?")
        print(f"ciphers: asyncssh {asyncssh_cipher}, OpenSSH {openssh_cipher}", file=sys.stderr)
        self.cipher_note = f"asyncssh {asyncssh_cipher}, OpenSSH {openssh_cipher}"

        routes = [(DIRECT, self.data_port, None), (TUNNEL, tunnel_port, self.tunnel_pid),
                  (OPENSSH, ssh_port, ssh.pid)]
        bulk: dict[str, list[tuple[float, float | None, float | None]]] = {name: [] for name, _, _ in routes}
        for r in range(args.repeats):
            for name, port, client_pid in (routes if r % 2 == 0 else list(reversed(routes))):
                print(f"bulk {args.bulk_mb} MB, {name} ({r + 1}/{args.repeats}) ...", file=sys.stderr)
                c0 = process_cpu_seconds(client_pid) if client_pid else None
                s0 = self.sshd_cpu()
                seconds = self.finish_download(self.start_download(port, size))
                c1 = process_cpu_seconds(client_pid) if client_pid else None
                cpu = None if c0 is None or c1 is None else c1 - c0
                sshd_cpu = self.sshd_cpu() - s0 if client_pid else None
                bulk[name].append((seconds, cpu, sshd_cpu))

        def rate(name: str) -> float:
            return size / MB / statistics.median(s for s, _, _ in bulk[name])

        def per_gb(values: list[float | None]) -> str:
            if any(v is None for v in values):
                return "-"
            return f"{statistics.median(values) / (size / 1024 / MB):.2f} s"

        rows = []
        for name, _, _ in routes:
            rows.append([name, f"{rate(name):.0f} MB/s", ratio(rate(name), rate(DIRECT)),
                         " / ".join(f"{size / MB / s:.0f}" for s, _, _ in bulk[name]),
                         per_gb([c for _, c, _ in bulk[name]]), per_gb([c for _, _, c in bulk[name]])])
        self.bulk_rates = {name: rate(name) for name, _, _ in routes}
        print_table(f"1. Bulk throughput: one {args.bulk_mb} MB HTTP download on 127.0.0.1 "
                    f"(median of {args.repeats}; ciphers: {self.cipher_note})",
                    ["path", "throughput", "vs direct", "each run (MB/s)", "forwarder CPU/GB",
                     "sshd CPU/GB"], rows)

        lat_rows = []
        results: dict[tuple[str, bool], list[float]] = {}
        for keep in (False, True):
            for name, port, _ in routes:
                print(f"latency, {name}, {'keep-alive' if keep else 'new connection each'} ...",
                      file=sys.stderr)
                latencies(port, min(20, args.requests), keep)  # warm-up
                results[name, keep] = latencies(port, args.requests, keep)
        for keep in (False, True):
            base = results[DIRECT, keep]
            for name, _, _ in routes:
                values = results[name, keep]
                lat_rows.append([name, "kept alive" if keep else "new each request",
                                 fmt_ms(pct(values, 50)), fmt_ms(pct(values, 99)), fmt_ms(max(values)),
                                 sum(v > 0.01 for v in values),
                                 ratio(pct(values, 50), pct(base, 50)),
                                 ratio(pct(values, 99), pct(base, 99))])
        print_table(f"2. Small-request latency: {args.requests} sequential GETs (60-byte JSON)",
                    ["path", "TCP connection", "p50", "p99", "max", "> 10 ms", "p50 vs direct",
                     "p99 vs direct"], lat_rows)
        self.latency = results
        self.end_ssh(ssh)
        self.settle_sshd()

    def settle_sshd(self, timeout: float = 5) -> int:
        """The number of sshd session processes once it has stopped changing (closed ones exit)."""
        deadline = time.monotonic() + timeout
        last, since = len(self.sshd.session_pids()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.sshd.session_pids())
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > 0.5:
                break
        return last

    def end_ssh(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=5)
        self.sshs.remove(proc)

    # -- 3: connections held for N sessions --------------------------------------------------
    def sessions(self) -> None:
        n = self.args.sessions
        print(f"{n} sessions through the tunnel process ...", file=sys.stderr)

        async def open_all() -> tuple[list[int], dict, float]:
            began = time.perf_counter()
            ports = [await self.tunnels.open(f"bench-session-{i}", self.target, "127.0.0.1", port)
                     for i, port in enumerate(self.session_ports)]
            return ports, await self.tunnels.stats(), time.perf_counter() - began

        ports, stats, open_time = self.run(open_all())
        for port in ports:
            http_get(port)
        tunnel_conns = established_to([self.tunnel_pid], self.sshd.port)
        tunnel_sshd = self.settle_sshd()
        tunnel_rss = rss_kb(self.tunnel_pid)

        async def close_all() -> tuple[dict, float]:
            began = time.perf_counter()
            for i in range(n):
                await self.tunnels.close(f"bench-session-{i}")
            return await self.tunnels.stats(), time.perf_counter() - began

        after, close_time = self.run(close_all())

        print(f"{n} sessions with one ssh -L each ...", file=sys.stderr)
        local_ports = free_ports(n)
        began = time.perf_counter()
        batch = 8  # sshd's MaxStartups (10:30:100) drops connections beyond 10 unauthenticated ones
        procs = []
        for start in range(0, n, batch):
            pairs = zip(local_ports[start:start + batch], self.session_ports[start:start + batch],
                        strict=True)
            chunk = [(self.start_ssh_forward(lp, sp), lp) for lp, sp in pairs]
            self.wait_listening(chunk)
            procs.extend(p for p, _ in chunk)
        ssh_open = time.perf_counter() - began
        for port in local_ports:
            http_get(port)
        ssh_conns = established_to([p.pid for p in procs], self.sshd.port)
        ssh_sshd = self.settle_sshd() - tunnel_sshd  # the tunnel process's connection is still up
        ssh_rss = sum(rss_kb(p.pid) for p in procs)
        began = time.perf_counter()
        for proc in procs:
            self.end_ssh(proc)
        ssh_close = time.perf_counter() - began

        print_table(
            f"3. SSH connections held for {n} sessions on one cluster (each forward used once; the "
            "tunnel process's connection also carries the forward of parts 1 and 2)",
            ["method", "client processes", "connections_opened", "ESTABLISHED to sshd", "sshd processes",
             "client RSS", f"open {n}", f"close {n}"],
            [[TUNNEL, 1, f"{stats['connections_opened']} (open now: {stats['connections_open']})",
              tunnel_conns, tunnel_sshd, f"{tunnel_rss / 1024:.0f} MB", f"{open_time:.2f} s",
              f"{close_time:.2f} s"],
             [f"{OPENSSH} per session", n, n, ssh_conns, ssh_sshd,
              f"{ssh_rss / 1024:.0f} MB", f"{ssh_open:.2f} s", f"{ssh_close:.2f} s"]])
        if after["forwards"] != 1:
            print(f"warning: {after['forwards']} forwards left after closing the sessions' "
                  "(expected 1, the bulk one)", file=sys.stderr)

    # -- 4: hub API latency under a bulk transfer ---------------------------------------------
    def probe(self, api_port: int, until: Callable[[], bool], min_seconds: float = 0.0,
              every: float = 0.005) -> list[float]:
        times = []
        began = time.monotonic()
        while not until() or time.monotonic() - began < min_seconds:
            t0 = time.perf_counter()
            http_get(api_port, "/hub/api/")
            times.append(time.perf_counter() - t0)
            time.sleep(max(0.0, every - (time.perf_counter() - t0)))
        return times

    def pin(self, pids: Sequence[int], cpus: set[int]) -> None:
        """Every thread of ``pids`` onto ``cpus`` (threads and children made later inherit it)."""
        for pid in pids:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, cpus)

    def hub_api(self) -> None:
        args = self.args
        rows: list[list[object]] = []
        everything = set(range(os.cpu_count() or 1))
        # The forwarding side: sshd (its listener forks the sessions), the tunnel process, the app.
        others = [self.sshd.proc.pid, *self.sshd.session_pids(), self.tunnel_pid, self.data.pid]
        placements = [("shared", "all processes share the cores", None)]
        if len(everything) >= 2 and not args.no_pinning:
            placements.append(("pinned", "H and the prober on CPU 0, the rest on CPU 1", ({0}, {1})))
        for placement, _, cpus in placements:
            results: dict[str, tuple[list[float], float | None, float | None]] = {}
            try:
                if cpus:
                    self.pin([os.getpid()], cpus[0])
                    self.pin(others, cpus[1])
                for label in ("idle", "inline", "process"):
                    results[label] = self.hub_case(label, cpus)
            finally:
                self.pin([os.getpid(), *others, *self.sshd.session_pids()], everything)
            base = results["idle"][0]
            for label, what in (("idle", "H idle (no transfer)"),
                                ("inline", "forward in H's event loop (InlineTunnels)"),
                                ("process", "forward in the tunnel process")):
                times, rate, hub_cpu = results[label]
                rows.append([what, placement, len(times), fmt_ms(pct(times, 50)), fmt_ms(pct(times, 99)),
                             fmt_ms(max(times)), ratio(pct(times, 99), pct(base, 99)),
                             "-" if rate is None else f"{rate:.0f} MB/s",
                             "-" if hub_cpu is None else f"{hub_cpu:.2f} s"])
        print_table(f"4. Hub API latency (tornado JSON handler in process H, a new connection per GET, "
                    f"every 5 ms) while {args.bulk_mb} MB flow through a tunnel; "
                    + "; ".join(f"{p}: {w}" for p, w, _ in placements),
                    ["case", "CPUs", "requests", "p50", "p99", "max", "p99 vs idle", "download", "H CPU"],
                    rows)

    def hub_case(self, label: str, cpus: tuple[set[int], set[int]] | None
                 ) -> tuple[list[float], float | None, float | None]:
        """One case of part 4: (the probe's latencies, the download's MB/s, H's CPU seconds)."""
        print(f"hub API latency: {label}{', pinned' if cpus else ''} ...", file=sys.stderr)
        hub_args = ["hub", str(self.data_port)]
        if label == "inline":
            hub_args += ["--inline-target", json.dumps(dataclasses.asdict(self.target))]
        hub, ready = self.spawn_role(*hub_args)
        try:
            if cpus:
                self.pin([hub.pid], cpus[0])
            api = ready["api_port"]
            latencies(api, 20, False, "/hub/api/")  # warm-up
            if label == "idle":
                return self.probe(api, lambda: True, min_seconds=self.args.idle_seconds), None, None
            size = self.args.bulk_mb * MB
            port = ready["forward_port"] if label == "inline" else self.tunnel_port
            h0 = process_cpu_seconds(hub.pid)
            dl = self.start_download(port, size, cpus[1] if cpus else None)
            times = self.probe(api, lambda: dl.poll() is not None)
            h1 = process_cpu_seconds(hub.pid)
            seconds = self.finish_download(dl)
            return times, size / MB / seconds, (h1 or 0) - (h0 or 0)
        finally:
            self.end(hub)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bulk-mb", type=int, default=None, help="size of each bulk download (1024)")
    parser.add_argument("--requests", type=int, default=None, help="sequential GETs per latency run (500)")
    parser.add_argument("--sessions", type=int, default=50, help="sessions (forwards) of part 3 (50)")
    parser.add_argument("--repeats", type=int, default=None, help="bulk downloads per path (3)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="length of the idle hub probe (3 s)")
    parser.add_argument("--no-pinning", action="store_true",
                        help="part 4 only with the processes sharing the cores (no CPU 0 / CPU 1 run)")
    parser.add_argument("--quick", action="store_true", help="100 MB, 100 requests, 1 repeat")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--inline-target", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role:
        role, *rest = args.role
        if role == "data":
            role_data(int(rest[0]))
        elif role == "hub":
            role_hub(args.inline_target, int(rest[0]))
        elif role == "download":
            role_download(int(rest[0]), int(rest[1]))
        return
    quick = args.quick
    args.bulk_mb = args.bulk_mb or (100 if quick else 1024)
    args.requests = args.requests or (100 if quick else 500)
    args.repeats = args.repeats or (1 if quick else 3)
    if quick:
        args.idle_seconds = min(args.idle_seconds, 1.0)

    import asyncssh

    print(machine_line())
    openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"asyncssh {asyncssh.__version__}; {openssh}")
    print(f"command: {command_line()}")

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    bench = Bench(args)
    began = time.monotonic()
    try:
        bench.setup()
        print(f"sshd on 127.0.0.1:{bench.sshd.port}, logging in as {bench.user}; app server on "
              f"127.0.0.1:{bench.data_port} (+{args.sessions} session ports)", file=sys.stderr)
        for label, part in (("parts 1 and 2", bench.paths), ("part 3", bench.sessions),
                            ("part 4", bench.hub_api)):
            part_began = time.monotonic()
            part()
            # Something else busy on the machine shows here (the parts themselves load both cores).
            print(f"({label}: {time.monotonic() - part_began:.0f} s; "
                  f"load average {os.getloadavg()[0]:.2f} after)")
    finally:
        bench.stop()
    print(f"\n(took {time.monotonic() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()

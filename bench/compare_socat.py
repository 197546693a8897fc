"""``mptcp-fast proxy`` against socat, the TCP-to-MPTCP proxy users run today, in one run:
plain TCP clients -> proxy -> a kernel MPTCP server over two paths. Root only.

    python bench/compare_socat.py                           # 256 MiB, best of 3; 2,000 echoes
    python bench/compare_socat.py --size 64M --rounds 1 --connections 500 --only kernel,socat

Topology: two namespaces made for the run (names carry the run's tag, ``testbed.run_name``).
``P`` holds the clients, every proxy's TCP listener (127.0.0.1:7300) and the kernel-side
proxies' MPTCP sockets; ``S`` holds the kernel MPTCP server (0.0.0.0:5000). Two veth pairs join
them, 198.18.0.0/24 and 198.18.2.0/24, with a "subflow" endpoint on P's 198.18.2.2: a kernel
MPTCP connection from P has two subflows, one per veth pair. The userspace engine's NIC is its
TUN device, moved into S (the kernel's side 198.18.4.1/24 and 198.18.6.1/24, the engine's
198.18.4.2 and 198.18.6.2): two subflows, one per address, straight into S's kernel.

The candidates, each started fresh for each measurement:

- ``socat``: ``mptcpize run socat TCP-LISTEN:7300,... TCP:198.18.0.1:5000`` (mptcpize, from
  mptcpd, LD_PRELOADs a library that turns every TCP socket socat makes into an MPTCP one:
  the listener too, which then takes plain TCP clients as fallback connections);
- ``socat-generic``: ``socat TCP-LISTEN:7300,... SOCKET-CONNECT:2:262:<sockaddr>``, socat's
  generic socket address asking for IPPROTO_MPTCP itself: the listener stays plain TCP, no
  preload;
- ``userspace``: ``mptcp-fast proxy --engine userspace`` (TUN, as above);
- ``kernel``: ``mptcp-fast proxy --engine kernel``.
- ``kernel-2w``: the same with ``--workers 2`` (two processes, SO_REUSEPORT listeners).

socat runs with its defaults (``fork``, an 8 KiB buffer: ``-b``) as users run it;
``--socat-buffer N`` adds ``-b N``.

Goodput: one client sends SIZE bytes to a sink through the proxy and waits for the close; the
best of ROUNDS, the candidates in alternation. Connections per second: CONNECTIONS clients, 8 at
a time (threads in one process), each connects, sends 64 bytes, reads the 64-byte echo and
closes. The sink is a blocking recv_into loop on 1 MiB; the echo server one selectors loop.
Every ratio printed is against the better socat of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mptcp_fast.cli.main import _size as parse_size  # noqa: E402  (the CLI's sizes)
from mptcp_fast.net.netns import Namespace, veth_pair  # noqa: E402
from mptcp_fast.testing.testbed import kernel_namespace, run_name  # noqa: E402

LOCK = "/tmp/mptcp-netns.lock"       # taken by every run that makes namespaces or TUN devices
PROXY_PORT = 7300
SERVER = ("198.18.0.1", 5000)
USERSPACE_SERVER = ("198.18.4.1", 5000)
CANDIDATES = ("socat", "socat-generic", "userspace", "kernel", "kernel-2w", "direct")
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

SERVER_CHILD = r"""
import selectors, socket, sys, threading
mode = sys.argv[1]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 5000))
listener.listen(4096)
if mode == "sink":                      # blocking reads, a thread per connection
    def sink(sock):
        buffer = bytearray(1 << 20)
        while sock.recv_into(buffer):
            pass
        sock.close()
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=sink, args=(sock,), daemon=True).start()
sel = selectors.DefaultSelector()       # echo: one loop (small echoes, many connections)
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        sock = key.fileobj
        if sock is listener:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            sock.send(data)             # 64 bytes: the socket's buffer takes them
        else:
            sel.unregister(sock)
            sock.close()
"""

CLIENT_CHILD = r"""
import json, selectors, socket, sys, time
mode, port, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
address, protocol = ("127.0.0.1", port), 0
if len(sys.argv) > 4:                   # direct: kernel MPTCP to the server, no proxy
    address, protocol = (sys.argv[4], int(sys.argv[5])), 262
def connect():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, protocol)
    sock.settimeout(10)
    sock.connect(address)
    sock.settimeout(None)
    return sock
if mode == "goodput":
    buffer = memoryview(bytearray(1 << 20))
    start = time.monotonic()
    sock = connect()
    sent = 0
    while sent < amount:
        sent += sock.send(buffer[:min(len(buffer), amount - sent)])
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()
    print(json.dumps({"seconds": time.monotonic() - start}))
    sys.exit()
# connections/s: one selectors loop keeps 8 connections in flight (8 threads in one process
# spent their time passing the GIL: no proxy at all then ran about a third slower)
message = b"x" * 64
sel = selectors.DefaultSelector()
started = exact = 0
errors = {}                             # errno -> connections it ended
def start():
    global started
    started += 1
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, protocol)
    sock.setblocking(False)
    sock.connect_ex(address)
    sel.register(sock, selectors.EVENT_WRITE, [b"", time.monotonic()])
begin = time.monotonic()
for _ in range(min(8, amount)):
    start()
ended = 0
while ended < amount:
    for key, events in sel.select(1):
        sock, state = key.fileobj, key.data
        piece = b""
        if events & selectors.EVENT_WRITE:
            try:
                sock.send(message)
                sel.modify(sock, selectors.EVENT_READ, state)
                continue
            except OSError as exc:
                errors[exc.errno] = errors.get(exc.errno, 0) + 1
        else:
            try:
                piece = sock.recv(64)
            except OSError as exc:
                errors[exc.errno] = errors.get(exc.errno, 0) + 1
        state[0] += piece
        if piece and len(state[0]) < 64:
            continue
        exact += state[0] == message
        sel.unregister(sock)
        sock.close()
        ended += 1
        if started < amount:
            start()
    if time.monotonic() - begin > 600:
        break
print(json.dumps({"seconds": time.monotonic() - begin, "exact": exact, "errors": errors}))
"""


class Bed:
    """The two namespaces and their veth pairs (see the module text)."""

    def __init__(self) -> None:
        self.p = kernel_namespace("mfs-p")
        try:
            self.s = kernel_namespace("mfs-s")
        except BaseException:
            self.p.delete()
            raise
        try:
            for i in range(2):
                a, b = run_name("mfs", f"a{i}"), run_name("mfs", f"b{i}")
                veth_pair(self.p, a, self.s, b)
                self.p.ip("addr", "add", f"198.18.{2 * i}.2/24", "dev", a)
                self.s.ip("addr", "add", f"198.18.{2 * i}.1/24", "dev", b)
            self.p.ip("mptcp", "endpoint", "add", "198.18.2.2", "dev", run_name("mfs", "a1"),
                      "subflow")
            self.tun = run_name("mfs", "t")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.p.delete()
        self.s.delete()


def _wait_listening(ns: Namespace, port: int, process: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + 15
    while f":{port} " not in ns.run("ss", "-Hltn"):
        if time.monotonic() > end or process.poll() is not None:
            err = process.stderr.read() if process.stderr and process.poll() is not None else ""
            raise RuntimeError(f"{what} did not start: {err}")
        time.sleep(0.05)


def _sockaddr_hex(host: str, port: int) -> str:
    """socat's generic address: the bytes of a sockaddr_in after its family, in hex."""
    return "x" + (struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)).hex()


def proxy_command(candidate: str, bed: Bed, socat_buffer: int) -> list:
    listen = f"TCP-LISTEN:{PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,backlog=4096"
    buffer = ["-b", str(socat_buffer)] if socat_buffer else []
    if candidate == "socat":
        return ["mptcpize", "run", "socat", *buffer, listen, f"TCP:{SERVER[0]}:{SERVER[1]}"]
    if candidate == "socat-generic":
        return ["socat", *buffer, listen, f"SOCKET-CONNECT:2:262:{_sockaddr_hex(*SERVER)}"]
    engine = "kernel" if candidate.startswith("kernel") else candidate
    cli = [sys.executable, "-m", "mptcp_fast", "proxy", "--engine", engine,
           "--listen", f"127.0.0.1:{PROXY_PORT}"]
    if candidate == "kernel":
        return cli + ["--to", f"{SERVER[0]}:{SERVER[1]}"]
    if candidate == "kernel-2w":
        return cli + ["--to", f"{SERVER[0]}:{SERVER[1]}", "--workers", "2"]
    return cli + ["--to", f"{USERSPACE_SERVER[0]}:{USERSPACE_SERVER[1]}", "--tun", bed.tun,
                  "--tun-address", "198.18.4.1/24", "--tun-address", "198.18.6.1/24",
                  "--address", "198.18.4.2", "--address", "198.18.6.2", "--netns", bed.s.name]


def measure(bed: Bed, candidate: str, mode: str, amount: int, socat_buffer: int) -> dict:
    """One measurement: a fresh server and a fresh proxy, the clients in P."""
    server = bed.s.popen([sys.executable, "-c", SERVER_CHILD,
                          "sink" if mode == "goodput" else "echo"],
                         stderr=subprocess.PIPE, text=True)
    proxy = None
    try:
        _wait_listening(bed.s, 5000, server, "the server")
        cpu_before = _children_cpu()
        if candidate == "direct":
            done = bed.p.run(sys.executable, "-c", CLIENT_CHILD, mode, PROXY_PORT, amount,
                             *SERVER)
            return _result(candidate, mode, amount, json.loads(done), cpu_before)
        proxy = bed.p.popen(proxy_command(candidate, bed, socat_buffer), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_listening(bed.p, PROXY_PORT, proxy, candidate)
        done = bed.p.run(sys.executable, "-c", CLIENT_CHILD, mode, PROXY_PORT, amount)
        return _result(candidate, mode, amount, json.loads(done), cpu_before)
    finally:
        for process in (proxy, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _result(candidate: str, mode: str, amount: int, found: dict, cpu_before: float) -> dict:
    found["client_cpu"] = _children_cpu() - cpu_before
    if mode == "goodput":
        found["mbit"] = amount * 8 / found["seconds"] / 1e6
    else:
        if found["exact"] != amount and candidate != "direct":   # (the harness's ceiling:
            raise RuntimeError(f"{candidate}: {amount - found['exact']} of {amount} "
                               f"echoes not exact (errno: connections {found['errors']})")
        if found["errors"]:                                     # its failures are printed)
            print(f"{candidate}: connections that failed, by errno: {found['errors']}",
                  flush=True)
        found["per_s"] = amount / found["seconds"]
    return found


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=256 << 20)
    parser.add_argument("--rounds", type=int, default=3, help="goodput: best of this many")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--echo-rounds", type=int, default=2,
                        help="connections/s: best of this many")
    parser.add_argument("--only", default=",".join(CANDIDATES),
                        help="comma-separated candidates (default: all)")
    parser.add_argument("--socat-buffer", type=parse_size, default=0,
                        help="socat -b (default: socat's own 8 KiB)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [c for c in args.only.split(",") if c]
    for c in chosen:
        if c not in CANDIDATES:
            parser.error(f"unknown candidate {c!r}")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bed = Bed()
        try:
            rows = {c: {"goodput": [], "echo": []} for c in chosen}
            for _ in range(args.rounds):
                for c in chosen:
                    rows[c]["goodput"].append(
                        measure(bed, c, "goodput", args.size, args.socat_buffer)["mbit"])
            for _ in range(args.echo_rounds):
                for c in chosen:
                    rows[c]["echo"].append(
                        measure(bed, c, "echo", args.connections, args.socat_buffer)["per_s"])
        finally:
            bed.close()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    socats = [c for c in chosen if c.startswith("socat")]
    best = {c: (max(r["goodput"]) if r["goodput"] else 0.0, max(r["echo"]) if r["echo"] else 0.0)
            for c, r in rows.items()}
    ref_g = max((best[c][0] for c in socats), default=0.0)
    ref_e = max((best[c][1] for c in socats), default=0.0)
    print(f"{args.size:,} B upload, best of {args.rounds}; {args.connections} 64-byte echoes, "
          f"8 at a time, best of {args.echo_rounds}; load average {load}")
    for c in chosen:
        g, e = best[c]
        ratios = f"  x socat: {g / ref_g:.2f} goodput, {e / ref_e:.2f} connections/s" \
            if ref_g and ref_e else ""
        rounds = ", ".join(f"{x:,.0f}" for x in rows[c]["goodput"])
        print(f"{c:14} goodput {g:8,.0f} Mbit/s ({rounds})  {e:7,.0f} connections/s{ratios}",
              flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "load": load}, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

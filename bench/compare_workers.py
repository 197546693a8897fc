"""``proxy --engine userspace --direction mptcp-to-tcp`` in 1 and 2 workers behind one public
address (cli/balanced.py), beside the plain single-process proxy, in one run: connections per
second and goodput, and where the CPU went. Root only.

    python bench/compare_workers.py                       # 2,000 echoes, 4 x 64 MiB, best of 2
    python bench/compare_workers.py --connections 500 --size 64M --rounds 1 --json

Topology: two namespaces made for the run (names carry the run's tag, ``testbed.run_name``),
joined by a veth pair (198.18.0.0/24 and 198.18.2.0/24 on it):

    C: kernel MPTCP clients, 198.18.0.2 and a "subflow" endpoint 198.18.2.2, default via B
    B: forwarding; the proxy's TUN devices (worker w: 198.18.2{w}.1/24, its engine's own
       address 198.18.2{w}.2 and balanced address .3) and the proxy's nftables table, which
       DNATs the SYNs to 198.18.10.1:5000 over the workers

The proxy's TCP side goes to a sink or an echo server on this host's 127.0.0.1 (a child
process). The candidates, each started fresh for each measurement:

- ``single``: ``proxy --address 198.18.20.2`` (no workers, no balancer, no flag C: the
  client joins the initial address from its second endpoint), the clients to 198.18.20.2;
- ``workers-1``: ``--workers 1 --worker-address 198.18.20.2``, the clients to the public
  address (the DNAT, flag C and the join to the announced address, in one process);
- ``workers-2``: the same with two workers.

The workers' balancer deals the connections round robin (``--spread``, here by default: the
four goodput connections two and two; a hash of four 4-tuples may give one worker three).

Connections per second: CONNECTIONS clients, 8 in flight, each connects, sends 64 bytes, reads
the 64-byte echo and closes (bench/compare_socat.py's client). Goodput: STREAMS connections at
once, each uploading SIZE / STREAMS bytes to the sink; one connection is one worker's, so a
single stream could not use a second worker. CPU: the seconds each process spent (user +
system, from /proc) during the measurement: the supervisor, each worker, the clients, the
sink or echo server; and the machine's busy share over all its cores (/proc/stat: the kernel's
packet work in softirq is nobody's process).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare_socat import CLIENT_CHILD as ECHO_CLIENT  # noqa: E402  (8 in flight, 64 B)
from mptcp_fast.cli.main import _size as parse_size  # noqa: E402
from mptcp_fast.net.netns import veth_pair  # noqa: E402
from mptcp_fast.testing.testbed import kernel_namespace, run_name  # noqa: E402

LOCK = "/tmp/mptcp-netns.lock"       # taken by every run that makes namespaces or TUN devices
PUBLIC, PORT = "198.18.10.1", 5000
CANDIDATES = ("single", "workers-1", "workers-2")
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

SERVER_CHILD = r"""
import socket, sys, threading
mode = sys.argv[1]
listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
print(listener.getsockname()[1], flush=True)
def serve(sock):
    buffer = bytearray(1 << 20)
    with sock:
        while n := sock.recv_into(buffer):
            if mode == "echo":
                sock.sendall(memoryview(buffer)[:n])
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""

UPLOAD_CLIENT = r"""
import json, socket, sys, threading, time
host, port, amount, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def upload():
    buffer = memoryview(bytearray(1 << 20))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    sock.settimeout(60)
    sock.connect((host, port))
    sent, share = 0, amount // streams
    while sent < share:
        sent += sock.send(buffer[:min(len(buffer), share - sent)])
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()
start = time.monotonic()
threads = [threading.Thread(target=upload) for _ in range(streams)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"seconds": time.monotonic() - start}))
"""


class Bed:
    """Namespaces C and B (see the module text)."""

    def __init__(self) -> None:
        self.c = kernel_namespace("mfb-c")
        try:
            self.b = kernel_namespace("mfb-b")
        except BaseException:
            self.c.delete()
            raise
        try:
            a, b = run_name("mfb", "c"), run_name("mfb", "b")
            veth_pair(self.c, a, self.b, b)
            for address in ("198.18.0.2", "198.18.2.2"):
                self.c.ip("addr", "add", f"{address}/24", "dev", a)
                self.b.ip("addr", "add", f"{address[:-1]}1/24", "dev", b)
            self.c.ip("route", "add", "default", "via", "198.18.0.1")
            self.b.sysctl("net.ipv4.ip_forward", 1)
            self.c.ip("mptcp", "endpoint", "add", "198.18.2.2", "dev", a, "subflow")
            self.tun = run_name("mfb", "%d")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.c.delete()
        self.b.delete()


def proxy_command(candidate: str, bed: Bed, to_port: int,
                  spread: str = "round-robin") -> tuple[list, str]:
    """The proxy's command line and the address the clients connect to."""
    cli = [sys.executable, "-m", "mptcp_fast", "proxy", "--engine", "userspace", "--direction",
           "mptcp-to-tcp", "--netns", bed.b.name, "--to", f"127.0.0.1:{to_port}",
           "--tun", bed.tun]
    if candidate == "single":
        return cli + ["--listen", f"0.0.0.0:{PORT}", "--address", "198.18.20.2",
                      "--tun-address", "198.18.20.1/24"], "198.18.20.2"
    workers = int(candidate.rsplit("-", 1)[1])
    addresses = [a for w in range(workers) for a in ("--worker-address", f"198.18.2{w}.2")]
    return cli + ["--listen", f"{PUBLIC}:{PORT}", "--workers", str(workers), *addresses,
                  "--spread", spread], PUBLIC


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its threads), in seconds; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat's cpu line)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]                # idle + iowait
    return sum(values) - idle, sum(values)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in found.split())


def _first_line(process: subprocess.Popen, what: str, timeout: float = 30) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise RuntimeError(f"{what} did not start: {process.stderr.read()}")
    return line


def measure(bed: Bed, candidate: str, mode: str, amount: int, streams: int,
            spread: str) -> dict:
    """One measurement: a fresh server and a fresh proxy, the clients in C."""
    server = subprocess.Popen([sys.executable, "-c", SERVER_CHILD,
                               "echo" if mode == "echo" else "sink"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proxy = None
    try:
        to_port = int(_first_line(server, "the server"))
        command, target = proxy_command(candidate, bed, to_port, spread)
        proxy = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        _first_line(proxy, candidate)
        lines: list[str] = []                 # a line per connection: read, or it blocks
        reader = threading.Thread(target=lambda: lines.extend(proxy.stdout), daemon=True)
        reader.start()
        workers = _children(proxy.pid) if candidate != "single" else []
        processes = {"proxy" if candidate == "single" else "supervisor": proxy.pid,
                     **{f"worker {w}": pid for w, pid in enumerate(workers)},
                     "server": server.pid}
        cpu_before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
        clients_before = _children_cpu()
        busy_before = _busy()
        if mode == "echo":
            # (its "direct" form: kernel MPTCP sockets to target:PORT)
            done = bed.c.run(sys.executable, "-c", ECHO_CLIENT, "echo", PORT, amount, target,
                             PORT)
        else:
            done = bed.c.run(sys.executable, "-c", UPLOAD_CLIENT, target, PORT, amount,
                             streams)
        busy_after = _busy()
        found = json.loads(done)
        found["cpu"] = {name: round(_cpu_seconds(pid) - cpu_before[name], 2)
                        for name, pid in processes.items()}
        found["cpu"]["clients"] = round(_children_cpu() - clients_before, 2)
        found["machine_busy"] = round((busy_after[0] - busy_before[0])
                                      / max(1, busy_after[1] - busy_before[1]), 3)
        if mode == "echo":
            if found["exact"] != amount:
                raise RuntimeError(f"{candidate}: {amount - found['exact']} of {amount} echoes "
                                   f"not exact (errno: connections {found['errors']})")
            found["per_s"] = amount / found["seconds"]
        else:
            found["mbit"] = amount * 8 / found["seconds"] / 1e6
        return found
    finally:
        for process in (proxy, server):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def _cpu_text(cpu: dict, seconds: float) -> str:
    """Each process's CPU as a share of one core over the measurement."""
    return ", ".join(f"{name} {value / seconds:.0%}" for name, value in cpu.items())


def _proxy_cpu(found: dict) -> float:
    """CPU seconds of the proxy's processes (the supervisor and its workers, or the one)."""
    return sum(v for name, v in found["cpu"].items() if name not in ("server", "clients"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--size", type=parse_size, default=256 << 20,
                        help="goodput: bytes uploaded in all")
    parser.add_argument("--streams", type=int, default=4,
                        help="goodput: connections at once")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many")
    parser.add_argument("--spread", choices=["hash", "round-robin"], default="round-robin",
                        help="the workers' --spread (round-robin: the STREAMS connections "
                             "in even shares; a hash of 4 may give one worker all of them)")
    parser.add_argument("--only", default=",".join(CANDIDATES),
                        help="comma-separated candidates (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [c for c in args.only.split(",") if c]
    for c in chosen:
        if c not in CANDIDATES:
            parser.error(f"unknown candidate {c!r}")
    best: dict[str, dict] = {c: {} for c in chosen}
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bed = Bed()
        try:
            for _ in range(args.rounds):
                for c in chosen:
                    for mode, key, amount in (("echo", "per_s", args.connections),
                                              ("goodput", "mbit", args.size)):
                        found = measure(bed, c, mode, amount, args.streams, args.spread)
                        if found[key] > best[c].get(mode, {}).get(key, 0):
                            best[c][mode] = found
        finally:
            bed.close()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.connections} 64-byte echoes, 8 in flight; {args.size:,} B uploaded over "
          f"{args.streams} connections at once; best of {args.rounds}; {os.cpu_count()} "
          f"cores; load average {load}")
    base = best[chosen[0]]
    for c in chosen:
        echo, goodput = best[c]["echo"], best[c]["goodput"]
        ratio = f"  x {chosen[0]}: {echo['per_s'] / base['echo']['per_s']:.2f} connections/s, " \
                f"{goodput['mbit'] / base['goodput']['mbit']:.2f} goodput" if c != chosen[0] \
            else ""
        print(f"{c:10} {echo['per_s']:7,.0f} connections/s  {goodput['mbit']:7,.0f} Mbit/s"
              f"{ratio}", flush=True)
        print(f"{'':10} CPU, echoes:  {_cpu_text(echo['cpu'], echo['seconds'])}; machine "
              f"{echo['machine_busy']:.0%} busy; the proxy's processes "
              f"{_proxy_cpu(echo) / args.connections * 1e3:.2f} ms per connection", flush=True)
        print(f"{'':10} CPU, goodput: {_cpu_text(goodput['cpu'], goodput['seconds'])}; "
              f"machine {goodput['machine_busy']:.0%} busy", flush=True)
    if args.json:
        print(json.dumps({"best": best, "load": load}, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

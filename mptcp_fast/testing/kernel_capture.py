"""Real MPTCP traffic from the Linux kernel, captured with tcpdump (docs/kernel-behaviour.md §6).

Two network namespaces, a server ("A") and a client ("B"), joined by 2-3 veth
paths in the RFC 2544 benchmarking range 198.18.0.0/15 (path i: 198.18.i.1 and
198.18.i.2). Both ends are kernel MPTCP sockets (IPPROTO_MPTCP = 262). The
server announces one more address (``ip mptcp endpoint ... signal`` → ADD_ADDR)
and the client opens a subflow from another (``... subflow`` → MP_JOIN). The
client sends ``upload`` random bytes and half-closes (DATA_FIN); the server reads
them all, sends ``download`` random bytes back and closes (with ``both_ways``, it sends them
while it reads; the client reads them once its upload is sent). tcpdump in the
client's namespace records every segment; the SHA-256 of each direction is
returned so that an analyzer's reconstruction can be checked byte for byte.

Needs root, iproute2 and tcpdump. Everything it creates is deleted afterwards.

    python -m mptcp_fast.testing.kernel_capture OUT.pcap [--upload N] [--download N]
        [--checksum] [--paths 2|3] [--snaplen N] [--no-offload] [--fail-path]

With ``fail_path`` (3 paths), once the three subflows are up and before any data
flows, the server loses the client's path-3 address (a blackhole route, and strict
reverse-path filtering for what comes from it): the data sent on that subflow is lost,
and the kernel sends it again on the other subflows (reinjection, RFC 8684 §3.3.6).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any
from dataclasses import dataclass

PORT = 10000

# Run inside a namespace with `ip netns exec NS python -c ...`: plain Python with no package
# (262 is IPPROTO_MPTCP, mptcp_fast.net.kernel's).
_SERVER = r"""
import hashlib, random, socket, sys, threading
host, port, download, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
both_ways = sys.argv[5] == "both"
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port)); s.listen(1)
# (every address: joins come to the announced one)
print("listening", flush=True)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
def send():
    rng = random.Random(seed)
    left = download
    while left:
        block = rng.randbytes(min(left, 1 << 16)); c.sendall(block); left -= len(block)
    c.shutdown(socket.SHUT_WR)
if both_ways:                   # the download goes while the upload comes in
    sender = threading.Thread(target=send); sender.start()
while True:
    chunk = c.recv(1 << 16)
    if not chunk:
        break
    h.update(chunk); n += len(chunk)
if both_ways:
    sender.join()
else:
    send()
c.recv(1)                       # wait for the client's close
c.close(); s.close()
print(n, h.hexdigest(), flush=True)
"""

_CLIENT = r"""
import hashlib, random, socket, sys, time
host, port, upload, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pause = float(sys.argv[6])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect((host, port))
rng = random.Random(seed)
left = upload
if sys.argv[5] == "wait":       # the parent changes the network, then says go
    print("connected", flush=True)
    sys.stdin.readline()
else:
    time.sleep(0.3)             # let the path manager add the extra subflow before data flows
if sys.argv[5].startswith("split:"):    # some data first, then the parent starts tcpdump
    first = int(sys.argv[5][6:])
    while upload - left < first:        # whole blocks: the stream stays what upload_stream makes
        block = rng.randbytes(min(left, 1 << 16)); s.sendall(block)
        left -= len(block)
    time.sleep(0.3)             # acknowledged, so the capture starts between transmissions
    print("sent", flush=True)
    sys.stdin.readline()
while left:
    block = rng.randbytes(min(left, 1 << 16)); s.sendall(block); left -= len(block)
s.shutdown(socket.SHUT_WR)
time.sleep(pause)               # a slow reader: the download waits (a zero window)
h, n = hashlib.sha256(), 0
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    h.update(chunk); n += len(chunk)
s.close()
print(n, h.hexdigest(), flush=True)
"""


@dataclass(frozen=True)
class Transfer:
    """One connection of a capture: port k serves connection k."""
    port: int
    upload_seed: int            # upload_stream(upload_seed, upload_bytes) is what was sent
    upload_bytes: int
    upload_sha256: str
    download_bytes: int
    download_sha256: str

    @property
    def download_seed(self) -> int:
        """upload_stream(download_seed, download_bytes) is what the server sent."""
        return self.upload_seed + 1


@dataclass(frozen=True)
class CaptureResult:
    path: str
    upload_sha256: str          # client -> server, as the server received it (connection 0)
    download_sha256: str        # server -> client, as the client received it
    upload_bytes: int
    download_bytes: int
    checksum: bool
    server: str = f"198.18.1.1:{PORT}"
    seed: int = 8684
    transfers: tuple = ()       # every connection (Transfer), the first one included


def upload_stream(seed: int, upload: int) -> bytes:
    """The bytes the capture's client sent (its generator, replayed); the server's download
    is made by the same generator from its own seed (``Transfer.download_seed``)."""
    rng, out, left = random.Random(seed), bytearray(), upload
    while left:
        block = rng.randbytes(min(left, 1 << 16))
        out += block
        left -= len(block)
    return bytes(out)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def available() -> str | None:
    """None when this machine can make captures, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            if f.read().strip() != "1":
                return "net.mptcp.enabled is 0"
    except OSError:
        return "the kernel has no MPTCP"
    return None


class PacketsLost(RuntimeError):
    """tcpdump reported packets dropped by the kernel: the capture is incomplete."""


def make_capture(path: str, *, upload: int = 300_000, download: int = 200_000,
                 checksum: bool = False, paths: int = 3, snaplen: int = 0, offload: bool = True,
                 fail_path: bool = False, seed: int = 8684, timeout: float = 120.0,
                 attempts: int = 3, start_after: int = 0,
                 first_path_rate: str | None = None, connections: int = 1,
                 ipv6: bool = False, prefix: str = "mf", both_ways: bool = False,
                 client_pause: float = 0.0) -> CaptureResult:
    """Run one kernel MPTCP transfer in fresh namespaces and capture it into ``path``.

    The namespaces are ``{prefix}A<tag>`` (server) and ``{prefix}B<tag>`` (client), their veths
    ``{prefix}a<i>x<tag>`` / ``{prefix}b<i>x<tag>``, ``<tag>`` drawn from the process id and
    a random number, so runs at once on one machine do not collide; ``prefix`` is 1-3 letters
    and digits.

    ``start_after`` > 0: tcpdump starts only once the connection and its subflows are up and
    that many bytes of the upload were sent and acknowledged: a capture that begins
    mid-connection, without any handshake (the upload's first ``start_after`` bytes are not
    in it; ``upload_stream(seed, upload)`` regenerates what was sent).
    ``first_path_rate`` ("8mbit"): a token bucket (tc tbf) on path 1 both ways, so that even a
    small transfer spreads over the subflows (on equal veths the kernel keeps to the first).
    ``connections``: that many connections at once (connection k on port 10000 + k, its upload
    from seed + 2k, its download from seed + 2k + 1). ``ipv6``: the paths in 2001:2::/48
    (path i: 2001:2:0:i::1 server, ::2 client) instead of 198.18.i.0/24. ``both_ways``: the
    server sends its download while the upload comes in (both directions' data in flight at
    once) instead of after it; the client reads it only once its upload is sent, and
    ``client_pause`` seconds later: a download larger than the client's receive buffer then
    meets a zero window, which Linux probes (one byte mapped at the last DSN acknowledged,
    carrying the next byte: docs/analysis.md).

    With ``offload=False`` TSO/GSO/GRO and checksum offload are switched off on the veths
    (ethtool), so the capture holds MSS-sized segments with their final TCP checksums, as on a
    real wire, instead of 64 KB super-packets with partial checksums.
    A capture in which tcpdump lost packets is made again (``attempts`` times at most)."""
    settings: dict[str, Any] = dict(upload=upload, download=download, checksum=checksum, paths=paths,
                    snaplen=snaplen, offload=offload, fail_path=fail_path, seed=seed,
                    timeout=timeout, start_after=start_after, first_path_rate=first_path_rate,
                    connections=connections, ipv6=ipv6, prefix=prefix, both_ways=both_ways,
                    client_pause=client_pause)
    if not (isinstance(prefix, str) and 1 <= len(prefix) <= 3 and prefix.isascii()
            and prefix.isalnum()):
        raise ValueError(f"prefix must be 1-3 ASCII letters or digits, got {prefix!r}")
    for _ in range(attempts - 1):
        try:
            return _make_capture_once(path, **settings)
        except PacketsLost:
            continue
    return _make_capture_once(path, **settings)      # the last try lets PacketsLost through


def _make_capture_once(path: str, *, upload: int, download: int, checksum: bool, paths: int,
                       snaplen: int, offload: bool, fail_path: bool, seed: int,
                       timeout: float, start_after: int = 0,
                       first_path_rate: str | None = None, connections: int = 1,
                       ipv6: bool = False, prefix: str = "mf", both_ways: bool = False,
                       client_pause: float = 0.0) -> CaptureResult:
    reason = available()
    if reason:
        raise RuntimeError(f"cannot make a kernel capture: {reason}")
    if paths not in (2, 3):
        raise ValueError("paths must be 2 or 3")
    if fail_path and paths != 3:
        raise ValueError("fail_path needs 3 paths")
    if start_after and (fail_path or not 0 < start_after < upload):
        raise ValueError("start_after must be in 1..upload-1, without fail_path")
    if not 1 <= connections <= 16 or (fail_path and (connections > 1 or ipv6)):
        raise ValueError("connections must be 1..16; fail_path takes one IPv4 connection")

    def address(i: int, side: int) -> str:
        return f"2001:2:0:{i}::{side}" if ipv6 else f"198.18.{i}.{side}"
    netmask = "/64" if ipv6 else "/24"
    dad = ["nodad"] if ipv6 else []
    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    server_ns, client_ns = f"{prefix}A{tag}", f"{prefix}B{tag}"
    procs: list[subprocess.Popen] = []
    try:
        _run("ip", "netns", "add", server_ns)
        _run("ip", "netns", "add", client_ns)
        for ns in (server_ns, client_ns):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            for key, value in (("net.mptcp.enabled", "1"),
                               ("net.mptcp.checksum_enabled", "1" if checksum else "0"),
                               ("net.ipv4.conf.all.rp_filter", "0"),
                               ("net.ipv4.conf.default.rp_filter", "0")):
                _run("ip", "netns", "exec", ns, "sysctl", "-q", f"{key}={value}")
            _run("ip", "-n", ns, "mptcp", "limits", "set", "subflows", "4", "add_addr_accepted", "4")
        for i in range(1, paths + 1):
            a, b = f"{prefix}a{i}x{tag}"[:15], f"{prefix}b{i}x{tag}"[:15]
            _run("ip", "link", "add", a, "netns", server_ns, "type", "veth", "peer", "name", b,
                 "netns", client_ns)
            _run("ip", "-n", server_ns, "addr", "add", address(i, 1) + netmask, "dev", a, *dad)
            _run("ip", "-n", client_ns, "addr", "add", address(i, 2) + netmask, "dev", b, *dad)
            _run("ip", "-n", server_ns, "link", "set", a, "up")
            _run("ip", "-n", client_ns, "link", "set", b, "up")
            if i == 1 and first_path_rate:     # a slower initial path: the scheduler
                for ns, dev in ((server_ns, a), (client_ns, b)):   # then uses the others too
                    _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                         "tbf", "rate", first_path_rate, "burst", "16kb", "latency", "100ms")
            if not offload:
                for ns, dev in ((server_ns, a), (client_ns, b)):
                    # tx off too: checksums computed before tcpdump sees the packet, not
                    # left partial for an offload that a veth never does
                    _run("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                         "gro", "off", "tx", "off")
        # ADD_ADDR from the server, MP_JOIN from the client (the selftests' recipe)
        _run("ip", "-n", server_ns, "mptcp", "endpoint", "add", address(2, 1), "dev",
             f"{prefix}a2x{tag}"[:15], "signal")
        if paths == 3:
            _run("ip", "-n", client_ns, "mptcp", "endpoint", "add", address(3, 2), "dev",
                 f"{prefix}b3x{tag}"[:15], "subflow")

        def start_tcpdump():
            dump = subprocess.Popen(["ip", "netns", "exec", client_ns, "tcpdump", "-i", "any",
                                     "-n", "-U", "-B", "32768", "-Z", "root", "-s", str(snaplen),
                                     "-w", path, f"tcp portrange {PORT}-{PORT + connections - 1}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append(dump)
            _wait_for_line(dump.stderr, "listening on", timeout=10)
            return dump

        dump = None if start_after else start_tcpdump()
        servers, clients = [], []
        for k in range(connections):
            server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c",
                                       _SERVER, address(1, 1), str(PORT + k), str(download),
                                       str(seed + 2 * k + 1), "both" if both_ways else "after"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(server)
            servers.append(server)
            _wait_for_line(server.stdout, "listening", timeout=10)
        for k in range(connections):
            client = subprocess.Popen(["ip", "netns", "exec", client_ns, sys.executable, "-c",
                                       _CLIENT, address(1, 1), str(PORT + k), str(upload),
                                       str(seed + 2 * k), "wait" if fail_path else
                                       f"split:{start_after}" if start_after else "sleep",
                                       str(client_pause)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            procs.append(client)
            clients.append(client)
        server, client = servers[0], clients[0]
        if fail_path:
            _wait_for_line(client.stdout, "connected", timeout=10)
            _wait_for_subflows(client_ns, 3, timeout=10)
            time.sleep(0.2)         # the joins' fourth ACKs: subflow 3 may carry data
            # the server stops reaching 198.18.3.2, and strict reverse-path filtering makes it
            # drop what comes from there too: data on subflow 3 is lost both ways
            _run("ip", "-n", server_ns, "route", "add", "blackhole", "198.18.1.2/32")
            _run("ip", "netns", "exec", server_ns, "sysctl", "-q", "net.ipv4.conf.all.rp_filter=1")
            client.stdin.write("go\n")
            client.stdin.flush()
        if start_after:
            for each in clients:
                _wait_for_line(each.stdout, "sent", timeout=timeout)
            dump = start_tcpdump()
            for each in clients:
                each.stdin.write("go\n")
                each.stdin.flush()
        outputs = []
        for k, (each_client, each_server) in enumerate(zip(clients, servers)):
            client_out, client_err = each_client.communicate(timeout=timeout)
            if each_client.returncode:
                raise RuntimeError(f"MPTCP client failed: {client_err.strip()}")
            server_out, server_err = each_server.communicate(timeout=timeout)
            if each_server.returncode:
                raise RuntimeError(f"MPTCP server failed: {server_err.strip()}")
            up_n, up_hash = server_out.split()[-2:]
            down_n, down_hash = client_out.split()[-2:]
            outputs.append(Transfer(PORT + k, seed + 2 * k, int(up_n), up_hash, int(down_n),
                                    down_hash))
        # libpcap hands packets over a ring block at a time, when a block fills or after its
        # 1 s timeout: wait for the last one before stopping tcpdump (SIGINT drops the rest).
        time.sleep(1.5)
        dump.send_signal(signal.SIGINT)
        _, dump_err = dump.communicate(timeout=10)
        dropped = re.search(r"(\d+) packets? dropped by kernel", dump_err)
        if dropped and int(dropped.group(1)):
            raise PacketsLost(f"tcpdump lost packets: {dropped.group(0)}")
        first = outputs[0]
        server_text = f"[{address(1, 1)}]:{PORT}" if ipv6 else f"{address(1, 1)}:{PORT}"
        return CaptureResult(path, first.upload_sha256, first.download_sha256,
                             first.upload_bytes, first.download_bytes, checksum,
                             server=server_text, seed=seed, transfers=tuple(outputs))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in (server_ns, client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _wait_for_subflows(namespace: str, count: int, timeout: float) -> None:
    """Wait until ``count`` TCP subflows to the server port are established in ``namespace``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Htn", "state",
                              "established", f"( dport = :{PORT} )"],
                             capture_output=True, text=True).stdout
        if len(out.splitlines()) >= count:
            return
        time.sleep(0.02)
    raise RuntimeError(f"fewer than {count} subflows came up in {timeout} s")


def _wait_for_line(stream, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"process exited before printing {text!r}")
        if text in line:
            return
    raise RuntimeError(f"timed out waiting for {text!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mptcp_fast.testing.kernel_capture",
                                     description="Capture kernel MPTCP traffic in namespaces.")
    parser.add_argument("out", help="pcap file to write")
    parser.add_argument("--upload", type=int, default=300_000, help="client -> server bytes")
    parser.add_argument("--download", type=int, default=200_000, help="server -> client bytes")
    parser.add_argument("--checksum", action="store_true", help="net.mptcp.checksum_enabled=1")
    parser.add_argument("--paths", type=int, default=3, choices=(2, 3), help="veth paths")
    parser.add_argument("--snaplen", type=int, default=0, help="tcpdump -s (0: whole packets)")
    parser.add_argument("--no-offload", action="store_true",
                        help="switch TSO/GSO/GRO and checksum offload off (MSS-sized segments with "
                             "final checksums; needs ethtool)")
    parser.add_argument("--fail-path", action="store_true",
                        help="3 paths: once the subflows are up, the server loses the client's "
                             "path-3 address (blackhole route), so the kernel reinjects that "
                             "subflow's data on the others")
    parser.add_argument("--start-after", type=int, default=0, metavar="BYTES",
                        help="start tcpdump mid-connection, after this much of the upload")
    parser.add_argument("--connections", type=int, default=1, help="connections at once")
    parser.add_argument("--ipv6", action="store_true", help="paths in 2001:2::/48")
    parser.add_argument("--both-ways", action="store_true",
                        help="the server sends its download while the upload comes in")
    parser.add_argument("--client-pause", type=float, default=0.0, metavar="SECONDS",
                        help="the client waits this long after its upload before it reads")
    parser.add_argument("--prefix", default="mf",
                        help="1-3 letters or digits that begin the namespace and veth names "
                             "(each run adds a tag of its own)")
    parser.add_argument("--first-path-rate", metavar="RATE",
                        help="limit path 1 (tc tbf, e.g. 8mbit) so data spreads over subflows")
    args = parser.parse_args(argv)
    result = make_capture(args.out, upload=args.upload, download=args.download,
                          checksum=args.checksum, paths=args.paths, snaplen=args.snaplen,
                          offload=not args.no_offload, fail_path=args.fail_path,
                          start_after=args.start_after, first_path_rate=args.first_path_rate,
                          connections=args.connections, ipv6=args.ipv6, prefix=args.prefix,
                          both_ways=args.both_ways, client_pause=args.client_pause)
    print(f"{result.path}: upload {result.upload_bytes} bytes sha256 {result.upload_sha256}; "
          f"download {result.download_bytes} bytes sha256 {result.download_sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""When does the destination's SYN leave the Convert proxy's server half? (root)

    python bench/convert_syn_timing.py --delay 10 --connections 6 [--engine userspace]

RFC 8803's point is 0-RTT: with TCP Fast Open the Convert message rides in the client half's
SYN, so the server half can open the connection to the destination as soon as that SYN
arrives, one way after it left; without TFO it learns the destination only after the
handshake, a round trip later. Measured here with the kernel engine's halves (or, with
``--engine userspace``, the userspace engine's: each half's engine behind a TUN device in its
namespace, whose kernel forwards to the path):

    SOCKS5 client -> client half (namespace B) -> one path through this process (TunBridge,
    --delay ms each way) -> server half (namespace A) -> a TCP listener on 198.18.4.1 in A

tcpdump in B timestamps the client half's MPTCP SYN as it leaves for the path, tcpdump in A
the server half's SYN to the destination (one host, one clock). Printed per mode (TFO or
not): each connection's gap between the two, the median, and the median in one-way delays.
With TFO the first connection fetches the server half's cookie (a SYN without data) and is
not counted; the others carry the Convert message in their SYN.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mptcp_fast.testing.testbed import TunPairBed  # noqa: E402

SERVER_HALF, SOCKS, DESTINATION = ("198.18.0.1", 5000), ("127.0.0.1", 1080), ("198.18.4.1", 8000)
CLI = [sys.executable, "-m", "mptcp_fast", "proxy", "--convert"]
# --engine userspace: the engines' own addresses, behind a TUN device in each namespace
USERSPACE_SERVER, USERSPACE_CLIENT = "198.18.12.2", "198.18.8.2"


def _socks_connect(ns) -> float:
    """One SOCKS5 CONNECT to DESTINATION through the client half, from B; returns once the
    client half answered (its answer waits for the server half's)."""
    with ns.entered():
        sock = socket.socket()
    with sock:
        sock.settimeout(10)
        sock.connect(SOCKS)
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"
        host, port = DESTINATION
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big"))
        answer = sock.recv(10)
        assert answer[:2] == b"\x05\x00", answer
        sock.sendall(b"x")
    return time.monotonic()


def _wait_ready(a, b, captures, processes, engine: str = "kernel",
                timeout: float = 30.0) -> None:
    """Until both halves listen and both captures run (tcpdump wrote its file header), and a
    moment more for the captures' filters (a userspace server half listens in its engine,
    not in A's kernel: it is given time instead)."""
    end = time.monotonic() + timeout
    while not ((engine != "kernel" or f":{SERVER_HALF[1]} " in a.run("ss", "-Hltn"))
               and f":{SOCKS[1]} " in b.run("ss", "-Hltn")
               and all(os.path.exists(c) and os.path.getsize(c) >= 24 for c in captures)):
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a half ended: {process.stderr.read()}")
        if time.monotonic() > end:
            raise RuntimeError("the halves or the captures did not start")
        time.sleep(0.1)
    time.sleep(1.0 if engine == "kernel" else 3.0)


def _syn_times(capture: str) -> list[float]:
    """The epoch times of the SYNs (without ACK) in a capture."""
    out = subprocess.run(["tcpdump", "-r", capture, "-tt", "-n",
                          "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"],
                         capture_output=True, text=True, check=True).stdout
    return [float(line.split()[0]) for line in out.splitlines() if line.strip()]


def _halves(engine: str, bed) -> tuple[list, list, tuple]:
    """The server half's and the client half's command lines for ``engine``, and the server
    half's (address, port). The userspace halves' TUN devices sit in A and B, whose kernels
    forward between them and the path."""
    if engine == "kernel":
        return (["--engine", "kernel", "--direction", "mptcp-to-tcp", "--listen",
                 f"{SERVER_HALF[0]}:{SERVER_HALF[1]}"],
                ["--engine", "kernel", "--front", "socks5", "--listen",
                 f"{SOCKS[0]}:{SOCKS[1]}", "--to", f"{SERVER_HALF[0]}:{SERVER_HALF[1]}"],
                SERVER_HALF)
    a, b = bed.a, bed.b
    for ns in (a, b):
        ns.sysctl("net.ipv4.ip_forward", 1)
    a.ip("route", "add", "198.18.8.0/24", "via", bed.b_addresses[0])
    b.ip("route", "add", "198.18.12.0/24", "via", bed.a_addresses[0])
    server = (USERSPACE_SERVER, SERVER_HALF[1])
    bed.bridge.impair(USERSPACE_CLIENT, delay=bed.delay)     # the path's delay for them too
    return (["--engine", "userspace", "--direction", "mptcp-to-tcp", "--listen",
             f"{server[0]}:{server[1]}", "--tun", "mfzs%d", "--tun-address", "198.18.12.1/24",
             "--address", USERSPACE_SERVER],
            ["--engine", "userspace", "--front", "socks5", "--listen", f"{SOCKS[0]}:{SOCKS[1]}",
             "--to", f"{server[0]}:{server[1]}", "--tun", "mfzc%d", "--tun-address",
             "198.18.8.1/24", "--address", USERSPACE_CLIENT],
            server)


def measure(delay_ms: float, connections: int, fastopen: bool,
            engine: str = "kernel") -> list[float]:
    """Gaps in milliseconds, one per connection (the cookie's connection left out)."""
    with TunPairBed("mfz", paths=1) as bed:
        a, b = bed.a, bed.b
        a.sysctl("net.ipv4.tcp_fastopen", 3)
        b.sysctl("net.ipv4.tcp_fastopen", 1)
        a.ip("addr", "add", DESTINATION[0] + "/32", "dev", "lo")
        bed.bridge.impair(bed.b_addresses[0], delay=delay_ms / 1000)
        bed.delay = delay_ms / 1000
        stop = threading.Event()
        bridge = threading.Thread(target=bed.bridge.run, kwargs={"until": stop.is_set,
                                                                  "timeout": 600})
        bridge.start()
        with a.entered():
            destination = socket.socket()
        destination.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        destination.bind(DESTINATION)
        destination.listen(64)
        env = {**os.environ, "PYTHONPATH": ROOT}
        tfo = ["--fastopen"] if fastopen else []
        server_half, client_half, _ = _halves(engine, bed)
        processes = [
            a.popen(CLI + server_half + tfo, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            b.popen(CLI + client_half + tfo, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
        folder = f"/tmp/convert-syn-{os.getpid()}"
        os.makedirs(folder, exist_ok=True)
        sent, arrived = f"{folder}/b.pcap", f"{folder}/a.pcap"
        dumps = [b.popen(["tcpdump", "-i", bed.devices[1].name, "-w", sent, "-U", "-n",
                          f"tcp dst port {SERVER_HALF[1]}"], stderr=subprocess.DEVNULL),
                 a.popen(["tcpdump", "-i", "lo", "-w", arrived, "-U", "-n",
                          f"tcp dst port {DESTINATION[1]}"], stderr=subprocess.DEVNULL)]
        try:
            _wait_ready(a, b, [sent, arrived], processes, engine)
            accepted = []
            for _ in range(connections + (1 if fastopen else 0)):
                _socks_connect(b)
                accepted.append(destination.accept()[0])
                time.sleep(3 * delay_ms / 1000 + 0.05)   # the connection settles
            time.sleep(0.5)
        finally:
            for process in dumps + processes:
                process.send_signal(2)
            for process in dumps + processes:
                process.wait(10)
            for sock in accepted:
                sock.close()
            destination.close()
            stop.set()
            bridge.join(30)
        left, right = _syn_times(sent), _syn_times(arrived)
        if len(left) != len(right):
            raise RuntimeError(f"{len(left)} SYNs sent, {len(right)} reached the destination")
        gaps = [(r - s) * 1000 for s, r in zip(left, right)]
        if len(gaps) != connections + (1 if fastopen else 0):
            raise RuntimeError(f"{len(gaps)} SYNs captured for {connections} connections")
        return gaps[1:] if fastopen else gaps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=10.0, help="ms each way on the path")
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--engine", choices=["kernel", "userspace"], default="kernel",
                        help="the halves' engine (default: kernel)")
    args = parser.parse_args()
    for fastopen in (False, True):
        gaps = measure(args.delay, args.connections, fastopen, args.engine)
        median = statistics.median(gaps)
        print(f"{args.engine} {'TFO   ' if fastopen else 'no TFO'} path {args.delay:g} ms each "
              f"way: client "
              f"half's SYN -> destination's SYN {median:6.1f} ms median "
              f"({median / args.delay:.2f} one-way delays); each: "
              f"{', '.join(f'{g:.1f}' for g in gaps)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

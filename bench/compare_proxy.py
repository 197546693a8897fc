"""The proxy on both engines: ``mptcp-fast proxy --engine userspace`` (our engine on
a TUN device) against ``--engine kernel`` (Linux MPTCP sockets), in one run, carrying plain
TCP clients to a kernel MPTCP server in a namespace. Root only.

    python bench/compare_proxy.py                     # 256 MiB goodput, 500 connections
    python bench/compare_proxy.py --size 64M --connections 200

Goodput: one client sends SIZE bytes through the proxy to a sink and waits for the close.
Connections per second: CONNECTIONS clients, 8 at a time, each sends 64 bytes, reads the
64-byte echo and closes. The kernel server (a thread per connection, blocking reads) and the
clients (in this process's namespace, on 127.0.0.1) are the same for both engines; the
userspace proxy reaches the namespace through its TUN device with two subflows, the kernel
proxy's MPTCP socket lives in the namespace with a "subflow" endpoint for its second.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mptcp_fast.testing.testbed import kernel_namespace, run_name  # noqa: E402

CLI = [sys.executable, "-m", "mptcp_fast"]
PROXY_PORT = 7200

SERVER_CHILD = r"""
import socket, sys, threading
mode = sys.argv[1]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 5000))
listener.listen(512)
def serve(sock):
    buffer = bytearray(1 << 20)
    while (n := sock.recv_into(buffer)):
        if mode == "echo":
            sock.sendall(memoryview(buffer)[:n])
    sock.close()
while True:
    sock, _ = listener.accept()
    threading.Thread(target=serve, args=(sock,), daemon=True).start()
"""


def _size(text: str) -> int:
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale != 1 else text) * scale)


def _wait_port(check, what: str, process) -> None:
    end = time.monotonic() + 10
    while not check():
        if time.monotonic() > end or process.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _proxy(engine: str, ns) -> subprocess.Popen:
    if engine == "kernel":
        extra = ["--netns", ns.name]
    else:
        extra = ["--tun", run_name("mfq", "0"), "--tun-address", "198.18.0.1/24", "--tun-address",
                 "198.18.2.1/24", "--netns", ns.name, "--address", "198.18.0.2",
                 "--address", "198.18.2.2"]
    proxy = subprocess.Popen(CLI + ["proxy", "--engine", engine, "--listen",
                                    f"127.0.0.1:{PROXY_PORT}", "--to", "198.18.0.1:5000",
                                    *extra], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _wait_port(lambda: f":{PROXY_PORT} " in subprocess.run(["ss", "-Hltn"], capture_output=True,
                                                          text=True).stdout, "the proxy", proxy)
    return proxy


def goodput(size: int) -> float:
    buffer = memoryview(bytearray(1 << 20))
    start = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", PROXY_PORT))
    sent = 0
    while sent < size:
        n = min(len(buffer), size - sent)
        sock.sendall(buffer[:n])
        sent += n
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()
    return size * 8 / (time.monotonic() - start) / 1e6


def one_exchange(_) -> bool:
    with socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=10) as sock:
        sock.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            piece = sock.recv(64 - len(got))
            if not piece:
                return False
            got += piece
        return got == b"x" * 64


def connections_per_second(count: int) -> float:
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ok = sum(pool.map(one_exchange, range(count)))
    if ok != count:
        raise RuntimeError(f"{count - ok} of {count} exchanges failed")
    return count / (time.monotonic() - start)


def run(engine: str, size: int, count: int) -> dict:
    ns = kernel_namespace("mfq-k")
    try:
        ns.ip("addr", "add", "198.18.4.1/24", "dev", "lo")
        if engine == "kernel":                 # the server's addresses, reached over lo
            ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
            ns.ip("addr", "add", "198.18.2.1/24", "dev", "lo")
            ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", "lo", "subflow")
        found = {"engine": engine}
        for mode, measure in (("sink", lambda: goodput(size)),
                              ("echo", lambda: connections_per_second(count))):
            server = ns.popen([sys.executable, "-c", SERVER_CHILD, mode],
                              stderr=subprocess.DEVNULL)
            try:
                _wait_port(lambda: ":5000 " in ns.run("ss", "-Hltn"), "the server", server)
                proxy = _proxy(engine, ns)
                try:
                    found["goodput_mbit" if mode == "sink" else "connections_per_s"] = measure()
                finally:
                    proxy.terminate()
                    proxy.wait(10)
            finally:
                server.kill()
                server.wait()
        return found
    finally:
        ns.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=_size, default=256 << 20)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(engine, args.size, args.connections) for engine in ("userspace", "kernel")]
    for row in rows:
        print(f"proxy --engine {row['engine']:9}: goodput {row['goodput_mbit']:8,.0f} Mbit/s, "
              f"{row['connections_per_s']:7,.0f} connections/s", flush=True)
    user, kern = rows
    print(f"userspace/kernel: goodput {user['goodput_mbit'] / kern['goodput_mbit']:.2f}, "
          f"connections/s {user['connections_per_s'] / kern['connections_per_s']:.2f}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput against the Linux kernel: the userspace engine over a TUN device
talking to a kernel MPTCP peer, against kernel<->kernel over veth, in one run, both data
directions, with 1 and 2 subflows; the engine on the compiled and on the pure backend.

    python bench/compare_tun.py                      # 256 MiB per transfer (root)
    python bench/compare_tun.py --size 64M --no-offload --rounds 3

Userspace<->kernel: a lean kernel MPTCP server (sink, or send SIZE bytes; recv_into and
sendall on a 1 MiB buffer, no hashing) in the namespace of a ``testbed.TunBed``; the engine, in a fresh process per backend, connects from 1 or 2 of its
addresses and sends (upload) or receives (download) SIZE bytes; time from connect() to the
last byte (upload: the server's DATA_ACK of it; download: its arrival). Kernel<->kernel: the
same server in namespace A of a ``testbed.VethBed``, a lean kernel client in B (with a "subflow" endpoint for the second subflow), the same sizes; its own timing.

The kernel client is the same kind of lean loop, so the kernel's own speed is what is
measured; the kernel server is the same in both cases.

Printed per case: Mbit/s of goodput, the engine's ratio to the kernel, and compiled/pure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mptcp_fast.testing.testbed import TunBed, VethBed  # noqa: E402


ENGINE_CHILD = r"""
import json, sys, time
from mptcp_fast import BACKEND
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.net.tun import TunDevice
from mptcp_fast.net.tunhost import TunHost
size, subflows, upload, offload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "up", sys.argv[4] == "1"
netns = sys.argv[5]
device = TunDevice(sys.argv[6], offload=offload)
kernel_side = ["198.18.0.1/24", "198.18.2.1/24"]
device.configure(kernel_side, netns=netns)
addresses = ["198.18.0.2", "198.18.2.2"][:subflows]
endpoint = Endpoint(addresses, Config(offload=offload, receive_window=16 << 20,
                                      send_buffer=16 << 20))
app = BulkApp(endpoint, send_bytes=size if upload else 0, hash_data=False)
host = TunHost(app, device)
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
conn = app.open(("198.18.0.1", 5000), host.clock())
t = app.transfers[conn.id]
if upload:
    done = lambda: conn.allocator is not None and t.sent == size and conn.fin_acked
else:
    done = lambda: t.eof
ok = host.run(until=done, timeout=600)
wall = time.monotonic() - start
print(json.dumps({"backend": BACKEND, "ok": ok, "wall": wall, "bytes": size,
                  "mbit": size * 8 / wall / 1e6,
                  "subflows": sum(1 for s in conn.all_subflows)}), flush=True)
"""


SEND_ALL = r"""
def send_all(sock, buffer, size):
    view, sent = memoryview(buffer), 0
    while sent < size:
        n = min(len(buffer), size - sent)
        sock.sendall(view[:n])
        sent += n
    sock.shutdown(socket.SHUT_WR)
"""

KERNEL_CHILD = r"""
import socket, sys, time
""" + SEND_ALL + r"""
size, upload, host = int(sys.argv[1]), sys.argv[2] == "up", sys.argv[3]
buffer = bytearray(1 << 20)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
start = time.monotonic()
sock.connect((host, 5000))
if upload:
    send_all(sock, buffer, size)
else:
    sock.sendall(b"x")
    sock.shutdown(socket.SHUT_WR)
received = 0
while (n := sock.recv_into(buffer)):
    received += n
wall = time.monotonic() - start
print(size if upload else received, wall)
"""


def _size(text: str) -> int:
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale != 1 else text) * scale)


SERVER_CHILD = r"""
import socket, sys
""" + SEND_ALL + r"""
mode, size = sys.argv[1], int(sys.argv[2])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 5000))
listener.listen()
sock, _ = listener.accept()
buffer = bytearray(1 << 20)
if mode == "send":
    send_all(sock, buffer, size)
while sock.recv_into(buffer):
    pass
sock.close()
"""


def _kernel_server(ns, mode: str, size: int) -> subprocess.Popen:
    """The same lean kernel MPTCP server for both cases: sink, or send ``size`` bytes."""
    server = ns.popen([sys.executable, "-c", SERVER_CHILD, mode, size],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 10
    while ":5000 " not in ns.run("ss", "-Hltn"):
        if time.monotonic() > end or server.poll() is not None:
            raise RuntimeError(f"the kernel server did not start: {server.stderr.read()}")
        time.sleep(0.05)
    return server


def userspace_case(backend: str, size: int, subflows: int, upload: bool, offload: bool) -> dict:
    with TunBed(name="mfb", paths=2, offload=offload) as bed:
        bed.device.close()                       # the child makes its own, of that name
        server = _kernel_server(bed.ns, "sink" if upload else "send", size)
        env = dict(os.environ)
        env.pop("MPTCP_FAST_PURE", None)
        # the engine of this tree, as the parent's testbed (not whichever one is installed)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        if backend == "python":
            env["MPTCP_FAST_PURE"] = "1"
        child = subprocess.Popen([sys.executable, "-c", ENGINE_CHILD, str(size), str(subflows),
                                  "up" if upload else "down", "1" if offload else "0",
                                  bed.ns.name, bed.device.name], env=env,
                                 stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=900)
        server.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(err)
        return json.loads(lines[-1])


def kernel_case(size: int, subflows: int, upload: bool) -> dict:
    with VethBed(name="mfv", paths=2) as bed:
        if subflows == 2:
            bed.endpoint("b", 1, "subflow")
        server = _kernel_server(bed.a, "sink" if upload else "send", size)
        client = subprocess.run(["ip", "netns", "exec", bed.b.name, sys.executable, "-c",
                                 KERNEL_CHILD, str(size), "up" if upload else "down",
                                 bed.a_addresses[0]], capture_output=True, text=True,
                                timeout=900, check=True)
        server.communicate(timeout=60)
        moved, wall = client.stdout.split()
        moved, wall = int(moved), float(wall)
        return {"wall": wall, "bytes": moved, "mbit": moved * 8 / wall / 1e6,
                "subflows": subflows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=_size, default=256 << 20)
    parser.add_argument("--no-offload", action="store_true",
                        help="the TUN device and the engine without GSO/TSO (1500-byte packets)")
    parser.add_argument("--rounds", type=int, default=1, help="best of this many runs per case")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    offload = not args.no_offload
    rows = []
    for upload in (True, False):
        for subflows in (1, 2):
            kernel = max((kernel_case(args.size, subflows, upload) for _ in range(args.rounds)),
                         key=lambda r: r["mbit"])
            found = {"direction": "engine->kernel" if upload else "kernel->engine",
                     "subflows": subflows, "kernel_mbit": kernel["mbit"]}
            for backend in ("cython", "python"):
                result = max((userspace_case(backend, args.size, subflows, upload, offload)
                              for _ in range(args.rounds)), key=lambda r: r["mbit"])
                if not result["ok"]:
                    raise RuntimeError(f"{backend} {found} did not finish: {result}")
                found[f"{backend}_mbit"] = result["mbit"]
                found[f"{backend}_subflows"] = result["subflows"]
            rows.append(found)
            print(f"{found['direction']:15} {subflows} subflow(s): kernel<->kernel "
                  f"{found['kernel_mbit']:8,.0f} Mbit/s | engine compiled "
                  f"{found['cython_mbit']:7,.0f} ({found['cython_mbit'] / found['kernel_mbit']:.2f}"
                  f" of the kernel) | pure {found['python_mbit']:6,.0f} | compiled/pure "
                  f"{found['cython_mbit'] / found['python_mbit']:.2f}x", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

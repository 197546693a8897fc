"""Packet-layer figures: parse and checksum work per packet, compiled vs pure, with
scapy (the peer users know) and the capture reader's per-packet path, in one run.

    python bench/compare_packet.py [CAPTURE] [--packets 20000] [--before /path/to/earlier/checkout]

Packets come from a capture of kernel MPTCP traffic (default: the shipped one, repeated to
--packets); each figure is the best of 5 passes over all of them, in ns per packet.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mptcp_fast
from mptcp_fast import _backend
from mptcp_fast.wire import packet

SHIPPED = Path(mptcp_fast.__file__).parent / "data" / "kernel-mptcp.pcap"


def frames(path: Path, want: int):
    raw = path.read_bytes()
    ip = {1: 14, 101: 0, 113: 16, 276: 20}[struct.unpack_from("<I", raw, 20)[0]]
    out, pos = [], 24
    while pos < len(raw) and len(out) < want:
        _, _, incl, _ = struct.unpack_from("<IIII", raw, pos)
        out.append(raw[pos + 16 + ip:pos + 16 + incl])
        pos += 16 + incl
    while len(out) < want:
        out += out[:want - len(out)]
    return out


def best(fn, items, passes=5) -> float:
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        fn(items)
        times.append(time.perf_counter() - t)
    return min(times) / len(items) * 1e9


def parse_all(items):
    parse = packet.parse_packet
    for f in items:
        parse(f)


def verify_all(items):
    verify = packet.verify_checksums
    for f in items:
        verify(f)


def build_all(items):
    out = bytearray(1600)
    build = packet.build_packet_into
    for src, dst, payload in items:
        build(out, 0, src, dst, 40000, 10000, 1, 2, packet.ACK, 65535, payload=payload)


READER = r"""
import io, json, struct, sys, time
from mptcp_fast.analysis import capture
raw = open(sys.argv[1], "rb").read()
best = None
for _ in range(5):
    t = time.perf_counter()
    n = sum(1 for _ in capture.CaptureReader(io.BytesIO(raw)))
    best = min(best or 1e9, time.perf_counter() - t)
print(json.dumps({"ns": best / n * 1e9, "n": n}))
"""


def reader_ns(pcap: str, tree: str | None, pure: bool) -> float:
    env = dict(os.environ, MPTCP_FAST_PURE="1" if pure else "0")
    if tree:
        env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, "-c", READER, pcap], capture_output=True, text=True,
                         env=env, check=True, cwd=tempfile.gettempdir()).stdout
    return json.loads(out)["ns"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", default=str(SHIPPED))
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--before", help="an earlier checkout with its extensions built in place")
    args = parser.parse_args()
    items = frames(Path(args.capture), args.packets)
    whole = [f for f in items if not packet.parse_packet(f).truncated]
    for_build = []
    for f in whole[:5000]:
        p = packet.parse_packet(f)
        for_build.append((p.src_address(f), p.dst_address(f), bytes(p.payload(f))))
    sizes = sum(len(f) for f in items) / len(items)
    rows = []
    for name in ("cython", "python"):
        with _backend.use(name):
            rows.append((f"parse_packet ({name})", best(parse_all, items)))
            if whole:
                rows.append((f"verify_checksums, IPv4 + TCP ({name})", best(verify_all, whole)))
            rows.append((f"build_packet_into with checksums ({name})", best(build_all, for_build)))
    from scapy.layers.inet import IP
    rows.append(("scapy IP(frame) (decode only, no checksum check)",
                 best(lambda xs: [IP(x) for x in xs], items[:5000], passes=3)))
    rows.append(("scapy bytes(IP/TCP/payload) (build with checksums)",
                 best(lambda xs: [bytes(IP(src="198.18.0.1", dst="198.18.0.2") /
                                        __import__("scapy.layers.inet", fromlist=["TCP"]).TCP(
                                            sport=40000, dport=10000, flags="A") / p)
                                  for _, _, p in xs], for_build[:2000], passes=3)))
    with tempfile.NamedTemporaryFile(suffix=".pcap") as tmp:
        tmp.write(Path(args.capture).read_bytes())
        tmp.flush()
        rows.append(("capture reader per packet, this tree (compiled)", reader_ns(tmp.name, None, False)))
        rows.append(("capture reader per packet, this tree (pure)", reader_ns(tmp.name, None, True)))
        if args.before:
            rows.append(("capture reader per packet, earlier tree (compiled)",
                         reader_ns(tmp.name, args.before, False)))
            rows.append(("capture reader per packet, earlier tree (pure)",
                         reader_ns(tmp.name, args.before, True)))
    print(f"# {args.capture}: {len(items):,} packets (mean {sizes:.0f} bytes), "
          f"{len(whole):,} whole\n")
    print("| operation | ns per packet |")
    print("|---|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

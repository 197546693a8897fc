"""Engine goodput in wall-clock time: one MPTCP connection moves SIZE bytes from a
client engine to a server engine, both in this process, over an unimpaired emulated network of
two paths (10 Gbit/s, 1 ms each way, 1500-byte MTU, queues deeper than the window: no loss),
so the machine, not the network, sets the pace. The compiled and the pure backends run side
by side in one invocation, each in a fresh process (so peak memory is its own).

    python bench/compare_engine.py                 # 256 MiB, one round per backend
    python bench/compare_engine.py --size 64M --rounds 3
    python bench/compare_engine.py --backend cython     # one backend (trees set side by side)
    python bench/compare_engine.py --rx-coalesce 20e-6  # NICs that coalesce 20 us of packets

``--offload`` runs the engines with Config(offload=True) over paths with offload=True: the
sender hands the network one segment per mapping chunk (up to 64 KiB), as a stack hands a NIC
with TSO; the clean paths carry them whole, timed as their 1500-byte wire packets.

``--rx-coalesce SECONDS`` gives both hosts NICs that coalesce received packets for that long
(``Network.add_host(rx_coalesce=...)``, as ``ethtool -C rx-usecs`` does): each engine takes
the packets of a batch at once and acknowledges them with one ACK per subflow, as Linux does
for what GRO merged; every data segment is still its own 1500-byte packet.

Printed per backend: wall seconds, goodput per wall-clock second, the transfer's virtual
time (the emulated network's clock, the same on both backends), CPU microseconds per data
segment sent and per segment received (all packets of both engines counted), peak RSS; then
the compiled/pure ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from mptcp_fast import BACKEND
from mptcp_fast.sim import demo
size = int(sys.argv[1])
OFFLOAD = sys.argv[2] == "1"
COALESCE = float(sys.argv[3])
paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(10e9, 0.001)]
cpu = time.process_time()
result = demo.run_transfer(size, paths, hash_data=False, queue=64 << 20, offload=OFFLOAD,
                           rx_coalesce=COALESCE)
cpu = time.process_time() - cpu
data_segments = -(-size // 1420)
print(json.dumps({"backend": BACKEND, "wall": result["wall_seconds"], "cpu": cpu,
                  "virtual": result["completion_seconds"],
                  "packets": result["packets"], "data_segments": data_segments,
                  "goodput_bps": result["processing_bps"],
                  "subflow_bytes": [s["bytes"] for s in result["subflows"]],
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _size(text: str) -> int:
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale != 1 else text) * scale)


def run(backend: str, size: int, offload: bool, coalesce: float = 0.0) -> dict:
    env = dict(os.environ)
    env.pop("MPTCP_FAST_PURE", None)
    if backend == "python":
        env["MPTCP_FAST_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, str(size), "1" if offload else "0",
                          repr(coalesce)],
                         env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=256 << 20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--offload", action="store_true",
                        help="segmentation offload: 64 KiB segments handed to TSO paths")
    parser.add_argument("--rx-coalesce", type=float, default=0.0, metavar="SECONDS",
                        help="both NICs coalesce received packets this long (0: none)")
    parser.add_argument("--backend", choices=("cython", "python"), action="append",
                        help="run only this backend (repeatable; default both)")
    args = parser.parse_args()
    best = {}
    for _ in range(args.rounds):
        for backend in args.backend or ("cython", "python"):
            r = run(backend, args.size, args.offload, args.rx_coalesce)
            if backend not in best or r["wall"] < best[backend]["wall"]:
                best[backend] = r
    print(f"{args.size / 2**20:g} MiB over two unimpaired emulated paths "
          f"({'with' if args.offload else 'without'} segmentation offload, "
          + (f"receive coalescing {args.rx_coalesce * 1e6:g} us" if args.rx_coalesce
             else "no receive coalescing") + "), best of "
          f"{args.rounds} round(s), client and server engines in one process")
    for backend, r in best.items():
        per_packet = r["cpu"] / r["packets"] * 1e6
        print(f"  {backend:7} {r['wall']:7.2f} s  goodput {r['goodput_bps'] / 1e6:8.1f} Mbit/s  "
              f"(in {r['virtual']:.3f} s of virtual time)  "
              f"CPU {per_packet:5.1f} us per packet ({r['packets']:,} packets, "
              f"{r['cpu'] / r['data_segments'] * 1e6:5.1f} us per data segment, sending and "
              f"receiving)  peak RSS {r['max_rss_mib']:.0f} MiB  subflows {r['subflow_bytes']}")
    if "cython" in best and "python" in best:
        print(f"  compiled / pure goodput: {best['cython']['goodput_bps'] / best['python']['goodput_bps']:.2f}x"
              f"   (targets: >= 1000 Mbit/s compiled, >= 3x pure)")


if __name__ == "__main__":
    main()

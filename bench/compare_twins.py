"""The compiled twins' hot calls, per call, in several built source trees side by side: how a
twin built one way (a hand-written .pyx) compares with the same twin built another (its pure
source compiled by Cython, typed by a .pxd), or any two trees.

    python bench/compare_twins.py TREE [TREE ...] [--rounds 3] [--capture FILE ...]

Each tree is imported through PYTHONPATH (build it first: ``python setup.py build_ext
--inplace``), in its own process, on the compiled backend; the trees run in alternation
``--rounds`` times and each cell is the best of its rounds (the machine's noise only ever adds
time). The calls go through the public API, so trees of other layouts compare too:

* ``segment.reader()`` on an established data segment (timestamps + a DSS mapping, 1448 bytes),
  a pure ACK (timestamps + a DSS data ACK) and a SYN (MSS, SACK, timestamps, window scale,
  MP_CAPABLE): the engine reads every packet so;
* ``dss.ReassemblyQueue.push`` of 1448-byte pieces in order, out of order (eight pieces ahead
  of a gap, then the gap) and again (a duplicate of a queued piece);
* ``dss.SubflowMappings.declare_fields`` of consecutive mappings, ``dss.dss_checksum`` of
  1448 bytes;
* ``receiver.DataReceiver`` ``declare`` + ``deliver`` of one 1448-byte segment with its queue,
  as the engine calls them;
* with ``--capture``: ``analysis.analyze`` of each file in the process (best of
  ``--runs`` after one warm-up), which is the tracker's walk, the receive pipeline and the
  capture decode, without the interpreter's start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

WORKER = r"""
import json, sys, time, timeit
from mptcp_fast import _backend
from mptcp_fast.wire import dss, options as opt, packet as pk, receiver, segment
captures, runs = json.loads(sys.argv[1]), int(sys.argv[2])
res = {}

def best(fn, number, per=1):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number / per * 1e9

with _backend.use("cython"):
    a, b = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    data = segment.data_packet(a, b, 40000, 10000, 1000, 2000, pk.ACK | pk.PSH, 500, 11, 22,
                               5 << 40, 7 << 40, 1, 1448, None, bytes(1448), 0, 1448)
    ack = segment.ack_packet(a, b, 40000, 10000, 1000, 2000, 500, 11, 22, 5 << 40)
    syn = pk.build_segment(a, b, 40000, 10000, 1000, 0, pk.SYN, 500, opt.encode_tcp_options([
        opt.Mss(1460), opt.SackPermitted(), opt.Timestamps(1, 0), opt.WindowScale(7),
        opt.MpCapable(version=1, flags=0x81)]), b"")
    read = segment.reader()
    for name, packet in (("segment read: data segment (TS + DSS mapping, 1448 B)", data),
                         ("segment read: pure ACK (TS + DSS data ACK)", ack),
                         ("segment read: SYN (MSS, SACK, TS, WS, MP_CAPABLE)", syn)):
        assert not isinstance(read(packet, 1), int)
        res[name] = best(lambda: read(packet, 1), 100000)

    piece = bytes(1448)
    def in_order():
        q = dss.ReassemblyQueue(0, window=1 << 30)
        for k in range(1800):
            q.push(k * 1448, piece)
    def out_of_order():
        q = dss.ReassemblyQueue(0, window=1 << 30)
        for base in range(0, 200 * 9 * 1448, 9 * 1448):
            for k in range(1, 9):
                q.push(base + k * 1448, piece)
            q.push(base, piece)
            q.read_pieces()
    def duplicate():
        q = dss.ReassemblyQueue(0, window=1 << 30)
        q.push(1448, piece)
        for _ in range(1800):
            q.push(1448, piece)
    res["ReassemblyQueue.push, in order"] = best(in_order, 20, 1800)
    res["ReassemblyQueue.push, out of order (8 ahead, then the gap)"] = best(out_of_order, 20, 1800)
    res["ReassemblyQueue.push, a duplicate of a queued piece"] = best(duplicate, 20, 1801)
    def declare():
        maps = dss.SubflowMappings()
        for k in range(2000):
            maps.declare_fields(10_000 + 1448 * k, 1 + 1448 * k, 1448)
    res["SubflowMappings.declare_fields, consecutive"] = best(declare, 20, 2000)
    res["dss_checksum, 1448 B"] = best(lambda: dss.dss_checksum(5, 1, 1448, piece), 100000)

    def segments():
        up = receiver.DataReceiver([], receiver.ChecksumBudget(1 << 40, 1 << 40), 0,
                                   dss.verify_dss_checksum)
        up.start(1000, dss.ReassemblyQueue(1000, window=1 << 40), lambda: None)
        side = up.subflow(0)
        for k in range(2000):
            up.declare(k, side, 1000 + 1448 * k, 1 + 1448 * k, 1448, False, None, False)
            up.deliver(k, side, 1 + 1448 * k, 1448, piece)
    res["DataReceiver declare + deliver, one 1448-byte segment"] = best(segments, 20, 2000)

    if captures:
        from mptcp_fast import analysis
        for path in captures:
            analysis.analyze(path)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                analysis.analyze(path)
                times.append(time.perf_counter() - start)
            res[f"analyze {path.rsplit('/', 1)[-1]} in the process (ms)"] = min(times) * 1e9 / 1e6
print(json.dumps(res))
"""


def run(tree: str, captures: list, runs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    env.pop("MPTCP_FAST_PURE", None)
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(captures), str(runs)],
                         capture_output=True, text=True, env=env, check=True,
                         cwd=tempfile.gettempdir()).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="built source trees; the first is the reference")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--capture", action="append", default=[],
                        help="also time analyze() of this capture (repeatable)")
    parser.add_argument("--runs", type=int, default=3, help="analyze() runs per round")
    args = parser.parse_args()
    captures = [os.path.abspath(c) for c in args.capture]
    cells: dict[str, dict[str, list]] = {tree: {} for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            for row, value in run(tree, captures, args.runs).items():
                cells[tree].setdefault(row, []).append(value)
    rows = list(cells[args.trees[0]])
    names = [os.path.basename(os.path.normpath(t)) or t for t in args.trees]
    print(f"best of {args.rounds} alternating rounds, ns per call unless marked (the range of "
          f"the rounds in brackets)\n")
    head = ["call", *names, *(f"{n} / {names[0]}" for n in names[1:])]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        values = [cells[t][row] for t in args.trees]
        best = [min(v) for v in values]
        shown = [f"{min(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})" for v in values]
        ratios = [f"{b / best[0]:.2f}x" for b in best[1:]]
        print("| " + " | ".join([row, *shown, *ratios]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-call figures for the calls the engine makes on every segment: parsing an
options area from bytes, from a memoryview and from a slice of a packet; encoding into a
buffer; declaring a mapping; expanding a 32-bit DSN. Compiled and pure, on this tree and,
with --before, on an earlier checkout, each in its own process.

    python bench/compare_calls.py [--before /path/to/earlier/checkout] [--rounds 3]

The columns run in alternation, ``--rounds`` times; each cell is the best of its rounds (the
machine's noise only ever adds time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

WORKER = r"""
import json, sys, timeit
from mptcp_fast import _backend, dss, options
from mptcp_fast.wire.dss import Mapping
from mptcp_fast.wire.options import Dss, Timestamps
backend = sys.argv[1]
area = options.encode_tcp_options([Timestamps(1, 2), Dss(data_ack=5, ack64=True, dsn=2**40,
                                   dsn64=True, subflow_seq=9, data_len=1448)])
packet = bytes(20) + bytes([0] * 12 + [0xA0] + [0] * 7) + area + bytes(1448)
view = memoryview(area)
dss_opt = Dss(data_ack=5, ack64=True, dsn=2**40, dsn64=True, subflow_seq=9, data_len=1448)
out = bytearray(64)
res = {}
def best(stmt, number=100000):
    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9
with _backend.use(backend):
    parse = options.parse_tcp_options
    res["parse_tcp_options(bytes)"] = best(lambda: parse(area))
    res["parse_tcp_options(memoryview)"] = best(lambda: parse(view))
    try:
        parse(packet, offset=40, length=len(area))
        res["parse_tcp_options(packet, offset, length)"] = best(
            lambda: parse(packet, offset=40, length=len(area)))
    except TypeError:
        res["parse_tcp_options(bytes(packet[40:68]))"] = best(lambda: parse(packet[40:40 + len(area)]))
    res["Dss.encode()"] = best(dss_opt.encode)
    if hasattr(dss_opt, "encode_into"):
        res["Dss.encode_into(buffer, 8)"] = best(lambda: dss_opt.encode_into(out, 8))
    counter = iter(range(10**9))
    maps = dss.SubflowMappings()
    def declare_mapping():
        i = next(counter)
        maps.declare(Mapping(10_000 + 1448 * i, 1 + 1448 * i, 1448))
    res["declare(Mapping(...)) incl. building it"] = best(declare_mapping, 50000)
    if hasattr(maps, "declare_fields"):
        counter2 = iter(range(10**9))
        maps2 = dss.SubflowMappings()
        def declare_fields():
            i = next(counter2)
            maps2.declare_fields(10_000 + 1448 * i, 1 + 1448 * i, 1448)
        res["declare_fields(...)"] = best(declare_fields, 50000)
    res["dss.expand_seq"] = best(lambda: dss.expand_seq(0x1FFFFFFF0, 0x10))
print(json.dumps(res))
"""


def run(tree, backend):
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, "-c", WORKER, backend], capture_output=True, text=True,
                         env=env, check=True, cwd=tempfile.gettempdir()).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier checkout with its extensions built in place")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    columns = [("compiled", None, "cython"), ("pure", None, "python")]
    if args.before:
        columns += [("compiled, before", args.before, "cython"), ("pure, before", args.before, "python")]
    best = {name: {} for name, _, _ in columns}
    for _ in range(args.rounds):
        for name, tree, backend in columns:
            for row, ns in run(tree, backend).items():
                best[name][row] = min(ns, best[name].get(row, ns))
    results = [(name, best[name]) for name, _, _ in columns]
    rows = []
    for _, r in results:
        rows += [k for k in r if k not in rows]
    print("| call (ns) | " + " | ".join(name for name, _ in results) + " |")
    print("|---|" + "---:|" * len(results))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{r[row]:,.0f}" if row in r else "-" for _, r in results) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sender figures: DsnAllocator.acknowledge and to_reinject with 1k/10k/100k
segments outstanding, compiled vs pure, and against an earlier tree of the project (the
list-rebuilding allocator) measured in the same run.

    python bench/compare_sender.py [--before /path/to/earlier/checkout] [--sizes 1000 10000 100000]

Each measurement runs in its own process. N segments of 1,448 bytes are outstanding on two
subflows; then one DATA_ACK per segment advances by one segment while a new segment is
allocated, so N stay outstanding: the time per acknowledge() call is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

WORKER = r"""
import json, sys, time
import mptcp_fast
from mptcp_fast import _backend, dss
n, rounds = int(sys.argv[1]), int(sys.argv[2])
backend = sys.argv[3]
with _backend.use(backend):
    alloc = dss.DsnAllocator(1000)
    subflows = [object(), object()]
    seq = [1, 1]
    def send(i):
        k = i & 1
        alloc.allocate(subflows[k], seq[k], 1448)
        seq[k] += 1448
    for i in range(n):
        send(i)
    acks = [1000 + (k + 1) * 1448 for k in range(rounds)]
    for i in range(n, n + rounds):        # allocated ahead: the timed loop only acknowledges
        send(i)
    ack = alloc.acknowledge
    t = time.perf_counter()
    for value in acks:
        ack(value)
    per_ack = (time.perf_counter() - t) / rounds
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        alloc.to_reinject(subflows[0])
    per_query = (time.perf_counter() - t) / reps
print(json.dumps({"per_ack": per_ack, "per_query": per_query, "module": mptcp_fast.__file__}))
"""


def run(tree: str | None, backend: str, n: int, rounds: int) -> dict:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    # run outside any checkout, so that PYTHONPATH (or the installed package) decides
    out = subprocess.run([sys.executable, "-c", WORKER, str(n), str(rounds), backend],
                         capture_output=True, text=True, env=env, check=True,
                         cwd=tempfile.gettempdir()).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier checkout with its extensions built in place")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    args = parser.parse_args()
    print("| outstanding | run | acknowledge µs/call | to_reinject ms/query (half the segments) |")
    print("|---:|---|---:|---:|")
    for n in args.sizes:
        rows = [("compiled (this tree)", run(None, "cython", n, 20_000)),
                ("pure (this tree)", run(None, "python", n, 20_000))]
        if args.before:
            rounds = max(20, 2_000_000 // n)
            rows.append(("earlier tree (list rebuilt per ack)", run(args.before, "cython", n, rounds)))
        for name, r in rows:
            print(f"| {n:,} | {name} | {r['per_ack'] * 1e6:.3f} | {r['per_query'] * 1e3:.3f} |",
                  flush=True)
            print(f"<!-- {name}: {r['module']} -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

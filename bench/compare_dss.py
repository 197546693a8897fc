"""Side-by-side benchmark: DSS checksum and reassembly, compiled vs pure vs numpy.

    python bench/compare_dss.py [--quick]

One run on this machine; throughput in GB/s (10**9 bytes per second), best of the repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time
import timeit

import numpy as np

from mptcp_fast import _backend

PIECE = 1448


def numpy_checksum(dsn: int, ssn: int, dll: int, payload: bytes) -> int:
    """The fastest numpy version: sum big-endian 16-bit words in uint64, then fold."""
    header = dsn.to_bytes(8, "big") + ssn.to_bytes(4, "big") + dll.to_bytes(2, "big") + b"\0\0"
    data = header + payload + (b"\0" if len(payload) & 1 else b"")
    total = int(np.frombuffer(data, dtype=">u2").sum(dtype=np.uint64))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_rows(number: int) -> list[str]:
    compiled = _backend.implementation("_dss", "cython").dss_checksum
    pure = _backend.implementation("_dss", "python").dss_checksum
    rows = []
    for size in (1448, 65536):
        payload = random.Random(size).randbytes(size)
        dll = size if size < 65536 else 65535       # the field is 16 bits; the sum is over all bytes
        assert compiled(5, 1, dll, payload) == pure(5, 1, dll, payload) == numpy_checksum(5, 1, dll, payload)
        n = max(number * 1448 // size, 50)
        best = {}
        for _ in range(5):                           # alternate the three to share the noise
            for name, fn in (("compiled", compiled), ("pure", pure), ("numpy", numpy_checksum)):
                t = min(timeit.repeat(lambda: fn(5, 1, dll, payload), number=n, repeat=1)) / n
                best[name] = min(best.get(name, t), t)
        gbps = {k: size / v / 1e9 for k, v in best.items()}
        rows.append(f"| DSS checksum, {size} B | {gbps['compiled']:.2f} | {gbps['pure']:.3f} | "
                    f"{gbps['numpy']:.3f} | {best['pure'] / best['compiled']:.0f}x | "
                    f"{best['numpy'] / best['compiled']:.0f}x |")
    return rows


def make_pieces(total: int, interleaved: bool, seed: int = 8684):
    """(dsn, bytes) pushes for ``total`` bytes: in order, or as two subflows interleaved with
    25% of the pieces late (out of order) and 2% sent twice (reinjected copies)."""
    data = np.random.default_rng(seed).integers(0, 256, total, dtype=np.uint8).tobytes()
    pieces = [(off, data[off:off + PIECE]) for off in range(0, total, PIECE)]
    if not interleaved:
        return data, pieces
    rng = random.Random(seed)
    out, late = [], []
    for i, piece in enumerate(pieces):               # subflow A carries even pieces, B odd
        if rng.random() < 0.25:
            late.append((i + rng.randint(2, 16), piece))   # arrives a few pieces later
        else:
            out.append(piece)
        while late and late[0][0] <= i:
            out.append(late.pop(0)[1])
        late.sort(key=lambda item: item[0])
        if rng.random() < 0.02:
            out.append(piece)                         # reinjected copy on the other subflow
    out.extend(piece for _, piece in late)
    return data, out


def run_reassembly(queue_cls, data: bytes, pushes, base: int):
    """Feed the pushes 64 at a time with push_many() and take the in-order data with
    read_pieces() (zero copy, as a proxy would hand it to os.writev); check it afterwards."""
    queue = queue_cls(base, window=8 << 20)
    batches = [([(base + off) % 2**64 for off, _ in pushes[i:i + 64]], [p for _, p in pushes[i:i + 64]])
               for i in range(0, len(pushes), 64)]
    out = []
    start = time.perf_counter()
    for dsns, pieces in batches:
        queue.push_many(dsns, pieces)
        out += queue.read_pieces()
    elapsed = time.perf_counter() - start
    assert b"".join(out) == data
    return elapsed, queue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB instead of 256 MiB")
    args = parser.parse_args()
    if "cython" not in _backend.available():
        print("the compiled backend is not built: nothing to compare", file=sys.stderr)
        return 1
    total = (32 if args.quick else 256) << 20
    print(f"# DSS and reassembly, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cores")
    print("\n| operation | compiled GB/s | pure GB/s | numpy GB/s | compiled / pure | compiled / numpy |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in checksum_rows(20_000 if args.quick else 200_000):
        print(row)

    print(f"\n| reassembly of {total >> 20} MiB in {PIECE}-byte pieces | compiled GB/s | pure GB/s | "
          "compiled / pure | peak queued (compiled) | out-of-order / duplicate bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    base = 2**64 - (total // 2)                      # the DSN space wraps half-way through
    for label, interleaved in (("in order", False), ("2 subflows, 25% late, 2% reinjected", True)):
        data, pushes = make_pieces(total, interleaved)
        results = {}
        for _ in range(2):
            for name in ("cython", "python"):
                cls = _backend.implementation("_dss", name).ReassemblyQueue
                elapsed, queue = run_reassembly(cls, data, pushes, base)
                if name not in results or elapsed < results[name][0]:
                    results[name] = (elapsed, queue)
        (tc, qc), (tp, qp) = results["cython"], results["python"]
        assert (qc.out_of_order_bytes, qc.duplicate_bytes) == (qp.out_of_order_bytes, qp.duplicate_bytes)
        print(f"| {label} | {total / tc / 1e9:.2f} | {total / tp / 1e9:.2f} | {tp / tc:.1f}x | "
              f"{qc.peak_queued_bytes / 2**20:.1f} MiB | {qc.out_of_order_bytes:,} / "
              f"{qc.duplicate_bytes:,} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS: {rss:.0f} MiB (the {total >> 20} MiB stream, its pieces and the output "
          "are all held by the benchmark itself)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

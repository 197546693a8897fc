"""Side-by-side benchmark: MPTCP HMACs and tokens, compiled vs pure vs hashlib/hmac.

    python bench/compare_crypto.py [--quick]

All figures come from this one run on this machine; each is the best of several
timeit repeats (ns per call), and the two sides of each ratio are timed in alternation.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import sys
import time
import timeit

import numpy as np

from mptcp_fast import _backend
from mptcp_fast.wire import crypto

KA, KB = 0x8EB52E2FFE8CC175, 0x1C5A07C724183A63        # live kernel keys (docs/kernel-behaviour.md §5)
RA, RB = 0x2B5DA663, 0x2BC41846
KEY_AB = KA.to_bytes(8, "big") + KB.to_bytes(8, "big")
NONCES = RA.to_bytes(4, "big") + RB.to_bytes(4, "big")
ADDR_MSG = bytes.fromhex("010a0003012711")


def best_ns(stmt: str, number: int, repeat: int = 1, **names) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat, globals=names)) / number * 1e9


def alternate(cases: dict, number: int, rounds: int = 7) -> dict:
    """Time every (stmt, names) of ``cases`` in alternation; best ns per call of each."""
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, (stmt, names) in cases.items():
            best[name] = min(best[name], best_ns(stmt, number, **names))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    n = 20_000 if args.quick else 200_000
    batch_n = 100_000 if args.quick else 1_000_000
    if "cython" not in _backend.available():
        print("the compiled backend is not built: nothing to compare", file=sys.stderr)
        return 1
    compiled = _backend.implementation("_crypto", "cython")
    print(f"# crypto, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cores, compiled SHA-256: {compiled.acceleration()}")

    contexts = {}
    for backend in ("cython", "python"):
        with _backend.use(backend):
            contexts[backend] = crypto.KeyContext(KB, KA)
    from mptcp_fast.wire.options import AddAddr
    opt = AddAddr(1, "10.0.3.1", 10001, crypto.add_addr_hmac(KB, KA, 1, "10.0.3.1", 10001))

    cases = {
        "MP_JOIN SYN/ACK HMAC, compiled KeyContext": ("c.synack_hmac(rb, ra)", dict(c=contexts["cython"], rb=RB, ra=RA)),
        "MP_JOIN SYN/ACK HMAC, pure KeyContext": ("c.synack_hmac(rb, ra)", dict(c=contexts["python"], rb=RB, ra=RA)),
        "MP_JOIN third-ACK verify, compiled KeyContext": ("c.verify_ack(h, rb, ra)", dict(c=contexts["cython"], h=bytes(20), rb=RB, ra=RA)),
        "MP_JOIN third-ACK verify, pure KeyContext": ("c.verify_ack(h, rb, ra)", dict(c=contexts["python"], h=bytes(20), rb=RB, ra=RA)),
        "ADD_ADDR verify, compiled KeyContext": ("c.verify_add_addr(o)", dict(c=crypto_context("cython", KA, KB), o=opt)),
        "ADD_ADDR verify, pure KeyContext": ("c.verify_add_addr(o)", dict(c=crypto_context("python", KA, KB), o=opt)),
        "hmac.new(key, msg, 'sha256').digest() (MP_JOIN)": ("hmac.new(k, m, 'sha256').digest()", dict(hmac=hmac, k=KEY_AB, m=NONCES)),
        "hmac.new(key, msg, 'sha256').digest() (ADD_ADDR)": ("hmac.new(k, m, 'sha256').digest()", dict(hmac=hmac, k=KEY_AB, m=ADDR_MSG)),
        "token+IDSN, compiled": ("f(k, 1)", dict(f=compiled.key_token_idsn, k=KA)),
        "token+IDSN, crypto.key_token_idsn (pure)": ("f(k, 1)", dict(f=_backend.implementation("_crypto", "python").key_token_idsn, k=KA)),
        "hashlib.sha256(key).digest()": ("h(k).digest()", dict(h=hashlib.sha256, k=KA.to_bytes(8, "big"))),
    }
    best = alternate(cases, n)
    print("\n| operation | ns per call |")
    print("|---|---:|")
    for name, ns in best.items():
        print(f"| {name} | {ns:.0f} |")
    ref = best["hmac.new(key, msg, 'sha256').digest() (MP_JOIN)"]
    print(f"\n- SYN/ACK HMAC: compiled context is {ref / best['MP_JOIN SYN/ACK HMAC, compiled KeyContext']:.1f}x "
          f"faster than hmac.new, pure context {ref / best['MP_JOIN SYN/ACK HMAC, pure KeyContext']:.1f}x")
    print(f"- third-ACK verify: compiled {ref / best['MP_JOIN third-ACK verify, compiled KeyContext']:.1f}x hmac.new")
    ref_aa = best["hmac.new(key, msg, 'sha256').digest() (ADD_ADDR)"]
    print(f"- ADD_ADDR verify: compiled {ref_aa / best['ADD_ADDR verify, compiled KeyContext']:.1f}x hmac.new, "
          f"pure {ref_aa / best['ADD_ADDR verify, pure KeyContext']:.1f}x")
    print(f"- token+IDSN: compiled {best['hashlib.sha256(key).digest()'] / best['token+IDSN, compiled']:.1f}x "
          f"faster than hashlib.sha256(key).digest() alone")

    # ---- batch verification of MP_JOIN third-ACK HMACs
    rng = np.random.default_rng(8684)
    k1 = rng.integers(0, 2**64 - 1, batch_n, dtype=np.uint64, endpoint=True)
    k2 = rng.integers(0, 2**64 - 1, batch_n, dtype=np.uint64, endpoint=True)
    n1 = rng.integers(0, 2**32 - 1, batch_n, dtype=np.uint32, endpoint=True)
    n2 = rng.integers(0, 2**32 - 1, batch_n, dtype=np.uint32, endpoint=True)
    with _backend.use("cython"):
        macs = crypto.join_hmac_batch(k1, k2, n1, n2, length=20)
        start = time.perf_counter()
        ok = crypto.verify_join_ack_batch(macs, k1, k2, n1, n2)
        batch_s = time.perf_counter() - start
    assert ok.all()
    # the Python loop a user would write, on a slice (it is slow), then per item
    loop_n = batch_n // 10
    keys = [int(a).to_bytes(8, "big") + int(b).to_bytes(8, "big") for a, b in zip(k1[:loop_n], k2[:loop_n])]
    msgs = [int(a).to_bytes(4, "big") + int(b).to_bytes(4, "big") for a, b in zip(n1[:loop_n], n2[:loop_n])]
    got = [m.tobytes() for m in macs[:loop_n]]
    start = time.perf_counter()
    valid = sum(hmac.compare_digest(hmac.new(k, m, "sha256").digest()[:20], g)
                for k, m, g in zip(keys, msgs, got))
    loop_s = time.perf_counter() - start
    assert valid == loop_n
    per_batch, per_loop = batch_s / batch_n * 1e9, loop_s / loop_n * 1e9
    print("\n| batch verification of MP_JOIN third-ACK HMACs | ns per item | items/s |")
    print("|---|---:|---:|")
    print(f"| compiled verify_join_ack_batch, {batch_n:,} items | {per_batch:.0f} | {1e9 / per_batch:,.0f} |")
    print(f"| Python loop of hmac.new + compare_digest, {loop_n:,} items | {per_loop:.0f} | {1e9 / per_loop:,.0f} |")
    print(f"\n- batch is {per_loop / per_batch:.1f}x faster per item than the hmac.new loop")
    return 0


def crypto_context(backend: str, local: int, remote: int):
    with _backend.use(backend):
        return crypto.KeyContext(local, remote)


if __name__ == "__main__":
    raise SystemExit(main())

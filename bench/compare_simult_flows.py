"""simult_flows, the engine against the kernel<->kernel reference over the same paths, in one
run (root): two rate-limited paths (the engine's packet path: TunHost / TunBridge FIFOs of
1.5 MB), 16 MiB one way and 80 KiB the other, the engine as client and server, sending and
receiving; then the same transfer between two kernels through a TunBridge with the same
impairments. ``--cc`` picks the kernel sockets' congestion control (default: the machine's).

    python bench/compare_simult_flows.py --backend cython --cc cubic
"""

from __future__ import annotations

import argparse
import sys
import time

from mptcp_fast import _backend
from mptcp_fast.testing.conformance import Judge
from mptcp_fast.testing.conformance import simult_flows as sf
from mptcp_fast.testing.testbed import KernelPeer, TunPairBed


def kernel_pair(rates, delays, cc) -> float:
    """Seconds for the kernel<->kernel transfer (the client sends 16 MiB)."""
    with TunPairBed("mfp", paths=2) as bed:
        bed.endpoint("b", 1, "subflow")
        for address, rate, delay in zip(bed.b_addresses, rates, delays):
            bed.bridge.impair(address, rate=rate * 1e6, delay=delay / 1000)
        server = KernelPeer(bed.a, send_bytes=sf.SMALL, hold=0.3, congestion=cc)
        server.listen(bed.a_addresses[0], 5000)
        time.sleep(0.1)
        start = time.monotonic()
        client = KernelPeer(bed.b, send_bytes=sf.SIZE, hold=0.3, congestion=cc)
        client.connect(bed.a_addresses[0], 5000)
        assert bed.bridge.run(until=lambda: client.done() and server.done(), timeout=60)
        assert client.sent_sha256 == server.received_sha256 and len(client.subflows) == 2
        return time.monotonic() - start


def engine(rates, delays, role, sends, cc) -> float:
    judge = Judge()
    sf.KERNEL_CC = cc
    sf.simult_flows(judge, rates, delays, role, sends)
    assert all(held for text, held in judge.checks if not text.startswith("took")), judge.checks
    (took,) = [text for text, _ in judge.checks if text.startswith("took")]
    print(f"  {rates} {delays} engine {role} {'sends' if sends else 'receives'}: {took}",
          file=sys.stderr, flush=True)
    return float(took.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="cython")
    parser.add_argument("--cc", default=None, help="the kernel sockets' congestion control")
    args = parser.parse_args()
    print("| rates Mbit/s | delays ms | bound s | kernel<->kernel s | engine client sends | "
          "engine client receives | engine server sends | engine server receives |")
    print("|---|---|---|---|---|---|---|---|")
    with _backend.use(args.backend):
        for rates in sf.RATES:
            for delays in sf.DELAYS:
                reference = kernel_pair(rates, delays, args.cc)
                cells = [engine(rates, delays, role, sends, args.cc)
                         for role in ("client", "server") for sends in (True, False)]
                print(f"| {rates[0]}/{rates[1]} | {delays[0]}/{delays[1]} | "
                      f"{sf.bound(rates):.2f} | {reference:.2f} | "
                      + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()

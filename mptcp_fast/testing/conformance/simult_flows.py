"""simult_flows: two rate-limited paths used at once (after the kernel's simult_flows.sh).

Each path has a rate (and a delay) both ways, a FIFO of 1.5 MB in front (netem's default
limit of 1,000 packets); the side that sends 16 MiB must use both paths so well that the
transfer ends within ``size * 8 / (rate1 + rate2) * 1.1 + 0.4 s``, the bound the kernel's test
sets the kernel (10 % for headers and 400 ms for the joins). The other side sends 80 KiB.
The engine is the client (it joins from its second address) or the server (the kernel's
"subflow" endpoint joins it); the kernel runs its default scheduler and CUBIC, Linux's
built-in default congestion control, on its socket (a machine whose default is BBR would
otherwise lend it BBR: see docs/conformance.md for what that changes).
"""

from __future__ import annotations

from ..testbed import KernelPeer, TunBed
from . import case
from .scenario import PORT, Engine, established, judge_exact

SIZE = 2 * 2048 * 4096           # the selftest's large file: 16 MiB
SMALL = 20 * 4096                # and its small one
RATES = ((10, 10), (15, 5))      # Mbit/s
DELAYS = ((0, 0), (0, 25))       # ms, one way
KERNEL_CC = "cubic"              # Linux's built-in default, what its selftests run with


def bound(rates) -> float:
    """The selftest's time limit in seconds for SIZE over the two rates (Mbit/s)."""
    return SIZE * 8 / (sum(rates) * 1e6) * 1.1 + 0.4


def simult_flows(judge, rates, delays, engine_role, engine_sends_large):
    with TunBed("mfs", paths=2, offload=False) as bed:
        engine_bytes, kernel_bytes = (SIZE, SMALL) if engine_sends_large else (SMALL, SIZE)
        if engine_role == "client":
            engine = Engine(bed, bed.engine_addresses, engine_bytes, offload=False)
            ends = bed.engine_addresses                  # each path: one of our addresses
        else:
            bed.endpoint(bed.kernel_addresses[1], "subflow")
            engine = Engine(bed, bed.engine_addresses[:1], engine_bytes, offload=False)
            ends = bed.kernel_addresses                  # each path: one of the kernel's
        for address, rate, delay in zip(ends, rates, delays):
            engine.host.impair(address, rate=rate * 1e6, delay=delay / 1000)
        peer = KernelPeer(bed.ns, send_bytes=kernel_bytes, hold=0.3, congestion=KERNEL_CC)
        before = bed.counters()
        if engine_role == "client":
            peer.listen(bed.kernel_addresses[0], PORT)
            engine.open(bed.kernel_addresses[0])
        else:
            engine.listen()
            peer.connect(bed.engine_addresses[0], PORT)
        finished = engine.exchange(peer, timeout=bound(rates) * 3)
        elapsed = engine.elapsed(peer)
        judge_exact(judge, engine, peer, finished)
        judge.check(f"took {elapsed:.2f} s, at most {bound(rates):.2f} s",
                    elapsed <= bound(rates))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        moved = judge.kernel(bed.ns, before)
        if engine_role == "client":
            judge.counter(moved, "MPJoinSynRx", 1)
            judge.counter(moved, "MPJoinAckRx", 1)
        else:
            judge.counter(moved, "MPJoinSynTx", 1)
            judge.counter(moved, "MPJoinSynAckRx", 1)


for _rates in RATES:
    for _delays in DELAYS:
        for _role in ("client", "server"):
            for _large in (True, False):
                _name = (f"simult_flows/{_rates[0]}-{_rates[1]}mbit-{_delays[0]}-{_delays[1]}ms-"
                         f"engine-{_role}-{'sends' if _large else 'receives'}")
                case("simult_flows", _name,
                     f"16 MiB within {bound(_rates):.2f} s over both paths, exact both ways",
                     rates=_rates, delays=_delays, engine_role=_role,
                     engine_sends_large=_large)(simult_flows)

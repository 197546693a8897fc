"""The compiled engine keeps its per-segment objects out of the cyclic collector's sight.

A retransmission-queue entry (``_Sent``), the chunk it was cut from (``Chunk``) and a packet
in flight in the emulator (``_Arrival``) hold numbers and bytes only, so they can never be
part of a reference cycle. With thousands of connections, tens of thousands of them are
alive at once; were they tracked, every full pass of the collector would walk them all
(bench/RESULTS.md, "Cost in concurrency"). Compiled, each is untracked when made, whichever
constructor made it (``__init__`` or the C functions of the per-segment path).

The pure backend has no way to untrack an instance of a Python class; the property, and so
this test, is the compiled backend's.
"""

from __future__ import annotations

import gc

import pytest

from conftest import require
from enginenet import C0, C1, S0, make, PORT
from mptcp_fast import _backend
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.netem import Network

PATHS = {(C0, S0): dict(rate=10e9, delay=0.001), (C1, S0): dict(rate=10e9, delay=0.001)}


@pytest.fixture
def compiled():
    require("compiled")
    with _backend.use("cython"):
        yield


def _in_flight(net, made) -> list:
    """Every packet in flight on the paths, as the emulator holds it."""
    out = []
    for path in made.values():
        for direction in path._directions.values():
            fifo = direction.in_flight
            out += fifo.items[fifo.head:]
    return out


def test_segments_sent_and_packets_in_flight_are_not_tracked(compiled):
    net, client, server, made = make(PATHS, up=32 << 20)
    conn = client.open((S0, PORT), 0.0)
    net.run(until=0.07)    # mid-transfer (the first data waits for the delayed ACK): windows open
    entries = [entry for sf in conn.subflows for entry in sf.sent[sf.sent_head:]]
    arrivals = _in_flight(net, made)
    # there is something to look at: segments unacknowledged, and packets on the wire
    assert len(entries) > 100 and len(arrivals) > 100, (len(entries), len(arrivals))
    assert {type(e).__name__ for e in entries} == {"_Sent"}
    assert {type(a).__name__ for a in arrivals} == {"_Arrival"}
    assert not any(gc.is_tracked(entry) for entry in entries)
    assert not any(gc.is_tracked(entry.chunk) for entry in entries if entry.chunk is not None)
    assert not any(gc.is_tracked(arrival) for arrival in arrivals)
    # nothing of those compiled kinds is tracked anywhere (the collector's own list)
    kinds = {"_Sent", "Chunk", "_Arrival"}
    assert not [o for o in gc.get_objects() if type(o).__name__ in kinds
                and type(o).__module__.startswith("mptcp_fast._cengine")]


def test_untracked_objects_are_freed_with_their_owner(compiled):
    """Untracked is not leaked: once the run is over and dropped, the memory its entries,
    chunks and packets held is given back (their references are plain counts), as the
    control shows it is not when the run is kept."""
    import tracemalloc

    def run() -> tuple:
        net, client, server, made = make(PATHS, up=8 << 20)
        client.open((S0, PORT), 0.0)
        net.run(until=0.07)                # mid-transfer, thousands of entries and packets
        return net, client, server

    run()                                   # warm up: imports, caches, free lists
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kept = run()
        held = tracemalloc.get_traced_memory()[0] - base
        del kept
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held > 2_000_000, held           # the control: a run in progress holds megabytes
    assert left < 200_000, (held, left)


def test_an_idle_connection_keeps_few_objects_in_the_collector_s_sight(compiled):
    """Every full pass of the collector walks every tracked object: a connection's
    containers of numbers, bytes and events (its queues, its segments sent, its anomalies
    and events, its path manager's echoes) are untracked, so an idle connection pair with
    two subflows leaves about 46 (79 before; 94 before the set-up's changes of 2026-12-05)."""
    n = 40
    config = Config(syn_backlog=256)
    client, server = Endpoint([C0, C1], config), Endpoint([S0], config)
    server.listen(PORT)
    net = Network(seed=1)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    for address in (C0, C1):
        net.add_path(address, S0, rate=10e9, delay=0.001)
    gc.collect()
    before = len(gc.get_objects())
    conns = [client.connect((S0, PORT), 0.0) for _ in range(n)]
    for conn in conns:
        conn.send(b"x")
    net.wake(client)
    net.run(until=0.5)
    for ep in (client, server):
        while ep.next_event() is not None:
            pass
    assert len(server.connections) == n and sum(len(c.subflows) for c in conns) == 2 * n
    gc.collect()
    per_pair = (len(gc.get_objects()) - before) / n
    assert per_pair < 55, per_pair

"""Coupled congestion control in the engine (issue #11, RFC 6356 §1-3; OLIA and BALIA from
issue #12): two coupled subflows that share one bottleneck with a single Reno flow take about
what the Reno flow takes (the goal of "do no harm"), and on two disjoint paths each controller
uses both. Congestion control is engine logic,
the same code on both backends: these run on the active one."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, PORT, S0, SharedAddress
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.engine.apps import BulkApp
from mptcp_fast.netem import Network

RATE = 10e6
SECONDS = 40.0


@pytest.mark.parametrize("coupled", ["lia", "olia", "balia", "reno"])
def test_two_lia_subflows_on_one_bottleneck_are_fair_to_one_reno_flow(coupled):
    """With LIA the two subflows together take about the Reno flow's share; the same with
    uncoupled Reno on each subflow (the control) takes about twice it."""
    net = Network(seed=7)
    lia = BulkApp(Endpoint([C0], Config(congestion_control=coupled)), send_bytes=1 << 30)
    reno = BulkApp(Endpoint([C0], Config(congestion_control="reno")), send_bytes=1 << 30, seed=2)
    server = BulkApp(Endpoint([S0]))
    server.endpoint.listen(PORT)
    net.add_host(SharedAddress(lia, reno), [C0])
    net.add_host(server, [S0])
    # one bottleneck: 10 Mbit/s, 20 ms RTT, a queue of about one bandwidth-delay product
    net.add_path(C0, S0, rate=RATE, delay=0.010, queue=25_000)
    multipath = lia.open((S0, PORT), 0.0)
    single = reno.open((S0, PORT), 0.0)
    # a second subflow of the MPTCP connection over the same bottleneck
    net.schedule(0.5, lambda: (multipath.join(C0), net.wake(lia)))
    net.run(until=5.0)                           # past slow start
    start = {(t.conn.remote[1]): t.received for t in server.transfers.values()}
    net.run(until=5.0 + SECONDS)
    got = {(t.conn.remote[1]): t.received - start[t.conn.remote[1]]
           for t in server.transfers.values()}
    mptcp = got[multipath.local[1]]
    tcp = got[single.local[1]]
    assert len(multipath.subflows) == 2 and all(sf.bytes_sent > 1_000_000 for sf in multipath.subflows)
    print(f"MPTCP ({coupled}, 2 subflows) {mptcp * 8 / SECONDS / 1e6:.2f} Mbit/s, "
          f"Reno {tcp * 8 / SECONDS / 1e6:.2f} Mbit/s")
    if coupled != "reno":
        assert abs(mptcp - tcp) <= 0.3 * tcp, (mptcp, tcp)
    else:
        assert mptcp > 1.5 * tcp, (mptcp, tcp)
    assert (mptcp + tcp) * 8 / SECONDS > 0.8 * RATE              # and the link stays busy


@pytest.mark.parametrize("coupled", ["lia", "olia", "balia"])
def test_coupled_control_uses_both_disjoint_paths(coupled):
    net = Network(seed=3)
    client = BulkApp(Endpoint([C0, C1], Config(congestion_control=coupled)), send_bytes=1 << 30)
    server = BulkApp(Endpoint([S0]))
    server.endpoint.listen(PORT)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    net.add_path(C0, S0, rate=RATE, delay=0.010, queue=25_000)
    net.add_path(C1, S0, rate=RATE, delay=0.020, queue=50_000)
    conn = client.open((S0, PORT), 0.0)
    net.run(until=5.0)
    before = [sf.bytes_sent for sf in conn.subflows]
    net.run(until=5.0 + SECONDS / 2)
    rates = [(sf.bytes_sent - b) * 8 / (SECONDS / 2) for sf, b in zip(conn.subflows, before)]
    print(f"{coupled} on two disjoint paths: " + ", ".join(f"{r / 1e6:.2f}" for r in rates)
          + " Mbit/s")
    assert len(rates) == 2 and all(r > 0.6 * RATE for r in rates), rates

"""Middleboxes that rewrite what they carry (RFC 8684 §3.7 and §3.3.1): sequence
numbers shifted (ISN-randomising firewalls, SACK blocks included), an address translated,
segments split in two and merged in pairs. MPTCP's relative sequence numbers and mappings
survive them all: the transfers stay byte-exact and MPTCP stays on."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, S0, transfer
from mptcp_fast.sim import netem

MB = 1 << 20
PATHS = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}
OUTSIDE = "198.18.50.1"


def _box(make, route=False):
    def before_run(net, client, server, made, conn):
        path = made[(C0, S0)]
        path.middlebox = make()
        if route:
            net.route(OUTSIDE, S0, path)
    return before_run


@pytest.mark.parametrize("name, make, extra", [
    ("shifted sequence numbers", lambda: netem.shift_sequence(0x9E3779B9), {}),
    ("split segments", lambda: netem.split_segments(every=3), {}),
    ("coalesced segments", lambda: netem.coalesce_segments(1400), {"mss": 536}),
])
def test_rewriting_middleboxes_leave_the_streams_exact(backend, name, make, extra):
    run = transfer(PATHS, up=2 * MB, down=MB, before_run=_box(make), **extra)
    run.check_exact(2 * MB, MB)
    assert run.conn.fallback is None and run.up[1].conn.fallback is None
    assert all(sf.bytes_sent > 0 for sf in run.conn.all_subflows)
    # a merged segment whose second half lost its DSS has unmapped bytes: the receiver does
    # not acknowledge them and the sender's retransmission (with its mapping) gets through
    assert all(a.text.endswith("have no mapping") for a in run.up[1].conn.anomalies)
    if name != "coalesced segments":
        assert run.up[1].conn.anomalies == []


def test_through_a_nat(backend):
    run = transfer(PATHS, up=2 * MB, down=MB, before_run=_box(lambda: netem.nat(C0, OUTSIDE),
                                                               route=True))
    run.check_exact(2 * MB, MB)
    server_conn = run.up[1].conn
    assert server_conn.remote[0] == bytes([198, 18, 50, 1])       # the server saw the NAT
    assert len(server_conn.all_subflows) == 2 and run.conn.fallback is None

"""Fallback to TCP (issue #12, RFC 8684 §3.7): middleboxes in the emulated network strip MPTCP
options from the SYN, the SYN/ACK, the third ACK or the data; a plain TCP client talks to an
MPTCP server. The connection continues as plain TCP on the initial subflow, byte-exact both
ways, and says so with a FellBackToTcp event; once fallen back no MPTCP option is sent."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, PORT, S0, drain, options_of, transfer
from mptcp_fast import options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.netem import strip_mptcp

MB = 1 << 20
PATHS = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}


def _strip(kinds, limit=None):
    def before_run(net, client, server, made, conn):
        made[(C0, S0)].middlebox = strip_mptcp(kinds, limit)
    return before_run


@pytest.mark.parametrize("kinds, why", [
    (["syn"], "the SYN had no usable MP_CAPABLE"),
    (["syn-ack"], "the SYN/ACK had no MP_CAPABLE"),
    (["ack"], "the third ACK had no MP_CAPABLE"),
])
def test_stripped_handshake_falls_back_and_stays_byte_exact(backend, kinds, why):
    limit = 1 if kinds == ["ack"] else None             # just the handshake's third ACK
    run = transfer(PATHS, up=2 * MB, down=MB, before_run=_strip(kinds, limit))
    run.check_exact(2 * MB, MB)
    c, s = run.up
    fell = [e for app in (run.client, run.server) for e in app.events if type(e) is ev.FellBackToTcp]
    assert why in {e.why for e in fell}
    assert c.terminated == s.terminated == "closed"
    assert len(run.conn.all_subflows) == 1                       # no MP_JOIN after a fallback
    assert run.conn.fallback is not None and s.conn.fallback is not None


def test_data_stripped_of_its_dss_before_the_connection_is_fully_established(backend):
    """The MP_CAPABLE data segment and the DSS of the server's data are stripped: both sides
    see data without a mapping on their only subflow and fall back (Linux's DssFallback)."""
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.010)}, up=MB, down=MB,
                   client_addresses=(C0,), before_run=_strip(["data"]))
    run.check_exact(MB, MB)
    c, s = run.up
    assert run.conn.fallback and s.conn.fallback


def test_a_plain_tcp_client_gets_a_plain_tcp_server(backend):
    """No MPTCP on the client side at all: the server answers without MP_CAPABLE and serves
    the connection as TCP."""
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    syn = pk.build_packet(C0, S0, 40000, PORT, 1000, 0, pk.SYN, 65535,
                          options=opt.encode_tcp_options([opt.Mss(1460)]))
    server.receive_packet(syn, 0.0)
    (synack,) = server.packets_to_send(0.0)
    p = pk.parse_packet(synack)
    assert p.flags == pk.SYN | pk.ACK and p.ack == 1001
    assert [type(o) for o in options_of(synack)] == [opt.Mss]   # nothing it was not offered
    ack = pk.build_packet(C0, S0, 40000, PORT, 1001, (p.seq + 1) & 0xFFFFFFFF, pk.ACK, 65535)
    data = pk.build_packet(C0, S0, 40000, PORT, 1001, (p.seq + 1) & 0xFFFFFFFF,
                           pk.ACK | pk.PSH | pk.FIN, 65535, payload=b"GET / HTTP/1.0\r\n\r\n")
    server.receive_packet(ack, 0.01)
    server.receive_packet(data, 0.02)
    events = drain(server)
    assert [type(e) for e in events] == [ev.ConnectionEstablished, ev.SubflowEstablished,
                                         ev.FellBackToTcp, ev.DataReceived, ev.EndOfStream]
    assert events[3].data == b"GET / HTTP/1.0\r\n\r\n"
    conn = server.connection(events[0].connection)
    conn.send(b"HTTP/1.0 200 OK\r\n\r\nhello", end_stream=True)
    out = server.packets_to_send(0.03)
    payloads = b"".join(bytes(pk.parse_packet(x).payload(x)) for x in out)
    assert payloads == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert any(pk.parse_packet(x).flags & pk.FIN for x in out)
    assert not any(isinstance(o, opt._MptcpOption) for x in out for o in options_of(x))


def test_a_path_that_comes_back_after_fallback_gets_no_reinjected_copy(backend):
    """Issue 21, finding 11: both sides fall back (MP_CAPABLE stripped from the SYN), the path
    is down from 0.105 s to 1.5 s while the client sends 100,000 bytes. The subflow goes stale,
    but after fallback nothing may be reinjected: a copy sent at the subflow's current position
    is, without a DSS mapping, new stream data to the peer (it got sent[0:14200] +
    sent[9940:]). Only TCP's retransmission at the original positions resends."""
    def cut(net, client, server, made, conn):
        made[(C0, S0)].middlebox = strip_mptcp(["syn"])
        made[(C0, S0)].down(at=0.105)
        made[(C0, S0)].up(at=1.5)
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.020)}, up=100_000, client_addresses=(C0,),
                   time_wait=60.0, before_run=cut, settle=False)
    c, s = run.up
    assert run.conn.fallback and s.conn.fallback
    assert run.conn.all_subflows[0].stats_retransmits > 0          # the outage was felt
    run.check_exact(100_000, 0)                                    # exactly the bytes sent
    assert run.conn.reinjected_bytes == 0 and not run.conn.reinject


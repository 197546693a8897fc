"""Fallback to TCP (RFC 8684 §3.7): middleboxes in the emulated network strip MPTCP
options from the SYN, the SYN/ACK, the third ACK or the data; a plain TCP client talks to an
MPTCP server. The connection continues as plain TCP on the initial subflow, byte-exact both
ways, and says so with a FellBackToTcp event; once fallen back no MPTCP option is sent."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, PORT, S0, drain, options_of, pump, transfer
from mptcp_fast.wire import crypto, options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.sim.netem import strip_mptcp

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


def _plain_tcp_syn():
    """A server that got a SYN without MP_CAPABLE from C0:40000 (ISN 1000): (the server, its
    SYN/ACK)."""
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    syn = pk.build_packet(C0, S0, 40000, PORT, 1000, 0, pk.SYN, 65535,
                          options=opt.encode_tcp_options([opt.Mss(1460)]))
    server.receive_packet(syn, 0.0)
    (synack,) = server.packets_to_send(0.0)
    return server, synack


def test_a_plain_tcp_client_gets_a_plain_tcp_server(backend):
    """No MPTCP on the client side at all: the server answers without MP_CAPABLE and serves
    the connection as TCP."""
    server, synack = _plain_tcp_syn()
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
    """Both sides fall back (MP_CAPABLE stripped from the SYN), the path
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


def _join_syn(token, sport=40001, seq=5000):
    return pk.build_packet(C1, S0, sport, PORT, seq, 0, pk.SYN, 65535,
                           options=opt.encode_tcp_options([opt.Mss(1460),
                                                           opt.MpJoinSyn(1, token, 1234, False)]))


def test_a_plain_tcp_connection_has_no_token_and_refuses_mp_join(backend):
    """A connection served as plain TCP (SYN without MP_CAPABLE)
    registers no token, and an MP_JOIN SYN naming the token of its key is refused as an
    unknown token (RST with MP_TCPRST, RFC 8684 §3.2/§3.7). Before, the join was accepted and
    its third ACK raised AttributeError out of receive_packet."""
    server, synack = _plain_tcp_syn()
    p = pk.parse_packet(synack)
    server.receive_packet(pk.build_packet(C0, S0, 40000, PORT, 1001, (p.seq + 1) & 0xFFFFFFFF,
                                          pk.ACK, 65535), 0.01)
    conn = next(iter(server.connections.values()))
    assert conn.fallback and len(server.tokens) == 0
    token = crypto.key_token(conn.local_key)
    server.receive_packet(_join_syn(token), 0.02)
    (reply,) = server.packets_to_send(0.02)
    q = pk.parse_packet(reply)
    assert q.flags & pk.RST and not q.flags & pk.SYN
    assert opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR) in options_of(reply)
    assert server.stats["refused_join"] == 1 and len(conn.all_subflows) == 1
    # even were its token in the table, the join would be refused (accept_join's own rule)
    server.tokens.adopt(conn.local_key, conn)
    server.receive_packet(_join_syn(token, sport=40002), 0.025)
    (reply,) = server.packets_to_send(0.025)
    assert pk.parse_packet(reply).flags & pk.RST and server.stats["refused_join"] == 2
    server.tokens.remove(token)
    # the third ACK a joiner would send next finds no subflow: a RST, nothing raised
    server.receive_packet(pk.build_packet(C1, S0, 40001, PORT, 5001, 1, pk.ACK, 65535,
                                          options=opt.encode_tcp_options(
                                              [opt.MpJoinAck(bytes(20))])), 0.03)
    assert len(conn.all_subflows) == 1 and conn.bad_join == 0
    # the connection itself goes on as TCP
    server.receive_packet(pk.build_packet(C0, S0, 40000, PORT, 1001, (p.seq + 1) & 0xFFFFFFFF,
                                          pk.ACK | pk.PSH, 65535, payload=b"still TCP"), 0.04)
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"still TCP"


def test_a_connection_that_fell_back_refuses_mp_join(backend):
    """The third ACK loses its MP_CAPABLE, so the server falls back
    while the client knows both keys; the client's MP_JOIN (a valid token and HMACs) is
    refused with MP_TCPRST and no subflow joins (RFC 8684 §3.7)."""
    client = Endpoint([C0, C1], Config(time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    box = strip_mptcp(["ack"], 1)
    pump(client, server, until=0.05,
         mutate=lambda packet, sender: box(packet, True) if sender is client else packet)
    server_conn = next(iter(server.connections.values()))
    assert server_conn.fallback == "the third ACK had no MP_CAPABLE" and conn.keys is not None
    assert crypto.key_token(server_conn.local_key) not in server.tokens
    sid = conn.join(C1, now=0.05)
    seen = pump(client, server, 0.05, until=0.5)
    resets = [p for s, p in seen if s is server and pk.parse_packet(p).flags & pk.RST]
    assert resets and opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR) in options_of(resets[0])
    assert server.stats["refused_join"] == 1 and len(server_conn.all_subflows) == 1
    assert conn.all_subflows[sid].state_name == "CLOSED"


def test_one_lost_third_ack_does_not_force_a_fallback(backend):
    """In the emulator: the client's application is silent for its first
    1.5 s (no data whose MP_CAPABLE would cover the loss, no DATA_FIN), the client's third ACK
    is lost once; the server's SYN/ACK comes again and draws the MP_CAPABLE ACK again, so the
    connection stays MPTCP (and joins its second path) and the transfer is exact."""
    lost = []

    def drop_third_ack(net, client, server, made, conn):
        def middlebox(packet, from_a):
            p = pk.parse_packet(packet)
            if from_a and not lost and p.flags == pk.ACK and not p.payload_len and \
                    any(type(o) is opt.MpCapable for o in options_of(packet)):
                lost.append(packet)
                return None
            return packet
        made[(C0, S0)].middlebox = middlebox
        client.paused = True

        def resume():
            client.paused = False
            client.run(1.5)                          # it reads and closes its half now
            net.wake(client)
        net.schedule(1.5, resume)
    run = transfer(PATHS, up=0, down=MB, before_run=drop_third_ack)
    run.check_exact(0, MB)
    c, s = run.up
    assert len(lost) == 1
    assert run.conn.fallback is None and s.conn.fallback is None
    assert not [e for app in (run.client, run.server) for e in app.events
                if type(e) is ev.FellBackToTcp]
    assert len(run.conn.all_subflows) == 2 and c.terminated == s.terminated == "closed"


def test_a_reinjection_queued_before_the_fallback_never_goes_out(backend):
    """The other half of reinjection after fallback: the only subflow goes stale while the path is
    down (its data queued for reinjection), then the peer's MP_FAIL turns the connection into
    plain TCP. What was queued must not go out after the fallback: when the path answers
    again only TCP resends, at the original positions, and the server's application gets
    exactly what was sent (before, 860 bytes went out again at new positions)."""
    client = Endpoint([C0], Config(checksums=True, time_wait=0.1))
    server = Endpoint([S0], Config(checksums=True, time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"hello")
    pump(client, server, until=0.3)
    server_conn = next(iter(server.connections.values()))
    assert conn.fully_established
    data = bytes(range(256)) * 20                   # four segments, all sent at once
    conn.send(data)
    sf = conn.subflows[0]
    pump(client, server, 0.3, until=1.5, mutate=lambda packet, sender: None)   # path down
    assert sf.stale and conn.reinject                 # queued while MPTCP
    end = sf.snd_nxt
    peer = server_conn.subflows[0]
    mp_fail = pk.build_packet(S0, C0, PORT, sf.lport, (peer.iss + peer.snd_nxt) & 0xFFFFFFFF,
                              (sf.iss + sf.snd_una) & 0xFFFFFFFF, pk.ACK, 0xFFFF,
                              options=opt.encode_tcp_options(
                                  [opt.Dss(server_conn.queue.data_ack, True),
                                   opt.MpFail(conn.allocator.data_ack)]))
    client.receive_packet(mp_fail, 1.5)               # the peer's MP_FAIL (checksums are on)
    assert conn.fallback and not conn.reinject
    seen = pump(client, server, 1.5, until=10.0)
    assert not [p for s, p in seen if s is client and pk.parse_packet(p).payload_len
                and (pk.parse_packet(p).seq - sf.iss) & 0xFFFFFFFF >= end]
    assert conn.reinjected_bytes == 0
    got = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    assert got == b"hello" + data


def test_a_half_closed_fallen_back_connection_still_receives_everything(backend):
    """After fallback our FIN is the DATA_FIN, a half-close: the peer may go on sending for
    longer than the FIN-WAIT-2 timeout (``time_wait``). The subflow used to close at that
    timeout and reset the peer mid-stream (1,043,700 of 1,048,576 bytes, no EndOfStream)."""
    def strip(net, client, server, made, conn):
        made[(C0, S0)].middlebox = strip_mptcp(["syn"])
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.010)}, up=1000, down=MB,
                   client_addresses=(C0,), time_wait=0.1, before_run=strip, settle=False)
    assert run.conn.fallback == "the SYN/ACK had no MP_CAPABLE"
    run.check_exact(1000, MB)


def test_data_without_mappings_makes_a_checksummed_connection_fall_back_on_both_ends(backend):
    """A middlebox strips MPTCP options from every data segment of a connection that
    negotiated DSS checksums. Before any checksum was verified, in-order data without a
    mapping on the only subflow is a fallback on the receiving end too (Linux's
    valid_csum_seen rule, RFC 8684 §3.7), so both ends go on as TCP and agree; it used to be
    refused for ever on that end."""
    def strip(net, client, server, made, conn):
        made[(C0, S0)].middlebox = strip_mptcp(["data"])
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.010)}, up=200_000, down=100_000,
                   client_addresses=(C0,), checksums=True, before_run=strip, settle=False)
    c, s = run.up
    assert run.conn.fallback and s.conn.fallback
    run.check_exact(200_000, 100_000)

"""Handshakes, refusals and the user's calls, driving two endpoints packet by packet:
the SYN laid out as Linux lays it out, MP_CAPABLE's keys and third ACK, MP_JOIN HMACs
checked both ways (a forged one gets a RST with MP_TCPRST, as the kernel sends), RSTs for
what no subflow owns (RFC 9293 §3.10.7.1), damaged packets counted and dropped, abort()."""

from __future__ import annotations

import pytest

from mptcp_fast.wire import crypto, options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.errors import StateError

from enginenet import drain, options_of, pump

C0, C1, S0 = "198.18.0.1", "198.18.1.1", "198.18.0.2"
PORT = 5000


@pytest.fixture
def pair(backend):
    client = Endpoint([C0, C1], Config(time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    return client, server


def test_mp_capable_handshake_on_the_wire(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    syn = client.packets_to_send(0.0)
    assert len(syn) == 1
    p = pk.parse_packet(syn[0])
    assert p.flags == pk.SYN and p.window == 65535
    area = bytes(p.options(syn[0])).hex()
    # Linux's SYN: MSS 1460, SACK-permitted + timestamps, NOP + window scale, MP_CAPABLE v1 H
    assert area[:12] == "020405b40402" and area[12:16] == "080a" and area[-16:] == "010303071e040101"
    server.receive_packet(syn[0], 0.0)
    synack = server.packets_to_send(0.0)[0]
    mpc = [o for o in options_of(synack) if type(o) is opt.MpCapable][0]
    assert mpc.version == 1 and mpc.flags == opt.MPC_HMAC and mpc.receiver_key is None
    server_conn = next(iter(server.connections.values()))
    assert mpc.sender_key == server_conn.local_key
    assert crypto.key_token(server_conn.local_key) == server_conn.local_token
    client.receive_packet(synack, 0.01)
    third = client.packets_to_send(0.01)[0]
    mpc3 = [o for o in options_of(third) if type(o) is opt.MpCapable][0]
    assert (mpc3.sender_key, mpc3.receiver_key) == (conn.local_key, server_conn.local_key)
    assert pk.parse_packet(third).flags == pk.ACK
    server.receive_packet(third, 0.01)
    assert server_conn.established and server_conn.remote_key == conn.local_key
    got = drain(server)
    assert [type(e) for e in got] == [ev.ConnectionEstablished, ev.SubflowEstablished]
    assert got[0].remote == (C0, pk.parse_packet(syn[0]).sport) and got[0].checksums is False
    # the first data segment carries MP_CAPABLE with the data length (RFC 8684 §3.1)
    conn.send(b"hello")
    first = client.packets_to_send(0.02)
    data = [o for o in options_of(first[0]) if type(o) is opt.MpCapable]
    assert data and data[0].data_len == 5 and not any(type(o) is opt.Dss for o in options_of(first[0]))
    server.receive_packet(first[0], 0.02)
    assert [e.data for e in drain(server) if type(e) is ev.DataReceived] == [b"hello"]
    # the server's DATA_ACK makes the client fully established; then it joins from C1
    pump(client, server, 0.03)
    assert conn.fully_established
    assert len(conn.all_subflows) == 2 and conn.all_subflows[1].local == bytes([198, 18, 1, 1])


def test_the_idsns_and_data_acks_follow_the_keys(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    pump(client, server)
    conn.send(b"x" * 3000)
    seen = pump(client, server, 0.1)
    keys = crypto.KeyContext(conn.local_key, conn.remote_key)
    dss = [o for s, p in seen if s is client for o in options_of(p) if type(o) is opt.Dss and o.dsn]
    mpc = [o for s, p in seen if s is client for o in options_of(p)
           if type(o) is opt.MpCapable and o.data_len]
    # the first segment's MP_CAPABLE maps DSN IDSN + 1 implicitly (RFC 8684 §3.1), the next
    # segments carry DSS mappings from there on
    assert mpc[0].data_len == 1420
    assert (dss[0].dsn, dss[0].subflow_seq, dss[0].data_len) == (keys.local_idsn + 1 + 1420,
                                                                 1421, 3000 - 1420)
    acks = [o.data_ack for s, p in seen if s is server for o in options_of(p)
            if type(o) is opt.Dss and o.data_ack is not None]
    assert acks[-1] == keys.local_idsn + 1 + 3000


def test_join_with_a_forged_third_ack_hmac_is_reset(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")

    def forge(packet, sender):
        found = options_of(packet)
        if sender is client and any(type(o) is opt.MpJoinAck for o in found):
            p = pk.parse_packet(packet)
            area = opt.encode_tcp_options([opt.MpJoinAck(bytes(20))])
            return pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport,
                                   p.dport, p.seq, p.ack, p.flags, p.window, options=area)
        return packet
    seen = pump(client, server, mutate=forge)
    resets = [p for s, p in seen if s is server and pk.parse_packet(p).flags & pk.RST]
    assert len(resets) == 1
    assert [o for o in options_of(resets[0]) if type(o) is opt.MpTcpRst] == \
        [opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR)]
    server_conn = next(iter(server.connections.values()))
    assert server_conn.bad_join == 1 and len(server_conn.subflows) == 1
    # the connection itself is unharmed
    conn.send(b"still here")
    pump(client, server, 1.0)
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"xstill here"


def test_join_with_a_forged_synack_hmac_is_reset_by_the_client(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")

    def forge(packet, sender):
        found = options_of(packet)
        join = [o for o in found if type(o) is opt.MpJoinSynAck]
        if sender is server and join:
            p = pk.parse_packet(packet)
            area = bytes(p.options(packet)).replace(join[0].hmac, bytes(8))
            return pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport,
                                   p.dport, p.seq, p.ack, p.flags, p.window, options=area)
        return packet
    seen = pump(client, server, mutate=forge)
    resets = [p for s, p in seen if s is client and pk.parse_packet(p).flags & pk.RST]
    assert resets and opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR) in options_of(resets[0])
    assert conn.bad_join == 1
    closed = [e for e in drain(client) if type(e) is ev.SubflowClosed]
    assert [(e.subflow_id, e.reason) for e in closed] == [(1, "reset")]


def test_unknown_token_gets_rst_with_mp_tcprst(pair):
    _, server = pair
    syn = pk.build_packet(C0, S0, 40000, PORT, 1000, 0, pk.SYN, 65535,
                          options=opt.encode_tcp_options([opt.MpJoinSyn(1, 0xDEADBEEF, 0x01020304)]))
    server.receive_packet(syn, 0.0)
    (rst,) = server.packets_to_send(0.0)
    p = pk.parse_packet(rst)
    assert p.flags == pk.RST | pk.ACK and p.ack == 1001
    assert bytes(p.options(rst)).hex() == "1e048001"            # what the kernel sends
    assert server.stats["refused_join"] == 1


@pytest.mark.parametrize("case", ["closed port", "ack to nobody", "join to nobody"])
def test_what_no_subflow_owns_is_reset(pair, case):
    _, server = pair
    if case == "closed port":
        packet = pk.build_packet(C0, S0, 40000, 6000, 7, 0, pk.SYN, 100,
                                 options=opt.encode_tcp_options([opt.MpCapable(1)]))
        expect = (0, 8, pk.RST | pk.ACK)
    elif case == "ack to nobody":
        packet = pk.build_packet(C0, S0, 40000, PORT, 7, 12345, pk.ACK, 100, payload=b"abc")
        expect = (12345, 0, pk.RST)
    else:                                               # an unknown token on a listening port
        packet = pk.build_packet(C0, S0, 40000, PORT, 7, 0, pk.SYN, 100, options=opt.encode_tcp_options(
            [opt.MpJoinSyn(1, 1234, 5)]))
        expect = (0, 8, pk.RST | pk.ACK)
    server.receive_packet(packet, 0.0)
    (rst,) = server.packets_to_send(0.0)
    p = pk.parse_packet(rst)
    assert (p.seq, p.ack, p.flags) == expect
    assert (p.src_address(rst), p.dst_address(rst), p.sport, p.dport) == \
        (bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1]), 6000 if case == "closed port" else PORT, 40000)
    assert server.connections == {}
    # and a RST is never answered
    server.receive_packet(pk.build_packet(C0, S0, 40000, PORT, 7, 0, pk.RST, 0), 0.0)
    assert server.packets_to_send(0.0) == []


@pytest.mark.parametrize("area", [[], [opt.MpCapable(0, 0x81, sender_key=5)],
                                  [opt.MpCapable(1, 0x00)], [opt.MpCapable(1, 0x41)]],
                         ids=["plain", "v0", "no H flag", "B flag"])
def test_a_syn_without_a_usable_mp_capable_is_served_as_tcp(pair, area):
    """As Linux answers such SYNs (docs/kernel-behaviour.md): plain TCP, no MPTCP option."""
    _, server = pair
    server.receive_packet(pk.build_packet(C0, S0, 40000, PORT, 7, 0, pk.SYN, 100,
                                          options=opt.encode_tcp_options(area)), 0.0)
    (synack,) = server.packets_to_send(0.0)
    assert pk.parse_packet(synack).flags == pk.SYN | pk.ACK
    assert not any(isinstance(o, opt._MptcpOption) for o in options_of(synack))
    (conn,) = server.connections.values()
    assert conn.fallback == "the SYN had no usable MP_CAPABLE"


def test_damaged_packets_are_counted_and_dropped(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    pump(client, server)
    conn.send(b"payload")
    (data,) = client.packets_to_send(0.1)
    flipped = bytearray(data)
    flipped[-1] ^= 0x01                                   # a payload bit: the TCP checksum fails
    server.receive_packet(bytes(flipped), 0.1)
    server.receive_packet(data[:30], 0.1)                 # cut inside the TCP header
    server.receive_packet(b"\x45" + bytes(50), 0.1)       # not a consistent packet
    assert server.stats["dropped_checksum"] == 1
    assert server.stats["dropped_truncated"] + server.stats["dropped_not_tcp"] == 2
    assert [e for e in drain(server) if type(e) is ev.DataReceived] == []
    server.receive_packet(data, 0.1)
    assert [e.data for e in drain(server) if type(e) is ev.DataReceived] == [b"payload"]


def test_send_is_bounded_and_refused_after_close(backend):
    client = Endpoint([C0], Config(send_buffer=4096))
    server = Endpoint([S0])
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    assert conn.send(b"a" * 10_000) == 4096                    # the rest does not fit
    assert conn.send_space == 0 and conn.send(b"b") == 0
    conn.close()
    with pytest.raises(StateError):
        conn.send(b"late")
    with pytest.raises(TypeError):
        Endpoint([C0], config="fast")
    with pytest.raises(ValueError):
        Config(congestion_control="bbr")
    with pytest.raises(ValueError):
        Config(receive_window=10)


def test_send_keeps_whole_bytes_and_copies_what_the_caller_may_change(pair):
    """A bytes object that fits is queued as it is, and a flat view of bytes as a view of it
    (no copy: the segments' payloads are views of them, and the caller's own view may be
    released); a bytearray, a view of one and a strided view are copied, so that changing
    the buffer after send() changes nothing the peer receives; end_stream closes after data
    taken whole."""
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    pump(client, server, 0.0)
    drain(server)
    whole = bytes(range(256)) * 16
    mutable = bytearray(b"x" * 1000)
    source = bytes(range(100, 200))
    caller_view = memoryview(source)[10:60]
    assert conn.send(whole) == len(whole)
    assert conn.send(mutable) == 1000
    assert conn.send(memoryview(mutable)[:500]) == 500
    mutable[:] = b"y" * 1000
    assert conn.send(caller_view) == 50
    caller_view.release()
    assert conn.send(memoryview(source)[::2]) == 50
    assert conn.send(memoryview(b"tail"), end_stream=True) == 4 and conn.local_closed
    queued = list(conn.unsent._pieces)
    assert queued[0].obj is whole
    assert queued[1].obj is not mutable and queued[2].obj is not mutable
    assert queued[3].obj is source and bytes(queued[3]) == source[10:60]
    assert queued[4].obj is not source
    pump(client, server, 0.1)
    got = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    assert got == whole + b"x" * 1500 + source[10:60] + source[::2] + b"tail"


def test_the_same_syn_after_the_connection_closed_opens_a_new_one(backend):
    """A closed subflow leaves the endpoint's table and its shortcut to the last subflows
    with it: the very SYN that opened a connection, arriving again once that connection is
    gone on the server, reaches the listener and is answered with a SYN/ACK (the 4-tuple is
    free again), not taken by the old subflow."""
    client = Endpoint([C0], Config(time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    syn = client.packets_to_send(0.0)[0]
    server.receive_packet(syn, 0.0)
    pump(client, server, 0.0)
    server_conn = next(iter(server.connections.values()))
    conn.send(b"x", end_stream=True)
    pump(client, server, 0.1)
    assert ev.EndOfStream in [type(e) for e in drain(server)]
    server_conn.close()
    pump(client, server, 0.2, until=2.0)
    assert server.connections == {}
    server.receive_packet(syn, 3.0)
    answer = server.packets_to_send(3.0)
    assert [pk.parse_packet(p).flags for p in answer] == [pk.SYN | pk.ACK]
    assert len(server.connections) == 1


def test_abort_sends_fastclose_and_ends_both_sides(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    server_conn = next(iter(server.connections.values()))
    drain(client), drain(server)
    conn.abort(now=1.0)
    seen = pump(client, server, 1.0)
    resets = [p for s, p in seen if s is client]
    assert len(resets) == 2 and all(pk.parse_packet(p).flags & pk.RST for p in resets)
    assert all(opt.MpFastclose(server_conn.local_key) in options_of(p) for p in resets)
    assert [e.reason for e in drain(client) if type(e) is ev.ConnectionTerminated] == ["aborted"]
    assert [e.reason for e in drain(server) if type(e) is ev.ConnectionTerminated] == ["fastclose"]
    assert client.connections == {} and server.connections == {}


def _has(packet, cls):
    return any(type(o) is cls for o in options_of(packet))


def _dropper(predicate, times=1):
    """mutate() for pump: drop the first ``times`` packets for which predicate(packet, sender)."""
    left = [times]

    def mutate(packet, sender):
        if left[0] and predicate(packet, sender):
            left[0] -= 1
            return None
        return packet
    return mutate


def test_a_lost_syn_is_sent_again_after_the_initial_rto(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    seen = pump(client, server, until=2.0,
                mutate=_dropper(lambda p, s: pk.parse_packet(p).flags == pk.SYN))
    syns = [p for s, p in seen if s is client and pk.parse_packet(p).flags == pk.SYN]
    assert len(syns) == 2 and conn.established                       # RFC 6298 §2.1: 1 s
    assert conn.subflows[0].rtt.srtt is None or conn.subflows[0].syn_sent_count == 2


def test_a_lost_third_ack_is_covered_by_the_mp_capable_data_segment(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"first data")
    pump(client, server, mutate=_dropper(
        lambda p, s: s is client and _has(p, opt.MpCapable) and pk.parse_packet(p).flags == pk.ACK
        and not pk.parse_packet(p).payload_len))
    server_conn = next(iter(server.connections.values()))
    assert server_conn.established and server_conn.remote_key == conn.local_key
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"first data"


def test_a_lost_fourth_ack_is_asked_for_again(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")

    def fourth(packet, sender):
        p = pk.parse_packet(packet)
        return sender is server and p.sport == PORT and p.flags == pk.ACK and \
            p.dport == conn.all_subflows[-1].lport and len(conn.all_subflows) == 2
    pump(client, server, until=3.0, mutate=_dropper(fourth))
    joined = conn.all_subflows[1]
    assert joined.join.established and joined.state_name == "ESTABLISHED"


def test_a_closed_window_is_probed_when_the_update_is_lost(backend):
    client = Endpoint([C0], Config(time_wait=0.1))
    server = Endpoint([S0], Config(receive_window=4096, time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"z" * 20_000)
    pump(client, server, until=1.0)                  # nobody reads: the window fills and closes
    server_conn = next(iter(server.connections.values()))
    assert server_conn.queue.queued_bytes == 4096
    got = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    # the window update that reading sends is lost; only a probe can reopen the flow
    pump(client, server, 1.0, until=1.1, mutate=_dropper(lambda p, s: s is server, times=10))
    total = got
    now = 1.1
    for _ in range(40):
        pump(client, server, now, until=now + 1.0)
        total += b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
        now += 1.0
        if len(total) == 20_000:
            break
    assert total == b"z" * 20_000
    assert conn.window_probes >= 1


def test_a_data_ack_beyond_what_was_sent_is_ignored_with_its_window(pair):
    """RFC 8684 §3.3.2 / Linux's ack_update_msk: a DATA_ACK for data never sent changes
    nothing, and the window it carries is not believed either."""
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x" * 100)
    pump(client, server)
    sf = conn.subflows[0]
    acked, edge = conn.allocator.data_ack, conn.peer_edge
    server_sf = next(iter(server.connections.values())).subflows[0]
    forged = pk.build_packet(S0, C0, PORT, sf.lport, (server_sf.iss + server_sf.snd_nxt) & 0xFFFFFFFF,
                             (sf.iss + sf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 0xFFFF,
                             options=opt.encode_tcp_options([opt.Dss((acked + 10**9) % 2**64)]))
    client.receive_packet(forged, 1.0)
    assert (conn.allocator.data_ack, conn.peer_edge) == (acked, edge)


def test_a_syn_ack_offers_only_what_the_syn_did(pair):
    _, server = pair
    syn = pk.build_packet(C0, S0, 40000, PORT, 1000, 0, pk.SYN, 65535,
                          options=opt.encode_tcp_options([opt.Mss(1400), opt.MpCapable(1)]))
    server.receive_packet(syn, 0.0)
    (synack,) = server.packets_to_send(0.0)
    kinds = [type(o) for o in options_of(synack)]
    assert opt.Mss in kinds and opt.MpCapable in kinds
    assert not {opt.Timestamps, opt.WindowScale, opt.SackPermitted} & set(kinds)
    assert len(bytes(pk.parse_packet(synack).options(synack))) % 4 == 0


def _joined_pair(pair):
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    server_conn = next(iter(server.connections.values()))
    assert len(conn.subflows) == len(server_conn.subflows) == 2
    drain(client), drain(server)
    return client, server, conn, server_conn


def test_mp_prio_makes_the_peer_use_a_subflow_as_backup(pair):
    client, server, conn, server_conn = _joined_pair(pair)
    conn.set_backup(1, True)
    seen = pump(client, server, 1.0)
    prio = [o for s, p in seen if s is client for o in options_of(p) if type(o) is opt.MpPrio]
    assert prio == [opt.MpPrio(True)]
    assert server_conn.subflows[1].backup and conn.subflows[1].backup
    assert [e for e in drain(server) if type(e) is ev.SubflowPriority] == \
        [ev.SubflowPriority(server_conn.id, 1, True, True)]
    # the server's data now avoids the backup subflow
    server_conn.send(b"y" * 50_000)
    pump(client, server, 2.0)
    assert server_conn.subflows[1].bytes_sent == 0 and server_conn.subflows[0].bytes_sent == 50_000
    conn.set_backup(1, False)
    pump(client, server, 3.0)
    assert not server_conn.subflows[1].backup
    with pytest.raises(StateError):
        conn.set_backup(7, True)


def test_remove_addr_closes_the_subflows_to_that_address(pair):
    client, server, conn, server_conn = _joined_pair(pair)
    client.remove_address(C1, now=1.0)
    seen = pump(client, server, 1.0)
    removes = [o for s, p in seen if s is client for o in options_of(p) if type(o) is opt.RemoveAddr]
    assert removes == [opt.RemoveAddr([conn.all_subflows[1].local_address_id])]
    assert len(server_conn.subflows) == 1 and len(conn.subflows) == 1
    conn.send(b"after")
    pump(client, server, 2.0)
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"after"


@pytest.mark.parametrize("address", ["198.18.0.9", bytes([198, 18, 0, 9])])
def test_an_address_not_the_endpoints_is_named_as_text(backend, address):
    """The error names the address as text however it was given (packed bytes included)."""
    endpoint = Endpoint(["198.18.0.1"], Config())
    with pytest.raises(ValueError) as raised:
        endpoint.remove_address(address)
    assert str(raised.value) == "198.18.0.9 is not an address of this endpoint"


def test_forged_remove_addr_and_fastclose_are_refused(pair):
    """Off-path forgeries fail TCP's sequence check; an in-window MP_FASTCLOSE with the wrong
    key is counted and ignored (RFC 8684 §3.5, RFC 7430 §3)."""
    client, server, conn, server_conn = _joined_pair(pair)
    sf = server_conn.subflows[0]
    csf = conn.subflows[0]

    def forged(options, seq_offset, flags=pk.ACK):
        return pk.build_packet(C0, S0, csf.lport, PORT,
                               (csf.iss + csf.snd_nxt + seq_offset) & 0xFFFFFFFF,
                               (sf.iss + sf.snd_nxt) & 0xFFFFFFFF, flags, 1000,
                               options=opt.encode_tcp_options(options))
    server.receive_packet(forged([opt.RemoveAddr([0, 2])], 1 << 30), 1.0)    # off-path
    server.receive_packet(forged([opt.MpFastclose(12345)], 0), 1.0)         # wrong key
    # a RST in the window but not at the exact next sequence number only draws a challenge
    # ACK (RFC 5961 §3.2), whatever it carries
    server.receive_packet(forged([opt.MpFastclose(server_conn.local_key)], 1, pk.RST | pk.ACK), 1.0)
    assert len(server_conn.subflows) == 2 and not server_conn.terminated
    assert server_conn.bad_fastclose == 1
    (challenge,) = server.packets_to_send(1.0)
    assert pk.parse_packet(challenge).flags == pk.ACK
    # the right key, in window, ends it at once
    server.receive_packet(forged([opt.MpFastclose(server_conn.local_key)], 0), 1.1)
    assert server_conn.terminated == "fastclose"


def test_keepalives_find_a_dead_peer_and_keep_a_live_one(backend):
    client = Endpoint([C0], Config(keepalive=10.0, keepalive_interval=1.0, keepalive_probes=3,
                                   time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"hello")
    pump(client, server)
    drain(client)
    # a live peer answers the probes: the idle connection stays up
    seen = pump(client, server, 1.0, until=40.0)
    probes = [p for s, p in seen if s is client and not pk.parse_packet(p).payload_len]
    assert len(probes) >= 3 and not conn.terminated and conn.subflows[0].keepalive_probes == 0
    # the peer vanishes (its packets go nowhere): three probes, then the subflow is given up
    seen = pump(client, server, 41.0, until=70.0, mutate=lambda p, s: None)
    assert conn.terminated == "timeout"
    closed = [e for e in drain(client) if type(e) is ev.SubflowClosed]
    assert [(e.subflow_id, e.reason) for e in closed] == [(0, "timeout")]


def test_a_lost_third_ack_is_sent_again_when_the_synack_comes_again(pair):
    """The client has nothing to send, its third ACK is lost, and the
    server resends its SYN/ACK. The client (established) must answer with the MP_CAPABLE ACK
    again (RFC 8684 §3.1; Linux repeats it) rather than a plain duplicate ACK, which the server
    would read as "the third ACK had no MP_CAPABLE" and fall back."""
    client, server = pair
    conn = client.connect((S0, PORT), 0.0)
    seen = pump(client, server, until=3.0, mutate=_dropper(
        lambda p, s: s is client and pk.parse_packet(p).flags == pk.ACK and _has(p, opt.MpCapable)))
    synacks = [p for s, p in seen if s is server and pk.parse_packet(p).flags == pk.SYN | pk.ACK]
    assert len(synacks) == 2                                  # the server's RTO resent it
    mpc_acks = [p for s, p in seen if s is client and pk.parse_packet(p).flags == pk.ACK
                and _has(p, opt.MpCapable)]
    assert len(mpc_acks) == 2                                 # the lost third ACK, and again
    server_conn = next(iter(server.connections.values()))
    assert server_conn.fallback is None and conn.fallback is None
    assert server_conn.established and server_conn.remote_key == conn.local_key
    server_conn.send(b"server first", end_stream=True)
    pump(client, server, 3.0, until=4.0)
    got = drain(client)
    assert b"".join(e.data for e in got if type(e) is ev.DataReceived) == b"server first"
    assert ev.EndOfStream in {type(e) for e in got} and conn.fallback is None

"""Engine hardening: one packet from an attacker who knows only a subflow's 4-tuple,
or from a peer that lies, must not stall, kill or corrupt a connection, nor grow its state.

Each test reproduces one defect that was found, on both backends. The forgeries are given the
best odds: unless the test is about the ACK check itself, the forged segment carries an
acceptable sequence number *and* ACK (RFC 5961), as if the attacker had guessed both; what is
tested is the MPTCP rule behind it (docs/hardening.md)."""

from __future__ import annotations

import ipaddress
import random
import tracemalloc

import pytest

from enginenet import C0, C1, PORT, S0, drain, pump
from mptcp_fast.wire import options as opt
from mptcp_fast.wire import packet as pk
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.engine import events as ev
from mptcp_fast.engine.connection import ANOMALIES_KEPT, MAX_MAPPINGS_AHEAD

MASK32, MASK64 = 0xFFFFFFFF, (1 << 64) - 1
V6_CLIENT, V6_SERVER = "2001:2::1", "2001:2::2"


def _pair(checksums=False, client_addresses=(C0,), server_addresses=(S0,), **config):
    cfg = Config(time_wait=0.1, checksums=checksums, **config)
    client = Endpoint(list(client_addresses), cfg)
    server = Endpoint(list(server_addresses), cfg)
    server.listen(PORT)
    conn = client.connect((server_addresses[0], PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    drain(client), drain(server)
    return client, server, conn, next(iter(server.connections.values()))


def _forge(sf, ssf, options=(), payload=b"", seq_offset=0, ack=None, flags=pk.ACK):
    """A segment of the client's subflow ``sf`` to the server's ``ssf``: at rcv_nxt +
    ``seq_offset``, with an acceptable ACK unless ``ack`` (a wire value) is given."""
    wire_ack = (ssf.iss + ssf.snd_nxt) & MASK32 if ack is None else ack
    return pk.build_packet(sf.local, sf.remote, sf.lport, sf.rport,
                           (sf.iss + sf.snd_nxt + seq_offset) & MASK32, wire_ack, flags, 1000,
                           options=opt.encode_tcp_options(list(options)), payload=payload)


def pk_address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def p_address(packed: bytes) -> str:
    return str(ipaddress.ip_address(bytes(packed)))


def _received(events) -> bytes:
    return b"".join(e.data for e in events if type(e) is ev.DataReceived)


def _transfer_after(client, server, conn, data: bytes, now=1.0):
    """Send ``data`` and close; the server's events until both ends are quiet."""
    conn.send(data, end_stream=True)
    pump(client, server, now, until=now + 20.0)
    return drain(server)


def test_a_forged_mapping_on_a_pure_ack_is_not_stored(backend):
    """A pure ACK whose DSS maps subflow bytes ahead of rcv_nxt to a random DSN
    was stored, and the genuine mapping of those bytes then "contradicted" it: the transfer
    stalled. A mapping without data is ignored (as Linux does)."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    rng = random.Random(1)
    for ahead in (0, 1, 1400, 30_000):
        dsn = (server_conn.queue.data_ack + rng.randrange(0, 60_000)) & MASK64
        server.receive_packet(_forge(sf, ssf, [opt.Dss(None, None, dsn, True,
                                                        (sf.snd_nxt + ahead) & MASK32, 1400)]), 0.9)
    assert len(server_conn._side(ssf)) <= 1 and server_conn.refused_mappings == 4
    data = bytes(range(256)) * 400
    events = _transfer_after(client, server, conn, data)
    assert _received(events) == data and any(type(e) is ev.EndOfStream for e in events)


def test_a_forged_data_fin_leaves_no_trace(backend):
    """A DATA_FIN at a random 64-bit DSN was recorded before the queue refused it;
    the genuine DATA_FIN was then refused as "moved" and the stream never ended."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    rng = random.Random(2)
    for _ in range(20):
        fin = opt.Dss(None, None, rng.getrandbits(64), True, 0, 1, None, True)
        server.receive_packet(_forge(sf, ssf, [fin]), 0.9)
    # one inside the window but below data already received: refused too
    below = opt.Dss(None, None, (server_conn.queue.data_ack - 1) & MASK64, True, 0, 1, None, True)
    server.receive_packet(_forge(sf, ssf, [below]), 0.9)
    assert server_conn.refused_data_fins == 21 and not server_conn.queue.eof
    assert server_conn.anomalies == []
    data = b"all of it" * 1000
    events = _transfer_after(client, server, conn, data)
    assert _received(events) == data
    assert [type(e) for e in events].count(ev.EndOfStream) == 1
    assert server_conn.queue.eof and server_conn.refused_data_fins == 21


# a receiver that reads only once the transfer is over needs a window that holds all of it
# (the window grows only as the application reads)
WHOLE = 1 << 20


def _two_subflows():
    cfg = Config(time_wait=0.1, initial_receive_window=WHOLE)
    client = Endpoint([C0, C1], cfg)
    server = Endpoint([S0], cfg)
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server, until=1.0)
    drain(client), drain(server)
    server_conn = next(iter(server.connections.values()))
    assert len(conn.subflows) == 2 and len(server_conn.subflows) == 2
    return client, server, conn, server_conn


def test_a_forged_remove_addr_is_refuted_by_the_probe(backend):
    """One REMOVE_ADDR listing ids 0-3 reset every subflow of a working connection.
    RFC 8684 §3.4.2: the path is probed first; a path that answers is kept."""
    client, server, conn, server_conn = _two_subflows()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    server.receive_packet(_forge(sf, ssf, [opt.RemoveAddr([0, 1, 2, 3])]), 1.0)
    data = bytes(200_000)
    events = _transfer_after(client, server, conn, data, now=1.0)
    assert _received(events) == data
    assert not any(type(e) is ev.SubflowClosed and e.reason == "address removed"
                   for e in events)
    assert server_conn.removal_refuted == 2
    assert len(server_conn.all_subflows) == 2
    assert all(s.removal_at is None for s in server_conn.all_subflows)


def test_bytes_below_the_data_fin_are_acknowledged_once_the_stream_is_whole(backend):
    """Once the client's DATA_FIN is in order, a subflow that carries again bytes the
    connection already has (what another subflow delivered, retransmitted) gets them
    acknowledged at the subflow level and dropped as duplicates. They used to be refused, so
    the peer retransmitted them for ever: Linux servers behind the proxy kept hundreds of
    subflows in LAST-ACK and CLOSING after a run of 2,000 connections."""
    client, server, conn, server_conn = _two_subflows()
    data = bytes(range(256)) * 40
    assert _received(_transfer_after(client, server, conn, data)) == data
    queue = server_conn.queue
    assert queue.eof
    for sf in conn.subflows:
        (ssf,) = [s for s in server_conn.subflows if s.rport == sf.lport]
        before = ssf.rcv_nxt, queue.duplicate_bytes, queue.refused_bytes
        last = (queue.data_ack - 1 - 1000) & MASK64        # the last 1,000 bytes, again
        mapping = opt.Dss(None, None, last, True, sf.snd_nxt, 1000, None, False)
        server.receive_packet(_forge(sf, ssf, [mapping], payload=data[-1000:]), 22.0)
        assert (ssf.rcv_nxt, queue.duplicate_bytes, queue.refused_bytes) == \
            (before[0] + 1000, before[1] + 1000, before[2])
        sf.snd_nxt += 1000                                 # (what the forged segment took)
    assert _received(drain(server)) == b""


def test_a_removed_address_that_stays_silent_is_torn_down(backend):
    """The genuine case: after REMOVE_ADDR the path to that address answers nothing (here its
    packets are dropped); its subflow is reset after the probes, the data goes on the other."""
    client, server, conn, server_conn = _two_subflows()
    second = next(s for s in server_conn.subflows if s.remote == pk_address(C1))
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    server.receive_packet(_forge(sf, ssf, [opt.RemoveAddr([second.remote_address_id])]), 1.0)

    def blackhole(packet, sender):
        p = pk.parse_packet(packet)
        return None if C1 in (p_address(p.src_address(packet)), p_address(p.dst_address(packet))) \
            else packet

    pump(client, server, 1.0, until=3.0, mutate=blackhole)
    events = drain(server)
    closed = [e for e in events if type(e) is ev.SubflowClosed]
    assert [e.reason for e in closed] == ["address removed"]
    assert second.remote_address_id not in server_conn.pm.remote_addresses
    conn.send(b"on the other path", end_stream=True)
    pump(client, server, 3.0, until=10.0, mutate=blackhole)
    assert _received(drain(server)) == b"on the other path"


def test_forged_data_without_dss_and_a_bad_ack_is_dropped(backend):
    """One data segment without any DSS (random ACK) turned a one-subflow
    connection into plain TCP and its bytes into stream data. RFC 5961 §5: its ACK is not
    acceptable, so it is dropped (with a challenge ACK) and nothing of it is read."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    bad_ack = (ssf.iss + ssf.snd_nxt + (1 << 31)) & MASK32
    server.receive_packet(_forge(sf, ssf, payload=b"EVIL" * 100, ack=bad_ack), 0.9)
    assert len(server.packets_to_send(0.9)) == 1              # the challenge ACK
    assert server_conn.fallback is None and ssf.rcv_nxt == sf.snd_nxt
    # ahead of rcv_nxt with an acceptable ACK: not in order, so not a fallback either
    server.receive_packet(_forge(sf, ssf, payload=b"EVIL" * 100, seq_offset=1000), 0.9)
    assert server_conn.fallback is None
    data = b"genuine" * 3000
    events = _transfer_after(client, server, conn, data)
    assert _received(events) == data and server_conn.fallback is None


def test_a_pure_ack_with_an_old_ack_is_still_read(backend):
    """RFC 5961 §5.2's range reaches MAX.SND.WND behind SND.UNA: a reordered old ACK (here
    one byte behind) is acceptable and its DATA_ACK is read."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    old_ack = (ssf.iss + ssf.snd_una - 1) & MASK32
    server.receive_packet(_forge(sf, ssf, [opt.Dss(conn.queue.data_ack, True)], ack=old_ack),
                          0.9)
    assert server.packets_to_send(0.9) == []                  # no challenge ACK
    assert ssf.max_snd_wnd > 0


def test_checksummed_mappings_cost_nothing_until_their_bytes_arrive(backend):
    """Every checksummed mapping allocated two buffers of its declared length at
    once; 256 pure ACKs pinned ~32 MiB per subflow, and then genuine bytes were refused."""
    client, server, conn, server_conn = _pair(checksums=True)
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    tracemalloc.start()
    for i in range(300):
        m = opt.Dss(None, None, (server_conn.queue.data_ack + i) & MASK64, True,
                    (sf.snd_nxt + i * 7) & MASK32, 65_000, 0x1234)
        server.receive_packet(_forge(sf, ssf, [m]), 0.9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"checksummed mappings on pure ACKs: peak {peak:,} bytes traced")
    assert peak < 2_000_000 and server_conn.fb.hold.held_bytes() == 0    # was ~33 MB
    data = bytes(range(256)) * 100
    events = _transfer_after(client, server, conn, data)
    assert _received(events) == data


def test_each_held_byte_is_held_once(backend):
    """With data, the hold's memory follows the bytes that arrived, each byte once: a mapping
    that overlaps one held is refused (a mapping never changes, RFC 8684 §3.3.1), so 300
    overlapping 65,000-byte mappings with a byte each hold at most those 300 bytes (the first
    mapping takes them: the subflow keeps 256 out-of-order blocks), not 300 x 128 KiB."""
    client, server, conn, server_conn = _pair(checksums=True)
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    for i in range(300):
        m = opt.Dss(None, None, (server_conn.queue.data_ack + 100 + i * 200) & MASK64, True,
                    (sf.snd_nxt + 100 + i * 200) & MASK32, 65_000, 0x1234)
        server.receive_packet(_forge(sf, ssf, [m], payload=b"?", seq_offset=100 + i * 200), 0.9)
    assert server_conn.fb.hold.held_bytes() == 256 and server_conn.refused_mappings == 299


def test_the_anomaly_list_is_bounded_on_every_path(backend):
    """Conflicting mappings and moved DATA_FINs each added a record without bound.
    At most ANOMALIES_KEPT are kept; the rest are counted."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    conn.send(b"A" * 1000)
    pump(client, server, 1.0)
    n = ANOMALIES_KEPT + 300
    for i in range(n):                                         # each contradicts "A"'s mapping
        lie = opt.Dss(None, None, (conn.allocator.next_dsn + 5000 + i) & MASK64, True,
                      (sf.snd_nxt - 500) & MASK32, 1000)
        server.receive_packet(_forge(sf, ssf, [lie], payload=b"B" * 1000, seq_offset=-500), 2.0)
    # two records per segment: the conflict, then its new bytes having no mapping
    assert len(server_conn.anomalies) == ANOMALIES_KEPT
    assert server_conn.anomalies_dropped == 2 * n - ANOMALIES_KEPT
    assert server_conn.stats()["anomalies_dropped"] == 2 * n - ANOMALIES_KEPT
    assert ssf.rcv_nxt == sf.snd_nxt                           # none of "B" was taken


def test_mappings_far_beyond_the_window_are_not_stored(backend):
    """Mappings ~2**30 ahead were stored, each on its own DSN line, and each
    insertion moved the whole store."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    for i in range(3000):
        m = opt.Dss(None, None, (server_conn.queue.data_ack + (1 << 30) + i * 997) & MASK64,
                    True, (sf.snd_nxt + 10 * i) & MASK32, 10)
        server.receive_packet(_forge(sf, ssf, [m], payload=bytes(10), seq_offset=10 * i), 1.0)
    assert len(server_conn._side(ssf)) <= 1 and server_conn.refused_mappings == 3000


def test_the_store_holds_at_most_max_mappings_ahead(backend):
    """A peer (it knows everything) declares many one-byte mappings ahead on distinct DSN
    lines: the store stops at MAX_MAPPINGS_AHEAD, and the in-order mapping still gets in."""
    client, server, conn, server_conn = _pair(receive_window=1 << 22)
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    base = server_conn.queue.data_ack
    for i in range(1, MAX_MAPPINGS_AHEAD + 200):
        m = opt.Dss(None, None, (base + 2 * i) & MASK64, True, (sf.snd_nxt + 2 * i) & MASK32, 1)
        server.receive_packet(_forge(sf, ssf, [m], payload=b"z", seq_offset=2 * i), 1.0)
    assert len(server_conn._side(ssf)) == MAX_MAPPINGS_AHEAD
    in_order = opt.Dss(None, None, base, True, sf.snd_nxt & MASK32, 1)
    server.receive_packet(_forge(sf, ssf, [in_order], payload=b"a"), 1.0)
    assert ssf.rcv_nxt == sf.snd_nxt + 1                       # taken: the next one has room


@pytest.mark.parametrize("ssn", [0xFFFFFFF0, "half-ahead", "half-behind"])
def test_a_mapping_outside_the_subflow_never_raises(backend, ssn):
    """A relative subflow sequence number "behind" the subflow's start
    (0xFFFFFFF0 with rcv_nxt a few thousand) expanded to 2**64-16: the compiled engine raised
    OverflowError out of receive_packet, the pure one stored it and raised ValueError later;
    one ~2**31 away raised OverflowError when compiled. Now refused and counted, the same on
    both backends."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    conn.send(bytes(3000))
    pump(client, server, 1.0)
    drain(server)
    value = {"half-ahead": (sf.snd_nxt + (1 << 31) - 1) & MASK32,
             "half-behind": (sf.snd_nxt - (1 << 31)) & MASK32}.get(ssn, ssn)
    m = opt.Dss(None, None, server_conn.queue.data_ack, True, value, 1400)
    for _ in range(2):
        server.receive_packet(_forge(sf, ssf, [m], payload=bytes(1400)), 2.0)
    assert server_conn.refused_mappings == 2 and ssf.rcv_nxt == sf.snd_nxt
    events = _transfer_after(client, server, conn, b"next", now=2.0)
    assert _received(events) == b"next"


def test_an_announced_address_of_the_other_family_is_joined_from_one_of_its_family(backend):
    """On an IPv6 connection the peer announced an IPv4 address and the client
    joined it from its IPv6 address (the packet writer then read 16 bytes from a 4-byte
    address). A join starts from an address of the announced family, or not at all."""
    only_v6 = Endpoint([V6_CLIENT], Config(time_wait=0.1))
    both = Endpoint([V6_CLIENT, C0], Config(time_wait=0.1))
    for client, joins in ((only_v6, 0), (both, 1)):
        server = Endpoint([V6_SERVER, S0], Config(time_wait=0.1))
        server.listen(PORT)
        conn = client.connect((V6_SERVER, PORT), 0.0)
        conn.send(b"x")
        pump(client, server)
        server_conn = next(iter(server.connections.values()))
        server_conn.announce(S0)
        seen = pump(client, server, 1.0, until=3.0)
        syns = [pk.parse_packet(p) for s, p in seen if s is client
                and pk.parse_packet(p).flags == pk.SYN]
        assert len(syns) == joins
        for p in syns:                                      # IPv4 from an IPv4 address
            assert p.version == 4
        assert len(conn.subflows) == 1 + joins
        with pytest.raises(ValueError, match="one family"):
            conn.join(V6_CLIENT, (S0, PORT))


def _rewrite_mss(mss):
    def mutate(packet, sender):
        p = pk.parse_packet(packet)
        if p.flags != pk.SYN | pk.ACK:
            return packet
        options = [opt.Mss(mss) if type(o) is opt.Mss else o
                   for o in opt.parse_tcp_options(bytes(p.options(packet)))]
        return pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport, p.dport,
                               p.seq, p.ack, p.flags, p.window,
                               options=opt.encode_tcp_options(options), payload=b"")
    return mutate


@pytest.mark.parametrize("mss", [1, 64, 104])     # 104: the largest that crashed
def test_a_tiny_mss_with_offload_sends_whole_packets(backend, mss):
    """A SYN/ACK with MSS <= 104 made the offloading engine build a 65,552-byte
    packet (its IPv4 length wrapped) and crash. The peer's MSS is floored at 88 (Linux's
    TCP_MIN_MSS) and an offloaded segment fits one IP packet."""
    cfg = Config(time_wait=0.1, offload=True, initial_receive_window=WHOLE)
    client, server = Endpoint([C0], cfg), Endpoint([S0], cfg)
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    data = bytes(range(256)) * 1000
    conn.send(data, end_stream=True)
    seen = pump(client, server, until=20.0, mutate=_rewrite_mss(mss))
    assert conn.subflows[0].peer_mss == max(mss, 88)
    assert max(len(p) for s, p in seen) <= 0xFFFF
    for s, p in seen:                                       # every IP length is the truth
        parsed = pk.parse_packet(p)
        assert not parsed.truncated and parsed.payload_offset + parsed.payload_len == len(p)
    assert _received(drain(server)) == data


def test_close_reasons_are_one_documented_enum(backend):
    """ConnectionTerminated.reason took values ("address removed", "fin") that
    events.py did not list. Every reason is an ev.CloseReason member (a str: it compares
    equal to its value and prints as it), each documented in events.py."""
    client, server, conn, server_conn = _pair()
    conn.close()
    server_conn.close()
    pump(client, server, 1.0, until=5.0)
    for events, reason in ((drain(client), "closed"), (drain(server), "closed")):
        ends = [e for e in events if type(e) in (ev.ConnectionTerminated, ev.SubflowClosed)]
        assert ends and all(type(e.reason) is ev.CloseReason for e in ends)
        assert [str(e.reason) for e in ends if type(e) is ev.ConnectionTerminated] == [reason]
    assert conn.terminated is server_conn.terminated is ev.CloseReason.CLOSED   # not a str
    client, server, conn, server_conn = _pair()
    conn.abort(1.0)
    pump(client, server, 1.0, until=3.0)
    assert [e.reason for e in drain(client) if type(e) is ev.ConnectionTerminated] == ["aborted"]
    assert [e.reason for e in drain(server) if type(e) is ev.ConnectionTerminated] == \
        [ev.CloseReason.FASTCLOSE]


def test_an_infinite_mapping_far_from_the_stream_is_ignored(backend):
    """An infinite mapping (RFC 8684 §3.7) turns a one-subflow connection into plain TCP: only
    when its DSN lies where the stream is (the window, or behind it to the first DSN)."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    far = opt.Dss(None, None, (server_conn.queue.data_ack + (1 << 40)) & MASK64, True,
                  sf.snd_nxt & MASK32, 0)
    server.receive_packet(_forge(sf, ssf, [far], payload=b"?"), 1.0)
    assert server_conn.fallback is None and server_conn.ignored_options == 1
    near = opt.Dss(None, None, server_conn.queue.data_ack, True, sf.snd_nxt & MASK32, 0)
    server.receive_packet(_forge(sf, ssf, [near]), 1.0)
    assert server_conn.fallback == "an infinite mapping from the peer"


def test_challenge_acks_are_throttled(backend):
    """RFC 5961 §7: a flood of forged RSTs, SYNs and pure ACKs with a bad ACK draws at most one
    ACK per half second per subflow (Linux's tcp_oow_rate_limited), not one each; a segment
    with data that was not taken is still answered at once."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    bad_ack = (ssf.iss + ssf.snd_nxt + (1 << 31)) & MASK32
    answers = 0
    for i in range(300):
        now = 1.0 + i * 0.001                                  # 0.3 s of flood
        for forged in (_forge(sf, ssf, flags=pk.RST, seq_offset=100 + i),
                       _forge(sf, ssf, flags=pk.SYN, seq_offset=7),
                       _forge(sf, ssf, ack=bad_ack)):
            server.receive_packet(forged, now)
        answers += len(server.packets_to_send(now))
    assert answers == 1 and server_conn.subflows == [ssf]
    server.receive_packet(_forge(sf, ssf, payload=b"late", seq_offset=-4), 1.31)
    assert len(server.packets_to_send(1.31)) == 1             # data: answered at once

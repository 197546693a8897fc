"""Bytes from the network never raise out of the engine and never break a connection they could
not belong to. A live connection between two endpoints is fed random bytes,
packets with random options, every single-bit flip of its own valid packets (all caught by
the checksums) and bit flips with the checksums recomputed (a forger's packets); afterwards
it still carries data byte-exact, unless the forged packet carried its own 4-tuple.

The default run uses a few hundred examples; ``MPTCP_FAST_FUZZ_EXAMPLES`` and ``-m fuzz``
run the long campaign (tests/test_fuzz.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev

from enginenet import drain, pump
from strategies import mptcp_like_bytes

C0, C1, S0 = "198.18.0.1", "198.18.1.1", "198.18.0.2"
PORT = 5000
LONG = int(os.environ.get("MPTCP_FAST_FUZZ_EXAMPLES", "0"))
quick = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def live_pair():
    """An established connection with a second subflow, some data moved both ways, and the
    packets that moved it."""
    client = Endpoint([C0, C1], Config(time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"a" * 3000)
    seen = pump(client, server, 0.0)
    server_conn = next(iter(server.connections.values()))
    server_conn.send(b"b" * 2000)
    seen += pump(client, server, 1.0)
    assert len(conn.subflows) == 2
    drain(client), drain(server)
    return client, server, conn, server_conn, [p for _, p in seen]


_PAIR = None


def pair():
    """One live pair per test run for the read-only checks (rebuilt when a test changed it)."""
    global _PAIR
    if _PAIR is None:
        _PAIR = live_pair()
    return _PAIR


def still_works(client, server, conn, now=5.0) -> bool:
    """More data crosses byte-exact in both directions."""
    drain(client), drain(server)
    server_conn = next(iter(server.connections.values()), None)
    if server_conn is None or conn.terminated:
        return False
    conn.send(b"ping" * 100)
    server_conn.send(b"pong" * 100)
    pump(client, server, now, until=now + 3.0)
    up = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    down = b"".join(e.data for e in drain(client) if type(e) is ev.DataReceived)
    return up == b"ping" * 100 and down == b"pong" * 100


def tuple_of(packet):
    try:
        p = pk.parse_packet(packet)
    except Exception:   # noqa: BLE001 — anything unparseable belongs to no connection
        return None
    return p.src_address(packet), p.sport, p.dst_address(packet), p.dport


def test_every_single_bit_flip_of_valid_packets_is_dropped(backend):
    """A flipped bit anywhere in a valid packet fails a checksum (or the parse) and changes
    nothing; exhaustive over the first data segment, the join SYN and a pure ACK."""
    client, server, conn, _, packets = live_pair()
    chosen = []
    for packet in packets:
        p = pk.parse_packet(packet)
        if p.payload_len and not chosen:
            chosen.append(packet)
        elif p.flags == pk.SYN and opt.MpJoinSyn in {type(o) for o in opt.parse_tcp_options(bytes(p.options(packet)))}:
            chosen.append(packet)
        elif p.flags == pk.ACK and not p.payload_len and len(chosen) < 3:
            chosen.append(packet)
    before = dict(server.stats)
    flips = 0
    for packet in chosen[:3]:
        for bit in range(min(len(packet), 300) * 8):
            damaged = bytearray(packet)
            damaged[bit // 8] ^= 1 << (bit % 8)
            server.receive_packet(bytes(damaged), 2.0)
            flips += 1
    dropped = sum(v for k, v in server.stats.items() if k.startswith("dropped")) - \
        sum(v for k, v in before.items() if k.startswith("dropped"))
    assert dropped == flips
    assert server.packets_to_send(2.0) == []                     # nothing answered, no RST
    assert still_works(client, server, conn)


@quick
@given(data=st.binary(max_size=200))
def test_random_bytes_never_raise(data):
    client, server, conn, _, _ = pair()
    server.receive_packet(data, 3.0)
    server.packets_to_send(3.0)
    assert not conn.terminated


@quick
@given(area=mptcp_like_bytes, flags=st.integers(0, 255), seq=st.integers(0, 2**32 - 1),
       ack=st.integers(0, 2**32 - 1), payload=st.binary(max_size=64),
       own_tuple=st.booleans())
def test_packets_with_random_options_never_raise(area, flags, seq, ack, payload, own_tuple):
    """Well-formed IP/TCP around random option bytes (padded to a legal length), sent with
    the live subflow's 4-tuple or another one."""
    client, server, conn, _, _ = pair()
    area = bytes(area)[:40]
    area += b"\x00" * (-len(area) % 4)
    sf = conn.subflows[0]
    sport = sf.lport if own_tuple else 40001
    packet = pk.build_packet(C0, S0, sport, PORT, seq, ack, flags, 1000, options=area,
                             payload=payload)
    server.receive_packet(packet, 3.0)
    server.packets_to_send(3.0)


@quick
@given(index=st.integers(0, 10_000), bit=st.integers(0, 8 * 120 - 1))
def test_forged_flips_with_good_checksums(backend, index, bit):
    """A bit flipped in a valid packet and the checksums fixed up: never raises; when the flip
    moved the packet to another 4-tuple, the connection is untouched."""
    client, server, conn, _, packets = live_pair()
    packet = bytearray(packets[index % len(packets)])
    if bit // 8 >= len(packet):
        return
    packet[bit // 8] ^= 1 << (bit % 8)
    try:
        p = pk.parse_packet(bytes(packet))
        fixed = pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport, p.dport,
                                p.seq, p.ack, p.flags, p.window,
                                options=bytes(p.options(packet)), payload=bytes(p.payload(packet)),
                                urgent=p.urgent)
    except Exception:   # noqa: BLE001 — the flip broke the header itself: send it as it is
        fixed = bytes(packet)
    target = server if tuple_of(fixed) is None or tuple_of(fixed)[2] == bytes([198, 18, 0, 2]) \
        else client
    target.receive_packet(fixed, 2.0)
    target.packets_to_send(2.0)
    live = {(sf.remote, sf.rport, sf.local, sf.lport) for sf in conn.subflows} | \
        {(sf.local, sf.lport, sf.remote, sf.rport) for sf in conn.subflows}
    if tuple_of(fixed) not in live:
        assert still_works(client, server, conn)


@pytest.mark.fuzz
@settings(max_examples=max(LONG, 1000), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, 10_000), flips=st.lists(st.integers(0, 8 * 1500 - 1), max_size=8),
       fix=st.booleans())
def test_fuzz_engine_receive_packet(index, flips, fix):
    client, server, conn, _, packets = live_pair()
    packet = bytearray(packets[index % len(packets)])
    for bit in flips:
        if bit // 8 < len(packet):
            packet[bit // 8] ^= 1 << (bit % 8)
    data = bytes(packet)
    if fix:
        try:
            p = pk.parse_packet(data)
            data = pk.build_packet(p.src_address(data), p.dst_address(data), p.sport, p.dport,
                                   p.seq, p.ack, p.flags, p.window,
                                   options=bytes(p.options(data)), payload=bytes(p.payload(data)))
        except Exception:   # noqa: BLE001
            pass
    for ep in (client, server):
        ep.receive_packet(data, 2.0)
        ep.packets_to_send(2.0)
    pump(client, server, 2.0, until=4.0)

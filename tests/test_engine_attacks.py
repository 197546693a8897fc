"""Attacks (RFC 7430 and the IETF-87 slides): the ADD_ADDR hijack succeeds against
v0 (RFC 6824's ADD_ADDR has no HMAC) and fails against v1 and the ADD_ADDR2 profile; bounded
memory under an ADD_ADDR storm and against a peer that sends far beyond the window."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from enginenet import C0, PORT, S0, drain, pump
from mptcp_fast.sim import attacks
from mptcp_fast.cli import main as cli
from mptcp_fast.wire import options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev


@pytest.mark.parametrize("profile, hijacked", [("v0", True), ("v1", False),
                                               ("v0+add_addr2", False)])
def test_add_addr_hijack(backend, profile, hijacked):
    r = attacks.add_addr_hijack(profile, size=1 << 20)
    assert r["transfer_exact"]
    assert r["hijacked"] is hijacked
    if hijacked:               # the client joined the attacker, which carried its data
        assert r["subflows_to_attacker"] == 1 and r["join_syns_at_attacker"] == 1
        assert r["client_bytes_via_attacker"] > 100_000 and r["forged_add_addr_dropped"] == 0
    else:                      # dropped silently: no SYN ever reached the attacker
        assert r["subflows_to_attacker"] == r["join_syns_at_attacker"] == 0
        assert r["bytes_through_attacker"] == 0 and r["forged_add_addr_dropped"] == 1


def test_demo_attack_command(backend, capsys):
    assert cli.main(["demo", "--attack", "add-addr-hijack", "--size", "512k", "--json"]) == 0
    results = {r["profile"]: r["hijacked"] for r in json.loads(capsys.readouterr().out)}
    assert results == {"v0": True, "v1": False, "v0+add_addr2": False}
    assert cli.main(["demo", "--attack", "add-addr-hijack", "--size", "512k",
                     "--profile", "v1"]) == 0
    assert "refused" in capsys.readouterr().out


def _pair():
    client = Endpoint([C0], Config(time_wait=0.1, receive_window=65536))
    server = Endpoint([S0], Config(time_wait=0.1, receive_window=65536))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    drain(client), drain(server)
    return client, server, conn, next(iter(server.connections.values()))


def test_data_far_beyond_the_window_is_refused_and_costs_nothing(backend):
    """A peer that ignores the window: its bytes beyond it are neither kept nor acknowledged."""
    client, server, conn, server_conn = _pair()
    sf = conn.subflows[0]
    ssf = server_conn.subflows[0]
    ack0 = server_conn.queue.data_ack
    for i in range(50):                                 # 50 segments 1 MB .. 1.07 MB ahead
        dsn = (conn.allocator.next_dsn + (1 << 20) + i * 1400) & ((1 << 64) - 1)
        area = opt.encode_tcp_options([opt.Dss(server_conn.queue.data_ack, True, dsn, True,
                                               (sf.snd_nxt + i * 1400) & 0xFFFFFFFF, 1400)])
        server.receive_packet(pk.build_packet(C0, S0, sf.lport, PORT,
                                              (sf.iss + sf.snd_nxt + i * 1400) & 0xFFFFFFFF,
                                              (ssf.iss + ssf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 1000,
                                              options=area, payload=bytes(1400)), 1.0)
    assert server_conn.queue.queued_bytes == 0 and server_conn.queue.data_ack == ack0
    assert ssf.rcv_nxt == sf.snd_nxt                    # none of it acknowledged
    in_subflow_window = sum(1 for i in range(50) if i * 1400 < 65536)     # 47: the rest is
    assert server_conn.refused_mappings == in_subflow_window    # dropped by TCP; these mappings
    # lie beyond the data-level window (RFC 8684 §3.3.4): refused
    assert len(server_conn._side(ssf)) == 1             # not stored: only the genuine "x"


def test_an_add_addr_storm_is_bounded(backend):
    """Valid ADD_ADDRs by the thousand (only the peer can make them): the echoes owed and the
    addresses kept stay bounded, and the connection still works."""
    client, server, conn, server_conn = _pair()
    sf = conn.subflows[0]
    ssf = server_conn.subflows[0]
    tracemalloc.start()
    for i in range(2000):
        address = f"198.18.{100 + i % 100}.{1 + i // 100}"
        option = opt.AddAddr(i % 256, address, None,
                             server_conn.keys.add_addr_hmac(i % 256, address))
        server_conn.pm.announcing.clear()
        client.receive_packet(pk.build_packet(S0, C0, PORT, sf.lport,
                                              (ssf.iss + ssf.snd_nxt) & 0xFFFFFFFF,
                                              (sf.iss + sf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 1000,
                                              options=opt.encode_tcp_options([option])), 1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"ADD_ADDR storm: peak {peak:,} bytes traced over 2,000 announcements")
    assert peak < 1_000_000
    assert len(conn.pm.pending_echo) <= 16 and len(conn.pm.remote_addresses) <= 256
    assert len(conn.subflows) <= Config().max_subflows
    client.packets_to_send(1.0)
    conn.send(b"still fine")
    pump(client, server, 2.0, until=4.0)
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived).endswith(b"still fine")


def test_a_join_flood_against_one_token_is_bounded(backend):
    """Thousands of MP_JOIN SYNs with the right token (it travels in clear on every join):
    at most max_subflows subflows exist at any time, the rest are reset, nobody completes a
    join without the keys, and the connection keeps working."""
    client, server, conn, server_conn = _pair()
    token = server_conn.local_token
    resets = 0
    tracemalloc.start()
    for i in range(3000):
        syn = pk.build_packet(C0, S0, 20000 + i, PORT, i * 7919, 0, pk.SYN, 65535,
                              options=opt.encode_tcp_options([opt.MpJoinSyn(1, token, i)]))
        server.receive_packet(syn, 1.0)
        for p in server.packets_to_send(1.0):
            resets += bool(pk.parse_packet(p).flags & pk.RST)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"MP_JOIN flood: peak {peak:,} bytes traced over 3,000 SYNs")
    assert peak < 1_000_000                                 # a few subflows, not 3,000
    live = len(server_conn.subflows)
    assert live <= Config().max_subflows and resets >= 3000 - Config().max_subflows
    assert server_conn.bad_join == 0 and not server_conn.terminated
    conn.send(b"through the flood")
    pump(client, server, 2.0, until=4.0)
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == \
        b"through the flood"


def test_a_replayed_join_cannot_complete(backend):
    """An attacker replays a recorded MP_JOIN SYN and third ACK from another port: the server
    answers with a fresh nonce, so the replayed HMAC is wrong and the subflow is reset."""
    client = Endpoint([C0, "198.18.1.1"], Config(time_wait=0.1))
    server = Endpoint([S0], Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    seen = pump(client, server)
    server_conn = next(iter(server.connections.values()))
    join_syn = next(p for s, p in seen if s is client and pk.parse_packet(p).flags == pk.SYN
                    and any(type(o) is opt.MpJoinSyn for o in opt.parse_tcp_options(
                        bytes(pk.parse_packet(p).options(p)))))
    join_ack = next(p for s, p in seen if s is client and any(
        type(o) is opt.MpJoinAck for o in opt.parse_tcp_options(bytes(pk.parse_packet(p).options(p)))))

    def moved(packet, sport, seq=None, ack=None):
        p = pk.parse_packet(packet)
        return pk.build_packet(p.src_address(packet), p.dst_address(packet), sport, p.dport,
                               p.seq if seq is None else seq, p.ack if ack is None else ack,
                               p.flags, p.window, options=bytes(p.options(packet)))
    server.receive_packet(moved(join_syn, 45000), 1.0)
    (synack,) = server.packets_to_send(1.0)
    s = pk.parse_packet(synack)
    replay = moved(join_ack, 45000, seq=(pk.parse_packet(join_syn).seq + 1) & 0xFFFFFFFF,
                   ack=(s.seq + 1) & 0xFFFFFFFF)
    server.receive_packet(replay, 1.01)
    (rst,) = server.packets_to_send(1.01)
    assert pk.parse_packet(rst).flags & pk.RST
    assert opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR) in opt.parse_tcp_options(
        bytes(pk.parse_packet(rst).options(rst)))
    assert server_conn.bad_join == 1 and len(server_conn.subflows) == 2


def test_a_syn_flood_meets_syn_cookies_and_the_honest_client_gets_through(backend):
    """RFC 4987 §3.6 as Linux does it with v1: beyond the backlog no state is kept per SYN;
    the cookie's third ACK rebuilds the connection, the server's key coming back in the
    client's MP_CAPABLE. Memory stays flat however many SYNs come."""
    server = Endpoint([S0], Config(syn_backlog=16, time_wait=0.1))
    server.listen(PORT)
    tracemalloc.start()
    for i in range(5_000):                       # spoofed sources: their SYN/ACKs go nowhere
        syn = pk.build_packet(f"198.18.{64 + i % 64}.{1 + i // 64 % 250}", S0, 1024 + i % 60000,
                              PORT, i * 2654435761 % (1 << 32), 0, pk.SYN, 65535,
                              options=opt.encode_tcp_options([opt.Mss(1460), opt.MpCapable(1)]))
        server.receive_packet(syn, 0.001 * (i % 1000))
        server.packets_to_send(0.0)
        if i == 999:
            tracemalloc.reset_peak()
            early = tracemalloc.get_traced_memory()[0]
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"SYN flood: {peak - early:,} bytes of peak growth over 4,000 SYNs")
    assert len(server.connections) == 16 and server.half_open == 16
    assert server.stats["syn_cookies_sent"] == 5_000 - 16
    assert peak - early < 2_000_000                               # no per-SYN state
    client = Endpoint([C0], Config(time_wait=0.1))
    conn = client.connect((S0, PORT), 1.0)
    conn.send(b"honest", end_stream=True)
    pump(client, server, 1.0, until=2.0)
    assert server.stats["syn_cookies_accepted"] == 1
    cookie_conn = [c for c in server.connections.values() if c.remote and
                   c.remote[0] == bytes([198, 18, 0, 1])][0]
    assert cookie_conn.local_key == conn.remote_key and cookie_conn.fallback is None
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"honest"


def test_a_forged_cookie_ack_is_reset(backend):
    server = Endpoint([S0], Config(syn_backlog=0))
    server.listen(PORT)
    forged = pk.build_packet(C0, S0, 40000, PORT, 1000, 123456, pk.ACK, 1000,
                             options=opt.encode_tcp_options([opt.MpCapable(1, 1, 5, 6)]))
    server.receive_packet(forged, 0.0)
    (rst,) = server.packets_to_send(0.0)
    assert pk.parse_packet(rst).flags == pk.RST and server.connections == {}
    assert server.cookies.refused == 1


def test_a_peer_that_never_opens_its_window_costs_a_bounded_buffer(backend):
    """The server advertises a zero window for ever (it never reads): the client keeps at most
    its send buffer, probes with backoff, and nothing breaks."""
    client = Endpoint([C0], Config(time_wait=0.1, send_buffer=64 * 1024))
    server = Endpoint([S0], Config(time_wait=0.1, receive_window=4096))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    taken = sum(conn.send(b"z" * 10_000) for _ in range(50))
    assert taken <= 64 * 1024
    seen = pump(client, server, 0.0, until=120.0)          # the server never reads
    server_conn = next(iter(server.connections.values()))
    assert server_conn.queue.queued_bytes == 4096 and not conn.terminated
    assert 3 <= conn.window_probes <= 12                    # backed off, not a flood
    assert len(conn.unsent) + len(conn.retained) <= 64 * 1024
    assert len(seen) < 400                                  # a trickle of probes and ACKs


def test_a_lying_mapping_is_counted_and_changes_nothing(backend):
    """RFC 8684 §3.3.1: a mapping must not change once declared. A DSS that maps bytes already
    mapped to other DSNs is refused and counted; the data stays as first mapped."""
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    conn.send(b"A" * 1000)
    pump(client, server, 1.0)
    before = bytes(server_conn.queue.read() or b"")
    # half old bytes, half new, mapped 5000 DSNs away from where the old half already is
    area = opt.encode_tcp_options([opt.Dss(server_conn.queue.data_ack, True,
                                           (conn.allocator.next_dsn + 5000) % (1 << 64), True,
                                           (sf.snd_nxt - 500) & 0xFFFFFFFF, 1000)])
    server.receive_packet(pk.build_packet(C0, S0, sf.lport, PORT,
                                          (sf.iss + sf.snd_nxt - 500) & 0xFFFFFFFF,
                                          (ssf.iss + ssf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 1000,
                                          options=area, payload=b"B" * 1000), 2.0)
    assert ssf.rcv_nxt == sf.snd_nxt                        # the new half was not taken
    assert any("contradicts" in a.text for a in server_conn.anomalies)
    conn.send(b"C" * 10)
    pump(client, server, 3.0)
    data = b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
    assert b"B" not in before + data and (before + data).endswith(b"C" * 10)


def test_an_off_path_mp_prio_cannot_demote_a_subflow(backend):
    client, server, conn, server_conn = _pair()
    sf, ssf = conn.subflows[0], server_conn.subflows[0]
    forged = pk.build_packet(C0, S0, sf.lport, PORT, (sf.iss + sf.snd_nxt + (1 << 30)) & 0xFFFFFFFF,
                             (ssf.iss + ssf.snd_nxt) & 0xFFFFFFFF, pk.ACK, 1000,
                             options=opt.encode_tcp_options([opt.MpPrio(True)]))
    server.receive_packet(forged, 1.0)
    assert not ssf.backup
    assert [e for e in drain(server) if type(e) is ev.SubflowPriority] == []

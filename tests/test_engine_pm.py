"""The path manager (RFC 8684 §3.4, modelled on Linux's in-kernel PM): "signal"
addresses announced with ADD_ADDR once a connection is established and joined by the peer,
"subflow" addresses joined from, the limit on accepted announcements, an address that goes
away (REMOVE_ADDR) and comes back (announced and joined again)."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, C2, PORT, S0, S1, drain, options_of, pump, transfer
from mptcp_fast.wire import options as opt
from mptcp_fast.engine import Config, Endpoint, events as ev
from mptcp_fast.errors import StateError

MB = 1 << 20
S1_PACKED = bytes([198, 18, 1, 2])


def test_signal_addresses_are_announced_and_joined(backend):
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=2 * MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   server_config=Config(signal_addresses={S1}, time_wait=0.5))
    run.check_exact(2 * MB, 0)
    to_s1 = [sf for sf in run.conn.all_subflows if sf.remote == S1_PACKED]
    assert len(to_s1) == 1 and to_s1[0].bytes_sent > 100_000
    server_conn = run.up[1].conn
    assert server_conn.pm.announcing == {} and server_conn.pm.announced == {2}  # echoed
    assert run.conn.pm.remote_addresses == {2: (S1_PACKED, PORT)}


def test_no_join_beyond_the_accepted_announcements(backend):
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   config=Config(max_add_addr_accepted=0, time_wait=0.5),
                   server_config=Config(signal_addresses={S1}, time_wait=0.5))
    run.check_exact(MB, 0)
    assert len(run.conn.all_subflows) == 1
    assert run.up[1].conn.pm.announced == {2}                       # echoed all the same


def test_only_the_subflow_addresses_are_joined_from(backend):
    paths = {(a, S0): dict(rate=20e6, delay=0.010) for a in (C0, C1, C2)}
    run = transfer(paths, up=MB, client_addresses=(C0, C1, C2),
                   config=Config(subflow_addresses={C2}, time_wait=0.5))
    run.check_exact(MB, 0)
    assert [sf.local for sf in run.conn.all_subflows] == [bytes([198, 18, 0, 1]),
                                                          bytes([198, 18, 2, 1])]


def test_an_address_that_goes_and_comes_back_is_removed_then_announced_again(backend):
    def flap(net, client, server, made, conn):
        ep = server.endpoint
        net.schedule(0.4, lambda: (ep.remove_address(S1), net.wake(server)))
        net.schedule(0.8, lambda: (ep.add_address(S1), net.wake(server)))
    paths = {(C0, S0): dict(rate=10e6, delay=0.010), (C0, S1): dict(rate=10e6, delay=0.010)}
    run = transfer(paths, up=3 * MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   server_config=Config(signal_addresses={S1}, time_wait=0.5), before_run=flap)
    run.check_exact(3 * MB, 0)
    to_s1 = [sf for sf in run.conn.all_subflows if sf.remote == S1_PACKED]
    assert len(to_s1) == 2                                          # joined, removed, joined
    closed = [e for e in run.client.events if type(e) is ev.SubflowClosed
              and e.remote[0] == "198.18.1.2"]
    assert closed[0].reason in ("address removed", "reset")
    assert to_s1[1].bytes_sent > 0


def test_an_announced_port_is_joined(backend):
    """ADD_ADDR with a port (RFC 8684 §3.4.1): the client joins that address and port."""
    def announce(net, client, server, made, conn):
        def go():
            server.endpoint.listen(6000)
            next(iter(server.endpoint.connections.values())).announce(S1, port=6000)
            net.wake(server)
        net.schedule(0.2, go)
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=2 * MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   before_run=announce)
    run.check_exact(2 * MB, 0)
    joined = [sf for sf in run.conn.all_subflows if sf.remote == S1_PACKED]
    assert [(sf.rport, sf.bytes_sent > 0) for sf in joined] == [(6000, True)]
    assert run.conn.pm.remote_addresses[2] == (S1_PACKED, 6000)


def test_a_join_to_a_backup_address_is_a_backup_on_both_ends(backend):
    """The server holds S1 as a backup address (Linux's "backup" endpoint
    flag, for subflows both ways). Its MP_JOIN SYN/ACK from S1 carries B (RFC 8684 §3.2), so
    the client uses that subflow as a backup, and so does the server; the data goes on the
    regular one."""
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=2 * MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   server_config=Config(signal_addresses={S1}, backup_addresses={S1},
                                        time_wait=0.5))
    run.check_exact(2 * MB, 0)
    (to_s1,) = [sf for sf in run.conn.all_subflows if sf.remote == S1_PACKED]
    (at_s1,) = [sf for sf in run.up[1].conn.all_subflows if sf.local == S1_PACKED]
    assert to_s1.join.peer_backup and to_s1.backup and at_s1.backup
    assert at_s1.join.local_backup and not at_s1.join.peer_backup
    assert to_s1.bytes_sent < 100_000                     # a backup: the regular path carries it


def test_flag_c_both_ways_between_engines(backend):
    """Config.deny_join_initial (RFC 8684 §3.1, flag C): the server says so in its MP_CAPABLE
    SYN/ACK; the client joins only the announced address, never the server's initial one."""
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010),
             (C0, S1): dict(rate=20e6, delay=0.010), (C1, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=MB, client_addresses=(C0, C1), server_addresses=(S0, S1),
                   server_config=Config(deny_join_initial=True, signal_addresses={S1},
                                        time_wait=0.5))
    run.check_exact(MB, 0)
    assert run.conn.pm.peer_denies_initial
    remotes = [sf.remote for sf in run.conn.all_subflows[1:]]
    assert remotes and all(r == S1_PACKED for r in remotes)


def test_a_server_that_said_c_refuses_a_join_to_its_initial_address(backend):
    """A client that ignores flag C: its MP_JOIN SYN to the server's initial address and port
    is answered with a RST (the server said it would not accept it), one to another address
    of the server is taken."""
    from enginenet import drain, pump
    from mptcp_fast.wire import options as opt, packet as pk
    from mptcp_fast.engine import Endpoint
    client = Endpoint([C0], Config(time_wait=0.1))
    server = Endpoint([S0, S1], Config(time_wait=0.1, deny_join_initial=True))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    drain(client), drain(server)
    token = next(iter(server.connections.values())).local_token
    for dst, refused in ((S0, True), (S1, False)):
        syn = pk.build_packet(C1, dst, 40000, PORT, 1000, 0, pk.SYN, 65535,
                              options=opt.encode_tcp_options([opt.Mss(1460),
                                                              opt.MpJoinSyn(1, token, 7)]))
        server.receive_packet(syn, 1.0)
        (answer,) = server.packets_to_send(1.0)
        assert bool(pk.parse_packet(answer).flags & pk.RST) is refused


def test_announcements_go_one_at_a_time(backend):
    """Two "signal" addresses: the second ADD_ADDR goes only once the first was echoed, as
    Linux's path manager sends them (Linux drops, unechoed, an ADD_ADDR that arrives while it
    still handles the last). Both are echoed and joined."""
    s2 = "198.18.3.2"
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010),
             (C0, s2): dict(rate=20e6, delay=0.010)}
    in_flight = []

    def watch(net, client, server, made, conn):
        def sample():
            for t in server.transfers.values():
                waiting = [e for e in t.conn.pm.announcing.values() if e.tries <= 8]
                in_flight.append(len(waiting))
        for i in range(400):
            net.schedule(i * 0.005, sample)
    run = transfer(paths, up=2 * MB, client_addresses=(C0,), server_addresses=(S0, S1, s2),
                   server_config=Config(signal_addresses={S1, s2}, time_wait=0.5),
                   before_run=watch)
    run.check_exact(2 * MB, 0)
    assert max(in_flight) == 1 and in_flight.count(1) >= 2
    assert run.up[1].conn.pm.announced == {2, 3} and run.up[1].conn.pm.announcing == {}
    assert {sf.remote for sf in run.conn.all_subflows} == \
        {bytes([198, 18, 0, 2]), S1_PACKED, bytes([198, 18, 3, 2])}


# -- no joins for a connection about to end: Linux opens and accepts MP_JOINs only while its
# MPTCP socket is ESTABLISHED (a join that comes after a DATA_FIN is refused with a RST,
# MP_TCPRST "administratively prohibited")

def _pair(client_addresses=(C0, C1), server_addresses=(S0,)):
    client = Endpoint(list(client_addresses), Config(time_wait=0.5))
    server = Endpoint(list(server_addresses), Config(time_wait=0.5))
    server.listen(PORT)
    return client, server


def _move(src, dst, now):
    """Every packet ``src`` has to send, to ``dst``; returns them."""
    packets = src.packets_to_send(now)
    for packet in packets:
        dst.receive_packet(packet, now)
    return packets


def _join_syns(packets) -> int:
    """How many of ``packets`` are SYNs with MP_JOIN."""
    return sum(1 for p in packets for o in options_of(p) if type(o) is opt.MpJoinSyn)


def _handshake(client, server):
    """The MP_CAPABLE SYN and SYN/ACK: the client's connection is established (its third
    ACK not sent yet)."""
    conn = client.connect((S0, PORT), 0.0)
    _move(client, server, 0.0)
    _move(server, client, 0.001)
    assert conn.established and not conn.fully_established
    return conn


def _client_packets(client, server, now=0.002, until=3.0):
    return [p for src, p in pump(client, server, now, until=until) if src is client]


def test_a_connection_closed_right_after_its_handshake_opens_no_join(backend):
    """The client's application sends a few bytes and closes at ConnectionEstablished: its
    DATA_FIN is gone before the server's DATA_ACK makes it fully established, so no MP_JOIN
    (it would be refused). A connection kept open gets its join from the other address."""
    for close, joins in ((True, 0), (False, 1)):
        client, server = _pair()
        conn = _handshake(client, server)
        conn.send(b"a few bytes", end_stream=close)
        sent = _client_packets(client, server)
        assert conn.fully_established and _join_syns(sent) == joins
        assert len(conn.all_subflows) == 1 + joins


def test_a_reply_that_ends_the_connection_leaves_no_join(backend):
    """The server answers the request and closes at once: its first DATA_ACK, which makes the
    client fully established, comes in the segment that carries its DATA_FIN. The joins wait
    for that segment to be taken whole, and then there is none to open."""
    client, server = _pair()
    conn = _handshake(client, server)
    conn.send(b"GET / HTTP/1.0\r\n\r\n")
    _move(client, server, 0.002)                      # third ACK and the request
    drain(server)
    (peer,) = server.connections.values()
    peer.send(b"HTTP/1.0 200 OK\r\n\r\nbye", end_stream=True)
    _move(server, client, 0.003)
    assert conn.fully_established and conn.queue.eof
    assert _join_syns(_client_packets(client, server, now=0.003)) == 0
    assert len(conn.all_subflows) == 1


@pytest.mark.parametrize("ended_by", ["peer", "us"])
def test_no_join_to_an_address_announced_after_a_data_fin(backend, ended_by):
    """ADD_ADDR after the peer's DATA_FIN arrived, or after ours was sent: the address is
    echoed and remembered, and not joined."""
    client, server = _pair(client_addresses=(C0,), server_addresses=(S0, S1))
    conn = _handshake(client, server)
    conn.send(b"hello")
    pump(client, server, 0.002)
    drain(client), drain(server)
    (peer,) = server.connections.values()
    (conn if ended_by == "us" else peer).close()
    pump(client, server, 0.6, until=0.8)
    assert conn.fin_dsn is not None if ended_by == "us" else conn.queue.eof
    peer.announce(S1, now=0.8)
    sent = _client_packets(client, server, now=0.8, until=2.0)
    assert peer.pm.announced == {2}                   # echoed
    assert conn.pm.remote_addresses[2] == (S1_PACKED, PORT)
    assert _join_syns(sent) == 0 and len(conn.all_subflows) == 1


def test_join_refuses_a_connection_about_to_end(backend):
    for ended_by, message in (("us", "our DATA_FIN is sent"),
                              ("peer", "the peer's DATA_FIN has arrived")):
        client, server = _pair()
        conn = _handshake(client, server)
        conn.send(b"hello")
        pump(client, server, 0.002)
        drain(server)
        (peer,) = server.connections.values()
        (conn if ended_by == "us" else peer).close()
        pump(client, server, 0.6, until=0.8)
        with pytest.raises(StateError, match=message):
            conn.join(C1)
        assert len(conn.all_subflows) == 2            # the automatic join, made before
    client, server = _pair()
    conn = _handshake(client, server)
    conn.abort()
    with pytest.raises(StateError, match="needs an established connection"):
        conn.join(C1)

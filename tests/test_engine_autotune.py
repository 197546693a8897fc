"""Buffers sized from the path and the reader, not fixed (the engine's autotuning): the receive
window starts at ``Config.initial_receive_window`` and grows, once per round trip the receiver
measures (the timestamp echo of its data segments), to twice what the application read in
that round trip, up to ``Config.receive_window``; ``send_space`` offers twice the largest
window the peer advertised. A fast reader gets the window its path needs; a reader that does
not keep up holds the first window and no more, and its peer's sender holds two of its
windows."""

from __future__ import annotations

import pytest

from enginenet import C0, PORT, S0, drain, make, options_of, pump
from mptcp_fast.wire import dss
from mptcp_fast.wire import options as opt
from mptcp_fast.wire import packet as pk
from mptcp_fast.engine import Config, Endpoint, events as ev

MB = 1 << 20
FAST_PATH = {(C0, S0): dict(rate=1e9, delay=0.010, queue=4 * MB)}    # 2.5 MB per round trip


def _run(config, up):
    net, client, server, _ = make(FAST_PATH, up=up, client_addresses=(C0,), config=config)
    conn = client.open((S0, PORT), 0.0)
    end = net.run(until=30.0, stop=lambda: server.transfers and
                  all(t.done for t in server.transfers.values()))
    (transfer,) = server.transfers.values()
    assert transfer.received == up and transfer.received_hash.hexdigest() == \
        client.transfers[conn.id].sent_hash.hexdigest()
    return end, transfer.conn


def test_a_reader_that_keeps_up_gets_the_window_its_path_needs(backend):
    """A 1 Gbit/s path of 20 ms: the window grows from 512 KiB to the 4 MiB maximum, and the
    transfer ends within 6 round trips of the same transfer with a 4 MiB window from the
    start (as slow start, the window doubles once per round trip)."""
    tuned_end, tuned = _run(Config(time_wait=0.5), 16 * MB)
    fixed_end, fixed = _run(Config(time_wait=0.5, initial_receive_window=4 * MB), 16 * MB)
    assert tuned.receive_window == 4 * MB == fixed.receive_window
    assert fixed_end < tuned_end < fixed_end + 6 * 0.020
    receiving = tuned.all_subflows[0]
    assert 0.019 <= receiving.rcv_rtt <= 0.060          # measured: 20 ms and the queue


def _pair(server_config=None):
    client = Endpoint([C0], Config(time_wait=0.1))
    server = Endpoint([S0], server_config or Config(time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    pump(client, server, until=0.1)
    (established,) = [e for e in drain(server) if type(e) is ev.ConnectionEstablished]
    return client, server, conn, server.connection(established.connection)


def _right_edges(seen, sender) -> list[int]:
    """The right edge (DATA_ACK + window) of every DATA_ACK ``sender`` sent, in order."""
    edges = []
    for src, packet in seen:
        if src is not sender:
            continue
        parsed = pk.parse_packet(packet)
        for o in options_of(packet):
            if type(o) is opt.Dss and o.data_ack is not None:
                edges.append(o.data_ack + (parsed.window << 7))    # 4 MiB max: scale 7
    return edges


def test_a_reader_that_does_not_keep_up_holds_one_small_window(backend):
    """The server's application reads 8 KiB every 100 ms while 4 MiB are offered: its window
    stays at its first 512 KiB, so the connection never holds more than that for it; the
    client's send_space stops at twice that window while send() still took the whole 4 MiB
    (Config.send_buffer bounds it); the window's right edge never moves back (RFC 9293
    §3.8.6; the reader takes all that is queued whenever it reads, so it is the rate, not
    the size of one read, that sizes the window); every byte read is the sent stream's
    next."""
    client, server, conn, server_conn = _pair()
    data = bytes(range(256)) * (16 * 1024)
    assert conn.send(data) == len(data)
    got, seen, now = bytearray(), [], 0.1
    while now < 10.0:
        seen += pump(client, server, now, until=now + 0.1)
        now += 0.1
        assert server_conn.queue.queued_bytes <= 512 * 1024
        while len(got) < (now - 0.1) * 80 * 1024:            # 8 KiB per 100 ms
            event = server.next_event()
            if event is None:
                break
            if type(event) is ev.DataReceived:
                got += event.data
    # the reader kept its pace (8 KiB per 100 ms, 9.9 s of reading): the data was always there
    assert bytes(got) == data[:len(got)] and len(got) >= 99 * 8 * 1024
    assert server_conn.receive_window == 512 * 1024
    assert conn.peer_window_max <= 512 * 1024
    assert conn.send_space == 0 and conn._buffered() > 2 * conn.peer_window_max
    edges = _right_edges(seen, server)          # (a scaled window is rounded down, by less
    assert len(edges) > 10                      # than its unit of 128 bytes: RFC 7323 App. F)
    assert all(b > a - 128 for a, b in zip(edges, edges[1:]))


def test_send_space_is_twice_the_peers_largest_window(backend):
    """send_space offers what keeps the path busy: twice the largest window the peer
    advertised (at least 64 KiB, at most Config.send_buffer), less what is held; before the
    peer's first window, Config.send_buffer."""
    client = Endpoint([C0], Config(time_wait=0.1))
    Endpoint([S0], Config(time_wait=0.1)).listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    assert conn.peer_window_max == 0 and conn.send_space == 4 * MB
    client, server, conn, server_conn = _pair()
    assert conn.peer_window_max == 65535                 # a SYN/ACK's window is not scaled
    assert conn.send_space == 2 * 65535
    conn.send(bytes(100_000))
    assert conn.send_space == 2 * 65535 - 100_000
    pump(client, server, 0.1, until=0.5)
    drain(server)                                        # read: the window opens again
    pump(client, server, 0.5, until=1.0)
    assert 510 * 1024 <= conn.peer_window_max <= 512 * 1024 and conn._buffered() == 0
    assert conn.send_space == 2 * conn.peer_window_max


def test_the_first_window_and_its_bounds_are_checked():
    assert Config(initial_receive_window=4096).initial_receive_window == 4096
    with pytest.raises(ValueError, match="initial_receive_window"):
        Config(initial_receive_window=10)


def test_a_reassembly_window_grows_and_never_shrinks(backend):
    queue = dss.ReassemblyQueue(1000, window=4096)
    assert queue.push(1000, bytes(8192)) == 4096           # beyond the window: refused
    queue.grow_window(16384)
    assert queue.window == 16384 and queue.window_left == 16384 - 4096
    assert queue.push(1000 + 4096, bytes(4096)) == 4096
    with pytest.raises(ValueError, match="smaller than the current 16384"):
        queue.grow_window(8192)
    with pytest.raises(ValueError, match="window must be in"):
        queue.grow_window(0)
    assert queue.window == 16384


def test_connections_with_send_space_lists_those_whose_peer_acknowledged(backend):
    """With watch_send_space, a connection whose peer acknowledged data is listed once per
    call; one with nothing acknowledged is not; without watch_send_space nothing is kept."""
    client, server, conn, server_conn = _pair()
    client.watch_send_space = True
    client.connections_with_send_space()
    idle = client.connect((S0, PORT), 0.2)
    pump(client, server, 0.2, until=0.4)
    client.connections_with_send_space()               # (the handshakes' windows)
    conn.send(bytes(50_000))
    pump(client, server, 0.4, until=0.6)
    assert client.connections_with_send_space() == [conn]
    assert client.connections_with_send_space() == []
    assert idle.established and not idle.terminated
    server.watch_send_space = False
    server_conn.send(bytes(50_000))
    pump(client, server, 0.6, until=0.8)
    assert server._with_space == []


def test_a_syn_cookie_syn_ack_offers_the_first_window(backend):
    """Answering with a SYN cookie, the server offers the window its connection will start
    with, not Config.receive_window: a peer that took the larger offer would send bytes the
    connection refuses."""
    server = Endpoint([S0], Config(syn_backlog=0, initial_receive_window=4096))
    server.listen(PORT)
    client = Endpoint([C0], Config())
    client.connect((S0, PORT), 0.0)
    (syn,) = client.packets_to_send(0.0)
    server.receive_packet(syn, 0.0)
    (syn_ack,) = server.packets_to_send(0.0)
    assert server.counts["syn_cookies_sent"] == 1
    assert pk.parse_packet(syn_ack).window == 4096

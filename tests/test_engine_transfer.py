"""The engine moves data: byte-exact transfers (SHA-256 of both streams) between a
client and a server engine over the emulated network, both backends, under loss, bursty loss,
reordering and duplication, a path failing or appearing mid-transfer, a backup path, a tiny
receive window, a slow reader, DATA_FIN from either side first, DSS checksums, and 100
connections on one endpoint."""

from __future__ import annotations

import pytest

from enginenet import C0, C1, C2, PORT, S0, S1, finished, make, transfer
from mptcp_fast.engine import Config, events as ev

MB = 1 << 20
TWO_PATHS = {(C0, S0): dict(rate=100e6, delay=0.010), (C1, S0): dict(rate=50e6, delay=0.020)}


def kinds(app):
    return [type(e).__name__ for e in app.events]


def test_clean_transfer_both_ways_on_two_subflows(backend):
    # queues deeper than the receive window: nothing is ever dropped
    deep = {key: dict(value, queue=8 * MB) for key, value in TWO_PATHS.items()}
    run = transfer(deep, up=3 * MB, down=1 * MB)
    run.check_exact(3 * MB, 1 * MB)
    c, s = run.up
    assert c.terminated == s.terminated == "closed"
    sent = run.subflow_bytes()
    assert set(sent) == {0, 1} and min(sent.values()) > 50_000        # both paths carried data
    assert sum(sent.values()) == 3 * MB                              # nothing sent twice
    assert sum(sf.stats_retransmits for sf in run.conn.all_subflows) == 0
    for app in (run.client, run.server):
        names = kinds(app)
        assert names[:2] == ["ConnectionEstablished", "SubflowEstablished"]
        assert names.count("SubflowEstablished") == 2 and names.count("SubflowClosed") == 2
        assert names.index("EndOfStream") < names.index("ConnectionTerminated")
        assert app.endpoint.connections == {}                        # all gone after TIME-WAIT
        assert app.endpoint.stats["dropped_checksum"] == 0
    established = run.client.events[0]
    assert established == ev.ConnectionEstablished(run.conn.id, (C0, established.local[1]),
                                                   (S0, PORT), False)
    joined = [e for e in run.server.events if type(e) is ev.SubflowEstablished]
    assert [(e.remote[0], e.local, e.remote_address_id) for e in joined] == \
        [(C0, (S0, PORT), 0), (C1, (S0, PORT), 2)]


@pytest.mark.parametrize("loss", [dict(loss=0.01), dict(burst=(0.01, 0.3, 0.5))],
                         ids=["random", "bursty"])
def test_transfer_under_loss(backend, loss):
    paths = {(C0, S0): dict(rate=50e6, delay=0.010, **loss),
             (C1, S0): dict(rate=20e6, delay=0.030, **loss)}
    run = transfer(paths, up=2 * MB, down=MB // 2)
    run.check_exact(2 * MB, MB // 2)
    retransmits = sum(sf.stats_retransmits for sf in run.conn.all_subflows)
    lost = sum(p.stats(C0 if key[0] == C0 else C1).lost for key, p in _paths(run).items())
    assert lost > 10 and retransmits >= lost // 2                   # losses were repaired


def _paths(run):
    return {(a, b): run.net._paths[(bytes(int(x) for x in a.split(".")),
                                    bytes(int(x) for x in b.split(".")))]
            for a, b in ((C0, S0), (C1, S0))}


def test_transfer_with_reordering_duplication_and_jitter(backend):
    impaired = dict(reorder=0.05, reorder_delay=0.004, duplicate=0.02, jitter=0.002)
    paths = {(C0, S0): dict(rate=50e6, delay=0.010, **impaired),
             (C1, S0): dict(rate=50e6, delay=0.015, **impaired)}
    run = transfer(paths, up=2 * MB, down=MB)
    run.check_exact(2 * MB, MB)


def test_a_path_that_fails_mid_transfer_loses_nothing(backend):
    def cut(net, client, server, made, conn):
        made[(C1, S0)].down(at=0.3)                  # and never comes back
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=4 * MB, down=MB, before_run=cut, settle=False)
    run.check_exact(4 * MB, MB)
    assert run.conn.reinjected_bytes > 0                            # its data went the other way
    failed = run.conn.all_subflows[1]
    assert failed.stale or failed.state_name == "CLOSED"


def test_a_path_added_mid_transfer_carries_data(backend):
    def later(net, client, server, made, conn):
        def add():
            net.add_path(C2, S0, rate=50e6, delay=0.010)
            net.add_host(client, [C2])               # an interface comes up: the path
            client.endpoint.add_address(C2)          # manager joins from it
            net.wake(client)
        net.schedule(0.5, add)
    paths = {(C0, S0): dict(rate=10e6, delay=0.010)}
    run = transfer(paths, up=3 * MB, client_addresses=(C0,), before_run=later)
    run.check_exact(3 * MB, 0)
    sent = run.subflow_bytes()
    assert len(sent) == 2 and sent[1] > MB                          # the new path took over most


def test_backup_path_is_used_only_when_the_others_are_gone(backend):
    def cut(net, client, server, made, conn):
        made[(C0, S0)].down(at=1.0)
    cfg = Config(time_wait=0.5, backup_addresses=frozenset({bytes([198, 18, 1, 1])}))
    paths = {(C0, S0): dict(rate=10e6, delay=0.010), (C1, S0): dict(rate=10e6, delay=0.010)}
    net, client, server, made = make(paths, up=3 * MB, config=cfg)
    conn = client.open((S0, PORT), 0.0)
    made[(C0, S0)].down(at=0.6)
    net.run(until=0.59)
    backup = conn.all_subflows[1]
    assert backup.backup and backup.bytes_sent == 0 and conn.all_subflows[0].bytes_sent > 300_000
    server_side = next(iter(server.transfers.values())).conn.all_subflows[1]
    assert server_side.backup                                       # the MP_JOIN B flag
    net.run(until=60, stop=finished(client, server))
    c = client.transfers[conn.id]
    s = next(iter(server.transfers.values()))
    assert s.received == 3 * MB and s.received_hash.hexdigest() == c.sent_hash.hexdigest()
    assert backup.bytes_sent > MB                                   # the backup carried the rest


def test_tiny_receive_window(backend):
    run = transfer(TWO_PATHS, up=MB // 2, down=MB // 4, receive_window=4096)
    run.check_exact(MB // 2, MB // 4)
    c, s = run.up
    assert s.conn.queue.peak_queued_bytes <= 4096


def test_a_reader_that_stops_reading_closes_the_window_and_probing_resumes(backend):
    net, client, server, _ = make(TWO_PATHS, up=2 * MB, receive_window=65536, time_wait=0.5)
    conn = client.open((S0, PORT), 0.0)
    server.paused = True                             # the application does not read yet
    net.run(until=1.9)
    server_conn = next(iter(server.endpoint.connections.values()))
    assert server_conn.queue.queued_bytes == 65536                   # the window is full
    assert conn.allocator.outstanding_bytes() <= 65536 + 1420
    server.paused = False
    net.run(until=60, stop=lambda: server.transfers and all(
        t.done or t.eof for t in server.transfers.values()))
    s = next(iter(server.transfers.values()))
    assert s.received == 2 * MB
    assert s.received_hash.hexdigest() == client.transfers[conn.id].sent_hash.hexdigest()


@pytest.mark.parametrize("first", ["client", "server"])
def test_data_fin_from_either_side_first(backend, first):
    up, down = (0, 2 * MB) if first == "client" else (2 * MB, 0)

    def at_once(net, client, server, made, conn):
        client.wait_for_peer = server.wait_for_peer = False
    run = transfer(TWO_PATHS, up=up, down=down, before_run=at_once)
    run.check_exact(up, down)
    c, s = run.up
    early, late = (c, s) if first == "client" else (s, c)
    # the side with nothing to send closed at once; its peer read EndOfStream early, and
    # still sent everything after that
    assert late.eof_at < early.eof_at
    assert c.terminated == s.terminated == "closed"


def test_dss_checksums_negotiated_and_verified(backend):
    run = transfer(TWO_PATHS, up=MB, down=MB // 2, checksums=True)
    run.check_exact(MB, MB // 2)
    assert run.client.events[0].checksums is True
    server_conn = next(iter(run.server.transfers.values())).conn
    assert server_conn.checksums and server_conn.anomalies == []


def test_checksums_asked_by_the_server_only(backend):
    run = transfer(TWO_PATHS, up=MB // 4, server_config=Config(checksums=True, time_wait=0.5))
    run.check_exact(MB // 4, 0)
    assert run.client.events[0].checksums is True                   # RFC 8684 §3.1: either side


def test_hundred_connections_on_one_endpoint(backend):
    net, client, server, _ = make(TWO_PATHS, up=20_000, down=10_000, time_wait=0.5)
    conns = []
    for i in range(100):
        net.schedule(i * 0.001, lambda: (conns.append(client.open((S0, PORT), net.now)),
                                         net.wake(client)))
    net.run(until=60, stop=lambda: len(server.transfers) == 100 and finished(client, server)())
    assert len(server.transfers) == 100
    for conn in conns:
        c = client.transfers[conn.id]
        assert c.received == 10_000 and c.eof
    received = sorted(t.received_hash.hexdigest() for t in server.transfers.values())
    assert received == sorted(client.transfers[c.id].sent_hash.hexdigest() for c in conns)
    net.run(until=net.now + 30)
    assert client.endpoint.connections == {} and server.endpoint.connections == {}
    assert len(client.endpoint.tokens) == len(server.endpoint.tokens) == 0


def test_announced_address_is_verified_echoed_and_joined(backend):
    def announce_later(net, client, server, made, conn):
        def go():
            server_conn = next(iter(server.endpoint.connections.values()))
            server_conn.announce(S1)
            net.wake(server)
        net.schedule(0.2, go)
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=2 * MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   before_run=announce_later)
    run.check_exact(2 * MB, 0)
    joined = [sf for sf in run.conn.all_subflows if sf.remote == bytes([198, 18, 1, 2])]
    assert len(joined) == 1 and joined[0].bytes_sent > 100_000
    server_conn = next(iter(run.server.transfers.values())).conn
    assert server_conn.pm.announcing == {}                          # the echo arrived
    assert run.conn.bad_add_addr == 0


def test_a_subflow_is_given_up_after_its_retransmissions_and_the_data_moves(backend):
    def cut(net, client, server, made, conn):
        made[(C1, S0)].down(at=0.3)
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=3 * MB, before_run=cut, max_retransmits=3)
    run.check_exact(3 * MB, 0)
    closed = {e.subflow_id: e for e in run.client.events if type(e) is ev.SubflowClosed}
    assert (closed[1].reason, closed[1].local[0]) == ("timeout", C1)
    assert closed[0].reason == "fin"
    assert run.conn.reinjected_bytes > 0


def test_an_address_removed_mid_transfer_takes_its_subflow_and_nothing_else(backend):
    def remove(net, client, server, made, conn):
        net.schedule(0.3, lambda: (client.endpoint.remove_address(C1), net.wake(client)))
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=3 * MB, down=MB, before_run=remove)
    run.check_exact(3 * MB, MB)
    closed = [e for e in run.client.events if type(e) is ev.SubflowClosed]
    assert (closed[0].subflow_id, closed[0].reason) == (1, "address removed")
    server_closed = [e for e in run.server.events if type(e) is ev.SubflowClosed]
    # REMOVE_ADDR (RFC 8684 §3.4.2) or the subflow's own RST, whichever arrives first
    assert server_closed[0].reason in ("address removed", "reset")
    assert server_closed[0].remote[0] == C1
    assert run.conn.all_subflows[1].bytes_sent > 0 and len(run.conn.all_subflows) == 2


def test_fifty_megabytes_with_loss_both_ways(backend):
    paths = {(C0, S0): dict(rate=1e9, delay=0.002, loss=0.001, queue=MB),
             (C1, S0): dict(rate=500e6, delay=0.005, loss=0.001, queue=MB)}
    run = transfer(paths, up=40 * MB, down=10 * MB, settle=False)
    run.check_exact(40 * MB, 10 * MB)
    assert len(run.subflow_bytes()) == 2            # both paths
    assert all(v > MB for v in run.subflow_bytes().values())


@pytest.mark.parametrize("scheduler", ["round-robin", "redundant", "ecf"])
def test_every_scheduler_moves_the_data_exactly(backend, scheduler):
    paths = {(C0, S0): dict(rate=10e6, delay=0.005, queue=20_000, loss=0.002),
             (C1, S0): dict(rate=10e6, delay=0.050, queue=100_000)}
    run = transfer(paths, up=MB, down=MB // 2, scheduler=scheduler)
    run.check_exact(MB, MB // 2)
    sent = run.subflow_bytes()
    if scheduler == "redundant":        # data sent again on the other subflow whenever that
        assert sum(sent.values()) > MB * 1.2             # one has room: duplicates
        assert run.up[1].conn.receiver.counters().duplicate_bytes > MB // 8
    else:
        assert sum(sent.values()) >= MB


@pytest.mark.parametrize("loss", [0.0, 0.005])
def test_segmentation_offload_both_ways(backend, loss):
    """Config(offload=True): one segment per mapping chunk (up to 64 KiB) handed to the
    network as to a TSO NIC; a clean path carries them whole, a lossy one cuts them into
    MTU-sized packets (so the receivers get both kinds). Byte-exact either way."""
    paths = {(C0, S0): dict(rate=100e6, delay=0.005, loss=loss, queue=2 * MB),
             (C1, S0): dict(rate=50e6, delay=0.010, loss=loss, queue=2 * MB)}
    sizes = []

    def watch(net, client, server, made, conn):
        send = client.packets_to_send

        def recorded(now):
            out = send(now)
            sizes.extend(len(p) for p in out)
            return out
        client.packets_to_send = recorded
    run = transfer(paths, up=8 * MB, down=2 * MB, offload=True, before_run=watch)
    run.check_exact(8 * MB, 2 * MB)
    # segments beyond the MTU went out: up to 64 KiB on the clean paths (the congestion
    # window bounds them where losses keep it small)
    assert max(sizes) > (10_000 if loss else 60_000)
    stats = run.net._paths[(bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))].stats(C0)
    assert stats.mtu_drops == 0
    if loss:
        assert stats.lost > 0                               # cut, and pieces were lost


def test_acknowledged_bytes_are_let_go(backend):
    """Bytes the peer acknowledged are not kept: not by the data-level store (what the
    DATA_ACK covers), not by a subflow's retransmission queue (what its ACK covers), and an
    ended subflow keeps no segments at all. (Both stores used to cut their lists only every
    64 or 256 entries, so a connection kept up to 256 acknowledged segments per subflow, and
    one in TIME_WAIT kept them for its 60 s.)"""
    run = transfer(TWO_PATHS, up=2 * MB, down=MB)
    run.check_exact(2 * MB, MB)
    for conn in (run.conn, run.up[1].conn):
        assert conn.retained.size == 0
        assert [p for p in conn.retained._pieces if p is not None] == []
        for sf in conn.all_subflows:
            assert sf.sent == [] and sf.ooo == []


def test_a_subflow_keeps_no_acknowledged_segment(backend):
    """Mid-transfer, at every step, no acknowledged segment of a subflow nor acknowledged
    piece of the data-level store still holds its bytes."""
    net, client, server, _ = make(TWO_PATHS, up=2 * MB, down=0)
    conn = client.open((S0, PORT), 0.0)
    done, now, checked = finished(client, server), 0.0, 0
    while not done() and now < 60:
        now = net.run(until=now + 0.01)
        for sf in conn.all_subflows:
            assert all(entry.chunk is None for entry in sf.sent[:sf.sent_head])
            checked += sf.sent_head
        store = conn.retained                      # (made once the keys are known)
        if store is not None:
            assert all(piece is None for piece in store._pieces[:store._head])
    net.close()
    assert done() and checked > 1000              # acknowledged segments were looked at

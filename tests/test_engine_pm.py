"""The path manager (issue #12, RFC 8684 §3.4, modelled on Linux's in-kernel PM): "signal"
addresses announced with ADD_ADDR once a connection is established and joined by the peer,
"subflow" addresses joined from, the limit on accepted announcements, an address that goes
away (REMOVE_ADDR) and comes back (announced and joined again)."""

from __future__ import annotations

from enginenet import C0, C1, C2, PORT, S0, S1, transfer
from mptcp_fast.engine import Config, events as ev

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
    assert server_conn.announcing == {} and server_conn.announced == {2}   # echoed
    assert run.conn.remote_addresses == {2: (S1_PACKED, PORT)}


def test_no_join_beyond_the_accepted_announcements(backend):
    paths = {(C0, S0): dict(rate=20e6, delay=0.010), (C0, S1): dict(rate=20e6, delay=0.010)}
    run = transfer(paths, up=MB, client_addresses=(C0,), server_addresses=(S0, S1),
                   config=Config(max_add_addr_accepted=0, time_wait=0.5),
                   server_config=Config(signal_addresses={S1}, time_wait=0.5))
    run.check_exact(MB, 0)
    assert len(run.conn.all_subflows) == 1
    assert run.up[1].conn.announced == {2}                          # echoed all the same


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
    assert run.conn.remote_addresses[2] == (S1_PACKED, 6000)


def test_a_join_to_a_backup_address_is_a_backup_on_both_ends(backend):
    """Issue #22, part 1: the server holds S1 as a backup address (Linux's "backup" endpoint
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

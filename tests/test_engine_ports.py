"""The local port space of outgoing subflows (Endpoint.new_port): a free port is found while
one is left (random picks, then a walk of the range, as Linux's __inet_hash_connect), a
4-tuple whose old subflow waits in TIME_WAIT is reused when that is safe (Linux's
tcp_tw_reuse: it used timestamps and the last one it received is at least a second old),
and otherwise the error names the destination. The range is shrunk for the tests."""

from __future__ import annotations

import os

import pytest

from mptcp_fast.wire import options as opt, packet as pk
from mptcp_fast.engine import Config, Endpoint, RandomSource, events as ev
from mptcp_fast.engine.subflow import TIME_WAIT
from mptcp_fast.errors import StateError

from enginenet import drain, options_of, pump

C0, C1, S0, S1 = "198.18.0.1", "198.18.1.1", "198.18.0.2", "198.18.1.2"
PORT = 5000
LOW = 40000


@pytest.fixture
def ports(backend, monkeypatch):
    """ports(n): endpoints made afterwards give out only LOW .. LOW + n - 1."""
    def shrink(n: int) -> None:
        for module in ("mptcp_fast.engine.endpoint", "mptcp_fast._cengine.endpoint"):
            try:
                monkeypatch.setattr(f"{module}.EPHEMERAL_PORTS", (LOW, LOW + n - 1))
            except ImportError:                        # a pure-only install
                pass
    return shrink


def _tsval(packet):
    (ts,) = [o for o in options_of(packet) if type(o) is opt.Timestamps]
    return ts.tsval


def _without_timestamps(packet):
    """The packet rebuilt without its Timestamps option."""
    p = pk.parse_packet(packet)
    kept = [o for o in options_of(packet) if type(o) is not opt.Timestamps]
    return pk.build_packet(p.src_address(packet), p.dst_address(packet), p.sport, p.dport,
                           p.seq, p.ack, p.flags, p.window,
                           options=opt.encode_tcp_options(kept),
                           payload=bytes(p.payload(packet)))


def _end_in_time_wait(client, server, n: int, now: float, mutate=None, lifetime=0.0):
    """Open ``n`` connections to the server at once; ``lifetime`` seconds later each sends a
    line and closes, the server closes back: the client's subflows end in TIME_WAIT. Returns
    them and every packet seen."""
    conns = [client.connect((S0, PORT), now) for _ in range(n)]
    seen = pump(client, server, now, until=now + 0.2, mutate=mutate)
    now += lifetime
    for conn in conns:
        conn.send(b"one line\n", end_stream=True)
    for _ in range(3):
        seen += pump(client, server, now, until=now + 0.2, mutate=mutate)
        now += 0.2
        for event in drain(server):
            if type(event) is ev.EndOfStream:
                server.connections[event.connection].close()
        drain(client)
    old = [sf for conn in conns for sf in conn.all_subflows]
    assert [sf.state for sf in old] == [TIME_WAIT] * n
    return old, seen


def test_the_last_free_port_is_found_then_the_error_names_the_destination(ports):
    ports(256)
    client = Endpoint([C0, C1], Config(), random=RandomSource.seeded(1))
    lports = {client.connect((S0, PORT), 0.0).subflows[0].lport for _ in range(256)}
    assert lports == set(range(LOW, LOW + 256))        # every one, the last ones included
    with pytest.raises(StateError, match=r"^no free local port to 198\.18\.0\.2:5000$"):
        client.connect((S0, PORT), 0.0)
    # the 4-tuple is what must be unique: another destination, another local address
    for remote, local in (((S0, PORT + 1), C0), ((S1, PORT), C0), ((S0, PORT), C1)):
        assert LOW <= client.connect(remote, 0.0, local_address=local).subflows[0].lport \
            < LOW + 256


def test_the_error_names_an_ipv6_destination_in_brackets(ports):
    ports(1)
    client = Endpoint(["2001:db8::1"], Config())
    client.connect(("2001:db8::2", 443), 0.0)
    with pytest.raises(StateError, match=r"to \[2001:db8::2\]:443$"):
        client.connect(("2001:db8::2", 443), 0.0)


def test_a_time_wait_four_tuple_is_reused_after_a_second(ports):
    ports(4)
    client = Endpoint([C0], Config())                  # TIME_WAIT: 60 s
    server = Endpoint([S0], Config(time_wait=0.5))     # its side gone, as a passive closer's
    server.listen(PORT)
    old, seen = _end_in_time_wait(client, server, 4, 0.0)
    last_heard = max(sf.ts_recent_at for sf in old)
    pump(client, server, 0.6, until=last_heard + 0.9)  # the server's TIME_WAIT ends
    assert server.connections == {}
    with pytest.raises(StateError, match="no free local port to 198.18.0.2:5000"):
        client.connect((S0, PORT), last_heard + 0.9)   # every timestamp heard < 1 s ago
    now = last_heard + 1.0
    conn = client.connect((S0, PORT), now)
    sf = conn.subflows[0]
    (previous,) = [o for o in old if o.lport == sf.lport]
    assert previous.state != TIME_WAIT and previous.conn.id not in client.connections
    assert previous not in client._subflows.values()        # dropped (unregistered)
    assert [o.state for o in old].count(TIME_WAIT) == 3          # the others stay
    # PAWS at the peer (RFC 7323 §5): the new SYN's TSval is above the old subflow's last
    (syn,) = client.packets_to_send(now)
    sent_before = [p for src, p in seen if src is client
                   and pk.parse_packet(p).sport == sf.lport]
    assert 0 < (_tsval(syn) - _tsval(sent_before[-1])) % (1 << 32) < 1 << 31
    server.receive_packet(syn, now)
    # the new connection: handshake, then data both ways, byte-exact
    up, down = os.urandom(300_000), os.urandom(200_000)
    pump(client, server, now, until=now + 0.1)
    assert conn.established and sf.state_name == "ESTABLISHED"
    (peer,) = [c for c in server.connections.values() if not c.terminated]
    conn.send(up, end_stream=True)
    peer.send(down, end_stream=True)
    got_up, got_down = bytearray(), bytearray()
    for _ in range(40):
        pump(client, server, now, until=now + 0.1)
        now += 0.1
        got_up += b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived)
        got_down += b"".join(e.data for e in drain(client) if type(e) is ev.DataReceived)
    assert bytes(got_up) == up and bytes(got_down) == down
    assert conn.terminated == "closed"


def test_a_free_port_is_preferred_to_a_time_wait_one(ports):
    ports(4)
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config(time_wait=0.5))
    server.listen(PORT)
    old, _ = _end_in_time_wait(client, server, 3, 0.0)
    now = max(sf.ts_recent_at for sf in old) + 5.0
    assert client.connect((S0, PORT), now).subflows[0].lport \
        not in {sf.lport for sf in old}
    assert len(old) == 3 and all(sf.state == TIME_WAIT for sf in old)
    assert client.connect((S0, PORT), now).subflows[0].lport in {sf.lport for sf in old}


def test_no_reuse_without_timestamps(ports):
    ports(2)
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config(time_wait=0.5))
    server.listen(PORT)

    def no_timestamps(packet, sender):                 # the client's SYN offers none
        p = pk.parse_packet(packet)
        return _without_timestamps(packet) if p.flags == pk.SYN else packet
    old, seen = _end_in_time_wait(client, server, 2, 0.0, mutate=no_timestamps)
    assert not any(sf.ts_ok for sf in old)
    assert not any(type(o) is opt.Timestamps for src, p in seen if src is server
                   for o in options_of(p))
    with pytest.raises(StateError, match="no free local port to 198.18.0.2:5000"):
        client.connect((S0, PORT), 30.0)
    assert len(old) == 2 and all(sf.state == TIME_WAIT for sf in old)


def test_the_new_syn_s_tsval_is_above_the_old_one_after_a_long_connection(ports):
    """The TSval clock is the 4-tuple's (a keyed hash with no time in it): an old connection
    that lived 2.5 hours does not put the new one's TSvals below its own, as an offset that
    moves with the ISN's clock (250,000 ticks a second, past 2**31 in 2.4 hours) would."""
    ports(1)
    client = Endpoint([C0], Config())
    server = Endpoint([S0], Config(time_wait=0.5))
    server.listen(PORT)
    (old,), seen = _end_in_time_wait(client, server, 1, 0.0, lifetime=9000.0)
    now = old.ts_recent_at + 1.0
    client.connect((S0, PORT), now)
    (syn,) = client.packets_to_send(now)
    last = [p for src, p in seen if src is client][-1]
    assert 0 < (_tsval(syn) - _tsval(last)) % (1 << 32) < 1 << 31

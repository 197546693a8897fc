"""Many connections at once: the work per packet or per event follows the connections that have
something to do, not the number open. Idle connections are not visited (counted calls, no
timings), many transfers at once arrive byte-exact, and take the same course on both backends.
"""

from __future__ import annotations

import pytest

from mptcp_fast import _backend
from mptcp_fast.engine import Config, Endpoint, RandomSource, events as ev
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network

from enginenet import C0, C1, PORT, S0, count_connection_visits

IDLE = 30
SIZE = 1 << 20


def _pair(client_bytes: int = 0, seed: int = 1):
    """A client (two addresses) and a server BulkApp on two clean paths; nothing opened."""
    cfg = Config(time_wait=0.5, delayed_ack=0.04)
    net = Network(seed=seed)
    client = BulkApp(Endpoint([C0, C1], cfg, random=RandomSource.seeded(seed)),
                     send_bytes=client_bytes, close_when_done=False)
    server = BulkApp(Endpoint([S0], cfg, random=RandomSource.seeded(seed + 1)),
                     close_when_done=False)
    server.endpoint.listen(PORT)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    for address in (C0, C1):
        net.add_path(address, S0, rate=100e6, delay=0.005)
    return net, client, server


def test_bulkapp_feeds_only_the_connections_with_events_or_send_space(backend):
    """While one connection moves a MiB, the application never feeds the idle ones (a
    transfer fed is done or blocked until its connection has an event or more send space),
    on either side."""
    net, client, server = _pair()
    idle = [client.open((S0, PORT), 0.0) for _ in range(IDLE)]
    net.wake(client)
    net.run(until=10.0)
    fed = {id(t): t.fed for app in (client, server) for t in app.transfers.values()}
    assert len(fed) == 2 * IDLE and all(c.established for c in idle)
    client.send_bytes = SIZE
    active = client.open((S0, PORT), net.now)
    net.wake(client)
    net.run(until=30.0, stop=lambda: any(t.received == SIZE for t in server.transfers.values()))
    mover = client.transfers[active.id]
    assert mover.sent == SIZE and mover.fed > 10
    for app in (client, server):
        for t in app.transfers.values():
            if id(t) in fed:
                assert t.fed == fed[id(t)], "an idle connection was fed"


def test_the_engine_does_not_visit_idle_connections(monkeypatch):
    """Per packet and per timer the endpoint flushes, times and reads only the connections
    that had input or a timer due: while one connection moves a MiB, none of the idle ones
    is flushed, asked for its timer, has a timer run or is asked for an event (the pure
    engine's methods counted; the compiled one takes the same course)."""
    visits = count_connection_visits(monkeypatch)
    with _backend.use("python"):
        net, client, server = _pair()
        idle = [client.open((S0, PORT), 0.0) for _ in range(IDLE)]
        net.wake(client)
        net.run(until=10.0)                # the handshakes' last timers too
        idle += [t.conn for t in server.transfers.values()]
        assert len(idle) == 2 * IDLE and all(c.next_timer() is None for c in idle)
        visits.clear()
        client.send_bytes = SIZE
        active = client.open((S0, PORT), net.now)
        net.wake(client)
        net.run(until=30.0,
                stop=lambda: any(t.received == SIZE for t in server.transfers.values()))
    assert client.transfers[active.id].sent == SIZE
    assert visits.get(id(active), 0) > 100
    assert [visits[id(c)] for c in idle if id(c) in visits] == []


def test_next_event_and_connections_with_events_take_each_connection_once(backend):
    """Events read with next_event and with connections_with_events come in the order they
    happened per connection, each connection listed once, whichever way they are read."""
    net, client, server = _pair()
    client.paused = server.paused = True              # the events wait in the endpoints
    conns = [client.open((S0, PORT), 0.0) for _ in range(5)]
    net.wake(client)
    net.run(until=1.0)
    ep = client.endpoint
    first = ep.next_event()
    assert type(first) is ev.ConnectionEstablished and first.connection == conns[0].id
    listed = ep.connections_with_events()
    assert [c.id for c in listed] == [c.id for c in conns]
    assert ep.next_event() is None and ep.connections_with_events() == []
    kinds = []
    for conn in listed:
        while (event := conn.next_event()) is not None:
            kinds.append((event.connection, type(event)))
    assert (conns[0].id, ev.ConnectionEstablished) not in kinds       # read above
    assert (conns[1].id, ev.ConnectionEstablished) in kinds
    server_events = []
    while (event := server.endpoint.next_event()) is not None:
        server_events.append(event.connection)
    assert sorted(set(server_events)) == sorted(server.endpoint.connections)
    assert server.endpoint.connections_with_events() == []


def _many(backend_name: str, n: int = 20, size: int = 200_000):
    with _backend.use(backend_name):
        net, client, server = _pair(size)
        client.close_when_done = True
        server.close_when_done = True
        conns = [client.open((S0, PORT), 0.0) for _ in range(n)]
        net.wake(client)
        net.run(until=60.0, stop=lambda: server.ended >= n)
        got = list(server.transfers.values())
        sent = {c.id: client.transfers[c.id] for c in conns}
        assert len(got) == n and all(t.received == size and t.eof for t in got)
        digests = {t.sent_hash.hexdigest() for t in sent.values()}
        assert len(digests) == 1 and {t.received_hash.hexdigest() for t in got} == digests
        return (net.now, client.endpoint.packets_sent, server.endpoint.packets_sent,
                [sorted(sf.bytes_sent for sf in c.all_subflows) for c in conns],
                [t.fed for t in sent.values()])


def test_many_transfers_at_once_are_exact_and_take_one_course_on_both_backends():
    """Twenty transfers at once arrive byte-exact, and the compiled engine and application
    take exactly the pure one's course (virtual time, packets, bytes per subflow, feeds)."""
    courses = [_many(b) for b in _backend.available()]
    assert all(course == courses[0] for course in courses)
    if "cython" not in _backend.available():
        pytest.skip("compiled backend not built: the pure course only")


@pytest.mark.parametrize("backend_name", _backend.available())
def test_a_setting_changed_between_inputs_reaches_every_transfer(backend_name):
    """The application feeds only transfers with something new, but a setting it feeds by is
    new for all of them: a scenario that holds its connections open and then sets
    ``close_when_done`` (as the conformance scenarios do once their hold is over) closes every
    one at its next turn, with no event in between; so does a server told once its peer's
    streams have ended."""
    with _backend.use(backend_name):
        net, client, server = _pair(50_000)
        conns = [client.open((S0, PORT), 0.0) for _ in range(3)]
        net.wake(client)
        net.run(until=2.0, stop=lambda: all(t.received == 50_000
                                            for t in server.transfers.values())
                and len(server.transfers) == 3)
        net.run(until=net.now + 0.5)                   # quiet: every byte acknowledged
        assert not any(c.local_closed for c in conns)
        client.close_when_done = True
        client.run(net.now)                            # no event since: the setting alone
        assert all(c.local_closed for c in conns)
        net.wake(client)                               # its DATA_FINs go out
        net.run(until=net.now + 1.0, stop=lambda: server.ended == 3)
        net.run(until=net.now + 0.5)
        assert server.ended == 3 and not any(t.conn.local_closed
                                             for t in server.transfers.values())
        server.close_when_done = True
        server.run(net.now)
        assert all(t.conn.local_closed for t in server.transfers.values())

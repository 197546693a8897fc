"""A client and a server engine in the emulated network, for the engine's tests."""

from __future__ import annotations

import dataclasses
import hashlib

from mptcp_fast.wire import options as opt
from mptcp_fast.wire import packet as pk
from mptcp_fast.engine import Config, Endpoint, RandomSource, events as ev
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network

C0, C1, C2 = "198.18.0.1", "198.18.1.1", "198.18.2.1"
S0, S1 = "198.18.0.2", "198.18.1.2"
PORT = 5000
FAST = dict(time_wait=0.5, delayed_ack=0.04)


@dataclasses.dataclass
class Run:
    net: Network
    client: BulkApp
    server: BulkApp
    conn: object
    end: float

    @property
    def up(self):
        """(client's transfer, server's transfer) of the one connection."""
        return self.client.transfers[self.conn.id], next(iter(self.server.transfers.values()))

    def check_exact(self, up_bytes: int, down_bytes: int) -> None:
        """Every byte arrived, in order, both ways (SHA-256 of the streams)."""
        c, s = self.up
        assert (c.sent, s.received) == (up_bytes, up_bytes)
        assert (s.sent, c.received) == (down_bytes, down_bytes)
        assert s.received_hash.hexdigest() == c.sent_hash.hexdigest()
        assert c.received_hash.hexdigest() == s.sent_hash.hexdigest()
        assert c.eof and s.eof

    def subflow_bytes(self, side="client"):
        conn = self.conn if side == "client" else next(iter(self.server.transfers.values())).conn
        return {sf.sid: sf.bytes_sent for sf in conn.all_subflows}


def make(paths, *, up=0, down=0, client_addresses=(C0, C1), server_addresses=(S0,),
         config=None, server_config=None, seed=1, pcap=None, seeded_endpoints=False, **fast):
    """The emulated network with a client and a server; with ``seeded_endpoints`` their keys,
    ISN secrets, nonces and ports come from RandomSource.seeded(seed) and (seed + 1): every
    run of a seed is the same to the bit."""
    cfg = config or Config(**{**FAST, **fast})
    net = Network(seed=seed, pcap=pcap)
    client_random = RandomSource.seeded(seed) if seeded_endpoints else None
    server_random = RandomSource.seeded(seed + 1) if seeded_endpoints else None
    client = BulkApp(Endpoint(list(client_addresses), cfg, random=client_random),
                     send_bytes=up, seed=seed)
    server = BulkApp(Endpoint(list(server_addresses), server_config or cfg,
                              random=server_random), send_bytes=down, seed=seed + 1)
    server.endpoint.listen(PORT)
    net.add_host(client, client_addresses)
    net.add_host(server, server_addresses)
    made = {}
    for (a, b), kwargs in paths.items():
        made[(a, b)] = net.add_path(a, b, **{"offload": cfg.offload, **kwargs})
    return net, client, server, made


def finished(client, server):
    def stop():
        if not client.transfers or not server.transfers:
            return False
        return all(t.done for t in client.transfers.values()) and \
            all(t.done for t in server.transfers.values())
    return stop


def transfer(paths, *, up=0, down=0, until=120.0, settle=True, before_run=None,
             invariant=True, **kwargs) -> Run:
    """Open one connection, move ``up`` bytes to the server and ``down`` back, run until both
    streams ended (and, with ``settle``, until everything closed). Every such run checks the
    stream invariant (``check_prefix``) unless ``invariant=False`` (a test that corrupts the
    stream on purpose, e.g. a rewriting middlebox after an MP_FAIL fallback)."""
    net, client, server, made = make(paths, up=up, down=down, **kwargs)
    conn = client.open((S0, PORT), 0.0)
    if before_run is not None:
        before_run(net, client, server, made, conn)
    end = net.run(until=until, stop=finished(client, server))
    if settle:
        end = net.run(until=end + 30.0)
    net.close()
    run = Run(net, client, server, conn, end)
    if invariant and server.transfers:
        check_prefix(run)
    return run


# -- two endpoints joined directly, packet by packet (no emulated network)

def pump(a, b, now=0.0, until=None, mutate=None, step=0.001):
    """Move packets between two endpoints (``step`` seconds apart), and fire their timers when
    they are quiet, up to ``until`` (half a second on by default); ``mutate(packet, sender)``
    may return a replacement (or None to drop it). Returns every packet, as (sender, bytes)."""
    until = now + 0.5 if until is None else until
    seen = []
    while now <= until:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for packet in src.packets_to_send(now):
                seen.append((src, packet))
                if mutate is not None:
                    packet = mutate(packet, src)
                    if packet is None:
                        continue
                dst.receive_packet(packet, now)
                moved = True
        if moved:
            now += step
            continue
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if not timers or min(timers) > until:
            break
        now = max(now, min(timers))
        for ep in (a, b):
            if ep.get_timer() is not None and ep.get_timer() <= now:
                ep.handle_timer(now)
    return seen


def options_of(packet):
    p = pk.parse_packet(packet)
    return opt.parse_tcp_options(bytes(p.options(packet)))


def drain(ep):
    out = []
    while (e := ep.next_event()) is not None:
        out.append(e)
    return out


class SharedAddress:
    """Several apps behind one address (as if on one host): packets go to the app whose
    endpoint has a subflow on the destination port. Lets flows of different endpoints share
    one emulated path (one bottleneck)."""

    def __init__(self, *apps):
        self.apps = apps

    def _owner(self, data):
        dport = pk.parse_packet(data).dport
        for app in self.apps:
            if any(sf.lport == dport for sf in app.endpoint._subflows.values()):
                return app
        return self.apps[0]

    def receive_packet(self, data, now):
        self._owner(data).receive_packet(data, now)

    def packets_to_send(self, now):
        return [p for app in self.apps for p in app.packets_to_send(now)]

    def get_timer(self):
        timers = [t for t in (app.get_timer() for app in self.apps) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now):
        for app in self.apps:
            when = app.get_timer()
            if when is not None and when <= now:
                app.handle_timer(now)


# -- the stream invariant: each side's application only ever receives a
# prefix of what the other side's application sent, exactly once, in order (RFC 8684 §3.3:
# the data-level stream is a byte stream whatever happens to the subflows; §3.7: fallback
# keeps it so)

class InvariantViolation(AssertionError):
    """An application received bytes that are not the next bytes its peer sent."""


def _stream_prefix_hash(source: bytes, length: int) -> str:
    """SHA-256 of the first ``length`` bytes of a BulkApp stream (``source`` repeats its
    first half: apps.pattern)."""
    block = len(source) // 2
    digest = hashlib.sha256()
    done = 0
    while done < length:
        start = done % block
        size = min(block - start, length - done)
        digest.update(memoryview(source)[start:start + size])
        done += size
    return digest.hexdigest()


def check_prefix(run: Run) -> None:
    """The invariant for a BulkApp transfer, finished or not: each side received a prefix of
    what the other sent (its length and SHA-256), and EndOfStream only with all of it."""
    c, s = run.up
    for sender, receiver, name in ((c, s, "client -> server"), (s, c, "server -> client")):
        if receiver.received > sender.sent:
            raise InvariantViolation(f"{name}: {receiver.received} bytes received, "
                                     f"{sender.sent} sent")
        if receiver.received_hash.hexdigest() != _stream_prefix_hash(sender.source,
                                                                     receiver.received):
            raise InvariantViolation(f"{name}: the {receiver.received} bytes received are "
                                     f"not the first {receiver.received} bytes sent")
        if receiver.eof and receiver.received != sender.to_send:
            raise InvariantViolation(f"{name}: EndOfStream after {receiver.received} of "
                                     f"{sender.to_send} bytes")


class StreamLedger:
    """What each application sent on each connection, and how much of it its peer received;
    ``received`` checks every chunk as it arrives. A connection is known by its initial
    subflow's (client, server) pair of (address, port), so both ends find the same entry."""

    def __init__(self):
        self.sent = {}                     # (pair, sender is client) -> bytearray
        self.received = {}                 # (pair, sender is client) -> bytes received
        self.closed = set()                # (pair, sender is client): the sender closed
        self.eof = set()                   # (pair, sender is client): its EndOfStream came

    @staticmethod
    def _pair(conn):
        local, remote = tuple(conn.local), tuple(conn.remote)
        return (local, remote) if conn.is_client else (remote, local)

    def record_sent(self, conn, data) -> None:
        self.sent.setdefault((self._pair(conn), conn.is_client), bytearray()).extend(data)

    def record_close(self, conn) -> None:
        self.closed.add((self._pair(conn), conn.is_client))

    def record_received(self, conn, chunk) -> None:
        """``chunk`` arrived at ``conn``: it must be the next bytes the peer sent."""
        key = (self._pair(conn), not conn.is_client)
        if key in self.eof:
            raise InvariantViolation(f"{len(chunk)} bytes after EndOfStream on {key}")
        at = self.received.get(key, 0)
        sent = self.sent.get(key, b"")
        expected = bytes(sent[at:at + len(chunk)])
        if bytes(chunk) != expected:
            where = next((i for i, (a, b) in enumerate(zip(chunk, expected)) if a != b),
                         len(expected))
            raise InvariantViolation(
                f"{key}: {len(chunk)} bytes received at offset {at} differ from what was sent "
                f"from byte {at + where} ({len(sent)} bytes sent in all)")
        self.received[key] = at + len(chunk)

    def record_eof(self, conn) -> None:
        """EndOfStream at ``conn``: the peer closed and every byte it sent arrived."""
        key = (self._pair(conn), not conn.is_client)
        got, sent = self.received.get(key, 0), len(self.sent.get(key, b""))
        if key not in self.closed or got != sent:
            raise InvariantViolation(f"{key}: EndOfStream after {got} of {sent} bytes "
                                     f"(peer closed: {key in self.closed})")
        self.eof.add(key)


class StreamApp:
    """A host for the emulated network whose application writes what it is told to
    (``write``), reads everything, and checks every chunk against the peer's writes in a
    shared StreamLedger as it arrives. ``events`` keeps every non-data event."""

    def __init__(self, endpoint, ledger: StreamLedger):
        self.endpoint, self.ledger = endpoint, ledger
        self.backlog = {}                  # connection id -> bytearray not yet taken by send()
        self.closing = set()               # connection ids to close once the backlog is sent
        self.conns = {}                    # connection id -> Connection (kept after it ends)
        self.events = []

    # -- the host face netem calls
    def receive_packet(self, data, now: float) -> None:
        self.endpoint.receive_packet(data, now)
        self.run(now)

    def packets_to_send(self, now: float):
        return self.endpoint.packets_to_send(now)

    def get_timer(self):
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.run(now)

    # -- the application
    def open(self, remote, now: float):
        conn = self.endpoint.connect(remote, now)
        self.conns[conn.id] = conn
        return conn

    def write(self, conn, data: bytes) -> None:
        self.backlog.setdefault(conn.id, bytearray()).extend(data)
        self._feed(conn)

    def close(self, conn) -> None:
        self.closing.add(conn.id)
        self._feed(conn)

    def run(self, now: float) -> None:
        ep, ledger = self.endpoint, self.ledger
        while (event := ep.next_event()) is not None:
            conn = ep.connections.get(event.connection) or self.conns.get(event.connection)
            if conn is not None:
                self.conns[conn.id] = conn
            if type(event) is ev.DataReceived:
                ledger.record_received(conn, event.data)
                continue
            self.events.append((now, event))
            if type(event) is ev.EndOfStream:
                ledger.record_eof(conn)
        for conn in list(self.conns.values()):
            self._feed(conn)

    def _feed(self, conn) -> None:
        if conn.terminated or conn.local_closed or not conn.established:
            return
        backlog = self.backlog.get(conn.id)
        while backlog:
            taken = conn.send(bytes(backlog[:1 << 16]))
            if not taken:
                break
            self.ledger.record_sent(conn, backlog[:taken])
            del backlog[:taken]
        if conn.id in self.closing and not backlog:
            conn.close()
            self.ledger.record_close(conn)


def count_connection_visits(monkeypatch) -> dict:
    """{id(connection): calls} of the pure engine's per-connection work (flush, next_timer,
    handle_timer, next_event), counted from now on: who the endpoint visited."""
    from mptcp_fast.engine import connection
    visits: dict[int, int] = {}
    for name in ("flush", "next_timer", "handle_timer", "next_event"):
        method = getattr(connection.Connection, name)

        def counted(self, *args, _method=method, **kwargs):
            visits[id(self)] = visits.get(id(self), 0) + 1
            return _method(self, *args, **kwargs)
        monkeypatch.setattr(connection.Connection, name, counted)
    return visits

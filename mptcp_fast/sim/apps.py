"""Small applications that drive Endpoints in the emulated network: the demo, the tests and the
benchmarks use them. ``BulkApp`` wraps an Endpoint in the sans-IO host face ``netem`` calls,
and after every input runs a bulk-transfer application: send ``send_bytes`` of a seeded
pseudo-random stream on each connection, read (and SHA-256) everything received, and close
when done (with nothing to send, once the peer's stream ended, unless ``wait_for_peer`` is
False). ``paused = True`` stops it reading and writing (a stalled application).

Its work per input follows the connections that have something to do, not the number open:
it reads the events of the connections that have some and feeds only those, and the ones the
endpoint names as having more send space (``Endpoint.connections_with_send_space``). A
connection it fed is then done, or waits with a send space of 0 until the endpoint names it.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from mptcp_fast.engine import events as ev

if TYPE_CHECKING:
    # the modules, not their classes: in the compiled build these names are apps.pxd's cimports
    from mptcp_fast._typing import Address, BytesLike
    from mptcp_fast.engine import connection as _connection, endpoint as _endpoint

__all__ = ["BulkApp", "pattern"]

_BLOCK = 1_048_573                       # a prime length, so the stream does not repeat on 2**k
_DataReceived = ev.DataReceived          # a module global: one cached lookup per event


def pattern(seed: int) -> bytes:
    """The block the stream of ``seed`` repeats (twice, so any window of it is one slice)."""
    block = random.Random(seed).randbytes(_BLOCK)
    return block + block


class Transfer:
    """What one connection of a BulkApp sent and received."""

    def __init__(self, conn: _connection.Connection, send_bytes: int, source: bytes,
                 order: int = 0) -> None:
        self.conn = conn
        self.order = order                 # made in this order: the order transfers are fed
        self.ready = False                 # in the application's list of transfers to feed
        self.fed = 0                       # times the application fed it (sent or closed)
        self.to_send = send_bytes
        self.sent = 0
        self.source = source
        self.sent_hash = hashlib.sha256()
        self.received = 0
        self.received_hash = hashlib.sha256()
        self.eof = False
        self.terminated: ev.CloseReason | None = None
        self.established_at: float | None = None
        self.eof_at: float | None = None
        self.subflow_events: list[tuple[float, ev.Event]] = []
        self.timeline: list[tuple[float, int]] = []   # (time, bytes received), every ~1 %

    @property
    def done(self) -> bool:
        """Everything was sent and the peer's stream ended."""
        return self.eof and self.sent == self.to_send


def _made_order(t: Transfer) -> int:
    return t.order


class BulkApp:
    """An Endpoint wrapped as a ``netem`` host that runs a bulk transfer (see the module
    text): the demo, the tests and the benchmarks use it.

    Calling ``BulkApp(...)`` builds the active backend's object (compiled or pure), as
    ``Endpoint`` does.

    It sets the endpoint's ``watch_send_space`` (it feeds only the connections the endpoint
    names) and ``receive_views`` (it only hashes and counts what it receives, so a large
    segment's payload may come as a view of the packet).

    Args:
        endpoint: the ``Endpoint`` it drives.
        send_bytes: what it sends on each connection, from the seeded pattern.
        seed: the seed of the pattern sent.
        hash_data: keep the SHA-256 of what is received (False for benchmarks).
        close_when_done: close each connection once its bytes were sent (and, with nothing
            to send, once the peer's stream ended).
        wait_for_peer: with nothing to send, wait for the peer's stream to end before
            closing.

    Attributes:
        transfers (dict[int, Transfer]): per connection id, what was sent and received.
        events (list): every event other than data, in order.
        paused (bool): set it to stop the application reading and writing.
    """

    def __init__(self, endpoint: _endpoint.Endpoint, send_bytes: int = 0, seed: int = 1,
                 hash_data: bool = True, close_when_done: bool = True,
                 wait_for_peer: bool = True) -> None:
        self.endpoint = endpoint
        self.send_bytes = send_bytes
        self.source = pattern(seed)
        self.hash_data = hash_data
        self.close_when_done = close_when_done
        self.wait_for_peer = wait_for_peer  # nothing to send: close once the peer's stream ends
        self.transfers: dict[int, Transfer] = {}
        self.events: list[ev.Event] = []   # every non-data event, in order
        self.paused = False                # an application that neither reads nor writes
        self.ended = 0                     # connections whose peer ended its stream
        self._made = 0                     # transfers made (each one's ``order``)
        endpoint.watch_send_space = True   # (connections_with_send_space: whom to feed)
        endpoint.receive_views = True      # data is hashed and counted: any bytes-like will do
        # the settings the transfers were last fed under: when one changes (a scenario closes
        # once its hold is over), every transfer is fed once
        self._fed_close, self._fed_wait = close_when_done, wait_for_peer

    # -- the host face netem calls
    def receive_packet(self, data: bytes, now: float) -> None:
        """Give the endpoint a packet, then run the application."""
        self.endpoint.receive_packet(data, now)
        self.run(now)

    def receive_packets(self, packets: Iterable[BytesLike], now: float,
                        verified: Sequence[bool] | None = None) -> None:
        """A batch that arrived together (a TUN read): the application runs once after it
        (``verified``: Endpoint.receive_packets')."""
        self.endpoint.receive_packets(packets, now, verified)
        self.run(now)

    def packets_to_send(self, now: float) -> list[bytes]:
        """The endpoint's packets to send (the host face ``netem`` calls)."""
        return self.endpoint.packets_to_send(now)

    def packets_to_write(self, now: float) -> list:
        """The endpoint's packets for a writev host (``Endpoint.packets_to_write``: bytes, or
        (headers, payload) tuples; TunHost calls it)."""
        return self.endpoint.packets_to_write(now)

    def get_timer(self) -> float | None:
        """The endpoint's next timer (the host face ``netem`` calls)."""
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        """Run the endpoint's timers, then the application."""
        self.endpoint.handle_timer(now)
        self.run(now)

    # -- the application
    def open(self, remote: tuple[Address, int], now: float,
             **kwargs: Any) -> _connection.Connection:
        """Connect to ``remote`` = (address, port) and start its transfer; ``kwargs`` go to
        ``Endpoint.connect``. Returns the ``Connection``."""
        conn = self.endpoint.connect(remote, now, **kwargs)
        self.transfers[conn.id] = self._transfer(conn)
        return conn

    def _transfer(self, conn: _connection.Connection) -> Transfer:
        self._made += 1
        return Transfer(conn, self.send_bytes, self.source, self._made)

    def run(self, now: float) -> None:
        """The application's turn: read every event, hash the data, send what fits, close
        when done (the host face calls it after every input). Only the transfers with an
        event or with more send space are fed, in the order they were made: a transfer fed
        is done or has no send space left, and only an event, more space, or a change of
        ``close_when_done``/``wait_for_peer`` changes that."""
        if self.paused:                    # the events and the send space wait in the endpoint
            return
        ep = self.endpoint
        ready: list[Transfer] = []
        if self.close_when_done != self._fed_close or self.wait_for_peer != self._fed_wait:
            # rare: any transfer may now have something to do
            self._fed_close, self._fed_wait = self.close_when_done, self.wait_for_peer
            for t in self.transfers.values():
                t.ready = True
                ready.append(t)
        while True:
            event = ep.next_event()
            if event is None:
                break
            t = self.transfers.get(event.connection)
            if t is None:
                conn = ep.connections.get(event.connection)
                if conn is None:                   # born and gone between two calls
                    self.events.append(event)
                    continue
                t = self.transfers[event.connection] = self._transfer(conn)
            if not t.ready:
                t.ready = True
                ready.append(t)
            if type(event) is _DataReceived:
                data = event.data
                if self.hash_data:
                    t.received_hash.update(data)
                t.received += len(data)
                if not t.timeline or t.received - t.timeline[-1][1] >= 1 << 16:
                    t.timeline.append((now, t.received))
                continue
            self.events.append(event)
            kind = type(event)
            if kind is ev.ConnectionEstablished:
                t.established_at = now
            elif kind is ev.EndOfStream:
                t.eof, t.eof_at = True, now
                self.ended += 1
                t.timeline.append((now, t.received))
            elif kind is ev.ConnectionTerminated:
                t.terminated = event.reason  # type: ignore[attr-defined]  # (of that kind)
            elif kind in (ev.SubflowEstablished, ev.SubflowClosed):
                t.subflow_events.append((now, event))
        # (connections_with_send_space makes a list: not when none waits)
        for conn in ep.connections_with_send_space() if ep._with_space else ():
            t = self.transfers.get(conn.id)
            if t is not None and not t.ready:
                t.ready = True
                ready.append(t)
        if len(ready) > 1:
            ready.sort(key=_made_order)
        for t in ready:
            t.ready = False
            self._feed(t)

    def peer_ended(self) -> bool:
        """Whether a peer ended its stream on one of the connections: ``Network.run``'s
        ``stop`` for a transfer to one server (a C call per event where compiled)."""
        return self.ended > 0

    def _feed(self, t: Transfer) -> None:
        t.fed += 1
        conn = t.conn
        if conn.terminated or conn.local_closed or t.established_at is None:
            return
        source, n = t.source, len(t.source) // 2
        while t.sent < t.to_send:
            space = conn._send_space()      # (send_space: a C call when compiled)
            if space <= 0:
                return
            start = t.sent % n
            size = min(space, t.to_send - t.sent, n, 1 << 18)
            piece = memoryview(source)[start:start + size]
            taken = conn.send(piece)
            if self.hash_data:
                t.sent_hash.update(piece[:taken])
            t.sent += taken
            if taken < size:
                return
        # with nothing to send, the stream ends once the peer's did (a reader with nothing to
        # say): ended at once, it would leave no joins, which follow only while neither side
        # has closed (engine/connection.py, join_refusal)
        if self.close_when_done and (t.to_send or t.eof or not self.wait_for_peer):
            conn.close()


if __name__ == "mptcp_fast.sim.apps":  # the pure source, not its compiled copy
    from mptcp_fast import _backend
    # the public BulkApp builds the active backend's object (through globals(): Cython
    # refuses an assignment to a class name it compiles, even in a branch it never runs)
    globals()["BulkApp"] = _backend.public_class(BulkApp, __name__)

"""The Endpoint: one host's MPTCP engine, sans-IO (after aioquic's QuicConnection).

    ep = Endpoint(["198.18.0.1", "198.18.1.1"], Config())
    ep.listen(5000)                                   # server side
    conn = ep.connect(("198.18.0.2", 5000), now)      # client side
    ep.receive_packet(packet_bytes, now)              # every IP packet for our addresses
    for packet in ep.packets_to_send(now): ...        # whole IPv4/IPv6 packets to put on the wire
    ep.get_timer(); ep.handle_timer(now)              # when to call back, and the call
    event = ep.next_event()                           # ConnectionEstablished, DataReceived, ...

It owns its addresses, the listening ports, the token table and every connection, and places
each incoming packet: by its 4-tuple, else a SYN with MP_CAPABLE on a listening port opens a
connection and a SYN with MP_JOIN finds its connection by token (RFC 8684 §3.2); anything else
is answered with a RST as TCP does (RFC 9293 §3.10.7.1), an unknown token with MP_TCPRST.
Nothing from the network raises: bad packets are counted in ``stats`` and dropped.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import TYPE_CHECKING, Iterable, Sequence

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from .. import _check
from ..wire import crypto
from ..wire import options as opt
from ..wire import packet as pk
from ..errors import StateError
from mptcp_fast.engine.config import Config
from mptcp_fast.engine.cookies import SynCookies
from mptcp_fast.engine.fastopen import FastOpen
from mptcp_fast.engine.events import CloseReason
from mptcp_fast.engine.isn import IsnGenerator
from mptcp_fast.engine.randomness import RandomSource
from mptcp_fast.wire import segment

# Shared modules absolutely, the compiled siblings relatively: this source also builds
# mptcp_fast._cengine.endpoint (docs/design.md, "Two backends, one API").
from .connection import Connection
from .pathmanager import _text, first_of_family
from .subflow import Subflow

if not cython.compiled:     # compiled: the C enum, cimported by endpoint.pxd
    from .subflow import TIME_WAIT

    def _clear(items: list) -> None:    # compiled: pyx/mf_list.pxd's one C call
        items.clear()
    # the C reader's name in the compiled branch of receive_packet (endpoint.pxd cimports it);
    # the pure run reads through the active twin's reader instead
    from mptcp_fast.wire._segment_py import read as read_packet  # noqa: F401

if TYPE_CHECKING:
    from mptcp_fast._typing import Address, BytesLike
    from mptcp_fast.engine.events import Event

__all__ = ["Endpoint"]

EPHEMERAL_PORTS = (32768, 60999)           # Linux's ip_local_port_range
RANDOM_PORT_TRIES = 8                      # random picks before the range is walked
TW_REUSE_DELAY = 1.0                       # Linux's tcp_tw_reuse_delay (1,000 ms)


class Endpoint:
    """One host's MPTCP engine, sans-IO: whole IP packets in and out as bytes, time passed in.

    An Endpoint owns its addresses, its listening ports, the token table and every
    connection. Feed it every packet addressed to it (``receive_packet``), put what
    ``packets_to_send`` returns on the wire, call ``handle_timer`` when ``get_timer`` says,
    and read what happened with ``next_event``. Nothing from the network raises: damaged or
    unplaceable packets are counted in ``stats`` and dropped (or answered with a RST).

    Calling ``Endpoint(...)`` builds the active backend's object (compiled or pure, see
    ``mptcp_fast.BACKEND``); ``isinstance(obj, Endpoint)`` holds for either.

    Args:
        addresses: the host's own addresses, text ("198.18.0.1", "2001:2::1") or packed
            bytes; one subflow may start from each. At least one.
        config: what the endpoint and its connections do (``Config()`` by default).
        random: where every random number comes from (keys, nonces, ISN and cookie
            secrets, ports): the OS CSPRNG by default; ``RandomSource.seeded(seed)``
            replays a run, for tests and simulations only.

    Raises:
        TypeError: ``config`` is not a ``Config`` or ``random`` not a ``RandomSource``.
        ValueError: no address, or one that is not an IPv4 or IPv6 address.

    Attributes:
        addresses (list[bytes]): the local addresses, packed, in order.
        connections (dict[int, Connection]): the live connections by id.
        config (Config): the endpoint's configuration.
        watch_send_space (bool): when True, ``connections_with_send_space`` lists the
            connections whose send space grew.
    """

    def __init__(self, addresses: Iterable[Address], config: Config | None = None,
                 random: RandomSource | None = None) -> None:
        self.config = config if config is not None else Config()
        if not isinstance(self.config, Config):
            raise TypeError("config must be a mptcp_fast.engine.Config")
        # every random number the endpoint and its connections draw (engine/randomness.py):
        # the OS CSPRNG unless a test gives a seeded source
        self.random = RandomSource() if random is None else random
        if not isinstance(self.random, RandomSource):
            raise TypeError("random must be a mptcp_fast.engine.RandomSource")
        self.addresses = [_check.address("address", a) for a in addresses]
        if not self.addresses:
            raise ValueError("an endpoint needs at least one address")
        self._own = set(self.addresses)
        self._address_ids = {a: i + 1 for i, a in enumerate(self.addresses)}   # stable ids
        self.listening: set[int] = set()
        self.connections: dict[int, Connection] = {}
        self.tokens: crypto.TokenTable[Connection] = crypto.TokenTable(
            self.config.max_connections,
                                        version=self.config.version, key_source=self.random.key)
        isn_secret = self.config.isn_secret
        self.isn = IsnGenerator(self.random.secret() if isn_secret is None else isn_secret)
        self.cookies = SynCookies(self.random.secret())
        # TCP Fast Open (engine/fastopen.py): the server's cookie secret (Config.fastopen_key,
        # else drawn: only when asked for, so that other runs draw as before) and the
        # client's cache of servers
        self.fastopen = None
        if self.config.fastopen:
            key = self.config.fastopen_key
            self.fastopen = FastOpen(self.random.secret() if key is None else key)
        self.half_open = 0                  # server handshakes waiting for their third ACK
        self.counts: Counter[str] = Counter()   # drops and refusals by reason (see ``stats``)
        self.packets_received = self.packets_sent = 0
        self.now = 0.0
        self._subflows: dict[bytes, Subflow] = {}   # by flow_key(local, lport, remote, rport)
        # receive_packet's two recent subflows and their keys (_forget_recent)
        self._recent_flow: bytes | None = None
        self._other_flow: bytes | None = None
        self._recent_sf: Subflow | None = None
        self._other_sf: Subflow | None = None
        self._port_range = EPHEMERAL_PORTS  # read once: the counts below stay consistent
        self._ports_taken: dict[tuple[bytes, bytes, int], int] = {}
        #                                     (local, remote, rport) -> subflows in the range
        self._next_id = 0
        self._out: list[bytes] = []
        self._dirty: list[Connection] = []        # connections to flush, each once (_touched)
        self._with_events: list[Connection] = []  # connections with events, in order (a few)
        self._events_at = 0                 # next_event's place in it (those before: read)
        self.watch_send_space = False       # list connections whose send space grew
        # set by a host whose device completes TCP checksums (a TUN device with offload:
        # virtio's NEEDS_CSUM, Linux's CHECKSUM_PARTIAL): the (headers, payload) segments of
        # packets_to_write then carry the pseudo-header sum only, and neither this process
        # nor the kernel sums their payload; packets_to_send completes them itself
        self.checksum_offload = False
        # set by a host whose application takes DataReceived.data as any bytes-like object:
        # the payload of a received segment of VIEW_PAYLOAD (8 KiB) bytes or more, when the
        # packet is bytes (or a read-only view of bytes), is then never copied in this
        # process: the event's data is a read-only memoryview of the packet (it holds the
        # packet alive, and its bytes never change). Without it, data is always bytes.
        self.receive_views = False
        self._with_space: list[Connection] = []   # (connections_with_send_space)
        # (time, order, connection id) heap, stale entries skipped: an entry holds no tracked
        # object (the collector stops tracking it at its first pass; thousands of connections
        # keep thousands waiting)
        self._timers: list[tuple[float, int, int]] = []
        self._timer_of: dict[int, float] = {}     # connection id -> time in the heap
        self._timed: dict[int, Connection] = {}   # connection id -> connection, while armed
        self._order = 0
        self._number = 0
        self._read = segment.reader()       # the twin bound now: an engine keeps its reader

    # ================================================================ set-up and the user's calls
    def listen(self, port: int) -> None:
        """Accept MPTCP connections (and plain TCP ones, as fallback) on ``port``, on every
        address of the endpoint. Each new connection is reported by ``ConnectionEstablished``.

        Raises:
            TypeError: ``port`` is not an int.
            ValueError: ``port`` is not in 1..65535.
        """
        self.listening.add(_check.in_range("port", port, 1, 65535))

    def add_address(self, address: Address) -> None:
        """One more local address (an interface comes up, or comes back): connections join
        from it or announce it as ``Config.subflow_addresses`` / ``signal_addresses`` say."""
        packed = _check.address("address", address)
        if packed not in self._own:
            self.addresses.append(packed)
            self._own.add(packed)
            self._address_ids.setdefault(packed, len(self._address_ids) + 1)
            for conn in list(self.connections.values()):   # the path manager's turn:
                conn.join_from(packed, self.now)           # a new "subflow" address joins,
                conn.signal(self.now)                      # a "signal" one is announced
                self.touch(conn)

    def remove_address(self, address: Address, now: float | None = None) -> None:
        """An address went away: its subflows are reset (SubflowClosed "address removed"), the
        data they held is reinjected on the others, the peer hears REMOVE_ADDR on a remaining
        subflow (RFC 8684 §3.4.2), and no new subflow will use it.

        Args:
            address: one of the endpoint's addresses (text or packed).
            now: the current time (the last time the endpoint was given by default).

        Raises:
            ValueError: ``address`` is not one of the endpoint's addresses.
        """
        packed = self.own_address(address)
        now = self.now if now is None else now
        for conn in list(self.connections.values()):
            conn.address_removed(packed, self.address_id(conn, packed), now)
            self.touch(conn)
        self.addresses.remove(packed)
        self._own.discard(packed)

    def own_address(self, address: Address) -> bytes:
        """``address`` packed, when it is one of the endpoint's addresses.

        Raises:
            ValueError: it is not (or is not an address at all).
        """
        packed = _check.address("address", address)
        if packed not in self._own:
            raise ValueError(f"{_text(packed)} is not an address of this endpoint")
        return packed

    def connect(self, remote: tuple[Address, int], now: float,
                local_address: Address | None = None, data: BytesLike | None = None
                ) -> Connection:
        """Open an MPTCP connection: its SYN with MP_CAPABLE is in the next
        ``packets_to_send``; ``ConnectionEstablished`` follows when the handshake completes.
        With ``Config.fastopen`` the SYN asks the server for a TCP Fast Open cookie, or, once
        the endpoint holds one for that server, carries the first bytes of ``data`` (RFC
        7413; docs/engine.md, "TCP Fast Open").

        Args:
            remote: the server's (address, port).
            now: the current time.
            local_address: the address the initial subflow starts from (by default the
                first of the endpoint's addresses of the remote's family); the others join
                as ``Config.subflow_addresses`` says once the connection is established.
            data: bytes to send first, as ``send(data)`` before the SYN is made (at most
                ``Config.send_buffer``): with TCP Fast Open its first bytes ride in the SYN.
                Only data that may arrive twice belong there (RFC 7413 §6: a SYN may be
                replayed to a new connection).

        Returns:
            The new ``Connection``: ``send`` may be called at once (the data waits for the
            handshake).

        Raises:
            ValueError: a bad address or port, no local address of the remote's family,
                ``local_address`` not one of the endpoint's, or ``data`` larger than
                ``Config.send_buffer``.
        """
        if data is not None and len(memoryview(data).cast("B")) > self.config.send_buffer:
            raise ValueError("connect's data is larger than Config.send_buffer")
        address, port = remote
        remote_address = _check.address("remote address", address)
        port = _check.in_range("port", port, 1, 65535)
        if local_address is None:
            local = first_of_family(self.addresses, remote_address)
            if local is None:
                raise ValueError("no local address of the remote address's family")
        else:
            local = self.own_address(local_address)
        self.now = now
        conn = self._new_connection(is_client=True)
        if data is not None:
            conn.send(data)                 # queued before the SYN: TFO may carry it
        conn.open(local, remote_address, port, now)
        self.touch(conn)
        return conn

    def connection(self, cid: int) -> Connection:
        """The live connection whose id is ``cid`` (an event's ``connection``).

        Raises:
            KeyError: no such connection (it never was, or it has ended and been forgotten).
        """
        return self.connections[cid]

    def next_event(self) -> Event | None:
        """The next event of any connection (``ConnectionEstablished``, ``SubflowEstablished``,
        ``DataReceived``, ``EndOfStream``, ``SubflowClosed``, ``ConnectionTerminated``, ...),
        in the order they happened per connection, or None when there is none."""
        queue = self._with_events
        at = self._events_at                 # the ones before it have no events left: a
        while at < len(queue):               # cursor, so that reading the events of many
            conn = queue[at]                 # connections costs no move of the list
            event = conn.next_event()
            if event is not None:
                self._events_at = at
                return event
            at += 1
            conn._queued = False
        self._events_at = 0
        _clear(queue)
        return None

    def connections_with_events(self) -> list[Connection]:
        """The connections with events waiting, each once, for a caller that reads events per
        connection (``conn.next_event()``) so that it can stop reading one whose application
        does not keep up (its receive window then closes). Such a connection comes back here
        when it gets a new event; the caller remembers the ones it left unread."""
        queued = self._with_events[self._events_at:]
        _clear(self._with_events)
        self._events_at = 0
        for conn in queued:
            conn._queued = False
        return queued

    def connections_with_send_space(self) -> list[Connection]:
        """With ``watch_send_space`` set: the connections whose send space may have grown
        since the last call (the peer acknowledged data or offered a larger window), each
        once. An application that stops feeding a connection whose ``send_space`` is 0 feeds
        it again when it comes back here, and need not look at the others."""
        queued = self._with_space
        self._with_space = []
        for conn in queued:
            conn._space_queued = False
        return queued

    # ================================================================ sans-IO face
    @property
    def stats(self) -> Counter[str]:
        """What the endpoint counted, by name (a snapshot): ``packets_received``,
        ``packets_sent``, and every packet dropped or refused, by reason."""
        stats = Counter(self.counts)
        stats["packets_received"] = self.packets_received
        stats["packets_sent"] = self.packets_sent
        return stats

    def receive_packet(self, data: BytesLike, now: float, verified: bool = False) -> None:
        """Take one whole IP packet (IPv4 or IPv6, from the IP header on) from the network.

        Never raises for the packet's content: a damaged packet (bad checksum, truncated,
        not TCP) or one for no subflow or listener is counted in ``stats`` and dropped, or
        answered with a RST as TCP does.

        Args:
            data: the packet, any bytes-like object.
            now: the current time, in seconds (any monotonic clock; the same one for
                every call).
            verified: the host vouches for the TCP checksum, which is then not summed (and
                may hold the pseudo-header sum only): a packet the local kernel made and
                handed over with its checksum left to the device (CHECKSUM_PARTIAL, which
                Linux itself never verifies: skb_csum_unnecessary). Never for a packet that
                crossed a wire.
        """
        self.now = now
        self._number += 1
        if cython.compiled:                     # the C reader (endpoint.pxd cimports it)
            found = read_packet(data, self._number, verified, self.receive_views)
        else:
            found = self._read(data, self._number, verified, self.receive_views)
        if type(found) is int:                  # a status: the packet is dropped
            self.counts["dropped_" + segment.STATUS[found][0].replace(" ", "_")] += 1
            return
        seg: segment.Incoming = found  # type: ignore[assignment]  # (an Incoming: not a status)
        self.packets_received += 1
        if seg.malformed_options:
            self.counts["malformed_options"] += seg.malformed_options
        # the subflows of the last two packets: most packets belong to one of them, found
        # by comparing keys, without hashing a new key for the dictionary
        flow = seg.flow
        if flow == self._recent_flow:
            sf = self._recent_sf
        elif flow == self._other_flow:
            sf = self._other_sf
        else:
            sf = self._subflows.get(flow)       # a subflow's destination is one of ours
            if sf is not None:
                self._other_flow, self._other_sf = self._recent_flow, self._recent_sf
                self._recent_flow, self._recent_sf = flow, sf
        if sf is not None:
            sf.receive(seg, now)
            self.touch(cython.cast(Connection, sf.conn))    # its owner is a Connection
            return
        if seg.dst not in self._own:
            self.counts["dropped_not_ours"] += 1
            return
        self._unplaced(seg, now)

    def receive_packets(self, packets: Iterable[BytesLike], now: float,
                        verified: Sequence[bool] | None = None) -> None:
        """A batch of packets that arrived together; ``verified``, when given, says per packet
        what ``receive_packet``'s ``verified`` does (one flag for each packet, in order)."""
        if verified is None:
            for data in packets:
                self.receive_packet(data, now, False)
        else:
            for data, good in zip(packets, verified):
                self.receive_packet(data, now, good)

    def packets_to_send(self, now: float) -> list[bytes]:
        """Every packet the engine has to send now, as a list of whole IP packets (bytes):
        handshakes, data, ACKs, retransmissions. Call it after every ``receive_packet``,
        ``handle_timer`` and call on a connection (``send``, ``close``, ...)."""
        out = self.packets_to_write(now)
        for i, packet in enumerate(out):
            if type(packet) is tuple:           # (headers, payload): joined, one copy
                out[i] = segment.complete_checksum(packet) if self.checksum_offload \
                    else b"".join(packet)
        return out

    def packets_to_write(self, now: float) -> list:
        """``packets_to_send``'s packets for a host that writes with writev: each one either
        bytes, or a tuple (headers: bytes, payload: a memoryview) whose parts, written one
        after the other, are the packet. Data segments of ``subflow.VECTORED_PAYLOAD`` bytes
        or more (those ``Config.offload`` makes) come as tuples, so that their payload is
        never copied in this process: the kernel copies it once, from the application's
        own bytes, in the writev (TunDevice.write_batch takes both forms). With
        ``checksum_offload`` set, their TCP checksum field holds the pseudo-header sum only,
        for the device to complete (``TunDevice.write_batch(partial=True)``)."""
        self.now = now
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for conn in dirty:
                conn._touched = False         # (a flush that touches it lists it again)
                conn.flush(now)
                self._rearm(conn)
        out = self._out[:]                  # the list itself stays: subflows append to it
        _clear(self._out)
        self.packets_sent += len(out)
        return out

    def get_timer(self) -> float | None:
        """The earliest time ``handle_timer`` must be called, or None (it may be a little
        early: a connection whose timer moved later is then simply re-armed)."""
        timers = self._timers
        while timers:
            when, _, cid = timers[0]
            if self._timer_of.get(cid) == when:
                return when
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now`` (retransmissions, delayed ACKs, keepalives,
        TIME-WAIT, ADD_ADDR resends); their packets are in the next ``packets_to_send``."""
        self.now = now
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, cid = heapq.heappop(timers)
            if self._timer_of.get(cid) != when:
                continue
            del self._timer_of[cid]
            conn = self._timed.pop(cid)
            due = conn.next_timer()
            if due is not None and due > now:
                self._arm(conn, due)               # moved later since it was armed
                continue
            conn.handle_timer(now)
            self.touch(conn)

    # ================================================================ for the connections
    def output(self, packet: bytes) -> None:
        self._out.append(packet)

    def outbox(self) -> list:
        """The list every packet to send goes to: a subflow is handed it when it is made and
        appends its segments to it (packets_to_send empties it, the list stays)."""
        return self._out

    def touch(self, conn) -> None:
        """``conn`` has something to send or a timer to re-arm."""
        if not conn._touched:
            conn._touched = True
            self._dirty.append(conn)

    def has_events(self, conn) -> None:
        if not conn._queued:
            conn._queued = True
            self._with_events.append(conn)

    def register(self, sf) -> None:
        key = segment.flow_key(sf.local, sf.lport, sf.remote, sf.rport)
        if key not in self._subflows:
            self._count_port(sf, 1)
        self._subflows[key] = sf
        self._forget_recent()

    def unregister(self, sf) -> None:
        key = segment.flow_key(sf.local, sf.lport, sf.remote, sf.rport)
        if self._subflows.get(key) is sf:
            del self._subflows[key]
            self._count_port(sf, -1)
        self._forget_recent()

    def _forget_recent(self) -> None:
        """receive_packet's two recent subflows, forgotten whenever the table changes."""
        self._recent_flow = self._other_flow = None
        self._recent_sf = self._other_sf = None

    def _count_port(self, sf, step: int) -> None:
        """How many ports of the range toward one destination are taken, so that ``new_port``
        knows without a walk whether one is free."""
        low, high = self._port_range
        if low <= sf.lport <= high:
            dest = (sf.local, sf.remote, sf.rport)
            taken = self._ports_taken.get(dest, 0) + step
            if taken:
                self._ports_taken[dest] = taken
            else:
                del self._ports_taken[dest]

    def forget(self, conn) -> None:
        """A connection whose subflows have all ended."""
        self.connections.pop(conn.id, None)
        self._timer_of.pop(conn.id, None)
        self._timed.pop(conn.id, None)
        self.tokens.remove(conn.local_token)

    def address_id(self, conn, address: bytes) -> int:
        """RFC 8684 §3.2: the initial subflow's address is id 0; the others keep the number
        they got when the endpoint learned them (1, 2, ... in order)."""
        if conn.local is None or conn.local[0] == address:
            return 0
        return self._address_ids.get(address, 255)

    def new_port(self, local: bytes, remote: bytes, rport: int, now: float) -> int:
        """A local port for a new subflow from ``local`` to (``remote``, ``rport``), its
        4-tuple unique. A free port whenever there is one; else one whose old subflow waits in
        TIME_WAIT and may hand its 4-tuple on (``_reusable``), that subflow then dropped; else
        StateError naming the destination."""
        low, high = self._port_range
        size = high - low + 1
        if self._ports_taken.get((local, remote, rport), 0) < size:
            return self._free_port(local, remote, rport)
        old = self._reusable_port(local, remote, rport, now)
        if old is None:
            raise StateError(f"no free local port to {_where(remote, rport)}")
        old.close(now, CloseReason.FIN)     # its TIME_WAIT cut short, as Linux's tw_reuse does
        return old.lport

    def _free_port(self, local: bytes, remote: bytes, rport: int) -> int:
        """A port whose 4-tuple is free (one is): a few random picks, then a walk of the range
        from a random start, as Linux's __inet_hash_connect walks it."""
        low, high = self._port_range
        for _ in range(RANDOM_PORT_TRIES):
            port = self.random.port(low, high)
            if segment.flow_key(local, port, remote, rport) not in self._subflows:
                return port
        for port in self._walk_ports():
            if segment.flow_key(local, port, remote, rport) not in self._subflows:
                return port
        raise AssertionError("the count of taken ports is wrong")

    def _reusable_port(self, local: bytes, remote: bytes, rport: int, now: float):
        """The first subflow from a random start of the range whose 4-tuple may be reused,
        or None."""
        for port in self._walk_ports():
            sf = self._subflows.get(segment.flow_key(local, port, remote, rport))
            if sf is not None and _reusable(sf, now):
                return sf
        return None

    def _walk_ports(self):
        """Every port of the range once, from a random start."""
        low, high = self._port_range
        size = high - low + 1
        start = self.random.below(size)
        for i in range(size):
            yield low + (start + i) % size

    def _rearm(self, conn) -> None:
        """Keep the heap entry of ``conn`` no later than its timer. A timer that moved later
        keeps its entry (it is re-armed when that fires): per-ACK timer moves cost nothing."""
        when = conn.next_timer()
        if when is None:
            return                                 # a stale entry is dropped when it fires
        armed = self._timer_of.get(conn.id)
        if armed is None or when < armed:
            self._arm(conn, when)

    def _arm(self, conn, when: float) -> None:
        self._timer_of[conn.id] = when
        self._timed[conn.id] = conn
        self._order += 1
        heapq.heappush(self._timers, (when, self._order, conn.id))

    def _new_connection(self, is_client: bool) -> Connection:
        if len(self.connections) >= self.config.max_connections:
            raise StateError(f"{self.config.max_connections} connections already open")
        cid = self._next_id
        self._next_id += 1
        conn = Connection(self, cid, is_client)
        self.connections[conn.id] = conn      # (its own int object: the key it is found by)
        return conn

    # ================================================================ packets no subflow owns
    def _unplaced(self, seg, now: float) -> None:
        flags = seg.flags
        if flags & pk.RST:
            self.counts["dropped_stray_rst"] += 1
            return
        if flags & pk.SYN and not flags & pk.ACK and seg.dport in self.listening:
            mpc = seg.first(opt.MpCapable)
            join = seg.first(opt.MpJoinSyn)
            if join is not None:
                conn = self.tokens.lookup(join.token)
                if conn is not None and conn.accept_join(seg, join, now):
                    self.touch(conn)
                    return
                self.counts["refused_join"] += 1          # RFC 8684 §3.2: unknown token
                self.reset_reply(seg, [opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR)])
                return
            if self.config.version == 1:              # RFC 8684 §3.1: a 4-byte SYN form
                usable = mpc is not None and mpc.sender_key is None and mpc.version >= 1 \
                    and mpc.flags & opt.MPC_HMAC and not mpc.flags & opt.MPC_EXTENSIBILITY
            else:                                     # RFC 6824 §3.1: the key in the SYN
                usable = mpc is not None and mpc.version == 0 and mpc.sender_key is not None \
                    and mpc.receiver_key is None and mpc.flags & opt.MPC_HMAC
            if self.half_open >= self.config.syn_backlog:
                self._cookie_syn_ack(seg, mpc if usable else None, now)   # no state kept
                return
            try:
                conn = self._new_connection(is_client=False)
            except (StateError, crypto.TokenTableError):
                self.counts["refused_no_room"] += 1
                self.reset_reply(seg)
                return
            # a SYN without a usable MP_CAPABLE is plain TCP (RFC 8684 §3.7; Linux answers a
            # v0 or malformed one the same way): that connection falls back at once
            conn.accept(seg, now, mptcp=bool(usable))
            self.touch(conn)
            return
        if flags & pk.ACK and not flags & pk.SYN and seg.dport in self.listening \
                and self._cookie_ack(seg, now):
            return
        self.counts["dropped_no_subflow"] += 1
        self.reset_reply(seg)

    # ================================================================ SYN cookies
    def _cookie_syn_ack(self, seg, mpc, now: float) -> None:
        """A SYN/ACK that keeps no state (RFC 4987 §3.6; engine/cookies.py says how)."""
        config = self.config
        with_ts = seg.tsval is not None
        isn, _ = self.cookies.make(seg.dst, seg.dport, seg.src, seg.sport, seg.seq,
                                   seg.mss or 536, now)
        area: list[opt.Option] = [opt.Mss(config.mss)]
        if with_ts:
            if seg.sack_permitted:
                area.append(opt.SackPermitted())
            offset = self.isn.ts_offset(seg.dst, seg.dport, seg.src, seg.sport)
            area.append(opt.Timestamps(SynCookies.timestamp(now, offset, seg.wscale,
                                                            seg.sack_permitted), seg.tsval))
            if seg.wscale is not None:
                area += [opt.NOP, opt.WindowScale(Subflow.window_shift(config.receive_window))]
        if mpc is not None:
            flags = opt.MPC_HMAC | (opt.MPC_CHECKSUM_REQUIRED
                                    if config.checksums or mpc.checksum_required else 0)
            if config.version == 1 and config.deny_join_initial:
                flags |= opt.MPC_DENY_JOIN_TO_SOURCE  # C (RFC 8684 §3.1), as the SYN/ACK
                                                      # with state would carry it
            area.append(opt.MpCapable(config.version, flags, self.random.key()))
        data = opt.encode_tcp_options(area, align=False)
        data += b"\x01" * (-len(data) % 4)
        self.counts["syn_cookies_sent"] += 1
        self._out.append(pk.build_packet(seg.dst, seg.src, seg.dport, seg.sport, isn,
                                         (seg.seq + 1) & 0xFFFFFFFF, pk.SYN | pk.ACK,
                                         min(config.initial_receive_window,
                                             config.receive_window, 0xFFFF), options=data))

    def _cookie_ack(self, seg, now: float) -> bool:
        """A third ACK that may carry a valid cookie: the connection is made from it."""
        peer_isn = (seg.seq - 1) & 0xFFFFFFFF
        mss = self.cookies.check(seg.dst, seg.dport, seg.src, seg.sport, peer_isn,
                                 (seg.ack - 1) & 0xFFFFFFFF, now)
        if mss is None:
            return False
        try:
            conn = self._new_connection(is_client=False)
        except (StateError, crypto.TokenTableError):
            self.counts["refused_no_room"] += 1
            return False
        if not conn.accept_cookie(seg, now, mss):
            self.connections.pop(conn.id, None)
            self.tokens.remove(conn.local_token)
            return False
        self.counts["syn_cookies_accepted"] += 1
        self.touch(conn)
        return True

    def reset_reply(self, seg, mptcp=()) -> None:
        """RFC 9293 §3.10.7.1 (and §3.10.7.3-4 for a bad ACK in a handshake): a RST that the
        sender of ``seg`` will accept: <SEQ=SEG.ACK><RST> when it carried an ACK."""
        area = opt.encode_tcp_options(list(mptcp)) if mptcp else b""
        if seg.flags & pk.ACK:
            packet = pk.build_packet(seg.dst, seg.src, seg.dport, seg.sport, seg.ack, 0, pk.RST, 0,
                                     options=area)
        else:
            ack = (seg.seq + seg.length) & 0xFFFFFFFF
            packet = pk.build_packet(seg.dst, seg.src, seg.dport, seg.sport, 0, ack,
                                     pk.RST | pk.ACK, 0, options=area)
        self.counts["resets_sent"] += 1
        self._out.append(packet)


def _reusable(sf, now: float) -> bool:
    """An outgoing connection may take the 4-tuple of a subflow in TIME_WAIT (Linux's
    tcp_twsk_unique with net.ipv4.tcp_tw_reuse; RFC 6191 for the SYN a TIME_WAIT peer takes)
    when that subflow used timestamps and the last one it received is at least a second old.
    The new subflow's TSvals are then not below any the old one sent: both count on the
    4-tuple's one clock (IsnGenerator.ts_offset, a keyed hash with no time in it, as Linux's
    secure_tcp_ts_off), whose milliseconds only move on. So the peer's PAWS check (RFC 7323
    §5) drops an old duplicate of ours that would land in the new subflow, and a peer still in
    TIME_WAIT takes the new SYN (RFC 6191 §2). The peer's clock ticked too in that second (RFC
    7323 §5.4: at least once a second), so its new segments are told from its old ones."""
    return sf.state == TIME_WAIT and sf.ts_ok and now - sf.ts_recent_at >= TW_REUSE_DELAY


def _where(address: bytes, port: int) -> str:
    """An address and port as text: 198.18.0.2:80, [2001:db8::2]:80."""
    return f"[{_text(address)}]:{port}" if len(address) == 16 else f"{_text(address)}:{port}"


if __name__ == "mptcp_fast.engine.endpoint":  # the pure source, not its compiled copy
    from mptcp_fast import _backend
    # the public Endpoint builds the active backend's object (through globals(): Cython
    # refuses an assignment to a class name it compiles, even in a branch it never runs)
    globals()["Endpoint"] = _backend.public_class(Endpoint, __name__)

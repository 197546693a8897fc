"""An emulated multipath network on a virtual clock: a discrete-event loop that moves whole IP
packets between sans-IO hosts over paths with rate, delay, jitter, loss (random or bursty),
reordering, duplication, an MTU and a drop-tail queue. Deterministic from its seed.

    net = Network(seed=1, pcap="run.pcap")
    net.add_host(client, ["198.18.0.1", "198.18.1.1"])
    net.add_host(server, ["198.18.0.2", "198.18.1.2"])
    net.add_path("198.18.0.1", "198.18.0.2", rate=100e6, delay=0.010)
    net.add_path("198.18.1.1", "198.18.1.2", rate=50e6, delay=0.040, loss=0.005)
    net.run(until=30.0)                  # or run(stop=lambda: done(), until=...)

A host is anything with the engine's sans-IO face: ``receive_packet(data, now)``,
``packets_to_send(now)`` (an iterable of packets), ``get_timer()`` (a time or None) and
``handle_timer(now)``. The network calls them, and sends what they return along the path that
joins the packet's source and destination addresses; a packet with no path is dropped and
counted. Each path has one queue per direction: a packet waits for the link (``rate`` bits
per second) behind those before it, or is dropped when ``queue`` bytes are already waiting;
it then travels ``delay`` seconds (+ up to ``jitter``), unless lost. ``reorder`` is the
chance that a packet takes ``reorder_delay`` longer (so later ones overtake it),
``duplicate`` the chance that it arrives twice, and packets longer than ``mtu`` are dropped.
Loss is ``loss`` at random, or bursty with ``burst=(p_good_to_bad, p_bad_to_good,
loss_in_bad)`` (a Gilbert-Elliott channel). ``down(at)`` / ``up(at)`` cut a path and bring
it back: while down, everything sent on it is lost.

A path can carry a middlebox: ``path.middlebox = f`` where ``f(packet, from_a)`` returns the
packet to carry (changed or not), None to drop it, or a list of packets (split, held back,
merged); ``from_a`` tells the direction.
``strip_mptcp(kinds)`` makes one that removes the MPTCP options (and fixes the checksums) of
the segments it names — "syn", "syn-ack", "ack" (the handshake's third ACK and other pure
ACKs), "data" — as middleboxes on the Internet do (RFC 8684 §3.7); ``rewrite_payload``
changes payload bytes (and fixes the TCP checksum) as a content-rewriting proxy does;
``shift_sequence`` offsets one side's sequence numbers (and the other side's ACKs and SACK
blocks) as ISN-randomising firewalls do; ``nat`` rewrites an address; ``split_segments`` and
``coalesce_segments`` move segment boundaries (RFC 8684 §3.3.1: mappings must survive it).

With ``offload=True`` the hosts of a path may hand over TCP segments longer than the MTU, as a
NIC with segmentation offload (TSO) takes them (without it they are MTU drops): a path that
changes nothing (no loss, jitter, reordering, duplication or
middlebox) carries such a segment whole, timed, queued and counted as the MTU-sized packets it
stands for; any other path cuts it into those packets first.

``add_host(..., rx_coalesce=seconds)`` gives a host a NIC that coalesces its receive
interrupts, as ``ethtool -C rx-usecs`` sets one: a packet that reaches the host while none
waits starts the clock, and every packet arriving within ``rx_coalesce`` seconds joins it;
then the host takes them all at once (``receive_packets``, which ``Endpoint`` and ``BulkApp``
have, else ``receive_packet`` one by one) and is asked for its packets once. An engine then
acknowledges a batch with one ACK per subflow, as Linux does for what GRO merged in one
NAPI poll. Each packet arrives up to ``rx_coalesce`` later than without it.
"""

from __future__ import annotations

import ipaddress
import math
import random
import struct
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from mptcp_fast import _cython_shim as cython

from mptcp_fast import _check

__all__ = ["Network", "Path", "PathStats", "strip_mptcp", "rewrite_payload", "shift_sequence",
           "nat", "split_segments", "coalesce_segments", "remap_to_past"]

if not cython.compiled:     # compiled: netem.pxd's C checks, which let the network call the
    def _untrack(obj) -> None:          # compiled: pyx/mf_gc.pxd's C call (an _Arrival is
        pass                            # never tracked); the pure run has nothing to do

    def _clear(items: list) -> None:    # compiled: pyx/mf_list.pxd's one C call
        items.clear()

    def _is_app(host) -> bool:          # compiled BulkApp's host face as C calls
        return False

    def _has_no_attributes(obj) -> bool:
        return False

_LINKTYPE_RAW = 101
_MASK64 = (1 << 64) - 1
_HALF64 = 1 << 63


if not cython.compiled:     # compiled: the same in C (netem.pxd)
    def _route_key(packet: bytes):
        """The source and destination addresses of an IPv4 or IPv6 packet as one bytes
        object (the network's routing key: one slice, one hash), or None."""
        size = len(packet)
        if size >= 20 and packet[0] >> 4 == 4:
            return packet[12:20]
        if size >= 40 and packet[0] >> 4 == 6:
            return packet[8:40]
        return None

    def _routed_by(packet: bytes, key) -> bool:
        """Whether the packet's addresses are ``key`` (a routing key, or None)."""
        return key is not None and _route_key(packet) == key


def strip_mptcp(kinds, limit: int | None = None):
    """A middlebox that removes every MPTCP option (kind 30) from the segments named in
    ``kinds`` ("syn", "syn-ack", "ack", "data"), the first ``limit`` of them (all by default),
    and recomputes the checksums; other options and the payload are kept."""
    from mptcp_fast.wire import options as opt
    from mptcp_fast.wire import packet as pk
    kinds = set(kinds)
    unknown = kinds - {"syn", "syn-ack", "ack", "data"}
    if unknown:
        raise ValueError(f"unknown segment kinds {sorted(unknown)}")
    left = [limit]

    def middlebox(packet, from_a):
        try:
            p = pk.parse_packet(packet)
        except ValueError:
            return packet
        if p.flags & pk.SYN:
            kind = "syn-ack" if p.flags & pk.ACK else "syn"
        else:
            kind = "data" if p.payload_len else "ack"
        if kind not in kinds or left[0] == 0:
            return packet
        area = bytes(p.options(packet))
        try:
            found = opt.parse_tcp_options(area)
        except ValueError:
            return packet
        kept = [o for o in found if not isinstance(o, opt._MptcpOption)]
        if len(kept) == len(found):
            return packet
        if left[0] is not None:
            left[0] -= 1
        area = opt.encode_tcp_options(kept, align=False)
        area += b"\x00" * (-len(area) % 4)               # end-of-list padding
        return _rebuild(p, packet, options=area)
    return middlebox


def rewrite_payload(nth: int = 1, count: int = 1, offset: int = 0, from_a: bool | None = None):
    """A middlebox that changes payload bytes, as a proxy rewriting content does: in the
    ``nth`` data segment it carries (and ``count - 1`` after it) the payload byte at
    ``offset`` is inverted and the checksums are made right again (what `tc ... pedit munge
    ... invert pipe csum tcp` does in Linux's MP_FAIL tests). ``from_a`` True or False limits
    it to one direction of the path (the first address given to add_path is "a")."""
    from mptcp_fast.wire import packet as pk
    seen = [0]
    direction = from_a

    def middlebox(packet, from_a):
        if direction is not None and from_a != direction:
            return packet
        try:
            p = pk.parse_packet(packet)
        except ValueError:
            return packet
        if not p.payload_len or p.payload_len <= offset:
            return packet
        seen[0] += 1
        if not nth <= seen[0] < nth + count:
            return packet
        payload = bytearray(p.payload(packet))
        payload[offset] ^= 0xFF
        return _rebuild(p, packet, payload=bytes(payload))
    return middlebox


def _rebuild(p, packet, *, src=None, dst=None, seq=None, ack=None, flags=None, options=None,
             payload=None) -> bytes:
    from mptcp_fast.wire import packet as pk
    return pk.build_packet(p.src_address(packet) if src is None else src,
                           p.dst_address(packet) if dst is None else dst, p.sport, p.dport,
                           p.seq if seq is None else seq, p.ack if ack is None else ack,
                           p.flags if flags is None else flags, p.window,
                           options=bytes(p.options(packet)) if options is None else options,
                           payload=bytes(p.payload(packet)) if payload is None else payload)


def shift_sequence(offset: int):
    """A middlebox that adds ``offset`` to the sequence numbers of the segments going from a
    to b and takes it off the ACK numbers (and SACK blocks) going back, as firewalls that
    randomise ISNs do."""
    from mptcp_fast.wire import options as opt
    from mptcp_fast.wire import packet as pk
    mask = 0xFFFFFFFF

    def middlebox(packet, from_a):
        p = pk.parse_packet(packet)
        if from_a:
            return _rebuild(p, packet, seq=(p.seq + offset) & mask)
        area = bytes(p.options(packet))
        found = opt.parse_tcp_options(area)
        if any(type(o) is opt.Sack for o in found):
            fixed = [opt.Sack([((a - offset) & mask, (b - offset) & mask) for a, b in o.blocks])
                     if type(o) is opt.Sack else o for o in found]
            area = opt.encode_tcp_options(fixed, align=False)
            area += b"\x00" * (-len(area) % 4)
        ack = (p.ack - offset) & mask if p.flags & pk.ACK else p.ack
        return _rebuild(p, packet, ack=ack, options=area)
    return middlebox


def nat(inside, outside):
    """A middlebox that rewrites the address ``inside`` to ``outside`` on the way from a to b
    and back on the way from b to a (a NAT at a's side); ``Network.route(outside, b, path)``
    sends the replies to ``outside`` along the same path."""
    from mptcp_fast import _check
    from mptcp_fast.wire import packet as pk
    inside, outside = _check.address("inside", inside), _check.address("outside", outside)

    def middlebox(packet, from_a):
        p = pk.parse_packet(packet)
        if from_a and p.src_address(packet) == inside:
            return _rebuild(p, packet, src=outside)
        if not from_a and p.dst_address(packet) == outside:
            return _rebuild(p, packet, dst=inside)
        return packet
    return middlebox


def remap_to_past(nth: int = 1, count: int | None = 1, from_a: bool = True):
    """A middlebox that moves DSS mappings going from a to b (from b to a when ``from_a`` is
    False) onto data-level bytes the receiver already has: the ``nth`` mapping it could move
    and ``count - 1`` after it (every one from there when ``count`` is None) get, in every
    segment that carries them (retransmissions too), a DSN that ends at or before the highest
    DATA_ACK seen coming back. The receiver acknowledges those segments at the subflow level
    and drops their bytes as duplicates, so those bytes never arrive and only the sender's
    data level can notice: what Linux does to a mapping that lies beyond the window it
    announced (its NoDSSInWindow counter), and what a proxy that acknowledges data it then
    loses does. Mappings are counted as they first pass; one that cannot be moved yet (less
    than its length acknowledged) is not counted. Without DSS checksums only (the checksum
    covers the DSN)."""
    from mptcp_fast.wire import dss as dsslib
    from mptcp_fast.wire import options as opt
    from mptcp_fast.wire import packet as pk
    data_direction = from_a
    state = {"counted": 0, "decided": None, "lowest": None, "highest": None, "acked": None}
    moved: dict[int, int] = {}        # subflow sequence number -> the DSN it was given

    def middlebox(packet, from_a):
        try:
            p = pk.parse_packet(packet)
            found = opt.parse_tcp_options(bytes(p.options(packet)))
        except ValueError:
            return packet
        dss = [o for o in found if type(o) is opt.Dss]
        if not dss:
            return packet
        m = dss[0]
        if from_a != data_direction:                  # the receiver's DATA_ACKs
            if m.data_ack is not None and (m.ack64 or state["highest"] is not None):
                ack = m.data_ack if m.ack64 else dsslib.expand_seq(state["highest"], m.data_ack)
                if state["acked"] is None or (ack - state["acked"]) & _MASK64 < _HALF64:
                    state["acked"] = ack
            return packet
        if m.dsn is None or not m.data_len or not p.payload_len:
            return packet
        if state["lowest"] is None:
            state["lowest"] = m.dsn                   # the bytes from here on the receiver has
        state["highest"] = m.dsn                      # up to its DATA_ACK
        decided = state["decided"]                    # a subflow sequence number beyond every
        if decided is None or (m.subflow_seq - decided) & 0xFFFFFFFF < 0x80000000 \
                and m.subflow_seq != decided:         # one before: a new mapping, judged once
            state["decided"] = m.subflow_seq
            behind = None if state["acked"] is None else (state["acked"] - state["lowest"]) & _MASK64
            if behind is not None and m.data_len <= behind < _HALF64:
                state["counted"] += 1                 # a mapping that can be moved
                if nth <= state["counted"] and (count is None or state["counted"] < nth + count):
                    if len(moved) >= 1024:            # the oldest forgotten: bounded
                        del moved[next(iter(moved))]
                    moved[m.subflow_seq] = (state["acked"] - m.data_len) & _MASK64
        if m.subflow_seq not in moved:
            return packet
        new = opt.Dss(m.data_ack, m.ack64, moved[m.subflow_seq], True, m.subflow_seq,
                      m.data_len, m.checksum, m.data_fin)
        area = opt.encode_tcp_options([new if o is m else o for o in found], align=False)
        area += b"\x00" * (-len(area) % 4)
        return _rebuild(p, packet, options=area)
    return middlebox


def split_segments(every: int = 3):
    """A middlebox that cuts every ``every``-th data segment in two, each half with the
    segment's options (as TSO and some proxies do)."""
    from mptcp_fast.wire import packet as pk
    seen = [0]

    def middlebox(packet, from_a):
        p = pk.parse_packet(packet)
        if p.payload_len < 2:
            return packet
        seen[0] += 1
        if seen[0] % every:
            return packet
        data = bytes(p.payload(packet))
        half = len(data) // 2
        last = p.flags & (pk.FIN | pk.PSH)
        first = _rebuild(p, packet, flags=p.flags & ~(pk.FIN | pk.PSH), payload=data[:half])
        second = _rebuild(p, packet, seq=(p.seq + half) & 0xFFFFFFFF,
                          flags=(p.flags & ~(pk.FIN | pk.PSH)) | last, payload=data[half:])
        return [first, second]
    return middlebox


def coalesce_segments(max_payload: int = 1400):
    """A middlebox that merges two back-to-back data segments of one flow into one (keeping
    the first one's options) when they are contiguous and fit ``max_payload``; it holds at
    most one segment and lets it go with the next packet that passes."""
    from mptcp_fast.wire import packet as pk
    held: dict[bool, tuple[Any, bytes]] = {}         # direction -> (parsed, packet)

    def middlebox(packet, from_a):
        p = pk.parse_packet(packet)
        previous = held.pop(from_a, None)
        plain = p.payload_len and not p.flags & (pk.SYN | pk.FIN | pk.RST)
        if previous is not None:
            q, first = previous
            if plain and (q.sport, q.dport) == (p.sport, p.dport) and \
                    (q.seq + q.payload_len) & 0xFFFFFFFF == p.seq and \
                    q.payload_len + p.payload_len <= max_payload:
                return [_rebuild(q, first, ack=p.ack, flags=q.flags | p.flags,
                                 payload=bytes(q.payload(first)) + bytes(p.payload(packet)))]
            if plain:
                held[from_a] = (p, packet)
                return [first]
            return [first, packet]
        if plain:
            held[from_a] = (p, packet)
            return []
        return packet
    return middlebox


def _segmentation(packet: bytes, mtu: int):
    """(wire packets, wire bytes, payload per packet) that a TCP segment longer than ``mtu``
    stands for when a NIC cuts it (TSO), or None when it is not a TCP segment with payload."""
    from mptcp_fast.wire import packet as pk
    try:
        p = pk.parse_packet(packet)
    except ValueError:
        return None
    header = p.payload_offset - p.ip_offset
    per = mtu - header
    if per <= 0 or not p.payload_len:
        return None
    count = -(-p.payload_len // per)
    return count, count * header + p.payload_len, per


def _cut(packet: bytes, pieces) -> list:
    """The wire packets of an offloaded segment: its payload in MTU-sized pieces, each with
    the segment's headers and options, PSH and FIN on the last one only."""
    from mptcp_fast.wire import packet as pk
    p = pk.parse_packet(packet)
    per = pieces[2]
    payload = bytes(p.payload(packet))
    out = []
    for start in range(0, len(payload), per):
        last = start + per >= len(payload)
        out.append(_rebuild(p, packet, seq=(p.seq + start) & 0xFFFFFFFF,
                            flags=p.flags if last else p.flags & ~(pk.PSH | pk.FIN),
                            payload=payload[start:start + per]))
    return out


@dataclass
class PathStats:
    """What happened on one direction of a path."""
    sent: int = 0                 # packets handed to the path
    delivered: int = 0            # arrivals (duplicates included)
    bytes_delivered: int = 0
    lost: int = 0                 # random or bursty loss, or the path was down
    queue_drops: int = 0          # the drop-tail queue was full
    middlebox_drops: int = 0      # the path's middlebox dropped it
    mtu_drops: int = 0
    reordered: int = 0
    duplicated: int = 0
    peak_queue_bytes: int = 0     # the most bytes its queue held (waiting for the link)


class _Arrival:
    """A packet in flight on a path direction: when it arrives, its place among the events
    of that time (the network's event order), and the packet."""
    __slots__ = ("when", "order", "packet")
    when: float
    order: int
    packet: bytes


class _OnWire:
    """A packet in a direction's link queue: when its last bit is on the wire, and its size."""
    __slots__ = ("done", "size")
    done: float
    size: int


def _new_arrival(when: float, order: int, packet: bytes) -> _Arrival:
    """One per packet sent (compiled: a C function of typed fields, netem.pxd)."""
    arrival = _Arrival.__new__(_Arrival)
    arrival.when, arrival.order, arrival.packet = when, order, packet
    if cython.compiled:                     # a number and bytes: never in a cycle
        _untrack(arrival)
    return arrival


def _new_on_wire(done: float, size: int) -> _OnWire:
    """One per packet queued (compiled: a C function of typed fields, netem.pxd)."""
    entry = _OnWire.__new__(_OnWire)
    entry.done, entry.size = done, size
    return entry


class _Fifo:
    """A first-in first-out queue of a path direction's packets: a list read from a moving
    head, cut when the head has passed half of it. (A deque's methods are Python calls from
    compiled code; these are C calls: netem.pxd.)"""

    def __init__(self):
        self.items: list = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.items) - self.head

    def empty(self) -> bool:
        return self.head == len(self.items)

    def push(self, item) -> None:
        self.items.append(item)

    def first(self):
        return self.items[self.head]

    def last(self):
        return self.items[len(self.items) - 1]

    def pop(self):
        """The first item, taken off the queue."""
        items = self.items
        item = items[self.head]
        items[self.head] = None
        self.head += 1
        if self.head == len(items):
            _clear(items)
            self.head = 0
        elif self.head >= 64 and 2 * self.head >= len(items):
            del items[:self.head]
            self.head = 0
        return item

    def clear(self) -> None:
        _clear(self.items)
        self.head = 0


class _Direction:
    """One direction of a path: its link, its queue, its counters (``PathStats``' fields) and
    where its packets arrive. Packets in flight mostly arrive in the order they were sent:
    they wait in ``in_flight`` as ``_Arrival`` (arrival time, event order, packet), outside the network's
    heap of events: the loop compares the first packet in flight of each direction that has
    one (``Network._busy``, as few as the paths) with the heap's first event, so a packet
    costs no heap push or pop. A packet that would overtake the last one (jitter,
    reordering) is an event in the heap of its own, (time, order, this direction, packet).
    Either way each packet arrives at its (time, order) place among all events. Compiled, a
    packet in flight (``_Arrival``) and a queued one (``_OnWire``) are C structs the cyclic
    collector does not track (netem.pxd), so that its passes do not walk the tens of
    thousands in flight when thousands of connections fill the paths' queues."""

    def __init__(self, path, receiver: bytes):
        self.path, self.receiver = path, receiver
        self.host_entry = None        # the receiver's _Host, as of the network's hosts_version
        self.hosts_version = -1
        self.in_flight = _Fifo()      # (arrival, order, packet) tuples
        self.link_free_at = 0.0       # when the link finishes sending what is queued
        self.queued = _Fifo()         # (time it is all on the wire, size) tuples
        self.queued_bytes = 0
        self.peak_queued_bytes = 0
        self.bad_state = False        # the Gilbert-Elliott channel's state
        self.sent = self.delivered = self.bytes_delivered = self.lost = 0
        self.queue_drops = self.middlebox_drops = self.mtu_drops = 0
        self.reordered = self.duplicated = 0

    def stats(self) -> PathStats:
        return PathStats(self.sent, self.delivered, self.bytes_delivered, self.lost,
                         self.queue_drops, self.middlebox_drops, self.mtu_drops,
                         self.reordered, self.duplicated, self.peak_queued_bytes)

    def arrive_first(self) -> None:
        """The first packet in flight arrives (the loop found it the earliest event)."""
        flight = self.in_flight
        arrival = flight.pop()
        packet = arrival.packet
        if flight.empty():
            self.path.network._busy.remove(self)
        self.arrive(packet)

    def arrive(self, packet: bytes) -> None:
        """The packet reached the end of the path (unless it was cut meanwhile)."""
        path = self.path
        if not path.is_up:                 # cut while the packet was in flight
            self.lost += 1
            return
        if len(packet) > path.mtu:         # an offloaded segment: its wire packets arrived
            self.delivered += _segmentation(packet, path.mtu)[0] - 1
        self.delivered += 1
        self.bytes_delivered += len(packet)
        network = path.network
        if self.hosts_version != network.hosts_version:      # (a host was added: look again)
            self.host_entry = network._hosts.get(self.receiver)
            self.hosts_version = network.hosts_version
        network._deliver_to(self.host_entry, packet)


class _Host:
    """A sans-IO host attached to the network, and the time its timer event is scheduled for
    (infinity: none is). Compiled, ``app`` is the host again when it is the compiled engine's
    ``BulkApp`` (its host face is then called as C calls while ``direct()``), else None."""

    def __init__(self, host):
        self.host = host
        self.timer = math.inf
        self.app = host if _is_app(host) else None
        self.coalesce = 0.0          # add_host's rx_coalesce (seconds; 0: none)
        self.batch: list = []        # packets that arrived while coalescing, in order
        self.takes_batches = hasattr(host, "receive_packets")

    def direct(self) -> bool:
        """Whether the host face is called on ``app`` (C calls): not when a test replaced one
        of its methods on the instance (which then has attributes of its own, that a C call
        would pass by)."""
        return self.app is not None and _has_no_attributes(self.app)


class Path:
    """Two addresses joined by a link, one queue per direction; see the module text."""

    def __init__(self, network: Network, a: bytes, b: bytes, rate: float, delay: float,
                 jitter: float, loss: float, burst, reorder: float, reorder_delay: float,
                 duplicate: float, mtu: int, queue: int):
        self.network, self.a, self.b = network, a, b
        self.rate, self.delay, self.jitter = rate, delay, jitter
        self.loss, self.burst = loss, burst
        self.reorder, self.reorder_delay, self.duplicate = reorder, reorder_delay, duplicate
        self.mtu, self.queue = mtu, queue
        self.is_up = True
        self.offload = False       # the ends segment oversize TCP segments (TSO), see above
        self.middlebox = None      # middlebox(packet, from_a) -> packet or None, see the module
        self._directions = {a: _Direction(self, b), b: _Direction(self, a)}   # by the sender

    def __repr__(self):
        return (f"Path({ipaddress.ip_address(self.a)} <-> {ipaddress.ip_address(self.b)}, "
                f"{self.rate / 1e6:g} Mbit/s, {self.delay * 1e3:g} ms)")

    def stats(self, sender) -> PathStats:
        """The statistics (as they are now) of the direction whose packets ``sender`` sends."""
        return self._directions[_check.address("sender", sender)].stats()

    def down(self, at: float | None = None) -> None:
        """Cut the path (now, or at virtual time ``at``): everything sent on it is lost."""
        self.network._schedule(self.network.now if at is None else at, self._set, (False,))

    def up(self, at: float | None = None) -> None:
        """Bring the path back (now, or at virtual time ``at``)."""
        self.network._schedule(self.network.now if at is None else at, self._set, (True,))

    def _set(self, state: bool) -> None:
        self.is_up = state

    def _lost(self, direction: _Direction) -> bool:
        rng = self.network.random
        if self.burst is not None:
            to_bad, to_good, loss_in_bad = self.burst
            direction.bad_state = (rng.random() >= to_good) if direction.bad_state \
                else (rng.random() < to_bad)
            return direction.bad_state and rng.random() < loss_in_bad
        return self.loss > 0 and rng.random() < self.loss

    def send(self, sender: bytes, packet: bytes, now: float) -> None:
        """``sender`` (an end of the path) puts ``packet`` on it at ``now``."""
        self._send_on(self._directions[sender], packet, now)

    def _send_on(self, direction, packet: bytes, now: float) -> None:
        direction.sent += 1
        if self.middlebox is not None:                       # it sees what enters the path
            out = self.middlebox(packet, direction.receiver == self.b)
            if out is None:
                direction.middlebox_drops += 1
                return
            if type(out) is list:                            # split, held, or released
                for piece in out:
                    self._enter(direction, piece, now)
                return
            packet = out
        if len(packet) > self.mtu and self.offload:
            pieces = _segmentation(packet, self.mtu)
            if pieces is None:                               # not a TCP segment to cut
                direction.mtu_drops += 1
                return
            if self._clean():
                # an offloaded (TSO) segment on a path that changes nothing: carried whole,
                # timed and queued as the wire packets it stands for (RFC 7323's MTU kept)
                self._enter(direction, packet, now, pieces)
                return
            direction.sent += pieces[0] - 1                  # counted as its wire packets
            for piece in _cut(packet, pieces):               # what the NIC puts on the wire
                self._enter(direction, piece, now)
            return
        self._enter(direction, packet, now)

    def _clean(self) -> bool:
        return not (self.loss or self.burst or self.reorder or self.duplicate or self.jitter
                    or self.middlebox is not None)

    def _enter(self, direction, packet: bytes, now: float, pieces=None) -> None:
        size = len(packet) if pieces is None else pieces[1]
        if pieces is not None:
            direction.sent += pieces[0] - 1                  # counted as its wire packets
        if pieces is None and size > self.mtu:
            direction.mtu_drops += 1
            return
        queued = direction.queued
        if direction.link_free_at <= now:                    # the link sent it all: idle
            if direction.queued_bytes:
                queued.clear()
                direction.queued_bytes = 0
        else:
            while not queued.empty():                        # what the link has sent since
                head = queued.first()
                if head.done > now:
                    break
                queued.pop()
                direction.queued_bytes -= head.size
        if direction.queued_bytes + size > self.queue:
            direction.queue_drops += 1
            return
        start = max(now, direction.link_free_at)
        done = start + size * 8 / self.rate
        direction.link_free_at = done
        queued.push(_new_on_wire(done, size))
        direction.queued_bytes += size
        if direction.queued_bytes > direction.peak_queued_bytes:
            direction.peak_queued_bytes = direction.queued_bytes
        if not self.is_up or self._lost(direction):
            direction.lost += 1
            return
        rng = self.network.random
        arrival = done + self.delay + (rng.random() * self.jitter if self.jitter else 0.0)
        if self.reorder and rng.random() < self.reorder:
            arrival += self.reorder_delay
            direction.reordered += 1
        self.network._in_flight(direction, arrival, packet)
        if self.duplicate and rng.random() < self.duplicate:
            direction.duplicated += 1
            self.network._in_flight(direction, arrival + size * 8 / self.rate, packet)


class Network:
    """An emulated network: a discrete-event loop on a virtual clock that moves whole IP
    packets between sans-IO hosts over paths (see the module text); ``now`` is the virtual
    time in seconds. The same seed gives the same run.

    Calling ``Network(...)`` builds the active backend's object (compiled or pure), as
    ``Endpoint`` does.

    Args:
        seed: the seed of the paths' random loss, jitter, reordering and duplication.
        pcap: record every packet sent (nanosecond pcap, raw IP): a file name (opened here,
            closed by ``close``) or a binary file object (left open); None records nothing.

    Attributes:
        now (float): the virtual time reached.
        unroutable (int): packets dropped because no path joins their addresses.
    """

    def __init__(self, seed: int = 0, pcap=None):
        self.now = 0.0
        self.random = random.Random(seed)
        # (time, order, callback, args), a heap; an arrival is (time, order, _Direction, packet)
        self._events: list[tuple[Any, ...]] = []   # (time, order, callback, args), see _Direction
        self._busy: list[_Direction] = []  # the directions with packets in flight
        self._order = 0
        self._hosts: dict[bytes, _Host] = {}       # address -> _Host
        self.hosts_version = 0                     # counts add_host's changes to _hosts
        self._entries: list[_Host] = []    # the _Host of every host attached or woken
        self._paths: dict[tuple[bytes, bytes], Path] = {}   # (sender, receiver address) -> Path
        self._routes: dict[bytes, _Direction] = {}  # sender + receiver address -> its direction
        # _transmit's two recent routes: most packets take one of them, found by comparing
        # keys before hashing a new one (forgotten when a route is added)
        self._recent_key: bytes | None = None
        self._other_key: bytes | None = None
        self._recent_route: _Direction | None = None
        self._other_route: _Direction | None = None
        self.unroutable = 0                # packets with no path between their addresses
        self._pcap = None
        self._owns_pcap = isinstance(pcap, (str, bytes)) or hasattr(pcap, "__fspath__")
        if pcap is not None:                 # a path (opened here) or a binary file object
            self._pcap = open(pcap, "wb") if self._owns_pcap else pcap
            self._pcap.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535,
                                         _LINKTYPE_RAW))   # nanosecond timestamps

    # -- set-up
    def add_host(self, host, addresses, *, rx_coalesce: float = 0.0) -> None:
        """Attach a sans-IO host (an ``Endpoint``, a ``BulkApp``, anything with
        ``receive_packet(data, now)``, ``packets_to_send(now)``, ``get_timer()`` and
        ``handle_timer(now)``) that owns ``addresses`` (text or packed). ``rx_coalesce``:
        seconds its NIC coalesces received packets for (see the module text; 0, the
        default: each packet is handed over as it arrives).

        Raises:
            ValueError: an address is not an IPv4 or IPv6 address, or ``rx_coalesce`` is
                not a number of seconds in 0..1.
        """
        if not isinstance(rx_coalesce, (int, float)) or isinstance(rx_coalesce, bool) \
                or not 0 <= rx_coalesce <= 1:
            raise ValueError(f"rx_coalesce must be seconds in 0..1, got {rx_coalesce!r}")
        entry = self._entry(host)
        entry.coalesce = float(rx_coalesce)
        for address in addresses:
            self._hosts[_check.address("address", address)] = entry
        self.hosts_version += 1                 # (the paths' cached receivers look again)
        self._schedule(self.now, self._poll, (entry,))

    def _entry(self, host) -> _Host:
        """The _Host of ``host`` (made on its first use: add_host, or wake() of a host that
        sends through another one)."""
        for entry in self._entries:
            if entry.host is host:
                return entry
        entry = _Host(host)
        self._entries.append(entry)
        return entry

    def add_path(self, a, b, *, rate: float = 100e6, delay: float = 0.010, jitter: float = 0.0,
                 loss: float = 0.0, burst=None, reorder: float = 0.0,
                 reorder_delay: float = 0.005, duplicate: float = 0.0, mtu: int = 1500,
                 queue: int = 256 * 1024, offload: bool = False) -> Path:
        """Join addresses ``a`` and ``b`` (IPv4 or IPv6, one family) with a path: one
        drop-tail queue per direction, then the link.

        Args:
            a: one end's address.
            b: the other end's address.
            rate: the link's rate in bits per second.
            delay: the one-way delay in seconds.
            jitter: up to this many seconds more, at random, per packet.
            loss: the chance that a packet is lost (0..1).
            burst: bursty loss instead: (p_good_to_bad, p_bad_to_good, loss_in_bad), a
                Gilbert-Elliott channel.
            reorder: the chance that a packet takes ``reorder_delay`` longer.
            reorder_delay: seconds a reordered packet is held back.
            duplicate: the chance that a packet arrives twice.
            mtu: packets longer than this are dropped (or cut, with ``offload``).
            queue: the bytes a direction's queue holds before it drops.
            offload: the ends may hand over segments longer than the MTU, as to a NIC
                with TSO.

        Returns:
            The ``Path``: ``down(at)``, ``up(at)``, ``stats(sender)``, ``middlebox``.

        Raises:
            ValueError: addresses of two families, or a value out of its range.
        """
        a, b = _check.address("a", a), _check.address("b", b)
        if len(a) != len(b):
            raise ValueError("a path joins two addresses of one family")
        for name, value in (("rate", rate), ("delay", delay), ("jitter", jitter),
                            ("reorder_delay", reorder_delay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if rate <= 0:
            raise ValueError(f"rate must be above 0, got {rate!r}")
        for name, value in (("loss", loss), ("reorder", reorder), ("duplicate", duplicate)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in 0..1, got {value!r}")
        if burst is not None and (len(burst) != 3 or not all(0 <= p <= 1 for p in burst)):
            raise ValueError("burst must be (p_good_to_bad, p_bad_to_good, loss_in_bad), "
                             "each in 0..1")
        path = Path(self, a, b, float(rate), float(delay), float(jitter), float(loss), burst,
                    float(reorder), float(reorder_delay), float(duplicate),
                    _check.in_range("mtu", mtu, 68, 65535), _check.in_range("queue", queue, 0, 1 << 40))
        path.offload = bool(offload)
        self._join(a, b, path)
        return path

    def _join(self, a: bytes, b: bytes, path: Path) -> None:
        self._paths[(a, b)] = self._paths[(b, a)] = path
        for sender, receiver in ((a, b), (b, a)):
            direction = path._directions.get(sender)    # route(): one end may be a NAT's
            if direction is not None:                   # address, which never sends itself
                self._routes[sender + receiver] = direction
        self._recent_key = self._other_key = None
        self._recent_route = self._other_route = None

    def route(self, a, b, path: Path) -> None:
        """Packets between addresses ``a`` and ``b`` take ``path`` too (an address a NAT on the
        path puts in front of one of its ends)."""
        a, b = _check.address("a", a), _check.address("b", b)
        self._join(a, b, path)

    # -- the loop
    def schedule(self, when: float, callback, *args) -> None:
        """Call ``callback(*args)`` at virtual time ``when`` (an address going down, an
        application acting); call ``wake(host)`` from it when it acted on a host."""
        self._schedule(when, callback, args)

    def _schedule(self, when: float, callback, args) -> None:
        """An event: ``callback(*args)`` at ``when``."""
        self._order += 1
        heappush(self._events, (when, self._order, callback, args))

    def _in_flight(self, direction: _Direction, when: float, packet: bytes) -> None:
        """``packet`` arrives at the end of ``direction`` at ``when`` (see _Direction)."""
        self._order += 1
        order = self._order
        flight = direction.in_flight
        if flight.empty():                        # the loop looks at its first packet now
            self._busy.append(direction)
        else:
            last = flight.last()
            if when < last.when:                  # it overtakes: an event of its own
                heappush(self._events, (when, order, direction, packet))
                return
        flight.push(_new_arrival(when, order, packet))

    def run(self, until: float | None = None, stop=None, max_events: int | None = None) -> float:
        """Process events in time order until none are left, virtual time passes ``until``,
        ``stop()`` returns true, or ``max_events`` were processed; returns the time reached."""
        processed = 0
        events = self._events
        busy = self._busy
        horizon = math.inf if until is None else until
        while events or busy:
            # the earliest (time, order): the heap's first event, or the first packet in
            # flight of a direction (see _Direction)
            arriving = None
            if events:
                event = events[0]
                when, order = event[0], event[1]
            else:
                when, order = math.inf, 0
            for direction in busy:
                head = direction.in_flight.first()
                if head.when < when or (head.when == when and head.order < order):
                    when, order, arriving = head.when, head.order, direction
            if when > horizon:
                self.now = until
                break
            if when > self.now:
                self.now = when
            if arriving is not None:
                arriving.arrive_first()
            else:
                heappop(events)
                callback = event[2]
                if type(callback) is _Direction:   # a packet that overtook others arrives
                    callback.arrive(event[3])
                else:
                    callback(*event[3])
            processed += 1
            if stop is not None and stop():
                break
            if max_events is not None and processed >= max_events:
                break
        if self._pcap is not None:
            self._pcap.flush()
        return self.now

    def close(self) -> None:
        """Close the pcap file when the network opened it (a file object given stays open)."""
        if self._pcap is not None:
            if self._owns_pcap:
                self._pcap.close()
            else:
                self._pcap.flush()
            self._pcap = None

    def wake(self, host) -> None:
        """Collect what ``host`` has to send now: call it after acting on a host outside the
        network's own calls (an application opening a connection from a scheduled callback)."""
        self._poll(self._entry(host))

    # -- hosts
    def _deliver(self, address: bytes, packet: bytes) -> None:
        self._deliver_to(self._hosts.get(address), packet)

    def _deliver_to(self, entry, packet: bytes) -> None:
        """``packet`` to the host ``entry`` (None: nobody has its address)."""
        if entry is None:
            self.unroutable += 1
            return
        if entry.coalesce > 0.0:                         # the NIC holds it (module text)
            entry.batch.append(packet)
            if len(entry.batch) == 1:
                self._schedule(self.now + entry.coalesce, self._deliver_batch, (entry,))
            return
        if entry.direct():
            entry.app.receive_packet(packet, self.now)    # compiled: a C call (_Host)
        else:
            entry.host.receive_packet(packet, self.now)
        self._poll(entry)

    def _deliver_batch(self, entry: _Host) -> None:
        """The coalescing time is over: the host takes what arrived, then is polled once."""
        batch = entry.batch
        if not batch:
            return
        entry.batch = []
        if entry.direct():
            entry.app.receive_packets(batch, self.now)
        elif entry.takes_batches:
            entry.host.receive_packets(batch, self.now)
        else:
            for packet in batch:
                entry.host.receive_packet(packet, self.now)
        self._poll(entry)

    def _poll(self, entry: _Host) -> None:
        """Send what the host has to send, and (re)arm its timer."""
        if entry.direct():                                 # compiled: C calls (_Host)
            app = entry.app
            for packet in app.packets_to_send(self.now):
                self._transmit(packet)
            when = app.get_timer()
        else:
            host = entry.host
            for packet in host.packets_to_send(self.now):
                self._transmit(packet)
            when = host.get_timer()
        if when is None:
            return
        if when < entry.timer:
            # only an earlier time needs a new event; a later one is found when the earlier
            # event fires (timers that keep moving later, like a retransmission timer pushed
            # on by every ACK, then cost no heap traffic)
            entry.timer = when
            self._schedule(max(when, self.now), self._timer, (entry, when))

    def _timer(self, entry: _Host, when: float) -> None:
        if entry.timer != when:
            return                         # an earlier event replaced this one
        entry.timer = math.inf
        host = entry.host
        due = host.get_timer()
        if due is not None and due > self.now:
            entry.timer = due              # moved later since: wait for it
            self._schedule(due, self._timer, (entry, due))
            return
        host.handle_timer(self.now)
        self._poll(entry)

    def _transmit(self, packet) -> None:
        if type(packet) is not bytes:
            packet = bytes(packet)
        # the two recent routes, tried on the packet's addresses as they are (compiled, no key
        # is made for them)
        if _routed_by(packet, self._recent_key):
            direction = self._recent_route
        elif _routed_by(packet, self._other_key):
            direction = self._other_route
        elif (key := _route_key(packet)) is None:
            direction = None
        else:
            direction = self._routes.get(key)
            if direction is not None:
                self._other_key, self._other_route = self._recent_key, self._recent_route
                self._recent_key, self._recent_route = key, direction
        if self._pcap is not None:
            ns = int(round(self.now * 1e9))
            self._pcap.write(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(packet),
                                         len(packet)) + packet)
        if direction is None:
            self.unroutable += 1
            return
        direction.path._send_on(direction, packet, self.now)


if __name__ == "mptcp_fast.sim.netem":  # the pure source, not its compiled copy
    from mptcp_fast import _backend
    # the public Network builds the active backend's object (through globals(): Cython
    # refuses an assignment to a class name it compiles, even in a branch it never runs)
    globals()["Network"] = _backend.public_class(Network, __name__)

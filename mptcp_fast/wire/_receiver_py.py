"""Pure-Python twin of pyx/mptcp_fast/wire/_receiver_c.pyx: the data-level receive pipeline.

A ``DataReceiver`` is one direction of one connection's data (RFC 8684 §3.3): the
``SubflowReceiver`` of each subflow holds that subflow's mappings (the mapping store) and
its DSS checksums still collecting; segments (relative subflow sequence number, payload)
are resolved through the mappings into DSN ranges, counted as new, out-of-order,
duplicate or reinjected data (data carried again on another subflow than its first
carrier), pushed into the stream's ReassemblyQueue, and checked against the DSS checksum
of their mapping once every byte of it was seen. The capture analyzer's tracker feeds it
from packet columns; the engine feeds it segments. Same results, counters and event texts as
the compiled twin.

A capture can miss packets, or begin after bytes that were in flight on another subflow:
``watch_gaps`` (the analyzer's, never the engine's) lets a stream pass such holes instead of
waiting for them for ever. A hole is passed once the receiver's DATA_ACK went beyond it (it
had those bytes: the sender never sends them again), once the stream has been seen more than
``horizon`` bytes beyond it (further than any receive window reaches), or at ``finish()``;
each passed hole (a gap) is counted, reported to the watcher, and the reassembly goes on after
it. Bytes that arrive in a gap after it was passed are counted as late.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Callable

from .. import _check
from .._bytes import immutable_buffer
from .serial import MASK32 as _MASK32, MASK64 as _MASK64, beyond_reach, expand_seq, seq64_diff
from ..errors import MappingConflict, MptcpError, UnmappedData
from ._receiver_common import (DirectionCounters as _DirectionCounters, Event as _Event,
                               StreamCounters as _StreamCounters)
from ._dss_py import SubflowMappings

if TYPE_CHECKING:
    from ._dss_py import ReassemblyQueue

HISTORY = 1 << 24               # DSN bytes behind the contiguous edge whose carrier is kept
MAX_INTERVALS = 1 << 16         # coverage intervals per stream (memory bound on hostile input)
MAPPINGS_KEPT_BEHIND = 1 << 24  # subflow bytes of mappings kept behind the newest segment
PENDING_CHECKSUMS_MAX = 256     # checksummed mappings per subflow direction still collecting
PACKETS_NAMED_MAX = 64          # packet numbers kept per checksummed mapping
PROBES_NAMED_MAX = 1024         # packet numbers kept of zero-window probes set aside
DRAIN_EVERY = 1 << 22           # bytes pushed into a stream's queue between two drains

# Argument ranges at the API, the compiled twin's (where they keep its int64 arithmetic from
# overflowing), with the same messages.
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
MAX_SUBFLOW_SEQ = _I64_MAX      # relative subflow sequence numbers stay below 2**63


def _int(name: str, value, low: int, high: int) -> int:
    """_check.in_range with the common case (a Python int in range) inline."""
    if type(value) is int and low <= value <= high:
        return value
    return _check.in_range(name, value, low, high)



def no_counters() -> _DirectionCounters:
    """The DirectionCounters of a subflow direction that is not analysed."""
    return _DirectionCounters(0, 0, 0)


def checksum_failure(dsn: int, packets) -> str:
    return (f"DSS checksum failure for the mapping at DSN {dsn} carried by packets "
            f"{', '.join(map(str, sorted(packets)))}")


class ChecksumBudget:
    """Payload bytes that DSS-checksummed mappings still collecting may claim, in all and per
    connection; a mapping beyond either is counted as unverified instead of held."""

    def __init__(self, total: int, per_connection: int):
        self.total = _int("total", total, 0, _I64_MAX)
        self.per_connection = _int("per_connection", per_connection, 0, _I64_MAX)
        self.claimed = 0
        self._by_connection: dict[int, int] = {}

    def claim(self, connection: int, size: int) -> bool:
        connection = _int("connection", connection, _I64_MIN, _I64_MAX)
        size = _int("size", size, 0, _I64_MAX)
        mine = self._by_connection.get(connection, 0)
        if size > self.total - self.claimed or size > self.per_connection - mine:
            return False
        self.claimed += size
        self._by_connection[connection] = mine + size
        return True

    def release(self, connection: int, size: int) -> None:
        connection = _int("connection", connection, _I64_MIN, _I64_MAX)
        size = _int("size", size, 0, _I64_MAX)
        mine = self._by_connection.get(connection, 0)
        if size > mine:                   # more than was claimed: claimed would go negative
            raise ValueError(f"connection {connection} releases {size} bytes but holds {mine}")
        self.claimed -= size
        self._by_connection[connection] = mine - size


class _Pending:
    """A checksummed mapping whose bytes are still being collected. The buffers are made
    when the first byte arrives: a mapping whose data never comes costs no payload memory."""
    __slots__ = ("start", "end", "dsn", "length", "checksum", "data", "seen", "missing",
                 "packets")

    def __init__(self, start, payload_length, dsn, length, checksum):
        self.start, self.end, self.dsn = start, start + payload_length, dsn
        self.length, self.checksum, self.missing = length, checksum, payload_length
        self.data = self.seen = None
        self.packets = []

    def add(self, payload, rel, lo, hi, number) -> None:
        """Subflow bytes [lo, hi) of a payload that starts at ``rel``."""
        if self.data is None:
            self.data = bytearray(self.end - self.start)
            self.seen = bytearray(self.end - self.start)
        a, b = lo - self.start, hi - self.start
        self.data[a:b] = payload[lo - rel:hi - rel]
        self.missing -= (b - a) - self.seen.count(1, a, b)
        self.seen[a:b] = b"\x01" * (b - a)
        if len(self.packets) < PACKETS_NAMED_MAX and (not self.packets or self.packets[-1] != number):
            self.packets.append(number)


class SubflowReceiver:
    """One subflow's part of a DataReceiver: its mappings, checksums still collecting and
    counters. ``isn`` / ``rel_ref`` and ``probed`` are kept for the feeder (the capture
    tracker places sequence numbers and spots fallback with them)."""

    def __init__(self, stream: DataReceiver, sid: int):
        self.stream = _check.instance("stream", stream, DataReceiver)
        self.sid = _int("sid", sid, -0x80000000, 0x7FFFFFFF)
        self.isn = None
        self.rel_ref = 1
        self.maps = SubflowMappings()
        self.probed = False           # a mapping was declared or a payload was looked at
        self.bytes = 0
        self.reinjected = 0
        self.pending: list[_Pending] = []   # oldest first
        self.unverified = 0
        self.probe_at = -1            # subflow byte of the last zero-window probe (declare)

    def resolve(self, rel: int, length: int) -> list:
        """[(dsn, length), ...] of subflow bytes [rel, rel + length) through this subflow's
        mappings, contiguous DSN runs merged; UnmappedData where no mapping covers a byte."""
        return self.maps.resolve(rel, length)

    def counters(self) -> _DirectionCounters:
        return _DirectionCounters(self.bytes, self.reinjected, self.unverified + len(self.pending))

    def __len__(self) -> int:
        """Mapping pieces stored (the infinite mapping counts as one)."""
        return len(self.maps)

    def release(self, upto: int) -> None:
        """Forget the mapping pieces that end at or before subflow byte ``upto``."""
        self.maps.release(upto)


class DataReceiver:
    """One direction of a connection's data-level stream; ``events`` is the list anomalies
    are appended to, ``connection`` the key of its checksum budget, ``verify_checksum(dsn,
    subflow_seq, data_len, payload, checksum) -> bool`` checks a whole mapping."""

    def __init__(self, events: list[_Event], budget: ChecksumBudget, connection: int,
                 verify_checksum: Callable[[int, int, int, bytes, int], bool]) -> None:
        self.events = _check.instance("events", events, list)
        self.budget = _check.instance("budget", budget, ChecksumBudget)
        self.connection = _int("connection", connection, _I64_MIN, _I64_MAX)
        self._verify = verify_checksum
        self.peer: DataReceiver | None = None   # the other direction, when the feeder pairs them
        self.origin: int | None = None  # DSN of coverage offset 0 (IDSN + 1 once keys are known)
        self.dsn_ref: int | None = None   # reference for expanding 32-bit DSNs and data ACKs
        self.queue: ReassemblyQueue | None = None
        self.drain: Callable[[], object] | None = None
        self.pushed = 0
        self.checksums = False
        self.data_acked: int | None = None   # highest data ACK the peer sent for this stream
        self.data_fin: int | None = None
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.carriers: list[int] = []
        self.floor = self.edge = 0
        self.new_bytes = self.out_of_order = self.duplicate = self.reinjected = 0
        self.not_captured = self.outside_window = 0
        self.gap_horizon = 0          # 0: holes are waited for (watch_gaps)
        self.on_gap: Callable[[int, int], object] | None = None
        self.gaps = self.missing = self.late = self.probes = 0
        self.probe_packets: list[int] = []  # the first PROBES_NAMED_MAX probes' packets

    def start(self, initial_dsn: int, queue: ReassemblyQueue,
              drain: Callable[[], object]) -> None:
        """Keys are known: coverage counts from ``initial_dsn`` and payload goes to ``queue``
        (``drain()`` is called every few MiB pushed)."""
        self.origin = self.dsn_ref = initial_dsn & _MASK64
        self.queue, self.drain = queue, drain

    def subflow(self, sid: int) -> SubflowReceiver:
        return SubflowReceiver(self, sid)

    def watch_gaps(self, horizon: int, on_gap: Callable[[int, int], object]) -> None:
        """Pass holes in the stream (bytes a capture never saw) instead of waiting for them:
        once the peer's DATA_ACK is beyond a hole, or bytes were seen more than ``horizon``
        (> 0) bytes beyond it, or at ``finish()``. ``on_gap(dsn, length)`` is called for each,
        after ``drain()`` (the bytes before it have been handed over) and before any byte
        after it is: the queue's in-order bytes must be read by ``drain``."""
        self.gap_horizon = _int("horizon", horizon, 1, _I64_MAX)
        self.on_gap = on_gap

    def counters(self) -> _StreamCounters:
        fin_reached = self.data_fin is not None and self.origin is not None and \
            self.edge >= seq64_diff(self.data_fin, self.origin)
        return _StreamCounters(self.new_bytes, self.not_captured, self.out_of_order,
                               self.duplicate, self.reinjected, self.outside_window,
                               self.data_acked, self.data_fin, fin_reached, self.gaps,
                               self.missing, self.late, self.probes)

    # -- DSNs and data ACKs (RFC 8684 §3.3.1-3.3.2; Linux's __mptcp_expand_seq)
    def expand_dsn(self, dsn32: int) -> int:
        """A 32-bit DSN promoted next to the newest mapping seen (itself when none was)."""
        dsn32 = _int("dsn32", dsn32, 0, _MASK64)
        return expand_seq(self.dsn_ref if self.dsn_ref is not None else dsn32, dsn32 & _MASK32)

    def acknowledged(self, ack: int, is64: bool) -> None:
        """A DATA_ACK for this stream's data (it arrives on the other direction)."""
        ack = _int("ack", ack, 0, _MASK64)
        if not is64:
            if self.dsn_ref is None:
                return
            ack = expand_seq(self.dsn_ref, ack & _MASK32)
        if self.data_acked is None or ((ack - self.data_acked) & _MASK64) < (1 << 63):
            self.data_acked = ack
            if self.gap_horizon and self.ends and self.ends[-1] > self.edge:
                self._pass_acknowledged_holes()

    # -- mappings
    def declare(self, number, side, dsn, start, length, data_fin, checksum, truncated) -> None:
        """A mapping seen in packet ``number`` on ``side``: stored, or an event when it
        contradicts one before; a checksummed one starts collecting its bytes. The ranges are
        SubflowMappings.declare_fields' (a 16-bit Data-Level Length, subflow bytes below 2**63),
        checked in the compiled twin's order."""
        number = _int("number", number, _I64_MIN, _I64_MAX)
        _check.instance("side", side, SubflowReceiver)
        dsn = _int("dsn", dsn, 0, _MASK64)
        length = _int("length", length, 0, 0xFFFF)
        data_fin = data_fin if type(data_fin) is bool else _check.flag("data_fin", data_fin)
        start = _int("start", start, 0, MAX_SUBFLOW_SEQ - max(length - 1 if data_fin else length, 0))
        if checksum is not None:
            checksum = _int("checksum", checksum, 0, 0xFFFF)
        truncated = truncated if type(truncated) is bool else _check.flag("truncated", truncated)
        try:
            new = side.maps._declare(dsn, start, length, data_fin, checksum)
        except MappingConflict as exc:
            self.events.append(_Event(number, side.sid, str(exc), None))
            return
        side.probed = True
        if (length == 1 and not data_fin and self.data_acked is not None
                and seq64_diff(dsn, self.data_acked) < 0):
            # Linux's MPTCP zero-window probe (protocol.c, mptcp_sendmsg_frag): one byte
            # mapped at DSN snd_una - 1, a byte the receiver already acknowledged, but carrying
            # the first byte not yet sent. Its payload is not the byte at that DSN (the
            # receiver drops it as old data): it is set aside, not placed in the stream.
            side.probe_at = start
        if self.dsn_ref is None or ((dsn - self.dsn_ref) & _MASK64) < (1 << 63):
            self.dsn_ref = dsn
        if data_fin:
            fin = (dsn + length - 1) & _MASK64
            if self.data_fin is not None and fin != self.data_fin:
                self.events.append(_Event(number, side.sid,
                                          f"DATA_FIN moved from DSN {self.data_fin} to {fin}", None))
                return
            self.data_fin = fin
            if self.queue is not None:
                try:
                    self.queue.data_fin(fin)
                except MptcpError as exc:
                    self.events.append(_Event(number, side.sid, str(exc), None))
        payload_length = length - 1 if data_fin else length
        if (new and self.checksums and checksum is not None and payload_length > 0
                and not truncated):            # headers-only captures cannot be checked
            if len(side.pending) >= PENDING_CHECKSUMS_MAX:   # bytes that never all arrived
                self._release(side.pending.pop(0))
                side.unverified += 1
            if not self.budget.claim(self.connection, payload_length):
                side.unverified += 1           # over the memory budget: counted, not held
                return
            side.pending.append(_Pending(start, payload_length, dsn, length, checksum))

    def _release(self, entry) -> None:
        self.budget.release(self.connection, entry.end - entry.start)

    # -- segments
    def deliver(self, number, side, rel, length, payload) -> None:
        """Subflow bytes [rel, rel + length) of packet ``number`` on ``side``; ``payload`` is
        their bytes, or None when they were not captured (counted all the same)."""
        number = _int("number", number, _I64_MIN, _I64_MAX)
        _check.instance("side", side, SubflowReceiver)
        rel = _int("rel", rel, 0, MAX_SUBFLOW_SEQ)
        length = _int("length", length, 0, MAX_SUBFLOW_SEQ - rel)
        if payload is not None and len(payload) != length:
            raise ValueError(f"payload holds {len(payload)} bytes, not {length}")
        try:
            ranges = side.maps.resolve(rel, length)
        except UnmappedData as exc:
            self.events.append(_Event(number, side.sid, str(exc), None))
            return
        if length == 1 and rel == side.probe_at:
            self.probes += 1                 # a zero-window probe (declare): not stream data
            if len(self.probe_packets) < PROBES_NAMED_MAX:
                self.probe_packets.append(number)
            ranges = []
        pos = 0
        for dsn, n in ranges:
            self._cover(side, dsn, n)
            if payload is not None and self.queue is not None:
                # as the compiled twin: an immutable payload queued as it is when this run is
                # all of it, any other run (or a buffer that may change) copied
                whole = pos == 0 and n == length and immutable_buffer(payload)
                self.queue.push(dsn, payload if whole else bytes(payload[pos:pos + n]))
                self.pushed += n
            pos += n
        if self.pushed >= DRAIN_EVERY:
            self.pushed = 0
            self.drain()  # type: ignore[misc]  # (set by start() with the queue pushed to)
        if side.pending and payload is not None:
            self._collect(number, side, rel, payload)
        if not number & 1023:                        # memory follows the window, not the file
            side.maps.release(rel - MAPPINGS_KEPT_BEHIND)

    # -- data-level coverage
    def _cover(self, side, dsn, length):
        if self.origin is None:
            self.origin = dsn                # keys unknown: offsets from the first DSN seen
        s = seq64_diff(dsn, self.origin)
        if beyond_reach(s, length):          # would end 2**63 past the origin: outside any
            self.outside_window += length    # window (mptcp_fast.wire.serial), counted, not placed
            return
        e = s + length
        if s < self.floor:                   # long delivered: no carrier kept
            below = min(e, self.floor) - s
            self.duplicate += below
            s += below
        sid = side.sid
        starts, ends, carriers = self.starts, self.ends, self.carriers
        i = bisect_right(ends, s)            # first interval ending after s
        pos = s
        while pos < e:
            if i < len(starts) and starts[i] <= pos:
                stop = min(e, ends[i])
                self.duplicate += stop - pos
                if carriers[i] != sid:
                    self.reinjected += stop - pos
                    side.reinjected += stop - pos
                pos = stop
                i += 1
                continue
            stop = min(e, starts[i]) if i < len(starts) else e
            self.new_bytes += stop - pos
            if pos < self.edge:              # below the edge and never seen: in a passed gap
                self.late += stop - pos
            elif pos != self.edge:
                self.out_of_order += stop - pos
            i = self._insert(i, pos, stop, sid) + 1
            if pos == self.edge:
                self.edge = stop
                j = i
                while j < len(starts) and starts[j] == self.edge:
                    self.edge = ends[j]
                    j += 1
            pos = stop
        if self.gap_horizon and ends and ends[-1] - self.edge > self.gap_horizon:
            self._pass_holes_below(ends[-1] - self.gap_horizon)
        self._prune()

    def _insert(self, i, start, end, sid) -> int:
        """Put [start, end) before interval i, merged into the one before when that one ends at
        ``start`` on the same subflow (the usual in-order case); return its index."""
        if i > 0 and self.ends[i - 1] == start and self.carriers[i - 1] == sid:
            self.ends[i - 1] = end
            return i - 1
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.carriers.insert(i, sid)
        return i

    def _prune(self):
        """Forget carriers HISTORY bytes behind the edge, and bound the list on hostile input."""
        ends = self.ends
        n = len(ends)
        if n > 64 and ends[63] <= self.edge - HISTORY:
            k = bisect_right(ends, self.edge - HISTORY)
        elif n > MAX_INTERVALS:
            k = n - MAX_INTERVALS
            if self.gap_horizon:              # holes the bound would forget are passed first
                self._pass_holes_below(ends[k - 1])
        else:
            return
        self.floor = ends[k - 1]
        del self.starts[:k], self.ends[:k], self.carriers[:k]
        if self.edge < self.floor:
            self.edge = self.floor
            j = 0
            while j < len(self.starts) and self.starts[j] == self.edge:
                self.edge = self.ends[j]
                j += 1

    # -- gaps: holes a capture will never fill (watch_gaps)
    def finish(self) -> None:
        """The capture is over: pass every hole left, and the bytes missing before the
        DATA_FIN (when it was seen), when gaps are watched."""
        if not self.gap_horizon or self.origin is None:
            return
        if self.ends:
            self._pass_holes_below(self.ends[-1])
        if self.data_fin is not None and self.edge < seq64_diff(self.data_fin, self.origin):
            self._pass(seq64_diff(self.data_fin, self.origin))

    def _pass_acknowledged_holes(self) -> None:
        """Holes the peer's DATA_ACK went beyond: the receiver had those bytes."""
        if self.origin is None or self.data_acked is None:
            return
        acked = seq64_diff(self.data_acked, self.origin)
        while acked > self.edge and self.ends and self.ends[-1] > self.edge:
            end = self.starts[bisect_right(self.ends, self.edge)]
            if end > acked:
                return
            self._pass(end)

    def _pass_holes_below(self, limit: int) -> None:
        """Pass the holes that begin below ``limit``."""
        while self.edge < limit and self.ends and self.ends[-1] > self.edge:
            self._pass(self.starts[bisect_right(self.ends, self.edge)])

    def _pass(self, end: int) -> None:
        """Bytes [edge, end) will not come: a gap. The bytes before it are drained, the queue
        goes on after it (when it holds every byte before it: otherwise payload was not
        captured and there is no rebuilt stream to keep right), the edge moves past it."""
        start, origin = self.edge, self.origin
        assert origin is not None             # a hole is measured from the stream's origin
        dsn = (origin + start) & _MASK64
        if self.queue is not None and self.drain is not None:
            self.drain()
            if self.queue.data_ack == dsn and (self.data_fin is None
                                               or end <= seq64_diff(self.data_fin, origin)):
                self.queue.skip_to((origin + end) & _MASK64)
        self.gaps += 1
        self.missing += end - start
        self.edge = end
        j = bisect_right(self.ends, end)
        while j < len(self.starts) and self.starts[j] == self.edge:
            self.edge = self.ends[j]
            j += 1
        if self.on_gap is not None:
            self.on_gap(dsn, end - start)

    # -- DSS checksums over whole mappings (RFC 8684 §3.3.1)
    def _collect(self, number, side, rel, payload):
        end = rel + len(payload)
        for entry in list(side.pending):
            lo, hi = max(rel, entry.start), min(end, entry.end)
            if lo >= hi:
                continue
            entry.add(payload, rel, lo, hi, number)
            if entry.missing == 0:
                side.pending.remove(entry)
                self._release(entry)
                if not self._verify(entry.dsn, entry.start & _MASK32, entry.length,
                                    bytes(entry.data), entry.checksum):
                    self.events.append(_Event(number, side.sid,
                                              checksum_failure(entry.dsn, entry.packets),
                                              tuple(sorted(entry.packets))))

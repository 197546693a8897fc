# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_receiver_py.py: the data-level receive pipeline.

A DataReceiver is one direction of one connection's data (RFC 8684 §3.3); each subflow's
SubflowReceiver holds its mappings (mf_mapstore.pxd) and its DSS checksums still collecting.
Segments are resolved through the mappings into DSN ranges, counted as new, out-of-order,
duplicate or reinjected data, pushed into the stream's ReassemblyQueue, and checked against
the DSS checksum of their mapping once all its bytes were seen. The declarations are in
pyx/mptcp_fast/_receiver.pxd, so the capture tracker (and the engine) cimport it and call the
``*_`` methods directly. Holes a capture never fills are passed when the analyzer watches for
them (``watch_gaps``: the pure twin says when). Same results, counters and event texts as the
pure twin.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t, INT64_MIN, INT64_MAX
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from mf_mapstore cimport (MapEntry, MapStore, ms_entry, ms_init, ms_free, ms_dsn_at, ms_declare,
                          ms_covering, ms_release, MS_NEW, MS_CONFLICT, MS_NO_MEMORY)
from mptcp_fast.wire._dss_c cimport ReassemblyQueue
from mf_serial cimport expand_seq, seq64_diff, beyond_reach
from mf_check cimport int_arg, u64_arg
from mf_gc cimport untrack
from mptcp_fast import _check                  # mf_check.pxd calls it on its slow path
from mptcp_fast.errors import MptcpError, UnmappedData, conflict_text
from mf_bytes cimport immutable_buffer           # (segment.read(view=True)'s payloads)

# Argument ranges at the Python face (the pure twin checks the same, with the same messages):
# with them no C arithmetic below can overflow int64 (signed overflow is undefined in C).
cdef int64_t I64_MAX = INT64_MAX
cdef int64_t I64_MIN = INT64_MIN
cdef int64_t MAX_SUBFLOW_SEQ = 0x7FFFFFFFFFFFFFFF   # relative subflow sequence numbers < 2**63

cdef enum:
    HISTORY = 1 << 24               # DSN bytes behind the contiguous edge whose carrier is kept
    MAX_INTERVALS = 1 << 16         # coverage intervals per stream (memory bound)
    MAPPINGS_KEPT_BEHIND = 1 << 24  # subflow bytes of mappings kept behind the newest segment
    PENDING_CHECKSUMS_MAX = 256     # checksummed mappings per subflow direction still collecting
    PACKETS_NAMED_MAX = 64          # packet numbers kept per checksummed mapping
    PROBES_NAMED_MAX = 1024         # packet numbers kept of zero-window probes set aside
    DRAIN_EVERY = 1 << 22           # bytes pushed into a stream's queue between two drains

from mptcp_fast.wire._receiver_common import (DirectionCounters as _DirectionCounters,
                                              Event as _Event, StreamCounters as _StreamCounters)


def no_counters():
    """The DirectionCounters of a subflow direction that is not analysed."""
    return _DirectionCounters(0, 0, 0)


def checksum_failure(dsn, packets):
    return (f"DSS checksum failure for the mapping at DSN {dsn} carried by packets "
            f"{', '.join(map(str, sorted(packets)))}")


cdef str mapping_conflict(const MapEntry* new, const MapEntry* old):
    """The pure twin's MappingConflict text: ``old`` is a stored piece or the infinite mapping."""
    from mptcp_fast.wire.dss import Mapping          # imported late: dss imports the backends
    new_m = Mapping(new.dsn, new.start, new.length, new.data_fin,
                    None if new.checksum < 0 else new.checksum)
    if old.length == 0:
        old_m = Mapping(old.dsn, old.start, old.length, old.data_fin,
                        None if old.checksum < 0 else old.checksum)
        return f"{new_m} contradicts the infinite mapping {old_m}"
    return conflict_text(new_m, old.start, old.end, old.dsn)


cdef class ChecksumBudget:
    """Payload bytes that DSS-checksummed mappings still collecting may claim, in all and per
    connection; a mapping beyond either is counted as unverified instead of held."""

    def __init__(self, total, per_connection):
        self.total = int_arg(total, "total", 0, I64_MAX)
        self.per_connection = int_arg(per_connection, "per_connection", 0, I64_MAX)
        self.claimed = 0
        self._by_connection = {}

    cdef bint claim_(self, int64_t connection, int64_t size) except -1:
        """``size`` >= 0; 0 <= claimed <= total and 0 <= mine always hold, so the
        differences below cannot overflow (a sum could: size may be near 2**63)."""
        cdef int64_t mine = self._by_connection.get(connection, 0)
        if size > self.total - self.claimed or size > self.per_connection - mine:
            return False
        self.claimed += size
        self._by_connection[connection] = mine + size
        return True

    cdef int release_(self, int64_t connection, int64_t size) except -1:
        cdef int64_t mine = self._by_connection.get(connection, 0)
        if size > mine:                   # more than was claimed: claimed would go negative
            raise ValueError(f"connection {connection} releases {size} bytes but holds {mine}")
        self.claimed -= size
        self._by_connection[connection] = mine - size
        return 0

    def claim(self, connection, size):
        return self.claim_(int_arg(connection, "connection", I64_MIN, I64_MAX),
                           int_arg(size, "size", 0, I64_MAX))

    def release(self, connection, size):
        self.release_(int_arg(connection, "connection", I64_MIN, I64_MAX),
                      int_arg(size, "size", 0, I64_MAX))


cdef class _Pending:
    """A checksummed mapping whose bytes are still being collected (the twin's _Pending).
    Bytes usually come in order: ``prefix`` counts those seen from the start, and the
    byte map ``seen`` is only kept once a piece lands beyond it. The buffer is made when
    the first byte arrives: a mapping whose data never comes costs no payload memory."""
    cdef int64_t start, end, length, checksum, missing, prefix
    cdef uint64_t dsn
    cdef uint8_t* data
    cdef uint8_t* seen                # NULL while every byte seen is in the prefix
    cdef int64_t packets[PACKETS_NAMED_MAX]
    cdef int count

    def __cinit__(self, int64_t start, int64_t payload_length, uint64_t dsn, int64_t length,
                  int64_t checksum):
        self.start, self.end, self.dsn = start, start + payload_length, dsn
        self.length, self.checksum, self.missing = length, checksum, payload_length

    def __dealloc__(self):
        free(self.data)
        free(self.seen)

    cdef int add(self, const uint8_t* payload, int64_t rel, int64_t lo, int64_t hi,
                 int64_t number) except -1:
        """Subflow bytes [lo, hi) of a payload that starts at ``rel``."""
        cdef int64_t k, a = lo - self.start, b = hi - self.start
        if self.data == NULL:
            self.data = <uint8_t*>malloc(self.end - self.start)
            if self.data == NULL:
                raise MemoryError()
        memcpy(self.data + a, payload + (lo - rel), b - a)
        if self.seen == NULL and a <= self.prefix:          # in order, or a repeat
            if b > self.prefix:
                self.missing -= b - self.prefix
                self.prefix = b
        else:
            if self.seen == NULL:
                self.seen = <uint8_t*>calloc(self.end - self.start, 1)
                if self.seen == NULL:
                    raise MemoryError()
                memset(self.seen, 1, self.prefix)
            for k in range(a, b):
                if not self.seen[k]:
                    self.seen[k] = 1
                    self.missing -= 1
        if self.count < PACKETS_NAMED_MAX and (self.count == 0 or self.packets[self.count - 1] != number):
            self.packets[self.count] = number
            self.count += 1
        return 0


cdef class SubflowReceiver:
    """One subflow's part of a DataReceiver: its mappings, checksums still collecting and
    counters. ``isn`` / ``rel_ref`` and ``probed`` are kept for the feeder."""

    def __cinit__(self, stream, sid):
        # never None: the compiled feeders reach the stream through it
        self.stream = stream if type(stream) is DataReceiver else \
            _check.instance("stream", stream, DataReceiver)
        self.sid = int_arg(sid, "sid", -0x80000000, 0x7FFFFFFF)
        if ms_init(&self.maps) < 0:
            raise MemoryError()
        self.rel_ref = 1
        self.pending = []                 # _Pending entries (numbers, a byte buffer): never
        untrack(self.pending)             # in a cycle, so not walked by the collector
        self.probe_at = -1

    def __dealloc__(self):
        ms_free(&self.maps)

    def resolve(self, rel_, length_):
        """[(dsn, length), ...] of subflow bytes [rel, rel + length) through this subflow's
        mappings, contiguous DSN runs merged; UnmappedData where no mapping covers a byte."""
        # rel + length stays below 2**63 (dss.SubflowMappings.resolve's checks and names)
        cdef int64_t rel = int_arg(rel_, "subflow_seq", 0, MAX_SUBFLOW_SEQ)
        cdef int64_t length = int_arg(length_, "length", 0, MAX_SUBFLOW_SEQ - rel)
        cdef int64_t pos = rel, stop
        cdef uint64_t dsn
        cdef const MapEntry* m
        cdef Py_ssize_t last
        out = []
        while pos < rel + length:
            m = ms_covering(&self.maps, pos)
            if m == NULL:
                raise UnmappedData(f"subflow bytes from {pos} have no mapping")
            stop = rel + length if m.length == 0 else min(rel + length, m.end)
            dsn = ms_dsn_at(m, pos)
            last = len(out) - 1               # no negative indexing: wraparound is off here
            if last >= 0 and (<uint64_t>out[last][0] + <uint64_t>out[last][1]) == dsn:
                out[last] = (out[last][0], out[last][1] + stop - pos)
            else:
                out.append((dsn, stop - pos))
            pos = stop
        return out

    def counters(self):
        return _DirectionCounters(self.bytes, self.reinjected, self.unverified + len(self.pending))

    def __len__(self):
        """Mapping pieces stored (the infinite mapping counts as one)."""
        return self.maps.count + (1 if self.maps.has_infinite else 0)

    def release(self, upto):
        """Forget the mapping pieces that end at or before subflow byte ``upto``."""
        ms_release(&self.maps, int_arg(upto, "upto", I64_MIN, I64_MAX))


cdef class DataReceiver:
    """One direction of a connection's data-level stream; see the pure twin."""

    def __cinit__(self, *args):
        self.capacity = 16
        self.starts = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.ends = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.carriers = <int32_t*>malloc(self.capacity * sizeof(int32_t))
        if self.starts == NULL or self.ends == NULL or self.carriers == NULL:
            raise MemoryError()
        self.probe_packets = []           # packet numbers: not walked by the collector
        untrack(self.probe_packets)

    def __init__(self, events, budget, connection, verify_checksum):
        # never None: declare_ and deliver_ use both without a check
        self.events = events if type(events) is list else _check.instance("events", events, list)
        self.budget = budget if type(budget) is ChecksumBudget else \
            _check.instance("budget", budget, ChecksumBudget)
        self.connection = int_arg(connection, "connection", I64_MIN, I64_MAX)
        self._verify = verify_checksum

    def __dealloc__(self):
        free(self.starts)
        free(self.ends)
        free(self.carriers)

    # -- the Python face (the compiled feeders call the *_ methods)
    def start(self, initial_dsn, queue, drain):
        """Keys are known: coverage counts from ``initial_dsn`` and payload goes to ``queue``
        (``drain()`` is called every few MiB pushed)."""
        self.origin = self.dsn_ref = <uint64_t>(initial_dsn & 0xFFFFFFFFFFFFFFFF)
        self.origin_known = self.ref_known = True
        self.queue, self.drain = queue, drain

    def subflow(self, sid):
        return SubflowReceiver(self, sid)    # it checks sid (int32)

    def watch_gaps(self, horizon, on_gap):
        """Pass holes in the stream (bytes a capture never saw) instead of waiting for them;
        ``on_gap(dsn, length)`` for each (the pure twin says when)."""
        self.gap_horizon = int_arg(horizon, "horizon", 1, I64_MAX)
        self.on_gap = on_gap

    def counters(self):
        fin_reached = self.fin_known and self.origin_known and \
            self.edge >= seq64_diff(self.data_fin, self.origin)
        return _StreamCounters(self.new_bytes, self.not_captured, self.out_of_order,
                               self.duplicate, self.reinjected, self.outside_window,
                               self.data_acked if self.acked_known else None,
                               self.data_fin if self.fin_known else None, fin_reached,
                               self.gaps, self.missing, self.late, self.probes)

    def expand_dsn(self, dsn32):
        return self.expand_dsn_(u64_arg(dsn32, "dsn32"))

    def acknowledged(self, ack, bint is64):
        self.acknowledged_(u64_arg(ack, "ack"), is64)

    def declare(self, number_, side, dsn_, start_, length_, data_fin_, checksum_, truncated_):
        """The ranges of SubflowMappings.declare_fields (a 16-bit Data-Level Length, subflow
        bytes below 2**63): no sum of them below can overflow int64."""
        cdef int64_t number = int_arg(number_, "number", I64_MIN, I64_MAX)
        cdef SubflowReceiver sub = side if type(side) is SubflowReceiver else \
            _check.instance("side", side, SubflowReceiver)
        cdef uint64_t dsn = u64_arg(dsn_, "dsn")
        cdef int64_t length = int_arg(length_, "length", 0, 0xFFFF)
        cdef bint data_fin = data_fin_ if type(data_fin_) is bool else \
            _check.flag("data_fin", data_fin_)
        cdef int64_t payload = length - 1 if data_fin else length
        cdef int64_t start = int_arg(start_, "start", 0,
                                     MAX_SUBFLOW_SEQ - (payload if payload > 0 else 0))
        cdef int64_t checksum = -1 if checksum_ is None else int_arg(checksum_, "checksum", 0, 0xFFFF)
        cdef bint truncated = truncated_ if type(truncated_) is bool else \
            _check.flag("truncated", truncated_)
        self.declare_(number, sub, dsn, start, length, data_fin, checksum, truncated)

    def deliver(self, number_, side, rel_, length_, payload):
        """Subflow bytes [rel, rel + length) of packet ``number`` on ``side``; ``payload`` is
        their bytes (a buffer of ``length`` bytes), or None when they were not captured."""
        cdef int64_t number = int_arg(number_, "number", I64_MIN, I64_MAX)
        cdef SubflowReceiver sub = side if type(side) is SubflowReceiver else \
            _check.instance("side", side, SubflowReceiver)
        # rel + length stays below 2**63: the walks below add them
        cdef int64_t rel = int_arg(rel_, "rel", 0, MAX_SUBFLOW_SEQ)
        cdef int64_t length = int_arg(length_, "length", 0, MAX_SUBFLOW_SEQ - rel)
        cdef Py_buffer view
        if payload is None:
            self.deliver_(number, sub, rel, length, NULL)
            return
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            if view.len != length:
                raise ValueError(f"payload holds {view.len} bytes, not {length}")
            if immutable_buffer(payload):
                # immutable (bytes, or a read-only view of bytes: segment.read(view=True)):
                # queued as it is when whole (push)
                self._whole, self._whole_at, self._whole_len = \
                    payload, <const uint8_t*>view.buf, length
            self.deliver_(number, sub, rel, length, <const uint8_t*>view.buf)
        finally:
            self._whole, self._whole_at, self._whole_len = None, NULL, 0
            PyBuffer_Release(&view)

    cdef int deliver_bytes(self, int64_t number, SubflowReceiver side, int64_t rel,
                           bytes payload) except -1:
        """deliver(number, side, rel, len(payload), payload) as a C call, for the compiled
        engine (connection.pxd's _receiver_deliver): the same course, the bytes object queued
        as it is when a run of it is all of it."""
        cdef int64_t length = len(payload)
        if rel < 0 or rel > MAX_SUBFLOW_SEQ - length:
            self.deliver(number, side, rel, length, payload)    # its error, as deliver says it
            return 0
        self._whole, self._whole_at, self._whole_len = \
            payload, <const uint8_t*>PyBytes_AS_STRING(payload), length
        try:
            self.deliver_(number, side, rel, length, self._whole_at)
        finally:
            self._whole, self._whole_at, self._whole_len = None, NULL, 0
        return 0

    # -- DSNs and data ACKs (RFC 8684 §3.3.1-3.3.2; Linux's __mptcp_expand_seq)
    cdef uint64_t expand_dsn_(self, uint64_t dsn32) noexcept:
        """A 32-bit DSN promoted next to the newest mapping seen (itself when none was)."""
        return expand_seq(self.dsn_ref if self.ref_known else dsn32, <uint32_t>dsn32)

    cdef int acknowledged_(self, uint64_t ack, bint is64) except -1:
        """A DATA_ACK for this stream's data (it arrives on the other direction)."""
        if not is64:
            if not self.ref_known:
                return 0
            ack = expand_seq(self.dsn_ref, <uint32_t>ack)
        if not self.acked_known or seq64_diff(ack, self.data_acked) >= 0:
            self.data_acked, self.acked_known = ack, True
            if self.gap_horizon and self.count and self.ends[self.count - 1] > self.edge:
                self.pass_acknowledged_holes()
        return 0

    # -- mappings
    cdef int declare_(self, int64_t number, SubflowReceiver side, uint64_t dsn, int64_t start,
                      int64_t length, bint data_fin, int64_t checksum, bint truncated) except -1:
        cdef MapEntry e, old
        cdef int result
        cdef int64_t payload_length = length - 1 if data_fin else length
        cdef uint64_t fin
        cdef _Pending entry
        if ms_entry(&e, start, dsn, length, data_fin, checksum) < 0:
            # the Python face checked these; the compiled tracker calls here directly: the
            # pure twin's declare() error, and no int64 overflow below
            _check.in_range("length", length, 0, 0xFFFF)
            _check.in_range("start", start, 0, MAX_SUBFLOW_SEQ - max(payload_length, 0))
        result = ms_declare(&side.maps, &e, &old)
        if result == MS_NO_MEMORY:
            raise MemoryError()
        if result == MS_CONFLICT:
            self.events.append(_Event(number, side.sid, mapping_conflict(&e, &old), None))
            return 0
        side.probed = True
        if length == 1 and not data_fin and self.acked_known and \
                seq64_diff(dsn, self.data_acked) < 0:
            side.probe_at = start             # Linux's zero-window probe (the pure twin's note)
        if not self.ref_known or seq64_diff(dsn, self.dsn_ref) >= 0:
            self.dsn_ref, self.ref_known = dsn, True
        if data_fin:
            fin = dsn + <uint64_t>(length - 1)
            if self.fin_known and fin != self.data_fin:
                self.events.append(_Event(number, side.sid,
                                          f"DATA_FIN moved from DSN {self.data_fin} to {fin}", None))
                return 0
            self.data_fin, self.fin_known = fin, True
            if self.queue is not None:
                try:
                    self.queue.data_fin(self.data_fin)
                except MptcpError as exc:
                    self.events.append(_Event(number, side.sid, str(exc), None))
        if (result == MS_NEW and self.checksums and checksum >= 0 and payload_length > 0
                and not truncated):           # headers-only captures cannot be checked
            if len(side.pending) >= PENDING_CHECKSUMS_MAX:    # bytes that never all arrived
                entry = side.pending.pop(0)
                self.release_pending(entry.end - entry.start)
                side.unverified += 1
            if self.budget is None:       # made with __new__ alone: a C call on None crashes
                raise TypeError("budget must be a ChecksumBudget, not NoneType")
            if not self.budget.claim_(self.connection, payload_length):
                side.unverified += 1          # over the memory budget: counted, not held
                return 0
            side.pending.append(_Pending(start, payload_length, dsn, length, checksum))
        return 0

    cdef int release_pending(self, int64_t size) except -1:
        return self.budget.release_(self.connection, size)

    # -- segments
    cdef int deliver_(self, int64_t number, SubflowReceiver side, int64_t rel, int64_t length,
                      const uint8_t* payload) except -1:
        """Subflow bytes [rel, rel + length); ``payload`` NULL when they were not captured."""
        cdef int64_t pos
        cdef const MapEntry* m
        if rel < 0 or length < 0 or length > MAX_SUBFLOW_SEQ - rel:
            # rel + length is summed below: the pure twin's deliver() error (the compiled
            # tracker calls here directly)
            _check.in_range("rel", rel, 0, MAX_SUBFLOW_SEQ)
            _check.in_range("length", length, 0, MAX_SUBFLOW_SEQ - rel)
        pos = rel                             # every byte must be mapped before any is used
        while pos < rel + length:
            m = ms_covering(&side.maps, pos)
            if m == NULL:
                self.events.append(_Event(number, side.sid,
                                          f"subflow bytes from {pos} have no mapping", None))
                return 0
            pos = rel + length if m.length == 0 else min(rel + length, m.end)
        if length == 1 and rel == side.probe_at:
            self.probes += 1                  # a zero-window probe (declare_): not stream data
            if len(self.probe_packets) < PROBES_NAMED_MAX:
                self.probe_packets.append(number)
        else:
            self.place(side, rel, length, payload)
        if self.pushed >= DRAIN_EVERY:
            self.pushed = 0
            self.drain()
        if side.pending and payload:
            self.collect(number, side, rel, payload, length)
        if not number & 1023:                 # memory follows the window, not the file
            ms_release(&side.maps, rel - MAPPINGS_KEPT_BEHIND)
        return 0

    cdef int place(self, SubflowReceiver side, int64_t rel, int64_t length,
                   const uint8_t* payload) except -1:
        """Mapped subflow bytes [rel, rel + length) into coverage and the queue, in runs of
        contiguous DSNs (as resolve() merges them)."""
        cdef int64_t pos, stop, run_start
        cdef uint64_t dsn, run_dsn = 0
        cdef const MapEntry* m
        pos = run_start = rel
        while pos < rel + length:
            m = ms_covering(&side.maps, pos)
            stop = rel + length if m.length == 0 else min(rel + length, m.end)
            dsn = ms_dsn_at(m, pos)
            if pos > run_start and dsn != run_dsn + <uint64_t>(pos - run_start):
                self.cover(side, run_dsn, pos - run_start)
                self.push(run_dsn, payload + (run_start - rel) if payload else NULL, pos - run_start)
                run_start = pos
            if pos == run_start:
                run_dsn = dsn
            pos = stop
        self.cover(side, run_dsn, pos - run_start)
        self.push(run_dsn, payload + (run_start - rel) if payload else NULL, pos - run_start)
        return 0

    cdef int push(self, uint64_t dsn, const uint8_t* payload, int64_t length) except -1:
        """Captured payload into the stream's queue."""
        if payload != NULL and self.queue is not None:
            if payload == self._whole_at and length == self._whole_len:
                data = self._whole                   # (the pure twin's whole slice: the same)
            else:
                data = PyBytes_FromStringAndSize(<const char*>payload, length)
            if type(self.queue) is ReassemblyQueue:  # the engine's queue: a C call
                (<ReassemblyQueue>self.queue)._push(dsn, data)
            else:
                self.queue.push(dsn, data)
            self.pushed += length
        return 0

    # -- data-level coverage
    cdef int cover(self, SubflowReceiver side, uint64_t dsn, int64_t length) except -1:
        cdef int64_t s, e, pos, stop, below
        cdef Py_ssize_t i, j
        cdef int32_t sid = side.sid
        if not self.origin_known:
            self.origin, self.origin_known = dsn, True  # keys unknown: offsets from the first DSN
        s = seq64_diff(dsn, self.origin)
        if beyond_reach(s, length):          # would end 2**63 past the origin: outside any
            self.outside_window += length    # window (mf_serial.pxd), counted, not placed
            return 0
        e = s + length
        if s < self.floor:                   # long delivered: no carrier kept
            below = min(e, self.floor) - s
            self.duplicate += below
            s += below
        i = self.first_ending_after(s)
        pos = s
        while pos < e:
            if i < self.count and self.starts[i] <= pos:
                stop = min(e, self.ends[i])
                self.duplicate += stop - pos
                if self.carriers[i] != sid:
                    self.reinjected += stop - pos
                    side.reinjected += stop - pos
                pos = stop
                i += 1
                continue
            stop = min(e, self.starts[i]) if i < self.count else e
            self.new_bytes += stop - pos
            if pos < self.edge:              # below the edge and never seen: in a passed gap
                self.late += stop - pos
            elif pos != self.edge:
                self.out_of_order += stop - pos
            i = self.insert(i, pos, stop, sid) + 1
            if pos == self.edge:
                self.edge = stop
                j = i
                while j < self.count and self.starts[j] == self.edge:
                    self.edge = self.ends[j]
                    j += 1
            pos = stop
        if self.gap_horizon and self.count and \
                self.ends[self.count - 1] - self.edge > self.gap_horizon:
            self.pass_holes_below(self.ends[self.count - 1] - self.gap_horizon)
        self.prune()
        return 0

    cdef Py_ssize_t first_ending_after(self, int64_t value) noexcept:
        """bisect_right on the interval ends."""
        cdef Py_ssize_t lo = 0, hi = self.count, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.ends[mid] <= value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef Py_ssize_t insert(self, Py_ssize_t i, int64_t start, int64_t end, int32_t sid) except -1:
        """Put [start, end) before interval i, merged into the one before when that one ends
        at ``start`` on the same subflow (the usual in-order case); return its index."""
        if i > 0 and self.ends[i - 1] == start and self.carriers[i - 1] == sid:
            self.ends[i - 1] = end
            return i - 1
        if self.count == self.capacity:
            self.grow()
        memmove(self.starts + i + 1, self.starts + i, (self.count - i) * sizeof(int64_t))
        memmove(self.ends + i + 1, self.ends + i, (self.count - i) * sizeof(int64_t))
        memmove(self.carriers + i + 1, self.carriers + i, (self.count - i) * sizeof(int32_t))
        self.starts[i], self.ends[i], self.carriers[i] = start, end, sid
        self.count += 1
        return i

    cdef int grow(self) except -1:
        cdef Py_ssize_t n = 2 * self.capacity
        cdef void* p
        p = realloc(self.starts, n * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.starts = <int64_t*>p
        p = realloc(self.ends, n * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.ends = <int64_t*>p
        p = realloc(self.carriers, n * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.carriers = <int32_t*>p
        self.capacity = n
        return 0

    cdef int prune(self) except -1:
        """Forget carriers HISTORY bytes behind the edge, and bound the list on hostile input."""
        cdef Py_ssize_t k, j
        if self.count > 64 and self.ends[63] <= self.edge - HISTORY:
            k = self.first_ending_after(self.edge - HISTORY)
        elif self.count > MAX_INTERVALS:
            k = self.count - MAX_INTERVALS
            if self.gap_horizon:              # holes the bound would forget are passed first
                self.pass_holes_below(self.ends[k - 1])
        else:
            return 0
        self.floor = self.ends[k - 1]
        self.count -= k
        memmove(self.starts, self.starts + k, self.count * sizeof(int64_t))
        memmove(self.ends, self.ends + k, self.count * sizeof(int64_t))
        memmove(self.carriers, self.carriers + k, self.count * sizeof(int32_t))
        if self.edge < self.floor:
            self.edge = self.floor
            j = 0
            while j < self.count and self.starts[j] == self.edge:
                self.edge = self.ends[j]
                j += 1
        return 0

    # -- gaps: holes a capture will never fill (watch_gaps; the pure twin's rules)
    def finish(self):
        """The capture is over: pass every hole left, and the bytes missing before the
        DATA_FIN (when it was seen), when gaps are watched."""
        if not self.gap_horizon or not self.origin_known:
            return
        if self.count:
            self.pass_holes_below(self.ends[self.count - 1])
        if self.fin_known and self.edge < seq64_diff(self.data_fin, self.origin):
            self.pass_gap(seq64_diff(self.data_fin, self.origin))

    cdef int pass_acknowledged_holes(self) except -1:
        """Holes the peer's DATA_ACK went beyond: the receiver had those bytes."""
        cdef int64_t acked, end
        if not self.origin_known:
            return 0
        acked = seq64_diff(self.data_acked, self.origin)
        while acked > self.edge and self.count and self.ends[self.count - 1] > self.edge:
            end = self.starts[self.first_ending_after(self.edge)]
            if end > acked:
                return 0
            self.pass_gap(end)
        return 0

    cdef int pass_holes_below(self, int64_t limit) except -1:
        """Pass the holes that begin below ``limit``."""
        while self.edge < limit and self.count and self.ends[self.count - 1] > self.edge:
            self.pass_gap(self.starts[self.first_ending_after(self.edge)])
        return 0

    cdef int pass_gap(self, int64_t end) except -1:
        """Bytes [edge, end) will not come: a gap (the pure twin's _pass)."""
        cdef int64_t start = self.edge
        cdef uint64_t dsn = self.origin + <uint64_t>start
        cdef Py_ssize_t j
        if self.queue is not None:
            self.drain()
            if self.queue.data_ack == dsn and (not self.fin_known or
                                               end <= seq64_diff(self.data_fin, self.origin)):
                self.queue.skip_to(self.origin + <uint64_t>end)
        self.gaps += 1
        self.missing += end - start
        self.edge = end
        j = self.first_ending_after(end)
        while j < self.count and self.starts[j] == self.edge:
            self.edge = self.ends[j]
            j += 1
        if self.on_gap is not None:
            self.on_gap(dsn, end - start)
        return 0

    # -- DSS checksums over whole mappings (RFC 8684 §3.3.1)
    cdef int collect(self, int64_t number, SubflowReceiver side, int64_t rel,
                     const uint8_t* payload, int64_t length) except -1:
        cdef int64_t end = rel + length, lo, hi
        cdef _Pending entry
        cdef Py_ssize_t k = 0
        while k < len(side.pending):
            entry = side.pending[k]
            lo, hi = max(rel, entry.start), min(end, entry.end)
            if lo >= hi:
                k += 1
                continue
            entry.add(payload, rel, lo, hi, number)
            if entry.missing:
                k += 1
                continue
            del side.pending[k]
            self.release_pending(entry.end - entry.start)
            data = PyBytes_FromStringAndSize(<const char*>entry.data, entry.end - entry.start)
            if not self._verify(entry.dsn, entry.start & 0xFFFFFFFF, entry.length, data,
                                entry.checksum):
                packets = [entry.packets[j] for j in range(entry.count)]
                self.events.append(_Event(number, side.sid, checksum_failure(entry.dsn, packets),
                                          tuple(sorted(packets))))
        return 0

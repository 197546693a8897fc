# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/_pure/_tracking.py: the capture analyzer's per-packet fast path.

Reads the numpy columns of mptcp_fast.capture through typed memoryviews. Mappings follow
the rules of mf_mapstore.pxd (the same as SubflowMappings); coverage intervals are plain C
arrays. Python objects are touched only for reassembly (queue.push of captured payload),
DSS checksums of captured mappings, and rare events. Same results, counters and event
texts as the pure twin.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove, memcmp, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
cimport numpy as cnp
from numpy cimport npy_bool as cnp_bool

from mf_mapstore cimport (MapEntry, MapStore, ms_entry, ms_init, ms_free, ms_dsn_at, ms_declare,
                          ms_covering, ms_release, MS_NEW, MS_CONFLICT, MS_NO_MEMORY)
from mf_serial cimport expand_seq, seq64_diff, beyond_reach
from mptcp_fast.errors import MptcpError, conflict_text

cnp.import_array()

cdef enum:
    SYN = 0x02
    RST = 0x04
    DSS_BIT = 1 << 2
    HISTORY = 1 << 24               # DSN bytes behind the contiguous edge whose carrier is kept
    MAX_INTERVALS = 1 << 16         # coverage intervals per stream (memory bound)
    MAPPINGS_KEPT_BEHIND = 1 << 24  # subflow bytes of mappings kept behind the newest segment
    PENDING_CHECKSUMS_MAX = 256     # checksummed mappings per subflow direction still collecting
    PACKETS_NAMED_MAX = 64          # packet numbers kept per checksummed mapping
    DRAIN_EVERY = 1 << 22           # bytes pushed into a stream's queue between two drains


cdef object _Event = None             # mptcp_fast.analyze's types, set by bind_types()
cdef object _DirectionCounters = None
cdef object _StreamCounters = None


def bind_types(event, direction_counters, stream_counters):
    global _Event, _DirectionCounters, _StreamCounters
    _Event, _DirectionCounters, _StreamCounters = event, direction_counters, stream_counters


def checksum_failure(dsn, packets):
    return (f"DSS checksum failure for the mapping at DSN {dsn} carried by packets "
            f"{', '.join(map(str, sorted(packets)))}")


cdef bytes flow_key(uint8_t family, const uint8_t* a, uint16_t aport, const uint8_t* b,
                    uint16_t bport):
    """The same 37-byte key for both directions of a 4-tuple (the twin's flow_key): the
    family, then the lower (address, port) side, then the other."""
    cdef uint8_t key[37]
    cdef uint8_t side_a[18]
    cdef uint8_t side_b[18]
    memcpy(side_a, a, 16)
    side_a[16] = aport >> 8
    side_a[17] = aport & 0xFF
    memcpy(side_b, b, 16)
    side_b[16] = bport >> 8
    side_b[17] = bport & 0xFF
    key[0] = family
    if memcmp(side_a, side_b, 18) <= 0:
        memcpy(key + 1, side_a, 18)
        memcpy(key + 19, side_b, 18)
    else:
        memcpy(key + 1, side_b, 18)
        memcpy(key + 19, side_a, 18)
    return PyBytes_FromStringAndSize(<char*>key, 37)


cdef bytes padded(bytes address):
    return address + bytes(16 - len(address))


cdef class _Stream:
    """One direction of a connection's data-level stream."""
    cdef bint origin_known, ref_known, acked_known, fin_known
    cdef uint64_t origin, dsn_ref, data_acked, data_fin
    cdef object queue, drain
    cdef int64_t pushed
    cdef bint checksums
    cdef int64_t* starts
    cdef int64_t* ends
    cdef int32_t* carriers
    cdef Py_ssize_t count, capacity
    cdef int64_t floor, edge
    cdef int64_t new_bytes, out_of_order, duplicate, reinjected, not_captured, outside_window

    def __cinit__(self):
        self.capacity = 16
        self.starts = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.ends = <int64_t*>malloc(self.capacity * sizeof(int64_t))
        self.carriers = <int32_t*>malloc(self.capacity * sizeof(int32_t))
        if self.starts == NULL or self.ends == NULL or self.carriers == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.starts)
        free(self.ends)
        free(self.carriers)

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

    cdef void prune(self) noexcept:
        """Forget carriers HISTORY bytes behind the edge, and bound the list on hostile input."""
        cdef Py_ssize_t k, j
        if self.count > 64 and self.ends[63] <= self.edge - HISTORY:
            k = self.first_ending_after(self.edge - HISTORY)
        elif self.count > MAX_INTERVALS:
            k = self.count - MAX_INTERVALS
        else:
            return
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


cdef class _Pending:
    """A checksummed mapping whose bytes are still being collected (the twin's list entry).
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


cdef class _Side:
    """One direction of one subflow."""
    cdef _Stream stream
    cdef int stream_id
    cdef bint isn_known, probed
    cdef uint32_t isn
    cdef int64_t rel_ref
    cdef MapStore maps
    cdef int64_t bytes, reinjected, unverified
    cdef list pending          # _Pending, oldest first

    def __cinit__(self):
        if ms_init(&self.maps) < 0:
            raise MemoryError()
        self.rel_ref = 1
        self.pending = []

    def __dealloc__(self):
        ms_free(&self.maps)


cdef class Tracker:
    """Subflows, mappings and data-level streams of one capture; ``verify_checksum(dsn,
    subflow_seq, data_len, payload, checksum) -> bool`` checks a whole mapping."""
    cdef object _verify
    cdef dict _flows                  # flow key -> sid
    cdef list _clients                # sid -> 18-byte client address + port
    cdef list _sides                  # 2 * sid + direction -> _Side, or None when not analysed
    cdef list _streams
    cdef public list events           # (packet number, sid, text, packets or None)
    cdef int64_t _budget, _connection_budget, _claimed
    cdef dict _claimed_by_connection  # up stream // 2 -> payload bytes claimed
    # the loaded batch
    cdef Py_ssize_t _n
    cdef int64_t[::1] _number, _payload_start
    cdef uint8_t[::1] _family, _flags, _dss_flags
    cdef uint8_t[:, ::1] _src, _dst
    cdef uint16_t[::1] _sport, _dport, _subtypes, _dll
    cdef uint32_t[::1] _seq, _payload_len, _ssn
    cdef cnp_bool[::1] _truncated, _malformed
    cdef uint64_t[::1] _data_ack, _dsn
    cdef int32_t[::1] _csum
    cdef bytes _blob

    def __init__(self, verify_checksum, int64_t checksum_budget, int64_t connection_checksum_budget):
        self._verify = verify_checksum
        self._budget, self._connection_budget = checksum_budget, connection_checksum_budget
        self._claimed = 0
        self._claimed_by_connection = {}
        self._flows = {}
        self._clients = []
        self._sides = []
        self._streams = []
        self.events = []
        self._n = 0

    # -- set-up, from the analyzer
    def add_streams(self):
        """A connection's two data-level streams: returns the client's (up); down is up + 1."""
        self._streams += (_Stream(), _Stream())
        return len(self._streams) - 2

    def start_stream(self, int stream, initial_dsn, queue, drain):
        cdef _Stream st = self._streams[stream]
        st.origin = st.dsn_ref = <uint64_t>(initial_dsn & 0xFFFFFFFFFFFFFFFF)
        st.origin_known = st.ref_known = True
        st.queue, st.drain = queue, drain

    def set_checksums(self, int stream, on):
        (<_Stream>self._streams[stream]).checksums = bool(on)

    def add_subflow(self, bytes client, int client_port, bytes server, int server_port,
                    int up_stream, int down_stream):
        """Register a 4-tuple (a later SYN on the same 4-tuple replaces it); streams -1: the
        flow is known but not analysed."""
        cdef Py_ssize_t sid = len(self._clients)
        cdef bytes c = padded(client), s = padded(server)
        cdef _Side up, down
        self._flows[flow_key(4 if len(client) == 4 else 6,
                             <const uint8_t*>PyBytes_AS_STRING(c), client_port,
                             <const uint8_t*>PyBytes_AS_STRING(s), server_port)] = sid
        self._clients.append(c + bytes([client_port >> 8, client_port & 0xFF]))
        if up_stream < 0:
            self._sides += (None, None)
        else:
            up, down = _Side(), _Side()
            up.stream_id, up.stream = up_stream, self._streams[up_stream]
            down.stream_id, down.stream = down_stream, self._streams[down_stream]
            self._sides += (up, down)
        return sid

    def lookup(self, bytes src, int sport, bytes dst, int dport):
        cdef bytes a = padded(src), b = padded(dst)
        cdef int direction
        sid = self._flows.get(flow_key(4 if len(src) == 4 else 6,
                                       <const uint8_t*>PyBytes_AS_STRING(a), sport,
                                       <const uint8_t*>PyBytes_AS_STRING(b), dport))
        if sid is None:
            return None
        return sid, self._direction(sid, <const uint8_t*>PyBytes_AS_STRING(a), sport)

    cdef int _direction(self, Py_ssize_t sid, const uint8_t* src, uint16_t sport):
        cdef bytes client = self._clients[sid]
        cdef const uint8_t* c = <const uint8_t*>PyBytes_AS_STRING(client)
        if memcmp(c, src, 16) == 0 and c[16] == sport >> 8 and c[17] == sport & 0xFF:
            return 0
        return 1

    def probed(self, Py_ssize_t sid, int direction):
        """Whether that subflow direction has had a mapping, or a payload was looked at."""
        side = self._sides[2 * sid + direction]
        return side is not None and (<_Side>side).probed

    def set_isn(self, Py_ssize_t sid, int direction, uint32_t isn):
        cdef _Side side = self._sides[2 * sid + direction]
        side.isn, side.isn_known, side.rel_ref = isn, True, 1

    def declare(self, int64_t number, Py_ssize_t sid, int direction, dsn, uint32_t subflow_seq,
                int64_t length, bint data_fin, checksum, bint truncated):
        """A mapping the analyzer found outside a DSS (MP_CAPABLE with data; fallback)."""
        cdef _Side side = self._sides[2 * sid + direction]
        self._declare(number, sid, side, <uint64_t>(dsn & 0xFFFFFFFFFFFFFFFF),
                      expand_rel(side, subflow_seq), length, data_fin,
                      -1 if checksum is None else checksum, truncated)

    # -- counters
    def subflow_counters(self, Py_ssize_t sid):
        """(DirectionCounters up, DirectionCounters down) of a subflow."""
        cdef _Side s
        if self._sides[2 * sid] is None:
            return _DirectionCounters(0, 0, 0), _DirectionCounters(0, 0, 0)
        out = []
        for k in range(2):
            s = self._sides[2 * sid + k]
            out.append(_DirectionCounters(s.bytes, s.reinjected, s.unverified + len(s.pending)))
        return tuple(out)

    def checksum_claims(self):
        """Payload bytes that pending checksummed mappings hold a claim on now."""
        return self._claimed

    def stream_counters(self, int stream):
        """StreamCounters of one direction of a connection's data-level stream."""
        cdef _Stream st = self._streams[stream]
        fin_reached = st.fin_known and st.origin_known and \
            st.edge >= seq64_diff(st.data_fin, st.origin)
        return _StreamCounters(st.new_bytes, st.not_captured, st.out_of_order, st.duplicate,
                               st.reinjected, st.outside_window,
                               st.data_acked if st.acked_known else None,
                               st.data_fin if st.fin_known else None, fin_reached)

    # -- the walk
    def load(self, cols):
        """Take a batch of columns (CaptureReader.columns) for the next run() calls."""
        self._n = len(cols["number"])
        self._number, self._family = cols["number"], cols["family"]
        self._src, self._dst = cols["src"], cols["dst"]
        self._sport, self._dport, self._seq = cols["sport"], cols["dport"], cols["seq"]
        self._flags, self._payload_len = cols["flags"], cols["payload_len"]
        self._truncated, self._payload_start = cols["truncated"], cols["payload_start"]
        self._blob = cols["payload_blob"]
        self._subtypes, self._malformed = cols["mptcp_subtypes"], cols["options_malformed"]
        self._dss_flags, self._data_ack, self._dsn = cols["dss_flags"], cols["data_ack"], cols["dsn"]
        self._ssn, self._dll, self._csum = cols["dss_ssn"], cols["dss_len"], cols["dss_checksum"]

    def run(self, Py_ssize_t start):
        """Handle packets from ``start``; return the index of the first the analyzer must see
        (or the batch length)."""
        cdef Py_ssize_t i
        cdef uint16_t subtypes
        cdef bint has_mapping
        cdef object sid
        cdef int direction
        cdef _Side side
        for i in range(start, self._n):
            subtypes = self._subtypes[i]
            if self._flags[i] & (SYN | RST) or self._malformed[i] or subtypes & ~DSS_BIT:
                return i
            sid = self._flows.get(flow_key(self._family[i], &self._src[i, 0], self._sport[i],
                                           &self._dst[i, 0], self._dport[i]))
            if sid is None:
                if subtypes:
                    return i                  # MPTCP on a flow the analyzer has not seen
                continue                      # plain TCP: not ours
            direction = self._direction(sid, &self._src[i, 0], self._sport[i])
            found = self._sides[2 * <Py_ssize_t>sid + direction]
            if found is None:
                continue
            side = <_Side>found
            has_mapping = self._dss_flags[i] != 0xFF and self._dss_flags[i] & 4
            if has_mapping and self._dll[i] == 0:
                return i                      # infinite mapping: an event for the analyzer
            if self._payload_len[i] and not side.probed and not has_mapping:
                return i                      # first data without a mapping: fallback?
            self._packet(i, sid, side)
        return self._n

    def packet(self, Py_ssize_t i, Py_ssize_t sid, int direction):
        """The DSS and payload part of a packet the analyzer has handled."""
        side = self._sides[2 * sid + direction]
        if side is not None:
            self._packet(i, sid, <_Side>side)

    cdef int _packet(self, Py_ssize_t i, Py_ssize_t sid, _Side side) except -1:
        cdef int64_t number = self._number[i]
        cdef uint8_t f = self._dss_flags[i]
        cdef bint truncated = self._truncated[i] or self._payload_start[i] < 0
        cdef _Stream st = side.stream
        cdef uint64_t dsn
        cdef int64_t length, rel, pos, stop, run_start
        cdef uint64_t run_dsn = 0
        cdef const MapEntry* m
        if f != 0xFF:
            if f & 1:
                self._ack(side, self._data_ack[i], f & 2)
            if f & 4:
                dsn = self._dsn[i]
                if not f & 8:
                    dsn = expand_seq(st.dsn_ref if st.ref_known else dsn, <uint32_t>dsn)
                self._declare(number, sid, side, dsn, expand_rel(side, self._ssn[i]), self._dll[i],
                              f & 16, self._csum[i], truncated)
        length = self._payload_len[i]
        if not length:
            return 0
        side.bytes += length
        side.probed = True
        if truncated:
            st.not_captured += length
        if not side.isn_known:
            return 0
        rel = expand_rel(side, <uint32_t>(self._seq[i] - side.isn + (1 if self._flags[i] & SYN else 0)))
        if rel + length > side.rel_ref:
            side.rel_ref = rel + length
        pos = rel                             # every byte must be mapped before any is used
        while pos < rel + length:
            m = ms_covering(&side.maps, pos)
            if m == NULL:
                self.events.append(_Event(number, sid, f"subflow bytes from {pos} have no mapping",
                                          None))
                return 0
            pos = rel + length if m.length == 0 else min(rel + length, m.end)
        pos = run_start = rel                 # runs of contiguous DSNs, as resolve() merges them
        while pos < rel + length:
            m = ms_covering(&side.maps, pos)
            stop = rel + length if m.length == 0 else min(rel + length, m.end)
            dsn = ms_dsn_at(m, pos)
            if pos > run_start and dsn != run_dsn + <uint64_t>(pos - run_start):
                self._use(i, sid, side, rel, run_start, pos, run_dsn, truncated)
                run_start = pos
            if pos == run_start:
                run_dsn = dsn
            pos = stop
        self._use(i, sid, side, rel, run_start, pos, run_dsn, truncated)
        if st.pushed >= DRAIN_EVERY:
            st.pushed = 0
            st.drain()
        if side.pending and not truncated:
            self._collect(number, sid, side, rel, <const uint8_t*>PyBytes_AS_STRING(self._blob)
                          + self._payload_start[i], length)
        if not number & 1023:                 # memory follows the window, not the file
            ms_release(&side.maps, rel - MAPPINGS_KEPT_BEHIND)
        return 0

    cdef int _use(self, Py_ssize_t i, Py_ssize_t sid, _Side side, int64_t rel, int64_t start,
                  int64_t stop, uint64_t dsn, bint truncated) except -1:
        """Subflow bytes [start, stop) of packet i, at DSN ``dsn`` onwards: coverage, then the
        stream's queue when the payload was captured."""
        cdef _Stream st = side.stream
        cdef int64_t offset
        self._cover(st, side, sid, dsn, stop - start)
        if not truncated and st.queue is not None:
            offset = self._payload_start[i] + (start - rel)
            st.queue.push(dsn, PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._blob) + offset,
                                                        stop - start))
            st.pushed += stop - start
        return 0

    cdef int _ack(self, _Side side, uint64_t ack, bint is64) except -1:
        cdef _Stream peer = self._streams[side.stream_id ^ 1]   # streams come in (up, down) pairs
        if not is64:
            if not peer.ref_known:
                return 0
            ack = expand_seq(peer.dsn_ref, <uint32_t>ack)
        if not peer.acked_known or seq64_diff(ack, peer.data_acked) >= 0:
            peer.data_acked, peer.acked_known = ack, True
        return 0

    cdef int _declare(self, int64_t number, Py_ssize_t sid, _Side side, uint64_t dsn, int64_t start,
                      int64_t length, bint data_fin, int64_t checksum, bint truncated) except -1:
        cdef _Stream st = side.stream
        cdef MapEntry e, old
        cdef int result
        cdef int64_t payload_length = length - 1 if data_fin else length
        cdef int64_t claimed
        cdef Py_ssize_t connection
        cdef uint64_t fin
        ms_entry(&e, start, dsn, length, data_fin, checksum)
        result = ms_declare(&side.maps, &e, &old)
        if result == MS_NO_MEMORY:
            raise MemoryError()
        if result == MS_CONFLICT:
            self.events.append(_Event(number, sid, mapping_conflict(&e, &old), None))
            return 0
        side.probed = True
        if not st.ref_known or seq64_diff(dsn, st.dsn_ref) >= 0:
            st.dsn_ref, st.ref_known = dsn, True
        if data_fin:
            fin = dsn + <uint64_t>(length - 1)
            if st.fin_known and fin != st.data_fin:
                self.events.append(_Event(number, sid,
                                          f"DATA_FIN moved from DSN {st.data_fin} to {fin}", None))
                return 0
            st.data_fin, st.fin_known = fin, True
            if st.queue is not None:
                try:
                    st.queue.data_fin(st.data_fin)
                except MptcpError as exc:
                    self.events.append(_Event(number, sid, str(exc), None))
        if (result == MS_NEW and st.checksums and checksum >= 0 and payload_length > 0
                and not truncated):           # headers-only captures cannot be checked
            if len(side.pending) >= PENDING_CHECKSUMS_MAX:    # bytes that never all arrived
                self._unclaim(side, side.pending.pop(0))
                side.unverified += 1
            connection = side.stream_id >> 1
            claimed = self._claimed_by_connection.get(connection, 0)
            if (self._claimed + payload_length > self._budget
                    or claimed + payload_length > self._connection_budget):
                side.unverified += 1          # over the memory budget: counted, not held
                return 0
            self._claimed += payload_length
            self._claimed_by_connection[connection] = claimed + payload_length
            side.pending.append(_Pending(start, payload_length, dsn, length, checksum))
        return 0

    cdef int _unclaim(self, _Side side, _Pending entry) except -1:
        cdef int64_t size = entry.end - entry.start
        self._claimed -= size
        self._claimed_by_connection[side.stream_id >> 1] -= size
        return 0

    # -- data-level coverage
    cdef int _cover(self, _Stream st, _Side side, int32_t sid, uint64_t dsn, int64_t length) except -1:
        cdef int64_t s, e, pos, stop, below
        cdef Py_ssize_t i, j
        if not st.origin_known:
            st.origin, st.origin_known = dsn, True  # keys unknown: offsets from the first DSN
        s = seq64_diff(dsn, st.origin)
        if beyond_reach(s, length):          # would end 2**63 past the origin: outside any
            st.outside_window += length      # window (mf_serial.pxd), counted, not placed
            return 0
        e = s + length
        if s < st.floor:                     # long delivered: no carrier kept
            below = min(e, st.floor) - s
            st.duplicate += below
            s += below
        i = st.first_ending_after(s)
        pos = s
        while pos < e:
            if i < st.count and st.starts[i] <= pos:
                stop = min(e, st.ends[i])
                st.duplicate += stop - pos
                if st.carriers[i] != sid:
                    st.reinjected += stop - pos
                    side.reinjected += stop - pos
                pos = stop
                i += 1
                continue
            stop = min(e, st.starts[i]) if i < st.count else e
            st.new_bytes += stop - pos
            if pos != st.edge:
                st.out_of_order += stop - pos
            i = st.insert(i, pos, stop, sid) + 1
            if pos == st.edge:
                st.edge = stop
                j = i
                while j < st.count and st.starts[j] == st.edge:
                    st.edge = st.ends[j]
                    j += 1
            pos = stop
        st.prune()
        return 0

    # -- DSS checksums over whole mappings (RFC 8684 §3.3.1)
    cdef int _collect(self, int64_t number, Py_ssize_t sid, _Side side, int64_t rel,
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
            self._unclaim(side, entry)
            data = PyBytes_FromStringAndSize(<const char*>entry.data, entry.end - entry.start)
            if not self._verify(entry.dsn, entry.start & 0xFFFFFFFF, entry.length, data,
                                entry.checksum):
                packets = [entry.packets[j] for j in range(entry.count)]
                self.events.append(_Event(number, sid, checksum_failure(entry.dsn, packets),
                                          tuple(sorted(packets))))
        return 0


cdef inline int64_t expand_rel(_Side side, uint32_t rel32) noexcept:
    """Relative subflow sequence numbers past 4 GiB: nearest the highest seen so far."""
    cdef uint64_t value = expand_seq(<uint64_t>side.rel_ref, rel32)
    return <int64_t>value if value < (1ULL << 63) else rel32     # never below zero


cdef str mapping_conflict(const MapEntry* new, const MapEntry* old):
    """The pure twin's MappingConflict text: ``old`` is a stored piece or the infinite mapping."""
    from mptcp_fast.dss import Mapping          # imported late: dss imports the backends
    new_m = Mapping(new.dsn, new.start, new.length, new.data_fin,
                    None if new.checksum < 0 else new.checksum)
    if old.length == 0:
        old_m = Mapping(old.dsn, old.start, old.length, old.data_fin,
                        None if old.checksum < 0 else old.checksum)
        return f"{new_m} contradicts the infinite mapping {old_m}"
    return conflict_text(new_m, old.start, old.end, old.dsn)

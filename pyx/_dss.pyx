# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/_pure/_dss.py: sequence expansion, DSS checksum, reassembly.

Same functions, classes, results and errors as the pure module.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcmp, memcpy, memmove
from libc.stdlib cimport malloc, realloc, free
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from mptcp_fast.errors import MappingConflict, ProtocolError, UnmappedData

RELEASES_GIL = True


# ------------------------------------------------------------------------------------------------
# sequence numbers (KERNEL.md §3.2)

def expand_seq(uint64_t reference, uint32_t value32):
    """The 64-bit DSN nearest ``reference`` whose low 32 bits are ``value32`` (Linux's rule)."""
    cdef uint32_t old32 = <uint32_t>reference
    cdef uint64_t candidate = (reference & 0xFFFFFFFF00000000ULL) + value32
    if value32 < old32 and <int32_t>(old32 - value32) < 0:        # forward wrap
        return candidate + (1ULL << 32)
    if value32 > old32 and <int32_t>(value32 - old32) < 0:        # reverse wrap
        return candidate - (1ULL << 32)
    return candidate


# ------------------------------------------------------------------------------------------------
# the DSS checksum (RFC 8684 §3.3.1)

cdef uint64_t sum_words(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Sum of big-endian 16-bit words (n even) into a 64-bit accumulator, 8 bytes a step.

    Adding 64-bit little-endian loads and folding at the end gives the ones'-complement
    sum of the byte-swapped words; the caller swaps the folded result back (RFC 1071 §2)."""
    cdef uint64_t total = 0, word, prev
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&word, p + i, 8)
        prev = total
        total += word
        total += total < prev          # end-around carry
        i += 8
    while i + 2 <= n:
        if MF_LITTLE_ENDIAN:
            total += <uint64_t>p[i] | (<uint64_t>p[i + 1] << 8)
        else:
            total += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    return total


cdef inline uint32_t fold64(uint64_t total) noexcept nogil:
    total = (total & 0xFFFFFFFFULL) + (total >> 32)
    total = (total & 0xFFFFFFFFULL) + (total >> 32)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return <uint32_t>total


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define MF_LITTLE_ENDIAN 0
    #else
    #define MF_LITTLE_ENDIAN 1
    #endif
    """
    int MF_LITTLE_ENDIAN


cdef inline uint32_t swap16(uint32_t v) noexcept nogil:
    """Native-order sums are byte-swapped sums on little-endian machines (RFC 1071 §2(B))."""
    if not MF_LITTLE_ENDIAN:
        return v
    return ((v & 0xFF) << 8) | (v >> 8)


cdef uint32_t sum16(const uint8_t* p, Py_ssize_t n, bint odd_start) noexcept nogil:
    """Folded ones'-complement sum of ``p`` as big-endian words; ``odd_start`` when it
    continues a stream at an odd offset (its first byte is then a low byte)."""
    cdef uint32_t s = 0
    cdef uint64_t total = 0
    if n == 0:
        return 0
    if odd_start:
        total = p[0]                      # completes the previous word as its low byte
        p += 1
        n -= 1
    total += swap16(fold64(sum_words(p, n & ~1)))
    if n & 1:
        total += <uint32_t>p[n - 1] << 8  # a last odd byte is a high byte padded with zero
    s = fold64(total)
    return s


cdef inline uint32_t add16(uint32_t a, uint32_t b) noexcept nogil:
    cdef uint32_t total = a + b
    return (total & 0xFFFF) + (total >> 16)


cdef class DssChecksum:
    """Incremental DSS checksum: update() with payload pieces of any length, then finish()."""
    cdef uint32_t _sum
    cdef Py_ssize_t _length

    @property
    def length(self):
        return self._length

    def update(self, data):
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len:
                with nogil:
                    self._sum = add16(self._sum, sum16(<const uint8_t*>view.buf, view.len,
                                                       self._length & 1))
                self._length += view.len
        finally:
            PyBuffer_Release(&view)

    def finish(self, uint64_t dsn, uint32_t subflow_seq, uint16_t data_len):
        """The checksum with the pseudo-header (DSN 64, SSN 32, length 16, zero 16)."""
        cdef uint8_t header[16]
        cdef int i
        for i in range(8):
            header[i] = (dsn >> (56 - 8 * i)) & 0xFF
        for i in range(4):
            header[8 + i] = (subflow_seq >> (24 - 8 * i)) & 0xFF
        header[12] = data_len >> 8
        header[13] = data_len & 0xFF
        header[14] = 0
        header[15] = 0
        return ~add16(self._sum, sum16(header, 16, False)) & 0xFFFF


def dss_checksum(uint64_t dsn, uint32_t subflow_seq, uint16_t data_len, payload):
    cdef DssChecksum acc = DssChecksum()
    acc.update(payload)
    return acc.finish(dsn, subflow_seq, data_len)


# ------------------------------------------------------------------------------------------------
# connection-level reassembly (RFC 8684 §3.3.4, §3.3.6)

cdef object _stable(object data):
    """``data`` itself when it cannot change under us (bytes, read-only views), else a copy."""
    if type(data) is bytes:
        return data
    view = memoryview(data).cast("B")
    return view if view.readonly else bytes(view)


cdef class ReassemblyQueue:
    """Data-level receive queue; see mptcp_fast.dss.ReassemblyQueue for the contract."""
    cdef uint64_t _base
    cdef int64_t _window, _ack, _read, _queued_ooo, _fin
    cdef bint _eof
    cdef list _ready
    cdef list _pieces                 # out-of-order pieces (bytes), sorted by offset
    cdef int64_t* _starts             # their offsets
    cdef Py_ssize_t _count, _capacity
    cdef public int64_t out_of_order_bytes, duplicate_bytes, refused_bytes, conflict_bytes
    cdef public int64_t peak_queued_bytes
    cdef public list conflicts

    def __cinit__(self, initial_dsn, window=1 << 20):
        self._starts = NULL

    def __init__(self, initial_dsn, window=1 << 20):
        if window < 1:
            raise ValueError(f"window must be at least 1 byte, not {window}")
        self._base = <uint64_t>(initial_dsn & 0xFFFFFFFFFFFFFFFF)
        self._window = window
        self._ack = 0
        self._read = 0
        self._ready = []
        self._pieces = []
        self._capacity = 16
        self._starts = <int64_t*>malloc(self._capacity * sizeof(int64_t))
        if self._starts == NULL:
            raise MemoryError()
        self._count = 0
        self._queued_ooo = 0
        self._fin = -1
        self._eof = False
        self.out_of_order_bytes = self.duplicate_bytes = self.refused_bytes = 0
        self.conflict_bytes = self.peak_queued_bytes = 0
        self.conflicts = []

    def __dealloc__(self):
        free(self._starts)

    # -- positions
    cdef inline int64_t _offset(self, uint64_t dsn):
        return self._ack + <int64_t>(dsn - self._base - <uint64_t>self._ack)

    @property
    def data_ack(self):
        """The DATA_ACK to send: the next DSN expected (past the DATA_FIN once it is in order)."""
        return self._base + <uint64_t>self._ack + (1 if self._eof else 0)

    @property
    def eof(self):
        return self._eof

    @property
    def queued_bytes(self):
        return (self._ack - self._read) + self._queued_ooo

    @property
    def window_left(self):
        return self._read + self._window - self._ack

    # -- input
    def push(self, uint64_t dsn, data):
        """Queue payload ``data`` at ``dsn``; return how many new bytes were accepted."""
        return self._push(dsn, data)

    def push_many(self, dsns, pieces):
        """push() each piece at its DSN, in order, in one call; return the bytes accepted."""
        cdef Py_ssize_t i, count = len(pieces)
        cdef int64_t accepted = 0
        if len(dsns) != count:
            raise ValueError(f"{len(dsns)} DSNs for {count} pieces")
        for i in range(count):
            accepted += self._push(dsns[i], pieces[i])
        return accepted

    cdef int64_t _push(self, uint64_t dsn, object data) except -1:
        cdef int64_t start = self._offset(dsn)
        cdef object view
        cdef int64_t n
        if type(data) is bytes:                  # the common case, without a call
            view = data
            n = PyBytes_GET_SIZE(data)
        else:
            view = _stable(data)
            n = len(view)
        cdef int64_t end = start + n, limit, accepted
        if n == 0 or self._eof:
            if n and self._eof:
                self.refused_bytes += n
            return 0
        if end <= self._ack:
            self.duplicate_bytes += n
            return 0
        if start < self._ack:
            self.duplicate_bytes += self._ack - start
            view = memoryview(view)[self._ack - start:]
            start = self._ack
        limit = self._read + self._window
        if self._fin >= 0 and limit > self._fin:
            limit = self._fin
        if end > limit:
            self.refused_bytes += end - max(limit, start)
            end = max(limit, start)
            if end == start:
                return 0
            view = memoryview(view)[:end - start]
        if start == self._ack and (self._count == 0 or self._starts[0] >= end):
            self._ready.append(view)            # in order, nothing queued in the way: no copy
            self._ack = end
            accepted = end - start
        else:
            accepted = self._insert(start, end, view)
        if self._count and self._starts[0] <= self._ack:
            self._drain()
        self._note_peak()
        if self._fin >= 0 and self._ack == self._fin:
            self._eof = True
        return accepted

    cdef Py_ssize_t _find(self, int64_t offset):
        """Index of the first queued piece ending after ``offset``."""
        cdef Py_ssize_t lo = 0, hi = self._count, mid
        while lo < hi:                         # last piece starting at or before offset
            mid = (lo + hi) >> 1
            if self._starts[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and self._starts[lo - 1] + PyBytes_GET_SIZE(self._pieces[lo - 1]) > offset:
            return lo - 1
        return lo

    cdef int _insert_at(self, Py_ssize_t i, int64_t offset, bytes piece) except -1:
        cdef int64_t* grown
        if self._count == self._capacity:
            grown = <int64_t*>realloc(self._starts, 2 * self._capacity * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._starts = grown
            self._capacity *= 2
        memmove(self._starts + i + 1, self._starts + i, (self._count - i) * sizeof(int64_t))
        self._starts[i] = offset
        self._pieces.insert(i, piece)
        self._count += 1
        return 0

    cdef int64_t _insert(self, int64_t start, int64_t end, object view) except -1:
        """Queue an out-of-order (or overlapping) piece around the queued ones."""
        cdef Py_buffer buf
        cdef const uint8_t* p
        cdef Py_ssize_t i
        cdef int64_t pos = start, accepted = 0, piece_start, piece_end, overlap_end, gap_end
        cdef bytes piece
        cdef bint whole_bytes = type(view) is bytes
        PyObject_GetBuffer(view, &buf, PyBUF_SIMPLE)
        try:
            p = <const uint8_t*>buf.buf
            i = self._find(start)
            while pos < end:
                if i < self._count and self._starts[i] <= pos:
                    piece_start = self._starts[i]
                    piece = <bytes>self._pieces[i]
                    piece_end = piece_start + PyBytes_GET_SIZE(piece)
                    overlap_end = min(end, piece_end)
                    self.duplicate_bytes += overlap_end - pos
                    if memcmp(p + (pos - start), PyBytes_AS_STRING(piece) + (pos - piece_start),
                              overlap_end - pos) != 0:
                        self._conflict(pos, overlap_end - pos)
                    pos = overlap_end
                    i += 1
                    continue
                gap_end = min(end, self._starts[i]) if i < self._count else end
                if whole_bytes and pos == start and gap_end == end:
                    self._insert_at(i, pos, <bytes>view)     # fits a gap whole: keep, no copy
                else:
                    self._insert_at(i, pos, PyBytes_FromStringAndSize(
                        <const char*>p + (pos - start), gap_end - pos))
                i += 1
                accepted += gap_end - pos
                if pos > self._ack:
                    self.out_of_order_bytes += gap_end - pos
                self._queued_ooo += gap_end - pos
                pos = gap_end
        finally:
            PyBuffer_Release(&buf)
        return accepted

    cdef void _conflict(self, int64_t offset, int64_t length):
        self.conflict_bytes += length
        if len(self.conflicts) < 64:
            self.conflicts.append((self._base + <uint64_t>offset, length))

    cdef void _drain(self):
        cdef Py_ssize_t taken = 0
        cdef bytes piece
        while taken < self._count and self._starts[taken] <= self._ack:
            piece = <bytes>self._pieces[taken]
            self._queued_ooo -= PyBytes_GET_SIZE(piece)
            self._ready.append(piece)
            self._ack = self._starts[taken] + PyBytes_GET_SIZE(piece)
            taken += 1
        if taken:
            del self._pieces[:taken]
            memmove(self._starts, self._starts + taken, (self._count - taken) * sizeof(int64_t))
            self._count -= taken

    cdef inline void _note_peak(self):
        cdef int64_t queued = (self._ack - self._read) + self._queued_ooo
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued

    def data_fin(self, uint64_t dsn):
        """The DATA_FIN occupies ``dsn`` (RFC 8684 §3.3.3); end of stream once data reaches it."""
        cdef int64_t offset = self._offset(dsn)
        if self._fin >= 0 and offset != self._fin:
            raise ProtocolError(f"DATA_FIN moved from DSN {self._base + <uint64_t>self._fin} "
                                f"to {dsn}")
        if offset < self._ack or (self._count and self._starts[self._count - 1]
                                  + PyBytes_GET_SIZE(self._pieces[self._count - 1]) > offset):
            raise ProtocolError(f"DATA_FIN at DSN {dsn} is below data already received")
        self._fin = offset
        if self._ack == self._fin:
            self._eof = True

    # -- output
    def read_pieces(self):
        """The in-order data not read yet as a list of bytes-like pieces, without copying
        (for os.writev, socket.sendmsg or a join of your own)."""
        pieces = self._ready
        self._ready = []
        for piece in pieces:
            self._read += len(piece)
        return pieces

    def read(self, Py_ssize_t max_bytes=-1):
        """In-order bytes not read yet (all of them, or at most ``max_bytes``)."""
        cdef list ready = self._ready
        if not ready:
            return b""
        if max_bytes < 0 or max_bytes >= self._ack - self._read:
            out = ready[0] if len(ready) == 1 and type(ready[0]) is bytes else b"".join(ready)
            ready.clear()
        else:
            joined = b"".join(ready)
            out = joined[:max_bytes]
            ready.clear()
            ready.append(joined[max_bytes:])
        self._read += len(out)
        return out


# ------------------------------------------------------------------------------------------------
# mappings of one subflow (RFC 8684 §3.3.1)

cdef enum:
    MAX_PAYLOAD = 0xFFFF      # Data-Level Length is 16 bits: no mapping covers more bytes

cdef object _Mapping = None   # mptcp_fast.dss.Mapping, set by bind_types()


def bind_types(mapping_class):
    global _Mapping
    _Mapping = mapping_class


cdef struct MapEntry:
    int64_t start             # first subflow byte (relative, expanded)
    int64_t end               # one past the last subflow byte (the DATA_FIN has none)
    uint64_t dsn
    int64_t length            # the Data-Level Length
    int64_t checksum          # -1 when the option had none
    bint data_fin


cdef int fill_entry(MapEntry* e, object mapping) except -1:
    e.start = mapping.subflow_seq
    e.length = mapping.length
    e.dsn = mapping.dsn
    e.data_fin = mapping.data_fin
    e.checksum = -1 if mapping.checksum is None else mapping.checksum
    e.end = e.start + (e.length - 1 if e.data_fin else e.length)
    return 0


cdef inline uint64_t dsn_at(const MapEntry* e, int64_t subflow_seq) noexcept nogil:
    return e.dsn + <uint64_t>(subflow_seq - e.start)


cdef object as_mapping(const MapEntry* e):
    return _Mapping(e.dsn, e.start, e.length, e.data_fin, None if e.checksum < 0 else e.checksum)


cdef int check_consistent(const MapEntry* old, const MapEntry* new, object new_obj) except -1:
    """Overlapping mappings must put the same bytes at the same DSNs, and a repeat of the
    same range must agree on the DATA_FIN."""
    cdef int64_t lo = old.start if old.start > new.start else new.start
    if dsn_at(old, lo) != dsn_at(new, lo) or (
            old.start == new.start and old.end == new.end and old.length != new.length):
        raise MappingConflict(f"{new_obj} contradicts {as_mapping(old)}")
    return 0


cdef class SubflowMappings:
    """The mappings received on one subflow; see mptcp_fast.dss for the contract."""
    cdef MapEntry* _maps
    cdef Py_ssize_t _count, _capacity
    cdef MapEntry _infinite_entry
    cdef public object infinite

    def __cinit__(self):
        self._capacity = 8
        self._maps = <MapEntry*>malloc(self._capacity * sizeof(MapEntry))
        if self._maps == NULL:
            raise MemoryError()
        self._count = 0
        self.infinite = None

    def __dealloc__(self):
        free(self._maps)

    def __len__(self):
        return self._count + (self.infinite is not None)

    cdef Py_ssize_t _lower_bound(self, int64_t value):
        """First index whose start is >= value."""
        cdef Py_ssize_t lo = 0, hi = self._count, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._maps[mid].start < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def declare(self, mapping):
        cdef MapEntry e
        cdef Py_ssize_t i
        cdef bint new = True
        cdef MapEntry* grown
        fill_entry(&e, mapping)
        if self.infinite is not None:
            if e.start >= self._infinite_entry.start and (
                    dsn_at(&e, e.start) != dsn_at(&self._infinite_entry, e.start)):
                raise MappingConflict(f"{mapping} contradicts the infinite mapping {self.infinite}")
            return False
        if e.length == 0:                           # the infinite mapping (RFC 8684 §3.7)
            i = self._lower_bound(e.start - MAX_PAYLOAD)
            while i < self._count:
                if self._maps[i].end > e.start:
                    check_consistent(&self._maps[i], &e, mapping)
                i += 1
            self._infinite_entry = e
            self.infinite = mapping
            return True
        if e.end == e.start:
            return True                             # a standalone DATA_FIN maps no subflow byte
        i = self._lower_bound(e.start - MAX_PAYLOAD)
        while i < self._count and self._maps[i].start < e.end:
            if self._maps[i].end > e.start:
                check_consistent(&self._maps[i], &e, mapping)
                if (self._maps[i].start == e.start and self._maps[i].dsn == e.dsn
                        and self._maps[i].length == e.length
                        and self._maps[i].data_fin == e.data_fin
                        and self._maps[i].checksum == e.checksum):
                    new = False
            i += 1
        if new:
            if self._count == self._capacity:
                grown = <MapEntry*>realloc(self._maps, 2 * self._capacity * sizeof(MapEntry))
                if grown == NULL:
                    raise MemoryError()
                self._maps = grown
                self._capacity *= 2
            i = self._lower_bound(e.start)
            memmove(self._maps + i + 1, self._maps + i, (self._count - i) * sizeof(MapEntry))
            self._maps[i] = e
            self._count += 1
        return new

    cdef const MapEntry* _covering(self, int64_t subflow_seq):
        cdef Py_ssize_t i = self._lower_bound(subflow_seq + 1) - 1
        while i >= 0 and self._maps[i].start > subflow_seq - MAX_PAYLOAD:
            if subflow_seq < self._maps[i].end:
                return &self._maps[i]
            i -= 1
        if self.infinite is not None and subflow_seq >= self._infinite_entry.start:
            return &self._infinite_entry
        return NULL

    def resolve(self, int64_t subflow_seq, int64_t length):
        cdef list out = []
        cdef int64_t pos = subflow_seq, end = subflow_seq + length, stop
        cdef uint64_t dsn, last_dsn = 0, last_len = 0
        cdef const MapEntry* m
        while pos < end:
            m = self._covering(pos)
            if m == NULL:
                raise UnmappedData(f"subflow bytes from {pos} have no mapping")
            stop = end if m.length == 0 else min(end, m.end)
            dsn = dsn_at(m, pos)
            if out and last_dsn + last_len == dsn:
                last_len += <uint64_t>(stop - pos)
                out[len(out) - 1] = (last_dsn, last_len)     # wraparound is off: no out[-1]
            else:
                last_dsn, last_len = dsn, <uint64_t>(stop - pos)
                out.append((last_dsn, last_len))
            pos = stop
        return out

    def release(self, int64_t upto):
        cdef Py_ssize_t i, kept = 0
        for i in range(self._count):
            if self._maps[i].end > upto:
                self._maps[kept] = self._maps[i]
                kept += 1
        self._count = kept

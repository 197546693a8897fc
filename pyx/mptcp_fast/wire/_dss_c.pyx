# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_dss_py.py: sequence expansion, DSS checksum, reassembly.

Same functions, classes, results and errors as the pure module. Arguments go through
mf_check.pxd (the pure twin's checks on the slow path); 64-bit sequence arithmetic follows
the one rule of mf_serial.pxd.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcmp, memcpy, memmove
from libc.stdlib cimport malloc, realloc, free
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from mf_mapstore cimport (MapEntry, MapStore, ms_entry, ms_init, ms_free, ms_dsn_at, ms_declare,
                          ms_covering, ms_release, MS_NEW, MS_CONFLICT, MS_NO_MEMORY)
from mf_serial cimport seq64_diff, beyond_reach
from mf_csum cimport sum16, add16
cimport mf_serial
from mf_check cimport u64_arg, int_arg
from mf_gc cimport untrack
from mf_bytes cimport compact, immutable_buffer
from mptcp_fast import _check                  # mf_check.pxd calls it on its slow path
from mptcp_fast.errors import MappingConflict, ProtocolError, UnmappedData, conflict_text

__all__ = ["expand_seq", "DssChecksum", "dss_checksum", "ReassemblyQueue", "SubflowMappings",
           "MAX_WINDOW"]

MAX_WINDOW = 1 << 62         # the largest reassembly window (far above any real one)
RELEASES_GIL = True
cdef Py_ssize_t WHOLE_PIECE = 8192    # _dss_common.WHOLE_PIECE, as a C constant


# ------------------------------------------------------------------------------------------------
# sequence numbers (Linux's __mptcp_expand_seq; the rule is in mf_serial.pxd)

def expand_seq(uint64_t reference, uint32_t value32):
    """The 64-bit DSN nearest ``reference`` whose low 32 bits are ``value32`` (Linux's rule)."""
    return mf_serial.expand_seq(reference, value32)


# ------------------------------------------------------------------------------------------------
# the DSS checksum (RFC 8684 §3.3.1)

cdef class DssChecksum:
    """DssChecksum()
--

The DSS checksum of one mapping (RFC 8684 §3.3.1), computed incrementally: ``update``
    with the mapped payload in pieces of any length (odd ones included; any C-contiguous
    buffer, counted in bytes), then ``finish(dsn, subflow_seq, data_len)`` adds the
    pseudo-header and returns the 16-bit checksum. ``length`` is the bytes given so far.

    The class is the active backend's (compiled or pure twin):
    ``mptcp_fast.wire.dss.DssChecksum``.

    Raises:
        TypeError: ``update`` of something that is not a buffer, or a ``finish`` argument
            that is not an integer.
        ValueError: a ``finish`` argument out of its range (dsn 64 bits, subflow_seq 32,
            data_len 16).
    """
    cdef uint32_t _sum
    cdef Py_ssize_t _length

    @property
    def length(self):
        return self._length

    def update(self, data):
        """Add payload bytes: any C-contiguous buffer, counted in bytes whatever its item
        size or shape."""
        cdef Py_buffer view
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except Exception:                        # not a buffer, or not a contiguous one
            _check.byte_length("data", data)     # raises the pure twin's TypeError/ValueError
            raise
        try:
            if view.len:
                with nogil:
                    self._sum = add16(self._sum, sum16(<const uint8_t*>view.buf, view.len,
                                                       self._length & 1))
                self._length += view.len
        finally:
            PyBuffer_Release(&view)

    def finish(self, dsn_, subflow_seq_, data_len_):
        """The checksum with the pseudo-header (DSN 64, SSN 32, length 16, zero 16)."""
        cdef uint8_t header[16]
        cdef int i
        cdef uint64_t dsn = u64_arg(dsn_, "dsn")
        cdef uint32_t subflow_seq = <uint32_t>int_arg(subflow_seq_, "subflow_seq", 0, 0xFFFFFFFF)
        cdef uint16_t data_len = <uint16_t>int_arg(data_len_, "data_len", 0, 0xFFFF)
        for i in range(8):
            header[i] = (dsn >> (56 - 8 * i)) & 0xFF
        for i in range(4):
            header[8 + i] = (subflow_seq >> (24 - 8 * i)) & 0xFF
        header[12] = data_len >> 8
        header[13] = data_len & 0xFF
        header[14] = 0
        header[15] = 0
        return ~add16(self._sum, sum16(header, 16, False)) & 0xFFFF


def dss_checksum(dsn, subflow_seq, data_len, payload):
    cdef DssChecksum acc = DssChecksum()
    acc.update(payload)
    return acc.finish(dsn, subflow_seq, data_len)


# ------------------------------------------------------------------------------------------------
# connection-level reassembly (RFC 8684 §3.3.4, §3.3.6)

cdef object _stable(object data):
    """``data`` itself when it cannot change under us (bytes, and read-only views of bytes
    that hold at least half of the bytes under them), else a copy: a read-only view of some
    other buffer may still change through it, and a small view would keep a large buffer."""
    if type(data) is bytes:
        return data
    view = memoryview(data).cast("B")
    return compact(view) if immutable_buffer(view) else bytes(view)   # (at most twice it)


cdef inline void _untrack_queue_lists(ReassemblyQueue queue) noexcept:
    # the queue's lists hold payload pieces (bytes, read-only views) and (dsn, length)
    # tuples of numbers: never part of a reference cycle, so the collector need not walk
    # them (a thousand connections' queues, empty most of their life)
    untrack(queue._ready)
    untrack(queue._pieces)
    untrack(queue.conflicts)


cdef class ReassemblyQueue:
    """ReassemblyQueue(initial_dsn, window=1048576)
--

The data-level receive queue of one direction of a connection (RFC 8684 §3.3.4, §3.3.6):
    pieces of the stream pushed in any order at their 64-bit DSNs come out in order.

        queue = ReassemblyQueue(idsn + 1, window=1 << 20)
        queue.push(dsn, payload)            # -> new bytes accepted; any order
        queue.data_fin(fin_dsn)             # the DATA_FIN's DSN
        queue.read()                        # in-order bytes not read yet
        queue.data_ack, queue.eof           # the DATA_ACK to send; whole up to the DATA_FIN

    Duplicate and overlapping pieces are trimmed; bytes that differ where they overlap are
    counted in ``conflict_bytes`` and listed in ``conflicts`` ((dsn, length), the first 64;
    the first copy wins). Data beyond the window (counted from the first unread byte) or
    beyond the DATA_FIN is refused and counted in ``refused_bytes``, and so is a piece that
    would end 2**63 or more past the initial DSN (outside every window); once the stream is
    whole up to its DATA_FIN, bytes below it are duplicates. Counters: ``out_of_order_bytes``,
    ``duplicate_bytes``, ``conflict_bytes``, ``refused_bytes``, ``peak_queued_bytes``; state:
    ``data_ack``, ``eof``, ``queued_bytes``, ``window_left``, ``window``.

    Methods: ``push(dsn, data)``, ``push_many(dsns, pieces)`` (many in one call),
    ``data_fin(dsn)``, ``read(max_bytes=-1)`` (joined once), ``read_pieces()`` (the pieces,
    without copying), ``grow_window(window)`` (larger only), ``skip_to(dsn)`` (a hole that
    will never be filled, for a capture's analysis: the in-order bytes read first).

    The class is the active backend's (the compiled or the pure twin, same API, results and
    errors): ``mptcp_fast.wire.dss.ReassemblyQueue``.

    Args:
        initial_dsn: the DSN of the stream's first byte (the peer's IDSN + 1), 0..2**64-1.
        window: the most bytes held beyond the first unread one, 1..2**62.

    Raises:
        TypeError: an argument is not an integer (floats and bools included).
        ValueError: an argument out of its range; ``grow_window`` with a smaller window;
            ``skip_to`` with in-order bytes unread, to a DSN outside any window, beyond the
            DATA_FIN or past queued bytes.
        ProtocolError: ``data_fin`` at a DSN that moves, lies below data received, or is
            2**63 away.
    """
    # its fields and C methods: _dss_c.pxd (the compiled engine reads them)

    def __cinit__(self, initial_dsn, window=1 << 20):
        # the offsets array exists from allocation on: a queue made with __new__ alone (no
        # __init__) must not insert into a NULL array of capacity 0
        self._capacity = 16
        self._starts = <int64_t*>malloc(self._capacity * sizeof(int64_t))
        if self._starts == NULL:
            raise MemoryError()
        self._ready = []
        self._pieces = []
        self.conflicts = []
        _untrack_queue_lists(self)
        self._window = 1
        self._fin = -1

    def __init__(self, initial_dsn, window=1 << 20):
        self._base = u64_arg(initial_dsn, "initial_dsn")
        self._window = int_arg(window, "window", 1, MAX_WINDOW)
        self._ack = 0
        self._read = 0
        self._ready = []
        self._pieces = []
        self._count = 0
        self._queued_ooo = 0
        self._fin = -1
        self._eof = False
        self.out_of_order_bytes = self.duplicate_bytes = self.refused_bytes = 0
        self.conflict_bytes = self.peak_queued_bytes = 0
        self.conflicts = []
        _untrack_queue_lists(self)

    def __dealloc__(self):
        free(self._starts)

    # -- positions
    cdef int64_t _distance(self, uint64_t dsn) noexcept:
        """How far ``dsn`` is ahead of the next expected byte (negative: behind)."""
        return seq64_diff(dsn, self._base + <uint64_t>self._ack)

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

    @property
    def window(self):
        return self._window

    def grow_window(self, window):
        """A larger window (receive-buffer autotuning); the right edge never moves back."""
        cdef int64_t value = int_arg(window, "window", 1, MAX_WINDOW)
        if value < self._window:
            raise ValueError(f"window {value} is smaller than the current {self._window}")
        self._window = value

    # -- input
    def push(self, dsn, data):
        """Queue payload ``data`` at ``dsn``; return how many new bytes were accepted."""
        return self._push(u64_arg(dsn, "dsn"), data)

    def push_many(self, dsns, pieces):
        """push() each piece at its DSN, in order, in one call; return the bytes accepted."""
        cdef Py_ssize_t i, count = len(pieces)
        cdef int64_t accepted = 0
        if len(dsns) != count:
            raise ValueError(f"{len(dsns)} DSNs for {count} pieces")
        for i in range(count):
            accepted += self._push(u64_arg(dsns[i], "dsn"), pieces[i])
        return accepted

    cdef int64_t _push(self, uint64_t dsn, object data) except -1:
        cdef int64_t distance = self._distance(dsn)
        cdef object view
        cdef int64_t n
        if type(data) is bytes:                  # the common case, without a call
            view = data
            n = PyBytes_GET_SIZE(data)
        else:
            view = _stable(data)
            n = len(view)
        if n == 0:
            return 0
        if beyond_reach(distance, self._ack + n):
            self.refused_bytes += n              # would end 2**63 or more past the origin:
            return 0                             # outside any window (mf_serial.pxd)
        cdef int64_t start = self._ack + distance
        cdef int64_t end = start + n, limit, accepted
        if self._eof:                            # (the stream is whole up to its DATA_FIN)
            # below the DATA_FIN: duplicates (a retransmission on another subflow, which
            # that subflow must still acknowledge); beyond it: refused (RFC 8684 §3.3.3)
            if start < self._ack:
                self.duplicate_bytes += min(end, self._ack) - start
            if end > self._ack:
                self.refused_bytes += end - max(start, self._ack)
            return 0
        if end <= self._ack:
            self.duplicate_bytes += n
            return 0
        if start < self._ack:
            self.duplicate_bytes += self._ack - start
            view = compact(memoryview(view)[self._ack - start:])   # (holds no more than twice it)
            start = self._ack
        limit = self._read + self._window
        if self._fin >= 0 and limit > self._fin:
            limit = self._fin
        if end > limit:
            self.refused_bytes += end - max(limit, start)
            end = max(limit, start)
            if end == start:
                return 0
            view = compact(memoryview(view)[:end - start])
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

    cdef void _note_peak(self):
        cdef int64_t queued = (self._ack - self._read) + self._queued_ooo
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued

    def data_fin(self, dsn_):
        """The DATA_FIN occupies ``dsn`` (RFC 8684 §3.3.3); end of stream once data reaches it."""
        cdef uint64_t dsn = u64_arg(dsn_, "dsn")
        cdef int64_t distance = self._distance(dsn)
        if beyond_reach(distance, self._ack + 1):
            raise ProtocolError(f"DATA_FIN at DSN {dsn} is outside any window")
        cdef int64_t offset = self._ack + distance
        if self._fin >= 0 and offset != self._fin:
            raise ProtocolError(f"DATA_FIN moved from DSN {self._base + <uint64_t>self._fin} "
                                f"to {dsn}")
        if offset < self._ack or (self._count and self._starts[self._count - 1]
                                  + PyBytes_GET_SIZE(self._pieces[self._count - 1]) > offset):
            raise ProtocolError(f"DATA_FIN at DSN {dsn} is below data already received")
        self._fin = offset
        if self._ack == self._fin:
            self._eof = True

    def skip_to(self, dsn_):
        """Go on from ``dsn``: the bytes from the next expected one up to it will never come
        (a capture that missed them); return how many were passed over (0 when ``dsn`` is not
        ahead). The in-order bytes must all have been read first, so that the reader knows
        where the hole is; the pieces queued beyond ``dsn`` follow it in order."""
        cdef uint64_t dsn = u64_arg(dsn_, "dsn")
        cdef int64_t distance = self._distance(dsn)
        cdef int64_t offset
        if distance <= 0:
            return 0
        if self._ready:
            raise ValueError(f"{self._ack - self._read} in-order bytes are not read: read them "
                             "before passing a hole")
        if beyond_reach(distance, self._ack):
            raise ValueError(f"DSN {dsn} is outside any window")
        offset = self._ack + distance
        if self._fin >= 0 and offset > self._fin:
            raise ValueError(f"DSN {dsn} lies beyond the DATA_FIN")
        if self._count and self._starts[0] < offset:
            raise ValueError(f"bytes are queued below DSN {dsn}: it does not end a hole")
        self._ack = self._read = offset
        if self._count and self._starts[0] == self._ack:
            self._drain()
        self._note_peak()
        if self._fin >= 0 and self._ack == self._fin:
            self._eof = True
        return distance

    # -- output
    def read_pieces(self):
        """The in-order data not read yet as a list of bytes-like pieces, without copying
        (for os.writev, socket.sendmsg or a join of your own)."""
        pieces = self._ready[:]           # a list of the caller's own: _ready is untracked
        del self._ready[:]
        for piece in pieces:
            self._read += len(piece)
        return pieces

    cpdef read(self, object max_bytes=-1):
        """In-order bytes not read yet (all of them, or at most ``max_bytes``; -1: all)."""
        if type(max_bytes) is not int:                   # the per-read path skips the call
            max_bytes = _check.integer("max_bytes", max_bytes)
        if max_bytes < -1:
            raise ValueError(f"max_bytes must be -1 (all) or at least 0, got {max_bytes}")
        cdef list ready = self._ready
        if not ready:
            return b""
        if max_bytes < 0 or max_bytes >= self._ack - self._read:
            out = ready[0] if len(ready) == 1 and type(ready[0]) is bytes else b"".join(ready)
            ready.clear()
        else:
            out = self._take(max_bytes)
        self._read += len(out)
        return out

    cpdef read_some(self, Py_ssize_t max_bytes):
        """At most ``max_bytes`` (1 or more) in-order bytes not read yet, as ``read`` gives
        them, but never a large piece (``WHOLE_PIECE`` bytes or more: an offloaded segment's
        payload) joined with others: a first large piece comes alone, as it is when it fits
        (uncopied: bytes, or a read-only view when one was pushed, as ``push`` keeps it), and
        small pieces are joined up to the first large one.
        Joining them all would copy every large piece once more."""
        cdef list ready = self._ready
        cdef Py_ssize_t count = 0, size
        if not ready:
            return b""
        first = ready[0]
        size = len(first)
        if size >= WHOLE_PIECE:
            if (type(first) is bytes or type(first) is memoryview) and size <= max_bytes:
                del ready[0]
                self._read += size
                return first
            return self.read(min(max_bytes, size))         # that piece alone (a copy)
        if len(ready) == 1:
            return self.read(max_bytes)
        for piece in ready:
            size = len(piece)
            if size >= WHOLE_PIECE or count + size > max_bytes:
                break
            count += size
        return self.read(count if count else max_bytes)

    cdef bytes _take(self, Py_ssize_t count):
        """The first ``count`` bytes of the ready pieces (fewer than they hold): whole pieces
        from the front and a cut of the next; the rest stays, uncopied."""
        cdef list ready = self._ready
        cdef list taken = []
        cdef Py_ssize_t whole = 0
        while count > 0:
            piece = ready[whole]
            if len(piece) <= count:
                taken.append(piece)
                count -= len(piece)
                whole += 1
            else:
                view = memoryview(piece)
                taken.append(view[:count])
                ready[whole] = view[count:]
                count = 0
        del ready[:whole]
        return b"".join(taken)


# ------------------------------------------------------------------------------------------------
# mappings of one subflow (RFC 8684 §3.3.1)

from mptcp_fast.wire._dss_common import Mapping as _Mapping   # the one Mapping class


cdef int fill_entry(MapEntry* e, object mapping) except -1:
    """A Mapping's fields (it checked them when it was built) into an entry."""
    if not isinstance(mapping, _Mapping):
        raise TypeError(f"declare() takes a Mapping, not {type(mapping).__name__}")
    if ms_entry(e, mapping.subflow_seq, mapping.dsn, mapping.length, mapping.data_fin,
                -1 if mapping.checksum is None else mapping.checksum) < 0:
        # only a Mapping altered after its checks gets here (object.__setattr__)
        raise ValueError(f"{mapping} is outside the mapping store's ranges")
    return 0


cdef int64_t MAX_SUBFLOW_SEQ = 0x7FFFFFFFFFFFFFFF   # relative subflow sequence numbers < 2**63


cdef class SubflowMappings:
    """SubflowMappings()
--

The DSS mappings received on one subflow (RFC 8684 §3.3.1): which data-level bytes (DSNs)
    its subflow bytes carry.

        maps = SubflowMappings()
        maps.declare(Mapping(dsn, subflow_seq, data_len))   # -> True if it mapped new bytes
        maps.resolve(subflow_seq, length)                   # -> [(dsn, length), ...]
        maps.release(upto)                                  # forget bytes at or before upto

    ``declare(mapping)`` (or ``declare_fields(dsn, subflow_seq, length, data_fin=False,
    checksum=None)``) records a mapping and returns whether it mapped a subflow byte no
    mapping had mapped before (False for retransmissions, TSO splits and sub-ranges of what is
    known); sending a mapping again with a DATA_FIN added, as Linux does, is not a
    contradiction. ``resolve`` merges contiguous DSN runs. ``infinite`` is the infinite
    mapping once declared; ``len()`` counts the stored pieces (consistent mappings that touch
    on one DSN line are stored as one, so a lookup is one bisection). Subflow sequence numbers
    are relative (first payload byte 1), already expanded beyond 32 bits, and below 2**63.

    The class is the active backend's (compiled or pure twin, same API, results and errors):
    ``mptcp_fast.wire.dss.SubflowMappings``.

    Raises:
        MappingConflict: ``declare`` of a mapping that puts known bytes at other DSNs.
        UnmappedData: ``resolve`` of bytes no mapping covers.
        TypeError: an argument is not an integer (floats and bools included).
        ValueError: an argument out of its range.

    The rules live in mf_mapstore.pxd, shared with the capture analyzer.
    """
    cdef MapStore _store
    cdef public object infinite

    def __cinit__(self):
        if ms_init(&self._store) < 0:
            raise MemoryError()
        self.infinite = None

    def __dealloc__(self):
        ms_free(&self._store)

    def __len__(self):
        return self._store.count + self._store.has_infinite

    def declare_fields(self, dsn, subflow_seq, length, data_fin=False, checksum=None):
        """``declare(Mapping(dsn, subflow_seq, length, data_fin, checksum))`` without building
        the Mapping: the same checks, in the same order, and the same errors."""
        cdef MapEntry e
        cdef uint64_t d = u64_arg(dsn, "dsn")
        cdef int64_t n = int_arg(length, "length", 0, 0xFFFF)
        if type(data_fin) is not bool:
            data_fin = _check.flag("data_fin", data_fin)
        cdef int64_t c = -1 if checksum is None else int_arg(checksum, "checksum", 0, 0xFFFF)
        cdef int64_t payload = n - 1 if data_fin else n
        cdef int64_t s = int_arg(subflow_seq, "subflow_seq", 0,
                                 MAX_SUBFLOW_SEQ - (payload if payload > 0 else 0))
        ms_entry(&e, s, d, n, data_fin, c)           # in range: checked just above
        return self._declare(&e, None)

    def declare(self, mapping):
        cdef MapEntry e
        fill_entry(&e, mapping)
        return self._declare(&e, mapping)

    cdef bint _declare(self, const MapEntry* e, object mapping) except -1:
        """The store's rules; ``mapping`` (built here when None) only names it in an error
        or becomes ``infinite``."""
        cdef MapEntry old
        cdef int result = ms_declare(&self._store, e, &old)
        if result == MS_NO_MEMORY:
            raise MemoryError()
        if result == MS_CONFLICT or (result == MS_NEW and e.length == 0):
            if mapping is None:
                mapping = _Mapping(e.dsn, e.start, e.length, e.data_fin,
                                   None if e.checksum < 0 else e.checksum)
            if result == MS_NEW:
                self.infinite = mapping
            elif old.length == 0:
                raise MappingConflict(f"{mapping} contradicts the infinite mapping {self.infinite}")
            else:
                raise MappingConflict(conflict_text(mapping, old.start, old.end, old.dsn))
        return result == MS_NEW

    def resolve(self, subflow_seq_, length_):
        cdef int64_t subflow_seq = int_arg(subflow_seq_, "subflow_seq", 0, MAX_SUBFLOW_SEQ)
        cdef int64_t length = int_arg(length_, "length", 0, MAX_SUBFLOW_SEQ - subflow_seq)
        cdef list out = []
        cdef int64_t pos = subflow_seq, end = subflow_seq + length, stop
        cdef uint64_t dsn, last_dsn = 0, last_len = 0
        cdef const MapEntry* m
        while pos < end:
            m = ms_covering(&self._store, pos)
            if m == NULL:
                raise UnmappedData(f"subflow bytes from {pos} have no mapping")
            stop = end if m.length == 0 else min(end, m.end)
            dsn = ms_dsn_at(m, pos)
            if out and last_dsn + last_len == dsn:
                last_len += <uint64_t>(stop - pos)
                out[len(out) - 1] = (last_dsn, last_len)     # wraparound is off: no out[-1]
            else:
                last_dsn, last_len = dsn, <uint64_t>(stop - pos)
                out.append((last_dsn, last_len))
            pos = stop
        return out

    def release(self, upto):
        ms_release(&self._store, int_arg(upto, "upto", -MAX_SUBFLOW_SEQ - 1, MAX_SUBFLOW_SEQ))

# Declarations of the compiled reassembly queue (pyx/mptcp_fast/wire/_dss_c.pyx, built as
# mptcp_fast.wire._dss_c), so that the compiled engine (mptcp_fast._cengine.connection) reads
# the queue's state per segment as C fields: the inline readers below compute what the
# properties of the same names return. The pure twin is mptcp_fast/wire/_dss_py.py.
from libc.stdint cimport uint64_t, int64_t


cdef class ReassemblyQueue:
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

    cdef int64_t _distance(self, uint64_t dsn) noexcept
    cdef int64_t _push(self, uint64_t dsn, object data) except -1
    cdef Py_ssize_t _find(self, int64_t offset)
    cdef int _insert_at(self, Py_ssize_t i, int64_t offset, bytes piece) except -1
    cdef int64_t _insert(self, int64_t start, int64_t end, object view) except -1
    cdef void _conflict(self, int64_t offset, int64_t length)
    cdef void _drain(self)
    cdef void _note_peak(self)
    cdef bytes _take(self, Py_ssize_t count)
    cpdef read(self, object max_bytes=*)   # a C call from the compiled engine (next_event)
    cpdef read_some(self, Py_ssize_t max_bytes)


cdef inline int _no_queue(str name) except -1:
    raise AttributeError(f"'NoneType' object has no attribute '{name}'")


# (a connection reads them once its queue exists; None raises as the attribute would)
cdef inline uint64_t queue_data_ack(ReassemblyQueue q) except? 0:
    """``q.data_ack``: the next DSN expected (past the DATA_FIN once it is in order)."""
    if q is None:
        _no_queue("data_ack")
    return q._base + <uint64_t>q._ack + (1 if q._eof else 0)


cdef inline int64_t queue_window_left(ReassemblyQueue q) except? -1:
    """``q.window_left``: the bytes the window still takes beyond the last in order."""
    if q is None:
        _no_queue("window_left")
    return q._read + q._window - q._ack


cdef inline int queue_eof(ReassemblyQueue q) except -1:
    """``q.eof``: the stream is whole up to its DATA_FIN."""
    if q is None:
        _no_queue("eof")
    return q._eof

# Types for the compiled build of mptcp_fast/engine/buffers.py (mptcp_fast._cengine.buffers).
cimport cython
from mf_gc cimport untrack as _untrack

cdef long long _diff64(unsigned long long a, unsigned long long b)


@cython.final
cdef class Unsent:
    cdef public object _pieces
    cdef public long long size
    cpdef push(self, object data)
    @cython.locals(left=cython.longlong)
    cpdef take(self, long long n)


@cython.final
cdef class Retained:
    cdef public object base
    cdef public list _starts, _pieces
    cdef public Py_ssize_t _head
    cdef public long long _end, size
    @cython.locals(offset=cython.longlong)
    cpdef append(self, object dsn, object data)
    @cython.locals(acked=cython.longlong, head=Py_ssize_t, n=Py_ssize_t, start=cython.longlong)
    cpdef release(self, unsigned long long data_ack)
    cpdef slice(self, object dsn, long long n)

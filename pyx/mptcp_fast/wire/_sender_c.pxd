# Types for the compiled build of mptcp_fast/wire/_sender_py.py (Cython pure-Python mode): the
# same source runs as the pure backend; setup.py compiles it with these declarations as
# mptcp_fast.wire._sender_c (Cython finds this file by the extension's name on the include path).
from mf_gc cimport untrack as _untrack

cdef class _SubflowSent:
    cdef public object subflow
    cdef public list starts, ends, seqs
    cdef public Py_ssize_t head
    cpdef add(self, long long start, long long end, object seq)
    cpdef retire(self, long long acked)
    cpdef Py_ssize_t live(self)


cdef class DsnAllocator:
    cdef unsigned long long _base
    cdef long long _next, _acked
    cdef dict _subflows
    cdef list _order
    cdef _SubflowSent _sent_on(self, object subflow)
    cdef long long _offset(self, object dsn) except? -1
    cdef unsigned long long _dsn_at(self, long long offset)
    cpdef object allocate_dsn(self, object subflow, object subflow_seq, object length)
    cpdef bint acknowledge(self, object data_ack) except -1

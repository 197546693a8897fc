# Declarations of the compiled segment reader (pyx/_segment.pyx, built as mptcp_fast._segment),
# so that the compiled engine (mptcp_fast._cengine) reads a received segment's fields as C
# fields. The pure twin is mptcp_fast/_pure/_segment.py (with engine.segment.Incoming).

cimport cython


# never part of a reference cycle (bytes, a list of option tuples): not tracked by the GC
@cython.no_gc
cdef class Incoming:
    cdef public bytes src, dst, flow
    cdef public long sport, dport, flags, window
    cdef public long long seq, ack, number
    cdef public object payload, mss, wscale, tsval, tsecr, sack
    cdef public bint sack_permitted
    cdef public list mptcp
    cdef public long malformed_options

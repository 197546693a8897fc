# Types for the compiled build of mptcp_fast/engine/rtt.py (mptcp_fast._cengine.rtt).
cimport cython
from mf_gc cimport untrack as _untrack

@cython.final
cdef class RttEstimator:
    cdef public double min_rto, max_rto, rto
    cdef public object srtt, rttvar, latest, min_rtt
    cdef public long backoffs
    cpdef sample(self, double rtt)
    cpdef back_off(self)

# Types for the compiled build of mptcp_fast/engine/fallback.py (mptcp_fast._cengine.fallback):
# the fallback and integrity state as C fields, which the connection reads per segment. It
# reaches its connection (an object: fallback.FallbackOwner) by Python calls, only when the
# connection falls back or a checksum fails.
cimport cython


@cython.final
cdef class Fallback:
    cdef public object owner, reason, pending_fail, hold
    cdef public long id
    cdef public bint reported, reportable, checksums, send_infinite_mapping
    cdef public long long checksums_verified
    cdef public long checksum_failures, mp_fail_received

    cpdef count_verified(self)
    cpdef bint take_infinite_mapping(self)
    cpdef take_fail(self)

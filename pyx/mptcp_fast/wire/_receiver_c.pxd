# Declarations of the compiled receive pipeline (pyx/mptcp_fast/wire/_receiver_c.pyx, built as
# mptcp_fast.wire._receiver_c; pyx/ mirrors the package so that Cython names the module right),
# so that other compiled modules (the capture tracker) can cimport it and call it without
# Python calls. The pure twin is mptcp_fast/wire/_receiver_py.py.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t

from mf_mapstore cimport MapStore


cdef class ChecksumBudget:
    cdef readonly int64_t total, per_connection, claimed
    cdef dict _by_connection
    cdef bint claim_(self, int64_t connection, int64_t size) except -1
    cdef int release_(self, int64_t connection, int64_t size) except -1


cdef class DataReceiver


cdef class SubflowReceiver:
    cdef readonly DataReceiver stream
    cdef readonly int32_t sid
    cdef public bint isn_known, probed
    cdef public uint32_t isn
    cdef public int64_t rel_ref
    cdef MapStore maps
    cdef public int64_t bytes, reinjected, unverified
    cdef list pending                 # _Pending, oldest first
    cdef public int64_t probe_at      # subflow byte of the last zero-window probe, or -1


cdef class DataReceiver:
    cdef readonly list events
    cdef readonly ChecksumBudget budget
    cdef readonly int64_t connection
    cdef object _verify
    cdef public DataReceiver peer
    cdef bint origin_known, ref_known, acked_known, fin_known
    cdef uint64_t origin, dsn_ref, data_acked, data_fin
    cdef object queue, drain
    cdef int64_t pushed
    # the bytes object deliver() was given, while deliver_ runs: a run of it that is all
    # of it goes into the queue as it is, not copied (push)
    cdef object _whole
    cdef const uint8_t* _whole_at
    cdef int64_t _whole_len
    cdef public bint checksums
    cdef int64_t* starts
    cdef int64_t* ends
    cdef int32_t* carriers
    cdef Py_ssize_t count, capacity
    cdef int64_t floor, edge
    cdef public int64_t new_bytes, out_of_order, duplicate, reinjected, not_captured
    cdef public int64_t outside_window
    cdef readonly int64_t gap_horizon   # 0: holes are waited for (watch_gaps)
    cdef object on_gap
    cdef public int64_t gaps, missing, late, probes
    cdef readonly list probe_packets    # the first probes' packet numbers

    cdef uint64_t expand_dsn_(self, uint64_t dsn32) noexcept
    cdef int acknowledged_(self, uint64_t ack, bint is64) except -1
    cdef int declare_(self, int64_t number, SubflowReceiver side, uint64_t dsn, int64_t start,
                      int64_t length, bint data_fin, int64_t checksum, bint truncated) except -1
    cdef int deliver_bytes(self, int64_t number, SubflowReceiver side, int64_t rel,
                           bytes payload) except -1
    cdef int deliver_(self, int64_t number, SubflowReceiver side, int64_t rel, int64_t length,
                      const uint8_t* payload) except -1
    cdef int place(self, SubflowReceiver side, int64_t rel, int64_t length,
                   const uint8_t* payload) except -1
    cdef int cover(self, SubflowReceiver side, uint64_t dsn, int64_t length) except -1
    cdef int push(self, uint64_t dsn, const uint8_t* payload, int64_t length) except -1
    cdef int release_pending(self, int64_t size) except -1
    cdef int collect(self, int64_t number, SubflowReceiver side, int64_t rel,
                     const uint8_t* payload, int64_t length) except -1
    cdef Py_ssize_t first_ending_after(self, int64_t value) noexcept
    cdef Py_ssize_t insert(self, Py_ssize_t i, int64_t start, int64_t end, int32_t sid) except -1
    cdef int grow(self) except -1
    cdef int prune(self) except -1
    cdef int pass_acknowledged_holes(self) except -1
    cdef int pass_holes_below(self, int64_t limit) except -1
    cdef int pass_gap(self, int64_t end) except -1

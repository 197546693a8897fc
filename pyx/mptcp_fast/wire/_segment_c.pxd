# Declarations of the compiled segment reader (pyx/mptcp_fast/wire/_segment_c.pyx, built as
# mptcp_fast.wire._segment_c), so that the compiled engine (mptcp_fast._cengine) reads a
# received segment's fields as C fields. The pure twin is mptcp_fast/wire/_segment_py.py (with
# wire.segment.Incoming).

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


# never part of a reference cycle (bytes, a list of option tuples): not tracked by the GC
@cython.no_gc
cdef class Incoming:
    cdef public bytes flow
    cdef bytes _src, _dst             # src and dst, cut from flow when first asked for
    cdef public long sport, dport, flags, window
    cdef public long long seq, ack, number
    cdef public object payload, mss, wscale, sack
    cdef public bint has_ts           # the timestamps (tsval and tsecr, properties: None
    cdef public unsigned int ts_val, ts_ecr    # without them)
    cdef public bint sack_permitted
    cdef list _mptcp                  # (mptcp, a property)
    cdef public long malformed_options
    # the usual established layout's one DSS (_segment_common.Incoming)
    cdef public bint dss_only, dss_ack64, dss_mapped
    cdef public unsigned long long dss_ack, dss_dsn
    cdef public long long dss_ssn, dss_length
    cdef public object dss_checksum
    cdef public object fastopen           # RFC 7413: cookie, b"" (request) or None


# the reader and the writers, C calls from the compiled engine
cpdef object read(object data, long long number, bint verified=*, bint view=*)
cpdef bytes data_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                        uint32_t ack, uint8_t flags, uint16_t window, uint32_t tsval,
                        uint32_t tsecr, uint64_t data_ack, uint64_t dsn, uint32_t ssn,
                        uint16_t length, object checksum, object payload, Py_ssize_t start,
                        Py_ssize_t end)
cpdef tuple data_packet_parts(bytes src, bytes dst, uint16_t sport, uint16_t dport,
                              uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                              uint32_t tsval, uint32_t tsecr, uint64_t data_ack, uint64_t dsn,
                              uint32_t ssn, uint16_t length, object checksum, object payload,
                              Py_ssize_t start, Py_ssize_t end, bint partial=*)
cpdef bytes ack_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                       uint32_t ack, uint16_t window, uint32_t tsval, uint32_t tsecr,
                       uint64_t data_ack)
cpdef bytes segment_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                           uint32_t ack, uint8_t flags, uint16_t window, bytes area,
                           object payload)

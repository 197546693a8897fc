# TCP options as plain C: one walk over an options area (RFC 9293 §3.1) and the options a data
# segment carries on every packet — the DSS (RFC 8684 §3.3, Figure 9), Timestamps (RFC 7323
# §3) and SACK (RFC 2018 §3) — decoded into and written from structs. _options.pyx builds its
# option objects on these, _pcap.pyx fills its columns with them, and the engine's compiled
# code can cimport them. Nothing here allocates; decoders read only [p, p + length).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from mf_bytes cimport be16, be32, be64, put16, put32, put64

cdef enum:
    OPT_EOL = 0                # the walk's statuses: end of the list
    OPT_NOP = 1                # a one-byte NOP
    OPT_TLV = 2                # kind, length (>= 2, inside the area) and value
    OPT_NO_LENGTH = 3          # the area ends before the length octet
    OPT_BAD_LENGTH = 4         # a length below 2 or past the end of the area
    SACK_MAX_BLOCKS = 4        # 4 blocks fill 34 of the 40 option bytes


cdef inline int opt_step(const uint8_t* d, Py_ssize_t n, Py_ssize_t pos,
                         Py_ssize_t* length) noexcept nogil:
    """What starts at ``pos`` (< n): OPT_EOL, OPT_NOP, OPT_TLV (``*length`` its length), or
    a broken TLV structure that ends the walk (``*length``: the octet read, or -1)."""
    cdef int kind = d[pos]
    length[0] = -1
    if kind == 0:
        return OPT_EOL
    if kind == 1:
        return OPT_NOP
    if pos >= n - 1:                       # overflow-safe forms (pos < n holds)
        return OPT_NO_LENGTH
    length[0] = d[pos + 1]
    if length[0] < 2 or length[0] > n - pos:
        return OPT_BAD_LENGTH
    return OPT_TLV


cdef inline int dss_length(int flags) noexcept nogil:
    """DSS option length without checksum for flags A a M m (RFC 8684 §3.3, Figure 9)."""
    cdef int length = 4
    if flags & 0x01:
        length += 8 if flags & 0x02 else 4
    if flags & 0x04:
        length += 14 if flags & 0x08 else 10      # DSN, subflow seq 4, data-level length 2
    return length


cdef struct DssFields:
    int flags                  # A 0x01, a 0x02, M 0x04, m 0x08, F 0x10
    uint64_t data_ack
    uint64_t dsn
    uint32_t subflow_seq
    uint16_t data_len
    bint has_checksum
    uint16_t checksum


cdef inline int dss_decode(const uint8_t* p, Py_ssize_t length, DssFields* f) noexcept nogil:
    """The DSS at ``p`` (kind, length and subtype octets included): 0, or -1 when its length
    does not fit its flags (a checksum is accepted only with a mapping, as Linux does). The
    flags are the low five bits of the fourth octet; reserved bits are ignored."""
    cdef Py_ssize_t o = 4, expected
    if length < 4:
        return -1
    f.flags = p[3] & 0x1F
    expected = dss_length(f.flags)
    if length == expected:
        f.has_checksum = False
    elif f.flags & 0x04 and length == expected + 2:
        f.has_checksum = True
    else:
        return -1
    f.data_ack = f.dsn = 0
    f.subflow_seq = f.data_len = f.checksum = 0
    if f.flags & 0x01:
        if f.flags & 0x02:
            f.data_ack = be64(p + o)
            o += 8
        else:
            f.data_ack = be32(p + o)
            o += 4
    if f.flags & 0x04:
        if f.flags & 0x08:
            f.dsn = be64(p + o)
            o += 8
        else:
            f.dsn = be32(p + o)
            o += 4
        f.subflow_seq = be32(p + o)
        f.data_len = be16(p + o + 4)
        if f.has_checksum:
            f.checksum = be16(p + o + 6)
    return 0


cdef inline Py_ssize_t dss_encode(uint8_t* out, const DssFields* f) noexcept nogil:
    """Write the DSS (at most 30 bytes, no padding); return its length."""
    cdef Py_ssize_t n = 4
    out[0] = 30
    out[2] = 0x20
    out[3] = f.flags & 0x1F
    if f.flags & 0x01:
        if f.flags & 0x02:
            put64(out + n, f.data_ack)
            n += 8
        else:
            put32(out + n, <uint32_t>f.data_ack)
            n += 4
    if f.flags & 0x04:
        if f.flags & 0x08:
            put64(out + n, f.dsn)
            n += 8
        else:
            put32(out + n, <uint32_t>f.dsn)
            n += 4
        put32(out + n, f.subflow_seq)
        put16(out + n + 4, f.data_len)
        n += 6
        if f.has_checksum:
            put16(out + n, f.checksum)
            n += 2
    out[1] = <uint8_t>n
    return n


cdef inline int ts_decode(const uint8_t* p, Py_ssize_t length, uint32_t* tsval,
                          uint32_t* tsecr) noexcept nogil:
    """Timestamps (kind 8, length 10): 0, or -1 for another length."""
    if length != 10:
        return -1
    tsval[0] = be32(p + 2)
    tsecr[0] = be32(p + 6)
    return 0


cdef inline Py_ssize_t ts_encode(uint8_t* out, uint32_t tsval, uint32_t tsecr) noexcept nogil:
    out[0] = 8
    out[1] = 10
    put32(out + 2, tsval)
    put32(out + 6, tsecr)
    return 10


cdef inline int sack_decode(const uint8_t* p, Py_ssize_t length, uint32_t* edges) noexcept nogil:
    """SACK (kind 5): the number of blocks (1..4) with their left and right edges in
    ``edges[0..2*blocks)``, or -1 for a length that is not 2 + 8 * blocks."""
    cdef int blocks = <int>((length - 2) // 8), i
    if length < 10 or length > 34 or (length - 2) % 8:
        return -1
    for i in range(2 * blocks):
        edges[i] = be32(p + 2 + 4 * i)
    return blocks


cdef inline Py_ssize_t sack_encode(uint8_t* out, const uint32_t* edges, int blocks) noexcept nogil:
    """Write ``blocks`` (1..4) SACK blocks; return the length."""
    cdef int i
    out[0] = 5
    out[1] = <uint8_t>(2 + 8 * blocks)
    for i in range(2 * blocks):
        put32(out + 2 + 4 * i, edges[i])
    return 2 + 8 * blocks

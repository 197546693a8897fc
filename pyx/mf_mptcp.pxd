# MPTCP wire rules shared by the compiled modules.


cdef inline int dss_length(int flags) noexcept nogil:
    """DSS option length without checksum for flags A a M m (RFC 8684 §3.3, Figure 9)."""
    cdef int length = 4
    if flags & 0x01:
        length += 8 if flags & 0x02 else 4
    if flags & 0x04:
        length += 14 if flags & 0x08 else 10      # DSN, subflow seq 4, data-level length 2
    return length

# Serial-number arithmetic (RFC 1982) on 32 and 64 bits: the one rule for the compiled
# modules. The pure twin, mptcp_fast/wire/serial.py, states the rule in full; in short:
# a - b on the 2**64 circle read as int64, [-2**63, 2**63) (exactly 2**63 apart is behind);
# a range is placed by its first byte, and one that would end 2**63 or more ahead of its
# reference is outside every window (refused and counted), so offsets fit an int64.
from libc.stdint cimport uint32_t, uint64_t, int32_t, int64_t

cdef extern from *:
    """
    #define MF_INT64_MAX 0x7FFFFFFFFFFFFFFFLL
    """
    int64_t MF_INT64_MAX


cdef inline int64_t seq64_diff(uint64_t a, uint64_t b) noexcept nogil:
    """Signed distance a - b on the 64-bit circle, in [-2**63, 2**63)."""
    return <int64_t>(a - b)


cdef inline bint beyond_reach(int64_t distance, int64_t length) noexcept nogil:
    """Whether ``length`` bytes starting ``distance`` ahead of a reference would end 2**63 or
    more ahead of it (``length`` >= 0)."""
    return distance > MF_INT64_MAX - length


cdef inline uint64_t expand_seq(uint64_t reference, uint32_t value32) noexcept nogil:
    """The 64-bit value nearest ``reference`` whose low 32 bits are ``value32``, as Linux's
    __mptcp_expand_seq picks it."""
    cdef uint32_t old32 = <uint32_t>reference
    cdef uint64_t candidate = (reference & 0xFFFFFFFF00000000ULL) + value32
    if value32 < old32 and <int32_t>(old32 - value32) < 0:        # forward wrap
        return candidate + (1ULL << 32)
    if value32 > old32 and <int32_t>(value32 - old32) < 0:        # reverse wrap
        return candidate - (1ULL << 32)
    return candidate

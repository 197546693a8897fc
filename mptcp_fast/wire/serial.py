"""Serial-number arithmetic (RFC 1982) on 32 and 64 bits: the one rule for the pure backend.

The compiled twin is pyx/mf_serial.pxd; both must agree on every input, so the boundary
is decided here once:

* ``seq64_diff(a, b)`` is the distance a - b on the 2**64 circle read as a signed 64-bit
  number, in [-2**63, 2**63). ``a`` is *ahead* of ``b`` when it is positive, *behind* when
  negative. Exactly 2**63 apart is -2**63: behind (RFC 1982 leaves that case undefined;
  two's complement, as C and the Linux kernel's ``before64()`` read it, decides it so).
* A byte range is placed by its first byte. A range whose first byte is ahead of a
  reference but would end 2**63 or more ahead of it is outside every window (no receive
  window, TCP's or MPTCP's, comes near 2**62 bytes): it is refused and counted, never
  stored. Positions relative to a reference are therefore always below 2**63 and fit a
  signed 64-bit integer in C.
* The 32-bit expansion (``expand_seq``) is Linux's ``__mptcp_expand_seq``: the candidate
  nearest the reference on the 32-bit circle.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
HALF64 = 1 << 63


def seq32_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 32-bit circle, in [-2**31, 2**31)."""
    return ((a - b + 0x80000000) & MASK32) - 0x80000000


def seq64_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 64-bit circle, in [-2**63, 2**63)."""
    return ((a - b + HALF64) & MASK64) - HALF64


def beyond_reach(distance: int, length: int) -> bool:
    """Whether a range of ``length`` bytes starting ``distance`` ahead of a reference would
    end 2**63 or more ahead of it (outside every window: refused, see the module text)."""
    return distance >= HALF64 - length


def expand_seq(reference: int, value32: int) -> int:
    """The 64-bit value nearest ``reference`` whose low 32 bits are ``value32``."""
    old32 = reference & MASK32
    candidate = (reference & ~MASK32 & MASK64) + value32
    if value32 < old32 and ((old32 - value32) & MASK32) >= 0x80000000:   # forward wrap
        return (candidate + (1 << 32)) & MASK64
    if value32 > old32 and ((value32 - old32) & MASK32) >= 0x80000000:   # reverse wrap
        return (candidate - (1 << 32)) & MASK64
    return candidate

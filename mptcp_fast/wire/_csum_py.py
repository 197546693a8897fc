"""The internet checksum (RFC 1071) for the pure twins: the DSS checksum (_dss.py) and the
TCP and IPv4 header checksums (_packet.py). The compiled side is pyx/mf_csum.pxd."""

from __future__ import annotations


def sum16(data, odd_start: bool = False) -> int:
    """Ones'-complement sum (folded to 16 bits, 0 only for all-zero data) of ``data`` read as
    big-endian 16-bit words; ``odd_start`` when it continues a stream at an odd offset."""
    raw = data
    if odd_start:
        raw = b"\x00" + raw
    if len(raw) & 1:
        raw += b"\x00"
    value = int.from_bytes(raw, "big")
    # 2**16 = 1 (mod 0xffff): the big number modulo 0xffff is the sum of its 16-bit words.
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return folded


def add16(a: int, b: int) -> int:
    total = a + b
    return (total & 0xFFFF) + (total >> 16)

"""The option areas of the segments an established subflow sends again and again, written and
read with precompiled structs instead of option objects: NOP NOP + timestamps (RFC 7323
Appendix A) followed by a DSS with a 64-bit data ACK and, on data, a 64-bit mapping with its
checksum or two NOPs (RFC 8684 §3.3; the layout Linux sends). The bytes are exactly what
``options.encode_tcp_options`` writes for the same options (tests/test_engine_wire.py checks
it); any other area takes the general codec.
"""

from __future__ import annotations

import struct

__all__ = ["data_area", "ack_area", "read_common", "read_usual"]

_TS = b"\x01\x01\x08\x0a"
_DATA = struct.Struct(">4sIIBBBBQQIH")           # NOP NOP TS + DSS with ack and mapping
_DATA_CSUM = struct.Struct(">4sIIBBBBQQIHH")
_ACK = struct.Struct(">4sIIBBBBQ")               # NOP NOP TS + DSS with an ack
_NOPS = b"\x01\x01"
_KIND, _SUBTYPE_DSS = 30, 0x20
_FLAGS_ACK, _FLAGS_ACK_MAP = 0x03, 0x0F          # A a (+ M m): 64-bit ack and DSN
_TSVAL = struct.Struct(">II")
_Q = struct.Struct(">Q")
_MAP = struct.Struct(">QIH")


def data_area(tsval: int, tsecr: int, data_ack: int, dsn: int, ssn: int, length: int,
              checksum) -> bytes:
    """40 bytes: timestamps and a DSS with a data ACK and a mapping (``ssn`` 32-bit)."""
    if checksum is None:
        return _DATA.pack(_TS, tsval, tsecr, _KIND, 26, _SUBTYPE_DSS, _FLAGS_ACK_MAP,
                          data_ack, dsn, ssn, length) + _NOPS
    return _DATA_CSUM.pack(_TS, tsval, tsecr, _KIND, 28, _SUBTYPE_DSS, _FLAGS_ACK_MAP,
                           data_ack, dsn, ssn, length, checksum)


def ack_area(tsval: int, tsecr: int, data_ack: int) -> bytes:
    """24 bytes: timestamps and a DSS carrying only a 64-bit data ACK."""
    return _ACK.pack(_TS, tsval, tsecr, _KIND, 12, _SUBTYPE_DSS, _FLAGS_ACK, data_ack)


def read_common(buffer, offset: int, length: int):
    """(tsval, tsecr, data_ack, mapping or None) when the area at ``buffer[offset:offset +
    length]`` is exactly one of the two layouts above (mapping = (dsn, ssn, length,
    checksum or None)); None for anything else."""
    usual = read_usual(buffer, offset, length)
    if usual is None or not usual[3]:
        return None
    tsval, tsecr, data_ack, _, mapping = usual
    return tsval, tsecr, data_ack, mapping


def read_usual(buffer, offset: int, length: int):
    """(tsval, tsecr, data_ack, ack64, mapping or None) when the area is one of the layouts
    established subflows send again and again: the two above, or Linux's own two (a DSS
    with a 32-bit data ACK, and on data a 64-bit DSN, no checksum, then NOP NOP:
    net/mptcp/options.c). None for anything else."""
    if length == 36 or length == 20:
        return _read_linux(buffer, offset, length)
    common = _read_ours(buffer, offset, length)
    return None if common is None else (common[0], common[1], common[2], True, common[3])


_LINUX_DATA_HEAD, _LINUX_ACK_HEAD = b"\x1e\x16\x20\x0d", b"\x1e\x08\x20\x01"
_LINUX_MAP = struct.Struct(">IQIH")              # 32-bit ack, 64-bit DSN, SSN, length


def _read_linux(buffer, offset: int, length: int):
    if buffer[offset:offset + 4] != _TS:
        return None
    head = buffer[offset + 12:offset + 16]
    tsval, tsecr = _TSVAL.unpack_from(buffer, offset + 4)
    if length == 36:
        if head != _LINUX_DATA_HEAD or buffer[offset + 34:offset + 36] != _NOPS:
            return None
        data_ack, dsn, ssn, size = _LINUX_MAP.unpack_from(buffer, offset + 16)
        return tsval, tsecr, data_ack, False, (dsn, ssn, size, None)
    if head != _LINUX_ACK_HEAD:
        return None
    return tsval, tsecr, int.from_bytes(buffer[offset + 16:offset + 20], "big"), False, None


def _read_ours(buffer, offset: int, length: int):
    if length == 24:
        if buffer[offset:offset + 4] != _TS or buffer[offset + 12:offset + 16] != b"\x1e\x0c\x20\x03":
            return None
        tsval, tsecr = _TSVAL.unpack_from(buffer, offset + 4)
        return tsval, tsecr, _Q.unpack_from(buffer, offset + 16)[0], None
    if length == 40:
        head = buffer[offset + 12:offset + 16]
        if buffer[offset:offset + 4] != _TS or head[0] != _KIND or head[2] != _SUBTYPE_DSS \
                or head[3] != _FLAGS_ACK_MAP:
            return None
        if head[1] == 26:
            if buffer[offset + 38:offset + 40] != _NOPS:
                return None
            checksum = None
        elif head[1] == 28:
            checksum = (buffer[offset + 38] << 8) | buffer[offset + 39]
        else:
            return None
        tsval, tsecr = _TSVAL.unpack_from(buffer, offset + 4)
        data_ack = _Q.unpack_from(buffer, offset + 16)[0]
        dsn, ssn, size = _MAP.unpack_from(buffer, offset + 24)
        return tsval, tsecr, data_ack, (dsn, ssn, size, checksum)
    return None

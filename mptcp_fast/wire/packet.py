"""IPv4 / IPv6 + TCP packets: parse one in place, build one into a buffer, and the TCP and
IPv4 header checksums (RFC 9293 §3.1 with the pseudo-headers of RFC 791 and RFC 8200 §8.1;
RFC 791 for the IPv4 header). The layer under the engine and the capture reader.

    from mptcp_fast.wire import packet
    p = packet.parse_packet(buf, offset)           # a Packet of offsets: nothing is copied
    p.sport, p.seq, p.flags, p.payload_offset, p.payload_len
    bytes(p.options(buf)); p.src_address(buf)
    n = packet.build_packet_into(out, 0, src, dst, sport, dport, seq, ack, flags, window,
                                 options=area, payload=data)   # checksums written
    packet.verify_checksums(out, 0, n)             # (True, True): IPv4 header, TCP

Parsing accepts what the capture reader accepts: IPv4 with options (not fragments), IPv6
with hop-by-hop, routing, destination-options and AH headers and an atomic fragment header;
anything else is a PacketError naming why. The hot paths are compiled
(pyx/mptcp_fast/wire/_packet_c.pyx, with the C in pyx/mf_packet.pxd shared with the capture
reader) with a pure twin (_packet_py.py); the Packet layout is defined once, in
_packet_common.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _check
from ..errors import PARSE_STATUS, PacketError
from ._packet_common import Packet

if TYPE_CHECKING:
    from .._typing import Address, BytesLike

__all__ = ["Packet", "PacketError", "parse_packet", "build_packet", "build_packet_into",
           "build_segment",
           "tcp_checksum", "ipv4_header_checksum", "verify_checksums", "FIN", "SYN", "RST",
           "PSH", "ACK", "URG", "ECE", "CWR"]

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def _error(status: int, offset: int, whole: bool = False) -> PacketError:
    reason, message = PARSE_STATUS[status]
    if status == 1 and whole:
        message = "the bytes end before the packet does"
    return PacketError(f"packet at offset {offset}: {message}", reason)


def parse_packet(buffer: BytesLike, offset: int = 0, length: int | None = None) -> Packet:
    """The packet at ``buffer[offset:offset + length]`` (to the end by default), parsed in
    place. A truncated payload is allowed (``truncated``); headers must be whole."""
    found = _impl.parse(buffer, offset, length)         # offset and length checked there
    if type(found) is int:
        raise _error(found, offset)
    return found


def tcp_checksum(buffer: BytesLike, offset: int = 0, length: int | None = None) -> int:
    """The TCP checksum the packet at ``offset`` should carry (its own field read as zero)."""
    value = _impl.tcp_checksum(buffer, offset, length)
    if value < 0:
        raise _error(-value, offset, whole=True)
    return value


def ipv4_header_checksum(buffer: BytesLike, offset: int = 0, length: int | None = None) -> int:
    """The IPv4 header checksum the packet at ``offset`` should carry."""
    value = _impl.ipv4_header_checksum(buffer, offset, length)
    if value < 0:
        if value == -2 and type(_impl.parse(buffer, offset, length)) is not int:
            raise PacketError(f"packet at offset {offset}: IPv6 has no header checksum",
                              "not ipv4")
        raise _error(-value, offset, whole=True)
    return value


def verify_checksums(buffer: BytesLike, offset: int = 0,
                     length: int | None = None) -> tuple[bool | None, bool]:
    """(IPv4 header checksum correct, or None for IPv6; TCP checksum correct)."""
    found = _impl.verify(buffer, offset, length)
    if type(found) is int:
        raise _error(-found, offset, whole=True)
    return found


def build_packet_into(buffer: BytesLike, offset: int, src: Address, dst: Address, sport: int,
                      dport: int, seq: int, ack: int, flags: int, window: int, *,
                      options: bytes = b"", payload: BytesLike = b"", ttl: int = 64, tos: int = 0, ip_id: int = 0,
                      dont_fragment: bool = True, urgent: int = 0) -> int:
    """Write one IPv4 or IPv6 packet (by the addresses' family) carrying one TCP segment into
    the writable ``buffer`` at ``offset``, with its TCP checksum and IPv4 header checksum;
    return its length. ``options`` is a TCP options area (a multiple of 4 bytes, at most
    40: ``options.encode_tcp_options``); ``tos`` is the IPv4 TOS or the IPv6 traffic class."""
    src, dst = _check.address("src", src), _check.address("dst", dst)
    if len(src) != len(dst):
        raise ValueError("src and dst must be of one family")
    if type(options) is not bytes:
        options = bytes(options)
    if len(options) % 4 or len(options) > 40:
        raise ValueError(f"options must be a multiple of 4 bytes, at most 40, got {len(options)}")
    body = len(payload) if type(payload) is bytes else _check.byte_length("payload", payload)
    limit = 0xFFFF - (20 if len(src) == 4 else 0) - 20 - len(options)
    if body > limit:
        raise ValueError(f"payload of {body} bytes does not fit one packet (at most {limit})")
    return _impl.build_into(buffer, offset, src, dst, sport, dport, seq, ack, flags, window,
                            options, payload, ttl, tos, ip_id, dont_fragment, urgent)


def build_packet(src: Address, dst: Address, sport: int, dport: int, seq: int, ack: int,
                 flags: int, window: int, **kwargs: Any) -> bytes:
    """``build_packet_into`` a new buffer of the right size; the packet as bytes."""
    size = (20 if len(_check.address("src", src)) == 4 else 40) + 20 + len(kwargs.get("options", b"")) \
        + _check.byte_length("payload", kwargs.get("payload", b""))
    out = bytearray(size)
    build_packet_into(out, 0, src, dst, sport, dport, seq, ack, flags, window, **kwargs)
    return bytes(out)


def build_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                  flags: int, window: int, options: bytes, payload: bytes) -> bytes:
    """``build_packet`` for callers whose arguments are already right (the engine): packed
    addresses of one family, an options area of a multiple of 4 bytes up to 40, a payload
    that fits. The backend still checks them all (a PacketError: ``"family"``, ``"options"``,
    ``"too long"``), so a mistake never writes past a buffer; the integers are range-checked."""
    out = bytearray((20 if len(src) == 4 else 40) + 20 + len(options) + len(payload))
    _impl.build_into(out, 0, src, dst, sport, dport, seq, ack, flags, window, options,
                     payload, 64, 0, 0, True, 0)
    return bytes(out)


_impl: Any = None      # the active twin, _packet_c or _packet_py


def _bind(impl: Any) -> None:
    global _impl
    _impl = impl


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_packet", _bind)

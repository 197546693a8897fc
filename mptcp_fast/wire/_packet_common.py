"""What the packet API (``mptcp_fast.wire.packet``) and both packet twins (``_packet_py``,
``_packet_c``) share, defined once: the ``Packet`` layout a parse returns, and why a packet
cannot be written (the codes of pyx/mf_packet.pxd's ``pk_write_check``) with the one
PacketError text both backends raise for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..errors import PacketError

if TYPE_CHECKING:
    from .._typing import BytesLike

__all__ = ["Packet", "max_payload", "write_error", "PK_W_FAMILY", "PK_W_OPTIONS",
           "PK_W_TOO_LONG", "PK_W_LAYOUT"]

# why a packet cannot be written (mf_packet.pxd's pk_write_check codes)
PK_W_FAMILY, PK_W_OPTIONS, PK_W_TOO_LONG, PK_W_LAYOUT = -1, -2, -3, -4


class Packet(NamedTuple):
    """Where everything is in the buffer given to ``parse_packet`` (offsets from its start),
    and the TCP header's values. ``payload_len`` is what the IP header says;
    ``captured_len`` what the buffer holds (less when ``truncated``)."""
    version: int
    ip_offset: int
    src_offset: int
    dst_offset: int
    addr_len: int
    tcp_offset: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    checksum: int
    urgent: int
    options_offset: int
    options_len: int
    payload_offset: int
    payload_len: int
    captured_len: int
    truncated: bool
    ttl: int

    def src_address(self, buffer: BytesLike) -> bytes:
        """The source address, packed (4 or 16 bytes), read from ``buffer``."""
        return bytes(memoryview(buffer)[self.src_offset:self.src_offset + self.addr_len])

    def dst_address(self, buffer: BytesLike) -> bytes:
        """The destination address, packed (4 or 16 bytes), read from ``buffer``."""
        return bytes(memoryview(buffer)[self.dst_offset:self.dst_offset + self.addr_len])

    def options(self, buffer: BytesLike) -> memoryview:
        """The TCP options area, a view into ``buffer`` (no copy)."""
        return memoryview(buffer)[self.options_offset:self.options_offset + self.options_len]

    def payload(self, buffer: BytesLike) -> memoryview:
        """The captured payload, a view into ``buffer`` (no copy)."""
        return memoryview(buffer)[self.payload_offset:self.payload_offset + self.captured_len]


def max_payload(addr_len: int, opt_len: int) -> int:
    """The largest TCP payload one packet can carry: IPv4's total length and IPv6's payload
    length are 16-bit fields (RFC 791, RFC 8200 §3; no jumbograms)."""
    return 0xFFFF - (20 if addr_len == 4 else 0) - 20 - opt_len


def write_error(code: int, src_len: int, dst_len: int, opt_len: int, body_len: int) -> PacketError:
    """The PacketError both backends raise for a packet they refuse to write (the compiled
    writers call this on their error path, so the text is one)."""
    if code == PK_W_FAMILY:
        return PacketError(f"src and dst must be of one family (4 or 16 bytes each), got "
                           f"{src_len} and {dst_len} bytes", "family")
    if code == PK_W_OPTIONS:
        return PacketError(f"options must be a multiple of 4 bytes, at most 40, got {opt_len}",
                           "options")
    if code == PK_W_TOO_LONG:
        return PacketError(f"payload of {body_len} bytes does not fit one packet (at most "
                           f"{max_payload(src_len, opt_len)})", "too long")
    return PacketError("the packet written does not parse back", "layout")

"""Pure-Python twin of pyx/mptcp_fast/wire/_packet_c.pyx (with pyx/mf_packet.pxd): where the IP
and TCP parts of a packet are, building a packet into a buffer, and its TCP and IPv4 header checksums.

Same functions, results and errors as the compiled module; ``locate`` is the pure form of
mf_packet.pxd's ``pk_locate``, which the capture readers of both backends use.
"""

from __future__ import annotations

import struct

from .. import _check
from ._packet_common import (PK_W_FAMILY, PK_W_LAYOUT, PK_W_OPTIONS,  # noqa: F401
                             PK_W_TOO_LONG, Packet as _Packet, max_payload, write_error)
from ._csum_py import add16, sum16

PK_OK, PK_TRUNCATED, PK_NOT_TCP, PK_FRAGMENT = 0, 1, 2, 3
_IPV6_SKIPPED = (0, 43, 60, 51)      # hop-by-hop, routing, destination options, AH


def locate(d, n: int, ip: int, version: int):
    """(status, (version, src, addr_len, tcp, doff, ip_end, cap_end)) for the IP packet at
    ``ip`` in ``d[:n]`` (``version`` 0: from the header's version nibble); the layout is
    None unless the status is PK_OK."""
    if ip < 0 or ip > n:
        return PK_TRUNCATED, None
    if version == 0:
        if n <= ip:
            return PK_TRUNCATED, None
        version = d[ip] >> 4
    if version == 4:
        if n < ip + 20:
            return PK_TRUNCATED, None
        ihl = (d[ip] & 0x0F) * 4
        total = (d[ip + 2] << 8) | d[ip + 3]
        if d[ip] >> 4 != 4 or ihl < 20 or total < ihl:
            return PK_NOT_TCP, None
        if ((d[ip + 6] << 8) | d[ip + 7]) & 0x3FFF:           # MF flag or fragment offset
            return PK_FRAGMENT, None
        if d[ip + 9] != 6:
            return PK_NOT_TCP, None
        src, addr_len, tcp, ip_end = ip + 12, 4, ip + ihl, ip + total
    elif version == 6:
        if n < ip + 40:
            return PK_TRUNCATED, None
        next_header = d[ip + 6]
        ip_end = ip + 40 + ((d[ip + 4] << 8) | d[ip + 5])
        src, addr_len, tcp = ip + 8, 16, ip + 40
        while next_header != 6:
            if next_header in _IPV6_SKIPPED:
                if n < tcp + 2:
                    return PK_TRUNCATED, None
                size = (d[tcp + 1] + 2) * 4 if next_header == 51 else (d[tcp + 1] + 1) * 8
                next_header = d[tcp]
                tcp += size
            elif next_header == 44:                            # fragment header
                if n < tcp + 8:
                    return PK_TRUNCATED, None
                if ((d[tcp + 2] << 8) | d[tcp + 3]) & 0xFFF9:  # offset or M flag
                    return PK_FRAGMENT, None
                next_header = d[tcp]
                tcp += 8
            else:
                return PK_NOT_TCP, None
    else:
        return PK_NOT_TCP, None
    if n < tcp + 20:
        return PK_TRUNCATED, None
    doff = (d[tcp + 12] >> 4) * 4
    if doff < 20 or tcp + doff > ip_end:
        return PK_NOT_TCP, None
    if n < tcp + doff:
        return PK_TRUNCATED, None
    return PK_OK, (version, src, addr_len, tcp, doff, ip_end, min(n, ip_end))


_MAX_OFFSET = (1 << 63) - 1


def write_check(src_len: int, dst_len: int, opt_len: int, body_len: int) -> int:
    """0 when the packet can be written, else the PK_W_ code of the first reason not (the
    order of mf_packet.pxd's pk_write_check)."""
    if src_len != dst_len or src_len not in (4, 16):
        return PK_W_FAMILY
    if not 0 <= opt_len <= 40 or opt_len & 3:
        return PK_W_OPTIONS
    if not 0 <= body_len <= max_payload(src_len, opt_len):
        return PK_W_TOO_LONG
    return 0


def _view(data, offset, length, writable: bool = False):
    """The bytes [offset, offset + length) of a buffer (length None: to its end), checked."""
    offset = _check.in_range("offset", offset, 0, _MAX_OFFSET)
    length = -1 if length is None else _check.in_range("length", length, 0, _MAX_OFFSET)
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        if writable:
            raise TypeError(f"buffer must be a writable buffer, not {type(data).__name__}") from None
        raise
    if writable and view.readonly:
        raise TypeError(f"buffer must be a writable buffer, not {type(data).__name__}")
    if not 0 <= offset <= len(view):
        raise ValueError(f"offset {offset} is outside the buffer ({len(view)} bytes)")
    if length < 0:
        length = len(view) - offset
    if offset + length > len(view):
        raise ValueError(f"offset {offset} + length {length} runs past the buffer "
                         f"({len(view)} bytes)")
    return view, offset, offset + length


def parse(data, offset, length):
    """A Packet of offsets into ``data``, or the PK_ status when it is not a TCP packet."""
    view, offset, n = _view(data, offset, length)
    status, layout = locate(view, n, offset, 0)
    if status:
        return status
    version, src, addr_len, tcp, doff, ip_end, cap_end = layout
    sport, dport, seq, ack, _, flags, window, checksum, urgent = struct.unpack_from(
        ">HHIIBBHHH", view, tcp)
    ttl = view[offset + 8] if version == 4 else view[offset + 7]
    return tuple.__new__(_Packet, (
        version, offset, src, src + addr_len, addr_len, tcp, sport, dport, seq, ack, flags,
        window, checksum, urgent, tcp + 20, doff - 20, tcp + doff, ip_end - tcp - doff,
        cap_end - tcp - doff, cap_end < ip_end, ttl))


def _tcp_sum(view, layout) -> int:
    version, src, addr_len, tcp, doff, ip_end, cap_end = layout
    length = ip_end - tcp
    total = add16(sum16(bytes(view[src:src + 2 * addr_len])), 6)
    total = add16(total, (length >> 16) & 0xFFFF)
    total = add16(total, length & 0xFFFF)
    total = add16(total, sum16(bytes(view[tcp:tcp + 16])))
    return add16(total, sum16(bytes(view[tcp + 18:ip_end])))


def _whole(data, offset, length):
    """(view, offset, layout) of a TCP packet present in full, or the negative PK_ status."""
    view, offset, n = _view(data, offset, length)
    status, layout = locate(view, n, offset, 0)
    if status:
        return -status
    if layout[6] < layout[5]:
        return -PK_TRUNCATED
    return view, offset, layout


def tcp_checksum(data, offset, length) -> int:
    """The TCP checksum the packet should carry (its field read as zero), or -status."""
    found = _whole(data, offset, length)
    if isinstance(found, int):
        return found
    view, _, layout = found
    return ~_tcp_sum(view, layout) & 0xFFFF


def ipv4_header_checksum(data, offset, length) -> int:
    """The IPv4 header checksum the packet should carry, or -status (-PK_NOT_TCP for IPv6)."""
    found = _whole(data, offset, length)
    if isinstance(found, int):
        return found
    view, offset, layout = found
    if layout[0] != 4:
        return -PK_NOT_TCP
    ihl = (view[offset] & 0x0F) * 4
    total = add16(sum16(bytes(view[offset:offset + 10])),
                  sum16(bytes(view[offset + 12:offset + ihl])))
    return ~total & 0xFFFF


def verify(data, offset, length):
    """(IPv4 header checksum good, or None for IPv6; TCP checksum good), or -status. A
    checksum verifies when the sum over everything, its field included, is 0xFFFF."""
    found = _whole(data, offset, length)
    if isinstance(found, int):
        return found
    view, offset, layout = found
    tcp = layout[3]
    field = (view[tcp + 16] << 8) | view[tcp + 17]
    tcp_ok = add16(_tcp_sum(view, layout), field) == 0xFFFF
    if layout[0] != 4:
        return None, tcp_ok
    ihl = (view[offset] & 0x0F) * 4
    return sum16(bytes(view[offset:offset + ihl])) == 0xFFFF, tcp_ok


def build_into(buffer, offset, src: bytes, dst: bytes, sport, dport, seq, ack, flags, window,
               options: bytes, payload, ttl, tos, ip_id, dont_fragment, urgent) -> int:
    """Write an IPv4 (4-byte addresses) or IPv6 packet with one TCP segment at ``offset``,
    both checksums computed; return its length. The integers are checked here (as the
    compiled twin does); so are the family, the options area and the payload size, with
    a PacketError (the writer copies the destination with the source's length, and the
    payload must fit the 16-bit IP length)."""
    offset = _check.in_range("offset", offset, 0, _MAX_OFFSET)     # first, as the compiled twin
    u = _check.uint
    sport, dport, seq, ack = u("sport", sport, 16), u("dport", dport, 16), u("seq", seq, 32), \
        u("ack", ack, 32)
    flags, window, ttl, tos = u("flags", flags, 8), u("window", window, 16), u("ttl", ttl, 8), \
        u("tos", tos, 8)
    ip_id, urgent = u("ip_id", ip_id, 16), u("urgent", urgent, 16)
    dont_fragment = _check.flag("dont_fragment", dont_fragment)
    src, dst = _check.exact_bytes("src", src), _check.exact_bytes("dst", dst)
    options = _check.exact_bytes("options", options)
    if type(payload) is not bytes:
        _check.byte_length("payload", payload)
    body = memoryview(payload).cast("B")
    refused = write_check(len(src), len(dst), len(options), len(body))
    if refused:
        raise write_error(refused, len(src), len(dst), len(options), len(body))
    view, offset, _ = _view(buffer, offset, None, writable=True)
    ip_len = 20 if len(src) == 4 else 40
    tcp_len = 20 + len(options)
    total = ip_len + tcp_len + len(body)
    if offset + total > len(view):
        raise ValueError(f"the packet ({total} bytes) does not fit the buffer at offset {offset} "
                         f"({len(view)} bytes)")
    if ip_len == 20:
        struct.pack_into(">BBHHHBBH4s4s", view, offset, 0x45, tos, total, ip_id,
                         0x4000 if dont_fragment else 0, ttl, 6, 0, src, dst)
    else:
        struct.pack_into(">IHBB16s16s", view, offset, (6 << 28) | (tos << 20),
                         tcp_len + len(body), 6, ttl, src, dst)
    tcp = offset + ip_len
    struct.pack_into(">HHIIBBHHH", view, tcp, sport, dport, seq, ack, (tcp_len // 4) << 4,
                     flags, window, 0, urgent)
    view[tcp + 20:tcp + tcp_len] = options
    view[tcp + tcp_len:offset + total] = body
    status, layout = locate(view, offset + total, offset, 0)
    if status != PK_OK or layout[5] != offset + total:
        raise write_error(PK_W_LAYOUT, len(src), len(dst), len(options), len(body))
    struct.pack_into(">H", view, tcp + 16, ~_tcp_sum(view, layout) & 0xFFFF)
    if ip_len == 20:
        struct.pack_into(">H", view, offset + 10, ~sum16(bytes(view[offset:offset + 20])) & 0xFFFF)
    return total

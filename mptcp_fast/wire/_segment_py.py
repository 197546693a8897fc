"""Pure-Python twin of pyx/mptcp_fast/wire/_segment_c.pyx: read one received packet for the engine.

``read(data, number)`` returns an ``Incoming`` (mptcp_fast.wire._segment_common's) or a status code
(``STATUS`` there names them): the packet is parsed, must be whole, and both its checksums
must be good; the usual established layouts (timestamps + one DSS, ours or Linux's:
mptcp_fast.wire.established.read_usual) are read directly into the ``dss_`` fields, any other
options area with the option codec (malformed options counted, not raised).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _check
from . import established
from . import packet as pk
from ..errors import PARSE_STATUS, PacketError
from .._bytes import immutable_buffer
from ._segment_common import VIEW_PAYLOAD, Incoming as _Incoming, flow_key, general_options
from .established import read_usual as _read_usual
from ._options_py import parse_tcp_options as _parse_tcp_options
from ._csum_py import add16, sum16

if TYPE_CHECKING:
    from .._typing import BytesLike


def data_packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                window: int, tsval: int, tsecr: int, data_ack: int, dsn: int, ssn: int,
                length: int, checksum: int | None, payload: bytes, start: int,
                end: int) -> bytes:
    """A data segment carrying ``payload[start:end]`` with TS + a DSS (ack and mapping)."""
    _check.exact_bytes("src", src)        # as the compiled twin, before anything else
    _check.exact_bytes("dst", dst)
    if not 0 <= start <= end <= len(payload):
        raise ValueError(f"payload range {start}..{end} is outside {len(payload)} bytes")
    return pk.build_segment(src, dst, sport, dport, seq, ack, flags, window,
                            established.data_area(tsval, tsecr, data_ack, dsn, ssn, length, checksum),
                            payload[start:end])


def data_packet_parts(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                      flags: int, window: int, tsval: int, tsecr: int, data_ack: int, dsn: int,
                      ssn: int, length: int, checksum: int | None, payload: bytes, start: int,
                      end: int, partial: bool = False) -> tuple[bytes, memoryview]:
    """``data_packet``'s segment as (its headers, a memoryview of ``payload[start:end]``):
    joined, they are data_packet's bytes (the compiled twin writes the headers alone and
    never copies the payload; a writev of the two sends the segment). ``partial``: the TCP
    checksum field holds the pseudo-header sum only, for the device to complete."""
    whole = data_packet(src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr, data_ack,
                        dsn, ssn, length, checksum, payload, start, end)
    head = whole[:len(whole) - (end - start)]
    if partial:
        at = 20 if len(src) == 4 else 40                # the TCP header
        tcp_length = len(whole) - at
        total = add16(add16(sum16(src + dst), 6), (tcp_length >> 16) & 0xFFFF)
        total = add16(total, tcp_length & 0xFFFF)
        head = head[:at + 16] + total.to_bytes(2, "big") + head[at + 18:]
    return head, memoryview(payload)[start:end]


def ack_packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, window: int,
               tsval: int, tsecr: int, data_ack: int) -> bytes:
    """A pure ACK with TS + a DSS carrying the 64-bit data ACK."""
    _check.exact_bytes("src", src)
    _check.exact_bytes("dst", dst)
    return pk.build_segment(src, dst, sport, dport, seq, ack, pk.ACK, window,
                            established.ack_area(tsval, tsecr, data_ack), b"")


def segment_packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                   window: int, area: bytes, payload: bytes) -> bytes:
    """Any other segment the engine writes (handshakes, FINs, RSTs, ACKs with other options):
    its options area already encoded (a multiple of 4 bytes, at most 40), ``build_segment``'s
    checks and defaults."""
    _check.exact_bytes("src", src)        # as the compiled twin, before anything else
    _check.exact_bytes("dst", dst)
    _check.exact_bytes("area", area)
    return pk.build_segment(src, dst, sport, dport, seq, ack, flags, window, area, payload)


# a header parse's PacketError reason -> its status code (codes 1-3 of errors.PARSE_STATUS)
_PARSE_STATUS = {PARSE_STATUS[code][0]: code for code in (1, 2, 3)}


def read(data: BytesLike, number: int, verified: bool = False,
         view: bool = False) -> _Incoming | int:
    """``data`` as an Incoming, or a STATUS code. ``verified``: the TCP checksum is taken as
    good without summing the segment (a packet the local stack made and vouched for, whose
    checksum field may hold the pseudo-header sum only: see TunDevice.read_batch). ``view``:
    a payload of ``VIEW_PAYLOAD`` bytes or more is a memoryview of ``data`` instead of a copy,
    when ``data`` can never change (``immutable_buffer``); any other payload is bytes."""
    try:
        p = pk.parse_packet(data)
    except PacketError as exc:
        return _PARSE_STATUS[exc.reason]
    if p.truncated or p.captured_len != p.payload_len:
        return 4
    if verified:
        if p.version == 4 and \
                pk.ipv4_header_checksum(data) != int.from_bytes(memoryview(data)[10:12], "big"):
            return 5
    else:
        ip_ok, tcp_ok = pk.verify_checksums(data)
        if ip_ok is False:
            return 5
        if not tcp_ok:
            return 6
    seg = _Incoming()
    seg.number = number
    seg.src, seg.dst = p.src_address(data), p.dst_address(data)
    seg.sport, seg.dport, seg.seq, seg.ack = p.sport, p.dport, p.seq, p.ack
    seg.flags, seg.window = p.flags, p.window
    seg.flow = flow_key(seg.dst, seg.dport, seg.src, seg.sport)
    payload = p.payload(data)
    seg.payload = payload if view and len(payload) >= VIEW_PAYLOAD and immutable_buffer(data) \
        else bytes(payload)
    if p.options_len:
        usual = _read_usual(data, p.options_offset, p.options_len)
        if usual is not None:             # the usual established segment: TS + DSS
            seg.tsval, seg.tsecr, seg.dss_ack, seg.dss_ack64, mapping = usual
            seg.dss_only = True
            if mapping is not None:
                seg.dss_mapped = True
                seg.dss_dsn, seg.dss_ssn, seg.dss_length, seg.dss_checksum = mapping
        else:
            general_options(seg, data, p.options_offset, p.options_len, _parse_tcp_options)
    return seg

"""Pure-Python twin of pyx/mptcp_fast/wire/_segment_c.pyx: read one received packet for the engine.

``read(data, number)`` returns an ``Incoming`` (mptcp_fast.wire.segment's) or a status code
(``STATUS`` there names them): the packet is parsed, must be whole, and both its checksums
must be good; the usual established layout (timestamps + a DSS with a 64-bit data ACK and
maybe a mapping, mptcp_fast.wire.established) is read directly, any other options area with the
option codec (malformed options counted, not raised).
"""

from __future__ import annotations

from . import options as opt
from . import packet as pk
from ..errors import PARSE_STATUS, OptionError, PacketError
from ._packet_py import _check_bytes

_Incoming = None                          # set by bind_types()
_read_common = None


def bind_types(incoming_class, read_common) -> None:
    global _Incoming, _read_common
    _Incoming, _read_common = incoming_class, read_common


def data_packet(src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr, data_ack, dsn,
                ssn, length, checksum, payload, start, end) -> bytes:
    """A data segment carrying ``payload[start:end]`` with TS + a DSS (ack and mapping)."""
    from . import established
    _check_bytes("src", src)              # as the compiled twin, before anything else
    _check_bytes("dst", dst)
    if not 0 <= start <= end <= len(payload):
        raise ValueError(f"payload range {start}..{end} is outside {len(payload)} bytes")
    return pk.build_segment(src, dst, sport, dport, seq, ack, flags, window,
                            established.data_area(tsval, tsecr, data_ack, dsn, ssn, length, checksum),
                            payload[start:end])


def ack_packet(src, dst, sport, dport, seq, ack, window, tsval, tsecr, data_ack) -> bytes:
    """A pure ACK with TS + a DSS carrying the 64-bit data ACK."""
    from . import established
    _check_bytes("src", src)
    _check_bytes("dst", dst)
    return pk.build_segment(src, dst, sport, dport, seq, ack, pk.ACK, window,
                            established.ack_area(tsval, tsecr, data_ack), b"")


# a header parse's PacketError reason -> its status code (codes 1-3 of errors.PARSE_STATUS)
_PARSE_STATUS = {PARSE_STATUS[code][0]: code for code in (1, 2, 3)}


def flow_key(local: bytes, lport: int, remote: bytes, rport: int) -> bytes:
    """A subflow's key in its endpoint's table: local address and port, remote address and
    port, as one bytes object (one hash per lookup)."""
    return local + lport.to_bytes(2, "big") + remote + rport.to_bytes(2, "big")


def dss_ack(data_ack):
    """The Dss the codec returns for a data ACK alone, built without validation."""
    return tuple.__new__(opt.Dss, (data_ack, True, None, False, None, None, None, False))


def dss_map(data_ack, dsn, ssn, length, checksum):
    return tuple.__new__(opt.Dss, (data_ack, True, dsn, True, ssn, length, checksum, False))


def general_options(seg, data, offset: int, length: int) -> None:
    """Sort the options of any area into ``seg`` (the codec's reading)."""
    try:
        found = opt.parse_tcp_options(data, keep_malformed=True, offset=offset, length=length)
    except OptionError:                   # the options area itself is broken: ignore it all
        seg.malformed_options += 1
        return
    for o in found:
        kind = type(o)
        if kind is opt.Timestamps:
            seg.tsval, seg.tsecr = o.tsval, o.tsecr
        elif kind is opt.Sack:
            seg.sack = o.blocks
        elif kind is opt.Mss:
            seg.mss = o.mss
        elif kind is opt.WindowScale:
            seg.wscale = o.shift
        elif kind is opt.SackPermitted:
            seg.sack_permitted = True
        elif kind is opt.MalformedOption:
            seg.malformed_options += 1
        elif isinstance(o, opt._MptcpOption):
            seg.mptcp.append(o)


def read(data, number: int):
    try:
        p = pk.parse_packet(data)
    except PacketError as exc:
        return _PARSE_STATUS[exc.reason]
    if p.truncated or p.captured_len != p.payload_len:
        return 4
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
    seg.payload = bytes(p.payload(data))
    if p.options_len:
        common = _read_common(data, p.options_offset, p.options_len)
        if common is not None:            # the usual established segment: TS + DSS
            seg.tsval, seg.tsecr, data_ack, mapping = common
            seg.mptcp.append(dss_ack(data_ack) if mapping is None else dss_map(data_ack, *mapping))
        else:
            general_options(seg, data, p.options_offset, p.options_len)
    return seg

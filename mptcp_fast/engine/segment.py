"""One received TCP segment, read from a whole IP packet: the header fields the engine uses and
its options sorted by what they are for. ``read_segment`` raises only PacketError; malformed
options are counted in ``malformed_options`` and otherwise ignored, as Linux ignores them
(RFC 9293 §3.1 lets a receiver skip what it does not understand)."""

from __future__ import annotations

from .. import options as opt
from .. import packet as pk
from ..errors import OptionError, PacketError
from .wire import read_common

__all__ = ["Incoming", "read_segment"]


def _DSS_ACK(cls, data_ack):                # the Dss the codec would return, unvalidated
    return tuple.__new__(cls, (data_ack, True, None, False, None, None, None, False))


def _DSS_MAP(cls, data_ack, dsn, ssn, length, checksum):
    return tuple.__new__(cls, (data_ack, True, dsn, True, ssn, length, checksum, False))


class Incoming:
    """The parts of a received segment that the subflow and the connection read."""
    __slots__ = ("src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "payload",
                 "mss", "wscale", "sack_permitted", "tsval", "tsecr", "sack", "mptcp",
                 "malformed_options", "number")

    def __init__(self):
        self.mss = self.wscale = self.tsval = self.tsecr = None
        self.sack_permitted = False
        self.sack = ()
        self.mptcp = []
        self.malformed_options = 0

    @property
    def length(self) -> int:
        """Sequence space the segment occupies: payload, plus one each for SYN and FIN."""
        return len(self.payload) + (self.flags & pk.SYN and 1) + (self.flags & pk.FIN and 1)

    def first(self, cls):
        """The first MPTCP option of class ``cls``, or None."""
        for option in self.mptcp:
            if type(option) is cls:
                return option
        return None


def read_segment(data, number: int = 0) -> Incoming:
    """Parse ``data`` (one whole IPv4 or IPv6 packet) and check its checksums."""
    p = pk.parse_packet(data)
    if p.truncated or p.captured_len != p.payload_len:
        raise PacketError("the packet is shorter than its IP header says", "truncated")
    ip_ok, tcp_ok = pk.verify_checksums(data)
    if ip_ok is False or not tcp_ok:
        raise PacketError("bad " + ("IPv4 header" if ip_ok is False else "TCP") + " checksum",
                          "checksum")
    seg = Incoming()
    seg.number = number
    seg.src, seg.dst = p.src_address(data), p.dst_address(data)
    seg.sport, seg.dport, seg.seq, seg.ack = p.sport, p.dport, p.seq, p.ack
    seg.flags, seg.window = p.flags, p.window
    seg.payload = bytes(p.payload(data))
    common = read_common(data, p.options_offset, p.options_len) if p.options_len else None
    if common is not None:                # the usual established segment: TS + DSS
        seg.tsval, seg.tsecr, data_ack, mapping = common
        if mapping is None:
            seg.mptcp.append(_DSS_ACK(opt.Dss, data_ack))
        else:
            seg.mptcp.append(_DSS_MAP(opt.Dss, data_ack, *mapping))
    elif p.options_len:
        try:
            found = opt.parse_tcp_options(data, keep_malformed=True, offset=p.options_offset,
                                          length=p.options_len)
        except OptionError:               # the options area itself is broken: ignore it all
            seg.malformed_options += 1
            found = ()
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
    return seg

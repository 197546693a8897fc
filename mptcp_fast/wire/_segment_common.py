"""What the segment reader's API (``mptcp_fast.wire.segment``) and both its twins
(``_segment_py``, ``_segment_c``) share, defined once: the pure ``Incoming`` (the compiled twin
has a typed class with the same fields, pyx/mptcp_fast/wire/_segment_c.pxd), a subflow's flow
key, and the codec's reading of an options area that is not the usual established one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _check
from . import _options_common as opt
from ..errors import OptionError
from ._dss_common import WHOLE_PIECE

if TYPE_CHECKING:
    from ._options_common import Option

_SYN, _FIN = 0x02, 0x01                   # TCP header flags (RFC 9293 §3.1)
TCPOPT_FASTOPEN = 34                      # RFC 7413 §4.1.1
# read(view=True): a payload of this many bytes or more (an offloaded segment's) is handed on
# as a view of the packet, not copied, when the packet's buffer can never change (bytes, or a
# read-only view of bytes); it is the size the reassembly queue keeps a piece whole from, so
# the application gets such a piece as it is
VIEW_PAYLOAD = WHOLE_PIECE

__all__ = ["Incoming", "flow_key", "general_options", "usual_dss", "fastopen_cookie",
           "TCPOPT_FASTOPEN"]


class Incoming:
    """The parts of a received segment that the subflow and the connection read; ``flow`` is
    the key of the subflow it belongs to (``flow_key(dst, dport, src, sport)``). The pure
    reader's; the compiled reader's class has the same fields and calls."""
    __slots__ = ("src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "payload",
                 "mss", "wscale", "sack_permitted", "has_ts", "ts_val", "ts_ecr", "sack", "_mptcp",
                 "malformed_options", "number", "flow", "dss_only", "dss_ack", "dss_ack64",
                 "dss_mapped", "dss_dsn", "dss_ssn", "dss_length", "dss_checksum",
                 "fastopen")
    # the fields both twins have (the compiled twin's are C fields and properties)
    FIELDS = ("src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "payload",
              "mss", "wscale", "sack_permitted", "tsval", "tsecr", "has_ts", "ts_val", "ts_ecr",
              "sack", "mptcp",
              "malformed_options", "number", "flow", "dss_only", "dss_ack", "dss_ack64",
              "dss_mapped", "dss_dsn", "dss_ssn", "dss_length", "dss_checksum", "fastopen")
    src: bytes                            # packed addresses, 4 or 16 bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes | memoryview     # a view only from read(view=True), of 8 KiB or more
    mss: int | None                       # None: the option was absent
    wscale: int | None
    sack_permitted: bool
    has_ts: bool                          # the timestamps option (RFC 7323 §3) came:
    ts_val: int                           # its TSval and TSecr (0 when it did not; tsval and
    ts_ecr: int                           # tsecr say None then)
    sack: tuple[tuple[int, int], ...]
    _mptcp: list[Option]
    malformed_options: int
    number: int
    flow: bytes | None
    # The usual established layout (timestamps and one DSS: ours, or Linux's, whose data ACK
    # has 32 bits) is read into these fields, without option objects: ``dss_only`` says the
    # options were that DSS alone, ``mptcp`` then makes its Dss when asked for.
    dss_only: bool
    dss_ack: int
    dss_ack64: bool
    dss_mapped: bool                      # a mapping follows: dss_dsn (64 bits), ssn, length
    dss_dsn: int
    dss_ssn: int
    dss_length: int
    dss_checksum: int | None
    fastopen: bytes | None                # TCP Fast Open (RFC 7413 §4.1.1): the cookie, b""
                                          # for a cookie request, None: no (usable) option

    def __init__(self) -> None:
        self.flow = self.fastopen = None
        self.mss = self.wscale = None
        self.has_ts = False
        self.ts_val = self.ts_ecr = 0
        self.sack_permitted = False
        self.sack = ()
        self._mptcp = []
        self.malformed_options = 0
        self.dss_only = self.dss_ack64 = self.dss_mapped = False
        self.dss_ack = self.dss_dsn = self.dss_ssn = self.dss_length = 0
        self.dss_checksum = None

    @property
    def tsval(self) -> int | None:
        """The timestamps option's TSval, or None when the segment had none."""
        return self.ts_val if self.has_ts else None

    @tsval.setter
    def tsval(self, value: int | None) -> None:
        self.has_ts = value is not None
        self.ts_val = 0 if value is None else value

    @property
    def tsecr(self) -> int | None:
        """The timestamps option's TSecr, or None when the segment had none."""
        return self.ts_ecr if self.has_ts else None

    @tsecr.setter
    def tsecr(self, value: int | None) -> None:
        self.ts_ecr = 0 if value is None else value

    @property
    def mptcp(self) -> list[Option]:
        """The MPTCP options, in order (the usual layout's one DSS as an option object)."""
        if self.dss_only and not self._mptcp:
            self._mptcp.append(usual_dss(self))
        return self._mptcp

    @mptcp.setter
    def mptcp(self, options: list[Option]) -> None:
        self._mptcp = options
        self.dss_only = False

    @property
    def length(self) -> int:
        """Sequence space the segment occupies: payload, plus one each for SYN and FIN."""
        return len(self.payload) + (self.flags & _SYN and 1) + (self.flags & _FIN and 1)

    def first(self, cls):
        """The first MPTCP option of class ``cls``, or None."""
        for option in self.mptcp:
            if type(option) is cls:
                return option
        return None


def flow_key(local: bytes, lport: int, remote: bytes, rport: int) -> bytes:
    """A subflow's key in its endpoint's table: local address and port, remote address and
    port, as one bytes object (one hash per lookup). The addresses are bytes, the ports
    16-bit integers: anything else raises (TypeError, ValueError) as the argument checks do."""
    if type(local) is not bytes or type(remote) is not bytes:
        local = _check.exact_bytes("local", local)
        remote = _check.exact_bytes("remote", remote)
    if type(lport) is not int or type(rport) is not int or not 0 <= lport <= 0xFFFF \
            or not 0 <= rport <= 0xFFFF:
        lport, rport = _check.uint("lport", lport, 16), _check.uint("rport", rport, 16)
    return local + lport.to_bytes(2, "big") + remote + rport.to_bytes(2, "big")


def usual_dss(seg) -> opt.Dss:
    """The Dss option a segment's usual-layout fields stand for, as the codec reads it."""
    if seg.dss_mapped:
        fields = (seg.dss_ack, seg.dss_ack64, seg.dss_dsn, True, seg.dss_ssn, seg.dss_length,
                  seg.dss_checksum, False)
    else:
        fields = (seg.dss_ack, seg.dss_ack64, None, False, None, None, None, False)
    return tuple.__new__(opt.Dss, fields)


def general_options(seg, data, offset: int, length: int, parse_tcp_options) -> None:
    """Sort the options of any area into ``seg``, as ``parse_tcp_options`` (the option codec of
    the caller's own backend) reads them."""
    try:
        found = parse_tcp_options(data, keep_malformed=True, offset=offset, length=length)
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
        elif kind is opt.UnknownTcpOption and o.kind == TCPOPT_FASTOPEN:
            seg.fastopen = fastopen_cookie(o.data)


def fastopen_cookie(data: bytes) -> bytes | None:
    """The TCP Fast Open option's cookie as the engine takes it (RFC 7413 §4.1.1 with errata
    4238): b"" for a cookie request, 4 to 16 bytes of even length for a cookie; any other
    length is no usable option (None), as Linux's tcp_parse_fastopen_option ignores it."""
    if not data or (4 <= len(data) <= 16 and not len(data) & 1):
        return bytes(data)
    return None

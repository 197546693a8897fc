# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_segment_py.py: read one received packet for the engine.
Same results and status codes; the packet layout and checksums are the C of mf_packet.pxd,
the usual established options area (timestamps + DSS, mptcp_fast.wire.established) is decoded
here, any other area as ``_segment_common.general_options`` reads it (the option codec).
"""

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.type cimport PyType_GenericAlloc

from mf_bytes cimport be16, be32, be64, put16, put32, put64, immutable_buffer
from mf_csum cimport sum16, add16
from mf_packet cimport (PacketLayout, pk_locate, pk_tcp_checksum, pk_write, pk_write_check,
                       pk_write_head)
from mptcp_fast import _check
from mptcp_fast.wire._packet_common import write_error             # the packet layer's errors
from mptcp_fast.wire import _options_common as _opt
from mptcp_fast.wire._options_common import Dss as _DssClass
from mptcp_fast.wire import _segment_common
from mptcp_fast.wire._segment_common import TCPOPT_FASTOPEN, fastopen_cookie
from mptcp_fast.errors import OptionError
from mptcp_fast.wire._options_c import parse_tcp_options   # this backend's codec


@cython.freelist(64)
cdef class Incoming:
    """mptcp_fast.wire._segment_common.Incoming's compiled twin: the same fields and calls,
    typed (pyx/mptcp_fast/wire/_segment_c.pxd), so that the compiled engine reads them as C
    fields. ``read`` makes one per packet without the ``__init__`` call (_new_incoming), from a
    free list of recently freed ones."""

    def __init__(self):
        self.flow = None
        self.mss = self.wscale = None
        self.sack_permitted = False
        self.sack = ()
        self._mptcp = []
        self.malformed_options = 0
        self.dss_checksum = None

    @property
    def tsval(self):
        """The timestamps option's TSval, or None when the segment had none."""
        return self.ts_val if self.has_ts else None

    @tsval.setter
    def tsval(self, value):
        self.has_ts = value is not None
        self.ts_val = 0 if value is None else value

    @property
    def tsecr(self):
        """The timestamps option's TSecr, or None when the segment had none."""
        return self.ts_ecr if self.has_ts else None

    @tsecr.setter
    def tsecr(self, value):
        self.ts_ecr = 0 if value is None else value

    @property
    def mptcp(self):
        """The MPTCP options, in order (the usual layout's one DSS as an option object)."""
        if self.dss_only and not self._mptcp:
            self._mptcp.append(_usual_dss(self))
        return self._mptcp

    @mptcp.setter
    def mptcp(self, list options):
        self._mptcp = options
        self.dss_only = False

    # The addresses are read on the slow paths only (handshakes, joins, packets for no
    # subflow): cut from ``flow`` (local address, port, remote address, port) when asked for,
    # not made for every packet.
    @property
    def src(self):
        """The sender's address (the remote one)."""
        if self._src is None and self.flow is not None:
            alen = (len(self.flow) - 4) // 2
            self._src = self.flow[alen + 2:2 * alen + 2]
        return self._src

    @src.setter
    def src(self, bytes value):
        self._src = value

    @property
    def dst(self):
        """The receiver's address (the local one)."""
        if self._dst is None and self.flow is not None:
            self._dst = self.flow[:(len(self.flow) - 4) // 2]
        return self._dst

    @dst.setter
    def dst(self, bytes value):
        self._dst = value

    @property
    def length(self):
        """Sequence space the segment occupies: payload, plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & 0x02 else 0) + (1 if self.flags & 0x01 else 0)

    def first(self, cls):
        """The first MPTCP option of class ``cls``, or None."""
        for option in self.mptcp:
            if type(option) is cls:
                return option
        return None


cdef inline Incoming _new_incoming():
    """Incoming() without the Python call of ``__init__``: the object fields start as None,
    the C ones as 0, and the two that start otherwise are set here."""
    cdef Incoming seg = Incoming.__new__(Incoming)
    seg.sack = ()
    seg._mptcp = []
    return seg


cdef object _Dss = _DssClass          # the option class Dss (a tuple subclass)


cdef inline void _put(object fields, Py_ssize_t i, object value):
    Py_INCREF(value)                  # PyTuple_SET_ITEM takes over a reference
    PyTuple_SET_ITEM(fields, i, value)


cdef object _usual_dss(Incoming seg):
    """The Dss the usual layout's fields stand for, as the codec reads it (the pure twin's
    _segment_common.usual_dss): built without validation, the tuple subclass's own allocator
    and the items set in place."""
    cdef object d = PyType_GenericAlloc(_Dss, 8)
    cdef bint mapped = seg.dss_mapped
    _put(d, 0, seg.dss_ack)
    _put(d, 1, True if seg.dss_ack64 else False)
    _put(d, 2, seg.dss_dsn if mapped else None)
    _put(d, 3, True if mapped else False)
    _put(d, 4, seg.dss_ssn if mapped else None)
    _put(d, 5, seg.dss_length if mapped else None)
    _put(d, 6, seg.dss_checksum if mapped else None)
    _put(d, 7, False)
    return d


cdef inline void _usual(Incoming seg, const uint8_t* o, uint64_t data_ack, bint ack64):
    seg.has_ts = True
    seg.ts_val, seg.ts_ecr = be32(o + 4), be32(o + 8)
    seg.dss_only = True
    seg.dss_ack, seg.dss_ack64 = data_ack, ack64


cdef inline void _usual_map(Incoming seg, uint64_t dsn, uint32_t ssn, uint16_t length,
                            int checksum):
    seg.dss_mapped = True
    seg.dss_dsn, seg.dss_ssn, seg.dss_length = dsn, ssn, length
    if checksum >= 0:
        seg.dss_checksum = checksum


cdef object _Timestamps = _opt.Timestamps, _Sack = _opt.Sack, _Mss = _opt.Mss
cdef object _WindowScale = _opt.WindowScale, _SackPermitted = _opt.SackPermitted
cdef object _Malformed = _opt.MalformedOption, _MptcpOption = _opt._MptcpOption
cdef object _Unknown = _opt.UnknownTcpOption


cdef void _general_options(Incoming seg, object data, Py_ssize_t offset, Py_ssize_t length) except *:
    """Any options area but the usual one, sorted into ``seg`` as the codec reads it: the pure
    twin's ``_segment_common.general_options`` (handshakes, FINs, joins, SACKs), with the
    option classes compared in C."""
    cdef object o, kind
    try:
        found = parse_tcp_options(data, keep_malformed=True, offset=offset, length=length)
    except OptionError:                   # the options area itself is broken: ignore it all
        seg.malformed_options += 1
        return
    for o in found:
        kind = type(o)
        if kind is _Timestamps:
            seg.has_ts = True
            seg.ts_val, seg.ts_ecr = o[0], o[1]
        elif kind is _Sack:
            seg.sack = o[0]
        elif kind is _Mss:
            seg.mss = o[0]
        elif kind is _WindowScale:
            seg.wscale = o[0]
        elif kind is _SackPermitted:
            seg.sack_permitted = True
        elif kind is _Malformed:
            seg.malformed_options += 1
        elif isinstance(o, _MptcpOption):
            seg._mptcp.append(o)
        elif kind is _Unknown and o[0] == TCPOPT_FASTOPEN:    # RFC 7413 (handshakes only)
            seg.fastopen = fastopen_cookie(o[1])


cdef bytes _flow(const uint8_t* local, const uint8_t* lport, const uint8_t* remote,
                 const uint8_t* rport, Py_ssize_t alen):
    """The subflow key the pure twin's flow_key builds: local address, port, remote address,
    port (the ports as they are on the wire, big-endian)."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * alen + 4)
    cdef char* o = PyBytes_AS_STRING(out)
    memcpy(o, local, alen)
    memcpy(o + alen, lport, 2)
    memcpy(o + alen + 2, remote, alen)
    memcpy(o + 2 * alen + 2, rport, 2)
    return out



def flow_key(local, lport, remote, rport):
    """_segment_common.flow_key in C: a subflow's key in its endpoint's table (the engine
    builds one per lookup when it picks or registers a 4-tuple). Anything but the engine's
    own values (bytes of one family, ints of 16 bits) goes to the pure function, which
    checks them as the pure twin does."""
    cdef uint8_t ports[4]
    if type(local) is not bytes or type(remote) is not bytes or type(lport) is not int \
            or type(rport) is not int or not 0 <= lport <= 0xFFFF or not 0 <= rport <= 0xFFFF \
            or PyBytes_GET_SIZE(local) != PyBytes_GET_SIZE(remote):
        return _segment_common.flow_key(local, lport, remote, rport)
    put16(ports, lport)
    put16(ports + 2, rport)
    return _flow(<const uint8_t*>PyBytes_AS_STRING(local), ports,
                 <const uint8_t*>PyBytes_AS_STRING(remote), ports + 2, PyBytes_GET_SIZE(local))

cdef inline bint _is_ts(const uint8_t* p) noexcept nogil:
    return p[0] == 1 and p[1] == 1 and p[2] == 8 and p[3] == 10


cdef Py_ssize_t VIEW_PAYLOAD = 8192     # _segment_common.VIEW_PAYLOAD (WHOLE_PIECE), in C


cpdef object read(object data, long long number, bint verified=False, bint view=False):
    # (the pure twin's docstring: _segment_py.read)
    cdef Py_buffer buf
    cdef Py_ssize_t plen
    cdef PacketLayout f
    cdef const uint8_t* d
    cdef const uint8_t* t
    cdef const uint8_t* o
    cdef Py_ssize_t olen, ihl
    cdef int status
    cdef Incoming seg
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        d = <const uint8_t*>buf.buf
        status = pk_locate(d, buf.len, 0, 0, &f)
        if status:
            return status
        if f.cap_end != f.ip_end:
            return 4
        if f.version == 4:
            ihl = (d[0] & 0x0F) * 4
            if sum16(d, ihl, False) != 0xFFFF:
                return 5
        t = d + f.tcp
        if not verified and add16(~pk_tcp_checksum(d, &f) & 0xFFFF, be16(t + 16)) != 0xFFFF:
            return 6
        seg = _new_incoming()
        seg.number = number
        seg.sport = be16(t)
        seg.dport = be16(t + 2)
        seg.seq = be32(t + 4)
        seg.ack = be32(t + 8)
        seg.flags = t[13]
        seg.window = be16(t + 14)
        seg.flow = _flow(d + f.src + f.addr_len, t + 2, d + f.src, t, f.addr_len)
        plen = f.ip_end - f.tcp - f.doff
        if view and plen >= VIEW_PAYLOAD and immutable_buffer(data):
            # an offloaded segment's payload, uncopied (the pure twin's p.payload(data))
            seg.payload = PyMemoryView_FromObject(data)[f.tcp + f.doff:f.ip_end]
        else:
            seg.payload = PyBytes_FromStringAndSize(<const char*>(t + f.doff), plen)
        olen = f.doff - 20
        if olen:
            o = t + 20
            # the usual layouts (established.read_usual): TS + one DSS, into the dss_ fields
            if olen == 24 and _is_ts(o) and o[12] == 30 and o[13] == 12 and o[14] == 0x20 \
                    and o[15] == 0x03:
                _usual(seg, o, be64(o + 16), True)
            elif olen == 40 and _is_ts(o) and o[12] == 30 and o[14] == 0x20 and o[15] == 0x0F \
                    and ((o[13] == 26 and o[38] == 1 and o[39] == 1) or o[13] == 28):
                _usual(seg, o, be64(o + 16), True)
                _usual_map(seg, be64(o + 24), be32(o + 32), be16(o + 36),
                           be16(o + 38) if o[13] == 28 else -1)
            elif olen == 36 and _is_ts(o) and o[12] == 30 and o[13] == 22 and o[14] == 0x20 \
                    and o[15] == 0x0D and o[34] == 1 and o[35] == 1:
                # Linux's data segment: TS + DSS with a 32-bit data ACK and a 64-bit DSN
                # (flags A, M, m), no checksum, NOP NOP (net/mptcp/options.c)
                _usual(seg, o, be32(o + 16), False)
                _usual_map(seg, be64(o + 20), be32(o + 28), be16(o + 32), -1)
            elif olen == 20 and _is_ts(o) and o[12] == 30 and o[13] == 8 and o[14] == 0x20 \
                    and o[15] == 0x01:
                # Linux's pure ACK: TS + DSS with a 32-bit data ACK only
                _usual(seg, o, be32(o + 16), False)
            else:
                _general_options(seg, data, f.tcp + 20, olen)
        return seg
    finally:
        PyBuffer_Release(&buf)


# ------------------------------------------------------------------------------------------
# writing: the two segments an established subflow sends most, each one call from fields to a
# checksummed packet (the pure twin composes wire.data_area / ack_area and build_segment), and
# any other segment from its options area

cdef object _packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                    uint32_t ack, uint8_t flags, uint16_t window, const uint8_t* area,
                    Py_ssize_t area_len, const uint8_t* body, Py_ssize_t body_len):
    """A new bytes object holding the packet (mf_packet's pk_write: the packet layer's own
    writer), with build_packet's defaults: TTL 64, TOS 0, IP id 0, don't fragment. A packet
    the writer refuses (families that differ, a payload over one IP packet: a peer's tiny
    MSS must not make the engine build one) raises the packet layer's PacketError, as the
    pure twin's build_segment does; nothing is allocated for it."""
    cdef Py_ssize_t written
    cdef Py_ssize_t refused = pk_write_check(len(src), len(dst), area_len, body_len)
    if refused:
        raise write_error(refused, len(src), len(dst), area_len, body_len)
    cdef Py_ssize_t ip_len = 20 if len(src) == 4 else 40
    cdef object out = PyBytes_FromStringAndSize(NULL, ip_len + 20 + area_len + body_len)
    written = pk_write(<uint8_t*>PyBytes_AS_STRING(out), <const uint8_t*><const char*>src,
                       len(src), <const uint8_t*><const char*>dst, len(dst), sport, dport, seq,
                       ack, flags, window, area, area_len, body, body_len, 64, 0, 0, True, 0)
    if written < 0:                       # a failed write is never ignored
        raise write_error(written, len(src), len(dst), area_len, body_len)
    return out


cdef inline void _timestamps(uint8_t* a, uint32_t tsval, uint32_t tsecr) noexcept nogil:
    a[0], a[1], a[2], a[3] = 1, 1, 8, 10
    put32(a + 4, tsval)
    put32(a + 8, tsecr)


cdef inline void _data_area(uint8_t* area, uint32_t tsval, uint32_t tsecr, uint64_t data_ack,
                            uint64_t dsn, uint32_t ssn, uint16_t length, object checksum):
    # TS + a DSS with the 64-bit data ACK and a mapping: 40 bytes
    _timestamps(area, tsval, tsecr)
    area[12], area[14], area[15] = 30, 0x20, 0x0F
    put64(area + 16, data_ack)
    put64(area + 24, dsn)
    put32(area + 32, ssn)
    put16(area + 36, length)
    if checksum is None:
        area[13], area[38], area[39] = 26, 1, 1
    else:
        area[13] = 28
        put16(area + 38, <uint16_t>checksum)


cdef int _data_segment_begin(bytes src, bytes dst, uint8_t* area, uint32_t tsval,
                             uint32_t tsecr, uint64_t data_ack, uint64_t dsn, uint32_t ssn,
                             uint16_t length, object checksum, object payload,
                             Py_ssize_t start, Py_ssize_t end, Py_buffer* body) except -1:
    """What both data segment writers do first: the addresses checked, the 40-byte options
    area written, the payload's buffer taken and ``start..end`` checked within it. On success
    the caller owns ``body`` and releases it; a refused range releases it here."""
    if src is None or dst is None:        # their pointers are read (the pure twin's message)
        _check.exact_bytes("src", src)
        _check.exact_bytes("dst", dst)
    _data_area(area, tsval, tsecr, data_ack, dsn, ssn, length, checksum)
    PyObject_GetBuffer(payload, body, PyBUF_SIMPLE)
    if not 0 <= start <= end <= body.len:    # then end - start cannot overflow
        PyBuffer_Release(body)
        raise ValueError(f"payload range {start}..{end} is outside {body.len} bytes")
    return 0


cpdef bytes data_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                        uint32_t ack, uint8_t flags, uint16_t window, uint32_t tsval,
                        uint32_t tsecr, uint64_t data_ack, uint64_t dsn, uint32_t ssn,
                        uint16_t length, object checksum, object payload, Py_ssize_t start,
                        Py_ssize_t end):
    """A data segment carrying ``payload[start:end]`` with TS + a DSS (ack and mapping)."""
    cdef uint8_t area[40]
    cdef Py_buffer body
    _data_segment_begin(src, dst, area, tsval, tsecr, data_ack, dsn, ssn, length, checksum,
                        payload, start, end, &body)
    try:
        return _packet(src, dst, sport, dport, seq, ack, flags, window, area, 40,
                       <const uint8_t*>body.buf + start, end - start)
    finally:
        PyBuffer_Release(&body)


cpdef tuple data_packet_parts(bytes src, bytes dst, uint16_t sport, uint16_t dport,
                              uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                              uint32_t tsval, uint32_t tsecr, uint64_t data_ack, uint64_t dsn,
                              uint32_t ssn, uint16_t length, object checksum, object payload,
                              Py_ssize_t start, Py_ssize_t end, bint partial=False):
    """``data_packet``'s segment as (its headers: bytes, its payload: a memoryview of
    ``payload[start:end]``): joined, they are data_packet's bytes; written with one writev,
    the payload is never copied in this process (a 64 KiB offloaded segment's copy).
    ``partial``: the TCP checksum field holds the pseudo-header sum only (the device
    completes it: ``complete_checksum``), and the payload is not summed."""
    cdef uint8_t area[40]
    cdef uint8_t head[100]                # IPv6 40 + TCP 20 + this area 40
    cdef Py_buffer body
    cdef Py_ssize_t written
    _data_segment_begin(src, dst, area, tsval, tsecr, data_ack, dsn, ssn, length, checksum,
                        payload, start, end, &body)
    try:
        written = pk_write_head(head, <const uint8_t*><const char*>src, len(src),
                                <const uint8_t*><const char*>dst, len(dst), sport, dport, seq,
                                ack, flags, window, area, 40, <const uint8_t*>body.buf + start,
                                end - start, 64, 0, 0, True, 0, partial)
    finally:
        PyBuffer_Release(&body)
    if written < 0:
        raise write_error(written, len(src), len(dst), 40, end - start)
    return (PyBytes_FromStringAndSize(<char*>head, written),
            PyMemoryView_FromObject(payload)[start:end])


cpdef bytes ack_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                       uint32_t ack, uint16_t window, uint32_t tsval, uint32_t tsecr,
                       uint64_t data_ack):
    """A pure ACK with TS + a DSS carrying the 64-bit data ACK."""
    cdef uint8_t area[24]
    if src is None or dst is None:        # their pointers are read (the pure twin's message)
        _check.exact_bytes("src", src)
        _check.exact_bytes("dst", dst)
    _timestamps(area, tsval, tsecr)
    area[12], area[13], area[14], area[15] = 30, 12, 0x20, 0x03
    put64(area + 16, data_ack)
    return _packet(src, dst, sport, dport, seq, ack, 0x10, window, area, 24, NULL, 0)


cpdef bytes segment_packet(bytes src, bytes dst, uint16_t sport, uint16_t dport, uint32_t seq,
                           uint32_t ack, uint8_t flags, uint16_t window, bytes area,
                           object payload):
    """Any other segment the engine writes (handshakes, FINs, RSTs, ACKs with other options):
    its options area already encoded (a multiple of 4 bytes, at most 40), the checks and
    defaults of the pure twin's ``build_segment``."""
    cdef Py_buffer body
    if src is None or dst is None:        # their pointers are read (the pure twin's message)
        _check.exact_bytes("src", src)
        _check.exact_bytes("dst", dst)
    if area is None:
        _check.exact_bytes("area", area)
    PyObject_GetBuffer(payload, &body, PyBUF_SIMPLE)
    try:
        return _packet(src, dst, sport, dport, seq, ack, flags, window,
                       <const uint8_t*><const char*>area, len(area),
                       <const uint8_t*>body.buf, body.len)
    finally:
        PyBuffer_Release(&body)

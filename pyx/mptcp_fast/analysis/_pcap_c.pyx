# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/analysis/_pcap_py.py: pcap/pcapng records to TCP segments.

The file is read in 1 MiB chunks; records, link-layer, IP and TCP headers are
decoded through a raw pointer after explicit length checks. Same results,
counters and errors as the pure twin (the Stats class and column layout of _pcap_common).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.math cimport pow
from libc.stdint cimport int32_t as int32_t_
from mf_bytes cimport bool8

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from mf_bytes cimport be16, be32
from mf_tcpopt cimport DssFields, dss_decode, opt_step, OPT_EOL, OPT_NOP, OPT_TLV
from mf_packet cimport PacketLayout, pk_locate, PK_OK, PK_TRUNCATED, PK_FRAGMENT
from mptcp_fast.analysis._pcap_common import COLUMN_TYPES, Stats   # one definition of each
from mptcp_fast.errors import CaptureError

cdef enum:
    CHUNK = 1 << 20
    MAX_RECORD = 1 << 24
    PCAPNG_SHB = 0x0A0D0D0A


cdef inline uint32_t rd32(const uint8_t* p, bint big) noexcept nogil:
    """A capture file's own byte order: big or little endian (pcap and pcapng headers)."""
    if big:
        return be32(p)
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]

cdef inline uint16_t rd16(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return be16(p)
    return (<uint16_t>p[1] << 8) | p[0]


cdef class _Reader:
    """A window on the file: ``need(n)`` makes n bytes from ``pos`` available if the file has them."""
    cdef object f
    cdef bytes buf
    cdef Py_ssize_t pos
    cdef int64_t base             # file offset of buf[0]
    cdef bint eof

    def __cinit__(self, f):
        self.f = f
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.eof = False

    cdef Py_ssize_t need(self, Py_ssize_t n) except -1:
        """How many of the n bytes wanted are available (n unless the file ends first)."""
        cdef Py_ssize_t have = PyBytes_GET_SIZE(self.buf) - self.pos
        while have < n and not self.eof:
            chunk = self.f.read(max(<Py_ssize_t>CHUNK, n - have))
            if not chunk:
                self.eof = True
                break
            self.buf = self.buf[self.pos:] + chunk
            self.base += self.pos
            self.pos = 0
            have = PyBytes_GET_SIZE(self.buf)
        return have if have < n else n

    cdef inline const uint8_t* at(self) noexcept:
        return <const uint8_t*>PyBytes_AS_STRING(self.buf) + self.pos

    cdef inline int64_t offset(self) noexcept:
        return self.base + self.pos

    cdef bytes take(self, Py_ssize_t n, str what):
        cdef Py_ssize_t have = self.need(n)
        if have < n:
            raise CaptureError(f"capture truncated at byte {self.offset()}: {what} needs {n} "
                               f"bytes, {have} left")
        out = PyBytes_FromStringAndSize(<const char*>self.at(), n)
        self.pos += n
        return out


def iter_segments(f, stats, make):
    """Yield ``make(number, time, interface, src, dst, sport, dport, seq, ack, flags, window,
    options, payload, payload_len, truncated, offset)`` for every TCP segment of the file."""
    return _records(f, stats, _MakeSink(make))


def iter_columns(f, stats, Py_ssize_t batch, bint payloads, Py_ssize_t payload_bytes=1 << 24):
    """Yield dicts of numpy columns, ``batch`` segments at most each (mptcp_fast.analysis.capture)."""
    cdef _ColumnSink sink = _ColumnSink(batch, payloads, payload_bytes)
    try:
        for _ in _records(f, stats, sink):
            yield sink.flush()
    except CaptureError:
        if sink.count:
            yield sink.flush()              # everything before the bad record, then the error
        raise
    if sink.count:
        yield sink.flush()


def _records(f, stats, _Sink sink):
    cdef _Reader r = _Reader(f)
    cdef Py_ssize_t have = r.need(4)
    if have < 4:
        raise CaptureError("capture truncated at byte 0: no file header")
    magic = PyBytes_FromStringAndSize(<const char*>r.at(), 4)
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        yield from _pcap(r, stats, sink, magic)
    elif rd32(r.at(), False) == PCAPNG_SHB:
        yield from _pcapng(r, stats, sink)
    else:
        raise CaptureError(f"not a pcap or pcapng file at byte 0 (magic {magic.hex()})")


def _pcap(_Reader r, stats, _Sink sink, bytes magic):
    cdef bint big = magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    cdef double unit = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    cdef const uint8_t* p
    cdef uint32_t sec, frac, incl, linktype
    cdef int64_t number = 0, offset
    r.pos += 4
    header = r.take(20, "the pcap file header")
    linktype = rd32(<const uint8_t*>PyBytes_AS_STRING(header) + 16, big) & 0xFFFF
    while True:
        offset = r.offset()
        have = r.need(16)
        if have == 0:
            return
        if have < 16:
            raise CaptureError(f"capture truncated at byte {offset}: record header needs 16 bytes, "
                               f"{have} left")
        p = r.at()
        sec, frac, incl = rd32(p, big), rd32(p + 4, big), rd32(p + 8, big)
        if incl > MAX_RECORD:
            raise CaptureError(f"corrupt record at byte {offset}: captured length {incl}")
        r.pos += 16
        data = r.take(incl, "the record data")
        number += 1
        stats.records += 1
        seg = _decode(number, sec + frac * unit, 0, linktype, data, offset, stats, sink)
        if seg is not None:
            yield seg


def _pcapng(_Reader r, stats, _Sink sink):
    cdef bint big = False
    cdef const uint8_t* p
    cdef uint32_t block_type, length, iface, caplen
    cdef int64_t number = 0, offset
    cdef list linktypes = [], ticks = []
    while True:
        offset = r.offset()
        have = r.need(12)
        if have == 0:
            return
        if have < 8:
            raise CaptureError(f"capture truncated at byte {offset}: block header")
        p = r.at()
        if rd32(p, False) == PCAPNG_SHB:
            if have < 12:
                raise CaptureError(f"capture truncated at byte {offset + 8}: the section byte-order "
                                   f"magic needs 4 bytes, {have - 8} left")
            if rd32(p + 8, False) == 0x1A2B3C4D:
                big = False
            elif rd32(p + 8, True) == 0x1A2B3C4D:
                big = True
            else:
                raise CaptureError(f"corrupt section header at byte {offset}: magic "
                                   f"{PyBytes_FromStringAndSize(<const char*>p + 8, 4).hex()}")
            length = rd32(p + 4, big)
            if length < 28 or length % 4 or length > MAX_RECORD:
                raise CaptureError(f"corrupt section header at byte {offset}: length {length}")
            r.pos += 12
            r.take(length - 12, "the section header")
            linktypes, ticks = [], []
            continue
        block_type, length = rd32(p, big), rd32(p + 4, big)
        if length < 12 or length % 4 or length > MAX_RECORD:
            raise CaptureError(f"corrupt pcapng block at byte {offset}: length {length}")
        r.pos += 8
        block = r.take(length - 8, "the block")
        p = <const uint8_t*>PyBytes_AS_STRING(block)
        n = length - 12                                        # body, without the trailing length
        if block_type == 1:                                    # Interface Description Block
            if n < 8:
                raise CaptureError(f"corrupt interface block at byte {offset}")
            linktypes.append(rd16(p, big))
            ticks.append(_tsresol(p + 8, n - 8, big))
        elif block_type == 6 or block_type == 2:               # Enhanced / obsolete Packet Block
            if n < 20:
                raise CaptureError(f"corrupt packet block at byte {offset}")
            # the obsolete block has a 16-bit interface id (and a drop count) in the same 4 bytes
            iface = rd32(p, big) if block_type == 6 else rd16(p, big)
            stamp = (<uint64_t>rd32(p + 4, big) << 32) | rd32(p + 8, big)
            caplen = rd32(p + 12, big)
            if iface >= len(linktypes) or caplen > n - 20:
                raise CaptureError(f"corrupt packet block at byte {offset}: interface {iface}, "
                                   f"captured length {caplen}")
            number += 1
            stats.records += 1
            seg = _decode(number, stamp * <double>ticks[iface], iface, linktypes[iface],
                          block[20:20 + caplen], offset, stats, sink)
            if seg is not None:
                yield seg
        elif block_type == 3:                                  # Simple Packet Block
            if n < 4 or not linktypes:
                raise CaptureError(f"corrupt simple packet block at byte {offset}")
            orig = rd32(p, big)
            number += 1
            stats.records += 1
            seg = _decode(number, 0.0, 0, linktypes[0], block[4:4 + min(orig, n - 4)], offset,
                          stats, sink)
            if seg is not None:
                yield seg


cdef double _tsresol(const uint8_t* p, Py_ssize_t n, bint big):
    """Seconds per timestamp tick from the if_tsresol option (code 9); default microseconds."""
    cdef Py_ssize_t pos = 0
    cdef uint16_t code, size
    cdef uint8_t value
    while pos + 4 <= n:
        code, size = rd16(p + pos, big), rd16(p + pos + 2, big)
        if code == 0:
            break
        if code == 9 and size >= 1 and pos + 4 < n:
            value = p[pos + 4]
            return pow(2.0, -(value & 0x7F)) if value & 0x80 else pow(10.0, -value)
        pos += 4 + size + ((4 - size % 4) % 4)
    return 1e-6


cdef inline int ip_version_of_ethertype(uint16_t ethertype) noexcept:
    if ethertype == 0x0800:
        return 4
    if ethertype == 0x86DD:
        return 6
    return 0


cdef object _decode(int64_t number, double time, uint32_t iface, uint32_t linktype, bytes data,
                    int64_t offset, stats, _Sink sink):
    """Find the IP header behind the link layer, then the TCP segment (pure: network_offset
    and decode_tcp)."""
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), ip = 0, pos
    cdef int version = 0
    cdef uint16_t ethertype
    cdef uint32_t family
    if linktype == 1:                                          # Ethernet, VLAN / QinQ tags
        pos = 12
        ethertype = 0
        while pos + 2 <= n:
            ethertype = be16(d + pos)
            if ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100:
                pos += 4
                continue
            break
        version, ip = ip_version_of_ethertype(ethertype), pos + 2
    elif linktype == 113:                                      # Linux SLL
        if n >= 16:
            version, ip = ip_version_of_ethertype(be16(d + 14)), 16
    elif linktype == 276:                                      # Linux SLL2
        if n >= 20:
            version, ip = ip_version_of_ethertype(be16(d)), 20
    elif linktype == 101 or linktype == 228 or linktype == 229 or linktype == 12 or linktype == 14:
        if n:
            version, ip = d[0] >> 4, 0
    elif linktype == 0 or linktype == 108:                     # BSD loopback / OpenBSD loop
        if n >= 4:
            family = be32(d) if linktype == 108 else rd32(d, False)
            if linktype == 0 and family > 0xFFFF:
                family = be32(d)
            if family == 2:
                version, ip = 4, 4
            elif family == 10 or family == 24 or family == 28 or family == 30:
                version, ip = 6, 4
    else:
        stats.unknown_link += 1
        return None
    if version == 0:
        stats.non_tcp += 1
        return None
    return _tcp(number, time, iface, d, n, ip, version, offset, stats, sink)


cdef object _tcp(int64_t number, double time, uint32_t iface, const uint8_t* d, Py_ssize_t n,
                 Py_ssize_t ip, int version, int64_t offset, stats, _Sink sink):
    """The TCP segment of the IP packet at ``ip`` (the packet layer's pk_locate), counted in
    ``stats`` whatever it is."""
    cdef PacketLayout f
    cdef int status = pk_locate(d, n, ip, version, &f)
    cdef bint truncated
    if status == PK_TRUNCATED:
        stats.truncated_headers += 1
        return None
    if status == PK_FRAGMENT:
        stats.fragments += 1
        return None
    if status != PK_OK:
        stats.non_tcp += 1
        return None
    truncated = f.cap_end < f.ip_end
    if truncated:
        stats.truncated_payloads += 1
    stats.tcp += 1
    return sink.emit(number, time, iface, d + f.src, d + f.src + f.addr_len, f.addr_len,
                     d + f.tcp, d + f.tcp + 20, f.doff - 20, d + f.tcp + f.doff,
                     f.cap_end - f.tcp - f.doff, f.ip_end - f.tcp - f.doff, truncated, offset)


# ------------------------------------------------------------------------------------------------
# sinks: segment objects one by one, or numpy columns in batches

cdef class _Sink:
    cdef object emit(self, int64_t number, double time, uint32_t iface, const uint8_t* src,
                     const uint8_t* dst, Py_ssize_t addr_len, const uint8_t* tcp,
                     const uint8_t* options, Py_ssize_t options_len, const uint8_t* payload,
                     Py_ssize_t captured, int64_t payload_len, bint truncated, int64_t offset):
        return None


cdef class _MakeSink(_Sink):
    cdef object make

    def __cinit__(self, make):
        self.make = make

    cdef object emit(self, int64_t number, double time, uint32_t iface, const uint8_t* src,
                     const uint8_t* dst, Py_ssize_t addr_len, const uint8_t* tcp,
                     const uint8_t* options, Py_ssize_t options_len, const uint8_t* payload,
                     Py_ssize_t captured, int64_t payload_len, bint truncated, int64_t offset):
        return self.make(number, time, iface,
                         PyBytes_FromStringAndSize(<const char*>src, addr_len),
                         PyBytes_FromStringAndSize(<const char*>dst, addr_len),
                         be16(tcp), be16(tcp + 2), be32(tcp + 4), be32(tcp + 8), tcp[13],
                         be16(tcp + 14),
                         PyBytes_FromStringAndSize(<const char*>options, options_len),
                         PyBytes_FromStringAndSize(<const char*>payload, captured),
                         payload_len, truncated, offset)


cdef class _ColumnSink(_Sink):
    cdef public Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef bint payloads
    cdef dict cols
    cdef bytearray options_blob, payload_blob
    cdef int64_t[::1] number, offset, payload_start
    cdef double[::1] time
    cdef uint32_t[::1] iface, seq, ack, payload_len, captured_len, options_start, dss_ssn
    cdef uint8_t[::1] family, flags, options_len, dss_flags
    cdef uint8_t[:, ::1] src, dst
    cdef uint16_t[::1] sport, dport, window, mptcp_subtypes, dss_len
    cdef uint64_t[::1] data_ack, dsn
    cdef int32_t_[::1] dss_checksum
    cdef bool8[::1] truncated, options_malformed
    cdef Py_ssize_t payload_bytes

    def __cinit__(self, Py_ssize_t capacity, bint payloads, Py_ssize_t payload_bytes):
        self.capacity = max(capacity, 1)
        self.payloads = payloads
        self.payload_bytes = payload_bytes
        self._fresh()

    cdef void _fresh(self):
        import numpy as np
        n = self.capacity
        # the layout both twins write (a dtype that differs fails the typed views below)
        c = self.cols = {name: np.empty(n, kind) for name, kind in COLUMN_TYPES.items()}
        c["src"], c["dst"] = np.zeros((n, 16), np.uint8), np.zeros((n, 16), np.uint8)
        self.number, self.time, self.iface = c["number"], c["time"], c["interface"]
        self.family, self.src, self.dst = c["family"], c["src"], c["dst"]
        self.sport, self.dport, self.seq, self.ack = c["sport"], c["dport"], c["seq"], c["ack"]
        self.flags, self.window = c["flags"], c["window"]
        self.payload_len, self.captured_len = c["payload_len"], c["captured_len"]
        self.truncated, self.offset = c["truncated"], c["record_offset"]
        self.options_start, self.options_len = c["options_start"], c["options_len"]
        self.payload_start, self.mptcp_subtypes = c["payload_start"], c["mptcp_subtypes"]
        self.options_malformed = c["options_malformed"]
        self.dss_flags, self.data_ack, self.dsn = c["dss_flags"], c["data_ack"], c["dsn"]
        self.dss_ssn, self.dss_len, self.dss_checksum = c["dss_ssn"], c["dss_len"], c["dss_checksum"]
        self.options_blob = bytearray()
        self.payload_blob = bytearray()
        self.count = 0

    cdef object emit(self, int64_t number, double time, uint32_t iface, const uint8_t* src,
                     const uint8_t* dst, Py_ssize_t addr_len, const uint8_t* tcp,
                     const uint8_t* options, Py_ssize_t options_len, const uint8_t* payload,
                     Py_ssize_t captured, int64_t payload_len, bint truncated, int64_t offset):
        cdef Py_ssize_t i = self.count, k
        self.number[i], self.time[i], self.iface[i], self.offset[i] = number, time, iface, offset
        self.family[i] = 4 if addr_len == 4 else 6
        for k in range(addr_len):
            self.src[i, k] = src[k]
            self.dst[i, k] = dst[k]
        for k in range(addr_len, 16):
            self.src[i, k] = 0
            self.dst[i, k] = 0
        self.sport[i], self.dport[i] = be16(tcp), be16(tcp + 2)
        self.seq[i], self.ack[i] = be32(tcp + 4), be32(tcp + 8)
        self.flags[i], self.window[i] = tcp[13], be16(tcp + 14)
        self.payload_len[i], self.captured_len[i], self.truncated[i] = payload_len, captured, truncated
        self.options_start[i] = len(self.options_blob)
        self.options_len[i] = options_len
        self.options_blob += (<const char*>options)[:options_len]
        self.payload_start[i] = len(self.payload_blob) if self.payloads else -1
        if self.payloads:
            self.payload_blob += (<const char*>payload)[:captured]
        _mptcp_columns(options, options_len, &self.mptcp_subtypes[i], &self.options_malformed[i],
                       &self.dss_flags[i],
                       &self.data_ack[i], &self.dsn[i], &self.dss_ssn[i], &self.dss_len[i],
                       &self.dss_checksum[i])
        self.count += 1
        if self.count == self.capacity or len(self.payload_blob) >= self.payload_bytes:
            return True
        return None

    cdef object flush(self):
        out = {name: column[:self.count] for name, column in self.cols.items()}
        out["options_blob"] = bytes(self.options_blob)
        out["payload_blob"] = bytes(self.payload_blob)
        self._fresh()
        return out


cdef inline bint _bad_tcp_length(int kind, Py_ssize_t length) noexcept:
    """A plain TCP option the codec knows, with a length it rejects (RFC 9293 §3.2, RFC 7323,
    RFC 2018); the twin's _TCP_OPTION_LENGTHS."""
    if kind == 2:
        return length != 4
    if kind == 3:
        return length != 3
    if kind == 4:
        return length != 2
    if kind == 5:
        return not (length == 10 or length == 18 or length == 26 or length == 34)
    if kind == 8:
        return length != 10
    return False


cdef void _mptcp_columns(const uint8_t* p, Py_ssize_t n, uint16_t* subtypes, bool8* malformed,
                         uint8_t* dss_flags, uint64_t* data_ack, uint64_t* dsn, uint32_t* ssn,
                         uint16_t* dll, int32_t_* csum) noexcept:
    """Which MPTCP subtypes the options area holds (bit per subtype); whether its TLV structure,
    a plain TCP option's length, an MPTCP subtype octet or a DSS length is malformed (other
    MPTCP subtypes are left to the full parse); and the first valid DSS (dss_flags 0xFF when
    there is none). The walk and the DSS decoder are the codec's (mf_tcpopt.pxd)."""
    cdef Py_ssize_t pos = 0, length
    cdef int kind, subtype, step
    cdef DssFields f
    subtypes[0] = 0
    malformed[0] = False
    dss_flags[0] = 0xFF
    data_ack[0] = dsn[0] = 0
    ssn[0] = 0
    dll[0] = 0
    csum[0] = -1
    while pos < n:
        step = opt_step(p, n, pos, &length)
        if step == OPT_EOL:
            return
        if step == OPT_NOP:
            pos += 1
            continue
        if step != OPT_TLV:
            malformed[0] = True
            return
        kind = p[pos]
        if _bad_tcp_length(kind, length):
            malformed[0] = True
        if kind == 30 and length < 3:
            malformed[0] = True
        elif kind == 30:
            subtype = p[pos + 2] >> 4
            subtypes[0] |= 1 << subtype
            if subtype == 2:
                if dss_decode(p + pos, length, &f) < 0:
                    malformed[0] = True
                elif dss_flags[0] == 0xFF:
                    dss_flags[0] = f.flags
                    data_ack[0], dsn[0], ssn[0], dll[0] = f.data_ack, f.dsn, f.subflow_seq, f.data_len
                    if f.has_checksum:
                        csum[0] = f.checksum
        pos += length

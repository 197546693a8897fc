# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/_pure/_pcap.py: pcap/pcapng records to TCP segments.

The file is read in 1 MiB chunks; records, link-layer, IP and TCP headers are
decoded through a raw pointer after explicit length checks. Same results,
counters and errors as the pure twin (whose Stats class both use).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.math cimport pow
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from mptcp_fast._pure._pcap import Stats                      # one definition of the counters
from mptcp_fast.errors import CaptureError

cdef enum:
    CHUNK = 1 << 20
    MAX_RECORD = 1 << 24
    PCAPNG_SHB = 0x0A0D0D0A


cdef inline uint32_t rd32(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]

cdef inline uint16_t rd16(const uint8_t* p, bint big) noexcept nogil:
    if big:
        return (<uint16_t>p[0] << 8) | p[1]
    return (<uint16_t>p[1] << 8) | p[0]

cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


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
    cdef _Reader r = _Reader(f)
    cdef Py_ssize_t have = r.need(4)
    if have < 4:
        raise CaptureError("capture truncated at byte 0: no file header")
    magic = PyBytes_FromStringAndSize(<const char*>r.at(), 4)
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        yield from _pcap(r, stats, make, magic)
    elif rd32(r.at(), False) == PCAPNG_SHB:
        yield from _pcapng(r, stats, make)
    else:
        raise CaptureError(f"not a pcap or pcapng file at byte 0 (magic {magic.hex()})")


def _pcap(_Reader r, stats, make, bytes magic):
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
        seg = _decode(number, sec + frac * unit, 0, linktype, data, offset, stats, make)
        if seg is not None:
            yield seg


def _pcapng(_Reader r, stats, make):
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
            if block_type == 6:
                iface = rd32(p, big)
                stamp = (<uint64_t>rd32(p + 4, big) << 32) | rd32(p + 8, big)
                caplen = rd32(p + 12, big)
            else:
                iface = rd16(p, big)
                stamp = (<uint64_t>rd32(p + 4, big) << 32) | rd32(p + 8, big)
                caplen = rd32(p + 12, big)
            if iface >= len(linktypes) or caplen > n - 20:
                raise CaptureError(f"corrupt packet block at byte {offset}: interface {iface}, "
                                   f"captured length {caplen}")
            number += 1
            stats.records += 1
            seg = _decode(number, stamp * <double>ticks[iface], iface, linktypes[iface],
                          block[20:20 + caplen], offset, stats, make)
            if seg is not None:
                yield seg
        elif block_type == 3:                                  # Simple Packet Block
            if n < 4 or not linktypes:
                raise CaptureError(f"corrupt simple packet block at byte {offset}")
            orig = rd32(p, big)
            number += 1
            stats.records += 1
            seg = _decode(number, 0.0, 0, linktypes[0], block[4:4 + min(orig, n - 4)], offset,
                          stats, make)
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
                    int64_t offset, stats, make):
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
    return _tcp(number, time, iface, d, n, ip, version, offset, stats, make)


cdef object _tcp(int64_t number, double time, uint32_t iface, const uint8_t* d, Py_ssize_t n,
                 Py_ssize_t ip, int version, int64_t offset, stats, make):
    cdef Py_ssize_t ihl, total, tcp, ip_end, doff, size, cap_end
    cdef int next_header
    cdef bint truncated
    if version == 4:
        if n < ip + 20:
            stats.truncated_headers += 1
            return None
        ihl = (d[ip] & 0x0F) * 4
        total = be16(d + ip + 2)
        if d[ip] >> 4 != 4 or ihl < 20 or total < ihl:
            stats.non_tcp += 1
            return None
        if be16(d + ip + 6) & 0x3FFF:                          # MF flag or fragment offset
            stats.fragments += 1
            return None
        if d[ip + 9] != 6:
            stats.non_tcp += 1
            return None
        src = PyBytes_FromStringAndSize(<const char*>d + ip + 12, 4)
        dst = PyBytes_FromStringAndSize(<const char*>d + ip + 16, 4)
        tcp, ip_end = ip + ihl, ip + total
    elif version == 6:
        if n < ip + 40:
            stats.truncated_headers += 1
            return None
        next_header = d[ip + 6]
        ip_end = ip + 40 + be16(d + ip + 4)
        src = PyBytes_FromStringAndSize(<const char*>d + ip + 8, 16)
        dst = PyBytes_FromStringAndSize(<const char*>d + ip + 24, 16)
        tcp = ip + 40
        while next_header != 6:
            if next_header == 0 or next_header == 43 or next_header == 60 or next_header == 51:
                if n < tcp + 2:
                    stats.truncated_headers += 1
                    return None
                size = (d[tcp + 1] + 2) * 4 if next_header == 51 else (d[tcp + 1] + 1) * 8
                next_header = d[tcp]
                tcp += size
            elif next_header == 44:                            # fragment header
                if n < tcp + 8:
                    stats.truncated_headers += 1
                    return None
                if be16(d + tcp + 2) & 0xFFF9:                 # offset or M flag
                    stats.fragments += 1
                    return None
                next_header = d[tcp]
                tcp += 8
            else:
                stats.non_tcp += 1
                return None
    else:
        stats.non_tcp += 1
        return None
    if n < tcp + 20:
        stats.truncated_headers += 1
        return None
    doff = (d[tcp + 12] >> 4) * 4
    if doff < 20 or tcp + doff > ip_end:
        stats.non_tcp += 1
        return None
    if n < tcp + doff:
        stats.truncated_headers += 1
        return None
    cap_end = n if n < ip_end else ip_end
    truncated = cap_end < ip_end
    if truncated:
        stats.truncated_payloads += 1
    stats.tcp += 1
    return make(number, time, iface, src, dst, be16(d + tcp), be16(d + tcp + 2), be32(d + tcp + 4),
                be32(d + tcp + 8), d[tcp + 13], be16(d + tcp + 14),
                PyBytes_FromStringAndSize(<const char*>d + tcp + 20, doff - 20),
                PyBytes_FromStringAndSize(<const char*>d + tcp + doff, cap_end - tcp - doff),
                ip_end - tcp - doff, truncated, offset)

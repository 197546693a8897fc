# IPv4 / IPv6 + TCP headers as plain C: where the parts of a packet are, its TCP checksum
# (RFC 9293 §3.1, pseudo-headers of RFC 791 and RFC 8200 §8.1) and the IPv4 header checksum
# (RFC 791), and writing a whole packet. Shared by _packet.pyx (the packet API), _pcap.pyx (the
# capture reader) and _segment.pyx (the engine's segments); the pure twin is
# mptcp_fast/wire/_packet_py.py. Nothing here allocates or reads outside [0, n).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from mf_bytes cimport be16, put16, put32
from mf_csum cimport sum16, add16

cdef enum:
    PK_OK = 0
    PK_TRUNCATED = 1           # the bytes end inside the IP, extension or TCP header
    PK_NOT_TCP = 2             # not IPv4/IPv6, not TCP, or headers that contradict themselves
    PK_FRAGMENT = 3            # an IP fragment (not reassembled)
    PK_IPPROTO_TCP = 6
    # pk_write_check / pk_write refusals (negative: a length is never negative). The pure
    # twin's write_error (mptcp_fast/wire/_packet_py.py) turns them into the PacketError text.
    PK_W_FAMILY = -1           # source and destination not both 4 or both 16 bytes
    PK_W_OPTIONS = -2          # an options area that is not a multiple of 4 bytes up to 40
    PK_W_TOO_LONG = -3         # more than one IP packet's 16-bit length field can say
    PK_W_LAYOUT = -4           # the packet written does not locate (a bug, never ignored)


cdef struct PacketLayout:
    int version                # 4 or 6
    Py_ssize_t ip              # offset of the IP header
    Py_ssize_t src             # offset of the source address; the destination follows it
    Py_ssize_t addr_len        # 4 or 16
    Py_ssize_t tcp             # offset of the TCP header
    Py_ssize_t doff            # TCP header length, options included
    Py_ssize_t ip_end          # offset one past the IP packet, as its header says
    Py_ssize_t cap_end         # offset one past the bytes present (<= ip_end)


cdef inline int pk_locate(const uint8_t* d, Py_ssize_t n, Py_ssize_t ip, int version,
                          PacketLayout* f) noexcept nogil:
    """Find the TCP segment of the IP packet at ``ip`` in ``d[:n]`` (``version`` 0: from
    the header's version nibble). IPv4 options and IPv6 extension headers (hop-by-hop,
    routing, destination options, AH, an atomic fragment header) are skipped."""
    cdef Py_ssize_t ihl, total, tcp, size
    cdef int next_header
    # Every comparison below is written ``x > n - k``, never ``x + k > n``: ``ip`` comes from
    # the caller and may be anywhere up to n, and a sum near 2**63 would wrap (UB in C).
    if ip < 0 or ip > n:
        return PK_TRUNCATED
    if version == 0:
        if n <= ip:
            return PK_TRUNCATED
        version = d[ip] >> 4
    f.version, f.ip = version, ip
    if version == 4:
        if n - ip < 20:
            return PK_TRUNCATED
        ihl = (d[ip] & 0x0F) * 4
        total = be16(d + ip + 2)
        if d[ip] >> 4 != 4 or ihl < 20 or total < ihl:
            return PK_NOT_TCP
        if be16(d + ip + 6) & 0x3FFF:                          # MF flag or fragment offset
            return PK_FRAGMENT
        if d[ip + 9] != PK_IPPROTO_TCP:
            return PK_NOT_TCP
        f.src, f.addr_len = ip + 12, 4
        tcp, f.ip_end = ip + ihl, ip + total
    elif version == 6:
        if n - ip < 40:
            return PK_TRUNCATED
        next_header = d[ip + 6]
        f.ip_end = ip + 40 + be16(d + ip + 4)
        f.src, f.addr_len = ip + 8, 16
        tcp = ip + 40
        while next_header != PK_IPPROTO_TCP:
            if next_header == 0 or next_header == 43 or next_header == 60 or next_header == 51:
                if tcp > n - 2:
                    return PK_TRUNCATED
                size = (d[tcp + 1] + 2) * 4 if next_header == 51 else (d[tcp + 1] + 1) * 8
                next_header = d[tcp]
                tcp += size
            elif next_header == 44:                            # fragment header
                if tcp > n - 8:
                    return PK_TRUNCATED
                if be16(d + tcp + 2) & 0xFFF9:                 # offset or M flag
                    return PK_FRAGMENT
                next_header = d[tcp]
                tcp += 8
            else:
                return PK_NOT_TCP
    else:
        return PK_NOT_TCP
    if tcp > n - 20:
        return PK_TRUNCATED
    f.tcp = tcp
    f.doff = (d[tcp + 12] >> 4) * 4
    if f.doff < 20 or f.doff > f.ip_end - tcp:
        return PK_NOT_TCP
    if f.doff > n - tcp:
        return PK_TRUNCATED
    f.cap_end = n if n < f.ip_end else f.ip_end
    return PK_OK


cdef inline uint32_t pk_pseudo_sum(const uint8_t* src, const uint8_t* dst, Py_ssize_t addr_len,
                                   Py_ssize_t tcp_length) noexcept nogil:
    """The folded sum of the TCP pseudo-header: addresses, protocol 6 and the TCP length
    (the IPv6 form's 32-bit length and next header sum the same way)."""
    cdef uint32_t total = add16(sum16(src, addr_len, False), sum16(dst, addr_len, False))
    total = add16(total, PK_IPPROTO_TCP)
    total = add16(total, <uint32_t>((tcp_length >> 16) & 0xFFFF))
    return add16(total, <uint32_t>(tcp_length & 0xFFFF))


cdef inline uint16_t pk_tcp_checksum(const uint8_t* d, const PacketLayout* f) noexcept nogil:
    """The TCP checksum of the whole segment [tcp, ip_end) (present in full: cap_end ==
    ip_end), computed as if the checksum field were zero."""
    cdef Py_ssize_t length = f.ip_end - f.tcp
    cdef uint32_t total = pk_pseudo_sum(d + f.src, d + f.src + f.addr_len, f.addr_len, length)
    total = add16(total, sum16(d + f.tcp, 16, False))          # up to the checksum field
    total = add16(total, sum16(d + f.tcp + 18, length - 18, False))
    return <uint16_t>(~total & 0xFFFF)


cdef inline uint16_t pk_ipv4_header_checksum(const uint8_t* d, Py_ssize_t ip) noexcept nogil:
    """The IPv4 header checksum (RFC 791), computed as if its field were zero."""
    cdef Py_ssize_t ihl = (d[ip] & 0x0F) * 4
    cdef uint32_t total = add16(sum16(d + ip, 10, False), sum16(d + ip + 12, ihl - 12, False))
    return <uint16_t>(~total & 0xFFFF)


cdef inline Py_ssize_t pk_max_payload(Py_ssize_t addr_len, Py_ssize_t opt_len) noexcept nogil:
    """The largest TCP payload one packet can carry: IPv4's total length and IPv6's payload
    length are 16-bit fields (RFC 791, RFC 8200 §3; no jumbograms)."""
    return 0xFFFF - (20 if addr_len == 4 else 0) - 20 - opt_len


cdef inline Py_ssize_t pk_write_check(Py_ssize_t src_len, Py_ssize_t dst_len, Py_ssize_t opt_len,
                                      Py_ssize_t body_len) noexcept nogil:
    """0 when pk_write can write this packet, else the PK_W_ code of the first reason not:
    one family (the destination is copied with the source's length), a well-formed options
    area (its length sets the data offset) and a payload the IP length field can hold."""
    if src_len != dst_len or (src_len != 4 and src_len != 16):
        return PK_W_FAMILY
    if opt_len < 0 or opt_len > 40 or opt_len & 3:
        return PK_W_OPTIONS
    if body_len < 0 or body_len > pk_max_payload(src_len, opt_len):
        return PK_W_TOO_LONG
    return 0


cdef inline void _pk_headers(uint8_t* d, const uint8_t* src, Py_ssize_t addr_len,
                             const uint8_t* dst, uint16_t sport, uint16_t dport, uint32_t seq,
                             uint32_t ack, uint8_t flags, uint16_t window,
                             const uint8_t* options, Py_ssize_t opt_len, Py_ssize_t total,
                             uint8_t ttl, uint8_t tos, uint16_t ip_id, bint dont_fragment,
                             uint16_t urgent) noexcept nogil:
    """The IP header, the TCP header and its options of a packet of ``total`` bytes at ``d``
    (pk_write_check passed), both checksum fields zero."""
    cdef Py_ssize_t ip_len = 20 if addr_len == 4 else 40
    cdef uint8_t* t = d + ip_len
    if ip_len == 20:
        d[0], d[1] = 0x45, tos
        put16(d + 2, <uint16_t>total)
        put16(d + 4, ip_id)
        put16(d + 6, 0x4000 if dont_fragment else 0)
        d[8], d[9] = ttl, 6
        put16(d + 10, 0)
        memcpy(d + 12, src, 4)
        memcpy(d + 16, dst, 4)
    else:
        put32(d, (6u << 28) | (<uint32_t>tos << 20))
        put16(d + 4, <uint16_t>(total - 40))
        d[6], d[7] = 6, ttl
        memcpy(d + 8, src, 16)
        memcpy(d + 24, dst, 16)
    put16(t, sport)
    put16(t + 2, dport)
    put32(t + 4, seq)
    put32(t + 8, ack)
    t[12], t[13] = <uint8_t>(((20 + opt_len) // 4) << 4), flags
    put16(t + 14, window)
    put16(t + 16, 0)
    put16(t + 18, urgent)
    if opt_len:
        memcpy(t + 20, options, opt_len)


cdef inline Py_ssize_t pk_write(uint8_t* d, const uint8_t* src, Py_ssize_t src_len,
                                const uint8_t* dst, Py_ssize_t dst_len,
                                uint16_t sport, uint16_t dport,
                                uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                                const uint8_t* options, Py_ssize_t opt_len,
                                const uint8_t* body, Py_ssize_t body_len, uint8_t ttl,
                                uint8_t tos, uint16_t ip_id, bint dont_fragment,
                                uint16_t urgent) noexcept nogil:
    """Write an IPv4 (4-byte addresses) or IPv6 packet carrying one TCP segment at ``d`` (room
    for all of it is the caller's), both checksums included; return its length, or a
    negative PK_W_ code with nothing written (pk_write_check's), or PK_W_LAYOUT when the
    packet written does not parse back (the checksums are then not computed)."""
    cdef Py_ssize_t refused = pk_write_check(src_len, dst_len, opt_len, body_len)
    if refused:
        return refused
    cdef Py_ssize_t ip_len = 20 if src_len == 4 else 40
    cdef Py_ssize_t total = ip_len + 20 + opt_len + body_len
    cdef uint8_t* t = d + ip_len
    cdef PacketLayout f
    _pk_headers(d, src, src_len, dst, sport, dport, seq, ack, flags, window, options, opt_len,
                total, ttl, tos, ip_id, dont_fragment, urgent)
    if body_len:
        memcpy(t + 20 + opt_len, body, body_len)
    if pk_locate(d, total, 0, 0, &f) != PK_OK or f.ip_end != total:
        return PK_W_LAYOUT                 # never checksum over a layout that is not there
    put16(t + 16, pk_tcp_checksum(d, &f))
    if ip_len == 20:
        put16(d + 10, pk_ipv4_header_checksum(d, 0))
    return total


cdef inline Py_ssize_t pk_write_head(uint8_t* d, const uint8_t* src, Py_ssize_t src_len,
                                     const uint8_t* dst, Py_ssize_t dst_len,
                                     uint16_t sport, uint16_t dport,
                                     uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                                     const uint8_t* options, Py_ssize_t opt_len,
                                     const uint8_t* body, Py_ssize_t body_len, uint8_t ttl,
                                     uint8_t tos, uint16_t ip_id, bint dont_fragment,
                                     uint16_t urgent, bint partial) noexcept nogil:
    """pk_write's packet without its body: the headers (IP, TCP, options) at ``d``, their
    lengths and both checksums covering the ``body_len`` bytes at ``body`` that follow them
    on the wire (a writev's next vector), which are read and not copied; return the headers'
    length, or pk_write_check's refusal with nothing written. The TCP header's length is a
    multiple of 4, so the body's sum starts on a 16-bit word. ``partial``: the TCP checksum
    field holds the pseudo-header's folded sum only, for a device to complete over the TCP
    header and the body (Linux's CHECKSUM_PARTIAL; virtio's NEEDS_CSUM): nothing is summed."""
    cdef Py_ssize_t refused = pk_write_check(src_len, dst_len, opt_len, body_len)
    if refused:
        return refused
    cdef Py_ssize_t ip_len = 20 if src_len == 4 else 40
    cdef Py_ssize_t head = ip_len + 20 + opt_len
    cdef uint8_t* t = d + ip_len
    cdef uint32_t total
    _pk_headers(d, src, src_len, dst, sport, dport, seq, ack, flags, window, options, opt_len,
                head + body_len, ttl, tos, ip_id, dont_fragment, urgent)
    total = pk_pseudo_sum(src, dst, src_len, 20 + opt_len + body_len)
    if partial:
        put16(t + 16, <uint16_t>(total & 0xFFFF))
    else:
        total = add16(total, sum16(t, 16, False))              # up to the checksum field
        total = add16(total, sum16(t + 18, 2 + opt_len, False))
        total = add16(total, sum16(body, body_len, False))
        put16(t + 16, <uint16_t>(~total & 0xFFFF))
    if ip_len == 20:
        put16(d + 10, pk_ipv4_header_checksum(d, 0))
    return head

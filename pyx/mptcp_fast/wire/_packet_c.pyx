# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_packet_py.py: where the IP and TCP parts of a packet are,
building a packet into a buffer, and its TCP and IPv4 header checksums (the C is in
mf_packet.pxd, shared with the capture reader). Same functions, results and errors.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE,
                             PyBUF_WRITABLE)

from mf_bytes cimport be16, be32
from mf_check cimport int_arg
from mptcp_fast import _check                  # mf_check.pxd calls it on its slow path
from mf_csum cimport sum16, add16
from mf_packet cimport (PacketLayout, pk_locate, pk_tcp_checksum, pk_ipv4_header_checksum, pk_write,
                        pk_write_check, PK_OK, PK_TRUNCATED, PK_NOT_TCP, PK_FRAGMENT)
from mptcp_fast.wire._packet_common import Packet as _Packet, write_error   # one text

cdef object _tuple_new = tuple.__new__


cdef Py_ssize_t MAX_OFFSET = 0x7FFFFFFFFFFFFFFF


cdef int take(object data, Py_ssize_t offset, Py_ssize_t* length, Py_buffer* view,
              int flags) except -1:
    """Get the buffer and check [offset, offset + length) in it (length -1: to its end)."""
    if flags & PyBUF_WRITABLE:
        try:
            PyObject_GetBuffer(data, view, flags)
        except (TypeError, BufferError):
            raise TypeError(f"buffer must be a writable buffer, not {type(data).__name__}") from None
    else:
        PyObject_GetBuffer(data, view, flags)
    if not 0 <= offset <= view.len:
        PyBuffer_Release(view)
        raise ValueError(f"offset {offset} is outside the buffer ({view.len} bytes)")
    if length[0] < 0:
        length[0] = view.len - offset
    if length[0] > view.len - offset:          # overflow-safe: length may be near 2**63
        PyBuffer_Release(view)
        raise ValueError(f"offset {offset} + length {length[0]} runs past the buffer "
                         f"({view.len} bytes)")
    return 0


cdef int open_packet(object data, object offset_, object length_, Py_buffer* view,
                     PacketLayout* f, Py_ssize_t* offset, bint need_whole) except -1:
    """Check offset and length, get the buffer and locate the packet in it: its PK_ status
    (PK_TRUNCATED too when ``need_whole`` and the bytes end before the packet does). The
    buffer is held whatever the status; the caller releases it."""
    cdef Py_ssize_t length
    cdef int status
    offset[0] = int_arg(offset_, "offset", 0, MAX_OFFSET)     # offset first, as the pure twin
    length = -1 if length_ is None else int_arg(length_, "length", 0, MAX_OFFSET)
    take(data, offset[0], &length, view, PyBUF_SIMPLE)
    status = pk_locate(<const uint8_t*>view.buf, offset[0] + length, offset[0], 0, f)
    if status == PK_OK and need_whole and f.cap_end < f.ip_end:
        return PK_TRUNCATED
    return status


def parse(data, offset_, length_):
    """A Packet of offsets into ``data``, or the PK_ status when it is not a TCP packet."""
    cdef Py_buffer view
    cdef PacketLayout f
    cdef Py_ssize_t offset
    cdef const uint8_t* d
    cdef const uint8_t* t
    cdef int status = open_packet(data, offset_, length_, &view, &f, &offset, False)
    try:
        if status:
            return status
        d = <const uint8_t*>view.buf
        t = d + f.tcp
        return _tuple_new(_Packet, (
            f.version, offset, f.src, f.src + f.addr_len, f.addr_len, f.tcp, be16(t), be16(t + 2),
            be32(t + 4), be32(t + 8), t[13], be16(t + 14), be16(t + 16), be16(t + 18),
            f.tcp + 20, f.doff - 20, f.tcp + f.doff, f.ip_end - f.tcp - f.doff,
            f.cap_end - f.tcp - f.doff, f.cap_end < f.ip_end,
            d[offset + 8] if f.version == 4 else d[offset + 7]))
    finally:
        PyBuffer_Release(&view)


def tcp_checksum(data, offset_, length_):
    """The TCP checksum the packet should carry (its field read as zero), or -status."""
    cdef Py_buffer view
    cdef PacketLayout f
    cdef Py_ssize_t offset
    cdef int status = open_packet(data, offset_, length_, &view, &f, &offset, True)
    try:
        return -status if status else pk_tcp_checksum(<const uint8_t*>view.buf, &f)
    finally:
        PyBuffer_Release(&view)


def ipv4_header_checksum(data, offset_, length_):
    """The IPv4 header checksum the packet should carry, or -status (-PK_NOT_TCP for IPv6)."""
    cdef Py_buffer view
    cdef PacketLayout f
    cdef Py_ssize_t offset
    cdef int status = open_packet(data, offset_, length_, &view, &f, &offset, True)
    try:
        if status:
            return -status
        if f.version != 4:
            return -PK_NOT_TCP
        return pk_ipv4_header_checksum(<const uint8_t*>view.buf, offset)
    finally:
        PyBuffer_Release(&view)


def verify(data, offset_, length_):
    """(IPv4 header checksum good, or None for IPv6; TCP checksum good), or -status."""
    cdef Py_buffer view
    cdef PacketLayout f
    cdef Py_ssize_t offset
    cdef const uint8_t* d
    cdef bint tcp_ok
    cdef int status = open_packet(data, offset_, length_, &view, &f, &offset, True)
    try:
        if status:
            return -status
        d = <const uint8_t*>view.buf
        # the sum over everything, field included, is 0xFFFF: ~computed + field
        tcp_ok = add16(~pk_tcp_checksum(d, &f) & 0xFFFF, be16(d + f.tcp + 16)) == 0xFFFF
        if f.version != 4:
            return None, tcp_ok
        return sum16(d + offset, (d[offset] & 0x0F) * 4, False) == 0xFFFF, tcp_ok
    finally:
        PyBuffer_Release(&view)


def build_into(buffer, offset_, src, dst, sport_, dport_, seq_, ack_, flags_,
               window_, options, payload, ttl_, tos_, ip_id_, dont_fragment, urgent_):
    """Write an IPv4 (4-byte addresses) or IPv6 packet with one TCP segment at ``offset``,
    both checksums computed; return its length. The integers are checked here (mf_check: the
    pure twin's messages); so are the family, the options area and the payload size, with
    the pure twin's PacketError (pk_write copies the destination with the source's length,
    and the payload must fit the 16-bit IP length)."""
    cdef Py_ssize_t offset = int_arg(offset_, "offset", 0, MAX_OFFSET)
    cdef uint16_t sport = int_arg(sport_, "sport", 0, 0xFFFF)
    cdef uint16_t dport = int_arg(dport_, "dport", 0, 0xFFFF)
    cdef uint32_t seq = int_arg(seq_, "seq", 0, 0xFFFFFFFF)
    cdef uint32_t ack = int_arg(ack_, "ack", 0, 0xFFFFFFFF)
    cdef uint8_t flags = int_arg(flags_, "flags", 0, 0xFF)
    cdef uint16_t window = int_arg(window_, "window", 0, 0xFFFF)
    cdef uint8_t ttl = int_arg(ttl_, "ttl", 0, 0xFF)
    cdef uint8_t tos = int_arg(tos_, "tos", 0, 0xFF)
    cdef uint16_t ip_id = int_arg(ip_id_, "ip_id", 0, 0xFFFF)
    cdef uint16_t urgent = int_arg(urgent_, "urgent", 0, 0xFFFF)
    if type(dont_fragment) is not bool:
        dont_fragment = _check.flag("dont_fragment", dont_fragment)
    # bytes, never None: their pointers are read below (the pure twin's messages)
    cdef bytes src_b = src if type(src) is bytes else _check.exact_bytes("src", src)
    cdef bytes dst_b = dst if type(dst) is bytes else _check.exact_bytes("dst", dst)
    cdef bytes opt_b = options if type(options) is bytes else _check.exact_bytes("options", options)
    if type(payload) is not bytes:
        _check.byte_length("payload", payload)
    cdef Py_buffer out, body
    cdef Py_ssize_t opt_len = len(opt_b), total, written, refused
    cdef Py_ssize_t length = -1
    PyObject_GetBuffer(payload, &body, PyBUF_SIMPLE)
    try:
        refused = pk_write_check(len(src_b), len(dst_b), opt_len, body.len)
        if refused:
            raise write_error(refused, len(src_b), len(dst_b), opt_len, body.len)
        total = (20 if len(src_b) == 4 else 40) + 20 + opt_len + body.len
        take(buffer, offset, &length, &out, PyBUF_WRITABLE)
        try:
            if total > length:
                raise ValueError(f"the packet ({total} bytes) does not fit the buffer at offset "
                                 f"{offset} ({out.len} bytes)")
            written = pk_write(<uint8_t*>out.buf + offset, <const uint8_t*><const char*>src_b,
                               len(src_b), <const uint8_t*><const char*>dst_b, len(dst_b),
                               sport, dport, seq, ack, flags, window,
                               <const uint8_t*><const char*>opt_b, opt_len,
                               <const uint8_t*>body.buf, body.len, ttl, tos, ip_id,
                               dont_fragment, urgent)
            if written < 0:                   # a failed write is never ignored
                raise write_error(written, len(src_b), len(dst_b), opt_len, body.len)
        finally:
            PyBuffer_Release(&out)
    finally:
        PyBuffer_Release(&body)
    return total

# Big-endian reads and writes shared by the compiled modules (network byte order,
# RFC 1700). Callers check lengths first; these never bounds-check.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

# numpy's bool_ as a typed memoryview sees it: one byte, 0 or 1 (buffer format '?', which
# Cython matches with an unsigned byte). The compiled modules take numpy arrays through
# memoryviews only, so they need neither numpy's headers nor its C API to build.
ctypedef unsigned char bool8


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint64_t be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)

cdef inline void put16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xFF

cdef inline void put32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

cdef inline void put64(uint8_t* p, uint64_t v) noexcept nogil:
    put32(p, <uint32_t>(v >> 32))
    put32(p + 4, <uint32_t>v)


# _segment_common.immutable_buffer in C: bytes, or a flat read-only memoryview of bytes (one
# unsigned byte per item, format "B", contiguous). Its content can never change, so a view of
# it may be kept.
from cpython.buffer cimport PyBuffer_IsContiguous
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_GET_BUFFER


cdef inline bint immutable_buffer(object data) noexcept:
    cdef Py_buffer* b
    if PyBytes_CheckExact(data):
        return True
    if type(data) is not memoryview:
        return False
    b = PyMemoryView_GET_BUFFER(data)
    return <void*>b.obj != NULL and PyBytes_CheckExact(b.obj) and b.readonly \
        and b.itemsize == 1 and b.ndim == 1 and PyBuffer_IsContiguous(b, b'C') \
        and (b.format == NULL or (b.format[0] == b'B' and b.format[1] == 0))


# mptcp_fast._bytes.compact in C: ``piece`` itself, or a copy when it is a view holding less
# than half of the bytes object under it (a kept cut of a packet's view holds at most twice
# its size).
cdef inline object compact(object piece):
    cdef Py_buffer* b
    if type(piece) is not memoryview:
        return piece
    b = PyMemoryView_GET_BUFFER(piece)
    if <void*>b.obj != NULL and PyBytes_CheckExact(b.obj) \
            and 2 * b.len < PyBytes_GET_SIZE(b.obj):
        return bytes(piece)               # (rare: the common piece keeps its packet whole)
    return piece

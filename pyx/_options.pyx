# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/_pure/_options.py: the TCP/MPTCP option codec.

Same functions, results and errors as the pure module. Input is read through a
raw pointer; every read is preceded by an explicit length check (the checks
below are the bounds checks, so Cython's own are switched off). Option objects
are tuple subclasses from mptcp_fast.options, built without their validating
constructors: parsed values are in range by construction.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mf_bytes cimport be16, be32, be64, put16, put32, put64
from mf_mptcp cimport dss_length
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject

from mptcp_fast._bytes import as_bytes
from mptcp_fast.errors import OptionError, option_error

cdef extern from *:
    """
    /* An instance of a tuple subclass holding the first n of a..h (n <= 8).
       Before 3.14 a tuple's memory is just its items, so the type's allocator
       plus direct item stores is exact and skips tuple.__new__'s argument
       tuple. 3.14 added a cached hash to tuples: take the official route there. */
    static PyObject* mf_new(PyObject* cls, Py_ssize_t n, PyObject* a, PyObject* b, PyObject* c,
                            PyObject* d, PyObject* e, PyObject* f, PyObject* g, PyObject* h) {
        PyObject* items[8] = {a, b, c, d, e, f, g, h};
        Py_ssize_t i;
    #if PY_VERSION_HEX < 0x030E0000
        PyTypeObject* type = (PyTypeObject*)cls;
        PyObject* obj = type->tp_alloc(type, n);
        if (obj == NULL) return NULL;
        for (i = 0; i < n; i++) {
            Py_INCREF(items[i]);
            PyTuple_SET_ITEM(obj, i, items[i]);
        }
        return obj;
    #else
        PyObject *values, *args, *obj;
        values = PyTuple_New(n);
        if (values == NULL) return NULL;
        for (i = 0; i < n; i++) {
            Py_INCREF(items[i]);
            PyTuple_SET_ITEM(values, i, items[i]);
        }
        args = PyTuple_Pack(1, values);
        Py_DECREF(values);
        if (args == NULL) return NULL;
        obj = PyTuple_Type.tp_new((PyTypeObject*)cls, args, NULL);
        Py_DECREF(args);
        return obj;
    #endif
    }
    """
    object mf_new(object cls, Py_ssize_t n, object a, object b, object c, object d, object e,
                  object f, object g, object h)


# Build an option object of 0..8 fields (the classes' own constructors validate; these do not).
cdef inline object new0(object cls):
    return mf_new(cls, 0, None, None, None, None, None, None, None, None)

cdef inline object new1(object cls, object a):
    return mf_new(cls, 1, a, None, None, None, None, None, None, None)

cdef inline object new2(object cls, object a, object b):
    return mf_new(cls, 2, a, b, None, None, None, None, None, None)

cdef inline object new3(object cls, object a, object b, object c):
    return mf_new(cls, 3, a, b, c, None, None, None, None, None)

cdef inline object new4(object cls, object a, object b, object c, object d):
    return mf_new(cls, 4, a, b, c, d, None, None, None, None)

cdef inline object new6(object cls, object a, object b, object c, object d, object e, object f):
    return mf_new(cls, 6, a, b, c, d, e, f, None, None)

cdef inline object new8(object cls, object a, object b, object c, object d, object e, object f,
                        object g, object h):
    return mf_new(cls, 8, a, b, c, d, e, f, g, h)


# The option classes, received from mptcp_fast.options by bind_types().
cdef object _T = None
cdef object Eol_, Nop_, EOL_, NOP_, Mss_, WindowScale_, SackPermitted_, Sack_, Timestamps_
cdef object UnknownTcpOption_, MalformedOption_, MpCapable_, MpJoinSyn_, MpJoinSynAck_, MpJoinAck_
cdef object Dss_, AddAddr_, AddAddrV0_, AddAddr2_, RemoveAddr_, MpPrio_, MpFail_, MpFastclose_
cdef object MpTcpRst_, MpExperimental_, UnknownMptcpOption_, check_segment_
cdef tuple _RESET_REASONS = ()
cdef dict _TCP_NAMES = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS", 30: "MPTCP"}


def bind_types(api_module):
    """Receive the option classes (defined once, in mptcp_fast.options)."""
    global _T, Eol_, Nop_, EOL_, NOP_, Mss_, WindowScale_, SackPermitted_, Sack_, Timestamps_
    global UnknownTcpOption_, MalformedOption_, MpCapable_, MpJoinSyn_, MpJoinSynAck_, MpJoinAck_
    global Dss_, AddAddr_, AddAddrV0_, AddAddr2_, RemoveAddr_, MpPrio_, MpFail_, MpFastclose_
    global MpTcpRst_, MpExperimental_, UnknownMptcpOption_, check_segment_, _RESET_REASONS
    _T = api_module
    Eol_, Nop_, EOL_, NOP_ = api_module.Eol, api_module.Nop, api_module.EOL, api_module.NOP
    Mss_, WindowScale_ = api_module.Mss, api_module.WindowScale
    SackPermitted_, Sack_, Timestamps_ = api_module.SackPermitted, api_module.Sack, api_module.Timestamps
    UnknownTcpOption_, MalformedOption_ = api_module.UnknownTcpOption, api_module.MalformedOption
    MpCapable_, MpJoinSyn_ = api_module.MpCapable, api_module.MpJoinSyn
    MpJoinSynAck_, MpJoinAck_ = api_module.MpJoinSynAck, api_module.MpJoinAck
    Dss_, AddAddr_, AddAddrV0_, AddAddr2_ = (api_module.Dss, api_module.AddAddr,
                                             api_module.AddAddrV0, api_module.AddAddr2)
    RemoveAddr_, MpPrio_, MpFail_ = api_module.RemoveAddr, api_module.MpPrio, api_module.MpFail
    MpFastclose_, MpTcpRst_ = api_module.MpFastclose, api_module.MpTcpRst
    MpExperimental_, UnknownMptcpOption_ = api_module.MpExperimental, api_module.UnknownMptcpOption
    check_segment_ = api_module.check_segment
    _RESET_REASONS = tuple(api_module._RESET_REASONS)


# ------------------------------------------------------------------------------------------------
# helpers (big-endian reads and writes come from mf_bytes.pxd)

cdef inline bytes take(const uint8_t* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


# ------------------------------------------------------------------------------------------------
# decoding

cdef object decode_mptcp(const uint8_t* d, Py_ssize_t pos, Py_ssize_t length):
    """One MPTCP option (kind 30) of ``length`` bytes at ``pos``; the TLV is already checked."""
    cdef const uint8_t* p = d + pos
    cdef int subtype, nibble, flags, expected
    cdef bint has_csum
    cdef Py_ssize_t o
    cdef object data_ack, dsn, ssn, dll, csum, sender, receiver, data_len
    if length < 3:
        raise option_error("MPTCP", "length", pos + 1, ">= 3 (a subtype octet)", length)
    subtype = p[2] >> 4
    nibble = p[2] & 0x0F

    if subtype == 0x2:  # DSS, RFC 8684 §3.3 — most frequent first
        if length < 4:
            raise option_error("DSS", "length", pos + 1, ">= 4 (a flags octet)", length)
        flags = p[3] & 0x1F
        expected = dss_length(flags)
        if length == expected:
            has_csum = False
        elif flags & 0x04 and length == expected + 2:
            has_csum = True
        else:
            want = f"{expected} or {expected + 2}" if flags & 0x04 else str(expected)
            raise option_error("DSS", "length", pos + 1, f"{want} for flags 0x{flags:02x}", length)
        o = 4
        data_ack = dsn = ssn = dll = csum = None
        if flags & 0x01:
            if flags & 0x02:
                data_ack = be64(p + o)
                o += 8
            else:
                data_ack = be32(p + o)
                o += 4
        if flags & 0x04:
            if flags & 0x08:
                dsn = be64(p + o)
                o += 8
            else:
                dsn = be32(p + o)
                o += 4
            ssn = be32(p + o)
            dll = be16(p + o + 4)
            if has_csum:
                csum = be16(p + o + 6)
        return new8(Dss_, data_ack, (flags & 0x02) != 0, dsn, (flags & 0x08) != 0, ssn, dll, csum,
                    (flags & 0x10) != 0)

    if subtype == 0x0:  # MP_CAPABLE, RFC 8684 §3.1 / RFC 6824 §3.1
        if nibble == 0:
            if length != 12 and length != 20:
                raise option_error("MP_CAPABLE", "length", pos + 1, "12 or 20 for version 0", length)
        elif length != 4 and length != 12 and length != 20 and length != 22 and length != 24:
            raise option_error("MP_CAPABLE", "length", pos + 1, "4, 12, 20, 22 or 24", length)
        sender = be64(p + 4) if length >= 12 else None
        receiver = be64(p + 12) if length >= 20 else None
        data_len = be16(p + 20) if length >= 22 else None
        csum = be16(p + 22) if length == 24 else None
        return new6(MpCapable_, nibble, p[3], sender, receiver, data_len, csum)

    if subtype == 0x1:  # MP_JOIN, RFC 8684 §3.2
        if length == 12:
            return new4(MpJoinSyn_, p[3], be32(p + 4), be32(p + 8), (nibble & 1) != 0)
        if length == 16:
            return new4(MpJoinSynAck_, p[3], take(p + 4, 8), be32(p + 12), (nibble & 1) != 0)
        if length == 24:
            return new1(MpJoinAck_, take(p + 4, 20))
        raise option_error("MP_JOIN", "length", pos + 1, "12, 16 or 24", length)

    if subtype == 0x3:
        return decode_add_addr(d, pos, length, nibble)

    if subtype == 0x4:  # REMOVE_ADDR, RFC 8684 §3.4.2
        if length < 4:
            raise option_error("REMOVE_ADDR", "length", pos + 1, ">= 4 (at least one id)", length)
        return new1(RemoveAddr_, tuple(take(p + 3, length - 3)))

    if subtype == 0x5:  # MP_PRIO, RFC 8684 §3.3.8; length 4 is RFC 6824's form with an address id
        if length == 3:
            return new2(MpPrio_, (nibble & 1) != 0, None)
        if length == 4:
            return new2(MpPrio_, (nibble & 1) != 0, p[3])
        raise option_error("MP_PRIO", "length", pos + 1, "3 or 4", length)

    if subtype == 0x6 or subtype == 0x7:  # MP_FAIL §3.7, MP_FASTCLOSE §3.5
        if length != 12:
            raise option_error("MP_FAIL" if subtype == 0x6 else "MP_FASTCLOSE", "length", pos + 1,
                               "12", length)
        return new1(MpFail_ if subtype == 0x6 else MpFastclose_, be64(p + 4))

    if subtype == 0x8:  # MP_TCPRST, RFC 8684 §3.6
        if length != 4:
            raise option_error("MP_TCPRST", "length", pos + 1, "4", length)
        reason = _RESET_REASONS[p[3]] if p[3] < len(_RESET_REASONS) else p[3]
        return new2(MpTcpRst_, reason, (nibble & 1) != 0)

    if subtype == 0xF:
        return new2(MpExperimental_, nibble, take(p + 3, length - 3))
    return new3(UnknownMptcpOption_, subtype, nibble, take(p + 3, length - 3))


cdef object decode_add_addr(const uint8_t* d, Py_ssize_t pos, Py_ssize_t length, int nibble):
    """ADD_ADDR: nibble 4/6 is IPVer (RFC 6824, or ADD_ADDR2 with an HMAC); else RFC 8684 E flag."""
    cdef const uint8_t* p = d + pos
    cdef Py_ssize_t body, rest, alen
    cdef int echo
    cdef object port
    if length < 4:
        raise option_error("ADD_ADDR", "length", pos + 1, ">= 4", length)
    body = length - 4
    if nibble == 4 or nibble == 6:
        alen = 4 if nibble == 4 else 16
        rest = body - alen
        if rest == 0 or rest == 2:
            port = be16(p + 4 + alen) if rest == 2 else None
            return new3(AddAddrV0_, p[3], take(p + 4, alen), port)
        if rest == 8 or rest == 10:
            port = be16(p + 4 + alen) if rest == 10 else None
            return new4(AddAddr2_, p[3], take(p + 4, alen), port, take(p + length - 8, 8))
        want = "8/10 or 16/18" if nibble == 4 else "20/22 or 28/30"
        raise option_error("ADD_ADDR", "length", pos + 1, f"{want} for IPVer {nibble}", length)
    echo = nibble & 1
    rest = body - (0 if echo else 8)
    if rest == 4 or rest == 6:
        alen = 4
    elif rest == 16 or rest == 18:
        alen = 16
    else:
        want = "8, 10, 20 or 22 with E=1" if echo else "16, 18, 28 or 30 with E=0"
        raise option_error("ADD_ADDR", "length", pos + 1, want, length)
    port = be16(p + 4 + alen) if rest - alen == 2 else None
    return new4(AddAddr_, p[3], take(p + 4, alen), port,
                None if echo else take(p + length - 8, 8))


cdef object decode_tlv(const uint8_t* d, Py_ssize_t pos, Py_ssize_t length):
    """One option of ``length`` (>= 2, inside d) at ``pos`` whose kind is not EOL or NOP."""
    cdef const uint8_t* p = d + pos
    cdef int kind = p[0]
    cdef Py_ssize_t o
    if kind == 30:
        return decode_mptcp(d, pos, length)
    if kind == 8:
        if length != 10:
            raise option_error("TS", "length", pos + 1, "10", length)
        return new2(Timestamps_, be32(p + 2), be32(p + 6))
    if kind == 2:
        if length != 4:
            raise option_error("MSS", "length", pos + 1, "4", length)
        return new1(Mss_, be16(p + 2))
    if kind == 3:
        if length != 3:
            raise option_error("WS", "length", pos + 1, "3", length)
        return new1(WindowScale_, p[2])
    if kind == 4:
        if length != 2:
            raise option_error("SACK_PERM", "length", pos + 1, "2", length)
        return new0(SackPermitted_)
    if kind == 5:
        if length != 10 and length != 18 and length != 26 and length != 34:
            raise option_error("SACK", "length", pos + 1, "10, 18, 26 or 34", length)
        blocks = []
        for o in range(2, length, 8):
            blocks.append((be32(p + o), be32(p + o + 4)))
        return new1(Sack_, tuple(blocks))
    return new2(UnknownTcpOption_, kind, take(p + 2, length - 2))


def parse_option(data, segment=None):
    """Decode exactly one TCP option (MPTCP or not) from ``data``.

    Raises OptionError naming the option, field and offset for bad input.
    With ``segment`` (an options.Segment), also applies the Linux acceptance
    rules for that segment (docs/kernel-behaviour.md §1).
    """
    cdef bytes buf = <bytes>data if type(data) is bytes else as_bytes(data)
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef int kind
    if n == 0:
        raise option_error("TCP_OPTION", "kind", 0, "one option", "no bytes")
    kind = d[0]
    if kind <= 1:
        if n != 1:
            raise option_error("EOL" if kind == 0 else "NOP", "length", 1, "1 byte", f"{n} bytes")
        return EOL_ if kind == 0 else NOP_
    if n < 2:
        raise option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", 1, "a length octet",
                           "end of data")
    if d[1] != n:
        raise option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", 1, f"the {n} bytes given", d[1])
    opt = decode_tlv(d, 0, n)
    if segment is not None:
        check_segment_(opt, segment, 0)
    return opt


def parse_tcp_options(data, segment=None, keep_malformed=False):
    """Decode a whole TCP options area (the bytes after the 20-byte TCP header).

    EOL ends the area (it is included in the result). A malformed option
    raises OptionError; with ``keep_malformed`` it comes back as a
    MalformedOption and decoding goes on, the way Linux ignores one bad option.
    A broken TLV structure (length < 2, or past the end) ends decoding.
    """
    cdef bytes buf = <bytes>data if type(data) is bytes else as_bytes(data)
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos = 0, length
    cdef int kind
    cdef list out = []
    while pos < n:
        kind = d[pos]
        if kind == 0:
            out.append(EOL_)
            break
        if kind == 1:
            out.append(NOP_)
            pos += 1
            continue
        if pos + 1 >= n:
            err = option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", pos + 1,
                               "a length octet", "end of data")
        else:
            length = d[pos + 1]
            if length < 2 or pos + length > n:
                err = option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", pos + 1,
                                   f"2..{n - pos} (inside the options area)", length)
            else:
                try:
                    opt = decode_tlv(d, pos, length)
                    if segment is not None:
                        check_segment_(opt, segment, pos)
                except OptionError as exc:
                    if not keep_malformed:
                        raise
                    opt = new3(MalformedOption_, kind, take(d + pos, length), str(exc))
                out.append(opt)
                pos += length
                continue
        if not keep_malformed:
            raise err
        out.append(new3(MalformedOption_, kind, take(d + pos, n - pos), str(err)))
        break
    return out


# ------------------------------------------------------------------------------------------------
# encoding (the classes validated every field when they were built)

cdef enum:
    SCRATCH = 320   # > the longest option (255) plus alignment

cdef inline Py_ssize_t put_bytes(uint8_t* out, Py_ssize_t at, bytes b) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if at + n > 255:                 # an option's length is one octet (RFC 9293 §3.2)
        raise option_error("TCP option", "length", None, "at most 255 bytes", at + n)
    memcpy(out + at, PyBytes_AS_STRING(b), n)
    return at + n


cdef Py_ssize_t encode_into(object opt, uint8_t* out) except -1:
    """Write one option at ``out`` (room for SCRATCH bytes); return its length."""
    cdef type cls = type(opt)
    cdef Py_ssize_t n, i
    cdef tuple t = <tuple>opt
    cdef int flags
    if cls is Dss_:
        flags = ((t[0] is not None) | ((1 if t[1] else 0) << 1) | ((t[2] is not None) << 2)
                 | ((1 if t[3] else 0) << 3) | ((1 if t[7] else 0) << 4))
        out[0] = 30
        out[2] = 0x20
        out[3] = flags
        n = 4
        if t[0] is not None:
            if t[1]:
                put64(out + n, t[0])
                n += 8
            else:
                put32(out + n, t[0])
                n += 4
        if t[2] is not None:
            if t[3]:
                put64(out + n, t[2])
                n += 8
            else:
                put32(out + n, t[2])
                n += 4
            put32(out + n, t[4])
            put16(out + n + 4, t[5])
            n += 6
            if t[6] is not None:
                put16(out + n, t[6])
                n += 2
        out[1] = n
        return n
    if cls is Timestamps_:
        out[0] = 8
        out[1] = 10
        put32(out + 2, t[0])
        put32(out + 6, t[1])
        return 10
    if cls is Nop_:
        out[0] = 1
        return 1
    if cls is Eol_:
        out[0] = 0
        return 1
    if cls is MpCapable_:
        out[0] = 30
        out[2] = <uint8_t>t[0]
        out[3] = <uint8_t>t[1]
        n = 4
        if t[2] is not None:
            put64(out + 4, t[2])
            n = 12
            if t[3] is not None:
                put64(out + 12, t[3])
                n = 20
                if t[4] is not None:
                    put16(out + 20, t[4])
                    n = 22
                    if t[5] is not None:
                        put16(out + 22, t[5])
                        n = 24
        out[1] = n
        return n
    if cls is MpJoinSyn_:
        out[0] = 30
        out[1] = 12
        out[2] = 0x10 | (1 if t[3] else 0)
        out[3] = <uint8_t>t[0]
        put32(out + 4, t[1])
        put32(out + 8, t[2])
        return 12
    if cls is MpJoinSynAck_:
        out[0] = 30
        out[1] = 16
        out[2] = 0x10 | (1 if t[3] else 0)
        out[3] = <uint8_t>t[0]
        put_bytes(out, 4, t[1])
        put32(out + 12, t[2])
        return 16
    if cls is MpJoinAck_:
        out[0] = 30
        out[1] = 24
        out[2] = 0x10
        out[3] = 0
        return put_bytes(out, 4, t[0])
    if cls is AddAddr_ or cls is AddAddrV0_ or cls is AddAddr2_:
        out[0] = 30
        if cls is AddAddr_:
            out[2] = 0x30 | (t[3] is None)
        else:
            out[2] = 0x30 | (4 if len(<bytes>t[1]) == 4 else 6)
        out[3] = <uint8_t>t[0]
        n = put_bytes(out, 4, t[1])
        if t[2] is not None:
            put16(out + n, t[2])
            n += 2
        if cls is not AddAddrV0_ and t[3] is not None:
            n = put_bytes(out, n, t[3])
        out[1] = n
        return n
    if cls is RemoveAddr_:
        out[0] = 30
        out[2] = 0x40
        n = 3
        for i in t[0]:
            if n >= 255:
                raise option_error("REMOVE_ADDR", "address_ids", None, "at most 252 ids", len(t[0]))
            out[n] = <uint8_t>i
            n += 1
        out[1] = n
        return n
    if cls is MpPrio_:
        out[0] = 30
        out[2] = 0x50 | (1 if t[0] else 0)
        if t[1] is None:
            out[1] = 3
            return 3
        out[1] = 4
        out[3] = <uint8_t>t[1]
        return 4
    if cls is MpFail_ or cls is MpFastclose_:
        out[0] = 30
        out[1] = 12
        out[2] = 0x60 if cls is MpFail_ else 0x70
        out[3] = 0
        put64(out + 4, t[0])
        return 12
    if cls is MpTcpRst_:
        out[0] = 30
        out[1] = 4
        out[2] = 0x80 | (1 if t[1] else 0)
        out[3] = <uint8_t>int(t[0])
        return 4
    if cls is MpExperimental_:
        out[0] = 30
        out[2] = 0xF0 | <uint8_t>t[0]
        n = put_bytes(out, 3, t[1])
        out[1] = n
        return n
    if cls is UnknownMptcpOption_:
        out[0] = 30
        out[2] = (<uint8_t>t[0] << 4) | <uint8_t>t[1]
        n = put_bytes(out, 3, t[2])
        out[1] = n
        return n
    if cls is Mss_:
        out[0] = 2
        out[1] = 4
        put16(out + 2, t[0])
        return 4
    if cls is WindowScale_:
        out[0] = 3
        out[1] = 3
        out[2] = <uint8_t>t[0]
        return 3
    if cls is SackPermitted_:
        out[0] = 4
        out[1] = 2
        return 2
    if cls is Sack_:
        out[0] = 5
        n = 2
        for left, right in t[0]:
            if n + 8 > 255:
                raise option_error("SACK", "blocks", None, "at most 31 blocks", len(t[0]))
            put32(out + n, left)
            put32(out + n + 4, right)
            n += 8
        out[1] = n
        return n
    if cls is UnknownTcpOption_:
        out[0] = <uint8_t>t[0]
        n = put_bytes(out, 2, t[1])
        out[1] = n
        return n
    if cls is MalformedOption_:
        return put_bytes(out, 0, t[1])
    raise TypeError(f"not an option object: {cls.__name__}")


def encode_option(opt):
    """The bytes of one option object, Kind and Length included."""
    cdef uint8_t out[SCRATCH]
    cdef Py_ssize_t n = encode_into(opt, out)
    return PyBytes_FromStringAndSize(<char*>out, n)


def encode_tcp_options(options, align=True):
    """Encode a TCP options area from option objects, in the order given.

    With ``align`` (the default) each option is padded with NOPs to a 32-bit
    boundary the way Linux lays them out: before TS, SACK, SACK_PERM and WS,
    after the others. The whole area is padded to a multiple of 4 bytes (with
    NOPs, or zeros after an EOL). More than 40 bytes raises OptionError.
    """
    cdef uint8_t area[40]
    cdef uint8_t one[SCRATCH]
    cdef Py_ssize_t total = 0, n, pad, i
    cdef bint ended = False, before
    cdef bint do_align = bool(align)
    cdef type cls
    for opt in options:
        n = encode_into(opt, one)
        cls = type(opt)
        pad = (-n) & 3 if (do_align and n > 1) else 0
        before = cls is Timestamps_ or cls is Sack_ or cls is SackPermitted_ or cls is WindowScale_
        if total + n + pad <= 40:
            if pad and before:
                for i in range(pad):
                    area[total + i] = 1
                memcpy(area + total + pad, one, n)
            else:
                memcpy(area + total, one, n)
                for i in range(pad):
                    area[total + n + i] = 1
        total += n + pad
        ended = cls is Eol_
    pad = (-total) & 3
    if total + pad > 40:
        raise option_error("TCP options", "length", None, "at most 40 bytes", total + pad)
    for i in range(pad):
        area[total + i] = 0 if ended else 1
    return PyBytes_FromStringAndSize(<char*>area, total + pad)

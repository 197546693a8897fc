# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/wire/_options_py.py: the TCP/MPTCP option codec.

Same functions, results and errors as the pure module. Input is read through a
raw pointer; every read is preceded by an explicit length check (the checks
below are the bounds checks, so Cython's own are switched off). Option objects
are tuple subclasses from mptcp_fast.wire.options, built without their validating
constructors: parsed values are in range by construction.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mf_bytes cimport be16, be32, be64, put16, put32, put64
from mf_tcpopt cimport (DssFields, dss_decode, dss_encode, dss_length, ts_decode, ts_encode,
                       sack_decode, sack_encode, opt_step, OPT_EOL, OPT_NOP, OPT_TLV,
                       OPT_NO_LENGTH, SACK_MAX_BLOCKS)
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from mf_check cimport int_arg
from mptcp_fast import _check                  # mf_check.pxd calls it on its slow path
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE

from mptcp_fast._bytes import as_bytes
from mptcp_fast.errors import OptionError, option_error
from mptcp_fast.wire import _options_common                # the option classes, defined once
from mptcp_fast.wire._options_common import (FIELD_COUNTS, field_count_error,   # one rule, one text
                                             field_type_error)

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


# The option classes (mptcp_fast.wire._options_common), taken by _take_types() at import.
cdef object _T = None
cdef object Eol_, Nop_, EOL_, NOP_, Mss_, WindowScale_, SackPermitted_, Sack_, Timestamps_
cdef object UnknownTcpOption_, MalformedOption_, MpCapable_, MpJoinSyn_, MpJoinSynAck_, MpJoinAck_
cdef object Dss_, AddAddr_, AddAddrV0_, AddAddr2_, RemoveAddr_, MpPrio_, MpFail_, MpFastclose_
cdef object MpTcpRst_, MpExperimental_, UnknownMptcpOption_, check_segment_
cdef tuple _RESET_REASONS = ()
cdef dict _FIELD_COUNTS = {}          # option class -> len(_fields), set by _take_types()
cdef dict _TCP_NAMES = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS", 30: "MPTCP"}


def _take_types(api_module):
    """Take the option classes (defined once, in mptcp_fast.wire._options_common): called once,
    at the end of this module."""
    global _T, Eol_, Nop_, EOL_, NOP_, Mss_, WindowScale_, SackPermitted_, Sack_, Timestamps_
    global UnknownTcpOption_, MalformedOption_, MpCapable_, MpJoinSyn_, MpJoinSynAck_, MpJoinAck_
    global Dss_, AddAddr_, AddAddrV0_, AddAddr2_, RemoveAddr_, MpPrio_, MpFail_, MpFastclose_
    global MpTcpRst_, MpExperimental_, UnknownMptcpOption_, check_segment_, _RESET_REASONS
    global _FIELD_COUNTS
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
    bind_field_positions(api_module)
    _FIELD_COUNTS = dict(FIELD_COUNTS)


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
    cdef DssFields dss
    cdef object sender, receiver, data_len
    if length < 3:
        raise option_error("MPTCP", "length", pos + 1, ">= 3 (a subtype octet)", length)
    subtype = p[2] >> 4
    nibble = p[2] & 0x0F

    if subtype == 0x2:  # DSS, RFC 8684 §3.3 — most frequent first (mf_tcpopt.dss_decode)
        if length < 4:
            raise option_error("DSS", "length", pos + 1, ">= 4 (a flags octet)", length)
        if dss_decode(p, length, &dss) < 0:
            flags = p[3] & 0x1F
            expected = dss_length(flags)
            want = f"{expected} or {expected + 2}" if flags & 0x04 else str(expected)
            raise option_error("DSS", "length", pos + 1, f"{want} for flags 0x{flags:02x}", length)
        flags = dss.flags
        return new8(Dss_, dss.data_ack if flags & 0x01 else None, (flags & 0x02) != 0,
                    dss.dsn if flags & 0x04 else None, (flags & 0x08) != 0,
                    dss.subflow_seq if flags & 0x04 else None,
                    dss.data_len if flags & 0x04 else None,
                    dss.checksum if dss.has_checksum else None, (flags & 0x10) != 0)

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
    cdef uint32_t tsval, tsecr
    cdef uint32_t edges[2 * SACK_MAX_BLOCKS]
    cdef int blocks, i
    if kind == 30:
        return decode_mptcp(d, pos, length)
    if kind == 8:
        if ts_decode(p, length, &tsval, &tsecr) < 0:
            raise option_error("TS", "length", pos + 1, "10", length)
        return new2(Timestamps_, tsval, tsecr)
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
        blocks = sack_decode(p, length, edges)
        if blocks < 0:
            raise option_error("SACK", "length", pos + 1, "10, 18, 26 or 34", length)
        return new1(Sack_, tuple([(edges[2 * i], edges[2 * i + 1]) for i in range(blocks)]))
    return new2(UnknownTcpOption_, kind, take(p + 2, length - 2))


cdef Py_ssize_t MAX_OFFSET = 0x7FFFFFFFFFFFFFFF


cdef int area_of(object data, object offset, object length, Py_buffer* view,
                 const uint8_t** d, Py_ssize_t* n) except -1:
    """The bytes [offset, offset + length) of any buffer, in place (bytes, bytearray,
    memoryview, numpy arrays: no copy); length None is to the end."""
    cdef Py_ssize_t start = 0 if offset is None else int_arg(offset, "offset", 0, MAX_OFFSET)
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except Exception:
        as_bytes(data)                       # the pure twin's TypeError for what is no buffer
        raise
    if start > view.len:
        PyBuffer_Release(view)
        raise ValueError(f"offset {start} is outside the buffer ({view.len} bytes)")
    n[0] = view.len - start if length is None else int_arg(length, "length", 0, MAX_OFFSET)
    if n[0] > view.len - start:               # overflow-safe: length may be near 2**63
        PyBuffer_Release(view)
        raise ValueError(f"offset {start} + length {n[0]} runs past the buffer ({view.len} bytes)")
    d[0] = <const uint8_t*>view.buf + start
    return 0


def parse_option(data, segment=None, offset=None, length=None):
    """Decode exactly one TCP option (MPTCP or not) from ``data`` (or from
    ``data[offset:offset + length]``, read in place).

    Raises OptionError naming the option, field and offset (counted from ``offset``) for
    bad input. With ``segment`` (an options.Segment), also applies the Linux acceptance
    rules for that segment (docs/kernel-behaviour.md §1).
    """
    cdef Py_buffer view
    cdef const uint8_t* d
    cdef Py_ssize_t n
    cdef int kind
    area_of(data, offset, length, &view, &d, &n)
    try:
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
            raise option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", 1,
                               f"the {n} bytes given", d[1])
        opt = decode_tlv(d, 0, n)
    finally:
        PyBuffer_Release(&view)
    if segment is not None:
        check_segment_(opt, segment, 0)
    return opt


def parse_tcp_options(data, segment=None, keep_malformed=False, offset=None, length=None):
    """Decode a whole TCP options area (the bytes after the 20-byte TCP header), or the
    area ``data[offset:offset + length]`` read in place (a packet's, say).

    EOL ends the area (it is included in the result). A malformed option
    raises OptionError; with ``keep_malformed`` it comes back as a
    MalformedOption and decoding goes on, the way Linux ignores one bad option.
    A broken TLV structure (length < 2, or past the end) ends decoding.
    """
    cdef Py_buffer view
    cdef const uint8_t* d
    cdef Py_ssize_t n, pos = 0, size
    cdef int kind, step
    cdef list out = []
    area_of(data, offset, length, &view, &d, &n)
    try:
        while pos < n:
            step = opt_step(d, n, pos, &size)
            if step == OPT_EOL:
                out.append(EOL_)
                break
            if step == OPT_NOP:
                out.append(NOP_)
                pos += 1
                continue
            kind = d[pos]
            if step == OPT_TLV:
                try:
                    opt = decode_tlv(d, pos, size)
                    if segment is not None:
                        check_segment_(opt, segment, pos)
                except OptionError as exc:
                    if not keep_malformed:
                        raise
                    opt = new3(MalformedOption_, kind, take(d + pos, size), str(exc))
                out.append(opt)
                pos += size
                continue
            if step == OPT_NO_LENGTH:
                err = option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", pos + 1,
                                   "a length octet", "end of data")
            else:
                err = option_error(_TCP_NAMES.get(kind, "TCP_OPTION"), "length", pos + 1,
                                   f"2..{n - pos} (inside the options area)", size)
            if not keep_malformed:
                raise err
            out.append(new3(MalformedOption_, kind, take(d + pos, n - pos), str(err)))
            break
    finally:
        PyBuffer_Release(&view)
    return out


# ------------------------------------------------------------------------------------------------
# encoding (the classes validated every field when they were built)

cdef enum:
    SCRATCH = 320   # > the longest option (255) plus alignment

cdef inline Py_ssize_t put_bytes(uint8_t* out, Py_ssize_t at, object b, type cls,
                                 str field) except -1:
    """Copy a bytes field at ``at``. Only bytes: a tuple forged with None (or anything else)
    there would be read through a pointer of the wrong object (the pure twin's error)."""
    if type(b) is not bytes:
        raise field_type_error(cls, field, b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n > 255 - at:                 # an option's length is one octet (RFC 9293 §3.2)
        raise option_error("TCP option", "length", None, "at most 255 bytes", at + n)
    memcpy(out + at, PyBytes_AS_STRING(b), n)
    return at + n


# Field positions inside the option tuples, taken from each class's ``_fields`` when the API
# module takes its classes (_take_types): the encoders below read fields by these names, so a
# class that reorders or renames a field cannot be misread.
cdef Py_ssize_t F_MSS, F_WS_SHIFT, F_SACK_BLOCKS, F_TSVAL, F_TSECR, F_UNKNOWN_KIND, F_UNKNOWN_DATA
cdef Py_ssize_t F_MALFORMED_DATA, F_MPC_VERSION, F_MPC_FLAGS, F_MPC_SENDER, F_MPC_RECEIVER
cdef Py_ssize_t F_MPC_DATA_LEN, F_MPC_CHECKSUM, F_JOIN_ID, F_JOIN_TOKEN, F_JOIN_NONCE
cdef Py_ssize_t F_JOIN_BACKUP, F_JSA_ID, F_JSA_HMAC, F_JSA_NONCE, F_JSA_BACKUP, F_JACK_HMAC
cdef Py_ssize_t F_DSS_ACK, F_DSS_ACK64, F_DSS_DSN, F_DSS_DSN64, F_DSS_SSN, F_DSS_LEN
cdef Py_ssize_t F_DSS_CSUM, F_DSS_FIN, F_ADDR_ID, F_ADDR_ADDRESS, F_ADDR_PORT, F_ADDR_HMAC
cdef Py_ssize_t F_RM_IDS, F_PRIO_BACKUP, F_PRIO_ID, F_FAIL_DSN, F_FC_KEY, F_RST_REASON
cdef Py_ssize_t F_RST_TRANSIENT, F_EXP_NIBBLE, F_EXP_DATA, F_UMP_SUBTYPE, F_UMP_NIBBLE, F_UMP_DATA


cdef void bind_field_positions(api) except *:
    global F_MSS, F_WS_SHIFT, F_SACK_BLOCKS, F_TSVAL, F_TSECR, F_UNKNOWN_KIND, F_UNKNOWN_DATA
    global F_MALFORMED_DATA, F_MPC_VERSION, F_MPC_FLAGS, F_MPC_SENDER, F_MPC_RECEIVER
    global F_MPC_DATA_LEN, F_MPC_CHECKSUM, F_JOIN_ID, F_JOIN_TOKEN, F_JOIN_NONCE
    global F_JOIN_BACKUP, F_JSA_ID, F_JSA_HMAC, F_JSA_NONCE, F_JSA_BACKUP, F_JACK_HMAC
    global F_DSS_ACK, F_DSS_ACK64, F_DSS_DSN, F_DSS_DSN64, F_DSS_SSN, F_DSS_LEN
    global F_DSS_CSUM, F_DSS_FIN, F_ADDR_ID, F_ADDR_ADDRESS, F_ADDR_PORT, F_ADDR_HMAC
    global F_RM_IDS, F_PRIO_BACKUP, F_PRIO_ID, F_FAIL_DSN, F_FC_KEY, F_RST_REASON
    global F_RST_TRANSIENT, F_EXP_NIBBLE, F_EXP_DATA, F_UMP_SUBTYPE, F_UMP_NIBBLE, F_UMP_DATA
    F_MSS = api.Mss._fields.index("mss")
    F_WS_SHIFT = api.WindowScale._fields.index("shift")
    F_SACK_BLOCKS = api.Sack._fields.index("blocks")
    F_TSVAL, F_TSECR = api.Timestamps._fields.index("tsval"), api.Timestamps._fields.index("tsecr")
    F_UNKNOWN_KIND = api.UnknownTcpOption._fields.index("kind")
    F_UNKNOWN_DATA = api.UnknownTcpOption._fields.index("data")
    F_MALFORMED_DATA = api.MalformedOption._fields.index("data")
    mpc = api.MpCapable._fields
    F_MPC_VERSION, F_MPC_FLAGS = mpc.index("version"), mpc.index("flags")
    F_MPC_SENDER, F_MPC_RECEIVER = mpc.index("sender_key"), mpc.index("receiver_key")
    F_MPC_DATA_LEN, F_MPC_CHECKSUM = mpc.index("data_len"), mpc.index("checksum")
    join = api.MpJoinSyn._fields
    F_JOIN_ID, F_JOIN_TOKEN = join.index("address_id"), join.index("token")
    F_JOIN_NONCE, F_JOIN_BACKUP = join.index("nonce"), join.index("backup")
    jsa = api.MpJoinSynAck._fields
    F_JSA_ID, F_JSA_HMAC = jsa.index("address_id"), jsa.index("hmac")
    F_JSA_NONCE, F_JSA_BACKUP = jsa.index("nonce"), jsa.index("backup")
    F_JACK_HMAC = api.MpJoinAck._fields.index("hmac")
    dss = api.Dss._fields
    F_DSS_ACK, F_DSS_ACK64 = dss.index("data_ack"), dss.index("ack64")
    F_DSS_DSN, F_DSS_DSN64 = dss.index("dsn"), dss.index("dsn64")
    F_DSS_SSN, F_DSS_LEN = dss.index("subflow_seq"), dss.index("data_len")
    F_DSS_CSUM, F_DSS_FIN = dss.index("checksum"), dss.index("data_fin")
    for cls in (api.AddAddr, api.AddAddrV0, api.AddAddr2):   # one layout for the three
        if cls._fields[:3] != ("address_id", "address", "port"):
            raise TypeError(f"{cls.__name__} fields are {cls._fields}")
    F_ADDR_ID, F_ADDR_ADDRESS, F_ADDR_PORT = 0, 1, 2
    F_ADDR_HMAC = api.AddAddr._fields.index("hmac")
    if api.AddAddr2._fields.index("hmac") != F_ADDR_HMAC:
        raise TypeError("AddAddr and AddAddr2 must keep the HMAC in the same field")
    F_RM_IDS = api.RemoveAddr._fields.index("address_ids")
    F_PRIO_BACKUP = api.MpPrio._fields.index("backup")
    F_PRIO_ID = api.MpPrio._fields.index("address_id")
    F_FAIL_DSN = api.MpFail._fields.index("dsn")
    F_FC_KEY = api.MpFastclose._fields.index("receiver_key")
    F_RST_REASON = api.MpTcpRst._fields.index("reason")
    F_RST_TRANSIENT = api.MpTcpRst._fields.index("transient")
    F_EXP_NIBBLE = api.MpExperimental._fields.index("nibble")
    F_EXP_DATA = api.MpExperimental._fields.index("data")
    F_UMP_SUBTYPE = api.UnknownMptcpOption._fields.index("subtype")
    F_UMP_NIBBLE = api.UnknownMptcpOption._fields.index("nibble")
    F_UMP_DATA = api.UnknownMptcpOption._fields.index("data")


cdef Py_ssize_t enc_dss(tuple t, uint8_t* out) except -1:
    cdef DssFields f
    f.flags = (((t[F_DSS_ACK] is not None) | ((1 if t[F_DSS_ACK64] else 0) << 1))
               | ((t[F_DSS_DSN] is not None) << 2) | ((1 if t[F_DSS_DSN64] else 0) << 3)
               | ((1 if t[F_DSS_FIN] else 0) << 4))
    f.data_ack = t[F_DSS_ACK] if f.flags & 0x01 else 0
    f.dsn = t[F_DSS_DSN] if f.flags & 0x04 else 0
    f.subflow_seq = t[F_DSS_SSN] if f.flags & 0x04 else 0
    f.data_len = t[F_DSS_LEN] if f.flags & 0x04 else 0
    f.has_checksum = f.flags & 0x04 and t[F_DSS_CSUM] is not None
    f.checksum = t[F_DSS_CSUM] if f.has_checksum else 0
    return dss_encode(out, &f)


cdef Py_ssize_t enc_mp_capable(tuple t, uint8_t* out) except -1:
    cdef Py_ssize_t n = 4
    out[0] = 30
    out[2] = <uint8_t>t[F_MPC_VERSION]
    out[3] = <uint8_t>t[F_MPC_FLAGS]
    if t[F_MPC_SENDER] is not None:                # each field needs the ones before it
        put64(out + 4, t[F_MPC_SENDER])
        n = 12
        if t[F_MPC_RECEIVER] is not None:
            put64(out + 12, t[F_MPC_RECEIVER])
            n = 20
            if t[F_MPC_DATA_LEN] is not None:
                put16(out + 20, t[F_MPC_DATA_LEN])
                n = 22
                if t[F_MPC_CHECKSUM] is not None:
                    put16(out + 22, t[F_MPC_CHECKSUM])
                    n = 24
    out[1] = n
    return n


cdef Py_ssize_t enc_mp_join(type cls, tuple t, uint8_t* out) except -1:
    out[0] = 30
    if cls is MpJoinSyn_:
        out[1] = 12
        out[2] = 0x10 | (1 if t[F_JOIN_BACKUP] else 0)
        out[3] = <uint8_t>t[F_JOIN_ID]
        put32(out + 4, t[F_JOIN_TOKEN])
        put32(out + 8, t[F_JOIN_NONCE])
        return 12
    if cls is MpJoinSynAck_:
        out[1] = 16
        out[2] = 0x10 | (1 if t[F_JSA_BACKUP] else 0)
        out[3] = <uint8_t>t[F_JSA_ID]
        put_bytes(out, 4, t[F_JSA_HMAC], cls, "hmac")
        put32(out + 12, t[F_JSA_NONCE])
        return 16
    out[1] = 24                                    # MpJoinAck
    out[2] = 0x10
    out[3] = 0
    return put_bytes(out, 4, t[F_JACK_HMAC], cls, "hmac")


cdef Py_ssize_t enc_add_addr(type cls, tuple t, uint8_t* out) except -1:
    """ADD_ADDR (v1: E flag), or v0 / ADD_ADDR2 (IPVer nibble); address, port, HMAC."""
    cdef Py_ssize_t n
    out[0] = 30
    if cls is AddAddr_:
        out[2] = 0x30 | (t[F_ADDR_HMAC] is None)
    else:
        if type(t[F_ADDR_ADDRESS]) is not bytes:     # its length is read first here
            raise field_type_error(cls, "address", t[F_ADDR_ADDRESS])
        out[2] = 0x30 | (4 if len(t[F_ADDR_ADDRESS]) == 4 else 6)
    out[3] = <uint8_t>t[F_ADDR_ID]
    n = put_bytes(out, 4, t[F_ADDR_ADDRESS], cls, "address")
    if t[F_ADDR_PORT] is not None:
        put16(out + n, t[F_ADDR_PORT])
        n += 2
    if cls is not AddAddrV0_ and t[F_ADDR_HMAC] is not None:
        n = put_bytes(out, n, t[F_ADDR_HMAC], cls, "hmac")
    out[1] = n
    return n


cdef Py_ssize_t enc_remove_addr(tuple t, uint8_t* out) except -1:
    cdef Py_ssize_t n = 3
    out[0] = 30
    out[2] = 0x40
    for i in t[F_RM_IDS]:
        if n >= 255:
            raise option_error("REMOVE_ADDR", "address_ids", None, "at most 252 ids",
                               len(t[F_RM_IDS]))
        out[n] = <uint8_t>i
        n += 1
    out[1] = n
    return n


cdef Py_ssize_t enc_mptcp_other(type cls, tuple t, uint8_t* out) except -1:
    """MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST, MP_EXPERIMENTAL and unknown subtypes."""
    cdef Py_ssize_t n
    out[0] = 30
    if cls is MpPrio_:
        out[2] = 0x50 | (1 if t[F_PRIO_BACKUP] else 0)
        if t[F_PRIO_ID] is None:
            out[1] = 3
            return 3
        out[1] = 4
        out[3] = <uint8_t>t[F_PRIO_ID]
        return 4
    if cls is MpFail_ or cls is MpFastclose_:
        out[1] = 12
        out[2] = 0x60 if cls is MpFail_ else 0x70
        out[3] = 0
        put64(out + 4, t[F_FAIL_DSN] if cls is MpFail_ else t[F_FC_KEY])
        return 12
    if cls is MpTcpRst_:
        out[1] = 4
        out[2] = 0x80 | (1 if t[F_RST_TRANSIENT] else 0)
        out[3] = <uint8_t>int(t[F_RST_REASON])
        return 4
    if cls is MpExperimental_:
        out[2] = 0xF0 | <uint8_t>t[F_EXP_NIBBLE]
        n = put_bytes(out, 3, t[F_EXP_DATA], cls, "data")
    else:                                          # UnknownMptcpOption
        out[2] = (<uint8_t>t[F_UMP_SUBTYPE] << 4) | <uint8_t>t[F_UMP_NIBBLE]
        n = put_bytes(out, 3, t[F_UMP_DATA], cls, "data")
    out[1] = n
    return n


cdef Py_ssize_t enc_tcp(type cls, tuple t, uint8_t* out) except -1:
    """The plain TCP options (RFC 9293 §3.2, RFC 7323, RFC 2018) and raw ones."""
    cdef uint32_t edges[2 * SACK_MAX_BLOCKS]
    cdef int blocks = 0
    cdef Py_ssize_t n
    if cls is Mss_:
        out[0], out[1] = 2, 4
        put16(out + 2, t[F_MSS])
        return 4
    if cls is WindowScale_:
        out[0], out[1], out[2] = 3, 3, <uint8_t>t[F_WS_SHIFT]
        return 3
    if cls is SackPermitted_:
        out[0], out[1] = 4, 2
        return 2
    if cls is Sack_:                               # the class allows 1 to 4 blocks
        if not 1 <= len(t[F_SACK_BLOCKS]) <= SACK_MAX_BLOCKS:     # a tuple forged past it
            raise option_error("SACK", "blocks", None, "1 to 4 blocks", len(t[F_SACK_BLOCKS]))
        for left, right in t[F_SACK_BLOCKS]:
            edges[2 * blocks], edges[2 * blocks + 1] = left, right
            blocks += 1
        return sack_encode(out, edges, blocks)
    if cls is UnknownTcpOption_:
        out[0] = <uint8_t>t[F_UNKNOWN_KIND]
        n = put_bytes(out, 2, t[F_UNKNOWN_DATA], cls, "data")
        out[1] = n
        return n
    if cls is MalformedOption_:
        return put_bytes(out, 0, t[F_MALFORMED_DATA], cls, "data")
    raise TypeError(f"not an option object: {cls.__name__}")


cdef Py_ssize_t encode_into(object opt, uint8_t* out) except -1:
    """Write one option at ``out`` (room for SCRATCH bytes); return its length. The most
    frequent options come first."""
    cdef type cls = type(opt)
    cdef tuple t = <tuple>opt
    cdef object fields = _FIELD_COUNTS.get(cls)
    # The encoders index the tuple without bounds checks: one built with tuple.__new__ and
    # too few items (``tuple.__new__(Dss, (1,))``) would be read past its end.
    if fields is not None and PyTuple_GET_SIZE(t) != <Py_ssize_t>fields:
        raise field_count_error(opt)
    if cls is Dss_:
        return enc_dss(t, out)
    if cls is Timestamps_:
        return ts_encode(out, t[F_TSVAL], t[F_TSECR])
    if cls is Nop_:
        out[0] = 1
        return 1
    if cls is Eol_:
        out[0] = 0
        return 1
    if cls is MpCapable_:
        return enc_mp_capable(t, out)
    if cls is MpJoinSyn_ or cls is MpJoinSynAck_ or cls is MpJoinAck_:
        return enc_mp_join(cls, t, out)
    if cls is AddAddr_ or cls is AddAddrV0_ or cls is AddAddr2_:
        return enc_add_addr(cls, t, out)
    if cls is RemoveAddr_:
        return enc_remove_addr(t, out)
    if (cls is MpPrio_ or cls is MpFail_ or cls is MpFastclose_ or cls is MpTcpRst_
            or cls is MpExperimental_ or cls is UnknownMptcpOption_):
        return enc_mptcp_other(cls, t, out)
    return enc_tcp(cls, t, out)


def encode_option(opt):
    """The bytes of one option object, Kind and Length included."""
    cdef uint8_t out[SCRATCH]
    cdef Py_ssize_t n = encode_into(opt, out)
    return PyBytes_FromStringAndSize(<char*>out, n)


cdef int room_in(object buffer, object offset, Py_ssize_t size, Py_buffer* view,
                 uint8_t** out) except -1:
    """A writable ``buffer`` with ``size`` bytes of room at ``offset``."""
    cdef Py_ssize_t start = int_arg(offset, "offset", 0, MAX_OFFSET)
    try:
        PyObject_GetBuffer(buffer, view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    except (TypeError, BufferError):
        raise TypeError(f"buffer must be a writable buffer, not {type(buffer).__name__}") from None
    if start > view.len - size:               # overflow-safe: offset may be near 2**63
        PyBuffer_Release(view)
        raise ValueError(f"{size} bytes do not fit the buffer at offset {start} ({view.len} bytes)")
    out[0] = <uint8_t*>view.buf + start
    return 0


def encode_option_into(opt, buffer, offset=0):
    """Write one option into the writable ``buffer`` at ``offset``; return its length."""
    cdef uint8_t one[SCRATCH]
    cdef Py_ssize_t n = encode_into(opt, one)
    cdef Py_buffer view
    cdef uint8_t* out
    room_in(buffer, offset, n, &view, &out)
    memcpy(out, one, n)
    PyBuffer_Release(&view)
    return n


cdef Py_ssize_t build_area(object options, bint align, uint8_t* area) except -1:
    """Lay the options out in ``area`` (40 bytes); return the area's length."""
    cdef uint8_t one[SCRATCH]
    cdef Py_ssize_t total = 0, n, pad, i
    cdef bint ended = False, before
    cdef type cls
    for opt in options:
        n = encode_into(opt, one)
        cls = type(opt)
        pad = (-n) & 3 if (align and n > 1) else 0
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
    return total + pad


def encode_tcp_options(options, align=True):
    """Encode a TCP options area from option objects, in the order given.

    With ``align`` (the default) each option is padded with NOPs to a 32-bit
    boundary the way Linux lays them out: before TS, SACK, SACK_PERM and WS,
    after the others. The whole area is padded to a multiple of 4 bytes (with
    NOPs, or zeros after an EOL). More than 40 bytes raises OptionError.
    """
    cdef uint8_t area[40]
    cdef Py_ssize_t n = build_area(options, bool(align), area)
    return PyBytes_FromStringAndSize(<char*>area, n)


def encode_tcp_options_into(options, buffer, offset=0, align=True):
    """``encode_tcp_options`` written into the writable ``buffer`` at ``offset``; returns
    the area's length (a multiple of 4, at most 40)."""
    cdef uint8_t area[40]
    cdef Py_ssize_t n = build_area(options, bool(align), area)
    cdef Py_buffer view
    cdef uint8_t* out
    room_in(buffer, offset, n, &view, &out)
    memcpy(out, area, n)
    PyBuffer_Release(&view)
    return n


_take_types(_options_common)

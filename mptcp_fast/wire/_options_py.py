"""Pure-Python twin of pyx/mptcp_fast/wire/_options_c.pyx: the TCP/MPTCP option codec.

Same functions, same results and same errors as the compiled module. The
option classes come from mptcp_fast.wire._options_common (defined once, exported by
mptcp_fast.wire.options); objects are built with tuple.__new__ (no constructor validation:
parsed values are in range by construction).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import _check
from .._bytes import as_bytes
from ..errors import OptionError, option_error
from . import _options_common
from ._options_common import FIELD_COUNTS as _FIELD_COUNTS, field_count_error, field_type_error

_new = tuple.__new__
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_U32U32 = struct.Struct(">II").unpack_from
_U32H = struct.Struct(">IH").unpack_from

_TCP_NAMES = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS", 30: "MPTCP"}
_SUBTYPE_NAMES = ("MP_CAPABLE", "MP_JOIN", "DSS", "ADD_ADDR", "REMOVE_ADDR", "MP_PRIO", "MP_FAIL",
                  "MP_FASTCLOSE", "MP_TCPRST", "MPTCP_UNKNOWN", "MPTCP_UNKNOWN", "MPTCP_UNKNOWN",
                  "MPTCP_UNKNOWN", "MPTCP_UNKNOWN", "MPTCP_UNKNOWN", "MP_EXPERIMENTAL")
_T = _options_common     # the option classes: _T.Mss, ...

if TYPE_CHECKING:
    from .._typing import BytesLike
    from ._options_common import Option, ResetReason, Segment

# set once by _take_types()
_ENCODERS: dict[type[Option], Callable[[Any], bytes]]    # the encoder of each option class
_PAD_BEFORE: tuple[type[Option], ...]                    # the classes padded before, not after
_RESET_REASONS: tuple[ResetReason, ...]


def _take_types(api_module) -> None:
    """The encoders and tables that follow the option classes (called once, below)."""
    global _ENCODERS, _PAD_BEFORE, _RESET_REASONS
    _RESET_REASONS = api_module._RESET_REASONS
    _PAD_BEFORE = (api_module.Timestamps, api_module.Sack, api_module.SackPermitted,
                   api_module.WindowScale)
    # Split by option; every field is read by its name, so the encoders follow the classes.
    _ENCODERS = {
        api_module.Eol: lambda o: b"\x00",
        api_module.Nop: lambda o: b"\x01",
        api_module.Mss: lambda o: bytes((2, 4)) + o.mss.to_bytes(2, "big"),
        api_module.WindowScale: lambda o: bytes((3, 3, o.shift)),
        api_module.SackPermitted: lambda o: b"\x04\x02",
        api_module.Sack: _encode_sack,
        api_module.Timestamps: lambda o: struct.pack(">BBII", 8, 10, o.tsval, o.tsecr),
        api_module.UnknownTcpOption: lambda o: (bytes((o.kind, len(_b(o, "data", o.data)) + 2))
                                                + o.data),
        api_module.MalformedOption: lambda o: _b(o, "data", o.data),
        api_module.MpCapable: _encode_mp_capable,
        api_module.MpJoinSyn: lambda o: struct.pack(">BBBBII", 30, 12, 0x10 | o.backup, o.address_id,
                                                    o.token, o.nonce),
        api_module.MpJoinSynAck: lambda o: (bytes((30, 16, 0x10 | o.backup, o.address_id))
                                            + _b(o, "hmac", o.hmac) + o.nonce.to_bytes(4, "big")),
        api_module.MpJoinAck: lambda o: bytes((30, 24, 0x10, 0)) + _b(o, "hmac", o.hmac),
        api_module.Dss: _encode_dss,
        api_module.AddAddr: lambda o: _encode_address(o, 1 if o.hmac is None else 0, o.hmac),
        api_module.AddAddrV0: lambda o: _encode_address(o, 4 if len(_packed(o)) == 4 else 6, None),
        api_module.AddAddr2: lambda o: _encode_address(o, 4 if len(_packed(o)) == 4 else 6,
                                                       o.hmac),
        api_module.RemoveAddr: lambda o: bytes((30, 3 + len(o.address_ids), 0x40)) + bytes(o.address_ids),
        api_module.MpPrio: lambda o: (bytes((30, 3, 0x50 | o.backup)) if o.address_id is None
                                      else bytes((30, 4, 0x50 | o.backup, o.address_id))),
        api_module.MpFail: lambda o: bytes((30, 12, 0x60, 0)) + o.dsn.to_bytes(8, "big"),
        api_module.MpFastclose: lambda o: bytes((30, 12, 0x70, 0)) + o.receiver_key.to_bytes(8, "big"),
        api_module.MpTcpRst: lambda o: bytes((30, 4, 0x80 | o.transient, int(o.reason))),
        api_module.MpExperimental: lambda o: (bytes((30, 3 + len(_b(o, "data", o.data)),
                                                     0xF0 | o.nibble)) + o.data),
        api_module.UnknownMptcpOption: lambda o: (bytes((30, 3 + len(_b(o, "data", o.data)),
                                                         (o.subtype << 4) | o.nibble)) + o.data),
    }


# ------------------------------------------------------------------------------------------------
# decoding

def dss_length(flags: int) -> int:
    """DSS option length without checksum for flags A a M m (RFC 8684 §3.3, Figure 9)."""
    length = 4
    if flags & 0x01:
        length += 8 if flags & 0x02 else 4
    if flags & 0x04:
        length += 14 if flags & 0x08 else 10      # DSN, subflow seq 4, data-level length 2
    return length


OPT_EOL, OPT_NOP, OPT_TLV, OPT_NO_LENGTH, OPT_BAD_LENGTH = 0, 1, 2, 3, 4


def opt_step(d, n: int, pos: int):
    """(status, length) of what starts at ``pos`` (< n) in an options area: OPT_EOL, OPT_NOP,
    OPT_TLV, or a broken TLV structure that ends the walk (length: the octet read, or -1).
    The one walk of the pure twins (the codec and the capture columns); pyx/mf_tcpopt.pxd."""
    kind = d[pos]
    if kind == 0:
        return OPT_EOL, -1
    if kind == 1:
        return OPT_NOP, -1
    if pos + 1 >= n:
        return OPT_NO_LENGTH, -1
    length = d[pos + 1]
    if length < 2 or pos + length > n:
        return OPT_BAD_LENGTH, length
    return OPT_TLV, length


def dss_fields(d, pos: int, length: int):
    """(flags, data_ack, dsn, subflow_seq, data_len, checksum) of the DSS at ``pos`` (fields
    absent by its flags are None), or None when its length does not fit its flags. The one
    DSS decoder of the pure twins; pyx/mf_tcpopt.pxd dss_decode."""
    if length < 4:
        return None
    flags = d[pos + 3] & 0x1F
    expected = dss_length(flags)
    if length == expected:
        has_csum = False
    elif flags & 0x04 and length == expected + 2:
        has_csum = True
    else:
        return None
    o = pos + 4
    data_ack = dsn = ssn = dll = csum = None
    if flags & 0x01:
        if flags & 0x02:
            data_ack = _U64(d, o)[0]
            o += 8
        else:
            data_ack = _U32(d, o)[0]
            o += 4
    if flags & 0x04:
        if flags & 0x08:
            dsn = _U64(d, o)[0]
            o += 8
        else:
            dsn = _U32(d, o)[0]
            o += 4
        ssn, dll = _U32H(d, o)
        if has_csum:
            csum = _U16(d, o + 6)[0]
    return flags, data_ack, dsn, ssn, dll, csum


def _decode_mptcp(d: bytes, pos: int, length: int):
    """One MPTCP option (kind 30) of ``length`` bytes at ``pos``; the TLV is already checked."""
    T = _T
    if length < 3:
        raise option_error("MPTCP", "length", pos + 1, ">= 3 (a subtype octet)", length)
    subtype = d[pos + 2] >> 4
    nibble = d[pos + 2] & 0x0F

    if subtype == 0x2:  # DSS, RFC 8684 §3.3 — most frequent first (dss_fields)
        if length < 4:
            raise option_error("DSS", "length", pos + 1, ">= 4 (a flags octet)", length)
        fields = dss_fields(d, pos, length)
        if fields is None:
            flags = d[pos + 3] & 0x1F
            expected = dss_length(flags)
            want = f"{expected} or {expected + 2}" if flags & 0x04 else str(expected)
            raise option_error("DSS", "length", pos + 1, f"{want} for flags 0x{flags:02x}", length)
        flags, data_ack, dsn, ssn, dll, csum = fields
        return _new(T.Dss, (data_ack, bool(flags & 0x02), dsn, bool(flags & 0x08), ssn, dll, csum,
                            bool(flags & 0x10)))

    if subtype == 0x0:  # MP_CAPABLE, RFC 8684 §3.1 / RFC 6824 §3.1
        if nibble == 0:
            if length not in (12, 20):
                raise option_error("MP_CAPABLE", "length", pos + 1, "12 or 20 for version 0", length)
        elif length not in (4, 12, 20, 22, 24):
            raise option_error("MP_CAPABLE", "length", pos + 1, "4, 12, 20, 22 or 24", length)
        sender = _U64(d, pos + 4)[0] if length >= 12 else None
        receiver = _U64(d, pos + 12)[0] if length >= 20 else None
        data_len = _U16(d, pos + 20)[0] if length >= 22 else None
        csum = _U16(d, pos + 22)[0] if length == 24 else None
        return _new(T.MpCapable, (nibble, d[pos + 3], sender, receiver, data_len, csum))

    if subtype == 0x1:  # MP_JOIN, RFC 8684 §3.2
        if length == 12:
            token, nonce = _U32U32(d, pos + 4)
            return _new(T.MpJoinSyn, (d[pos + 3], token, nonce, bool(nibble & 1)))
        if length == 16:
            return _new(T.MpJoinSynAck, (d[pos + 3], d[pos + 4:pos + 12], _U32(d, pos + 12)[0],
                                         bool(nibble & 1)))
        if length == 24:
            return _new(T.MpJoinAck, (d[pos + 4:pos + 24],))
        raise option_error("MP_JOIN", "length", pos + 1, "12, 16 or 24", length)

    if subtype == 0x3:  # ADD_ADDR family
        return _decode_add_addr(d, pos, length, nibble)

    if subtype == 0x4:  # REMOVE_ADDR, RFC 8684 §3.4.2
        if length < 4:
            raise option_error("REMOVE_ADDR", "length", pos + 1, ">= 4 (at least one id)", length)
        return _new(T.RemoveAddr, (tuple(d[pos + 3:pos + length]),))

    if subtype == 0x5:  # MP_PRIO, RFC 8684 §3.3.8; length 4 is RFC 6824's form with an address id
        if length == 3:
            return _new(T.MpPrio, (bool(nibble & 1), None))
        if length == 4:
            return _new(T.MpPrio, (bool(nibble & 1), d[pos + 3]))
        raise option_error("MP_PRIO", "length", pos + 1, "3 or 4", length)

    if subtype == 0x6 or subtype == 0x7:  # MP_FAIL §3.7, MP_FASTCLOSE §3.5
        name = "MP_FAIL" if subtype == 0x6 else "MP_FASTCLOSE"
        if length != 12:
            raise option_error(name, "length", pos + 1, "12", length)
        return _new(T.MpFail if subtype == 0x6 else T.MpFastclose, (_U64(d, pos + 4)[0],))

    if subtype == 0x8:  # MP_TCPRST, RFC 8684 §3.6
        if length != 4:
            raise option_error("MP_TCPRST", "length", pos + 1, "4", length)
        reason = d[pos + 3]
        return _new(T.MpTcpRst, (_RESET_REASONS[reason] if reason < len(_RESET_REASONS) else reason,
                                 bool(nibble & 1)))

    if subtype == 0xF:
        return _new(T.MpExperimental, (nibble, d[pos + 3:pos + length]))
    return _new(T.UnknownMptcpOption, (subtype, nibble, d[pos + 3:pos + length]))


def _decode_add_addr(d: bytes, pos: int, length: int, nibble: int):
    """ADD_ADDR: nibble 4/6 is IPVer (RFC 6824, or ADD_ADDR2 with an HMAC); else RFC 8684 E flag."""
    T = _T
    if length < 4:
        raise option_error("ADD_ADDR", "length", pos + 1, ">= 4", length)
    address_id = d[pos + 3]
    body = length - 4
    if nibble == 4 or nibble == 6:
        alen = 4 if nibble == 4 else 16
        rest = body - alen
        if rest == 0 or rest == 2:
            port = _U16(d, pos + 4 + alen)[0] if rest == 2 else None
            return _new(T.AddAddrV0, (address_id, d[pos + 4:pos + 4 + alen], port))
        if rest == 8 or rest == 10:
            port = _U16(d, pos + 4 + alen)[0] if rest == 10 else None
            return _new(T.AddAddr2, (address_id, d[pos + 4:pos + 4 + alen], port,
                                     d[pos + length - 8:pos + length]))
        want = "8/10 or 16/18" if nibble == 4 else "20/22 or 28/30"
        raise option_error("ADD_ADDR", "length", pos + 1, f"{want} for IPVer {nibble}", length)
    echo = nibble & 1
    hmac_len = 0 if echo else 8
    rest = body - hmac_len
    if rest == 4 or rest == 6:
        alen = 4
    elif rest == 16 or rest == 18:
        alen = 16
    else:
        want = "8, 10, 20 or 22 with E=1" if echo else "16, 18, 28 or 30 with E=0"
        raise option_error("ADD_ADDR", "length", pos + 1, want, length)
    port = _U16(d, pos + 4 + alen)[0] if rest - alen == 2 else None
    hmac = None if echo else d[pos + length - 8:pos + length]
    return _new(T.AddAddr, (address_id, d[pos + 4:pos + 4 + alen], port, hmac))


def _decode_tlv(d: bytes, pos: int, length: int):
    """One option of ``length`` (>= 2, inside d) at ``pos`` whose kind is not EOL or NOP."""
    T = _T
    kind = d[pos]
    if kind == 30:
        return _decode_mptcp(d, pos, length)
    if kind == 8:
        if length != 10:
            raise option_error("TS", "length", pos + 1, "10", length)
        return _new(T.Timestamps, _U32U32(d, pos + 2))
    if kind == 2:
        if length != 4:
            raise option_error("MSS", "length", pos + 1, "4", length)
        return _new(T.Mss, (_U16(d, pos + 2)[0],))
    if kind == 3:
        if length != 3:
            raise option_error("WS", "length", pos + 1, "3", length)
        return _new(T.WindowScale, (d[pos + 2],))
    if kind == 4:
        if length != 2:
            raise option_error("SACK_PERM", "length", pos + 1, "2", length)
        return _new(T.SackPermitted, ())
    if kind == 5:
        if length not in (10, 18, 26, 34):
            raise option_error("SACK", "length", pos + 1, "10, 18, 26 or 34", length)
        return _new(T.Sack, (tuple(_U32U32(d, o) for o in range(pos + 2, pos + length, 8)),))
    return _new(T.UnknownTcpOption, (kind, d[pos + 2:pos + length]))


_MAX_OFFSET = (1 << 63) - 1


def _area(data, offset, length) -> bytes:
    """The bytes [offset, offset + length) of any buffer (length None: to the end)."""
    d = as_bytes(data)
    if offset is None and length is None:
        return d
    start = 0 if offset is None else _check.in_range("offset", offset, 0, _MAX_OFFSET)
    if start > len(d):
        raise ValueError(f"offset {start} is outside the buffer ({len(d)} bytes)")
    n = len(d) - start if length is None else _check.in_range("length", length, 0, _MAX_OFFSET)
    if start + n > len(d):
        raise ValueError(f"offset {start} + length {n} runs past the buffer ({len(d)} bytes)")
    return d[start:start + n]


def parse_option(data: BytesLike, segment: Segment | None = None, offset: int | None = None,
                 length: int | None = None) -> Option:
    """Decode exactly one TCP option (MPTCP or not) from ``data`` (or from
    ``data[offset:offset + length]``).

    Raises OptionError naming the option, field and offset (counted from ``offset``) for
    bad input. With ``segment`` (an options.Segment), also applies the Linux acceptance
    rules for that segment (docs/kernel-behaviour.md §1).
    """
    d = _area(data, offset, length)
    n = len(d)
    if n == 0:
        raise option_error("TCP_OPTION", "kind", 0, "one option", "no bytes")
    kind = d[0]
    if kind <= 1:
        if n != 1:
            raise option_error(_T.Eol.name if kind == 0 else "NOP", "length", 1, "1 byte", f"{n} bytes")
        return _T.EOL if kind == 0 else _T.NOP
    name = _TCP_NAMES.get(kind, "TCP_OPTION")
    if n < 2:
        raise option_error(name, "length", 1, "a length octet", "end of data")
    if d[1] != n:
        raise option_error(name, "length", 1, f"the {n} bytes given", d[1])
    opt = _decode_tlv(d, 0, n)
    if segment is not None:
        _T.check_segment(opt, segment, 0)
    return opt


def parse_tcp_options(data: BytesLike, segment: Segment | None = None,
                      keep_malformed: bool = False, offset: int | None = None,
                      length: int | None = None) -> list[Option]:
    """Decode a whole TCP options area (the bytes after the 20-byte TCP header), or the
    area ``data[offset:offset + length]``.

    EOL ends the area (it is included in the result). A malformed option
    raises OptionError; with ``keep_malformed`` it comes back as a
    MalformedOption and decoding goes on, the way Linux ignores one bad option.
    A broken TLV structure (length < 2, or past the end) ends decoding.
    """
    d = _area(data, offset, length)
    n = len(d)
    out: list[Option] = []
    pos = 0
    while pos < n:
        kind = d[pos]
        if kind == 1:                              # the walk's two one-byte cases, inline
            out.append(_T.NOP)
            pos += 1
            continue
        if kind == 0:
            out.append(_T.EOL)
            break
        step, size = opt_step(d, n, pos)
        if step == OPT_TLV:
            try:
                opt = _decode_tlv(d, pos, size)
                if segment is not None:
                    _T.check_segment(opt, segment, pos)
            except OptionError as exc:
                if not keep_malformed:
                    raise
                opt = _new(_T.MalformedOption, (kind, d[pos:pos + size], str(exc)))
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
        out.append(_new(_T.MalformedOption, (kind, d[pos:], str(err))))
        break
    return out


# ------------------------------------------------------------------------------------------------
# encoding (the classes validated every field when they were built)

def _encode_sack(o) -> bytes:
    if not 1 <= len(o.blocks) <= 4:                   # a tuple forged past the class's check
        raise option_error("SACK", "blocks", None, "1 to 4 blocks", len(o.blocks))
    return bytes((5, 2 + 8 * len(o.blocks))) + b"".join(struct.pack(">II", l, r) for l, r in o.blocks)


def _encode_mp_capable(o) -> bytes:
    sender, receiver, data_len, csum = o.sender_key, o.receiver_key, o.data_len, o.checksum
    out = bytearray((30, 4, o.version, o.flags))
    if sender is not None:
        out += sender.to_bytes(8, "big")
        if receiver is not None:
            out += receiver.to_bytes(8, "big")
            if data_len is not None:
                out += data_len.to_bytes(2, "big")
                if csum is not None:
                    out += csum.to_bytes(2, "big")
    out[1] = len(out)
    return bytes(out)


def _encode_dss(o) -> bytes:
    data_ack, ack64, dsn, dsn64 = o.data_ack, o.ack64, o.dsn, o.dsn64
    ssn, dll, csum, data_fin = o.subflow_seq, o.data_len, o.checksum, o.data_fin
    flags = (data_ack is not None) | (ack64 << 1) | ((dsn is not None) << 2) | (dsn64 << 3) | (data_fin << 4)
    out = bytearray((30, 4, 0x20, flags))
    if data_ack is not None:
        out += data_ack.to_bytes(8 if ack64 else 4, "big")
    if dsn is not None:
        out += dsn.to_bytes(8 if dsn64 else 4, "big")
        out += struct.pack(">IH", ssn, dll)
        if csum is not None:
            out += csum.to_bytes(2, "big")
    out[1] = len(out)
    return bytes(out)


def _b(o, field: str, value) -> bytes:
    """A bytes field of an option (the compiled encoders copy it by pointer and length: a
    tuple forged with None there must not reach them)."""
    if type(value) is not bytes:
        raise field_type_error(type(o), field, value)
    return value


def _packed(o) -> bytes:
    """The packed address of an ADD_ADDR form (its ``address`` property gives an ip_address)."""
    return _b(o, "address", o[o._fields.index("address")])


def _encode_address(o, nibble: int, hmac) -> bytes:
    address_id, address, port = o.address_id, _packed(o), o.port
    out = bytearray((30, 0, 0x30 | nibble, address_id))
    out += address
    if port is not None:
        out += port.to_bytes(2, "big")
    if hmac is not None:
        out += _b(o, "hmac", hmac)
    out[1] = len(out)
    return bytes(out)


def encode_option(opt: Option) -> bytes:
    """The bytes of one option object, Kind and Length included."""
    try:
        encoder = _ENCODERS[type(opt)]
    except KeyError:
        raise TypeError(f"not an option object: {type(opt).__name__}") from None
    if len(opt) != _FIELD_COUNTS[type(opt)]:
        raise field_count_error(opt)
    return encoder(opt)


def encode_tcp_options(options: Iterable[Option], align: bool = True) -> bytes:
    """Encode a TCP options area from option objects, in the order given.

    With ``align`` (the default) each option is padded with NOPs to a 32-bit
    boundary the way Linux lays them out: before TS, SACK, SACK_PERM and WS,
    after the others. The whole area is padded to a multiple of 4 bytes (with
    NOPs, or zeros after an EOL). More than 40 bytes raises OptionError.
    """
    out = bytearray()
    ended = False
    for opt in options:
        raw = encode_option(opt)
        pad = -len(raw) % 4
        if align and pad and len(raw) > 1:
            raw = b"\x01" * pad + raw if type(opt) in _PAD_BEFORE else raw + b"\x01" * pad
        out += raw
        ended = type(opt) is _T.Eol
    out += (b"\x00" if ended else b"\x01") * (-len(out) % 4)
    if len(out) > 40:
        raise option_error("TCP options", "length", None, "at most 40 bytes", len(out))
    return bytes(out)


def _write(raw: bytes, buffer, offset) -> int:
    start = _check.in_range("offset", offset, 0, _MAX_OFFSET)
    try:
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError
    except TypeError:
        raise TypeError(f"buffer must be a writable buffer, not {type(buffer).__name__}") from None
    if start + len(raw) > len(view):
        raise ValueError(f"{len(raw)} bytes do not fit the buffer at offset {start} "
                         f"({len(view)} bytes)")
    view[start:start + len(raw)] = raw
    return len(raw)


def encode_option_into(opt: Option, buffer: BytesLike, offset: int = 0) -> int:
    """Write one option into the writable ``buffer`` at ``offset``; return its length."""
    return _write(encode_option(opt), buffer, offset)


def encode_tcp_options_into(options: Iterable[Option], buffer: BytesLike, offset: int = 0,
                            align: bool = True) -> int:
    """``encode_tcp_options`` written into the writable ``buffer`` at ``offset``; returns
    the area's length (a multiple of 4, at most 40)."""
    return _write(encode_tcp_options(options, align), buffer, offset)


_take_types(_options_common)

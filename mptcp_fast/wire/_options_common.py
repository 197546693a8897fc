"""The TCP and MPTCP option classes, defined once: what ``mptcp_fast.wire.options`` (which
exports them) and both codec twins (``_options_py``, and ``_options_c`` compiled from
``pyx/mptcp_fast/wire/_options_c.pyx``) build, read and check. The twins import this module;
it imports neither of them.

Byte layouts follow RFC 8684 §3 (MPTCP v1), RFC 6824 §3 (v0), the
ADD_ADDR2 of draft-ietf-mptcp-rfc6824bis-00 (IETF-87 slides, docs/add-addr2.md) and
RFC 9293/7323/2018 for the plain TCP options.

Every option is a tuple subclass: cheap to build from the compiled parser,
immutable, hashable, picklable. Equality also compares the class, so a
``MpFail(5)`` never equals a ``MpFastclose(5)``.
"""

from __future__ import annotations

import enum
import ipaddress
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from typing_extensions import Self

    from .._typing import Address, BytesLike

from .. import _check
from ..errors import option_error

__all__ = [
    "TCPOPT_MPTCP", "Subtype", "Segment", "ResetReason",
    "MPC_CHECKSUM_REQUIRED", "MPC_EXTENSIBILITY", "MPC_DENY_JOIN_TO_SOURCE", "MPC_HMAC",
    "Eol", "Nop", "Mss", "WindowScale", "SackPermitted", "Sack", "Timestamps", "UnknownTcpOption",
    "MpCapable", "MpJoinSyn", "MpJoinSynAck", "MpJoinAck", "Dss", "AddAddr", "AddAddrV0", "AddAddr2",
    "RemoveAddr", "MpPrio", "MpFail", "MpFastclose", "MpTcpRst", "MpExperimental",
    "UnknownMptcpOption", "MalformedOption", "EOL", "NOP", "MAX_TCP_OPTIONS_LEN", "check_segment",
]

TCPOPT_MPTCP = 30          # IANA TCP option kind for MPTCP (RFC 8684 §7.1)
MAX_TCP_OPTIONS_LEN = 40   # data offset is 4 bits of 32-bit words: 60 - 20 (RFC 9293 §3.1)

# MP_CAPABLE flag bits, octet 4 (RFC 8684 §3.1; A is the most significant bit)
MPC_CHECKSUM_REQUIRED = 0x80   # A
MPC_EXTENSIBILITY = 0x40       # B
MPC_DENY_JOIN_TO_SOURCE = 0x20 # C (v1 only; a crypto bit in v0)
MPC_HMAC = 0x01                # H: HMAC-SHA256 in v1, HMAC-SHA1 in v0


class Subtype(enum.IntEnum):
    """MPTCP option subtypes (RFC 8684 §7.2, Table 2)."""
    MP_CAPABLE = 0x0
    MP_JOIN = 0x1
    DSS = 0x2
    ADD_ADDR = 0x3
    REMOVE_ADDR = 0x4
    MP_PRIO = 0x5
    MP_FAIL = 0x6
    MP_FASTCLOSE = 0x7
    MP_TCPRST = 0x8
    MP_EXPERIMENTAL = 0xF


class ResetReason(enum.IntEnum):
    """MP_TCPRST reason codes (RFC 8684 §3.6, IANA registry §7.4)."""
    UNSPECIFIED = 0x00
    MPTCP_ERROR = 0x01
    LACK_OF_RESOURCES = 0x02
    ADMINISTRATIVELY_PROHIBITED = 0x03
    TOO_MUCH_OUTSTANDING_DATA = 0x04
    UNACCEPTABLE_PERFORMANCE = 0x05
    MIDDLEBOX_INTERFERENCE = 0x06


class Segment(enum.Enum):
    """Which TCP segment carries the options, for the kernel's strict rules.

    ``DATA`` is an ACK that carries payload (MP_CAPABLE must then be 22/24
    bytes, docs/kernel-behaviour.md §1). ``RST`` is any segment with RST set.
    """
    SYN = "syn"
    SYN_ACK = "syn-ack"
    ACK = "ack"
    DATA = "data"
    RST = "rst"

    @classmethod
    def from_tcp(cls, flags: int, has_payload: bool) -> "Segment":
        """Classify a segment from its TCP flags octet and payload presence."""
        if flags & 0x04:
            return cls.RST
        if flags & 0x02:
            return cls.SYN_ACK if flags & 0x10 else cls.SYN
        return cls.DATA if has_payload else cls.ACK


# --------------------------------------------------------------------------------------------
# validation helpers (used by constructors, never by the parsers)

def _uint(option: str, field: str, value, bits: int) -> int:
    """mptcp_fast._check's rule (ints and numpy ints; not bools or floats), reported as the
    codec's OptionError naming the option and the field."""
    if type(value) is int and 0 <= value < (1 << bits):
        return value
    try:
        return _check.uint(field, value, bits)
    except TypeError:
        raise option_error(option, field, None, f"an int of {bits} bits", repr(value)) from None
    except ValueError:
        raise option_error(option, field, None, f"0 <= {field} < 2**{bits}", value) from None


def _opt_uint(option: str, field: str, value, bits: int):
    return None if value is None else _uint(option, field, value, bits)


def _fixed_bytes(option: str, field: str, value, size: int) -> bytes:
    try:
        value = bytes(value)
    except TypeError:
        raise option_error(option, field, None, f"{size} bytes", repr(value)) from None
    if len(value) != size:
        raise option_error(option, field, None, f"{size} bytes", f"{len(value)} bytes")
    return value


def _packed_address(option: str, value, allowed=(4, 16)) -> bytes:
    """Accept "192.0.2.1", an ipaddress object, or 4/16 packed bytes (mptcp_fast._check)."""
    try:
        return _check.address("address", value, allowed)
    except ValueError:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise option_error(option, "address", None, "4 or 16 bytes",
                               f"{len(bytes(value))} bytes") from None
        raise option_error(option, "address", None, "an IPv4 or IPv6 address", repr(value)) from None


def _hexify(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple):
        return [_hexify(v) for v in value]
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------
# base class

class _FieldProperty(property):
    """The generated read accessor of one tuple field."""

class _Option(tuple):
    """Base of every option: a tuple of its fields, in ``_fields`` order.

    Each class declares its fields' types for type checkers only (not at run time, where
    annotations would change what tools that read them, such as hypothesis, infer): the read
    accessors themselves are made from ``_fields`` below (an option is immutable)."""
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    name = "?"
    if TYPE_CHECKING:
        kind: int                         # a class attribute, or a field (UnknownTcpOption)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for index, field in enumerate(cls.__dict__.get("_fields", ())):
            # A class (or a shared base) may define a nicer accessor itself, e.g. `address`.
            if not any(isinstance(vars(k).get(field), property)
                       and not isinstance(vars(k)[field], _FieldProperty) for k in cls.__mro__):
                setattr(cls, field, _FieldProperty(itemgetter(index), doc=f"field {index}: {field}"))

    def __eq__(self, other):
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(self)))

    def __getnewargs__(self):      # pickle/copy call __new__(cls, *fields)
        return tuple(self)

    def __repr__(self):
        parts = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({parts})"

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated like a new option."""
        values = {f: tuple.__getitem__(self, i) for i, f in enumerate(self._fields)}
        values.update(changes)
        return type(self)(**values)

    def to_dict(self) -> dict:
        """JSON-ready fields: bytes as hex, addresses as text, enums by name."""
        out = {"option": self.name}
        for field in self._fields:
            out[field] = _hexify(getattr(self, field))
        return out

    # encode(self) -> bytes: the option's bytes on the wire, Kind and Length included.
    # encode_into(self, buffer, offset=0) -> int: the same bytes written into a writable
    # buffer in place, returning their length. Both are the active backend's own functions,
    # set by _bind() (no extra frame); declared here for type checkers only.
    if TYPE_CHECKING:
        def encode(self) -> bytes: ...
        def encode_into(self, buffer: BytesLike, offset: int = 0) -> int: ...


# The type every option is (the base class of each option class), for annotations:
# ``parse_tcp_options`` returns a ``list[Option]``.
Option = _Option


def _make(cls, *values):
    """Build without validation (what the parsers do)."""
    return tuple.__new__(cls, values)


# --------------------------------------------------------------------------------------------
# plain TCP options (RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018)

class Eol(_Option):
    """End of option list (kind 0)."""
    __slots__ = ()
    name = "EOL"
    kind = 0

    def __new__(cls):
        return EOL


class Nop(_Option):
    """No-operation padding (kind 1)."""
    __slots__ = ()
    name = "NOP"
    kind = 1

    def __new__(cls):
        return NOP


EOL = tuple.__new__(Eol, ())
NOP = tuple.__new__(Nop, ())


class Mss(_Option):
    """Maximum segment size (kind 2, RFC 9293 §3.2): ``mss`` in 0..65535, on SYNs."""
    __slots__ = ()
    _fields = ("mss",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        mss: int
    name = "MSS"
    kind = 2

    def __new__(cls, mss: int):
        return _make(cls, _uint("MSS", "mss", mss, 16))


class WindowScale(_Option):
    """Window scale (kind 3, RFC 7323 §2): ``shift`` in 0..255 (Linux uses at most 14)."""
    __slots__ = ()
    _fields = ("shift",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        shift: int
    name = "WS"
    kind = 3

    def __new__(cls, shift: int):
        return _make(cls, _uint("WS", "shift", shift, 8))


class SackPermitted(_Option):
    """SACK permitted (kind 4, RFC 2018 §2), on SYNs; no fields."""
    __slots__ = ()
    name = "SACK_PERM"
    kind = 4

    def __new__(cls):
        return _make(cls)


class Sack(_Option):
    """SACK blocks: a tuple of (left edge, right edge) pairs, 1 to 4 of them."""
    __slots__ = ()
    _fields = ("blocks",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        blocks: tuple[tuple[int, int], ...]
    name = "SACK"
    kind = 5

    def __new__(cls, blocks: Iterable[tuple[int, int]]):
        checked = tuple((_uint("SACK", "left", left, 32), _uint("SACK", "right", right, 32))
                        for left, right in blocks)
        if not 1 <= len(checked) <= 4:
            raise option_error("SACK", "blocks", None, "1 to 4 blocks", len(checked))
        return _make(cls, checked)


class Timestamps(_Option):
    """Timestamps (kind 8, RFC 7323 §3): ``tsval`` and ``tsecr``, 32 bits each."""
    __slots__ = ()
    _fields = ("tsval", "tsecr")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        tsval: int
        tsecr: int
    name = "TS"
    kind = 8

    def __new__(cls, tsval: int, tsecr: int):
        return _make(cls, _uint("TS", "tsval", tsval, 32), _uint("TS", "tsecr", tsecr, 32))


class UnknownTcpOption(_Option):
    """Any other TCP option, kept raw: ``data`` is what follows Kind and Length."""
    __slots__ = ()
    _fields = ("kind", "data")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        data: bytes
    name = "TCP_OPTION"

    def __new__(cls, kind: int, data: bytes = b""):
        kind = _uint("TCP_OPTION", "kind", kind, 8)
        if kind in (0, 1, 2, 3, 4, 5, 8, TCPOPT_MPTCP):
            raise option_error("TCP_OPTION", "kind", None, "a kind without its own class", kind)
        data = bytes(data)
        if len(data) > MAX_TCP_OPTIONS_LEN - 2:
            raise option_error("TCP_OPTION", "data", None, "at most 38 bytes", len(data))
        return _make(cls, kind, data)


class MalformedOption(_Option):
    """An option that failed to decode, kept by ``parse_tcp_options(..., keep_malformed=True)``.

    ``data`` holds the whole option as found (or the rest of the area when the
    TLV structure itself is broken); ``reason`` is the OptionError message.
    """
    __slots__ = ()
    _fields = ("kind", "data", "reason")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        data: bytes
        reason: str
    name = "MALFORMED"

    def __new__(cls, kind: int, data: bytes, reason: str):
        data = bytes(data)
        if len(data) > MAX_TCP_OPTIONS_LEN:        # it came from an options area
            raise option_error("MALFORMED", "data", None,
                               f"at most {MAX_TCP_OPTIONS_LEN} bytes", len(data))
        return _make(cls, kind, data, str(reason))


# --------------------------------------------------------------------------------------------
# MPTCP options (kind 30)

class _MptcpOption(_Option):
    __slots__ = ()
    kind = TCPOPT_MPTCP
    subtype: int


class MpCapable(_MptcpOption):
    """MP_CAPABLE (RFC 8684 §3.1; RFC 6824 §3.1 for version 0).

    The form follows from which fields are present:
    no key = SYN (4), sender_key = SYN/ACK (12; v0 SYN too), both keys = ACK (20),
    + data_len = ACK with data (22), + checksum = (24). Version 0 has only 12 and 20.
    """
    __slots__ = ()
    _fields = ("version", "flags", "sender_key", "receiver_key", "data_len", "checksum")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        version: int
        flags: int
        sender_key: int | None
        receiver_key: int | None
        data_len: int | None
        checksum: int | None
    name = "MP_CAPABLE"
    subtype = Subtype.MP_CAPABLE

    def __new__(cls, version: int = 1, flags: int = MPC_HMAC, sender_key: int | None = None,
                receiver_key: int | None = None, data_len: int | None = None,
                checksum: int | None = None):
        n = "MP_CAPABLE"
        version = _uint(n, "version", version, 4)
        flags = _uint(n, "flags", flags, 8)
        sender_key = _opt_uint(n, "sender_key", sender_key, 64)
        receiver_key = _opt_uint(n, "receiver_key", receiver_key, 64)
        data_len = _opt_uint(n, "data_len", data_len, 16)
        checksum = _opt_uint(n, "checksum", checksum, 16)
        if receiver_key is not None and sender_key is None:
            raise option_error(n, "receiver_key", None, "sender_key to be set too", receiver_key)
        if data_len is not None and receiver_key is None:
            raise option_error(n, "data_len", None, "both keys to be set too", data_len)
        if checksum is not None and data_len is None:
            raise option_error(n, "checksum", None, "data_len to be set too", checksum)
        if version == 0 and (sender_key is None or data_len is not None):
            raise option_error(n, "version", None, "version 0 forms of 12 or 20 bytes (RFC 6824)",
                               "a v1-only form")
        return _make(cls, version, flags, sender_key, receiver_key, data_len, checksum)

    @property
    def checksum_required(self) -> bool:
        return bool(self[1] & MPC_CHECKSUM_REQUIRED)

    @property
    def extensibility(self) -> bool:
        return bool(self[1] & MPC_EXTENSIBILITY)

    @property
    def deny_join_to_source(self) -> bool:
        """v1 C flag: no new subflows to this source address and port."""
        return self[0] >= 1 and bool(self[1] & MPC_DENY_JOIN_TO_SOURCE)

    @property
    def algorithm(self) -> str | None:
        """The HMAC named by bit H, or None when H is clear."""
        if not self[1] & MPC_HMAC:
            return None
        return "hmac-sha1" if self[0] == 0 else "hmac-sha256"


class MpJoinSyn(_MptcpOption):
    """MP_JOIN on a SYN, 12 bytes (RFC 8684 §3.2, Figure 5)."""
    __slots__ = ()
    _fields = ("address_id", "token", "nonce", "backup")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_id: int
        token: int
        nonce: int
        backup: bool
    name = "MP_JOIN"
    subtype = Subtype.MP_JOIN

    def __new__(cls, address_id: int, token: int, nonce: int, backup: bool = False):
        n = "MP_JOIN"
        return _make(cls, _uint(n, "address_id", address_id, 8), _uint(n, "token", token, 32),
                     _uint(n, "nonce", nonce, 32), bool(backup))


class MpJoinSynAck(_MptcpOption):
    """MP_JOIN on a SYN/ACK, 16 bytes: leftmost 64 bits of the HMAC (RFC 8684 §3.2, Figure 6)."""
    __slots__ = ()
    _fields = ("address_id", "hmac", "nonce", "backup")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_id: int
        hmac: bytes
        nonce: int
        backup: bool
    name = "MP_JOIN"
    subtype = Subtype.MP_JOIN

    def __new__(cls, address_id: int, hmac: bytes, nonce: int, backup: bool = False):
        n = "MP_JOIN"
        return _make(cls, _uint(n, "address_id", address_id, 8), _fixed_bytes(n, "hmac", hmac, 8),
                     _uint(n, "nonce", nonce, 32), bool(backup))


class MpJoinAck(_MptcpOption):
    """MP_JOIN on the third ACK, 24 bytes: 160 bits of HMAC (RFC 8684 §3.2, Figure 7)."""
    __slots__ = ()
    _fields = ("hmac",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        hmac: bytes
    name = "MP_JOIN"
    subtype = Subtype.MP_JOIN

    def __new__(cls, hmac: bytes):
        return _make(cls, _fixed_bytes("MP_JOIN", "hmac", hmac, 20))


class Dss(_MptcpOption):
    """DSS: Data ACK and/or data sequence mapping (RFC 8684 §3.3, Figure 9).

    ``data_ack is None`` means flag A is clear; ``dsn is None`` means flag M is
    clear (then subflow_seq, data_len and checksum are None too). ``ack64`` and
    ``dsn64`` are the a and m flags; left as None they default to 64-bit when
    the field is present, as Linux sends (docs/kernel-behaviour.md §2). ``checksum`` is
    present only when checksums were negotiated. ``data_len`` counts a DATA_FIN
    (RFC 8684 §3.3.3); 0 is the infinite mapping.
    """
    __slots__ = ()
    _fields = ("data_ack", "ack64", "dsn", "dsn64", "subflow_seq", "data_len", "checksum", "data_fin")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        data_ack: int | None
        ack64: bool
        dsn: int | None
        dsn64: bool
        subflow_seq: int | None
        data_len: int | None
        checksum: int | None
        data_fin: bool
    name = "DSS"
    subtype = Subtype.DSS

    def __new__(cls, data_ack: int | None = None, ack64: bool | None = None, dsn: int | None = None,
                dsn64: bool | None = None, subflow_seq: int | None = None, data_len: int | None = None,
                checksum: int | None = None, data_fin: bool = False):
        n = "DSS"
        ack64 = (data_ack is not None) if ack64 is None else bool(ack64)
        dsn64 = (dsn is not None) if dsn64 is None else bool(dsn64)
        data_ack = _opt_uint(n, "data_ack", data_ack, 64 if ack64 else 32)
        dsn = _opt_uint(n, "dsn", dsn, 64 if dsn64 else 32)
        mapping = (subflow_seq, data_len)
        if dsn is None:
            if any(v is not None for v in mapping + (checksum,)):
                raise option_error(n, "dsn", None, "a dsn when a mapping field is set", None)
        else:
            if None in mapping:
                raise option_error(n, "subflow_seq" if subflow_seq is None else "data_len", None,
                                   "an int when dsn is set (a mapping has all three)", None)
            _uint(n, "subflow_seq", subflow_seq, 32)
            _uint(n, "data_len", data_len, 16)
            _opt_uint(n, "checksum", checksum, 16)
        return _make(cls, data_ack, ack64, dsn, dsn64, subflow_seq, data_len, checksum, bool(data_fin))

    @property
    def flags(self) -> int:
        """The F m M a A flag bits as sent on the wire."""
        data_ack, ack64, dsn, dsn64, _, _, _, data_fin = self
        return ((data_ack is not None) | (ack64 << 1) | ((dsn is not None) << 2) | (dsn64 << 3)
                | (data_fin << 4))

    @property
    def is_infinite_mapping(self) -> bool:
        """RFC 8684 §3.7: a mapping with Data-Level Length 0."""
        return self[2] is not None and self[5] == 0


class _AddressOption(_MptcpOption):
    """Shared accessors of the ADD_ADDR family; field 1 is the packed address."""
    __slots__ = ()

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(tuple.__getitem__(self, 1))

    @property
    def address_packed(self) -> bytes:
        return tuple.__getitem__(self, 1)

    @property
    def family(self) -> int:
        """4 or 6."""
        return 4 if len(tuple.__getitem__(self, 1)) == 4 else 6


class AddAddr(_AddressOption):
    """ADD_ADDR of RFC 8684 §3.4.1: an HMAC when fresh, none when echoed (E=1)."""
    __slots__ = ()
    _fields = ("address_id", "address", "port", "hmac")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_id: int
        port: int | None
        hmac: bytes | None
    name = "ADD_ADDR"
    subtype = Subtype.ADD_ADDR

    def __new__(cls, address_id: int, address: Address, port: int | None = None,
                hmac: bytes | None = None):
        n = "ADD_ADDR"
        return _make(cls, _uint(n, "address_id", address_id, 8), _packed_address(n, address),
                     _opt_uint(n, "port", port, 16),
                     None if hmac is None else _fixed_bytes(n, "hmac", hmac, 8))

    @property
    def echo(self) -> bool:
        """E flag: this is the echo of a received ADD_ADDR (and so has no HMAC)."""
        return tuple.__getitem__(self, 3) is None


class AddAddrV0(_AddressOption):
    """ADD_ADDR of RFC 6824 §3.4.1: IPVer nibble, no HMAC."""
    __slots__ = ()
    _fields = ("address_id", "address", "port")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_id: int
        port: int | None
    name = "ADD_ADDR"
    subtype = Subtype.ADD_ADDR

    def __new__(cls, address_id: int, address: Address, port: int | None = None):
        n = "ADD_ADDR"
        return _make(cls, _uint(n, "address_id", address_id, 8), _packed_address(n, address),
                     _opt_uint(n, "port", port, 16))


class AddAddr2(_AddressOption):
    """ADD_ADDR2 of draft-ietf-mptcp-rfc6824bis-00 (IETF-87 slides; docs/add-addr2.md).

    IPVer nibble kept, an 8-octet truncated HMAC after the optional port. The
    layout and its HMAC come from the deployed out-of-tree implementation,
    not from draft text (which was not available).
    """
    __slots__ = ()
    _fields = ("address_id", "address", "port", "hmac")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_id: int
        port: int | None
        hmac: bytes
    name = "ADD_ADDR2"
    subtype = Subtype.ADD_ADDR

    def __new__(cls, address_id: int, address: Address, port: int | None = None,
                hmac: bytes = bytes(8)):
        n = "ADD_ADDR2"
        return _make(cls, _uint(n, "address_id", address_id, 8), _packed_address(n, address),
                     _opt_uint(n, "port", port, 16), _fixed_bytes(n, "hmac", hmac, 8))


class RemoveAddr(_MptcpOption):
    """REMOVE_ADDR (RFC 8684 §3.4.2): one or more address IDs."""
    __slots__ = ()
    _fields = ("address_ids",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        address_ids: tuple[int, ...]
    name = "REMOVE_ADDR"
    subtype = Subtype.REMOVE_ADDR

    def __new__(cls, address_ids: Iterable[int]):
        ids = tuple(_uint("REMOVE_ADDR", "address_ids", i, 8) for i in address_ids)
        if not 1 <= len(ids) <= MAX_TCP_OPTIONS_LEN - 3:
            raise option_error("REMOVE_ADDR", "address_ids", None, "1 to 37 ids", len(ids))
        return _make(cls, ids)


class MpPrio(_MptcpOption):
    """MP_PRIO (RFC 8684 §3.3.8): 3 bytes; v0's 4-byte form adds an address ID."""
    __slots__ = ()
    _fields = ("backup", "address_id")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        backup: bool
        address_id: int | None
    name = "MP_PRIO"
    subtype = Subtype.MP_PRIO

    def __new__(cls, backup: bool, address_id: int | None = None):
        return _make(cls, bool(backup), _opt_uint("MP_PRIO", "address_id", address_id, 8))


class MpFail(_MptcpOption):
    """MP_FAIL (RFC 8684 §3.7): the 64-bit DSN where the failed mapping starts."""
    __slots__ = ()
    _fields = ("dsn",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        dsn: int
    name = "MP_FAIL"
    subtype = Subtype.MP_FAIL

    def __new__(cls, dsn: int):
        return _make(cls, _uint("MP_FAIL", "dsn", dsn, 64))


class MpFastclose(_MptcpOption):
    """MP_FASTCLOSE (RFC 8684 §3.5): the option receiver's key."""
    __slots__ = ()
    _fields = ("receiver_key",)
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        receiver_key: int
    name = "MP_FASTCLOSE"
    subtype = Subtype.MP_FASTCLOSE

    def __new__(cls, receiver_key: int):
        return _make(cls, _uint("MP_FASTCLOSE", "receiver_key", receiver_key, 64))


class MpTcpRst(_MptcpOption):
    """MP_TCPRST (RFC 8684 §3.6): reason code (a ResetReason when known) and T flag."""
    __slots__ = ()
    _fields = ("reason", "transient")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        reason: ResetReason | int
        transient: bool
    name = "MP_TCPRST"
    subtype = Subtype.MP_TCPRST

    def __new__(cls, reason: int = ResetReason.UNSPECIFIED, transient: bool = False):
        reason = _uint("MP_TCPRST", "reason", int(reason), 8)
        return _make(cls, _RESET_REASONS[reason] if reason < len(_RESET_REASONS) else reason,
                     bool(transient))


_RESET_REASONS = tuple(ResetReason)


class MpExperimental(_MptcpOption):
    """Subtype 0xf, reserved for private use (RFC 8684 §7.2): kept raw."""
    __slots__ = ()
    _fields = ("nibble", "data")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        nibble: int
        data: bytes
    name = "MP_EXPERIMENTAL"
    subtype = Subtype.MP_EXPERIMENTAL

    def __new__(cls, nibble: int = 0, data: bytes = b""):
        data = bytes(data)
        if len(data) > MAX_TCP_OPTIONS_LEN - 3:
            raise option_error("MP_EXPERIMENTAL", "data", None, "at most 37 bytes", len(data))
        return _make(cls, _uint("MP_EXPERIMENTAL", "nibble", nibble, 4), data)


class UnknownMptcpOption(_MptcpOption):
    """An unassigned subtype (0x9-0xe), kept raw: ``data`` follows the subtype octet."""
    __slots__ = ()
    _fields = ("subtype", "nibble", "data")
    if TYPE_CHECKING:   # the fields' types (their accessors come from _fields)
        nibble: int
        data: bytes
    name = "MPTCP_UNKNOWN"

    def __new__(cls, subtype: int, nibble: int = 0, data: bytes = b""):
        n = "MPTCP_UNKNOWN"
        subtype = _uint(n, "subtype", subtype, 4)
        if not 0x9 <= subtype <= 0xE:
            raise option_error(n, "subtype", None, "an unassigned subtype 0x9..0xe", subtype)
        data = bytes(data)
        if len(data) > MAX_TCP_OPTIONS_LEN - 3:
            raise option_error(n, "data", None, "at most 37 bytes", len(data))
        return _make(cls, subtype, _uint(n, "nibble", nibble, 4), data)


# --------------------------------------------------------------------------------------------
# strict (kernel) acceptance, docs/kernel-behaviour.md §1. Called by both backends when segment is given.

_MPC_LENGTHS = {Segment.SYN: (4,), Segment.SYN_ACK: (12,), Segment.ACK: (20,), Segment.DATA: (22, 24)}
_JOIN_FORMS = {Segment.SYN: MpJoinSyn, Segment.SYN_ACK: MpJoinSynAck,
               Segment.ACK: MpJoinAck, Segment.DATA: MpJoinAck}
_RM_IDS_MAX = 8   # MPTCP_RM_IDS_MAX


def _mpc_length(opt: MpCapable) -> int:
    if opt.sender_key is None:
        return 4
    if opt.receiver_key is None:
        return 12
    if opt.data_len is None:
        return 20
    return 22 if opt.checksum is None else 24


def check_segment(opt, segment: Segment, offset: int = 0):
    """Raise OptionError where Linux would ignore ``opt`` on ``segment``; else return it."""
    if not isinstance(segment, Segment):
        raise TypeError(f"segment must be a Segment, not {type(segment).__name__}")
    cls = type(opt)

    def reject(field, expected, got):
        raise option_error(opt.name, field, offset, f"{expected} on a {segment.value} segment", got)

    if cls is MpCapable:
        length = _mpc_length(opt)
        if length not in _MPC_LENGTHS.get(segment, ()):
            allowed = _MPC_LENGTHS.get(segment)
            reject("length", " or ".join(map(str, allowed)) + " bytes" if allowed
                   else "no MP_CAPABLE", length)
        # "try to be gentle vs future versions on the initial syn"
        if (segment is Segment.SYN and opt.version < 1) or (segment is not Segment.SYN and opt.version != 1):
            reject("version", "version 1 (>= 1 on a SYN)", opt.version)
        if opt.flags & 0x1F != MPC_HMAC or opt.flags & MPC_EXTENSIBILITY:
            reject("flags", "H set, B and D-G clear", f"0x{opt.flags:02x}")
    elif cls in (MpJoinSyn, MpJoinSynAck, MpJoinAck):
        if _JOIN_FORMS.get(segment) is not cls:
            reject("length", "the MP_JOIN form of this segment", cls.__name__)
    elif cls in (AddAddrV0, AddAddr2):
        reject("form", "the RFC 8684 ADD_ADDR (Linux speaks v1 only)", cls.__name__)
    elif cls is RemoveAddr and len(opt.address_ids) > _RM_IDS_MAX:
        reject("address_ids", f"at most {_RM_IDS_MAX} ids", len(opt.address_ids))
    elif cls is MpPrio and opt.address_id is not None:
        reject("length", "3 (the v0 form with an address id is ignored)", 4)
    elif cls is MpTcpRst and segment is not Segment.RST:
        reject("segment", "a RST", segment.value)
    return opt


# --------------------------------------------------------------------------------------------
# rules both codec twins apply to an option they are given, with one text

# {option class: number of fields} of every class the encoders know
FIELD_COUNTS: dict[type[_Option], int] = {cls: len(cls._fields) for cls in (
    Eol, Nop, Mss, WindowScale, SackPermitted, Sack, Timestamps, UnknownTcpOption,
    MalformedOption, MpCapable, MpJoinSyn, MpJoinSynAck, MpJoinAck, Dss, AddAddr, AddAddrV0,
    AddAddr2, RemoveAddr, MpPrio, MpFail, MpFastclose, MpTcpRst, MpExperimental,
    UnknownMptcpOption)}


def field_count_error(opt):
    """An option tuple built without its constructor (``tuple.__new__``) with the wrong
    number of items: refused before any field is read (the compiled encoders index it
    without bounds checks)."""
    cls = type(opt)
    return option_error(cls.name, "fields", None, f"{len(cls._fields)} items", len(opt))


def field_type_error(cls, field: str, value) -> TypeError:
    return TypeError(f"{cls.name} {field} must be bytes, not {type(value).__name__}")

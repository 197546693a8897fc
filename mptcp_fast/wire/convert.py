"""The 0-RTT TCP Convert Protocol (RFC 8803): the messages a client and a Transport Converter
exchange at the start of the byte stream, before the application's bytes.

    from mptcp_fast.wire import convert
    request = convert.encode([convert.Connect(ipaddress.ip_address("198.18.4.1"), 80)])
    reader = convert.Reader()
    message = reader.feed(first_bytes)          # None until the whole message is there
    message.tlvs, reader.rest                   # (Connect(...),), the bytes after it

Layouts (RFC 8803 §4; all fields in network byte order, every length in 32-bit words):

    the Convert fixed header (§4.1), 4 bytes:
        Version (8) = 1 | Total Length (8) | Magic Number (16) = 0x2263
    Total Length counts the 32-bit words of the whole message, this header included, so a
    message is at most 255 words (1,020 bytes). Each TLV after it (§4.2):
        Type (8) | Length (8, the TLV's words, Type and Length included) | Value ...

    Info (type 1):                   Type | Length = 1 | Unassigned (16)
    Connect (type 10):               Type | Length | Remote Peer Port (16)
                                     Remote Peer IP Address (128, IPv4-mapped for IPv4)
                                     TCP Options (variable, whole words)
    Extended TCP Header (type 20):   Type | Length | Unassigned (16)
                                     Returned Extended TCP Header (whole words)
    Supported TCP Extensions (21):   Type | Length | Unassigned (16)
                                     Kind (8) | Kind (8) | ... padded with zeros
    Cookie (type 22):                Type | Length | Zero (16) | Opaque Cookie (whole words)
    Error (type 30):                 Type | Length | Error Code (8) | Value (8 + whole words)

Error codes (the IANA "Convert Errors" registry set up by RFC 8803): 0 Unsupported Version,
1 Malformed Message, 2 Unsupported Message, 3 Missing Cookie, 32 Not Authorized, 33 Unsupported
TCP Option, 64 Resource Exceeded, 65 Network Failure, 96 Connection Reset, 97 Destination
Unreachable (its Value: the Code of the ICMP message received).

Parsing is strict and incremental: the reader takes the bytes as they arrive (the header may
come in any number of pieces), holds at most one message (1,020 bytes), and raises only
:class:`~mptcp_fast.errors.ConvertError`, whose ``code`` is what a converter answers with
(0 for a version it does not speak, 1 for anything malformed, a wrong Magic Number included:
0x2263 is 8803, as the RFC authors' own implementation, Tessares' libconvert, writes and checks
it). Unassigned and Zero fields are sent as zero and ignored on receipt. A TLV of a type this
module does not know is returned as :class:`Unknown` (a converter answers Unsupported
Message). The TLVs are named here rather than by their subsections of §4.2. Pure Python: not
a hot path (one message per connection).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Union

from ..errors import ConvertError

__all__ = ["ConvertError", "VERSION", "MAGIC", "MAX_MESSAGE", "INFO", "CONNECT", "EXTENDED_TCP_HEADER",
           "SUPPORTED_TCP_EXTENSIONS", "COOKIE", "ERROR", "ERROR_NAMES",
           "UNSUPPORTED_VERSION", "MALFORMED_MESSAGE", "UNSUPPORTED_MESSAGE", "MISSING_COOKIE",
           "NOT_AUTHORIZED", "UNSUPPORTED_TCP_OPTION", "RESOURCE_EXCEEDED", "NETWORK_FAILURE",
           "CONNECTION_RESET", "DESTINATION_UNREACHABLE",
           "Info", "Connect", "ExtendedTcpHeader", "SupportedTcpExtensions", "Cookie", "Error",
           "Unknown", "Tlv", "Message", "encode", "decode", "Reader"]

VERSION = 1                         # §4.1: the only version
MAGIC = 0x2263                      # §4.1: the fixed header's Magic Number (8803)
MAX_MESSAGE = 255 * 4               # Total Length is 8 bits of 32-bit words

# TLV types (§4.2, IANA "Convert TLVs")
INFO, CONNECT, EXTENDED_TCP_HEADER, SUPPORTED_TCP_EXTENSIONS, COOKIE, ERROR = 1, 10, 20, 21, 22, 30

# Error codes (the Error TLV, IANA "Convert Errors")
UNSUPPORTED_VERSION, MALFORMED_MESSAGE, UNSUPPORTED_MESSAGE, MISSING_COOKIE = 0, 1, 2, 3
NOT_AUTHORIZED, UNSUPPORTED_TCP_OPTION = 32, 33
RESOURCE_EXCEEDED, NETWORK_FAILURE = 64, 65
CONNECTION_RESET, DESTINATION_UNREACHABLE = 96, 97
ERROR_NAMES = {0: "Unsupported Version", 1: "Malformed Message", 2: "Unsupported Message",
               3: "Missing Cookie", 32: "Not Authorized", 33: "Unsupported TCP Option",
               64: "Resource Exceeded", 65: "Network Failure", 96: "Connection Reset",
               97: "Destination Unreachable"}

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def _words(what: str, data: bytes) -> bytes:
    """``data`` as bytes, which must fill whole 32-bit words (a field the RFC pads)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) % 4:
        raise ConvertError(f"{what}: {len(data)} bytes, not a whole number of 32-bit words "
                           "(pad it)", offset=None)
    return data


def _padded_tlv(kind: int, body: bytes) -> bytes:
    """A TLV whose Value starts after two reserved bytes (Extended TCP Header, Supported TCP
    Extensions, Cookie): Type, Length in 32-bit words, two zero bytes, then ``body`` (whole
    words)."""
    return bytes((kind, 1 + len(body) // 4, 0, 0)) + body


def _u(what: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise ConvertError(f"{what}: {value} is not a {bits}-bit value", offset=None)
    return value


@dataclass(frozen=True)
class Info:
    """The Info TLV: asks the converter which TCP extensions it supports."""

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        return bytes((INFO, 1, 0, 0))


@dataclass(frozen=True)
class Connect:
    """The Connect TLV: where the converter is to connect (``address`` an IPv4 or IPv6
    address, carried as IPv6, IPv4-mapped for IPv4), and the TCP options the client asks it
    to put in that SYN (``options``: raw TCP options in whole 32-bit words)."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    options: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            object.__setattr__(self, "address", ipaddress.ip_address(self.address))
        if isinstance(self.address, ipaddress.IPv6Address) and self.address.ipv4_mapped:
            object.__setattr__(self, "address", self.address.ipv4_mapped)   # as carried
        _u("Connect: port", self.port, 16)
        object.__setattr__(self, "options", _words("Connect: TCP options", self.options))
        if 5 + len(self.options) // 4 > 255 - 1:
            raise ConvertError("Connect: TCP options too long for one message", offset=None)

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        if isinstance(self.address, ipaddress.IPv4Address):
            packed = _V4_MAPPED + self.address.packed
        else:
            packed = self.address.packed
        return (bytes((CONNECT, 5 + len(self.options) // 4)) + self.port.to_bytes(2, "big") +
                packed + self.options)


@dataclass(frozen=True)
class ExtendedTcpHeader:
    """The Extended TCP Header TLV: what the converter returns of the SYN+ACK it received
    from the server (the extended TCP header, i.e. its options), as bytes in whole 32-bit
    words."""
    header: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", _words("Extended TCP Header", self.header))
        if len(self.header) > MAX_MESSAGE - 8:
            raise ConvertError("Extended TCP Header: too long for one message", offset=None)

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        return _padded_tlv(EXTENDED_TCP_HEADER, self.header)


@dataclass(frozen=True)
class SupportedTcpExtensions:
    """The Supported TCP Extensions TLV: the TCP option kinds the converter supports (kind 0,
    End of Option List, is the padding and so never one of them)."""
    kinds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        for kind in kinds:
            _u("Supported TCP Extensions: kind", kind, 8)
            if kind == 0:
                raise ConvertError("Supported TCP Extensions: kind 0 is the padding",
                                   offset=None)
        if len(kinds) > MAX_MESSAGE - 8:
            raise ConvertError("Supported TCP Extensions: too many kinds for one message",
                               offset=None)
        object.__setattr__(self, "kinds", kinds)

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        body = bytes(self.kinds)
        body += b"\x00" * (-len(body) % 4)
        return _padded_tlv(SUPPORTED_TCP_EXTENSIONS, body)


@dataclass(frozen=True)
class Cookie:
    """The Cookie TLV: an opaque cookie (whole 32-bit words) the converter hands out and
    asks to see again."""
    cookie: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cookie", _words("Cookie", self.cookie))
        if len(self.cookie) > MAX_MESSAGE - 8:
            raise ConvertError("Cookie: too long for one message", offset=None)

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        return _padded_tlv(COOKIE, self.cookie)


@dataclass(frozen=True)
class Error:
    """The Error TLV: ``code`` (ERROR_NAMES) and its Value field, exactly as carried: one
    byte in the TLV's first word and whole words after it (so 1, 5, 9, ... bytes; zero when
    the code gives it no meaning; for Destination Unreachable the ICMP Code)."""
    code: int
    value: bytes = b"\x00"

    def __post_init__(self) -> None:
        _u("Error: code", self.code, 8)
        if not isinstance(self.value, (bytes, bytearray, memoryview)):
            raise TypeError(f"Error: value: expected bytes, got {type(self.value).__name__}")
        value = bytes(self.value)
        if len(value) % 4 != 1:
            raise ConvertError(f"Error: value: {len(value)} bytes; the field is 1 byte and "
                               "whole 32-bit words after it", offset=None)
        if len(value) > MAX_MESSAGE - 7:
            raise ConvertError("Error: value too long for one message", offset=None)
        object.__setattr__(self, "value", value)

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, f"error {self.code}")

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        return bytes((ERROR, (3 + len(self.value)) // 4, self.code)) + self.value


@dataclass(frozen=True)
class Unknown:
    """A TLV of a type not defined by RFC 8803 (or not supported here): its type and the
    bytes after Type and Length (2, 6, 10, ... bytes)."""
    type: int
    body: bytes = b"\x00\x00"

    def __post_init__(self) -> None:
        _u("TLV type", self.type, 8)
        if self.type in _PARSERS:
            raise ConvertError(f"TLV type {self.type} is a known type, not Unknown", offset=None)
        body = bytes(self.body)
        if len(body) % 4 != 2 or len(body) > MAX_MESSAGE - 6:
            raise ConvertError(f"TLV body: {len(body)} bytes; a TLV is whole 32-bit words",
                               offset=None)
        object.__setattr__(self, "body", body)

    def encode(self) -> bytes:
        """The TLV's bytes, Type and Length included."""
        return bytes((self.type, (2 + len(self.body)) // 4)) + self.body


Tlv = Union[Info, Connect, ExtendedTcpHeader, SupportedTcpExtensions, Cookie, Error, Unknown]


@dataclass(frozen=True)
class Message:
    """One Convert message: the fixed header's version and the TLVs after it, in order."""
    tlvs: tuple[Tlv, ...] = ()
    version: int = VERSION

    def first(self, kind: type) -> Tlv | None:
        """The first TLV of class ``kind``, or None."""
        for tlv in self.tlvs:
            if isinstance(tlv, kind):
                return tlv
        return None


def encode(tlvs=(), version: int = VERSION) -> bytes:
    """The fixed header (RFC 8803 §4.1) and ``tlvs`` after it."""
    _u("version", version, 8)
    body = b"".join(tlv.encode() for tlv in tlvs)
    words = 1 + len(body) // 4
    if words > 255:
        raise ConvertError(f"a Convert message is at most {MAX_MESSAGE} bytes, not {words * 4}",
                           offset=None)
    return bytes((version, words)) + MAGIC.to_bytes(2, "big") + body


# ---------------------------------------------------------------------- parsing
def _info(body: bytes, at: int) -> Info:
    if len(body) != 2:
        raise ConvertError(f"Info TLV at offset {at}: length {(len(body) + 2) // 4} words, "
                           "expected 1", offset=at + 1)
    return Info()


def _connect(body: bytes, at: int) -> Connect:
    if len(body) < 18:
        raise ConvertError(f"Connect TLV at offset {at}: length {(len(body) + 2) // 4} words, "
                           "expected at least 5", offset=at + 1)
    raw = body[2:18]
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    if raw[:12] == _V4_MAPPED:
        address = ipaddress.IPv4Address(raw[12:])
    else:
        address = ipaddress.IPv6Address(raw)
    return Connect(address, int.from_bytes(body[:2], "big"), body[18:])


def _extended(body: bytes, at: int) -> ExtendedTcpHeader:
    return ExtendedTcpHeader(body[2:])


def _supported(body: bytes, at: int) -> SupportedTcpExtensions:
    kinds = body[2:].rstrip(b"\x00")
    if 0 in kinds:
        raise ConvertError(f"Supported TCP Extensions TLV at offset {at}: kind 0 before the "
                           "end of the list", offset=at + 4 + kinds.index(0))
    return SupportedTcpExtensions(tuple(kinds))


def _cookie(body: bytes, at: int) -> Cookie:
    return Cookie(body[2:])


def _error(body: bytes, at: int) -> Error:
    return Error(body[0], body[1:])


_PARSERS: dict[int, Callable[[bytes, int], Tlv]] = {INFO: _info, CONNECT: _connect, EXTENDED_TCP_HEADER: _extended,
            SUPPORTED_TCP_EXTENSIONS: _supported, COOKIE: _cookie, ERROR: _error}


def _parse(message: bytes) -> Message:
    """A whole message (its Total Length's bytes, the header checked): its TLVs."""
    tlvs: list[Tlv] = []
    at = 4
    while at < len(message):
        kind, words = message[at], message[at + 1]      # (a TLV starts on a word: 4 bytes)
        if words == 0:
            raise ConvertError(f"TLV at offset {at}: length 0 (a TLV is at least one 32-bit "
                               "word)", offset=at + 1)
        end = at + 4 * words
        if end > len(message):
            raise ConvertError(f"TLV at offset {at}: {words} words run past the message's "
                               f"Total Length ({len(message) // 4} words)", offset=at + 1)
        body = message[at + 2:end]
        parser = _PARSERS.get(kind)
        tlvs.append(parser(body, at) if parser is not None else Unknown(kind, body))
        at = end
    return Message(tuple(tlvs), message[0])


def _check_header(header: bytes) -> int:
    """The message's length in bytes, from its fixed header (§4.1)."""
    if header[0] != VERSION:
        raise ConvertError(f"Convert version {header[0]}, this converter speaks {VERSION}",
                           code=UNSUPPORTED_VERSION, offset=0)
    if int.from_bytes(header[2:4], "big") != MAGIC:
        raise ConvertError(f"Convert header: Magic Number {header[2:4].hex()}, expected "
                           f"{MAGIC:04x}", offset=2)
    if header[1] == 0:
        raise ConvertError("Convert header: Total Length 0 (the header alone is 1 word)",
                           offset=1)
    return 4 * header[1]


def decode(data: bytes) -> tuple[Message, bytes]:
    """One whole message from the start of ``data``: (the message, the bytes after it).
    Raises ConvertError if ``data`` holds less than a whole message."""
    reader = Reader()
    message = reader.feed(data)
    if message is None:
        raise ConvertError(f"a Convert message truncated: {len(data)} bytes",
                           offset=len(data))
    return message, reader.rest


class Reader:
    """Reads one Convert message from a byte stream fed in pieces of any size.

    ``feed(data)`` returns the message once its Total Length's bytes have all come, else
    None; then ``rest`` holds the bytes that came after it (the application's), and feeding
    more is an error. It holds at most one message (1,020 bytes) beyond ``rest``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._need = 0                  # the message's length once the header was read
        self.message: Message | None = None
        self.rest = b""

    @property
    def wanted(self) -> int:
        """At most how many more bytes the message needs (4 until the header is read)."""
        if self.message is not None:
            return 0
        return (self._need or 4) - len(self._buffer)

    def feed(self, data: bytes) -> Message | None:
        """Take the next bytes of the stream: the message once it is whole, else None."""
        if self.message is not None:
            raise ConvertError("the Convert message was read already", offset=None)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        while data:
            take = self.wanted
            self._buffer += data[:take]
            data = data[take:]
            if not self._need and len(self._buffer) == 4:
                self._need = _check_header(bytes(self._buffer))
            if self._need and len(self._buffer) == self._need:
                self.message = _parse(bytes(self._buffer))
                self.rest = data
                self._buffer = bytearray()
                return self.message
        return None

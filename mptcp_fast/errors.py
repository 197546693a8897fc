"""The project's one error hierarchy (docs/design.md, "Errors and bad input").

Bytes from the network only ever raise subclasses of :class:`MptcpError`.
Errors caused by a bad value also subclass :class:`ValueError`, so callers
that already catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["MptcpError", "OptionError", "CaptureError", "PacketError", "ProtocolError",
           "MappingConflict", "UnmappedData", "ConvertError", "option_error", "conflict_text"]


class MptcpError(Exception):
    """Base class of every error this package raises on purpose."""


class OptionError(MptcpError, ValueError):
    """A TCP or MPTCP option could not be decoded or encoded.

    Attributes name where the problem is: ``option`` (e.g. ``"DSS"``),
    ``field`` (e.g. ``"length"``), ``offset`` (byte offset of the field in
    the buffer given to the parser, or ``None`` when encoding) and
    ``expected`` (what would have been valid).
    """

    def __init__(self, message: str, *, option: str | None = None, field: str | None = None,
                 offset: int | None = None, expected: str | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.field = field
        self.offset = offset
        self.expected = expected


class CaptureError(MptcpError, ValueError):
    """A capture file is truncated or corrupt (the message names the byte offset), or
    columns handed to the analyzer do not have the capture reader's layout."""

    # set by the analysis as it reads a file: the records read before the damage (None: not
    # known); 0 means nothing of the file was a capture
    records: int | None = None


class PacketError(MptcpError, ValueError):
    """Bytes that are not a whole IPv4/IPv6 TCP packet; ``reason`` is ``"truncated"``,
    ``"not tcp"`` or ``"fragment"`` (``"not ipv4"`` when an IPv4 header checksum is asked of
    an IPv6 packet). Writing one: ``"family"`` (source and destination not of one family),
    ``"options"`` (an area not a multiple of 4 bytes up to 40), ``"too long"`` (more payload
    than the IP length field can say)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# What reading a received packet can find wrong, by the status code both packet readers return
# (pyx/mf_packet.pxd's PK_* and the engine's segment reader): (PacketError.reason, message).
# Codes 1-3 come from parsing the headers; 4-6 from the engine's checks of a whole packet.
PARSE_STATUS = {
    1: ("truncated", "the bytes end inside the IP or TCP header"),
    2: ("not tcp", "not an IPv4 or IPv6 packet carrying a consistent TCP header"),
    3: ("fragment", "an IP fragment"),
    4: ("truncated", "the packet is shorter than its IP header says"),
    5: ("checksum", "bad IPv4 header checksum"),
    6: ("checksum", "bad TCP checksum"),
}


class ProtocolError(MptcpError):
    """The peer broke a rule of the protocol (e.g. a conflicting mapping)."""


class MappingConflict(ProtocolError):
    """A mapping contradicts one declared before (RFC 8684 §3.3.1: "MUST NOT change");
    the engine answers with MP_FAIL or a reset."""


class UnmappedData(ProtocolError):
    """Subflow bytes that no mapping covers (``SubflowMappings.resolve``): RFC 8684 §3.3.1
    gives them no place in the data stream."""


class ConvertError(MptcpError, ValueError):
    """Bytes that are not a well-formed 0-RTT TCP Convert message (RFC 8803), or a Convert
    value that cannot be encoded. ``code`` is the Convert error code (RFC 8803's Error TLV)
    a Transport Converter answers with: 0 (Unsupported Version) or 1 (Malformed Message) for
    what was received; ``offset`` the byte of the message where the problem is (None when
    encoding)."""

    def __init__(self, message: str, code: int = 1, offset: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


class StateError(MptcpError):
    """An engine call that the connection's state does not allow (``send()`` after
    ``close()``, ``join()`` before the connection is established, ...)."""


def conflict_text(new, start: int, end: int, dsn: int) -> str:
    """The text of a MappingConflict: mapping ``new`` against the mapped subflow bytes
    [start, end) at DSN ``dsn`` onwards (one text for both backends)."""
    return f"{new} contradicts subflow bytes {start}..{end - 1} mapped at DSN {dsn}"


def option_error(option: str, field: str, offset: int | None, expected: str, got: object) -> OptionError:
    """Build the OptionError both backends raise, so their messages are identical."""
    where = f" at offset {offset}" if offset is not None else ""
    return OptionError(f"{option}: {field}{where}: expected {expected}, got {got}",
                       option=option, field=field, offset=offset, expected=expected)

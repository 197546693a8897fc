"""TCP and MPTCP options: one immutable class per option form, and the codec.

Byte layouts follow RFC 8684 §3 (MPTCP v1), RFC 6824 §3 (v0), the
ADD_ADDR2 of draft-ietf-mptcp-rfc6824bis-00 (IETF-87 slides, docs/add-addr2.md) and
RFC 9293/7323/2018 for the plain TCP options.

The classes are defined once, in ``mptcp_fast.wire._options_common``, and exported here.
Parsing and encoding are hot paths with two implementations that share this API
(docs/design.md): ``mptcp_fast.wire._options_c`` (compiled from
``pyx/mptcp_fast/wire/_options_c.pyx``) and ``mptcp_fast.wire._options_py``; both take the
classes from ``_options_common``. ``mptcp_fast.BACKEND`` tells which one the functions below
are bound to.

Every option is a tuple subclass: cheap to build from the compiled parser,
immutable, hashable, picklable. Equality also compares the class, so a
``MpFail(5)`` never equals a ``MpFastclose(5)``.

Decoding is context-free where the bytes allow it: the subtype, the version
or IPVer nibble and the length decide the form. Pass ``segment=`` to apply
the stricter acceptance rules of Linux (docs/kernel-behaviour.md §1) on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._options_common import (  # noqa: F401  (exported)
    EOL, MAX_TCP_OPTIONS_LEN, MPC_CHECKSUM_REQUIRED, MPC_DENY_JOIN_TO_SOURCE, MPC_EXTENSIBILITY,
    MPC_HMAC, NOP, TCPOPT_MPTCP, AddAddr, AddAddr2, AddAddrV0, Dss, Eol, MalformedOption, MpCapable,
    MpExperimental, MpFail, MpFastclose, MpJoinAck, MpJoinSyn, MpJoinSynAck, MpPrio, MpTcpRst, Mss,
    Nop, Option, RemoveAddr, ResetReason, Sack, SackPermitted, Segment, Subtype, Timestamps,
    UnknownMptcpOption, UnknownTcpOption, WindowScale, _MptcpOption, _Option, check_segment)

__all__ = [
    "TCPOPT_MPTCP", "Subtype", "Segment", "ResetReason",
    "MPC_CHECKSUM_REQUIRED", "MPC_EXTENSIBILITY", "MPC_DENY_JOIN_TO_SOURCE", "MPC_HMAC",
    "Option", "Eol", "Nop", "Mss", "WindowScale", "SackPermitted", "Sack", "Timestamps", "UnknownTcpOption",
    "MpCapable", "MpJoinSyn", "MpJoinSynAck", "MpJoinAck", "Dss", "AddAddr", "AddAddrV0", "AddAddr2",
    "RemoveAddr", "MpPrio", "MpFail", "MpFastclose", "MpTcpRst", "MpExperimental",
    "UnknownMptcpOption", "MalformedOption", "EOL", "NOP", "check_segment",
    "parse_option", "parse_tcp_options", "encode_tcp_options", "encode_tcp_options_into",
    "MAX_TCP_OPTIONS_LEN",
]


# --------------------------------------------------------------------------------------------
# the codec entry points. They are the active backend's own functions (no extra Python frame
# on the hot path), put here by _bind(); their docstrings live in the backends.
#   parse_option(data, segment=None, offset=None, length=None) -> option
#   parse_tcp_options(data, segment=None, keep_malformed=False, offset=None, length=None)
#       -> list of options; ``data`` is any buffer, read in place by the compiled backend,
#       and offset/length select a slice of it (error offsets count from ``offset``)
#   encode_tcp_options(options, align=True) -> bytes
#   encode_tcp_options_into(options, buffer, offset=0, align=True) -> int (bytes written)

if TYPE_CHECKING:
    # For type checkers: the entry points' signatures are the pure twin's (the compiled twin
    # takes the same arguments and gives the same results: the parity tests hold it).
    from ._options_py import (encode_tcp_options, encode_tcp_options_into, parse_option,
                              parse_tcp_options)
else:
    parse_option = parse_tcp_options = encode_tcp_options = encode_tcp_options_into = None
_impl: Any = None


def _bind(impl: Any) -> None:
    """Point this module at a backend implementation (mptcp_fast._backend)."""
    global _impl, parse_option, parse_tcp_options, encode_tcp_options, encode_tcp_options_into
    _impl = impl
    # The hot entry points are the backend's own functions: no extra Python frame.
    _Option.encode = impl.encode_option  # type: ignore[method-assign]  # (set, not declared)
    _Option.encode_into = impl.encode_option_into  # type: ignore[method-assign]
    parse_option = impl.parse_option
    parse_tcp_options = impl.parse_tcp_options
    encode_tcp_options = impl.encode_tcp_options
    encode_tcp_options_into = impl.encode_tcp_options_into


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_options", _bind)

"""One received TCP segment, read from a whole IP packet: the header fields the engine uses and
its options sorted by what they are for. ``read_segment`` raises only PacketError (a packet cut
short, not TCP, a fragment, or a bad IPv4 header or TCP checksum); malformed options are
counted in ``malformed_options`` and otherwise ignored, as Linux ignores them (RFC 9293 §3.1
lets a receiver skip what it does not understand).

The reading is a byte-level hot path with two twins (pyx/mptcp_fast/wire/_segment_c.pyx,
compiled, and mptcp_fast/wire/_segment_py.py): the usual established layout (timestamps + DSS) is decoded
directly, anything else through the option codec. So is writing the two segments an
established subflow sends most (``data_packet``, ``ack_packet``), and any other with its
options area given as bytes (``segment_packet``). The compiled twin reads into
its own typed ``Incoming`` (the same fields), which the compiled engine reads as C fields;
the pure ``Incoming`` is defined in _segment_common.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from . import packet as _packet
from ._segment_common import Incoming  # noqa: F401  (exported; defined once there)
from ..errors import PARSE_STATUS, PacketError

if TYPE_CHECKING:
    from .._typing import BytesLike

__all__ = ["Incoming", "read_segment", "reader", "flow_key", "STATUS", "data_packet",
           "data_packet_parts", "complete_checksum", "ack_packet",
           "segment_packet"]

# read()'s status codes -> (PacketError reason, message)
STATUS = PARSE_STATUS


def read_segment(data: BytesLike, number: int = 0) -> Incoming:
    """Parse ``data`` (one whole IPv4 or IPv6 packet) and check its checksums."""
    found = _impl.read(data, number)
    if type(found) is int:
        reason, message = STATUS[found]
        raise PacketError(message, reason)
    return found


def reader() -> Callable[..., Incoming | int]:
    """The active twin's ``read(data, number, verified=False, view=False)``: an Incoming, or a
    STATUS code (an int); ``verified`` skips the TCP checksum (the local stack vouched for the
    packet); ``view`` leaves a payload of ``VIEW_PAYLOAD`` bytes or more uncopied, a view of
    ``data``, when ``data`` can never change (bytes, or a read-only view of bytes)."""
    return _impl.read


_impl: Any = None      # the active twin, _segment_c or _segment_py
# data_packet(src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr, data_ack, dsn,
#             ssn, length, checksum, payload, start, end) -> bytes: a data segment with
#             TS + DSS (ack and mapping) carrying payload[start:end], checksums written;
# data_packet_parts(...data_packet's...) -> (headers, payload view): the same segment in two
#             parts, for a writev (joined, they are data_packet's bytes);
# ack_packet(src, dst, sport, dport, seq, ack, window, tsval, tsecr, data_ack) -> bytes:
#             a pure ACK with TS + a DSS data ACK;
# segment_packet(src, dst, sport, dport, seq, ack, flags, window, area, payload) -> bytes:
#             any other segment, its options area given as bytes. The active twin's, set by
#             _bind().
# flow_key(local, lport, remote, rport) -> bytes: a subflow's key in its endpoint's table
#             (_segment_common.flow_key; the compiled twin builds it in C).
if TYPE_CHECKING:    # for type checkers: the pure twin's signatures (the compiled ones are alike)
    from ._segment_py import ack_packet, data_packet, data_packet_parts, flow_key, segment_packet
else:
    data_packet = data_packet_parts = ack_packet = segment_packet = flow_key = None


def complete_checksum(parts) -> bytes:
    """The packet of a (headers, payload) tuple made with ``partial`` (its TCP checksum field
    holding the pseudo-header sum only), joined and its checksum completed in software: what
    a device with checksum offload does."""
    packet = bytearray(b"".join(parts))
    at = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    packet[at + 16:at + 18] = _packet.tcp_checksum(packet).to_bytes(2, "big")
    return bytes(packet)


def _bind(impl: Any) -> None:
    global _impl, data_packet, data_packet_parts, ack_packet, segment_packet, flow_key
    _impl = impl
    data_packet, data_packet_parts, ack_packet, segment_packet = impl.data_packet, \
        impl.data_packet_parts, impl.ack_packet, impl.segment_packet
    flow_key = impl.flow_key


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_segment", _bind)

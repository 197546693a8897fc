"""The receive pipeline's value types, defined once: what ``mptcp_fast.wire.receiver`` (which
exports them) and both pipeline twins (``_receiver_py``, ``_receiver_c``) hand out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "DirectionCounters", "StreamCounters"]


@dataclass(frozen=True, slots=True)
class Event:
    """An anomaly at packet (or segment) ``packet`` on subflow ``subflow``; ``packets`` lists
    the packets of a mapping whose DSS checksum failed (else None)."""
    packet: int
    subflow: int
    text: str
    packets: tuple | None


@dataclass(frozen=True, slots=True)
class DirectionCounters:
    """One direction of one subflow."""
    bytes: int
    reinjected_bytes: int
    unverified_checksums: int


@dataclass(frozen=True, slots=True)
class StreamCounters:
    """One direction of a connection's data-level stream."""
    data_bytes: int
    not_captured_bytes: int
    out_of_order_bytes: int
    duplicate_bytes: int
    reinjected_bytes: int
    outside_window_bytes: int
    data_acked: int | None
    data_fin: int | None
    all_seen: bool
    gaps: int = 0                 # holes passed (DataReceiver.watch_gaps)
    missing_bytes: int = 0        # ... and the bytes in them
    late_bytes: int = 0           # bytes that arrived in a gap after it was passed
    zero_window_probes: int = 0   # Linux's one-byte probes, set aside (DataReceiver.declare)

"""What the engine tells its user: small frozen dataclasses, read with ``next_event()``.

Addresses are text ("198.18.0.1", "2001:2::1"); ``subflow_id`` is the engine's number for a
subflow, ``address_id`` the MPTCP address identifier of RFC 8684 §3.2 (0 for the initial
subflow's addresses).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "ConnectionEstablished", "SubflowEstablished", "SubflowClosed",
           "SubflowPriority",
           "DataReceived", "EndOfStream", "ConnectionTerminated", "FellBackToTcp"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every engine event; ``connection`` is the engine's id of the connection."""
    connection: int


@dataclass(frozen=True, slots=True)
class ConnectionEstablished(Event):
    """The MP_CAPABLE handshake completed (RFC 8684 §3.1); ``checksums`` tells whether DSS
    checksums were negotiated."""
    local: tuple[str, int]
    remote: tuple[str, int]
    checksums: bool


@dataclass(frozen=True, slots=True)
class SubflowEstablished(Event):
    subflow_id: int
    local: tuple[str, int]
    remote: tuple[str, int]
    local_address_id: int
    remote_address_id: int
    backup: bool


@dataclass(frozen=True, slots=True)
class SubflowClosed(Event):
    """A subflow ended: ``reason`` is "fin", "reset" (with the MP_TCPRST ``reset_reason`` when
    one came), "timeout", "aborted" or "address removed"; ``local`` and ``remote`` are its
    (address, port) pairs."""
    subflow_id: int
    reason: str
    reset_reason: int | None = None
    local: tuple[str, int] | None = None
    remote: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class SubflowPriority(Event):
    """The peer's MP_PRIO (RFC 8684 §3.3.8) made subflow ``subflow_id`` a backup (or a regular
    subflow again); ``by_peer`` is True (our own ``set_backup`` reports nothing)."""
    subflow_id: int
    backup: bool
    by_peer: bool = True


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order data-level bytes (RFC 8684 §3.3), ready to read."""
    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer's DATA_FIN was reached (RFC 8684 §3.3.3): it will send no more."""


@dataclass(frozen=True, slots=True)
class FellBackToTcp(Event):
    """The connection continues as plain TCP (RFC 8684 §3.7); ``why`` says what caused it."""
    why: str


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The connection is gone: ``reason`` is "closed" (both DATA_FINs acknowledged),
    "aborted" (by us), "fastclose" (MP_FASTCLOSE from the peer), "reset" or "timeout"."""
    reason: str

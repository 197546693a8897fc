"""What the engine tells its user: small frozen dataclasses, read with ``next_event()``.

Addresses are text ("198.18.0.1", "2001:2::1"); ``subflow_id`` is the engine's number for a
subflow, ``address_id`` the MPTCP address identifier of RFC 8684 §3.2 (0 for the initial
subflow's addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["CloseReason", "Event", "ConnectionEstablished", "SubflowEstablished", "SubflowClosed",
           "SubflowPriority",
           "DataReceived", "EndOfStream", "ConnectionTerminated", "FellBackToTcp"]


class CloseReason(str, Enum):
    """Why a subflow (``SubflowClosed.reason``) or a connection (``ConnectionTerminated.reason``)
    ended. A ``str``: each compares equal to its value ("fin", "reset", ...)."""

    CLOSED = "closed"
    """Connection: both DATA_FINs were sent and acknowledged (RFC 8684 §3.3.3)."""
    FIN = "fin"
    """Subflow: closed with FINs both ways (TIME-WAIT over, or FIN-WAIT-2 given up).
    Connection: its last subflow ended so before the DATA_FINs completed (after fallback to
    TCP the FINs are the DATA_FINs)."""
    RESET = "reset"
    """A RST from the peer (``SubflowClosed.reset_reason`` carries its MP_TCPRST reason), or
    one we sent on a protocol error (a bad MP_JOIN HMAC, a subflow over the limits)."""
    TIMEOUT = "timeout"
    """The handshake or a retransmission got no answer (``Config.syn_retries``,
    ``max_retransmits``, unanswered keepalives)."""
    ABORTED = "aborted"
    """By our user: ``Connection.abort()`` (MP_FASTCLOSE)."""
    FASTCLOSE = "fastclose"
    """MP_FASTCLOSE from the peer, with our key (RFC 8684 §3.5)."""
    ADDRESS_REMOVED = "address removed"
    """Subflow: its address is gone, ours (``Endpoint.remove_address``) or the peer's
    (REMOVE_ADDR, after the path failed to answer a probe: RFC 8684 §3.4.2). Connection: its
    last subflow went so."""
    CHECKSUM_FAILURE = "checksum failure"
    """Subflow: a DSS checksum failed on it while others remain (reset with MP_FAIL,
    RFC 8684 §3.7). Connection: its last subflow went so."""

    def __str__(self) -> str:
        return self.value


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
    """A subflow completed its handshake: the initial one, or an MP_JOIN either side opened
    (RFC 8684 §3.2). ``local`` and ``remote`` are its (address, port) pairs, the address ids
    those of RFC 8684 §3.2, and ``backup`` whether it carries data only when no other can."""
    subflow_id: int
    local: tuple[str, int]
    remote: tuple[str, int]
    local_address_id: int
    remote_address_id: int
    backup: bool


@dataclass(frozen=True, slots=True)
class SubflowClosed(Event):
    """A subflow ended, for a ``CloseReason`` (with the MP_TCPRST ``reset_reason`` when a RST
    carried one); ``local`` and ``remote`` are its (address, port) pairs."""
    subflow_id: int
    reason: CloseReason
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
    """In-order data-level bytes (RFC 8684 §3.3), ready to read: ``bytes``, or, when the
    endpoint's ``receive_views`` is set, a read-only ``memoryview`` of the received packet
    for a segment that carried 8 KiB or more (its bytes never change; ``bytes(data)`` makes
    a copy where bytes are needed)."""
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer's DATA_FIN was reached (RFC 8684 §3.3.3): it will send no more."""


@dataclass(frozen=True, slots=True)
class FellBackToTcp(Event):
    """The connection continues as plain TCP (RFC 8684 §3.7); ``why`` says what caused it."""
    why: str


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    """The connection is gone, for a ``CloseReason``: "closed" (both DATA_FINs acknowledged),
    "aborted" (by us), "fastclose" (MP_FASTCLOSE from the peer), or the reason its last
    subflow ended ("reset", "timeout", "fin", "address removed", "checksum failure")."""
    reason: CloseReason

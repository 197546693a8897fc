"""When MPTCP cannot go on as MPTCP (RFC 8684 §3.7): fallback to TCP on the initial subflow,
and the integrity of the data on the way (DSS checksums: whether they were negotiated, the
mappings held until verified, a failure's MP_FAIL both ways, the reset of a failing subflow).

A component of ``Connection``: a ``Fallback`` holds that state (why the connection fell back,
the MP_FAIL owed and the infinite mapping after it, the checksum hold and its counters) and asks
its connection for the rest only through ``FallbackOwner``, which Connection implements: the
data level itself (the allocator, the receive pipeline, the token, the other subflows) stays
the connection's, which ``continue_as_tcp`` switches to plain TCP. Compiled with the engine
(mptcp_fast._cengine.fallback, typed by its .pxd): the connection reads its fields per segment
as C fields.

    fb = Fallback(connection, cid)
    fb.negotiate(checksums)                 # the handshake's outcome (RFC 8684 §3.1)
    fb.start(now, why, sf)                  # plain TCP from here on
    fb.on_fail(sf, option, now)             # the peer's MP_FAIL
    fb.checksum_failed(sf, held, now)       # a held mapping's checksum was wrong
"""

from __future__ import annotations

from ..wire import options as opt
from mptcp_fast.engine import events as ev
from mptcp_fast.engine.events import CloseReason
from mptcp_fast.engine.integrity import ChecksumHold

__all__ = ["Fallback", "FallbackOwner"]


class FallbackOwner:
    """Everything the fallback asks of its connection (``Connection`` implements this): the
    connection's data level, its subflows' history and its events."""
    __slots__ = ()        # an interface: methods only

    def has_data_level(self) -> bool:
        """The data sequence is set up (both keys were known, or the connection fell back)."""
        raise NotImplementedError

    def only_subflow(self, sf) -> bool:
        """``sf`` is the initial subflow and the only one there has ever been (RFC 8684 §3.7:
        only then may the connection fall back)."""
        raise NotImplementedError

    def continue_as_tcp(self, sf, window, held: list, now: float) -> None:
        """Switch the data level to plain TCP on ``sf``: numbered from 1 each way when no keys
        were known (``window``: the peer's first), nothing reinjected, the subflow's bytes
        mapped one to one from its first byte, ``held`` (checksum-held mappings of ``sf``,
        taken by TCP) delivered, every other subflow reset, an unacknowledged DATA_FIN sent
        again as the TCP FIN."""
        raise NotImplementedError

    def deliver_as_tcp(self, sf, held: list) -> None:
        """Deliver the bytes of ``held`` as plain TCP's (what the path delivered)."""
        raise NotImplementedError

    def note_anomaly(self, sid: int, text: str) -> None:
        """Record an anomaly for the user (bounded)."""
        raise NotImplementedError

    def emit(self, event) -> None:
        """Queue ``event`` for the user."""
        raise NotImplementedError


class Fallback:
    """See the module text. Made by the Connection, which it serves."""

    def __init__(self, owner, cid: int):
        self.owner, self.id = owner, cid
        self.reason = None                          # why it fell back to TCP (RFC 8684 §3.7)
        self.reported = False                       # FellBackToTcp was queued
        self.reportable = False                     # ConnectionEstablished was queued
        self.checksums = False                      # DSS checksums negotiated (RFC 8684 §3.3.1)
        self.pending_fail = None                    # an MP_FAIL to send (its DSN)
        self.send_infinite_mapping = False          # the one DSS of length 0 after MP_FAIL
        self.hold = ChecksumHold()                  # checksummed mappings collecting their bytes
        self.checksums_verified = 0                 # mappings whose DSS checksum was right
        self.checksum_failures = 0
        self.mp_fail_received = 0

    # ============================================================ what the connection says
    def negotiate(self, checksums: bool) -> None:
        """The handshake's outcome: every mapping carries a DSS checksum (RFC 8684 §3.1)."""
        self.checksums = checksums

    def without_mptcp(self, why: str) -> None:
        """Server side: the handshake spoke no MPTCP (why); the fallback itself starts with the
        handshake's last segment (``start``)."""
        self.reason = why

    def established(self) -> None:
        """ConnectionEstablished was queued: a fallback is reported from now on (at once when
        the connection already fell back)."""
        self.reportable = True
        if self.reason:
            self.report()

    def report(self) -> None:
        if not self.reported:
            self.reported = True
            self.owner.emit(ev.FellBackToTcp(self.id, self.reason))

    def count_verified(self) -> None:
        """A held mapping's checksum was right."""
        self.checksums_verified += 1

    def mp_fail_seen(self) -> None:
        """An MP_FAIL arrived that is not acted upon (after fallback: the answer to ours; on a
        RST)."""
        self.mp_fail_received += 1

    def take_infinite_mapping(self) -> bool:
        """Whether the next data segment carries the infinite mapping (once, after MP_FAIL)."""
        if self.send_infinite_mapping:
            self.send_infinite_mapping = False
            return True
        return False

    def take_fail(self):
        """The DSN of the MP_FAIL owed (now sent), or None."""
        dsn, self.pending_fail = self.pending_fail, None
        return dsn

    # ============================================================ RFC 8684 §3.7
    def start(self, now: float, why: str, sf, window=None) -> None:
        """Continue as plain TCP on the initial subflow (RFC 8684 §3.7): no MPTCP option is
        sent or read from now on; the subflow's bytes map one to one onto the data sequence
        (an infinite mapping from its first byte), its ACKs are the DATA_ACKs and its FIN the
        DATA_FIN. Only while the initial subflow is the only one that ever carried data."""
        owner = self.owner
        if self.reason and owner.has_data_level():
            return
        self.reason = why
        self.checksums = False
        # bytes TCP took that waited for their checksum: now plain TCP, delivered
        owner.continue_as_tcp(sf, window, self.hold.drop(sf.sid), now)
        if self.reportable:
            self.report()

    def checksum_failed(self, sf, held, now: float) -> None:
        """RFC 8684 §3.7. On the only subflow there has ever been: MP_FAIL on an ACK and plain
        TCP from the failed mapping on (its bytes are what the path delivered). Otherwise the
        subflow is reset with MP_FAIL and MP_TCPRST "middlebox interference"; the data was
        never DATA_ACKed, so the peer sends it again on another subflow."""
        owner = self.owner
        self.checksum_failures += 1
        owner.note_anomaly(sf.sid, f"DSS checksum failure for the mapping at DSN {held.dsn}")
        if owner.only_subflow(sf):
            self.pending_fail = held.dsn
            sf.request_ack()
            self.start(now, f"DSS checksum failure at DSN {held.dsn} (MP_FAIL)", sf)
            owner.deliver_as_tcp(sf, [held])          # now plain TCP: what the path delivered
            return
        self.hold.drop(sf.sid)
        sf.close(now, CloseReason.CHECKSUM_FAILURE, reset=True,
                 mptcp=[opt.MpFail(held.dsn),
                        opt.MpTcpRst(opt.ResetReason.MIDDLEBOX_INTERFERENCE)])

    def on_fail(self, sf, o, now: float) -> None:
        """MP_FAIL on an ACK (RFC 8684 §3.7): the peer's checksum failed on our only subflow;
        answer with MP_FAIL and continue as plain TCP (an infinite mapping first). Without
        negotiated checksums no checksum can have failed: ignored (stricter than Linux,
        docs/hardening.md)."""
        self.mp_fail_received += 1
        if not self.checksums or self.reason or not self.owner.only_subflow(sf):
            return
        self.pending_fail = o.dsn
        self.send_infinite_mapping = True
        sf.request_ack()
        self.start(now, f"MP_FAIL from the peer at DSN {o.dsn}", sf)

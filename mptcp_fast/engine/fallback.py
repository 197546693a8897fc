"""When MPTCP cannot go on as MPTCP (RFC 8684 §3.7): fallback to TCP on the initial subflow,
and DSS checksum failures (the held mapping, MP_FAIL both ways, the reset of a failing subflow).
A mixin of ``Connection``: it reads and writes the connection's state.
"""

from __future__ import annotations

from ..wire import options as opt
from ..wire import receiver
from ..wire.serial import MASK64, seq64_diff
from ..errors import MptcpError
from . import events as ev
from .events import CloseReason
from .subflow import CLOSED

__all__ = ["Fallback"]


class Fallback:
    """The fallback and MP_FAIL methods of Connection (see the module text)."""
    __slots__ = ()        # methods only: the state is the Connection's (a compiled class)

    def _start_fallback(self, now: float, why: str, sf, window: int | None = None) -> None:
        """Continue as plain TCP on the initial subflow (RFC 8684 §3.7): no MPTCP option is
        sent or read from now on; the subflow's bytes map one to one onto the data sequence
        (an infinite mapping from its first byte), its ACKs are the DATA_ACKs and its FIN the
        DATA_FIN. Only while the initial subflow is the only one that ever carried data."""
        if self.fallback and self.allocator is not None:
            return
        self.fallback = why
        self.endpoint.counts["fallbacks"] += 1
        self._forget_token()
        if self.allocator is None:                  # no keys: number the data from 1 each way
            self._data_level(1, 1, 0xFFFF if window is None else window)
            self.established = True
        self.fully_established = True
        self.checksums = False
        # RFC 8684 §3.7: from now on only TCP resends, at the original subflow positions;
        # nothing queued for reinjection before the fallback may go out after it
        self.reinject.clear()
        side = self._side(sf)
        self.receiver.declare(0, side, self.remote_first_dsn, 1, 0, False, None, False)
        waiting = self.hold.drop(sf.sid)              # bytes TCP took that waited for their
        for held in waiting:                          # checksum: now plain TCP, deliver them
            for start, data in held.runs():
                self.receiver.deliver(0, side, start, len(data), data)
        if waiting:
            self._mark_data()
        for other in list(self.subflows):
            if other is not sf:
                other.close(now, CloseReason.RESET, reset=True)
        if self.fin_dsn is not None and not self.fin_acked:
            # our DATA_FIN went out as a DSS but was not acknowledged: the peer reads no DSS
            # any more, so it goes again as what a DATA_FIN is after fallback, the TCP FIN
            # (RFC 8684 §3.7; §3.3.3: it takes the stream's next sequence number); TCP
            # resends it, and its ACK is the DATA_ACK (_fallback_ack)
            self.fin_at = None
            if self.pending_fail is not None:
                sf.send_ack(now)                      # the MP_FAIL answer first, on a pure
            sf.send_fin(now)                          # ACK (as data_options sends it)
        if self.event_established:
            self._report_fallback()

    def _forget_token(self) -> None:
        """RFC 8684 §3.7: no subflow may join a connection that fell back (or never spoke
        MPTCP), so its token leaves the endpoint's table: an MP_JOIN SYN naming it is then an
        unknown token (RST with MP_TCPRST, §3.2). The token is forgotten here too, so that the
        connection's end cannot remove another connection that drew the same token since."""
        self.endpoint.tokens.remove(self.local_token)
        self.local_token = None

    def _report_fallback(self) -> None:
        if not self.fallback_reported:
            self.fallback_reported = True
            self._event(ev.FellBackToTcp(self.id, self.fallback))

    def _fallback_ack(self, sf, seg, now: float) -> None:
        """After fallback the subflow's ACK is the DATA_ACK (our FIN is the DATA_FIN)."""
        if sf.join is not None:
            return
        ack = sf.rel_ack(seg.ack)
        if not 1 <= ack <= sf.snd_nxt:
            return
        data = ack - 1
        if sf.fin_sent and ack == sf.snd_nxt:
            data -= 1
            if not self.fin_acked:
                self.fin_acked = True
                self.fin_at = None
        data_ack = (self.local_first_dsn + data) & MASK64
        before = self.allocator.data_ack
        if self.allocator.acknowledge(data_ack):
            self.retained.release(self.allocator.data_ack)
            if self.allocator.data_ack != before:
                self._space_opened()
            self._update_window(seg.window << sf.peer_wscale, data_ack)
        if self.fin_acked:
            self._check_closed(now)

    def _receive_checksummed(self, sf, seq: int, payload, seg, now: float) -> bool:
        """With DSS checksums: the bytes wait in the hold until their mapping is whole and
        verified (mptcp_fast.engine.integrity); a failure is RFC 8684 §3.7's MP_FAIL."""
        if not self.hold.covers(sf.sid, seq, len(payload)):
            if self._unmapped_means_fallback(sf, seq, seg):     # the peer fell back
                self._start_fallback(now, "data without a DSS mapping", sf)
                return self.receive_data(sf, seq, payload, seg, now)
            return False                              # no checksummed mapping (yet): not ACKed
        try:
            ranges = self._side(sf).resolve(seq, len(payload))
        except MptcpError:
            return False
        queue = self.queue
        limit = (queue.data_ack + queue.window_left) & MASK64
        if any(seq64_diff((dsn + n) & MASK64, limit) > 0 for dsn, n in ranges):
            return False                              # beyond the window: not taken
        for held in self.hold.take(sf.sid, seq, payload):
            if held.ok:
                self.checksums_verified += 1
                queue.push(held.dsn, bytes(held.data))
                self._mark_data()
            else:
                self._checksum_failed(sf, held, now)
                return sf.state != CLOSED
        self._check_eof()
        return True

    def _checksum_failed(self, sf, held, now: float) -> None:
        """RFC 8684 §3.7. On the only subflow there has ever been: MP_FAIL on an ACK and plain
        TCP from the failed mapping on (its bytes are what the path delivered). Otherwise the
        subflow is reset with MP_FAIL and MP_TCPRST "middlebox interference"; the data was
        never DATA_ACKed, so the peer sends it again on another subflow."""
        self.checksum_failures += 1
        self.anomalies.append(receiver.Event(0, sf.sid, f"DSS checksum failure for the mapping "
                                             f"at DSN {held.dsn}", None))
        self._bound_anomalies()
        if len(self.all_subflows) == 1 and sf.join is None:
            self.pending_fail = held.dsn
            sf.request_ack()
            self._start_fallback(now, f"DSS checksum failure at DSN {held.dsn} (MP_FAIL)", sf)
            for start, data in held.runs():           # now plain TCP: what the path delivered
                self.receiver.deliver(0, self._side(sf), start, len(data), data)
            self._mark_data()
            self._check_eof()
            return
        self.hold.drop(sf.sid)
        sf.close(now, CloseReason.CHECKSUM_FAILURE, reset=True,
                 mptcp=[opt.MpFail(held.dsn),
                        opt.MpTcpRst(opt.ResetReason.MIDDLEBOX_INTERFERENCE)])

    def _on_fail(self, sf, o, now: float) -> None:
        """MP_FAIL on an ACK (RFC 8684 §3.7): the peer's checksum failed on our only subflow;
        answer with MP_FAIL and continue as plain TCP (an infinite mapping first). Without
        negotiated checksums no checksum can have failed: ignored (stricter than Linux,
        docs/hardening.md)."""
        self.mp_fail_received += 1
        if not self.checksums or self.fallback or len(self.all_subflows) != 1 \
                or sf.join is not None:
            return
        self.pending_fail = o.dsn
        self.send_infinite_mapping = True
        sf.request_ack()
        self._start_fallback(now, f"MP_FAIL from the peer at DSN {o.dsn}", sf)

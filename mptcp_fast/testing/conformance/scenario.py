"""The engine's side of a conformance case, and the checks every case makes.

    with TunBed(paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, send_bytes=MIB)
        peer = KernelPeer(bed.ns, send_bytes=MIB).listen(bed.kernel_addresses[0], PORT)
        engine.open(bed.kernel_addresses[0])
        engine.exchange(peer, timeout=30)
        judge_exact(judge, engine, peer)
"""

from __future__ import annotations

from ...engine import Config, Endpoint
from ...engine import events as ev
from ...sim.apps import BulkApp
from ..testbed import JOIN_WAIT
from ...net.tunhost import TunHost

__all__ = ["PORT", "MIB", "Engine", "judge_exact", "established", "fell_back"]

PORT = 5000
MIB = 1 << 20
HOLD = 0.3          # seconds a side that sends little keeps its stream open (see Engine)


class Engine:
    """An Endpoint with a BulkApp on the bed's TUN device. ``send_bytes`` of the seeded stream
    go on every connection; ``hold``: the stream is ended no earlier than this many seconds
    after the connection is established, as the kernel's selftests wait before they close
    (Linux opens and accepts MP_JOINs only while its MPTCP socket is ESTABLISHED, not once a
    DATA_FIN arrived). ``subflows``: the hold also lasts until that many subflows are
    established, for at most JOIN_WAIT seconds: a lost MP_JOIN SYN or SYN/ACK is sent again
    only after a 1 s SYN timeout, by when a short transfer is over (and Linux abandons a join
    still in SYN-SENT once its socket shuts down). ``config``: Config fields (offload on unless
    said)."""

    def __init__(self, bed, addresses, send_bytes: int = 0, seed: int = 3, hold: float = HOLD,
                 subflows: int = 1, **config):
        config.setdefault("offload", True)
        self.endpoint = Endpoint(list(addresses), Config(**config))
        self.app = BulkApp(self.endpoint, send_bytes=send_bytes, seed=seed,
                           close_when_done=hold <= 0, wait_for_peer=False)
        self.host = TunHost(self.app, bed.device)
        self.hold = hold
        self.subflows = subflows
        self.started = None

    @property
    def transfer(self):
        """The one connection's Transfer (None before it exists)."""
        for transfer in self.app.transfers.values():
            return transfer
        return None

    def listen(self, port: int = PORT) -> "Engine":
        self.endpoint.listen(port)
        self.started = self.host.clock()
        return self

    def open(self, address: str, port: int = PORT):
        self.started = self.host.clock()
        return self.app.open((address, port), self.started)

    def run(self, until, timeout: float) -> bool:
        """Turn the host until ``until()`` (True) or ``timeout`` seconds (False), ending our
        stream once the hold is over."""
        def check():
            if not self.app.close_when_done and self._hold_over():
                self.app.close_when_done = True
                self.app.run(self.host.clock())
            return until()
        return self.host.run(until=check, timeout=timeout)

    def _hold_over(self) -> bool:
        transfer = self.transfer
        if transfer is None or transfer.established_at is None:
            return False
        held = self.host.clock() - transfer.established_at
        return held >= self.hold and (len(established(transfer)) >= self.subflows
                                      or held >= JOIN_WAIT)

    def exchange(self, peer, timeout: float) -> bool:
        """Run until the kernel's peer and our side both read the other's whole stream; join
        the peer's thread. True when both finished in time."""
        done = self.run(lambda: peer.done() and self.transfer is not None and self.transfer.eof,
                        timeout)
        peer.join()
        return done

    def elapsed(self, peer) -> float:
        """Seconds from open/listen until both sides read the other's whole stream (our
        transfer's end of stream, the kernel's peer's; the host's clock is the monotonic
        one, as the peer's)."""
        transfer = self.transfer
        ours = transfer.eof_at if transfer is not None and transfer.eof_at else None
        theirs = peer.finished_at
        if ours is None or theirs is None:
            return self.host.clock() - self.started
        return max(ours, theirs) - self.started


def established(transfer) -> list:
    """The SubflowEstablished events of a transfer."""
    return [e for _, e in transfer.subflow_events if type(e) is ev.SubflowEstablished]


def fell_back(engine: Engine) -> bool:
    return any(type(e) is ev.FellBackToTcp for e in engine.app.events)


def judge_exact(judge, engine: Engine, peer, finished: bool = True) -> None:
    """Every byte both ways, in order, once: the SHA-256 of what each side sent equals what the
    other received, and the sizes agree."""
    transfer = engine.transfer
    judge.check("both ends finished in time", finished)
    judge.check("the kernel's side raised nothing", peer.error is None)
    if transfer is None:
        judge.check("a connection was made", False)
        return
    judge.equal("bytes the kernel received", peer.received, transfer.sent)
    judge.check("the kernel received exactly what we sent",
                peer.received_sha256 == transfer.sent_hash.hexdigest())
    judge.check("we received exactly what the kernel sent",
                transfer.received_hash.hexdigest() == peer.sent_sha256)

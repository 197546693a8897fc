"""The retransmission timer of one subflow (RFC 6298).

    est = RttEstimator()
    est.sample(0.012)          # a measured round trip, in seconds (never of a retransmitted
                               # segment: Karn's algorithm, RFC 6298 §3, is the caller's part)
    est.rto                    # the timeout to arm; est.back_off() after it fires
"""

from __future__ import annotations

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

__all__ = ["RttEstimator"]

if not cython.compiled:     # compiled: pyx/mf_gc.pxd's C call, cimported by rtt.pxd
    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (numbers and bytes only: never in a
        reference cycle); the pure run has nothing to do."""

ALPHA, BETA, K = 1 / 8, 1 / 4, 4          # RFC 6298 §2.3
G = 0.001                                 # clock granularity: the virtual clock's millisecond


class RttEstimator:
    """SRTT, RTTVAR and RTO as RFC 6298 §2 computes them. ``min_rto`` defaults to Linux's 200 ms
    (TCP_RTO_MIN; RFC 6298 §2.4 asks for 1 s, which Linux and most stacks lower); ``max_rto`` to
    Linux's 120 s (RFC 6298 §2.5 allows any maximum of at least 60 s); before any sample the
    RTO is ``initial_rto`` (1 s, §2.1)."""

    def __init__(self, min_rto: float = 0.2, max_rto: float = 120.0, initial_rto: float = 1.0):
        if not 0 < min_rto <= initial_rto <= max_rto:
            raise ValueError("need 0 < min_rto <= initial_rto <= max_rto")
        self.min_rto, self.max_rto = min_rto, max_rto
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest: float | None = None
        self.min_rtt: float | None = None
        self.rto = initial_rto              # the timeout to arm (read it; set by the calls)
        self.backoffs = 0
        if cython.compiled:                 # numbers only: the collector need not track it
            _untrack(self)

    def sample(self, rtt: float) -> None:
        """A round-trip measurement (§2.2-2.3); it also ends any backoff (§5.7 leaves keeping
        the backed-off value until a new sample)."""
        if not rtt >= 0:
            raise ValueError(f"an RTT sample must be >= 0 seconds, got {rtt!r}")
        self.latest = rtt
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if self.srtt is None:                                  # §2.2: the first measurement
            self.srtt, self.rttvar = rtt, rtt / 2
        else:                                                  # §2.3
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + max(G, K * self.rttvar)))
        self.backoffs = 0

    def back_off(self) -> None:
        """The retransmission timer expired: double the RTO, up to the maximum (§5.5)."""
        self.rto = min(self.max_rto, self.rto * 2)
        self.backoffs += 1

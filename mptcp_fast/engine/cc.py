"""Congestion control per subflow, behind one small interface (issue #11).

    cc = Lia()                              # or Reno(), Cubic(); one controller per connection
    w = cc.add_subflow(mss=1448)            # a Window: cwnd and ssthresh in bytes
    w.srtt = 0.012                          # the subflow's smoothed RTT, kept by its RttEstimator
    cc.on_ack(w, acked_bytes, now)          # new data acknowledged (not in recovery)
    cc.on_loss(w, flight_size, now)         # a loss detected by duplicate ACKs or SACK
    cc.on_timeout(w, flight_size, now)      # the retransmission timer fired
    w.can_send(bytes_in_flight, size)

* Reno: RFC 5681 — slow start with appropriate byte counting (cwnd grows by the bytes
  acknowledged, at most one MSS per ACK: RFC 3465 with L = 1), congestion avoidance by
  acked * MSS / cwnd per ACK, ssthresh = max(FlightSize / 2, 2 MSS) on a loss and cwnd = 1 MSS
  after a timeout (the loss window, §3.1).
* LIA: RFC 6356, the default of MPTCP: Reno on each subflow except the increase in congestion
  avoidance, which is coupled across the connection's subflows:
  min(alpha * acked * MSS_i / cwnd_total, acked * MSS_i / cwnd_i), at least one byte, with
  alpha = cwnd_total * max_i(cwnd_i / rtt_i^2) / (sum_i cwnd_i / rtt_i)^2 (§3, eq. 1 and 2).
* CUBIC: RFC 9438, what Linux runs on each subflow, uncoupled: W_cubic(t) = C (t - K)^3 +
  W_max with C = 0.4 and beta = 0.7, the Reno-friendly estimate, and fast convergence.

The initial window is RFC 6928's: min(10 MSS, max(2 MSS, 14,600 bytes)).
"""

from __future__ import annotations

import math

__all__ = ["Window", "Controller", "Reno", "Lia", "Cubic", "CONTROLLERS"]


class Window:
    """One subflow's congestion state, in bytes."""
    __slots__ = ("mss", "cwnd", "ssthresh", "srtt", "w_max", "k", "epoch_start", "w_est",
                 "origin")

    def __init__(self, mss: int):
        if not 64 <= mss <= 65535:
            raise ValueError(f"mss must be 64..65535 bytes, got {mss}")
        self.mss = mss
        self.cwnd = float(min(10 * mss, max(2 * mss, 14600)))        # RFC 6928 §2
        self.ssthresh = math.inf
        self.srtt: float | None = None
        # CUBIC state (RFC 9438 §4), in segments and seconds
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0
        self.origin = 0.0

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def can_send(self, in_flight: int, size: int) -> bool:
        """Whether ``size`` more bytes fit the window with ``in_flight`` outstanding."""
        return in_flight + size <= self.cwnd


class Controller:
    """The interface; subclasses decide the congestion-avoidance increase and the reaction to
    a loss. One controller per connection, so a coupled one sees every subflow."""
    name = "base"

    def __init__(self):
        self.windows: list[Window] = []

    def add_subflow(self, mss: int) -> Window:
        window = Window(mss)
        self.windows.append(window)
        return window

    def remove_subflow(self, window: Window) -> None:
        self.windows.remove(window)

    def on_ack(self, w: Window, acked: int, now: float) -> None:
        if acked <= 0:
            return
        if w.in_slow_start:                                  # RFC 5681 §3.1, RFC 3465 (L = 1)
            w.cwnd += min(acked, w.mss)
            return
        self._avoid(w, acked, now)

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        raise NotImplementedError

    def on_loss(self, w: Window, flight_size: int, now: float) -> None:
        """Multiplicative decrease (RFC 5681 §3.2): ssthresh = max(FlightSize / 2, 2 MSS) and
        the window continues from there after recovery."""
        w.ssthresh = max(flight_size / 2, 2 * w.mss)
        w.cwnd = w.ssthresh

    def on_timeout(self, w: Window, flight_size: int, now: float) -> None:
        """RFC 5681 §3.1: ssthresh as for a loss, and cwnd back to the loss window, 1 MSS."""
        w.ssthresh = max(flight_size / 2, 2 * w.mss)
        w.cwnd = float(w.mss)


class Reno(Controller):
    """RFC 5681, uncoupled."""
    name = "reno"

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        w.cwnd += acked * w.mss / w.cwnd


class Lia(Controller):
    """RFC 6356 Linked Increases: coupled congestion avoidance, Reno otherwise."""
    name = "lia"

    def alpha(self) -> float:
        """Eq. 2 over the subflows that have an RTT estimate (1 when none has: Reno)."""
        measured = [w for w in self.windows if w.srtt]
        if not measured:
            return 1.0
        total = sum(w.cwnd for w in self.windows)
        best = max(w.cwnd / (w.srtt * w.srtt) for w in measured)
        denominator = sum(w.cwnd / w.srtt for w in measured) ** 2
        return total * best / denominator

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        total = sum(x.cwnd for x in self.windows)
        coupled = self.alpha() * acked * w.mss / total
        increase = min(coupled, acked * w.mss / w.cwnd)
        w.cwnd += max(increase, 1.0)            # "the increase MUST be set to 1" (§3)


class Cubic(Controller):
    """RFC 9438 CUBIC, uncoupled (as Linux runs on each MPTCP subflow)."""
    name = "cubic"
    C = 0.4
    BETA = 0.7
    ALPHA = 3 * (1 - BETA) / (1 + BETA)         # the Reno-friendly increase (§4.3)

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        segments = w.cwnd / w.mss
        if w.epoch_start is None:                # §4.2: a new congestion-avoidance epoch
            w.epoch_start = now
            if segments < w.w_max:
                w.k = ((w.w_max - segments) / self.C) ** (1 / 3)
                w.origin = w.w_max
            else:
                w.k, w.origin = 0.0, segments
            w.w_est = segments
        rtt = w.srtt or 0.0
        t = now - w.epoch_start
        target = self.C * (t + rtt - w.k) ** 3 + w.origin           # W_cubic(t + RTT), §4.4
        target = min(max(target, segments), 1.5 * segments)
        w.w_est += self.ALPHA * (acked / w.mss) / segments           # §4.3
        cubic_now = self.C * (t - w.k) ** 3 + w.origin
        if cubic_now < w.w_est:                                      # the Reno-friendly region
            w.cwnd = max(w.cwnd, w.w_est * w.mss)
        else:
            w.cwnd += (target - segments) / segments * acked
        return

    def _reduce(self, w: Window) -> None:
        segments = w.cwnd / w.mss
        if segments < w.w_max:                   # fast convergence (§4.7)
            w.w_max = segments * (1 + self.BETA) / 2
        else:
            w.w_max = segments
        w.epoch_start = None

    def on_loss(self, w: Window, flight_size: int, now: float) -> None:
        """§4.6: W_max is the window at the loss; ssthresh = cwnd * beta (not below 2 MSS)."""
        self._reduce(w)
        w.ssthresh = max(w.cwnd * self.BETA, 2 * w.mss)
        w.cwnd = w.ssthresh

    def on_timeout(self, w: Window, flight_size: int, now: float) -> None:
        """§4.8: as a loss for W_max and ssthresh, then the loss window of 1 MSS."""
        self._reduce(w)
        w.ssthresh = max(w.cwnd * self.BETA, 2 * w.mss)
        w.cwnd = float(w.mss)


CONTROLLERS = {"lia": Lia, "reno": Reno, "cubic": Cubic}

"""Congestion control per subflow, behind one small interface.

    cc = Lia()                              # or Reno(), Cubic(); one controller per connection
    w = cc.add_subflow(mss=1448)            # a Window: cwnd and ssthresh in bytes
    w.srtt = 0.012                          # the subflow's smoothed RTT, kept by its RttEstimator
    cc.on_ack(w, acked_bytes, now)          # new data acknowledged (not in recovery)
    cc.on_loss(w, flight_size, now)         # a loss detected by duplicate ACKs or SACK
    cc.on_timeout(w, flight_size, now)      # the retransmission timer fired
    w.can_send(bytes_in_flight, size)

* Reno: RFC 5681 — slow start with appropriate byte counting (cwnd grows by the bytes
  acknowledged, at most one MSS per full-sized segment the ACK newly delivers: Linux's
  tcp_slow_start, where RFC 3465 would cap it at L = 2 MSS per ACK), congestion avoidance by
  acked * MSS / cwnd per ACK, ssthresh = max(FlightSize / 2, 2 MSS) on a loss and cwnd = 1 MSS
  after a timeout (the loss window, §3.1).
* LIA: RFC 6356, the default of MPTCP: Reno on each subflow except the increase in congestion
  avoidance, which is coupled across the connection's subflows:
  min(alpha * acked * MSS_i / cwnd_total, acked * MSS_i / cwnd_i), at least one byte, with
  alpha = cwnd_total * max_i(cwnd_i / rtt_i^2) / (sum_i cwnd_i / rtt_i)^2 (§3, eq. 1 and 2).
* OLIA and BALIA: the two coupled alternatives of the out-of-tree Linux MPTCP (their classes
  say the formulas).
* CUBIC: RFC 9438, what Linux runs on each subflow, uncoupled: W_cubic(t) = C (t - K)^3 +
  W_max with C = 0.4 and beta = 0.7, the Reno-friendly estimate, and fast convergence.

The initial window is RFC 6928's: min(10 MSS, max(2 MSS, 14,600 bytes)).

Slow start ends early when the path's queue starts to grow (HyStart's delay test, as Linux's
CUBIC runs it and RFC 9406 §4.2 states it): the subflow hands every RTT sample of an ACK in
slow start to ``cc.rtt_sample(w, rtt, ack, snd_nxt)``; when the smallest of the first 8
samples of a round lies at least clamp(last round's smallest / 8, 4 ms, 16 ms) above the
last round's smallest, ssthresh becomes cwnd. Without it, slow start doubles the window until
a deep buffer overflows and drops up to half a window at once. (On detection Linux goes to
congestion avoidance directly, as done here; RFC 9406 would first run Conservative Slow Start.)
"""

from __future__ import annotations

import math

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

__all__ = ["Window", "Controller", "Reno", "Lia", "Olia", "Balia", "Cubic", "CONTROLLERS"]

if not cython.compiled:     # compiled: pyx/mf_gc.pxd's C call, cimported by cc.pxd
    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (numbers and bytes only: never in a
        reference cycle); the pure run has nothing to do."""

HYSTART_SAMPLES = 8              # RTT samples a round's smallest is taken from (N_RTT_SAMPLE)
HYSTART_LOW_WINDOW = 16          # segments below which slow start always goes on (Linux)
HYSTART_MIN_DELAY = 0.004        # the delay increase that counts, clamped (MIN_RTT_THRESH)
HYSTART_MAX_DELAY = 0.016        # (MAX_RTT_THRESH)
_INF = math.inf                  # (a C double where compiled: read per ACK)


class Window:
    """One subflow's congestion state, in bytes."""
    __slots__ = ("mss", "cwnd", "ssthresh", "srtt", "w_max", "k", "epoch_start", "w_est",
                 "origin", "acked_before_loss", "acked_since_loss", "round_end", "round_min",
                 "last_round_min", "round_samples", "hystart_exit")

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
        # OLIA's l1 and l2: bytes acknowledged between the last two losses, and since the last
        self.acked_before_loss = 0
        self.acked_since_loss = 0
        # HyStart (see the module text): the round ends when ``round_end`` is acknowledged
        self.round_end = 0
        self.round_min = math.inf                # the smallest RTT sample of this round
        self.last_round_min = math.inf           # ... and of the last one
        self.round_samples = 0
        self.hystart_exit = False                # slow start was left on a delay increase
        if cython.compiled:                 # numbers only: the collector need not track it
            _untrack(self)

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

    def __init__(self, hystart: bool = True):
        self.windows: list[Window] = []
        self.hystart = hystart                   # the delay test of the module text

    def add_subflow(self, mss: int) -> Window:
        window = Window(mss)
        self.windows.append(window)
        return window

    def remove_subflow(self, window: Window) -> None:
        self.windows.remove(window)

    def rtt_sample(self, w: Window, rtt: float, ack: int, snd_nxt: int) -> None:
        """HyStart's delay test (see the module text) on one RTT sample (seconds) of an ACK
        for ``ack``, ``snd_nxt`` being the next sequence number to send, both relative."""
        if not self.hystart or not w.cwnd < w.ssthresh:     # (in_slow_start, as C fields)
            return
        if ack >= w.round_end:                   # a new round: what was sent is the next
            w.round_end = snd_nxt
            w.last_round_min = w.round_min
            w.round_min = _INF
            w.round_samples = 0
        w.round_samples += 1
        if w.round_samples > HYSTART_SAMPLES:
            return
        if rtt < w.round_min:
            w.round_min = rtt
        if w.round_samples == HYSTART_SAMPLES and w.last_round_min != _INF \
                and w.cwnd >= HYSTART_LOW_WINDOW * w.mss:
            threshold = min(max(w.last_round_min / 8, HYSTART_MIN_DELAY), HYSTART_MAX_DELAY)
            if w.round_min >= w.last_round_min + threshold:
                w.ssthresh = w.cwnd
                w.hystart_exit = True

    def on_ack(self, w: Window, acked: int, now: float, segments: int = 1) -> None:
        """``acked`` new bytes acknowledged by one ACK that newly delivered ``segments``
        full-sized segments (not SACKed before: Subflow._cumulative_ack). Slow start grows by
        the bytes acknowledged, at most one MSS per segment delivered: as Linux's
        tcp_slow_start, an ACK for N segments (a delayed ACK, a coalescing NIC, an offloaded
        segment) counts as N ACKs for one (RFC 3465 would cap N at 2)."""
        if acked <= 0:
            return
        if w.cwnd < w.ssthresh:               # in slow start: RFC 5681 §3.1, RFC 3465
            w.cwnd += min(acked, max(1, segments) * w.mss)
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
        total = best = rate_sum = 0.0
        measured = False
        for x in self.windows:                  # one pass: this runs on every ACK
            total += x.cwnd
            if x.srtt:
                measured = True
                rtt = x.srtt
                best = max(best, x.cwnd / (rtt * rtt))
                rate_sum += x.cwnd / rtt
        if not measured:
            return 1.0
        return total * best / (rate_sum * rate_sum)

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        total = 0.0
        for x in self.windows:
            total += x.cwnd
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


class Olia(Controller):
    """OLIA (Khalili et al., "MPTCP is not Pareto-optimal", CoNEXT 2012; the formula of
    draft-khalili-mptcp-congestion-control as the out-of-tree Linux mptcp_olia.c runs it).

    In packets: on each ACK in congestion avoidance on path r,
    w_r += (w_r / rtt_r^2) / (sum_p w_p / rtt_p)^2 + alpha_r / w_r, where with
    l_r = max(bytes acked between the last two losses, bytes since the last), M the paths with
    the largest window and B the paths with the largest l_r / rtt_r^2, alpha_r is
    1 / (|P| |B-M|) on the paths of B-M (the best paths without the largest window),
    -1 / (|P| |M|) on the paths of M when B-M is not empty, and 0 otherwise. Losses halve
    the window as Reno does; slow start is Reno's.
    """
    name = "olia"

    def on_ack(self, w: Window, acked: int, now: float, segments: int = 1) -> None:
        if acked > 0:
            w.acked_since_loss += acked
        super().on_ack(w, acked, now, segments)

    def _loss_seen(self, w: Window) -> None:
        w.acked_before_loss, w.acked_since_loss = w.acked_since_loss, 0

    def on_loss(self, w: Window, flight_size: int, now: float) -> None:
        self._loss_seen(w)
        super().on_loss(w, flight_size, now)

    def on_timeout(self, w: Window, flight_size: int, now: float) -> None:
        self._loss_seen(w)
        super().on_timeout(w, flight_size, now)

    def alpha(self, w: Window) -> float:
        paths = [x for x in self.windows if x.srtt]
        if w not in paths:
            return 0.0
        largest = max(x.cwnd for x in paths)
        best_quality = max(max(x.acked_before_loss, x.acked_since_loss) / (x.srtt * x.srtt)
                           for x in paths)
        in_m = [x for x in paths if x.cwnd == largest]
        in_b = [x for x in paths
                if max(x.acked_before_loss, x.acked_since_loss) / (x.srtt * x.srtt) == best_quality]
        b_not_m = [x for x in in_b if x not in in_m]
        if not b_not_m:
            return 0.0
        if w in b_not_m:
            return 1.0 / (len(paths) * len(b_not_m))
        if w in in_m:
            return -1.0 / (len(paths) * len(in_m))
        return 0.0

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        if not w.srtt:
            w.cwnd += acked * w.mss / w.cwnd                  # no RTT yet: Reno
            return
        mss = w.mss
        packets = w.cwnd / mss
        total = sum((x.cwnd / mss) / x.srtt for x in self.windows if x.srtt)
        increase = (packets / (w.srtt * w.srtt)) / (total * total) + self.alpha(w) / packets
        w.cwnd = max(w.cwnd + increase * acked, float(mss))  # acked/mss packets, in bytes


class Balia(Controller):
    """BALIA (Peng, Walid, Hwang, Low, IEEE/ACM ToN 24(1), 2016; as the out-of-tree Linux
    mptcp_balia.c runs it). With x_r = w_r / rtt_r and alpha_r = max_k x_k / x_r, in packets:
    per ACK in congestion avoidance w_r += x_r / (rtt_r (sum_k x_k)^2) * (1 + alpha_r) / 2 *
    (4 + alpha_r) / 5, and per loss w_r -= w_r / 2 * min(alpha_r, 1.5)."""
    name = "balia"

    def _rates(self, w: Window):
        paths = [x for x in self.windows if x.srtt]
        rates = {id(x): (x.cwnd / x.mss) / x.srtt for x in paths}
        return rates, max(rates.values()) if rates else 0.0

    def _avoid(self, w: Window, acked: int, now: float) -> None:
        rates, best = self._rates(w)
        if not w.srtt or id(w) not in rates:
            w.cwnd += acked * w.mss / w.cwnd
            return
        x = rates[id(w)]
        total = sum(rates.values())
        alpha = best / x
        increase = x / (w.srtt * total * total) * (1 + alpha) / 2 * (4 + alpha) / 5
        w.cwnd += increase * acked                              # acked/mss packets, in bytes

    def _decrease(self, w: Window) -> float:
        rates, best = self._rates(w)
        if id(w) not in rates:
            return w.cwnd / 2
        alpha = best / rates[id(w)]
        return max(w.cwnd - w.cwnd / 2 * min(alpha, 1.5), 2.0 * w.mss)

    def on_loss(self, w: Window, flight_size: int, now: float) -> None:
        w.ssthresh = max(self._decrease(w), 2 * w.mss)
        w.cwnd = w.ssthresh

    def on_timeout(self, w: Window, flight_size: int, now: float) -> None:
        w.ssthresh = max(self._decrease(w), 2 * w.mss)
        w.cwnd = float(w.mss)


CONTROLLERS = {"lia": Lia, "olia": Olia, "balia": Balia, "reno": Reno, "cubic": Cubic}

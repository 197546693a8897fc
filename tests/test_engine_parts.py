"""The engine's first parts: the retransmission timer (RFC 6298), congestion control
(RFC 5681 Reno, RFC 6356 LIA, RFC 9438 CUBIC) and the events, checked against the RFCs'
formulas computed here independently."""

from __future__ import annotations

import dataclasses

import types

import pytest

from mptcp_fast.engine import cc, events
from mptcp_fast.engine.rtt import RttEstimator

MSS = 1000


# ------------------------------------------------------------------------------------ RFC 6298

def test_rto_follows_rfc_6298():
    est = RttEstimator(min_rto=0.001)
    assert est.rto == 1.0                                    # §2.1, before any sample
    est.sample(0.100)                                        # §2.2
    assert (est.srtt, est.rttvar) == (0.100, 0.050)
    assert est.rto == pytest.approx(0.100 + 4 * 0.050)
    est.sample(0.200)                                        # §2.3
    rttvar = 0.75 * 0.050 + 0.25 * abs(0.100 - 0.200)
    srtt = 0.875 * 0.100 + 0.125 * 0.200
    assert (est.srtt, est.rttvar) == (pytest.approx(srtt), pytest.approx(rttvar))
    assert est.rto == pytest.approx(srtt + 4 * rttvar)


def test_rto_bounds_and_backoff():
    est = RttEstimator(min_rto=0.2, max_rto=60.0)
    est.sample(0.010)
    assert est.rto == 0.2                                    # the minimum (Linux's 200 ms)
    for _ in range(3):
        est.back_off()
    assert est.rto == pytest.approx(1.6) and est.backoffs == 3
    for _ in range(10):
        est.back_off()
    assert est.rto == 60.0                                   # §5.5: capped
    est.sample(0.010)
    assert est.rto == 0.2 and est.backoffs == 0
    with pytest.raises(ValueError):
        est.sample(-1)
    with pytest.raises(ValueError):
        RttEstimator(min_rto=2.0, initial_rto=1.0)


# --------------------------------------------------------------------------------- RFC 5681

def test_reno_slow_start_avoidance_loss_and_timeout():
    reno = cc.Reno()
    w = reno.add_subflow(MSS)
    assert w.cwnd == 10 * MSS and w.in_slow_start               # RFC 6928 initial window
    for _ in range(10):                                          # one RTT of full-sized ACKs
        reno.on_ack(w, MSS, 0.0)
    assert w.cwnd == 20 * MSS                                    # slow start doubles per RTT
    reno.on_ack(w, 5 * MSS, 0.0)                                 # a stretch ACK: at most 1 MSS
    assert w.cwnd == 21 * MSS
    reno.on_loss(w, 20 * MSS, 0.0)
    assert (w.ssthresh, w.cwnd) == (10 * MSS, 10 * MSS) and not w.in_slow_start
    before = w.cwnd
    for _ in range(10):                                          # one RTT in avoidance
        reno.on_ack(w, MSS, 0.0)
    assert before + 0.9 * MSS < w.cwnd < before + MSS            # about one MSS per RTT
    reno.on_timeout(w, 4 * MSS, 0.0)
    assert (w.cwnd, w.ssthresh) == (MSS, 2 * MSS)                # loss window; ssthresh >= 2 MSS
    assert w.can_send(0, MSS) and not w.can_send(1, MSS)


# --------------------------------------------------------------------------------- RFC 6356

def rfc6356_alpha(cwnds, rtts):
    total = sum(cwnds)
    return total * max(c / r ** 2 for c, r in zip(cwnds, rtts)) / \
        sum(c / r for c, r in zip(cwnds, rtts)) ** 2


def lia_with(cwnds, rtts):
    return coupled_with(cc.Lia, cwnds, rtts)


def test_lia_alpha_is_rfc_6356_equation_2():
    cwnds, rtts = [20 * MSS, 50 * MSS, 8 * MSS], [0.010, 0.040, 0.100]
    lia, windows = lia_with(cwnds, rtts)
    assert lia.alpha() == pytest.approx(rfc6356_alpha(cwnds, rtts))


def test_lia_increase_is_rfc_6356_equation_1():
    cwnds, rtts = [20 * MSS, 50 * MSS], [0.010, 0.040]
    lia, (a, b) = lia_with(cwnds, rtts)
    alpha, total = rfc6356_alpha(cwnds, rtts), sum(cwnds)
    lia.on_ack(b, MSS, 0.0)
    expected = min(alpha * MSS * MSS / total, MSS * MSS / (50 * MSS))
    assert b.cwnd == pytest.approx(50 * MSS + expected)


def test_lia_on_one_subflow_is_reno_and_two_equal_ones_share_its_increase():
    lia, (w,) = lia_with([20 * MSS], [0.02])
    reno = cc.Reno()
    r = reno.add_subflow(MSS)
    r.cwnd, r.ssthresh = 20.0 * MSS, 1.0
    lia.on_ack(w, MSS, 0.0)
    reno.on_ack(r, MSS, 0.0)
    assert w.cwnd == pytest.approx(r.cwnd)                      # alpha = 1 with one subflow
    lia, (a, b) = lia_with([20 * MSS, 20 * MSS], [0.02, 0.02])
    assert lia.alpha() == pytest.approx(0.5)
    lia.on_ack(a, MSS, 0.0)                                     # 0.5 * MSS^2 / (40 MSS)
    assert a.cwnd == pytest.approx(20 * MSS + MSS / 80)


def test_lia_increase_is_at_least_one_byte():
    lia, (w,) = lia_with([10 ** 9], [0.05])
    lia.on_ack(w, 1, 0.0)
    assert w.cwnd == 10 ** 9 + 1


# --------------------------------------------------------------------------------- RFC 9438

def test_cubic_returns_to_w_max_after_k_seconds():
    """After a loss at 100 segments: cwnd 70 segments, K = cbrt((100 - 70) / 0.4) s; fed one
    ACK per segment each RTT, the window is concave below W_max before K and about W_max at K."""
    cubic = cc.Cubic()
    w = cubic.add_subflow(MSS)
    w.cwnd, w.ssthresh, w.srtt = 100.0 * MSS, 1.0, 0.1
    cubic.on_loss(w, 100 * MSS, 0.0)
    assert w.cwnd == 70 * MSS and w.w_max == 100
    k = (30 / 0.4) ** (1 / 3)
    now, trace = 0.0, []
    while now < 2 * k:
        for _ in range(int(w.cwnd // MSS)):
            cubic.on_ack(w, MSS, now)
        now += 0.1
        trace.append((now, w.cwnd / MSS))
    at_k = min(trace, key=lambda p: abs(p[0] - k))[1]
    half = min(trace, key=lambda p: abs(p[0] - k / 2))[1]
    assert w.k == pytest.approx(k)
    assert 97 < at_k < 104                                      # W_cubic(K) = W_max
    assert 85 < half < 100                                      # concave: most of the way back
    assert trace[-1][1] > 110                                   # convex beyond W_max


def test_cubic_fast_convergence_and_timeout():
    cubic = cc.Cubic()
    w = cubic.add_subflow(MSS)
    w.cwnd, w.ssthresh = 100.0 * MSS, 1.0
    cubic.on_loss(w, 0, 0.0)
    assert w.w_max == 100 and w.cwnd == 70 * MSS
    cubic.on_loss(w, 0, 1.0)                                    # below the last W_max
    assert w.w_max == pytest.approx(70 * (1 + 0.7) / 2)         # §4.7 fast convergence
    cubic.on_timeout(w, 0, 2.0)
    assert w.cwnd == MSS and w.ssthresh == pytest.approx(max(49 * MSS * 0.7, 2 * MSS))


def test_controllers_by_name():
    assert set(cc.CONTROLLERS) == {"lia", "olia", "balia", "reno", "cubic"}
    assert all(cls.name == name for name, cls in cc.CONTROLLERS.items())
    with pytest.raises(ValueError):
        cc.Reno().add_subflow(10)


# ------------------------------------------------------------------------------------ events

def test_events_are_frozen_and_compare_by_value():
    e = events.SubflowClosed(1, subflow_id=2, reason="reset", reset_reason=4)
    assert e == events.SubflowClosed(1, 2, "reset", 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.reason = "fin"
    assert isinstance(events.DataReceived(1, b"x"), events.Event)
    assert [f.name for f in dataclasses.fields(events.ConnectionEstablished)] == [
        "connection", "local", "remote", "checksums"]


# ------------------------------------------------------------------------- RFC 6528 ISNs

def test_isn_is_a_keyed_hash_plus_a_4_microsecond_clock():
    import hashlib
    import hmac as hmac_module
    from mptcp_fast.engine.isn import IsnGenerator
    secret = bytes(range(32))
    gen = IsnGenerator(secret)
    tuple_ = ("198.18.0.1", 40000, "198.18.0.2", 80)
    f = int.from_bytes(hmac_module.new(secret, bytes([198, 18, 0, 1]) + (40000).to_bytes(2, "big")
                                       + bytes([198, 18, 0, 2]) + (80).to_bytes(2, "big"),
                                       hashlib.sha256).digest()[:4], "big")
    assert gen.isn(*tuple_, now=0.0) == f
    assert gen.isn(*tuple_, now=1.0) == (f + 250_000) & 0xFFFFFFFF       # M ticks every 4 µs
    assert gen.isn("198.18.0.1", 40001, "198.18.0.2", 80, 0.0) != f      # per 4-tuple
    assert IsnGenerator().isn(*tuple_, now=0.0) != IsnGenerator().isn(*tuple_, now=0.0)
    with pytest.raises(ValueError):
        IsnGenerator(b"short")


# ------------------------------------------------------------------------- schedulers

class FakeSubflow:
    """What a scheduler reads of a subflow: ``pipe`` bytes in flight of a ``cwnd``-segment
    window; room while one more segment fits."""

    def __init__(self, name, srtt, cwnd_segments=10, pipe_segments=0, backup=False,
                 usable=True, rttvar=None, sid=0):
        self.name, self.srtt, self.backup, self.usable, self.sid = name, srtt, backup, usable, sid
        self.rttvar = srtt / 2 if rttvar is None and srtt else rttvar
        self.window = cc.Window(MSS)
        self.window.cwnd = float(cwnd_segments * MSS)
        self.pipe = pipe_segments * MSS
        self.snd_una, self.snd_nxt = 1, 1 + self.pipe

    @property
    def rtt(self):                   # the RTT estimator's srtt, as the schedulers read it
        return types.SimpleNamespace(srtt=self.srtt)

    def can_carry(self):             # ``usable`` as a method, as the schedulers call it
        return self.usable

    def has_room(self, size):
        return self.pipe + max(size, MSS) <= self.window.cwnd

    def fill(self, segments):
        self.pipe = segments * MSS
        self.snd_nxt = self.snd_una + self.pipe


def name_of(picked):
    return None if picked is None else picked.name


def test_lowest_rtt_is_linux_default_the_shortest_linger_time_with_room():
    """mptcp_subflow_get_send: in flight / pacing rate, the rate cwnd / srtt times 2 in slow
    start (below half of ssthresh) and 1.2 after; an idle subflow lingers 0 s."""
    from mptcp_fast.engine.scheduler import LowestRtt, linger_time
    s = LowestRtt()
    fast, slow = FakeSubflow("fast", 0.010), FakeSubflow("slow", 0.050, sid=1)
    assert name_of(s.pick([slow, fast])) == "fast"          # both idle: the lowest RTT
    assert s.burst == 0xFFFF - 80                           # a whole burst per pick
    fast.fill(2)                                            # 2 of 10 segments in flight
    assert linger_time(fast) == pytest.approx(2 * MSS * 0.010 / (10 * MSS * 2.0))
    assert name_of(s.pick([slow, fast])) == "slow"          # idle lingers less than busy
    slow.fill(1)                                            # 0.1 * 50 ms / 2 = 2.5 ms
    assert linger_time(slow) == pytest.approx(0.0025)       # against fast's 1 ms
    assert name_of(s.pick([slow, fast])) == "fast"
    fast.window.ssthresh = 4 * MSS                          # congestion avoidance: * 1.2
    assert linger_time(fast) == pytest.approx(2 * MSS * 0.010 / (10 * MSS * 1.2))
    fast.fill(10)                                           # no room: the other one
    assert name_of(s.pick([slow, fast])) == "slow"
    slow.fill(10)
    assert s.pick([slow, fast]) is None                     # wait for room


def test_lowest_rtt_uses_backups_only_when_nothing_else_is_usable():
    from mptcp_fast.engine.scheduler import LowestRtt
    s = LowestRtt()
    regular = FakeSubflow("regular", 0.050, pipe_segments=10)        # usable, no room
    backup = FakeSubflow("backup", 0.001, backup=True)
    assert s.pick([regular, backup]) is None                # backup not while others live
    regular.usable = False
    assert name_of(s.pick([regular, backup])) == "backup"   # only backups are left
    fresh, measured = FakeSubflow("fresh", None), FakeSubflow("measured", 0.2)
    assert name_of(s.pick([fresh, measured])) == "measured"  # unmeasured go last
    assert name_of(s.pick([fresh])) == "fresh"


def test_round_robin_gives_one_segment_per_subflow_in_turn_and_waits_for_the_turn():
    from mptcp_fast.engine.scheduler import RoundRobin
    a, b, c = FakeSubflow("a", 0.01), FakeSubflow("b", 0.02), FakeSubflow("c", 0.03)
    rr = RoundRobin()
    assert [name_of(rr.pick([a, b, c])) for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.burst == MSS                                  # one segment each
    b.fill(10)                                              # b's turn, b's window is full:
    assert rr.pick([a, b, c]) is None and rr.pick([a, b, c]) is None    # wait for b
    b.fill(9)
    assert [name_of(rr.pick([a, b, c])) for _ in range(2)] == ["b", "c"]
    b.usable = False                                        # a subflow that cannot carry
    assert [name_of(rr.pick([a, b, c])) for _ in range(3)] == ["a", "c", "a"]   # is skipped


def test_redundant_sends_new_data_where_lowest_rtt_says():
    from mptcp_fast.engine.scheduler import SCHEDULERS, Redundant
    a, b = FakeSubflow("a", 0.01), FakeSubflow("b", 0.02)
    assert name_of(Redundant().pick([b, a])) == "a"         # the connection copies it to b
    assert set(SCHEDULERS) == {"lowest-rtt", "round-robin", "redundant", "ecf", "blest"}


# ------------------------------------------------------------------------ OLIA and BALIA

def coupled_with(cls, cwnds, rtts):
    controller = cls()
    windows = []
    for c, r in zip(cwnds, rtts):
        w = controller.add_subflow(MSS)
        w.cwnd, w.ssthresh, w.srtt = float(c), 1.0, r          # in congestion avoidance
        windows.append(w)
    return controller, windows


def test_olia_increase_follows_its_formula():
    """Path a has the largest window; path b the best l_r / rtt_r^2: b is in B minus M and
    gets alpha = 1 / (|P| |B-M|) = 1/2, a gets -1 / (|P| |M|) = -1/2 (in packets)."""
    olia, (a, b) = coupled_with(cc.Olia, [40 * MSS, 10 * MSS], [0.040, 0.010])
    a.acked_since_loss, b.acked_since_loss = 100 * MSS, 100 * MSS      # equal l_r
    assert (olia.alpha(a), olia.alpha(b)) == (-0.5, 0.5)
    total = 40 / 0.040 + 10 / 0.010                                      # sum w_p / rtt_p
    expected_b = (10 / 0.010 ** 2) / total ** 2 + 0.5 / 10               # packets per packet
    olia.on_ack(b, MSS, 0.0)
    assert b.cwnd == pytest.approx(10 * MSS + expected_b * MSS)
    expected_a = (40 / 0.040 ** 2) / ((40 / 0.040 + b.cwnd / MSS / 0.010) ** 2) - 0.5 / 40
    olia.on_ack(a, MSS, 0.0)
    assert a.cwnd == pytest.approx(40 * MSS + expected_a * MSS)
    olia.on_loss(b, 10 * MSS, 0.0)                                       # halved, l1 = l2
    assert b.cwnd == 5 * MSS and b.acked_before_loss == 100 * MSS + MSS


def test_olia_alpha_is_zero_when_the_best_path_has_the_largest_window():
    olia, (a, b) = coupled_with(cc.Olia, [40 * MSS, 10 * MSS], [0.010, 0.040])
    a.acked_since_loss = b.acked_since_loss = 50 * MSS
    assert (olia.alpha(a), olia.alpha(b)) == (0.0, 0.0)


def test_balia_increase_and_decrease_follow_their_formulas():
    balia, (a, b) = coupled_with(cc.Balia, [20 * MSS, 20 * MSS], [0.010, 0.040])
    xa, xb = 20 / 0.010, 20 / 0.040
    alpha_b = xa / xb                                                      # 4
    expected = xb / (0.040 * (xa + xb) ** 2) * (1 + alpha_b) / 2 * (4 + alpha_b) / 5
    balia.on_ack(b, MSS, 0.0)
    assert b.cwnd == pytest.approx(20 * MSS + expected * MSS)
    before = b.cwnd
    balia.on_loss(b, int(before), 0.0)                                     # min(alpha, 1.5)
    assert b.cwnd == pytest.approx(before - before / 2 * 1.5)
    balia.on_loss(a, 20 * MSS, 0.0)                                        # alpha 1: halved
    assert a.cwnd == pytest.approx(10 * MSS)


# ------------------------------------------------------------------------------ ECF

def test_ecf_waits_for_the_fast_subflow_when_that_finishes_first():
    """Algorithm 1 of the paper, with k the backlog, n = 1 + k / cwnd_f, delta = max(rttvar)."""
    from mptcp_fast.engine.scheduler import Ecf
    fast = FakeSubflow("fast", 0.010, rttvar=0.001, pipe_segments=10)       # no room
    slow = FakeSubflow("slow", 0.100, rttvar=0.005, sid=1)
    ecf = Ecf()
    # 20 segments waiting: n = 3 fast RTTs (30 ms) < the slow RTT + delta (105 ms), and on
    # the slow subflow they would take 2 slow RTTs >= 2 fast RTTs + delta: wait
    assert ecf.pick([fast, slow], 20 * MSS) is None and ecf.waiting
    # 2000 segments: n = 201 fast RTTs (2 s) is not below 105 ms * 1.25: use the slow one,
    # one segment at a time (each is decided on its own, as the kernel decides per segment)
    assert name_of(ecf.pick([fast, slow], 2000 * MSS)) == "slow" and not ecf.waiting
    assert ecf.burst == MSS
    # hysteresis: waiting raises the bar by beta = 1/4. n = 1.7 fast RTTs (17 ms) against
    # 15 ms when not waiting (use the slow one), 1.25 * 15 = 18.75 ms while waiting (wait:
    # 7 / 2 slow windows take 52.5 ms); n = 1.9 (19 ms) passes either bar
    fast2 = FakeSubflow("fast", 0.010, rttvar=0.0, pipe_segments=10)
    slow2 = FakeSubflow("slow", 0.015, rttvar=0.0, cwnd_segments=2, sid=1)
    ecf2 = Ecf()
    assert name_of(ecf2.pick([fast2, slow2], 7 * MSS)) == "slow" and not ecf2.waiting
    ecf2.waiting = True
    assert ecf2.pick([fast2, slow2], 7 * MSS) is None and ecf2.waiting
    assert name_of(ecf2.pick([fast2, slow2], 9 * MSS)) == "slow" and not ecf2.waiting
    fast.fill(5)                                            # room on the fast one: take it
    assert name_of(ecf.pick([fast, slow], 20 * MSS)) == "fast" and ecf.burst == 0xFFFF - 80
    # 2 segments waiting: the slow subflow needs only 0.2 of its RTT = 20 ms < 2 * 10 ms + 5 ms
    fast.fill(10)
    assert name_of(Ecf().pick([fast, slow], 2 * MSS)) == "slow"


# ----------------------------------------------------------------------------- BLEST

def test_blest_waits_when_the_fast_subflow_would_be_blocked_by_the_window():
    """What the fast subflow sends during the slow one's linger time, times lambda = 1.2,
    against the peer's window less the slow subflow's bytes in flight."""
    from mptcp_fast.engine.scheduler import Blest
    fast = FakeSubflow("fast", 0.010, pipe_segments=10)                  # no room
    slow = FakeSubflow("slow", 0.040, cwnd_segments=10, pipe_segments=4, sid=1)
    blest = Blest()
    assert blest.pick([fast, slow], 100 * MSS, 10**9) is not None        # ranges seen
    # the slow subflow's linger: its RTT seen so far is 40 ms (smallest = largest)
    assert blest.slow_linger(slow) == pytest.approx(0.040)
    # fast in its first slow start: 40 ms / 10 ms + 1 = 5 rounds of doubling from 10
    # segments: 10 * (2**5 - 1) = 310 segments
    assert blest.fast_bytes(fast, 0.040) == pytest.approx(310 * MSS)
    # in congestion avoidance: (max(cwnd, ssthresh + 1) + (rounds - 1) / 2) * rounds
    fast.window.ssthresh = 8 * MSS
    assert blest.fast_bytes(fast, 0.040) == pytest.approx((10 + 2) * 5 * MSS)
    needed = 1.2 * 60 * MSS + 4 * MSS                       # what fast sends, and slow's flight
    assert name_of(blest.pick([fast, slow], 100 * MSS, int(needed) + MSS)) == "slow"
    assert blest.burst == MSS
    assert blest.pick([fast, slow], 100 * MSS, int(needed) - MSS) is None
    # the slow subflow's RTT range: a full window lingers its largest RTT seen
    slow.srtt = 0.080
    blest.pick([fast, slow], 100 * MSS, 10**9)
    slow.srtt = 0.060
    slow.fill(9)                                            # 9 + 1 in flight: the window full
    assert blest.slow_linger(slow) == pytest.approx(0.080)
    slow.fill(4)                                            # 5 of 10: halfway from 40 to 80 ms
    assert blest.slow_linger(slow) == pytest.approx(0.060)

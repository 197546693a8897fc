"""Which subflow carries the next data (RFC 8684 §3.3.8 leaves the policy to the implementation),
behind one small interface. Each scheduler follows a Linux one:

* ``LowestRtt`` (the default): Linux's default scheduler (net/mptcp/protocol.c,
  ``mptcp_subflow_get_send``): of the subflows with room in their congestion window, the one
  with the shortest *linger time*, the time its bytes in flight take to drain at its pacing
  rate (``in flight / rate``, with Linux's rate ``cwnd / srtt`` times 2 in slow start and 1.2
  after it). A subflow with nothing in flight lingers 0 s and goes first, so no usable
  subflow is left idle beside a busy one; among equals (idle ones) the lowest RTT wins. Up to
  64 KiB per pick (``MPTCP_SEND_BURST_SIZE``). Backup subflows only when no other is usable.
* ``RoundRobin``: one segment per subflow in turn, as the round-robin schedulers of Linux do
  by default (the out-of-tree ``mptcp_rr``'s ``num_segments`` is 1; the upstream kernel's BPF
  ``mptcp_rr`` sample hands each call's data to the next subflow whether or not its window is
  full, where it waits in that subflow's send queue). A subflow here has no send queue of its
  own beyond its window, so the turn waits for the window of the subflow whose turn it is:
  every subflow carries every n-th segment, and the slowest one sets the pace. (The
  out-of-tree module's ``cwnd_limited`` mode skips full subflows instead; with the windows
  clocked by ACKs, one subflow at a time has room, and that picks what any scheduler would.)
* ``Redundant``: every byte on every usable subflow (new data where ``LowestRtt`` says, then
  the others catch up as they have room: ``Connection._catch_up``).
* ``Ecf``: Earliest Completion First (Lim et al., "ECF: An MPTCP Path Scheduler to Manage
  Heterogeneous Paths", CoNEXT 2017; the out-of-tree Linux ``mptcp_ecf``): when the fastest
  subflow has no room, a slower one is used only if the data waiting would not be done sooner
  by waiting for the fast one.
* ``Blest``: BLocking ESTimation (Ferlin et al., "BLEST: Blocking Estimation-based MPTCP
  Scheduler for Heterogeneous Networks", IFIP Networking 2016; the out-of-tree Linux
  ``mptcp_blest``): when the fastest subflow has no room, a slower one is used only if what
  the fast one could send while the slow one's segment is in flight still fits the peer's
  receive window.

ECF and BLEST decide one segment at a time on a slower subflow (as the out-of-tree kernel
decides per segment), and send as ``LowestRtt``'s out-of-tree ancestor did otherwise: on the
lowest-RTT subflow with room.

A scheduler sees the subflows as objects with ``usable`` (established, not closing, not stale;
``can_carry()`` the same as a method), ``backup`` (MP_PRIO / MP_JOIN backup flag), ``srtt``
and ``rttvar`` (seconds, None before the first sample; ``rtt.srtt`` the same), ``has_room(0)`` (the congestion window takes one more segment), ``pipe`` (bytes
in flight, RFC 6675), ``snd_nxt - snd_una`` (bytes sent and not acknowledged) and ``window``
(``cwnd``, ``ssthresh``, ``mss``: bytes). The built-in schedulers' per-pick helpers read
``can_carry()`` and ``rtt.srtt``: compiled, those are C calls and C fields of the subflow.

``pick(subflows, backlog, window)`` returns the subflow the next bytes go to, or None (wait for
an acknowledgment); ``backlog`` is the bytes waiting to be sent, ``window`` the peer's receive
window at the data level (bytes from its DATA_ACK to the right edge). After a pick, ``burst``
is the most bytes the chosen subflow takes before the next pick.
"""

from __future__ import annotations

__all__ = ["Scheduler", "LowestRtt", "RoundRobin", "Redundant", "Ecf", "Blest", "SCHEDULERS",
           "BURST"]

BURST = 0xFFFF - 80          # Linux's MPTCP_SEND_BURST_SIZE is 64 KiB; here one DSS mapping's
                             # most (subflow.MAX_CHUNK): the connection's own limit per pick
PACING_SS_RATIO = 2.0        # net.ipv4.tcp_pacing_ss_ratio (200 %): the pacing rate in slow start
PACING_CA_RATIO = 1.2        # net.ipv4.tcp_pacing_ca_ratio (120 %): after it
UNMEASURED = float("inf")    # the linger time of a subflow without an RTT sample: last


def _backups_too(subflows) -> bool:
    """Whether the usable backup subflows are candidates too: when fewer than two subflows
    are usable, or none of them is a regular one (Linux: backups only when no non-backup
    subflow is active). Counted without a list (LowestRtt asks it per chunk)."""
    usable = regular = 0
    for s in subflows:
        if s.can_carry():                    # ``usable``, a C call when compiled
            usable += 1
            if not s.backup:
                regular += 1
    return usable < 2 or regular == 0


def _candidates(subflows):
    """The usable subflows a pick chooses from, in order: the non-backup ones, or the backup
    ones too when ``_backups_too``."""
    backups_too = _backups_too(subflows)
    out = []
    for s in subflows:
        if s.can_carry() and (backups_too or not s.backup):
            out.append(s)
    return out


def _lowest_rtt(pool, with_room: bool):
    """The subflow of ``pool`` with the lowest RTT (the first of equals; one without a sample
    after the measured ones), among those with room when ``with_room``; None if none."""
    best = best_rtt = None
    for s in pool:
        if with_room and not s.has_room(0):
            continue
        rtt = s.srtt
        if best is None or (rtt is not None and (best_rtt is None or rtt < best_rtt)):
            best, best_rtt = s, rtt
    return best


def linger_time(s) -> float:
    """Seconds the subflow's bytes in flight take to drain at its pacing rate (Linux's
    ``sk_wmem_queued / avg_pacing_rate``): 0 when nothing is in flight."""
    if not s.pipe:
        return 0.0
    measured = s.rtt.srtt                 # ``srtt``: a C field when compiled
    if not measured:
        return UNMEASURED
    srtt = measured
    window = s.window
    # tcp_update_pacing_rate: cwnd / srtt, times ss_ratio below half of ssthresh, else ca_ratio
    ratio = PACING_SS_RATIO if window.cwnd < window.ssthresh / 2 else PACING_CA_RATIO
    return s.pipe * srtt / (window.cwnd * ratio)


class Scheduler:
    name = "base"
    burst = BURST            # after a pick: the most bytes the chosen subflow takes now

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        raise NotImplementedError


class LowestRtt(Scheduler):
    """Linux's default (see the module text): the shortest linger time with room, then the
    lowest RTT."""
    name = "lowest-rtt"

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        return _shortest_linger(subflows)


def _shortest_linger(subflows):
    """LowestRtt's pick (a C loop over the subflows' C fields when compiled), among
    ``_candidates``' subflows read in place, without its list (a pick per chunk, and a chunk
    per ACK or two)."""
    backups_too = _backups_too(subflows)
    best = None
    best_linger = best_rtt = 0.0
    for s in subflows:
        if not s.can_carry() or (s.backup and not backups_too) or not s.has_room(0):
            continue
        linger = linger_time(s)
        measured = s.rtt.srtt
        rtt = UNMEASURED if measured is None else measured
        if best is None or linger < best_linger or (linger == best_linger and rtt < best_rtt):
            best, best_linger, best_rtt = s, linger, rtt
    return best


class RoundRobin(Scheduler):
    """One segment per subflow in turn; the subflow whose turn it is is waited for when its
    congestion window is full (see the module text)."""
    name = "round-robin"

    def __init__(self):
        self.last = None                          # the subflow that took the last segment

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        pool = _candidates(subflows)
        if not pool:
            return None
        turn = pool[0]
        for i in range(len(pool) - 1):            # the one after the last (the first when
            if pool[i] is self.last:              # the last is gone or was the last listed)
                turn = pool[i + 1]
                break
        if not turn.has_room(0):
            return None                           # its turn: wait for its window
        self.last = turn
        self.burst = turn.window.mss
        return turn


class Redundant(Scheduler):
    """New data goes where ``LowestRtt`` says; the connection then sends every byte on every
    other subflow too, as each has room (Connection._catch_up)."""
    name = "redundant"

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        return LowestRtt.pick(self, subflows, backlog, window)  # type: ignore[arg-type]  # its rule


class _AvoidsSlowPaths(Scheduler):
    """ECF and BLEST: the fastest usable subflow when it has room; else the lowest-RTT one with
    room, one segment at a time, unless ``wait_for_fastest`` says waiting is better."""

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        pool = _candidates(subflows)
        fastest = _lowest_rtt(pool, False)
        best = _lowest_rtt(pool, True)
        self.burst = BURST
        if best is None or best is fastest or fastest.srtt is None or best.srtt is None:
            return best
        if self.wait_for_fastest(fastest, best, backlog, window):
            return None
        self.burst = best.window.mss
        return best

    def wait_for_fastest(self, fastest, slow, backlog: int, window: int) -> bool:
        raise NotImplementedError


class Ecf(_AvoidsSlowPaths):
    """ECF (CoNEXT 2017, Algorithm 1), in bytes and seconds. With f the fastest subflow (no
    room), s the slower one with room, k the backlog and delta = max(rttvar_f, rttvar_s):
    wait for f when

        (1 + k / cwnd_f) * rtt_f < (1 + waiting * beta) * (rtt_s + delta)
        and k / cwnd_s * rtt_s >= 2 * rtt_f + delta

    (the backlog is done on f, a round trip of f after f's window opens, before s would
    deliver a segment, and s would need at least two round trips of f for it). ``waiting``
    is the hysteresis: set when ECF waits, cleared when the first test fails; beta = 1/4
    (the kernel module's ``mptcp_ecf_r_beta`` 4). The kernel module takes max(k, cwnd) for k
    in both tests (at least one window's round trip), and its delta from ``rttvar_us``,
    which carries a floor of the minimum RTO (200 ms); the paper's k and RFC 6298's RTTVAR
    are used here."""
    name = "ecf"
    BETA = 0.25

    def __init__(self):
        self.waiting = False

    def wait_for_fastest(self, fastest, slow, backlog: int, window: int) -> bool:
        rtt_f, rtt_s = fastest.srtt, slow.srtt
        cwnd_f, cwnd_s = fastest.window.cwnd, slow.window.cwnd
        delta = max(fastest.rttvar or 0.0, slow.rttvar or 0.0)
        rounds_on_fastest = 1 + backlog / cwnd_f
        if rounds_on_fastest * rtt_f < (1 + self.waiting * self.BETA) * (rtt_s + delta):
            if backlog / cwnd_s * rtt_s >= 2 * rtt_f + delta:
                self.waiting = True
                return True                       # the fast subflow will finish first
        else:
            self.waiting = False
        return False


class Blest(_AvoidsSlowPaths):
    """BLEST (IFIP Networking 2016, as the out-of-tree ``mptcp_blest`` computes it). With f
    the fastest subflow (no room) and s the slower one with room: s's segment would stay in
    flight for s's linger time, its RTT between the smallest and the largest smoothed RTT s
    had, by how full its window is; the bytes f could send meanwhile (Reno's growth over that
    many round trips of f, doubling per round trip in its first slow start), times lambda =
    1.2, must fit the peer's receive window beside s's bytes in flight, else wait for f.
    (The kernel module adapts lambda between 1.0 and 1.3 to the reinjections it sees; it
    starts at 1.2, which is kept here.)"""
    name = "blest"
    LAMBDA = 1.2

    def __init__(self):
        self.rtt_range = {}                       # subflow id -> [smallest, largest] srtt seen

    def _seen(self, s):
        """The smallest and the largest smoothed RTT the subflow had (updated now)."""
        srtt = s.srtt
        seen = self.rtt_range.get(s.sid)
        if seen is None:
            seen = self.rtt_range[s.sid] = [srtt, srtt]
        elif srtt < seen[0]:
            seen[0] = srtt
        elif srtt > seen[1]:
            seen[1] = srtt
        return seen

    def pick(self, subflows, backlog: int = 0, window: int = 0):
        for s in subflows:                        # blestsched_get_available_subflow updates
            if s.usable and s.srtt is not None:   # every subflow's range on each call
                self._seen(s)
        return _AvoidsSlowPaths.pick(self, subflows, backlog, window)

    def slow_linger(self, s) -> float:
        """blestsched_estimate_linger_time: how long a segment sent now stays in flight."""
        smallest, largest = self._seen(s)
        mss = s.window.mss
        in_flight = s.pipe // mss + 1             # with the new segment
        cwnd = max(1, int(s.window.cwnd // mss))
        if in_flight >= cwnd:
            estimate = largest
        else:
            estimate = smallest + (largest - smallest) * in_flight / cwnd
        return max(s.srtt, estimate)

    def fast_bytes(self, f, time: float) -> float:
        """blestsched_estimate_bytes: what ``f`` sends in ``time`` seconds."""
        smallest, largest = self._seen(f)
        average = (smallest + largest) / 2
        rounds = int(time / average) + 1 if average > 0 else 1
        window = f.window
        cwnd = window.cwnd / window.mss
        if window.ssthresh == float("inf"):       # the first slow start: doubling per round
            packets = cwnd * ((1 << min(rounds, 16)) - 1)
        else:                                     # Reno's congestion avoidance from here
            ca_cwnd = max(cwnd, window.ssthresh / window.mss + 1)
            packets = (ca_cwnd + (rounds - 1) / 2) * rounds
        return packets * window.mss

    def wait_for_fastest(self, fastest, slow, backlog: int, window: int) -> bool:
        fast = self.LAMBDA * self.fast_bytes(fastest, self.slow_linger(slow))
        slow_bytes = slow.snd_nxt - slow.snd_una
        space = window - slow_bytes if slow_bytes < window else 0
        return fast > space                       # the fast subflow would be blocked: wait


SCHEDULERS = {"lowest-rtt": LowestRtt, "round-robin": RoundRobin, "redundant": Redundant,
              "ecf": Ecf, "blest": Blest}

"""Which subflow carries the next data (RFC 8684 §3.3.8 leaves the policy to the implementation;
these are the ones Linux offers), behind one small interface.

A scheduler sees the connection's subflows as objects with ``usable`` (established and not
closing), ``backup`` (MP_PRIO / MP_JOIN backup flag), ``srtt`` (seconds, or None before the
first sample) and ``has_room(size)`` (the congestion window and the peer's window allow
``size`` more bytes), and returns the subflows to send ``size`` bytes on (an empty list: wait).

* ``LowestRtt`` (the default, Linux's): the usable subflow with room and the lowest RTT,
  backup subflows only when no non-backup subflow is usable at all.
* ``RoundRobin``: the next usable subflow with room, in turn.
* ``Redundant``: every byte on every usable subflow (new data where ``LowestRtt`` says, then
  the others catch up as they have room).
* ``Ecf``: Earliest Completion First (Lim et al., "ECF: An MPTCP Path Scheduler to Manage
  Heterogeneous Paths", CoNEXT 2017): when the fastest subflow has no room, a slower one is
  used only if the data waiting would not be done sooner by waiting for the fast one.

``pick(subflows, size, backlog=0)``: ``backlog`` is the bytes waiting to be sent (ECF reads it).
Subflows also offer ``rttvar`` (seconds) and ``window.cwnd`` (bytes) for it.
"""

from __future__ import annotations

__all__ = ["Scheduler", "LowestRtt", "RoundRobin", "Redundant", "Ecf", "SCHEDULERS"]


def _candidates(subflows):
    """Non-backup usable subflows, or the backup ones when no other is usable."""
    usable = [s for s in subflows if s.usable]
    if len(usable) < 2:
        return usable
    regular = [s for s in usable if not s.backup]
    return regular if regular else usable


class Scheduler:
    name = "base"

    def pick(self, subflows, size: int, backlog: int = 0) -> list:
        raise NotImplementedError


class LowestRtt(Scheduler):
    name = "lowest-rtt"

    def pick(self, subflows, size: int, backlog: int = 0) -> list:
        best = best_rtt = None
        for s in _candidates(subflows):
            if not s.has_room(size):
                continue
            # the lowest RTT, the first of equals; a subflow without an RTT sample yet goes
            # after the measured ones, first come first
            rtt = s.srtt
            if best is None or (rtt is not None and (best_rtt is None or rtt < best_rtt)):
                best, best_rtt = s, rtt
        return [] if best is None else [best]


class RoundRobin(Scheduler):
    name = "round-robin"

    def __init__(self):
        self._last = -1

    def pick(self, subflows, size: int, backlog: int = 0) -> list:
        pool = _candidates(subflows)
        for step in range(1, len(pool) + 1):
            index = (self._last + step) % len(pool)
            if pool[index].has_room(size):
                self._last = index
                return [pool[index]]
        return []


class Redundant(Scheduler):
    """New data goes to the lowest-RTT subflow with room; the connection then sends every byte
    on every other subflow too, as each has room (Connection._catch_up)."""
    name = "redundant"

    def pick(self, subflows, size: int, backlog: int = 0) -> list:
        return LowestRtt.pick(self, subflows, size, backlog)  # type: ignore[arg-type]  # its rule


class Ecf(Scheduler):
    """ECF (CoNEXT 2017, Algorithm 1), on RTT estimates in seconds and windows in segments.

    With f the fastest usable subflow and s the fastest one with room: use f when it has room;
    else with k the backlog in segments, n = 1 + k / cwnd_f and delta = max(rttvar_f,
    rttvar_s), s is used unless n * rtt_f < (1 + waiting * beta) * (rtt_s + delta) and
    (k / cwnd_s) * rtt_s >= 2 * rtt_f + delta, in which case we wait for f (beta = 0.25 is
    the hysteresis of the "waiting" state)."""
    name = "ecf"
    BETA = 0.25

    def __init__(self):
        self.waiting = False

    def pick(self, subflows, size: int, backlog: int = 0) -> list:
        pool = [s for s in _candidates(subflows)]
        measured = [s for s in pool if s.srtt]
        if not measured:
            return LowestRtt.pick(self, subflows, size, backlog)  # type: ignore[arg-type]
        fastest = min(measured, key=lambda s: s.srtt)
        if fastest.has_room(size):
            self.waiting = False
            return [fastest]
        ready = [s for s in measured if s.has_room(size)]
        if not ready:
            return []
        second = min(ready, key=lambda s: s.srtt)
        mss = fastest.window.mss
        k = backlog / mss
        cwnd_f = fastest.window.cwnd / mss
        cwnd_s = max(second.window.cwnd / second.window.mss, 1.0)
        delta = max(fastest.rttvar or 0.0, second.rttvar or 0.0)
        n = 1 + k / cwnd_f
        if n * fastest.srtt < (1 + self.waiting * self.BETA) * (second.srtt + delta):
            if k / cwnd_s * second.srtt >= 2 * fastest.srtt + delta:
                self.waiting = True
                return []                              # the fast subflow will finish first
        self.waiting = False
        return [second]


SCHEDULERS = {"lowest-rtt": LowestRtt, "round-robin": RoundRobin, "redundant": Redundant,
              "ecf": Ecf}

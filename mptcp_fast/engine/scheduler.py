"""Which subflow carries the next data (RFC 8684 §3.3.8 leaves the policy to the implementation;
these are the ones Linux offers), behind one small interface.

A scheduler sees the connection's subflows as objects with ``usable`` (established and not
closing), ``backup`` (MP_PRIO / MP_JOIN backup flag), ``srtt`` (seconds, or None before the
first sample) and ``has_room(size)`` (the congestion window and the peer's window allow
``size`` more bytes), and returns the subflows to send ``size`` bytes on (an empty list: wait).

* ``LowestRtt`` (the default, Linux's): the usable subflow with room and the lowest RTT,
  backup subflows only when no non-backup subflow is usable at all.
* ``RoundRobin``: the next usable subflow with room, in turn.
* ``Redundant``: every usable subflow with room (the same data on each).
"""

from __future__ import annotations

__all__ = ["Scheduler", "LowestRtt", "RoundRobin", "Redundant", "SCHEDULERS"]


def _candidates(subflows):
    """Non-backup usable subflows, or the backup ones when no other is usable."""
    usable = [s for s in subflows if s.usable]
    regular = [s for s in usable if not s.backup]
    return regular if regular else usable


class Scheduler:
    name = "base"

    def pick(self, subflows, size: int) -> list:
        raise NotImplementedError


class LowestRtt(Scheduler):
    name = "lowest-rtt"

    def pick(self, subflows, size: int) -> list:
        ready = [s for s in _candidates(subflows) if s.has_room(size)]
        if not ready:
            return []
        # a subflow without an RTT sample yet goes after the measured ones, first come first
        return [min(ready, key=lambda s: (s.srtt is None, s.srtt or 0.0))]


class RoundRobin(Scheduler):
    name = "round-robin"

    def __init__(self):
        self._last = -1

    def pick(self, subflows, size: int) -> list:
        pool = _candidates(subflows)
        for step in range(1, len(pool) + 1):
            index = (self._last + step) % len(pool)
            if pool[index].has_room(size):
                self._last = index
                return [pool[index]]
        return []


class Redundant(Scheduler):
    name = "redundant"

    def pick(self, subflows, size: int) -> list:
        return [s for s in _candidates(subflows) if s.has_room(size)]


SCHEDULERS = {"lowest-rtt": LowestRtt, "round-robin": RoundRobin, "redundant": Redundant}

"""The conformance suite: the engine against the Linux kernel, group by group after the kernel's
own selftests (tools/testing/selftests/net/mptcp: simult_flows.sh, mptcp_connect.sh,
mptcp_join.sh, userspace_pm.sh). Each case builds a testbed (the kernel in a namespace, the
engine behind a TUN device: ``mptcp_fast.testing.testbed``), moves data both ways and is judged by the
bytes (SHA-256 both ways) and by the kernel's own MPTcpExt/TcpExt counters. Root only.

    python -m mptcp_fast.testing.conformance                  # every case: a table, exit 1 on a failure
    python -m mptcp_fast.testing.conformance simult_flows     # the cases whose name contains the text
    python -m mptcp_fast.testing.conformance --list           # the cases and what each expects

``tests/test_conformance.py`` runs every case on both backends. Which counter says what, and
why each case expects the values it does: docs/conformance.md.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Case", "Outcome", "Judge", "CASES", "cases", "run_case", "why_unavailable"]


@dataclass
class Outcome:
    """What one case found: ``passed`` when every check held and nothing raised."""
    case: "Case"
    passed: bool
    seconds: float
    checks: list = field(default_factory=list)      # (what was checked, held)
    counters: dict = field(default_factory=dict)    # the kernel counters that moved (short names)
    error: str | None = None

    def failures(self) -> list:
        return [text for text, held in self.checks if not held] + \
            ([self.error] if self.error else [])


class Judge:
    """Collects the checks of one case: each is recorded, none raises, so a report names every
    check that failed, not only the first."""

    def __init__(self):
        self.checks: list = []
        self.counters: dict = {}

    def check(self, text: str, held) -> bool:
        self.checks.append((text, bool(held)))
        return bool(held)

    def equal(self, name: str, got, expected) -> bool:
        return self.check(f"{name} = {got!r}, expected {expected!r}", got == expected)

    def at_least(self, name: str, got, low) -> bool:
        return self.check(f"{name} = {got!r}, expected >= {low!r}", got is not None and got >= low)

    def counter(self, moved: dict, name: str, expected: int) -> bool:
        """A kernel counter (``MPTcpExt`` / ``TcpExt`` prefix optional) moved by ``expected``."""
        return self.equal(name, _moved(moved, name), expected)

    def counter_at_least(self, moved: dict, name: str, low: int) -> bool:
        return self.at_least(name, _moved(moved, name), low)

    def counter_between(self, moved: dict, name: str, low: int, high: int) -> bool:
        got = _moved(moved, name)
        return self.check(f"{name} = {got!r}, expected {low}..{high}", low <= got <= high)

    def echoed(self, moved: dict, sent: str, echoes: str, at_least: int) -> None:
        """ADD_ADDRs counted by ``sent`` (at least ``at_least``: Linux may write one twice,
        or we may send one again when its echo is late) and every one echoed (``echoes``)."""
        self.counter_at_least(moved, sent, at_least)
        self.equal(f"{echoes} = {sent}", _moved(moved, echoes), _moved(moved, sent))

    def kernel(self, ns, before: dict, expected: dict | tuple = (), absent=()) -> dict:
        """The kernel's MPTcpExt counters in ``ns`` that moved since ``before``: recorded for
        the report, each of ``expected`` checked to have moved by its value and each of
        ``absent`` not to have moved. Returns them."""
        moved = ns.counters_since(before)
        self.record(moved)
        for name, value in dict(expected).items():
            self.counter(moved, name, value)
        for name in absent:
            self.counter(moved, name, 0)
        return moved

    def record(self, moved: dict) -> None:
        """Keep the counters that moved for the report (without the MPTcpExt prefix)."""
        for name, value in moved.items():
            self.counters[name.removeprefix("MPTcpExt")] = value


def _moved(moved: dict, name: str) -> int:
    for key in (name, "MPTcpExt" + name, "TcpExt" + name):
        if key in moved:
            return moved[key]
    return 0


@dataclass(frozen=True)
class Case:
    """One scenario: ``group`` as the kernel's selftests name it, ``name`` unique in the
    suite, ``expects`` a line for the listing, ``run(judge, **params)`` the scenario."""
    group: str
    name: str
    expects: str
    run: Callable[..., None]
    params: tuple = ()

    def __call__(self, judge: Judge) -> None:
        self.run(judge, **dict(self.params))


CASES: list[Case] = []


def case(group: str, name: str, expects: str, **params):
    """Register the decorated function as a case (once per call: a function may stand for
    several cases with different parameters)."""
    def register(function):
        CASES.append(Case(group, name, expects, function, tuple(sorted(params.items()))))
        return function
    return register


def cases(selection: str | None = None) -> list:
    """Every case, or those whose group or name contains ``selection``."""
    _load()
    if not selection:
        return list(CASES)
    return [c for c in CASES if selection in c.name or selection in c.group]


def why_unavailable() -> str | None:
    """None when the suite can run here, else why not."""
    from ...net.netns import have_root
    from ...net import kernel
    if not have_root():
        return "needs root (network namespaces, /dev/net/tun) and iproute2"
    try:
        kernel.mptcp_socket().close()
    except kernel.KernelMptcpError as exc:
        return f"the kernel has no MPTCP here: {exc}"
    return None


def run_case(case: Case) -> Outcome:
    """Run one case; an exception is a failed outcome carrying its text, never raised."""
    judge = Judge()
    start = time.monotonic()
    error = None
    try:
        case(judge)
    except Exception as exc:  # noqa: BLE001 — reported as the case's failure
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    seconds = time.monotonic() - start
    passed = error is None and bool(judge.checks) and all(h for _, h in judge.checks)
    return Outcome(case, passed, seconds, judge.checks, judge.counters, error)


def _load() -> None:
    """Import the modules that register the cases (once)."""
    from . import basics, connect, joins, simult_flows, userspace_pm  # noqa: F401

"""``python -m mptcp_fast.testing.conformance [TEXT] [--list] [--backend NAME] [--json]``: run the
conformance cases (those whose group or name contains TEXT) against this machine's kernel and
print one row per case: group, case, verdict, seconds, the kernel counters that moved. Exit 0
when every case passed, 1 when one failed, 2 when the suite cannot run here (not root, no
MPTCP). Root only."""

from __future__ import annotations

import argparse
import json
import sys

from ... import _backend
from . import cases, run_case, why_unavailable


def _row(outcome) -> str:
    counters = " ".join(f"{name}={value}" for name, value in sorted(outcome.counters.items())
                        if not name.startswith(("RcvWnd", "SndWnd", "OFO")))
    verdict = "PASS" if outcome.passed else "FAIL"
    name = outcome.case.name.split("/", 1)[-1]
    return f"{outcome.case.group:<17} {name:<48} {verdict}  " \
           f"{outcome.seconds:6.2f}s  {counters}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mptcp_fast.testing.conformance",
                                     description="The engine against this machine's kernel, "
                                                 "judged by the kernel's counters and the bytes.")
    parser.add_argument("selection", nargs="?", help="only cases whose group or name contains this")
    parser.add_argument("--list", action="store_true", help="list the cases and what each expects")
    parser.add_argument("--backend", choices=("cython", "python"),
                        help="the engine's backend (default: the compiled one when built)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    args = parser.parse_args(argv)
    selected = cases(args.selection)
    if not selected:
        print(f"no case matches {args.selection!r}", file=sys.stderr)
        return 2
    if args.list:
        for case in selected:
            print(f"{case.name:<64} {case.expects}")
        return 0
    reason = why_unavailable()
    if reason is not None:
        print(f"python -m mptcp_fast.testing.conformance: {reason}", file=sys.stderr)
        return 2
    backend = args.backend or _backend.available()[0]
    if backend not in _backend.available():
        print(f"python -m mptcp_fast.testing.conformance: the {backend} backend is not built",
              file=sys.stderr)
        return 2
    failed = 0
    if not args.json:
        print(f"{'group':<17} {'case':<48} verdict seconds  kernel counters moved "
              f"(backend {backend})")
    with _backend.use(backend):
        for case in selected:
            try:
                outcome = run_case(case)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return 130
            failed += not outcome.passed
            if args.json:
                print(json.dumps({"group": case.group, "case": case.name,
                                  "passed": outcome.passed, "seconds": round(outcome.seconds, 3),
                                  "counters": outcome.counters,
                                  "failures": outcome.failures()}))
                continue
            print(_row(outcome), flush=True)
            for failure in outcome.failures():
                print(f"    {failure.splitlines()[0]}")
    if not args.json:
        print(f"{len(selected) - failed} of {len(selected)} cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

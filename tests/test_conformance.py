"""The conformance suite (mptcp_fast.testing.conformance) as tests: every case on both backends, judged
by the kernel's counters and the bytes. Root only (network namespaces, /dev/net/tun); skipped
cleanly elsewhere, run in CI (root)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mptcp_fast.testing import conformance

pytestmark = pytest.mark.requires("testbed")


@pytest.mark.parametrize("case", conformance.cases(), ids=lambda c: c.name)
def test_case(case, backend):
    outcome = conformance.run_case(case)
    assert outcome.passed, "\n".join(outcome.failures())


@pytest.mark.parametrize("attempt", range(3))
def test_six_subflows_again(backend, attempt):
    """The fullmesh case (six joins, both ways at once) again: it once stalled under load
    when the kernel dropped one of our mappings (NoDSSInWindow) and nothing sent it again."""
    (case,) = conformance.cases("fullmesh/two-endpoints-to-three-addresses")
    outcome = conformance.run_case(case)
    assert outcome.passed, "\n".join(outcome.failures())


def test_the_command_prints_a_table_and_its_verdict():
    """What a user runs: one case by name, a row with its verdict and counters, exit 0."""
    done = subprocess.run([sys.executable, "-m", "mptcp_fast.testing.conformance",
                           "v4-mapped/kernel-server"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].startswith("group") and rows[-1] == "1 of 1 cases passed"
    (row,) = [r for r in rows if r.startswith("v4-mapped") and " kernel-server " in r]
    assert "PASS" in row and "MPCapableSYNRX=1" in row and "MPJoinSynRx=1" in row


def test_the_command_lists_cases_and_refuses_an_unknown_one():
    listed = subprocess.run([sys.executable, "-m", "mptcp_fast.testing.conformance", "--list"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == [c.name for c in conformance.cases()] and len(names) == len(set(names))
    unknown = subprocess.run([sys.executable, "-m", "mptcp_fast.testing.conformance", "no-such-case"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no case matches" in unknown.stderr

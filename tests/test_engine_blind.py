"""A blind, off-path attacker against transfers in the emulated network (issue 21, "Proof").

The attacker (mptcp_fast.blind) knows each subflow's 4-tuple and nothing else. While a
transfer runs it sweeps the 32-bit sequence space in window-sized steps with forgeries of every
kind — RST, SYN, data with and without DSS, and pure ACKs carrying each MPTCP option with
random fields and random ACK numbers. RFC 5961 (§3-§5) and RFC 8684 (§3.3 mappings and
DATA_FIN within the window, §3.4.2 REMOVE_ADDR probed first, §3.7 fallback only on acceptable
segments) leave it nothing to change: every transfer completes byte-exact with EndOfStream both
ways, nothing raises out of receive_packet, and memory stays bounded.

The default run sweeps each kind once in four small transfers (one or two subflows, DSS
checksums off or on) and each kind alone once; ``pytest -m fuzz`` runs many seeds, rounds and
bigger transfers.
"""

from __future__ import annotations

import os
import tracemalloc

import pytest

from enginenet import C0, C1, S0, check_prefix, transfer
from mptcp_fast import blind
from mptcp_fast.engine import events as ev

UP, DOWN = 300_000, 200_000
PATH = dict(rate=4e6, delay=0.010)
FIRST = 0.06                       # the first sweep: both subflows established, data flowing
# peak traced memory of a transfer under attack: the transfer's own buffers (two 4 MiB windows
# at most) and a little per forged packet in flight, never a multiple of what was forged
MEMORY_BOUND = 24 << 20
# a 16 MiB receive window: a sweep is 2**32 / 16 MiB = 256 packets per subflow (the default
# 4 MiB window, 1,024 packets, runs behind -m fuzz)
WINDOW = 16 << 20
FUZZ_SEEDS = int(os.environ.get("MPTCP_FAST_BLIND_SEEDS", "25"))


def paths_for(subflows: int) -> dict:
    paths = {(C0, S0): PATH}
    if subflows == 2:
        paths[(C1, S0)] = PATH
    return paths


def attacked_transfer(*, subflows: int, checksums: bool, seed: int, kinds=blind.KINDS,
                      rounds: int = 1, up: int = UP, down: int = DOWN, every: float = 0.01,
                      window: int = WINDOW):
    """A transfer with the attacker sweeping ``kinds`` (``rounds`` times) against both ends;
    returns (Run, attacker, peak traced bytes)."""
    attacker = []

    def arm(net, client, server, made, conn):
        a = blind.BlindAttacker(net, [client, server], seed=seed, kinds=kinds, rounds=rounds,
                                step=window)
        a.start(at=FIRST, every=every)
        attacker.append(a)

    addresses = (C0, C1) if subflows == 2 else (C0,)
    tracemalloc.start()
    try:
        run = transfer(paths_for(subflows), up=up, down=down, client_addresses=addresses,
                       checksums=checksums, receive_window=window, seed=seed, before_run=arm,
                       isn_secret=seed.to_bytes(16, "big"), until=3.0, settle=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return run, attacker[0], peak


def assert_unharmed(run, attacker, peak, label: str, checksums: bool, up: int = UP,
                    down: int = DOWN) -> None:
    """What the attack may not change (see the module text)."""
    sent = sum(attacker.sent.values())
    print(f"{label}: {sent:,} forged packets, peak traced memory {peak / 2**20:.1f} MiB")
    assert attacker.finished_at is not None, "the transfer ended before every sweep ran"
    escaped = [(kind, f"{type(exc).__name__}: {exc}") for kind, _, exc in attacker.errors]
    assert not escaped, f"raised out of receive_packet: {escaped[:5]}"
    check_prefix(run)
    run.check_exact(up, down)
    assert peak < MEMORY_BOUND, f"peak traced memory {peak:,} bytes"
    if not checksums:                   # RFC 8684 §3.7: MP_FAIL only means something with
        for app in (run.client, run.server):        # checksums; without, it is ignored
            why = [e.why for e in app.events if type(e) is ev.FellBackToTcp]
            assert not any(w.startswith("MP_FAIL") for w in why), why


@pytest.mark.parametrize("subflows", [1, 2])
@pytest.mark.parametrize("checksums", [False, True], ids=["plain", "checksums"])
def test_a_blind_sweep_of_every_kind_changes_nothing(backend, subflows, checksums):
    run, attacker, peak = attacked_transfer(subflows=subflows, checksums=checksums, seed=1)
    assert set(attacker.sent) == set(blind.KINDS)
    assert_unharmed(run, attacker, peak, f"{subflows} subflow(s), checksums={checksums}",
                    checksums)


@pytest.mark.parametrize("kind", blind.KINDS)
def test_one_sweep_of_one_kind_changes_nothing(backend, kind):
    """Each kind alone (so a failure names its kind): two subflows (one for data without DSS,
    the fallback bait), checksums on for the kinds that carry a mapping, off for the others
    (MP_FAIL without checksums must be ignored)."""
    checksums = kind in ("data+dss", "dss-map", "data-fin")
    run, attacker, peak = attacked_transfer(subflows=1 if kind == "data" else 2,
                                            checksums=checksums, seed=7, kinds=(kind,),
                                            rounds=2, every=0.08)
    assert_unharmed(run, attacker, peak, kind, checksums)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(100, 100 + FUZZ_SEEDS))
@pytest.mark.parametrize("subflows", [1, 2])
@pytest.mark.parametrize("checksums", [False, True], ids=["plain", "checksums"])
def test_fuzz_blind_attack(backend, seed, subflows, checksums):
    up, down = 2_000_000, 1_000_000
    run, attacker, peak = attacked_transfer(subflows=subflows, checksums=checksums, seed=seed,
                                            rounds=4, up=up, down=down, every=0.01,
                                            window=blind.DEFAULT_STEP)
    assert_unharmed(run, attacker, peak, f"seed {seed}", checksums, up, down)

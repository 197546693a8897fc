"""A blind, off-path attacker against transfers in the emulated network .

The attacker (mptcp_fast.sim.blind) knows each subflow's 4-tuple and nothing else. While a
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
import random
import tracemalloc

import pytest

from enginenet import C0, C1, PORT, S0, Run, check_prefix, finished, make, transfer
from mptcp_fast.sim import blind
from mptcp_fast.wire import options as opt, packet as pk
from mptcp_fast.engine import events as ev

UP, DOWN = 300_000, 200_000
PATH = dict(rate=4e6, delay=0.010)
FIRST = 0.06                       # the first sweep: both subflows established, data flowing
# peak traced memory of a transfer under attack: the transfer's own buffers (two 4 MiB windows
# at most) and a little per forged packet in flight, never a multiple of what was forged
MEMORY_BOUND = 24 << 20
ANOMALIES_KEPT = 256
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
                      window: int = WINDOW, until: float = 3.0):
    """A transfer with the attacker sweeping ``kinds`` (``rounds`` times) against both ends,
    given ``until`` seconds to finish; returns (Run, attacker, peak traced bytes)."""
    addresses = (C0, C1) if subflows == 2 else (C0,)
    net, client, server, _ = make(paths_for(subflows), up=up, down=down,
                                  client_addresses=addresses, checksums=checksums,
                                  receive_window=window, seed=seed,
                                  isn_secret=seed.to_bytes(16, "big"), seeded_endpoints=True)
    conn = client.open((S0, PORT), 0.0)
    attacker = blind.BlindAttacker(net, [client, server], seed=seed, kinds=kinds,
                                   rounds=rounds, step=window)
    attacker.start(at=FIRST, every=every)
    tracemalloc.start()
    try:
        end = net.run(until=until, stop=finished(client, server))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        net.close()
    return Run(net, client, server, conn, end), attacker, peak


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
    for t in run.up:                    # a counter plus at most ANOMALIES_KEPT, on every path
        assert len(t.conn.anomalies) <= ANOMALIES_KEPT, f"{len(t.conn.anomalies)} anomalies kept"
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
                                            window=blind.DEFAULT_STEP, until=30.0)
    assert_unharmed(run, attacker, peak, f"seed {seed}", checksums, up, down)


# -- the one packet of a sweep that lands: each forgery placed at the receiver's rcv_nxt (where
# a sweep's in-window packet may fall), with a random ACK, during a transfer. Deterministic
# counterparts of the sweeps above, one per way a single blind packet harmed a transfer.

LANDING = {
    # a DSS mapping of bytes ahead in the window with a random DSN (it was stored and stalled the transfer)
    "dss-mapping-ahead": (1, lambda ssn: [opt.Dss(None, False, 0x1234567890ABCDEF, True,
                                                  (ssn + 3000) & 0xFFFFFFFF, 1400, None,
                                                  False)]),
    # a DATA_FIN at a random DSN (it was recorded and the genuine one refused)
    "data-fin": (2, lambda ssn: [opt.Dss(None, False, 0x1234567890ABCDEF, True, 0, 1, None,
                                         True)]),
    # REMOVE_ADDR of every id in use (RFC 8684 §3.4.2: probe the path first)
    "remove-addr": (2, lambda ssn: [opt.RemoveAddr((0, 1, 2, 3))]),
    # data without any DSS on the only subflow (RFC 5961 §5, RFC 8684 §3.7)
    "data-without-dss": (1, None),
    # MP_FAIL on a connection without checksums (RFC 8684 §3.7: never acted upon)
    "mp-fail-without-checksums": (1, lambda ssn: [opt.MpFail(0x1234567890ABCDEF)]),
    # MP_CAPABLE with data_len after the handshake, keys random: its implicit mapping (DSN
    # IDSN + 1 for subflow byte 1) is stored, and the bytes of the initial subflow land at the
    # DSNs of the other subflow's (RFC 8684 §3.1: only the third ACK or first data carry it,
    # with the connection's keys)
    "mp-capable-with-data": (2, lambda ssn: [opt.MpCapable(1, 0x01, 0x1111, 0x2222, 60_000,
                                                           None)]),
}


def land_one(net, server, conn, name: str) -> None:
    """The forgery ``name`` from the client's initial subflow's 4-tuple to the server, with
    sequence number rcv_nxt and a random ACK number."""
    sconn = next(iter(server.endpoint.connections.values()))
    csf, ssf = conn.subflows[0], sconn.subflows[0]
    _, options = LANDING[name]
    payload = b"" if options is not None else b"FORGED" * 100
    area = opt.encode_tcp_options(options(ssf.rcv_nxt)) if options is not None else b""
    forged = pk.build_packet(C0, S0, csf.lport, PORT, (ssf.irs + ssf.rcv_nxt) & 0xFFFFFFFF,
                             random.Random(name).getrandbits(32), pk.ACK, 1000, options=area,
                             payload=payload)
    server.receive_packet(forged, net.now)
    net.wake(server)


@pytest.mark.parametrize("name", sorted(LANDING))
def test_the_one_forged_packet_that_lands_changes_nothing(backend, name):
    subflows = LANDING[name][0]

    def arm(net, client, server, made, conn):
        net.schedule(FIRST, land_one, net, server, conn, name)
    run = transfer(paths_for(subflows), up=UP, down=DOWN,
                   client_addresses=(C0, C1) if subflows == 2 else (C0,),
                   isn_secret=bytes(16), before_run=arm, until=3.0, settle=False)
    check_prefix(run)
    run.check_exact(UP, DOWN)
    for app in (run.client, run.server):
        assert not [e for e in app.events if type(e) is ev.FellBackToTcp]

"""The schedulers in the emulated network, on virtual time and both backends: where each one
puts the data, and what that costs or saves (engine/scheduler.py; docs/engine.md,
"Schedulers").

* A burst written at once on two idle subflows (10 ms and 100 ms round trips): each scheduler
  places its segments its own way, segment by segment.
* A limited receive window over a fast and a slow path: lowest-rtt and round-robin put data
  on the slow path and the fast one waits behind it (head-of-line blocking); ECF and BLEST
  keep to the fast path and finish as fast as it does alone.
* ECF against BLEST: a larger window over a slow path of three times the fast one's RTT: ECF
  counts the backlog and uses the slow path, BLEST counts the window and does not.
* A subflow whose RTT estimate was taken during a delay spike and never again (it carried
  nothing more): lowest-rtt still gives it data once it is idle.
"""

from __future__ import annotations

import dataclasses

import pytest

from enginenet import C0, C1, FAST, PORT, S0, make
from mptcp_fast.engine import Config
from mptcp_fast.sim import demo
from mptcp_fast.wire import options as opt
from mptcp_fast.wire import packet as pk

pytestmark = pytest.mark.usefixtures("backend")

MASK32 = (1 << 32) - 1


# ------------------------------------------------------------------ a burst on idle subflows

class DataSegments:
    """A middlebox on each path that writes down every data segment the client sends, as
    (client address, subflow sequence number, DSN, mapping's subflow sequence, length)."""

    def __init__(self):
        self.seen = []

    def watch(self, path, address: str) -> None:
        def middlebox(packet, from_a):
            p = pk.parse_packet(packet)
            if from_a and p.payload_len:
                for o in opt.parse_tcp_options(bytes(p.options(packet))):
                    if type(o) is opt.Dss and o.dsn is not None:
                        self.seen.append((address, p.seq, o.dsn, o.subflow_seq, p.payload_len))
            return packet
        path.middlebox = middlebox

    def by_subflow(self, conn, first_dsn: int, size: int) -> dict:
        """{subflow id: [segment numbers]} in the order sent: segment n carries the data-level
        bytes from ``first_dsn + n * size``."""
        placed = {}
        for address, seq, dsn, mapped_seq, length in self.seen:
            sf = next(s for s in conn.all_subflows if s.local == _packed(address))
            relative = (seq - sf.iss) & MASK32
            offset = dsn + ((relative - mapped_seq) & MASK32) - first_dsn
            assert offset % size == 0 and length == size, "whole segments only"
            placed.setdefault(sf.sid, []).append(offset // size)
        return placed


def _packed(address: str) -> bytes:
    import ipaddress
    return ipaddress.ip_address(address).packed


def burst_placement(scheduler: str, segments: int = 20) -> dict:
    """Two idle subflows (100 Mbit/s each; 10 ms and 100 ms round trips), then ``segments``
    full segments written at once: which subflow carried which segment."""
    net, client, server, made = make({(C0, S0): dict(rate=100e6, delay=0.005),
                                      (C1, S0): dict(rate=100e6, delay=0.050)},
                                     config=Config(scheduler=scheduler, **FAST),
                                     seeded_endpoints=True)
    segments_seen = DataSegments()
    segments_seen.watch(made[(C0, S0)], C0)
    segments_seen.watch(made[(C1, S0)], C1)
    conn = client.open((S0, PORT), 0.0)
    conn.send(b"hello")                                 # data makes it fully established:
    net.run(until=1.0)                                  # joined then, measured, idle
    segments_seen.seen.clear()
    assert [sf.usable and not sf.outstanding for sf in conn.subflows] == [True, True]
    size = conn.subflows[0].payload_size
    first_dsn = conn.allocator.next_dsn
    conn.send(bytes(segments * size))
    net.wake(client)
    net.run(until=3.0)
    assert conn.allocator.data_ack == (first_dsn + segments * size) & ((1 << 64) - 1)
    return segments_seen.by_subflow(conn, first_dsn, size)


def test_lowest_rtt_fills_the_faster_idle_subflow_first_then_the_other():
    """Both idle (linger 0): the lower RTT takes what its window holds (10 segments, one
    burst); then the idle slow subflow lingers less than the busy fast one."""
    assert burst_placement("lowest-rtt") == {0: list(range(10)), 1: list(range(10, 20))}


def test_round_robin_alternates_segment_by_segment():
    """The first write went on subflow 0 (the only one then): the turn is subflow 1's."""
    assert burst_placement("round-robin") == {1: list(range(0, 20, 2)),
                                              0: list(range(1, 20, 2))}


def test_ecf_waits_for_the_fast_subflow_while_it_finishes_first():
    """After the fast subflow's window (10 segments) 10 are left: done 2 fast RTTs later
    (30 ms: the first write's delayed ACK is in the fast subflow's estimate), before the slow
    path's RTT (100 ms) + delta, and on the slow path they would take a whole window's round
    trip there (100 ms), more than 2 fast RTTs + delta (80 ms): ECF waits. The fast subflow's
    first ACK (for two segments: a delayed ACK) lets 4 more go, the 2 it acknowledged and the
    2 slow start adds for them; the last 6 would take 6/10 of the slow window's round trip
    (60 ms), under 80 ms: ECF sends them there (the kernel module, which counts at least a
    whole window, would wait)."""
    assert burst_placement("ecf") == {0: list(range(14)), 1: list(range(14, 20))}


def test_blest_waits_for_the_fast_subflow_whose_sending_the_window_would_block():
    """The fast subflow, in its first slow start, could send far more than the 512 KiB window
    during the slow one's 100 ms: BLEST never uses the slow subflow here."""
    assert burst_placement("blest") == {0: list(range(20))}


def test_redundant_sends_every_segment_on_both():
    """New data on the fast subflow, a copy of each on the slow one as its window allows (its
    first 10, the rest acknowledged through the fast subflow before it had room again)."""
    assert burst_placement("redundant") == {0: list(range(20)), 1: list(range(10))}


# ------------------------------------------------------ a limited receive window (HoL blocking)

FAST_PATH = demo.PathSpec(50e6, 0.005)          # 10 ms round trip
SLOW_PATH = demo.PathSpec(20e6, 0.040)          # 80 ms round trip


def completion(scheduler: str, paths, window: int, size: int = 2 << 20) -> dict:
    run = demo.run_transfer(size, paths, scheduler=scheduler, receive_window=window)
    assert run["exact"]
    return {"seconds": run["completion_seconds"],
            "bytes": [s["bytes"] for s in run["subflows"]]}


def test_with_a_small_receive_window_ecf_and_blest_avoid_the_head_of_line_blocking():
    """128 KiB of receive window, 2 MiB: a segment on the 80 ms path holds the window's left
    edge for 80 ms while the fast path could have moved the whole window several times.
    lowest-rtt gives the slow subflow whatever it has room for whenever it is idle, and
    round-robin every other segment: both finish far later than the fast path alone. ECF and
    BLEST never use the slow path here and finish with the fast path alone."""
    window = 128 << 10
    alone = completion("lowest-rtt", [FAST_PATH], window)["seconds"]
    runs = {s: completion(s, [FAST_PATH, SLOW_PATH], window)
            for s in ("lowest-rtt", "round-robin", "ecf", "blest")}
    for avoiding in ("ecf", "blest"):
        assert runs[avoiding]["bytes"][1] == 0
        assert runs[avoiding]["seconds"] == pytest.approx(alone, abs=0.005)
    assert runs["lowest-rtt"]["bytes"][1] > 100_000
    assert runs["lowest-rtt"]["seconds"] > alone + 0.2           # blocked behind the slow path
    assert runs["round-robin"]["seconds"] > runs["lowest-rtt"]["seconds"] + 0.2


def test_ecf_uses_a_moderately_slower_path_for_a_backlog_where_blest_sees_the_window():
    """256 KiB of window, a slow path of 3 times the fast one's RTT (30 ms): ECF's backlog
    (the send buffer, twice the window) is done sooner with the slow path's help, so it sends
    there; BLEST's estimate of what the fast subflow (in its first slow start, doubling each
    round trip) sends during 30 ms does not fit the window beside it, so it waits. Here the
    slow path helps: ECF finishes first. (The slow subflow's window grows only as far as it
    is used, as Linux's does (Subflow.is_cwnd_limited), and ECF weighs the backlog against
    that window: it sends about 100 KB there, 0.41 s against BLEST's 0.43 s. With windows
    grown by every ACK it sent 366 KB and took 0.37 s.)"""
    window = 256 << 10
    slow = demo.PathSpec(30e6, 0.015)
    ecf = completion("ecf", [FAST_PATH, slow], window)
    blest = completion("blest", [FAST_PATH, slow], window)
    assert ecf["bytes"][1] > 100_000 and blest["bytes"][1] == 0
    assert ecf["seconds"] < blest["seconds"] - 0.015


# ----------------------------------------------- a stale RTT estimate must not idle a subflow

def test_a_subflow_with_a_stale_rtt_estimate_is_used_again_once_it_is_idle():
    """Two equal paths (10 ms round trip, fast enough that the receive window, 256 KiB, is
    the limit). Path 1's delay jumps to 40 ms for 30 ms: subflow 1's RTT estimate rises and,
    while it carries nothing, is never measured again. With the lowest RTT alone the other
    subflow always had room (its window grows past the receive window), so subflow 1 stayed
    idle to the end: the joined subflow that stopped carrying data in a long proxy run. Linux
    ranks by linger time: an idle subflow lingers 0 s and is used."""
    server_config = dataclasses.replace(Config(**FAST), receive_window=256 << 10,
                                        initial_receive_window=256 << 10)
    net, client, server, made = make({(C0, S0): dict(rate=10e9, delay=0.005, queue=64 << 20),
                                      (C1, S0): dict(rate=10e9, delay=0.005, queue=64 << 20)},
                                     up=24 << 20, server_config=server_config,
                                     seeded_endpoints=True)
    spiked = made[(C1, S0)]

    def set_delay(seconds):
        spiked.delay = seconds
    net.schedule(0.30, set_delay, 0.020)
    net.schedule(0.33, set_delay, 0.005)
    conn = client.open((S0, PORT), 0.0)
    net.run(until=0.3)
    joined = next(sf for sf in conn.subflows if sf.join is not None)
    estimates = []
    while net.now < 0.45:                               # the spike's sample reaches the
        net.run(until=net.now + 0.005)                  # joined subflow's estimate
        estimates.append(joined.srtt)
    assert max(estimates) > 0.012
    before = {sf.sid: sf.bytes_sent for sf in conn.subflows}
    net.run(until=30.0, stop=lambda: server.ended > 0)
    (received,) = server.transfers.values()
    assert received.received == 24 << 20
    after = {sf.sid: sf.bytes_sent - before[sf.sid] for sf in conn.subflows}
    # its share follows the linger times of the two windows (about a fifth here, the
    # other subflow's window being the larger); left idle, it carried nothing
    assert after[joined.sid] > sum(after.values()) // 8

"""The data-level receive pipeline (mptcp_fast.wire.receiver) used directly, as the engine will:
mappings and segments of two subflows in, the byte stream, checksum verdicts and counters
out, on both backends; and the two backends agree on random traffic."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import dss, receiver

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
IDSN = 0x570762CD38BE9818


def make(checksums=False, budget=(1 << 28, 1 << 26)):
    events = []
    rx = receiver.DataReceiver(events, receiver.ChecksumBudget(*budget), 0,
                               dss.verify_dss_checksum)
    queue = dss.ReassemblyQueue(IDSN + 1, window=1 << 20)
    rx.start(IDSN + 1, queue, lambda: None)
    rx.checksums = checksums
    return rx, queue, events


def test_two_subflows_rebuild_the_stream(backend):
    data = bytes(random.Random(1).randbytes(6000))
    rx, queue, events = make(checksums=True)
    a, b = rx.subflow(0), rx.subflow(1)
    # subflow a carries [0, 3000) in two mappings, subflow b [3000, 6000) in one; b arrives first
    pieces = [(b, 3000, 1, 3000), (a, 0, 1, 1500), (a, 1500, 1501, 1500)]
    for number, (side, offset, ssn, n) in enumerate(pieces, start=1):
        dsn = IDSN + 1 + offset
        checksum = dss.dss_checksum(dsn, ssn, n, data[offset:offset + n])
        rx.declare(number, side, dsn, ssn, n, False, checksum, False)
        rx.deliver(number, side, ssn, n, data[offset:offset + n])
    assert queue.read() == data and events == []
    c = rx.counters()
    assert (c.data_bytes, c.out_of_order_bytes, c.duplicate_bytes, c.reinjected_bytes) == (
        6000, 3000, 0, 0)
    assert (a.counters().unverified_checksums, b.counters().unverified_checksums) == (0, 0)
    # subflow a fails; its second half is reinjected on b: duplicate and reinjected, not new
    rx.declare(4, b, IDSN + 1 + 1500, 3001, 1500, False, None, False)
    rx.deliver(4, b, 3001, 1500, data[1500:3000])
    c = rx.counters()
    assert (c.data_bytes, c.duplicate_bytes, c.reinjected_bytes) == (6000, 1500, 1500)
    assert b.counters().reinjected_bytes == 1500 and queue.read() == b""


def test_checksum_failure_is_an_event_naming_the_packets(backend):
    data = bytes(range(200)) * 5
    rx, queue, events = make(checksums=True)
    sub = rx.subflow(7)
    rx.declare(10, sub, IDSN + 1, 1, 1000, False, dss.dss_checksum(IDSN + 1, 1, 1000, data) ^ 1,
               False)
    rx.deliver(10, sub, 1, 600, data[:600])
    rx.deliver(11, sub, 601, 400, data[600:])
    (event,) = events
    assert isinstance(event, receiver.Event)
    assert (event.packet, event.subflow, event.packets) == (11, 7, (10, 11))
    assert event.text == f"DSS checksum failure for the mapping at DSN {IDSN + 1} carried by " \
                         "packets 10, 11"


def test_unmapped_bytes_and_contradictions_are_events(backend):
    rx, queue, events = make()
    sub = rx.subflow(0)
    rx.deliver(1, sub, 1, 10, bytes(10))
    rx.declare(2, sub, IDSN + 1, 1, 10, False, None, False)
    rx.declare(3, sub, IDSN + 50, 5, 10, False, None, False)           # other DSNs, same bytes
    assert [e.text for e in events] == [
        "subflow bytes from 1 have no mapping",
        f"Mapping(dsn={IDSN + 50}, subflow_seq=5, length=10, data_fin=False, checksum=None) "
        f"contradicts subflow bytes 1..10 mapped at DSN {IDSN + 1}"]


def test_data_acks_and_data_fin(backend):
    rx, queue, events = make()
    sub = rx.subflow(0)
    rx.declare(1, sub, IDSN + 1, 1, 6, True, None, False)                  # 5 bytes + DATA_FIN
    rx.deliver(1, sub, 1, 5, b"hello")
    rx.acknowledged((IDSN + 3) & 0xFFFFFFFF, False)                         # a 32-bit DATA_ACK
    c = rx.counters()
    assert (c.data_fin, c.data_acked, c.all_seen) == (IDSN + 6, IDSN + 3, True)
    assert queue.read() == b"hello" and queue.eof
    assert rx.expand_dsn((IDSN + 9) & 0xFFFFFFFF) == IDSN + 9


def test_the_budget_bounds_what_waits_for_a_checksum(backend):
    rx, queue, events = make(checksums=True, budget=(3000, 2000))
    sub = rx.subflow(0)
    for k in range(3):                                     # three mappings whose data never comes
        rx.declare(k, sub, IDSN + 1 + 1000 * k, 1 + 1000 * k, 1000, False, 0x1234, False)
    assert rx.budget.claimed == 2000 and sub.counters().unverified_checksums == 3
    rx.deliver(5, sub, 1, 1000, bytes(1000))               # the first one completes (and fails)
    assert rx.budget.claimed == 1000 and len(events) == 1


def watched(horizon, log):
    """A receiver that passes holes (as the capture analyzer's do): ``log`` gets the bytes
    each drain hands over and each gap, in the order they come."""
    events = []
    rx = receiver.DataReceiver(events, receiver.ChecksumBudget(1 << 28, 1 << 26), 0,
                               dss.verify_dss_checksum)
    queue = dss.ReassemblyQueue(IDSN + 1, window=1 << 20)

    def drain():
        data = queue.read()
        if data:
            log.append(data)
    rx.start(IDSN + 1, queue, drain)
    rx.watch_gaps(horizon, lambda dsn, length: log.append((dsn - IDSN - 1, length)))
    return rx, queue, events


def test_holes_are_passed_as_gaps_and_the_stream_goes_on(backend):
    """Bytes a capture never saw: a hole is passed once the receiver's DATA_ACK went beyond
    it, once bytes were seen more than the horizon beyond it, or at finish() (and the bytes
    missing before the DATA_FIN then too). Each gap comes after the bytes before it were
    drained; the queue goes on after it; a byte that arrives in a passed gap is late."""
    data = bytes(random.Random(2).randbytes(10000))
    log = []
    rx, queue, events = watched(3500, log)
    a, b = rx.subflow(0), rx.subflow(1)

    def send(side, offset, n, number, fin_len=None):
        length = n if fin_len is None else fin_len
        rx.declare(number, side, IDSN + 1 + offset, 1 + offset, length, fin_len is not None,
                   None, False)
        rx.deliver(number, side, 1 + offset, n, data[offset:offset + n])
    send(a, 0, 1000, 1)
    send(a, 3000, 1000, 2)                    # [1000, 3000) not captured
    rx.acknowledged(IDSN + 1 + 2000, True)    # the receiver has not all of it yet: waits
    assert log == [] and rx.counters().gaps == 0
    rx.acknowledged(IDSN + 1 + 3500, True)    # now it has: the hole is a gap
    assert log == [data[:1000], (1000, 2000)]
    send(b, 7000, 1000, 3)                    # [4000, 7000) missing, and 4,000 bytes on:
    assert log[2:] == [data[3000:4000], (4000, 3000)]        # beyond the horizon
    send(b, 9000, 500, 4, fin_len=1001)       # [9000, 10000) + DATA_FIN; [8000, 9000) and
    assert rx.counters().gaps == 2            # [9500, 10000) missing: passed at the end
    rx.finish()
    assert queue.read() == b""
    assert log[4:] == [data[7000:8000], (8000, 1000), data[9000:9500], (9500, 500)]
    c = rx.counters()
    assert (c.gaps, c.missing_bytes, c.data_bytes, c.late_bytes, c.all_seen) == (
        4, 6500, 3500, 0, True)
    assert queue.eof and queue.data_ack == IDSN + 1 + 10001 and events == []
    send(a, 1500, 100, 5)                     # into a passed gap: late, not rebuilt
    c = rx.counters()
    assert (c.late_bytes, c.data_bytes, queue.duplicate_bytes) == (100, 3600, 100)
    assert queue.read() == b""


def test_a_receiver_that_does_not_watch_waits_for_every_hole(backend):
    """The engine's receivers never pass a hole: the bytes after it wait for it."""
    data = bytes(random.Random(3).randbytes(4000))
    rx, queue, events = make()
    sub = rx.subflow(0)
    rx.declare(1, sub, IDSN + 1 + 3000, 3001, 1000, False, None, False)
    rx.deliver(1, sub, 3001, 1000, data[3000:])
    rx.acknowledged(IDSN + 1 + 4000, True)
    rx.finish()
    assert queue.read() == b"" and rx.counters().gaps == 0
    rx.declare(2, sub, IDSN + 1, 1, 3000, False, None, False)
    rx.deliver(2, sub, 1, 3000, data[:3000])
    assert queue.read() == data


def test_a_zero_window_probe_is_not_placed_in_the_stream(backend):
    """Linux's MPTCP zero-window probe (protocol.c, mptcp_sendmsg_frag) maps one byte at
    DSN snd_una - 1, already acknowledged, but carries the first byte not yet sent. Placed
    at its DSN it would contradict the byte there (CONFLICTING, when that byte still waits
    behind a hole): it is counted and set aside instead."""
    data = bytes(random.Random(4).randbytes(2000))
    rx, queue, events = make()
    a, b = rx.subflow(0), rx.subflow(1)
    rx.declare(1, a, IDSN + 1 + 500, 501, 500, False, None, False)     # [500, 1000): waits
    rx.deliver(1, a, 501, 500, data[500:1000])                          # behind [0, 500)
    rx.acknowledged(IDSN + 1 + 1000, True)                              # the receiver had all
    for number, side, ssn in ((2, a, 1001), (3, b, 1)):                 # a probe on each
        rx.declare(number, side, IDSN + 1 + 999, ssn, 1, False, None, False)
        rx.deliver(number, side, ssn, 1, data[1000:1001])               # the next byte
    c = rx.counters()
    assert (c.zero_window_probes, c.duplicate_bytes, c.reinjected_bytes) == (2, 0, 0)
    rx.declare(4, b, IDSN + 1, 2, 500, False, None, False)
    rx.deliver(4, b, 2, 500, data[:500])
    rx.declare(5, a, IDSN + 1 + 1000, 1002, 1000, False, None, False)  # then the real byte
    rx.deliver(5, a, 1002, 1000, data[1000:])
    assert queue.read() == data and queue.conflict_bytes == 0 and events == []
    assert rx.counters().data_bytes == 2000


ops = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60), st.integers(1, 40),
                         st.booleans(), st.booleans()), max_size=30)


@relaxed
@given(ops=ops, checksums=st.booleans())
def test_backends_agree_on_random_traffic(on_both, ops, checksums):
    """Random mappings (some contradicting, some with the wrong checksum) and segments on three
    subflows: the same stream, events and counters on both backends."""
    stream = bytes(random.Random(5).randbytes(200))

    def run():
        rx, queue, events = make(checksums=checksums)
        subs = [rx.subflow(i) for i in range(3)]
        for number, (k, offset, n, lie, bad) in enumerate(ops):
            ssn = 1 + offset
            dsn = IDSN + 1 + offset + (7 if lie else 0)
            piece = stream[offset:offset + n]
            csum = dss.dss_checksum(dsn, ssn, len(piece), piece) ^ bad if checksums else None
            rx.declare(number, subs[k], dsn, ssn, len(piece), False, csum, False)
            rx.deliver(number, subs[k], ssn, len(piece), piece)
        return (queue.read(), [tuple(vars_of(e)) for e in events], rx.counters(),
                [s.counters() for s in subs])
    compiled, pure = on_both(run)
    assert compiled == pure


@relaxed
@given(ops=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 90), st.integers(1, 30),
                              st.integers(0, 3)), max_size=40),
       horizon=st.integers(1, 60))
def test_backends_agree_on_gaps(on_both, ops, horizon):
    """Random segments on two subflows, random DATA_ACKs (and one-byte mappings below them),
    holes passed at the horizon, on the ACKs and at the end: the same bytes, gaps and
    counters on both backends."""
    stream = bytes(random.Random(6).randbytes(200))

    def run():
        log = []
        rx, queue, events = watched(horizon, log)
        subs = [rx.subflow(i) for i in range(2)]
        ssn = [1, 1]
        for number, (k, offset, n, what) in enumerate(ops):
            if what == 0:                       # a DATA_ACK
                rx.acknowledged(IDSN + 1 + offset, True)
                continue
            n = 1 if what == 1 else n           # a one-byte mapping (a probe when acked)
            piece = stream[offset:offset + n]
            rx.declare(number, subs[k], IDSN + 1 + offset, ssn[k], len(piece), False, None,
                       False)
            rx.deliver(number, subs[k], ssn[k], len(piece), piece)
            ssn[k] += len(piece)
        rx.finish()
        log.append(queue.read())
        return log, [tuple(vars_of(e)) for e in events], rx.counters()
    compiled, pure = on_both(run)
    assert compiled == pure


def vars_of(event):
    return event.packet, event.subflow, event.text, event.packets


def test_deliver_checks_the_payload_length(backend):
    rx, queue, events = make()
    sub = rx.subflow(0)
    rx.declare(1, sub, IDSN + 1, 1, 10, False, None, False)
    with pytest.raises(ValueError):
        rx.deliver(1, sub, 1, 10, b"short")


def test_subflow_resolve_is_the_mapping_stores(on_both):
    """SubflowReceiver.resolve (the engine reads DSNs with it) gives the same runs, or the same
    UnmappedData, on both twins."""
    from mptcp_fast.wire import dss, receiver

    def run():
        rx = receiver.DataReceiver([], receiver.ChecksumBudget(1 << 20, 1 << 20), 0,
                                   dss.verify_dss_checksum)
        side = rx.subflow(0)
        rx.declare(1, side, 1000, 1, 100, False, None, False)
        rx.declare(2, side, 1100, 101, 50, False, None, False)      # contiguous: merged
        rx.declare(3, side, 5000, 151, 10, False, None, False)      # a jump
        out = [side.resolve(1, 160), side.resolve(120, 40)]
        try:
            side.resolve(150, 20)
        except dss.UnmappedData as exc:
            out.append(str(exc))
        return out
    compiled, pure = on_both(run)
    assert compiled == pure == [[(1000, 150), (5000, 10)], [(1119, 31), (5000, 9)],
                                "subflow bytes from 161 have no mapping"]

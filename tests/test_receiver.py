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

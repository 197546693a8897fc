"""The sender's DSN bookkeeping (dss.DsnAllocator, one source for both backends): allocation,
reinjection records, cumulative DATA_ACKs (RFC 8684 §3.3.2, §3.3.6), against a model that
keeps every range in a plain list, on both backends."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import dss
from mptcp_fast.wire.dss import Mapping, SentRange

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
M64 = 2**64


def test_allocator_and_reinjection(backend):
    alloc = dss.DsnAllocator(initial_dsn=1001)
    a, b = object(), object()
    assert alloc.allocate(a, 1, 100) == Mapping(1001, 1, 100)
    assert alloc.allocate(b, 1, 100) == Mapping(1101, 1, 100)
    assert alloc.allocate_dsn(a, 101, 100) == 1201
    assert alloc.acknowledge(1051)                           # half of the first range
    assert alloc.to_reinject(a) == [(1051, 50), (1201, 100)]
    assert alloc.resend(1051, 50, b, 101) == Mapping(1051, 101, 50)
    assert alloc.outstanding(b) == [SentRange(1101, 100, b, 1), SentRange(1051, 50, b, 101)]
    assert alloc.outstanding_bytes() == 250
    assert alloc.acknowledge(1301)
    assert alloc.outstanding() == [] and alloc.to_reinject(a) == []
    assert not alloc.acknowledge(99_999)                     # beyond what was sent: ignored
    assert not alloc.acknowledge(1200)                       # behind: ignored
    assert alloc.data_ack == 1301 == alloc.next_dsn
    with pytest.raises(ValueError):
        alloc.allocate(a, 1, 70_000)
    with pytest.raises(ValueError):
        alloc.resend(1301, 10, a, 1)                         # never allocated
    with pytest.raises(TypeError):
        alloc.acknowledge(1.5)


def test_dsns_wrap_past_2_64(backend):
    alloc = dss.DsnAllocator(M64 - 100)
    s = object()
    assert alloc.allocate_dsn(s, 1, 150) == M64 - 100
    assert alloc.next_dsn == 50
    assert alloc.acknowledge(10)                             # 110 bytes on, across the wrap
    assert alloc.to_reinject(s) == [(10, 40)] and alloc.data_ack == 10


class Model:
    """Every range sent, in a list; acknowledged ones filtered at query time."""

    def __init__(self, initial):
        self.base, self.next, self.acked, self.sent = initial, 0, 0, []

    def ack(self, offset):
        if offset <= self.acked or offset > self.next:
            return offset == self.acked
        self.acked = offset
        return True

    def outstanding(self, subflow=None):
        return [SentRange((self.base + s) % M64, e - s, f, q) for s, e, f, q in self.sent
                if e > self.acked and (subflow is None or f == subflow)]

    def to_reinject(self, subflow):
        return [((self.base + max(s, self.acked)) % M64, e - max(s, self.acked))
                for s, e, f, q in self.sent if f == subflow and e > self.acked]


ops = st.lists(st.one_of(
    st.tuples(st.just("allocate"), st.integers(0, 3), st.integers(1, 3000)),
    st.tuples(st.just("resend"), st.integers(0, 3), st.integers(0, 10**6), st.integers(1, 2000)),
    st.tuples(st.just("ack"), st.integers(-5000, 10**6)),
    st.tuples(st.just("query"), st.integers(0, 3))), max_size=60)


@relaxed
@given(initial=st.sampled_from([0, 1000, 2**32 - 7, 2**63 - 5, M64 - 3000]), ops=ops)
def test_allocator_matches_a_list_model(backend, initial, ops):
    alloc, model = dss.DsnAllocator(initial), Model(initial)
    subflows = [f"subflow{i}" for i in range(4)]
    seqs = [1] * 4
    for op in ops:
        if op[0] == "allocate":
            _, k, n = op
            assert alloc.allocate_dsn(subflows[k], seqs[k], n) == (initial + model.next) % M64
            model.sent.append((model.next, model.next + n, subflows[k], seqs[k]))
            model.next += n
            seqs[k] += n
        elif op[0] == "resend" and model.next:
            _, k, at, n = op
            start = at % model.next
            n = min(n, model.next - start)
            alloc.resend((initial + start) % M64, n, subflows[k], seqs[k])
            model.sent.append((start, start + n, subflows[k], seqs[k]))
            seqs[k] += n
        elif op[0] == "ack":
            offset = op[1] % (model.next + 1) if op[1] >= 0 else op[1]
            assert alloc.acknowledge((initial + offset) % M64) == model.ack(offset)
        elif op[0] == "query":
            name = subflows[op[1]]
            assert alloc.to_reinject(name) == model.to_reinject(name)
            assert alloc.outstanding(name) == model.outstanding(name)
        assert alloc.data_ack == (initial + model.acked) % M64
        assert alloc.outstanding_bytes() == model.next - model.acked
    assert sorted(alloc.outstanding(), key=lambda r: (r.dsn, r.subflow_seq)) == \
        sorted(model.outstanding(), key=lambda r: (r.dsn, r.subflow_seq))


def test_many_segments_acknowledged_in_steps(backend):
    """100,000 segments on two subflows, a DATA_ACK every ten: what is left outstanding and
    to reinject is exactly the last five segments."""
    alloc = dss.DsnAllocator(5)
    subflows = [object(), object()]
    for i in range(100_000):
        alloc.allocate_dsn(subflows[i & 1], 1 + (i >> 1) * 1448, 1448)
        if i % 10 == 9:
            assert alloc.acknowledge(5 + (i - 4) * 1448)
    assert alloc.outstanding_bytes() == 5 * 1448
    assert [r.length for r in alloc.outstanding()] == [1448] * 5
    assert alloc.to_reinject(subflows[1]) == [(5 + 99_995 * 1448 + 1448 * k, 1448) for k in (0, 2, 4)]

"""Connection-level reassembly on both backends: model-based (hypothesis stateful), shuffled
and overlapping pieces, the window bound, conflicting overlaps, DATA_FIN, backend agreement."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mptcp_fast import ProtocolError, _backend
from mptcp_fast.wire import dss

relaxed = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
COUNTERS = ("out_of_order_bytes", "duplicate_bytes", "refused_bytes", "conflict_bytes",
            "peak_queued_bytes")


def queue_classes():
    return [_backend.implementation("_dss", name).ReassemblyQueue for name in _backend.available()]


def counters(queue):
    return tuple(getattr(queue, name) for name in COUNTERS) + (queue.data_ack, queue.eof,
                                                                 queue.queued_bytes)


@relaxed
@given(stream=st.binary(min_size=1, max_size=3000), base=st.integers(0, 2**64 - 1),
       seed=st.integers(0, 2**32), dup_rate=st.floats(0, 0.5))
def test_shuffled_duplicated_overlapping_pieces_come_out_exact(backend, stream, base, seed, dup_rate):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 40))))
    bounds = [0, *cuts, len(stream)]
    pieces = [(lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    extra = []
    for _ in range(int(len(pieces) * dup_rate) + 1):   # duplicates and overlaps (reinjections)
        lo = rng.randrange(len(stream))
        extra.append((lo, min(len(stream), lo + rng.randint(1, 200))))
    order = pieces + extra
    rng.shuffle(order)
    queue = dss.ReassemblyQueue(base, window=len(stream) + 1)
    out = []
    for lo, hi in order:
        queue.push((base + lo) % 2**64, stream[lo:hi])
        if rng.random() < 0.3:
            out.append(queue.read())
    queue.data_fin((base + len(stream)) % 2**64)
    out.append(queue.read())
    assert b"".join(out) == stream
    assert queue.eof and queue.data_ack == (base + len(stream) + 1) % 2**64
    assert queue.conflict_bytes == 0 and queue.refused_bytes == 0
    assert queue.duplicate_bytes == sum(hi - lo for lo, hi in order) - len(stream)


class ByteModel:
    """The reference: the queue's contract, one byte at a time (slow and obviously right)."""

    def __init__(self, window):
        self.window, self.ack, self.read_pos, self.fin, self.eof = window, 0, 0, None, False
        self.present, self.ready = {}, bytearray()
        self.duplicate = self.refused = self.conflict = 0

    def push(self, offset, data):
        for i, byte in enumerate(data):
            o = offset + i
            limit = self.read_pos + self.window
            if self.fin is not None:
                limit = min(limit, self.fin)
            if o >= self.ack and o >= limit:       # (after the DATA_FIN, all beyond it)
                self.refused += 1
            elif o < self.ack or o in self.present:
                self.duplicate += 1
                self.conflict += o in self.present and self.present[o] != byte
            else:
                self.present[o] = byte
        while self.ack in self.present:
            self.ready.append(self.present.pop(self.ack))
            self.ack += 1
        self.eof = self.eof or self.ack == self.fin

    def read(self, max_bytes):
        n = len(self.ready) if max_bytes < 0 else min(max_bytes, len(self.ready))
        out, self.ready = bytes(self.ready[:n]), self.ready[n:]
        self.read_pos += n
        return out


class ReassemblyModel(RuleBasedStateMachine):
    """Every backend's queue and the byte model get the same random pushes (right bytes,
    overlapping, duplicated, and some wrong copies) and reads: what comes out, the
    duplicate/refused/conflict counters and DATA_ACK must match the model exactly, the
    queue never holds more than its window, and the backends agree on every counter."""

    @initialize(stream=st.binary(min_size=1, max_size=4000), base=st.integers(0, 2**64 - 1),
                window=st.integers(1, 5000))
    def setup(self, stream, base, window):
        self.stream, self.base, self.window = stream, base, window
        self.queues = [cls(base, window=window) for cls in queue_classes()]
        self.model = ByteModel(window)

    def _push(self, lo, data):
        accepted = {q.push((self.base + lo) % 2**64, data) for q in self.queues}
        assert len(accepted) == 1
        self.model.push(lo, data)

    @rule(data=st.data())
    def push_piece(self, data):
        lo = data.draw(st.integers(0, len(self.stream) - 1))
        hi = data.draw(st.integers(lo + 1, min(len(self.stream), lo + 1500)))
        self._push(lo, self.stream[lo:hi])

    @rule(data=st.data())
    def push_wrong_copy(self, data):
        lo = data.draw(st.integers(0, len(self.stream) - 1))
        hi = min(len(self.stream), lo + data.draw(st.integers(1, 50)))
        self._push(lo, bytes(b ^ 0xFF for b in self.stream[lo:hi]))

    @rule(max_bytes=st.integers(-1, 3000))
    def read(self, max_bytes):
        expected = self.model.read(max_bytes)
        for q in self.queues:
            assert q.read(max_bytes) == expected

    @precondition(lambda self: self.model.fin is None and self.model.ack == len(self.stream))
    @rule()
    def data_fin(self):
        for q in self.queues:
            q.data_fin((self.base + len(self.stream)) % 2**64)
        self.model.fin = len(self.stream)
        self.model.push(0, b"")

    @invariant()
    def matches_the_model(self):
        m = self.model
        for q in self.queues:
            assert (q.duplicate_bytes, q.refused_bytes, q.conflict_bytes) == (
                m.duplicate, m.refused, m.conflict)
            assert q.data_ack == (self.base + m.ack + m.eof) % 2**64 and q.eof == m.eof
            assert q.queued_bytes == len(m.ready) + len(m.present) <= self.window
            assert q.peak_queued_bytes <= self.window

    @invariant()
    def backends_agree(self):
        assert len({counters(q) for q in self.queues}) == 1


TestReassemblyModel = ReassemblyModel.TestCase
TestReassemblyModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_window_refuses_and_counts(backend):
    queue = dss.ReassemblyQueue(0, window=10)
    assert queue.push(5, b"x" * 20) == 5          # bytes 5..9 fit, 10..24 refused
    assert queue.refused_bytes == 15 and queue.out_of_order_bytes == 5
    assert queue.push(0, b"abcde") == 5 and queue.read() == b"abcdexxxxx"
    assert queue.window_left == 10 and queue.push(10, b"y" * 3) == 3
    assert queue.push(100, b"z") == 0 and queue.refused_bytes == 16


def test_conflicting_overlap_is_reported_and_first_copy_kept(backend):
    queue = dss.ReassemblyQueue(1000)
    queue.push(1004, b"EFGH")
    queue.push(1002, b"cdXfgh")                     # overlaps EFGH with different bytes
    queue.push(1000, b"ab")
    assert queue.read() == b"abcdEFGH"
    assert queue.conflict_bytes == 4 and queue.conflicts == [(1004, 4)]
    assert queue.duplicate_bytes == 4


def test_data_fin_rules(backend):
    queue = dss.ReassemblyQueue(0)
    queue.push(5, b"later")
    with pytest.raises(ProtocolError):
        queue.data_fin(7)                           # below data already received
    queue.data_fin(10)
    assert not queue.eof
    assert queue.push(10, b"beyond") == 0 and queue.refused_bytes == 6
    with pytest.raises(ProtocolError):
        queue.data_fin(11)                          # the DATA_FIN cannot move
    queue.push(0, b"early")
    assert queue.eof and queue.data_ack == 11 and queue.read() == b"earlylater"
    # a retransmission of bytes below the DATA_FIN, once the stream is whole, is a duplicate
    # (its subflow acknowledges it), not refused; bytes beyond the DATA_FIN are refused
    refused, duplicates = queue.refused_bytes, queue.duplicate_bytes
    assert queue.push(3, b"ly") == 0
    assert (queue.duplicate_bytes, queue.refused_bytes) == (duplicates + 2, refused)
    assert queue.push(8, b"terXY") == 0
    assert (queue.duplicate_bytes, queue.refused_bytes) == (duplicates + 4, refused + 3)
    queue.data_fin(10)                              # a retransmitted DATA_FIN is fine


def test_in_order_bytes_are_not_copied(backend):
    queue = dss.ReassemblyQueue(0)
    piece = b"q" * 1000
    queue.push(0, piece)
    assert queue.read() is piece                    # handed back as is, joined never
    mutable = bytearray(b"abc")
    queue.push(1000, mutable)
    mutable[0] = ord("Z")                           # a caller's buffer may change: copied
    assert queue.read() == b"abc"


def test_a_short_read_leaves_the_other_pieces_as_they_were(backend):
    """read(n) takes from the front: the pieces behind stay the same objects (a read of
    64 KiB out of a queue of megabytes copies 64 KiB, not the queue)."""
    queue = dss.ReassemblyQueue(0, window=1 << 20)
    pieces = [bytes([i]) * 1000 for i in range(10)]
    for i, piece in enumerate(pieces):
        queue.push(1000 * i, piece)
    assert queue.read(1500) == pieces[0] + pieces[1][:500]
    assert queue.read(500) == pieces[1][500:]
    rest = queue.read_pieces()
    assert len(rest) == 8 and all(a is b for a, b in zip(rest, pieces[2:]))


def test_read_some_hands_a_large_first_piece_alone_and_uncopied(backend):
    """read_some(n): a first piece of WHOLE_PIECE bytes or more that fits in n comes alone, the
    same object (an offloaded segment's payload reaches the reader uncopied), cut when it does
    not fit; small pieces are joined up to n or up to the first large one, never with it."""
    queue = dss.ReassemblyQueue(0, window=1 << 20)
    big, small = b"B" * 65000, b"s" * 1000
    for dsn, piece in ((0, big), (65000, big), (130000, small), (131000, small)):
        queue.push(dsn, piece)
    assert queue.read_some(1 << 20) is big
    assert queue.read_some(65000) is big                     # (it fits exactly)
    assert queue.read_some(1 << 20) == small + small         # small ones: joined
    queue.push(132000, big)
    assert queue.read_some(64999) == big[:64999]             # too large: read(n)'s cut
    assert queue.read_some(1 << 20) == big[64999:]
    assert queue.read_some(1 << 20) == b""
    at = 197000
    for piece in (small, small, small, big, small):          # small ones up to a large one:
        queue.push(at, piece)                                # the large one is not joined
        at += len(piece)
    assert queue.read_some(1 << 20) == small * 3 and queue.read_some(1 << 20) is big
    assert queue.read_some(1 << 20) == small
    below, edge = b"z" * (dss.WHOLE_PIECE - 1), bytes(dss.WHOLE_PIECE)   # (both twins' limit)
    for piece in (below, b"y", edge, b"y"):
        queue.push(at, piece)
        at += len(piece)
    assert queue.read_some(1 << 20) == below + b"y"
    assert queue.read_some(1 << 20) is edge and queue.read_some(1 << 20) == b"y"


def test_counters_and_peak(backend):
    queue = dss.ReassemblyQueue(0, window=100)
    queue.push(50, b"b" * 10)
    queue.push(50, b"b" * 10)
    queue.push(0, b"a" * 50)
    assert (queue.out_of_order_bytes, queue.duplicate_bytes, queue.peak_queued_bytes) == (10, 10, 60)
    assert queue.read() == b"a" * 50 + b"b" * 10 and queue.queued_bytes == 0


def test_push_many_and_read_pieces(backend):
    stream = bytes(range(256)) * 40
    pieces = [(off, stream[off:off + 700]) for off in range(0, len(stream), 700)]
    order = pieces[1::2] + pieces[0::2]                 # every odd piece first, then the rest
    one, many = dss.ReassemblyQueue(2**64 - 1000), dss.ReassemblyQueue(2**64 - 1000)
    for off, piece in order:
        one.push((2**64 - 1000 + off) % 2**64, piece)
    dsns = [(2**64 - 1000 + off) % 2**64 for off, _ in order]
    assert many.push_many(dsns, [p for _, p in order]) == len(stream)
    assert counters(one) == counters(many)
    got = many.read_pieces()
    assert b"".join(got) == stream and many.read_pieces() == [] and many.queued_bytes == 0
    with pytest.raises(ValueError):
        many.push_many([1, 2], [b"x"])
    with pytest.raises(ValueError):                          # a DSN is 64 bits unsigned
        many.push(2**64, b"x")


def test_skip_to_passes_a_hole_that_will_never_be_filled(backend):
    """A capture's analysis passes the bytes it never saw: the queue goes on after the hole,
    once the reader has taken the bytes before it (so it knows where the hole is)."""
    queue = dss.ReassemblyQueue(1000, window=1 << 20)
    queue.push(1000, b"abc")
    queue.push(1010, b"xyz")
    queue.push(1020, b"!")
    with pytest.raises(ValueError, match="3 in-order bytes are not read"):
        queue.skip_to(1010)
    assert queue.read() == b"abc"
    with pytest.raises(ValueError, match="bytes are queued below DSN 1015"):
        queue.skip_to(1015)                          # past queued bytes: not a hole's end
    assert queue.skip_to(1010) == 7 and queue.read() == b"xyz" and queue.data_ack == 1013
    assert queue.skip_to(1000) == 0 and queue.data_ack == 1013      # behind: nothing passed
    queue.data_fin(1021)
    with pytest.raises(ValueError, match="DSN 1022 lies beyond the DATA_FIN"):
        queue.skip_to(1022)
    assert queue.skip_to(1020) == 7 and queue.read() == b"!"
    assert queue.eof and queue.data_ack == 1022 and queue.queued_bytes == 0
    assert queue.duplicate_bytes == 0 and queue.push(1012, b"z") == 0   # below: a duplicate
    assert queue.duplicate_bytes == 1

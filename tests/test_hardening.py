"""Regression tests for the defects a fuzz campaign found, on both
backends: columns handed to the analyzer are checked before compiled code reads them; 64-bit
serial arithmetic follows one rule at 2**63; one-byte mappings cost O(log n); pending DSS
checksums stay within a memory budget; and every public argument is checked the same way
(TypeError for a wrong type, ValueError for a wrong value, the same message on both)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import CaptureError, OptionError, _backend
from mptcp_fast.analysis import capture
from mptcp_fast.cli import analyze as cli_analyze
from mptcp_fast.wire import crypto, dss, options
from mptcp_fast import analysis
from mptcp_fast.analysis import analyzer as analyze_module
from mptcp_fast.wire.dss import Mapping
from mptcp_fast.errors import MappingConflict, ProtocolError, UnmappedData
from mptcp_fast.wire.options import Dss
from mptcp_trace import Trace
from shipped_capture import first_batch

C1, S1 = ("198.18.0.1", 40000), ("198.18.0.2", 10000)
SHIPPED = cli_analyze.SHIPPED_CAPTURE
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------------
# 1. the analyzer's columns are checked once per batch

@pytest.mark.parametrize("damage, message", [
    (lambda c: c["payload_start"].__setitem__(slice(None), 1 << 40), "'payload_start' points outside"),
    (lambda c: c["payload_start"].__setitem__(5, 2**63 - 1), "'payload_start' points outside"),
    (lambda c: c.__setitem__("payload_blob", b""), "'payload_start' points outside"),
    (lambda c: c.__setitem__("options_blob", b""), "'options_start' points outside"),
    (lambda c: c.__setitem__("seq", c["seq"][:-1]), "column 'seq' must be"),
    (lambda c: c.__setitem__("number", c["number"][:-1]), "must be"),
    (lambda c: c.__setitem__("dsn", c["dsn"].astype(np.int64)), "column 'dsn' must be"),
    (lambda c: c.__setitem__("src", c["src"][:, :4].copy()), "column 'src' must be"),
    (lambda c: c.__setitem__("sport", c["sport"][::-1]), "C-contiguous"),
    (lambda c: c.pop("dss_flags"), "column 'dss_flags' is missing"),
    (lambda c: c.__setitem__("payload_blob", bytearray(c["payload_blob"])), "must be bytes"),
    (lambda c: c["payload_start"].__setitem__(0, -7), "below -1"),
    (lambda c: c["payload_len"].__setitem__(slice(None), c["payload_len"] + 1), "differs"),
])
def test_feed_columns_refuses_damaged_batches(backend, damage, message):
    cols = first_batch()
    damage(cols)
    analyzer = analyze_module.Analyzer()
    with pytest.raises(CaptureError, match=message):
        analyzer.feed_columns(cols)
    assert analyzer.packets == 0                    # refused before anything was read


def test_feed_columns_refuses_what_is_not_a_batch(backend):
    for wrong in (None, [], {"number": [1, 2]}):
        with pytest.raises(CaptureError):
            analyze_module.Analyzer().feed_columns(wrong)


def test_an_undamaged_batch_is_analysed_the_same_on_both(on_both):
    def run():
        analyzer = analyze_module.Analyzer()
        analyzer.feed_columns(first_batch())
        return analyzer.report()
    compiled, pure = on_both(run)
    assert compiled == pure and len(compiled["connections"]) == 1


# ------------------------------------------------------------------------------------------------
# 2. one rule for 64-bit serial arithmetic (mptcp_fast/wire/serial.py, pyx/mf_serial.pxd)

def test_a_range_that_would_end_2_63_past_the_origin_is_refused(backend):
    q = dss.ReassemblyQueue(100)
    q.push(100, b"a" * 5)
    assert q.push(100 + 2**63 - 1, b"hello") == 0            # was 5 duplicates compiled
    assert (q.refused_bytes, q.duplicate_bytes, q.queued_bytes) == (5, 0, 5)
    assert q.push(100 + 2**63 - 11, b"hello") == 0            # inside 2**63, beyond the window
    assert q.refused_bytes == 10
    assert q.push(100 + 2**63 + 5, b"x") == 0                 # 2**63 ahead: behind
    assert q.duplicate_bytes == 1


def test_exactly_2_63_apart_is_behind(backend):
    q = dss.ReassemblyQueue(0)
    q.push(0, b"abc")
    assert q.push(3 + 2**63, b"z") == 0 and q.duplicate_bytes == 1
    assert dss.seq64_diff(2**63, 0) == -2**63 and dss.seq64_diff(2**63 - 1, 0) == 2**63 - 1


def test_a_data_fin_2_63_away_is_a_protocol_error(backend):
    q = dss.ReassemblyQueue(0)
    with pytest.raises(ProtocolError, match="outside any window"):
        q.data_fin(2**63 - 1)


@pytest.mark.parametrize("call", [
    lambda m: m.declare(Mapping(100, 2**63 - 10, 20)),
    lambda m: m.resolve(2**63 - 1, 10),
    lambda m: m.resolve(-1, 1),
    lambda m: m.declare(Mapping(100, 2**63 - 1, 1)),
])
def test_subflow_sequence_numbers_stay_below_2_63(on_both, call):
    def run():
        maps = dss.SubflowMappings()
        maps.declare(Mapping(100, 1, 10))
        return call(maps)
    compiled, pure = on_both(run)
    assert compiled == pure and compiled[0] == "error" and compiled[1] is ValueError


def test_the_issue_capture_at_idsn_plus_2_63_agrees(on_both, tmp_path):
    """One 100-byte mapping at IDSN + 1 + 2**63 - 50: the range would end 2**63 past the
    stream's origin, so it is outside any window on both backends (was 0 bytes compiled and
    100 out-of-order bytes pure)."""
    t = Trace()
    flow = t.connect(C1, S1)
    t.send(flow, "up", bytes(100), dsn=t.next_dsn["up"] + 2**63 - 50)
    path = tmp_path / "far.pcap"
    path.write_bytes(t.pcap())
    compiled, pure = on_both(lambda: analysis.analyze(str(path)))
    assert compiled == pure
    up = compiled["connections"][0]["streams"]["up"]
    assert (up["data_bytes"], up["outside_window_bytes"], up["bytes"]) == (0, 100, 0)
    text = io.StringIO()
    cli_analyze._print_report(compiled, text)                     # the terminal report says so too
    assert "outside any window 100 (2**63 or more ahead)" in text.getvalue()


BOUNDARIES = [0, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1]
near = st.sampled_from(BOUNDARIES).flatmap(
    lambda b: st.integers(-70_000, 70_000).map(lambda d: (b + d) % 2**64))


@relaxed
@given(base=near, pushes=st.lists(st.tuples(near, st.binary(min_size=1, max_size=40)), max_size=12),
       window=st.sampled_from([1, 100, 1 << 20, 1 << 62]), fin=st.none() | near)
def test_reassembly_backends_agree_near_the_boundaries(on_both, base, pushes, window, fin):
    def run():
        q = dss.ReassemblyQueue(base, window)
        out = [q.push(dsn, data) for dsn, data in pushes[:6]]
        if fin is not None:
            try:
                q.data_fin(fin)
            except ProtocolError as exc:
                out.append(str(exc))
        out += [q.push(dsn, data) for dsn, data in pushes[6:]]
        return out, q.read(), q.data_ack, q.eof, q.refused_bytes, q.duplicate_bytes, \
            q.out_of_order_bytes, q.queued_bytes, q.conflict_bytes
    compiled, pure = on_both(run)
    assert compiled == pure


@relaxed
@given(reference=near, value=near)
def test_expand_seq_backends_agree_near_the_boundaries(on_both, reference, value):
    compiled, pure = on_both(lambda: dss.expand_seq(reference, value & 0xFFFFFFFF))
    assert compiled == pure
    assert compiled & 0xFFFFFFFF == value & 0xFFFFFFFF
    assert abs(dss.seq64_diff(compiled, reference)) <= 2**31


seq_near = st.sampled_from([0, 2**32, 2**62, 2**63 - 70_000]).flatmap(
    lambda b: st.integers(0, 69_000).map(lambda d: b + d))


@relaxed
@given(ops=st.lists(st.tuples(near, seq_near, st.integers(0, 300), st.booleans()), max_size=20),
       queries=st.lists(st.tuples(seq_near, st.integers(0, 400)), max_size=8))
def test_mapping_backends_agree_near_the_boundaries(on_both, ops, queries):
    def run():
        maps, out = dss.SubflowMappings(), []
        for dsn, ssn, length, fin in ops:
            try:
                out.append(maps.declare(Mapping(dsn, ssn, length, fin and length > 0)))
            except (MappingConflict, ValueError) as exc:
                out.append((type(exc).__name__, str(exc)))
        for ssn, length in queries:
            try:
                out.append(maps.resolve(ssn, length))
            except (UnmappedData, ValueError) as exc:
                out.append((type(exc).__name__, str(exc)))
        return out, len(maps)
    compiled, pure = on_both(run)
    assert compiled == pure


# ------------------------------------------------------------------------------------------------
# 3. mappings: the disjoint-piece store against a byte-level model

class ByteModel:
    """What SubflowMappings promises, byte by byte: every mapped subflow byte has one DSN."""

    def __init__(self):
        self.dsn_of = {}
        self.infinite = None                 # (first byte, DSN of it)

    def line(self, dsn, start, byte):
        return (dsn + byte - start) % 2**64

    def declare(self, dsn, start, length, data_fin):
        if self.infinite is not None:
            first, line_dsn = self.infinite
            if start >= first and self.line(line_dsn, first, start) != dsn:
                return "conflict"
            return False
        if length == 0:
            if any(self.line(dsn, start, b) != d for b, d in self.dsn_of.items() if b >= start):
                return "conflict"
            self.infinite = (start, dsn)
            return True
        end = start + (length - 1 if data_fin else length)
        if end == start:
            return True
        if any(self.dsn_of.get(b, self.line(dsn, start, b)) != self.line(dsn, start, b)
               for b in range(start, end)):
            return "conflict"
        new = any(b not in self.dsn_of for b in range(start, end))
        for b in range(start, end):
            self.dsn_of[b] = self.line(dsn, start, b)
        return new

    def resolve(self, start, length):
        out = []
        for b in range(start, start + length):
            if b in self.dsn_of:
                dsn = self.dsn_of[b]
            elif self.infinite is not None and b >= self.infinite[0]:
                dsn = self.line(self.infinite[1], self.infinite[0], b)
            else:
                return "unmapped"
            if out and (out[-1][0] + out[-1][1]) % 2**64 == dsn:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((dsn, 1))
        return out


@relaxed
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(0, 40),
                              st.booleans()), max_size=40),
       queries=st.lists(st.tuples(st.integers(0, 260), st.integers(0, 60)), max_size=10))
def test_mappings_match_a_byte_level_model(backend, ops, queries):
    maps, model = dss.SubflowMappings(), ByteModel()
    for line, start, length, fin in ops:
        dsn = 10_000 + 1000 * line + start              # four DSN lines: merges and conflicts
        fin = fin and length > 0
        expected = model.declare(dsn, start, length, fin)
        try:
            got = maps.declare(Mapping(dsn, start, length, fin))
        except MappingConflict:
            got = "conflict"
        assert got == expected
    for start, length in queries:
        try:
            got = maps.resolve(start, length)
        except UnmappedData:
            got = "unmapped"
        assert got == model.resolve(start, length)


def test_one_byte_mappings_are_one_piece_per_dsn_line(backend):
    """20,000 one-byte mappings on one subflow, the issue's case: contiguous DSNs merge into
    one piece; alternating DSN lines (two subflows interleaving) stay apart and are found by
    bisection (the old store scanned up to 65,535 pieces back on every call)."""
    maps = dss.SubflowMappings()
    for i in range(20_000):
        assert maps.declare(Mapping(1_000_000 + i, 1 + i, 1))
    assert len(maps) == 1
    interleaved = dss.SubflowMappings()
    for i in range(20_000):
        assert interleaved.declare(Mapping(1_000_000 + 2 * i, 1 + i, 1))
    assert len(interleaved) == 20_000
    assert interleaved.resolve(19_990, 3) == [(1_000_000 + 2 * 19_989, 1),
                                              (1_000_000 + 2 * 19_990, 1),
                                              (1_000_000 + 2 * 19_991, 1)]
    interleaved.release(10_000)                          # pieces [1 + i, 2 + i) end <= 10,000
    assert len(interleaved) == 20_000 - 9_999


def test_one_byte_mapping_capture_is_exact(on_both, tmp_path):
    t = Trace()
    flow = t.connect(C1, S1)
    for i in range(3000):
        t.send(flow, "up", bytes([i & 0xFF]))
    path = tmp_path / "fine.pcap"
    path.write_bytes(t.pcap())
    compiled, pure = on_both(lambda: analysis.analyze(str(path)))
    assert compiled == pure
    up = compiled["connections"][0]["streams"]["up"]
    assert up["data_bytes"] == up["bytes"] == 3000 and up["out_of_order_bytes"] == 0


# ------------------------------------------------------------------------------------------------
# 4. memory held for pending checksums has a budget

def flood(connections, mappings=256):
    t = Trace(checksum=True)
    flows = []
    for c in range(connections):
        flow = t.connect(("198.18.0.1", 20000 + c), S1)
        dsn = t.next_dsn["up"]
        for k in range(mappings):
            t.packet(flow, "up", [Dss(dsn=dsn + k * 65535, dsn64=True, subflow_seq=1 + k * 65535,
                                      data_len=65535, checksum=0x1234)])
        flows.append(flow)
    return t


def feed(trace, tmp_path, **budgets):
    path = tmp_path / "flood.pcap"
    path.write_bytes(trace.pcap())
    analyzer = analyze_module.Analyzer(**budgets)
    with capture.open_capture(str(path)) as reader:
        for cols in reader.columns():
            analyzer.feed_columns(cols)
    return analyzer


def unverified(report):
    return sum(s["unverified_checksums"] for c in report["connections"] for s in c["subflows"])


def test_checksum_flood_is_held_within_the_budgets(backend, tmp_path):
    analyzer = feed(flood(6, mappings=40), tmp_path, checksum_budget=100 * 65535,
                    connection_checksum_budget=30 * 65535)
    # per connection 30 mappings may wait; in all 100: connections 1-3 get 30, the 4th 10
    assert analyzer.tracker.checksum_claims() == 100 * 65535
    assert unverified(analyzer.report()) == 6 * 40       # held ones count as unverified too


def test_claims_are_returned_when_the_data_comes(backend, tmp_path):
    t = Trace(checksum=True)
    flow = t.connect(C1, S1)
    for k in range(50):
        t.send(flow, "up", bytes([k]) * 1000)
    analyzer = feed(t, tmp_path, checksum_budget=4000, connection_checksum_budget=4000)
    report = analyzer.report()
    assert analyzer.tracker.checksum_claims() == 0
    assert unverified(report) == 0 and report["connections"][0]["checksum_failures"] == []


def test_budgets_are_checked(backend):
    for wrong, error in ((-1, ValueError), (1.5, TypeError), (None, TypeError)):
        with pytest.raises(error):
            analyze_module.Analyzer(checksum_budget=wrong)


# ------------------------------------------------------------------------------------------------
# 5. arguments: the same class and message on both backends

def _kc():
    return crypto.KeyContext(1, 2)


CALLS = {
    "threads huge": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], threads=100_000), ValueError),
    "threads 2**63": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], threads=2**63), ValueError),
    "threads zero": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], threads=0), ValueError),
    "threads float": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], threads=2.0), TypeError),
    "length bool": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], length=True), TypeError),
    "length big": (lambda: crypto.join_hmac_batch([1], [2], [3], [4], length=33), ValueError),
    "synack float": (lambda: _kc().synack_hmac(1.0, 2), TypeError),
    "synack None": (lambda: _kc().synack_hmac(None, 2), TypeError),
    "synack str": (lambda: _kc().synack_hmac("1", 2), TypeError),
    "synack big": (lambda: _kc().synack_hmac(2**32, 2), ValueError),
    "ack negative": (lambda: _kc().ack_hmac(1, -1), ValueError),
    "verify_synack float": (lambda: _kc().verify_synack(bytes(8), 1.5, 2), TypeError),
    "verify_ack big": (lambda: _kc().verify_ack(bytes(20), 1, 2**40), ValueError),
    "dss_checksum float": (lambda: dss.dss_checksum(0, 0.5, 1, b"abc"), TypeError),
    "dss_checksum data_len": (lambda: dss.dss_checksum(0, 0, 65536, b"abc"), ValueError),
    "dss_checksum dsn": (lambda: dss.dss_checksum(-1, 0, 3, b"abc"), ValueError),
    "finish float": (lambda: dss.DssChecksum().finish(0, 0.5, 1), TypeError),
    "finish data_len": (lambda: dss.DssChecksum().finish(0, 0, 65536), ValueError),
    "update not a buffer": (lambda: dss.DssChecksum().update(3), TypeError),
    "update strided": (lambda: dss.DssChecksum().update(np.zeros((4, 4), np.uint8)[:, ::2]), ValueError),
    "declare tuple": (lambda: dss.SubflowMappings().declare((1, 2, 3)), TypeError),
    "declare None": (lambda: dss.SubflowMappings().declare(None), TypeError),
    "declare_fields float": (lambda: dss.SubflowMappings().declare_fields(1.0, 1, 1), TypeError),
    "declare_fields length": (lambda: dss.SubflowMappings().declare_fields(1, 1, 70_000), ValueError),
    "declare_fields data_fin None": (lambda: dss.SubflowMappings().declare_fields(1, 1, 1, None), TypeError),
    "declare_fields checksum -1": (lambda: dss.SubflowMappings().declare_fields(1, 1, 1, False, -1), ValueError),
    "declare_fields seq 2**63": (lambda: dss.SubflowMappings().declare_fields(1, 2**63 - 1, 5), ValueError),
    "mapping dsn": (lambda: Mapping(2**64, 1, 1), ValueError),
    "mapping length": (lambda: Mapping(1, 1, 65536), ValueError),
    "mapping checksum -1": (lambda: Mapping(1, 1, 1, checksum=-1), ValueError),
    "mapping data_fin None": (lambda: Mapping(1, 1, 1, data_fin=None), TypeError),
    "mapping float": (lambda: Mapping(1.0, 1, 1), TypeError),
    "window 2**63": (lambda: dss.ReassemblyQueue(0, 2**63), ValueError),
    "window inf": (lambda: dss.ReassemblyQueue(0, float("inf")), TypeError),
    "window nan": (lambda: dss.ReassemblyQueue(0, float("nan")), TypeError),
    "window 1.5": (lambda: dss.ReassemblyQueue(0, 1.5), TypeError),
    "window 0": (lambda: dss.ReassemblyQueue(0, 0), ValueError),
    "initial -5": (lambda: dss.ReassemblyQueue(np.int64(-5)), ValueError),
    "push float": (lambda: dss.ReassemblyQueue(0).push(1.0, b"x"), TypeError),
    "data_fin float": (lambda: dss.ReassemblyQueue(0).data_fin(1.5), TypeError),
    "read float": (lambda: dss.ReassemblyQueue(0).read(1.0), TypeError),
    "read -2": (lambda: dss.ReassemblyQueue(0).read(-2), ValueError),
    "expand_seq_array negative": (lambda: dss.expand_seq_array(0, [-1]), ValueError),
    "expand_seq_array 2**64": (lambda: dss.expand_seq_array(0, [2**64]), ValueError),
    "expand_seq_array float": (lambda: dss.expand_seq_array(0, [1.5]), TypeError),
    "expand_seq float": (lambda: dss.expand_seq(0, 1.0), TypeError),
    "columns batch 2**31": (lambda: next(iter(capture.open_capture(SHIPPED).columns(batch=2**31))), ValueError),
    "columns batch 2**63": (lambda: next(iter(capture.open_capture(SHIPPED).columns(batch=2**63))), ValueError),
    "columns batch 0": (lambda: next(iter(capture.open_capture(SHIPPED).columns(batch=0))), ValueError),
    "malformed 258": (lambda: options.MalformedOption(30, bytes(258), "r").encode(), OptionError),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_public_arguments_are_checked_alike(on_both, name):
    call, error = CALLS[name]
    compiled, pure = on_both(call)
    assert compiled == pure, name
    assert compiled[0] == "error" and issubclass(compiled[1], error), compiled


def test_numpy_integers_are_accepted_alike(on_both):
    def run():
        q = dss.ReassemblyQueue(np.uint64(100), np.int32(1000))
        accepted = q.push(np.int64(100), b"hello") + q.push(np.uint32(105), b"!")
        q.data_fin(np.uint64(106))
        maps = dss.SubflowMappings()
        maps.declare(Mapping(np.uint64(7), np.int64(1), np.uint16(10), np.bool_(False)))
        return (accepted, q.read(np.int64(3)), q.read(), q.eof, maps.resolve(np.int64(2), 3),
                dss.dss_checksum(np.uint64(1), np.uint32(1), np.uint16(3), b"abc"),
                _kc().synack_hmac(np.uint32(1), np.int64(2)))
    compiled, pure = on_both(run)
    assert compiled == pure and compiled[:4] == (6, b"hel", b"lo!", True)


def test_dss_checksum_counts_bytes_of_any_buffer(on_both):
    """A uint16 array of 3 items is 6 bytes (pure counted 3 items and got another checksum);
    a 2-D contiguous array is its bytes in order."""
    words = np.array([0x0102, 0x0304, 0x0506], dtype=np.uint16)
    grid = np.arange(16, dtype=np.uint8).reshape(4, 4)

    def run():
        a = dss.DssChecksum()
        a.update(words)
        b = dss.DssChecksum()
        b.update(grid)
        return (a.length, a.finish(9, 1, 6), b.length, b.finish(9, 1, 16))
    compiled, pure = on_both(run)
    assert compiled == pure
    assert compiled == (6, dss.dss_checksum(9, 1, 6, words.tobytes()),
                        16, dss.dss_checksum(9, 1, 16, grid.tobytes()))


def test_the_backends_are_both_here(on_both):
    """The parity tests above compare two different implementations (on a pure-only install
    on_both skips instead of comparing the pure backend with itself)."""
    assert _backend.implementation("_dss", "cython") is not _backend.implementation("_dss", "python")

"""Data sequence: expansion, DSS checksum (live kernel vectors), mappings, DATA_FIN, allocator."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import dss
from mptcp_fast.wire.dss import Mapping, MappingConflict, UnmappedData

relaxed = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)

# checksums captured live (Linux 6.18, net.mptcp.checksum_enabled=1)
LIVE_CSUM = [
    (0x9A915667704F8201, 1, 2000, bytes((i * 13 + 1) & 0xFF for i in range(2000)), 0xC3C8),
    (0x43143B25BCE216B2, 1, 3000, bytes((i * 7 + 3) & 0xFF for i in range(3000)), 0xB783),
    (0x43143B25BCE2226A, 3001, 3000, bytes((i * 5 + 2) & 0xFF for i in range(3000)), 0xE118),
    # an example worked by hand from RFC 8684 §3.3.1: DSN = IDSN(0x0123456789abcdef) + 1,
    # SSN 1, "hello, mptcp"
    (0x570762CD38BE9819, 1, 12, b"hello, mptcp", 0x3CF6),
]


def reference_checksum(dsn, ssn, dll, payload):
    """RFC 1071 written the slow, obvious way."""
    data = dsn.to_bytes(8, "big") + ssn.to_bytes(4, "big") + dll.to_bytes(2, "big") + b"\0\0"
    data += payload + (b"\0" if len(payload) % 2 else b"")
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@pytest.mark.parametrize("dsn,ssn,dll,payload,csum", LIVE_CSUM)
def test_live_checksums(backend, dsn, ssn, dll, payload, csum):
    assert dss.dss_checksum(dsn, ssn, dll, payload) == csum
    assert dss.verify_dss_checksum(dsn, ssn, dll, payload, csum)
    assert not dss.verify_dss_checksum(dsn, ssn, dll, payload[:-1] + bytes([payload[-1] ^ 1]), csum)
    assert not dss.verify_dss_checksum(dsn + 1, ssn, dll, payload, csum)


@pytest.mark.parametrize("length", [10, 12, 14, 18, 20, 22, 1030, 65534])
def test_a_run_of_ones_with_a_short_tail_keeps_its_carry(backend, length):
    """0xFF bytes hold a 64-bit running sum at its largest: the last 2 to 6 bytes after the
    wide words must still carry into it (a compiled sum once lost that carry: one low)."""
    payload = b"\xff" * length
    dsn, ssn = 2**64 - 1, 2**32 - 1
    assert dss.dss_checksum(dsn, ssn, length, payload) == reference_checksum(dsn, ssn, length,
                                                                              payload)


@relaxed
@given(payload=st.binary(min_size=60, max_size=4200), offset=st.integers(0, 3),
       ones=st.booleans())
def test_long_payloads_at_any_alignment_sum_as_the_reference(backend, payload, offset, ones):
    """Runs of 64 bytes and more take the compiled sum's widest loop (AVX2 where the CPU has
    it), then its 32-byte loop and the word tails: any length, any alignment of the buffer,
    and 0xFF runs (the largest lane sums) give RFC 1071's checksum."""
    if ones:
        payload = b"\xff" * len(payload)
    view = memoryview(bytes(offset) + payload)[offset:]
    dsn, ssn = 2**64 - 1, 2**32 - 1
    assert dss.dss_checksum(dsn, ssn, len(payload), view) == reference_checksum(
        dsn, ssn, len(payload), payload)


def test_infinite_mapping_has_checksum_zero(backend):
    assert dss.dss_checksum(5, 1, 0, b"anything") == 0


def test_standalone_data_fin_covers_the_pseudo_header_only(backend):
    assert dss.dss_checksum(0x9A915667704F8A00, 0, 1, b"") == reference_checksum(0x9A915667704F8A00, 0, 1, b"")


@relaxed
@given(dsn=st.integers(0, 2**64 - 1), ssn=st.integers(0, 2**32 - 1), payload=st.binary(max_size=300),
       fin=st.booleans(), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_checksum_matches_reference_in_any_pieces(backend, dsn, ssn, payload, fin, cuts):
    dll = len(payload) + fin
    if dll == 0 or dll > 0xFFFF:
        return
    expected = reference_checksum(dsn, ssn, dll, payload)
    assert dss.dss_checksum(dsn, ssn, dll, payload) == expected
    acc = dss.DssChecksum()
    bounds = sorted({0, len(payload), *[c for c in cuts if c <= len(payload)]})
    for lo, hi in zip(bounds, bounds[1:]):
        acc.update(memoryview(payload)[lo:hi])          # odd-length pieces included
    assert acc.length == len(payload)
    assert acc.finish(dsn, ssn, dll) == expected


def test_expansion_examples_from_the_kernel_notes(backend):
    assert dss.expand_seq(0x1FFFFFFF0, 0x10) == 0x200000010            # forward wrap
    assert dss.expand_seq(0x200000010, 0xFFFFFFF0) == 0x1FFFFFFF0      # reverse wrap
    assert dss.expand_seq(0x500000000, 0x12345678) == 0x512345678
    assert dss.expand_seq(0x0, 0xFFFFFFFF) == 0xFFFFFFFFFFFFFFFF       # wraps below zero
    assert dss.expand_seq(0xFFFFFFFFFFFFFFF0, 0x5) == 0x5              # and above 2**64


def kernel_expand(old, cur32):
    """Linux's __mptcp_expand_seq, written out (docs/kernel-behaviour.md §3)."""
    def s32(x):
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x >= (1 << 31) else x
    old32 = old & 0xFFFFFFFF
    cur = (old & ~0xFFFFFFFF) + cur32
    if cur32 < old32 and s32(old32 - cur32) < 0:
        return (cur + (1 << 32)) & (2**64 - 1)
    if cur32 > old32 and s32(cur32 - old32) < 0:
        return (cur - (1 << 32)) & (2**64 - 1)
    return cur & (2**64 - 1)


@relaxed
@given(old=st.integers(0, 2**64 - 1), cur=st.integers(0, 2**32 - 1))
def test_expansion_is_the_kernel_rule(backend, old, cur):
    assert dss.expand_seq(old, cur) == kernel_expand(old, cur)


def test_expansion_array_equals_scalar(backend):
    rng = np.random.default_rng(3)
    refs = rng.integers(0, 2**64 - 1, 2000, dtype=np.uint64, endpoint=True)
    vals = rng.integers(0, 2**32 - 1, 2000, dtype=np.uint64, endpoint=True)
    refs[:4] = [0x1FFFFFFF0, 0x200000010, 0, 2**64 - 16]
    vals[:4] = [0x10, 0xFFFFFFF0, 0xFFFFFFFF, 5]
    out = dss.expand_seq_array(refs, vals)
    assert [int(x) for x in out] == [dss.expand_seq(int(r), int(v)) for r, v in zip(refs, vals)]
    assert int(dss.expand_seq_array(0x1FFFFFFF0, [0x10])[0]) == 0x200000010


def test_seq32_comparisons():
    assert dss.seq32_before(0xFFFFFFF0, 0x10) and dss.seq32_after(0x10, 0xFFFFFFF0)
    assert dss.seq32_diff(0x10, 0xFFFFFFF0) == 0x20 and dss.seq32_diff(5, 5) == 0


def test_rfc_data_fin_example(backend):
    # RFC 8684 §3.3.3: DSN 80, Data-Level Length 11 with DATA_FIN: 10 bytes at 80-89,
    # DATA_FIN is DSN 90, acknowledged with DATA_ACK 91.
    mapping = Mapping(80, 1, 11, data_fin=True)
    assert mapping.payload_length == 10 and mapping.data_fin_dsn == 90
    queue = dss.ReassemblyQueue(80)
    assert queue.push(80, b"0123456789") == 10
    queue.data_fin(mapping.data_fin_dsn)
    assert queue.data_ack == 91 and queue.eof and queue.read() == b"0123456789"


class TestSubflowMappings:
    def test_resolve_across_mappings_and_retransmissions(self, backend):
        maps = dss.SubflowMappings()
        assert maps.declare(Mapping(1000, 1, 100))
        assert not maps.declare(Mapping(1000, 1, 100))       # retransmission / TSO split
        assert maps.declare(Mapping(5000, 101, 50))
        assert maps.resolve(1, 100) == [(1000, 100)]
        assert maps.resolve(90, 20) == [(1089, 11), (5000, 9)]
        assert not maps.declare(Mapping(1010, 11, 20))       # consistent sub-range: known bytes
        assert maps.declare(Mapping(7000, 161, 20))          # a gap, then more bytes: new
        with pytest.raises(UnmappedData):
            maps.resolve(150, 2)                             # 151 is in the gap
        assert maps.declare(Mapping(5050, 151, 10))          # fills the gap on 5000's line
        assert maps.resolve(101, 80) == [(5000, 60), (7000, 20)] and len(maps) == 3
        with pytest.raises(UnmappedData):
            maps.resolve(170, 20)

    def test_conflicting_redeclaration(self, backend):
        maps = dss.SubflowMappings()
        maps.declare(Mapping(1000, 1, 100))
        with pytest.raises(MappingConflict):
            maps.declare(Mapping(2000, 50, 10))              # same bytes, other DSNs
        # the same bytes, now carrying the DATA_FIN (Linux sends the last mapping again with
        # data_len + 1 when the application closes): consistent, and no byte is new (the
        # DATA_FIN at 1100 is the data-level stream's business: ReassemblyQueue.data_fin)
        assert not maps.declare(Mapping(1000, 1, 101, data_fin=True))
        assert maps.resolve(1, 100) == [(1000, 100)]
        with pytest.raises(MappingConflict):
            maps.declare(Mapping(1001, 1, 101, data_fin=True))  # a DATA_FIN with other DSNs

    def test_infinite_mapping(self, backend):
        maps = dss.SubflowMappings()
        maps.declare(Mapping(1000, 1, 100))
        maps.declare(Mapping(1100, 101, 0))                  # infinite from SSN 101
        assert maps.resolve(90, 1000) == [(1089, 1000)]
        with pytest.raises(MappingConflict):
            maps.declare(Mapping(9999, 200, 10))

    def test_release_bounds_memory(self, backend):
        maps = dss.SubflowMappings()
        for i in range(100):                                 # DSNs apart: 100 pieces
            maps.declare(Mapping(10_000 + 200 * i, 1 + 100 * i, 100))
        assert len(maps) == 100
        maps.release(5001)
        assert len(maps) == 50
        assert maps.resolve(5001, 10) == [(20_000, 10)]

    def test_contiguous_mappings_are_stored_as_one_piece(self, backend):
        maps = dss.SubflowMappings()
        for i in range(1000):                                # one byte each, one DSN line
            assert maps.declare(Mapping(10_000 + i, 1 + i, 1))
        assert len(maps) == 1 and maps.resolve(1, 1000) == [(10_000, 1000)]
        assert maps.declare(Mapping(50_000, 2001, 10))       # another line after a gap
        assert maps.declare(Mapping(11_000, 1001, 1000))     # fills the gap on the first line
        assert len(maps) == 2 and maps.resolve(1, 2010) == [(10_000, 2000), (50_000, 10)]

    def test_a_long_mapping_behind_a_short_one_is_still_checked(self, backend):
        maps = dss.SubflowMappings()
        maps.declare(Mapping(1000, 1, 1000))
        maps.declare(Mapping(1499, 500, 100))                # consistent sub-range
        with pytest.raises(MappingConflict):
            maps.declare(Mapping(7000, 700, 10))             # only the long one covers 700
        assert maps.resolve(650, 300) == [(1649, 300)]
        assert not maps.declare(Mapping(1000, 1, 1000, checksum=7))   # same bytes, same DSNs

    def test_data_fin_mapping_and_wrap(self, backend):
        maps = dss.SubflowMappings()
        maps.declare(Mapping(2**64 - 5, 1, 11, data_fin=True))   # DSNs wrap past 2**64
        assert maps.resolve(1, 10) == [(2**64 - 5, 10)]
        assert Mapping(2**64 - 5, 1, 11, data_fin=True).data_fin_dsn == 5


@relaxed
@given(ops=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 400), st.integers(0, 2),
                              st.booleans()), max_size=30),
       queries=st.lists(st.tuples(st.integers(0, 3500), st.integers(1, 600)), max_size=10))
def test_mapping_backends_agree(on_both, ops, queries):
    """Random declarations (consistent, shifted, DATA_FIN, infinite) and lookups give the same
    results and the same errors on both backends."""
    def run():
        maps, results = dss.SubflowMappings(), []
        for ssn, length, shift, fin in ops:
            mapping = Mapping(10_000 + ssn + 7 * shift, ssn, 0 if shift == 2 and fin else length, fin)
            try:
                results.append(maps.declare(mapping))
            except MappingConflict as exc:
                results.append(str(exc))
        for ssn, length in queries:
            try:
                results.append(maps.resolve(ssn, length))
            except UnmappedData as exc:
                results.append(str(exc))
        maps.release(1500)
        results.append(len(maps))
        return results
    compiled, pure = on_both(run)
    assert compiled == pure


@relaxed
@given(ops=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 400), st.integers(0, 2),
                              st.booleans(), st.none() | st.integers(0, 0xFFFF)), max_size=25))
def test_declare_fields_is_declare_without_a_mapping(backend, ops):
    """The same results, the same stored pieces and the same errors as declare(Mapping)."""
    by_mapping, by_fields = dss.SubflowMappings(), dss.SubflowMappings()
    for ssn, length, shift, fin, checksum in ops:
        args = (10_000 + ssn + 7 * shift, ssn, length, fin, checksum)
        results = []
        for maps, call in ((by_mapping, lambda m: m.declare(Mapping(*args))),
                           (by_fields, lambda m: m.declare_fields(*args))):
            try:
                results.append(call(maps))
            except (MappingConflict, ValueError) as exc:
                results.append((type(exc), str(exc)))
        assert results[0] == results[1]
    assert len(by_mapping) == len(by_fields) and by_mapping.infinite == by_fields.infinite
    assert by_mapping.resolve(0, 0) == by_fields.resolve(0, 0)

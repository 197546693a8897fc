"""DSS benchmarks, both backends: checksum of 1448 B and 64 KiB, and reassembly of
8 MiB in 1448-byte pieces, in order and interleaved (the full 256 MiB run: compare_dss.py)."""

import random

import pytest

from compare_dss import make_pieces, numpy_checksum
from mptcp_fast.wire import dss


@pytest.mark.parametrize("size", [1448, 65536])
def test_dss_checksum(benchmark, backend, size):
    payload = random.Random(size).randbytes(size)
    benchmark.group = f"DSS checksum {size} B"
    assert benchmark(dss.dss_checksum, 5, 1, min(size, 65535), payload) == numpy_checksum(
        5, 1, min(size, 65535), payload)


@pytest.mark.parametrize("interleaved", [False, True], ids=["in-order", "interleaved"])
def test_reassembly_8mib(benchmark, backend, interleaved):
    data, pushes = make_pieces(8 << 20, interleaved)
    dsns = [off for off, _ in pushes]
    pieces = [p for _, p in pushes]

    def run():
        queue = dss.ReassemblyQueue(0, window=8 << 20)
        out = []
        for i in range(0, len(pieces), 64):
            queue.push_many(dsns[i:i + 64], pieces[i:i + 64])
            out += queue.read_pieces()
        return out

    benchmark.group = f"reassembly 8 MiB {'interleaved' if interleaved else 'in order'}"
    assert b"".join(benchmark.pedantic(run, rounds=3)) == data

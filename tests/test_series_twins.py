"""The time series' passes over a connection's packets (``_series`` twins: numpy, and C loops)
give the same arrays, to the value and the dtype, on random connections: rows of other
subflows, unknown ISNs, packets without mappings or outside them, data on the MP_CAPABLE ACK,
retransmissions, ACKs out of time order, DSNs that wrap. And the series of a transfer whose
course we know: tests/test_timeseries.py."""

from __future__ import annotations

import numpy as np
import pytest

from mptcp_fast import _backend
from mptcp_fast.analysis import timeseries
from mptcp_fast.analysis.model import build_model
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE


def _twins(on_both):
    on_both(lambda: None)                       # requires the compiled backend
    return [_backend.implementation("_series", name) for name in ("cython", "python")]


def _same(a, b, where="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{k}]")
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and np.array_equal(a, b), where


def _connection(rng, rows: int, subflows: int, isn: list) -> dict:
    """Random columns of one connection: mostly data in order per subflow direction, some
    retransmitted, mapped or not (mappings starting up to 5000 bytes before the packet, up to
    9000 long), a few rows of no subflow of it."""
    subflow = rng.integers(0, subflows + 2, rows).astype(np.int32)       # 0 and n + 1: none
    up = rng.random(rows) < 0.6
    seq = np.zeros(rows, np.uint32)
    for s in range(subflows + 2):
        for direction in (True, False):
            here = np.flatnonzero((subflow == s) & (up == direction))
            steps = rng.integers(0, 3000, len(here)) * (rng.random(len(here)) > 0.1)
            start = rng.integers(0, 1 << 32)
            seq[here] = (start + np.cumsum(steps) - rng.integers(0, 2, len(here)) * 4000) \
                & 0xFFFFFFFF
    payload = np.where(rng.random(rows) < 0.7, rng.integers(1, 1500, rows), 0)
    mapped = rng.random(rows) < 0.5
    dss_flags = np.where(mapped, 0x0C | rng.integers(0, 2, rows),
                         np.where(rng.random(rows) < 0.5, 0x01, 0xFF)).astype(np.uint8)
    key = np.where((subflow >= 1) & (subflow <= subflows),
                   subflow - 1 + np.where(up, 0, subflows), -1)
    base = np.array([0 if v is None else v for v in isn] + [0], np.int64)[key]
    ssn = (seq.astype(np.int64) - base - rng.integers(0, 5000, rows)) & 0xFFFFFFFF
    return {"time": np.cumsum(rng.exponential(1e-4, rows)), "subflow": subflow, "up": up,
            "seq": seq, "ack": rng.integers(0, 1 << 32, rows).astype(np.uint32),
            "flags": np.where(rng.random(rows) < 0.8, 0x10, 0x02).astype(np.uint8),
            "payload_len": payload.astype(np.uint32), "dss_flags": dss_flags,
            "dsn": rng.integers(0, 1 << 64, rows, dtype=np.uint64),
            "dss_ssn": ssn.astype(np.uint32),
            "dss_len": np.where(rng.random(rows) < 0.1, 0,
                                rng.integers(1, 9000, rows)).astype(np.uint16),
            "mptcp_subtypes": rng.integers(0, 4, rows).astype(np.uint16)}


@pytest.mark.parametrize("seed", range(12))
def test_data_packets_are_the_same_on_both_twins(on_both, seed):
    compiled, pure = _twins(on_both)
    rng = np.random.default_rng(seed)
    subflows = int(rng.integers(1, 5))
    isn = [None if rng.random() < 0.2 else int(rng.integers(0, 1 << 32))
           for _ in range(2 * subflows)]
    p = _connection(rng, int(rng.integers(0, 3000)), subflows, isn)
    if seed % 3 == 0:                # data on the MP_CAPABLE ACK: relative byte 1, unmapped
        k = np.flatnonzero((p["subflow"] == 1) & p["up"])[:3]
        if isn[0] is not None and len(k):
            p["seq"][k] = (isn[0] + 1) & 0xFFFFFFFF
            p["dss_flags"][k], p["mptcp_subtypes"][k] = 0xFF, 1
    first_dsn = [None if rng.random() < 0.3 else int(rng.integers(0, 1 << 64, dtype=np.uint64))
                 for _ in range(2)]
    expected = pure.data_packets(p, subflows, isn, first_dsn)
    _same(compiled.data_packets(p, subflows, isn, first_dsn), expected)
    if len(expected["time"]) > 100:          # the cases worth comparing are there
        assert 0 < expected["has_dsn"].mean() < 1 and expected["retransmitted"].any()


@pytest.mark.parametrize("seed", range(12))
def test_rtt_samples_are_the_same_on_both_twins(on_both, seed):
    compiled, pure = _twins(on_both)
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(0, 2000)), int(rng.integers(0, 800))
    sent_time = np.cumsum(rng.exponential(1e-3, n))
    if seed % 4 == 1:
        sent_time[::7] -= 0.01                      # timestamps that go back
    sent_end = np.cumsum(rng.integers(0, 1500, n)).astype(np.int64) - \
        rng.integers(0, 2, n) * 3000
    retransmitted = rng.random(n) < 0.1
    ack_time = np.sort(rng.uniform(0, n * 1e-3 + 0.1, m))
    if seed % 4 == 2 and m > 2:
        ack_time[1], ack_time[2] = ack_time[2], ack_time[1] + 0.5      # out of time order
    isn = int(rng.integers(0, 1 << 32))
    ack = ((isn + 1 + np.cumsum(rng.integers(0, 3000, m))) & 0xFFFFFFFF).astype(np.uint32)
    _same(compiled.rtt_samples(ack_time, ack, isn, sent_time, sent_end, retransmitted),
          pure.rtt_samples(ack_time, ack, isn, sent_time, sent_end, retransmitted))


@pytest.mark.parametrize("seed", range(12))
def test_delivery_is_the_same_on_both_twins(on_both, seed):
    compiled, pure = _twins(on_both)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    start = np.uint64(rng.integers(0, 1 << 64, dtype=np.uint64))
    steps = rng.integers(0, 2000, n).astype(np.uint64)
    dsn = start + np.cumsum(steps, dtype=np.uint64)              # may wrap past 2**64
    length = rng.integers(0 if seed % 3 == 0 else 1, 3000, n).astype(np.int64)
    time = rng.uniform(0, 10, n)
    if seed % 4 == 3:
        dsn = rng.permutation(dsn)                               # out of DSN order
    _same(compiled.delivery(dsn, time, length), pure.delivery(dsn, time, length))


def test_the_shipped_captures_series_are_the_same_on_both_backends():
    model = build_model(SHIPPED_CAPTURE, packets=True)
    series = {}
    for name in _backend.available():
        with _backend.use(name):
            series[name] = timeseries.model_series(model, delivery_pairs=False)
    if len(series) == 2:
        _same(series["cython"][0]["subflows"][0]["samples"],
              series["python"][0]["subflows"][0]["samples"])
        assert [timeseries.summary(s) for s in series["cython"]] == \
            [timeseries.summary(s) for s in series["python"]]

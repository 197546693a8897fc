"""Long fuzz runs (not in the default run): `python -m pytest -m fuzz`.

MPTCP_FAST_FUZZ_EXAMPLES sets the number of examples of the codec test (default 200000,
a few minutes on 2 cores; the analyzer tests run a hundredth of it). Each example checks
that both backends give the same value or the same error, and that nothing but the
project's own errors ever escapes.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import CaptureError, MptcpError, OptionError, _backend
from mptcp_fast.wire import crypto, dss, options
from mptcp_fast import analysis
from mptcp_fast.analysis import analyzer as analyze_module
from mptcp_fast.wire.dss import Mapping
from mptcp_trace import random_trace
from shipped_capture import first_batch
from strategies import mptcp_like_bytes, trace_ops

EXAMPLES = int(os.environ.get("MPTCP_FAST_FUZZ_EXAMPLES", "200000"))
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

# Every fuzz test compares the two backends: on a pure-only install there is nothing to
# compare (the pure backend against itself cannot fail).
pytestmark = [pytest.mark.fuzz, pytest.mark.requires("compiled")]


def outcome_on(backend_name, call):
    with _backend.use(backend_name):
        try:
            return call()
        except OptionError as exc:
            return ("OptionError", str(exc))


@fuzz_settings
@given(data=st.binary(max_size=64) | mptcp_like_bytes,
       segment=st.none() | st.sampled_from(list(options.Segment)))
def test_fuzz_parse_option_and_area(data, segment):
    for call in (lambda: options.parse_option(data, segment),
                 lambda: options.parse_tcp_options(data, segment),
                 lambda: options.parse_tcp_options(data, segment, keep_malformed=True)):
        results = [outcome_on(name, call) for name in _backend.available()]
        assert all(r == results[0] for r in results)


analyzer_settings = settings(max_examples=max(EXAMPLES // 100, 10), deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))


@analyzer_settings
@given(drawn=trace_ops, cut=st.none() | st.integers(24, 4000),
       flips=st.lists(st.integers(0, 1 << 20), max_size=4))
def test_fuzz_analyzer_on_random_and_damaged_traffic(tmp_path_factory, drawn, cut, flips):
    raw = bytearray(random_trace(drawn).pcap())
    for position in flips:                     # damage anywhere after the file header
        raw[24 + position % max(len(raw) - 24, 1)] ^= 0x5A
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(bytes(raw[:cut]))

    def call():
        try:
            return analysis.analyze(str(path))
        except CaptureError as exc:
            return ("CaptureError", str(exc), exc.report)
    results = [outcome_on(name, call) for name in _backend.available()]
    assert all(r == results[0] for r in results)


column_damage = st.tuples(
    st.sampled_from(sorted(first_batch())),
    st.sampled_from(["values", "dtype", "shape", "drop", "type"]),
    st.integers(0, 2**64 - 1), st.integers(-3, 3))


@analyzer_settings
@given(damages=st.lists(column_damage, min_size=1, max_size=3))
def test_fuzz_feed_columns(damages):
    """Batches with columns replaced, retyped, reshaped or dropped: a CaptureError or a
    report, the same on both backends, and never a crash (compiled code reads no buffer it
    was not shown to fit)."""
    def damaged():
        cols = first_batch()
        for name, how, value, delta in damages:
            col = cols.get(name)
            if not isinstance(col, (np.ndarray, bytes)):
                continue                       # dropped or retyped by an earlier damage
            if how == "drop":
                del cols[name]
            elif how == "type":
                cols[name] = col.tolist() if isinstance(col, np.ndarray) else memoryview(col)
            elif isinstance(col, bytes):
                cols[name] = col[:max(len(col) + delta * 97, 0)]
            elif how == "values" and col.size:
                flat = col.reshape(-1)
                flat[value % flat.size] = value % (2 ** (8 * col.itemsize)) if col.dtype.kind in "ub" \
                    else (value % 2**63) * (-1 if delta < 0 else 1) // (2 ** (64 - 8 * col.itemsize))
            elif how == "dtype":
                cols[name] = col.astype(np.int64 if col.dtype != np.int64 else np.uint32)
            elif how == "shape":
                cols[name] = col[:max(len(col) + delta, 0)]
        return cols

    def call():
        analyzer = analyze_module.Analyzer()
        try:
            analyzer.feed_columns(damaged())
        except CaptureError as exc:
            return ("CaptureError", str(exc))
        return analyzer.report()
    results = [outcome_on(name, call) for name in _backend.available()]
    assert results[0] == results[1]


wild = (st.integers(-2**64, 2**65) | st.sampled_from([0, 1, 2**16, 2**32 - 1, 2**32, 2**63 - 1,
                                                      2**63, 2**64 - 1, 2**64, -1])
        | st.floats(allow_nan=True) | st.none() | st.booleans() | st.text(max_size=3)
        | st.binary(max_size=8) | st.integers(0, 2**63 - 1).map(np.int64)
        | st.integers(0, 2**64 - 1).map(np.uint64))

API = {
    "expand_seq": lambda a: dss.expand_seq(a[0], a[1]),
    "dss_checksum": lambda a: dss.dss_checksum(a[0], a[1], a[2], b"abc"),
    "finish": lambda a: dss.DssChecksum().finish(a[0], a[1], a[2]),
    "update": lambda a: dss.DssChecksum().update(a[0]),
    "queue": lambda a: dss.ReassemblyQueue(a[0], a[1]).push(a[2], b"xy"),
    "queue_fin": lambda a: dss.ReassemblyQueue(0).data_fin(a[0]),
    "queue_read": lambda a: dss.ReassemblyQueue(0).read(a[0]),
    "mapping": lambda a: dss.SubflowMappings().declare(Mapping(a[0], a[1], a[2])),
    "declare": lambda a: dss.SubflowMappings().declare(a[0]),
    "resolve": lambda a: dss.SubflowMappings().resolve(a[0], a[1]),
    "release": lambda a: dss.SubflowMappings().release(a[0]),
    "synack": lambda a: crypto.KeyContext(1, 2).synack_hmac(a[0], a[1]),
    "verify_ack": lambda a: crypto.KeyContext(1, 2).verify_ack(bytes(20), a[0], a[1]),
    "join_batch": lambda a: crypto.join_hmac_batch([1], [2], [3], [4], length=a[0], threads=a[1]),
    "expand_array": lambda a: dss.expand_seq_array(a[0], [a[1]]),
}


@fuzz_settings
@given(name=st.sampled_from(sorted(API)), args=st.lists(wild, min_size=3, max_size=3))
def test_fuzz_public_api_with_wrong_types_and_values(name, args):
    """Only TypeError, ValueError or the package's own errors, with the same class and
    message on both backends."""
    def call():
        try:
            return ("ok", repr(API[name](args)))
        except (TypeError, ValueError, MptcpError) as exc:
            return (type(exc).__name__, str(exc))
    results = [outcome_on(name_, call) for name_ in _backend.available()]
    assert results[0] == results[1]

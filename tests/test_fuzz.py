"""Long fuzz runs (not in the default run): `python -m pytest -m fuzz`.

MPTCP_FAST_FUZZ_EXAMPLES sets the number of examples of the codec test (default 200000,
a few minutes on 2 cores; the analyzer tests run a hundredth of it). Each example checks
that both backends give the same value or the same error, and that nothing but the
project's own errors ever escapes.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import CaptureError, OptionError, _backend, options
from mptcp_fast import analyze as analyze_module
from strategies import mptcp_like_bytes
from test_analyze import _random_trace, ops

EXAMPLES = int(os.environ.get("MPTCP_FAST_FUZZ_EXAMPLES", "200000"))
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.fuzz


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
@given(drawn=ops, cut=st.none() | st.integers(24, 4000), flips=st.lists(st.integers(0, 1 << 20),
                                                                        max_size=4))
def test_fuzz_analyzer_on_random_and_damaged_traffic(tmp_path_factory, drawn, cut, flips):
    raw = bytearray(_random_trace(drawn).pcap())
    for position in flips:                     # damage anywhere after the file header
        raw[24 + position % max(len(raw) - 24, 1)] ^= 0x5A
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(bytes(raw[:cut]))

    def call():
        try:
            return analyze_module.analyze(str(path))
        except CaptureError as exc:
            return ("CaptureError", str(exc), exc.report)
    results = [outcome_on(name, call) for name in _backend.available()]
    assert all(r == results[0] for r in results)

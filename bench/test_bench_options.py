"""Option codec benchmarks: parse_option and encode per subtype, and whole
options areas of a typical data segment and of a SYN, on both backends."""

import pytest

from compare_options import DATA_AREA, SUBTYPE_SAMPLES, SYN_AREA
from mptcp_fast.wire import options


@pytest.mark.parametrize("name", sorted(SUBTYPE_SAMPLES))
def test_parse_option(benchmark, backend, name):
    raw = bytes.fromhex(SUBTYPE_SAMPLES[name])
    benchmark.group = f"parse_option {name}"
    result = benchmark(options.parse_option, raw)
    assert result.encode() == raw


@pytest.mark.parametrize("name", sorted(SUBTYPE_SAMPLES))
def test_encode(benchmark, backend, name):
    raw = bytes.fromhex(SUBTYPE_SAMPLES[name])
    opt = options.parse_option(raw)
    benchmark.group = f"encode {name}"
    assert benchmark(opt.encode) == raw


@pytest.mark.parametrize("area", [DATA_AREA, SYN_AREA], ids=["data-segment", "syn"])
def test_parse_tcp_options(benchmark, backend, area):
    benchmark.group = f"parse_tcp_options {len(area)} bytes"
    assert len(benchmark(options.parse_tcp_options, area)) > 1

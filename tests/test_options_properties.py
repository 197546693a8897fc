"""Properties of the option codec on both backends: round trips, parity, only OptionError."""

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import OptionError, options
from strategies import any_option, mptcp_like_bytes, mptcp_option

# The fixtures are stateless context switches, safe to share across examples.
relaxed = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


@relaxed
@given(opt=any_option)
def test_every_form_round_trips(backend, opt):
    raw = opt.encode()
    assert raw[1] == len(raw) or raw[0] in (0, 1)
    assert options.parse_option(raw) == opt
    assert options.parse_option(bytearray(raw)) == opt          # any bytes-like input
    assert options.parse_option(memoryview(raw)) == opt


@relaxed
@given(opt=any_option)
def test_both_backends_encode_the_same_bytes(on_both, opt):
    compiled, pure = on_both(opt.encode)
    assert compiled == pure


@relaxed
@given(opt=mptcp_option)
def test_options_are_immutable_hashable_and_picklable(opt):
    assert pickle.loads(pickle.dumps(opt)) == opt
    assert hash(opt) == hash(pickle.loads(pickle.dumps(opt)))
    with pytest.raises(AttributeError):
        opt.some_field = 1
    assert opt.replace() == opt
    assert opt.to_dict()["option"] == opt.name


@relaxed
@given(opts=st.lists(any_option, max_size=6), align=st.booleans())
def test_options_area_round_trips_or_reports_the_40_byte_limit(backend, opts, align):
    sizes = [len(opt.encode()) for opt in opts]
    padded = sum(n + (-n % 4 if align and n > 1 else 0) for n in sizes)
    padded += -padded % 4
    try:
        area = options.encode_tcp_options(opts, align=align)
    except OptionError as exc:
        assert exc.field == "length" and padded > 40
        return
    assert len(area) == padded <= 40
    decoded = [opt for opt in options.parse_tcp_options(area) if opt is not options.NOP]
    assert decoded == opts


@relaxed
@given(data=st.binary(max_size=48) | mptcp_like_bytes)
def test_parse_option_gives_an_option_or_option_error(backend, data):
    try:
        opt = options.parse_option(data)
    except OptionError as exc:
        assert exc.option and exc.field and exc.expected
        return
    # Reserved MPTCP bits are not kept, so compare after one normalising trip.
    assert opt.encode() == data or options.parse_option(opt.encode()) == opt


@relaxed
@given(data=st.binary(max_size=60) | mptcp_like_bytes)
def test_parse_tcp_options_raises_only_option_error(backend, data):
    try:
        options.parse_tcp_options(data)
    except OptionError:
        pass
    kept = options.parse_tcp_options(data, keep_malformed=True)   # never raises
    assert sum(len(opt.encode()) for opt in kept) <= len(data)


@relaxed
@given(data=st.binary(max_size=48) | mptcp_like_bytes,
       segment=st.none() | st.sampled_from(list(options.Segment)))
def test_backends_agree_on_any_bytes(on_both, data, segment):
    compiled, pure = on_both(lambda: options.parse_option(data, segment))
    assert compiled == pure
    compiled, pure = on_both(lambda: options.parse_tcp_options(data, segment, keep_malformed=True))
    assert compiled == pure

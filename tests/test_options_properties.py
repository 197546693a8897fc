"""Properties of the option codec on both backends: round trips, parity, only OptionError."""

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import OptionError
from mptcp_fast.wire import options
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


# Bits that may differ between what was read and what is written back, by byte offset, for
# MPTCP options (kind 30) by subtype: the low nibble of the subtype octet holds flags and
# reserved bits; the next octet is partly reserved in the DSS (its top three bits, §3.3) and
# wholly in MP_FAIL and MP_FASTCLOSE (§3.7, §3.5); MP_TCPRST keeps only its T flag (§3.6).
RESERVED_SUBTYPE_NIBBLE = {0x0: 0x0, 0x1: 0x0E, 0x2: 0x0F, 0x3: 0x0E, 0x4: 0x0F, 0x5: 0x0E,
                           0x6: 0x0F, 0x7: 0x0F, 0x8: 0x0E}
RESERVED_FOURTH_OCTET = {0x2: 0xE0, 0x6: 0xFF, 0x7: 0xFF}


def assert_differs_only_in_reserved_bits(read: bytes, written: bytes) -> None:
    assert len(read) == len(written)
    for offset, (a, b) in enumerate(zip(read, written)):
        if a == b:
            continue
        assert read[0] == 30 and offset in (2, 3), (offset, read.hex(), written.hex())
        subtype = read[2] >> 4
        mask = RESERVED_SUBTYPE_NIBBLE.get(subtype, 0) if offset == 2 else \
            RESERVED_FOURTH_OCTET.get(subtype, 0)
        assert (a ^ b) & ~mask == 0, (offset, read.hex(), written.hex())


@relaxed
@given(data=st.binary(max_size=48) | mptcp_like_bytes)
def test_parse_option_gives_an_option_or_option_error(backend, data):
    try:
        opt = options.parse_option(data)
    except OptionError as exc:
        assert exc.option and exc.field and exc.expected
        return
    # Every field is written back where it was read: the bytes may differ only in bits that
    # RFC 8684 reserves (ignored on decode, written as zero), never in a field.
    assert_differs_only_in_reserved_bits(data[:len(opt.encode())], opt.encode())


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

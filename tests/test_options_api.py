"""Constructors validate every field; errors name the field; the backend switch works."""

import os
import subprocess
import sys

import pytest

import mptcp_fast
from mptcp_fast import OptionError, _backend
from mptcp_fast.wire import options
from mptcp_fast.wire.options import AddAddr, Dss, MpCapable, MpJoinSynAck, RemoveAddr, Sack


@pytest.mark.parametrize("build,field", [
    (lambda: Dss(data_ack=1 << 32, ack64=False), "data_ack"),
    (lambda: Dss(data_ack=1 << 64), "data_ack"),
    (lambda: Dss(dsn=5), "subflow_seq"),
    (lambda: Dss(dsn=5, subflow_seq=1, data_len=70000), "data_len"),
    (lambda: Dss(checksum=3), "dsn"),
    (lambda: MpCapable(version=16), "version"),
    (lambda: MpCapable(receiver_key=1), "receiver_key"),
    (lambda: MpCapable(0), "version"),
    (lambda: MpCapable(1, 1, 1, 2, data_len=-1), "data_len"),
    (lambda: MpJoinSynAck(1, b"short", 0), "hmac"),
    (lambda: AddAddr(1, "not-an-address"), "address"),
    (lambda: AddAddr(1, "10.0.0.1", port=65536), "port"),
    (lambda: RemoveAddr([]), "address_ids"),
    (lambda: Sack([(1, 2)] * 5), "blocks"),
    (lambda: options.Mss(True), "mss"),
])
def test_out_of_range_fields_are_value_errors_naming_the_field(build, field):
    with pytest.raises(ValueError) as info:
        build()
    assert isinstance(info.value, OptionError)
    assert info.value.field == field and field in str(info.value)


def test_encoding_more_than_40_bytes_is_refused(backend):
    too_many = [Dss(data_ack=1, dsn=2, subflow_seq=3, data_len=4, checksum=5), options.Timestamps(1, 2),
                options.Mss(1460)]
    with pytest.raises(OptionError, match="at most 40 bytes"):
        options.encode_tcp_options(too_many)


def test_alignment_follows_the_kernel_layout(backend):
    area = options.encode_tcp_options([options.Timestamps(7, 8),
                                       Dss(data_ack=1, dsn=2, subflow_seq=3, data_len=4)])
    # NOP NOP TS, then the 26-byte DSS followed by two NOPs (docs/kernel-behaviour.md §2)
    assert area[:2] == b"\x01\x01" and area[2] == 8 and area[-2:] == b"\x01\x01" and len(area) == 40


def test_errors_name_option_field_and_offset(backend):
    with pytest.raises(OptionError) as info:
        options.parse_tcp_options(bytes.fromhex("0101080a00000001000000021e0b3001" + "00" * 7))
    assert (info.value.option, info.value.field, info.value.offset) == ("ADD_ADDR", "length", 13)
    with pytest.raises(OptionError) as info:
        options.parse_tcp_options(bytes.fromhex("01011e1c200f00"))
    assert (info.value.option, info.value.field, info.value.offset) == ("MPTCP", "length", 3)


def test_keep_malformed_keeps_the_good_options(backend):
    parsed = options.parse_tcp_options(bytes.fromhex("1e0b3001000000000000000101080a0000000100000002"),
                                       keep_malformed=True)
    assert isinstance(parsed[0], options.MalformedOption) and "ADD_ADDR" in parsed[0].reason
    assert parsed[-1] == options.Timestamps(1, 2)


def test_non_bytes_input_is_a_type_error(backend):
    with pytest.raises(TypeError):
        options.parse_option("1e0351")


def test_backend_names():
    assert mptcp_fast.BACKEND in ("cython", "python")
    for name in _backend.available():
        with _backend.use(name):
            assert mptcp_fast.BACKEND == name


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, env=full, check=True)


def test_pure_env_var_forces_the_python_backend():
    out = _run("import mptcp_fast; print(mptcp_fast.BACKEND)", MPTCP_FAST_PURE="1")
    assert out.stdout.strip() == "python"


def test_missing_extensions_fall_back_with_one_warning():
    # Hide the compiled modules as a build without a compiler would lack them.
    code = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'mptcp_fast.wire._options_c':\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "import mptcp_fast\n"
            "from mptcp_fast.wire import options\n"
            "print(mptcp_fast.BACKEND, options.parse_option(bytes.fromhex('1e0351')))\n")
    out = _run(code)
    assert out.stdout.strip() == "python MpPrio(backup=True, address_id=None)"
    assert out.stderr.count("compiled extensions are not built") == 1


# ------------------------------------------------------------------ buffers, slices, in-place encoding

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from strategies import any_option, mptcp_like_bytes  # noqa: E402

relaxed = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


@relaxed
@given(opts=st.lists(any_option, max_size=4), lead=st.binary(max_size=9), tail=st.binary(max_size=9))
def test_an_area_inside_a_larger_buffer_parses_in_place(backend, opts, lead, tail):
    try:
        area = options.encode_tcp_options(opts)
    except OptionError:
        return
    whole = lead + area + tail
    expected = options.parse_tcp_options(area, keep_malformed=True)
    for buf in (whole, bytearray(whole), memoryview(whole), np.frombuffer(whole, np.uint8)):
        assert options.parse_tcp_options(buf, keep_malformed=True, offset=len(lead),
                                         length=len(area)) == expected
    if len(opts) == 1 and len(area) == len(opts[0].encode()):
        assert options.parse_option(whole, offset=len(lead), length=len(area)) == opts[0]


@relaxed
@given(data=st.binary(max_size=48) | mptcp_like_bytes, lead=st.integers(0, 5))
def test_error_offsets_count_from_the_slice(on_both, data, lead):
    """The same OptionError, offsets included, for the bytes alone and for them as a slice."""
    def run():
        out = []
        for call in (lambda: options.parse_tcp_options(data),
                     lambda: options.parse_tcp_options(bytes(lead) + data, offset=lead),
                     lambda: options.parse_option(b"\x01" * lead + data + b"\x00", offset=lead,
                                                  length=len(data))):
            try:
                out.append(call())
            except OptionError as exc:
                out.append((str(exc), exc.offset))
        return out
    compiled, pure = on_both(run)
    assert compiled == pure
    assert compiled[0] == compiled[1]


@relaxed
@given(opt=any_option, at=st.integers(0, 12))
def test_encode_into_writes_the_encoded_bytes_in_place(backend, opt, at):
    raw = opt.encode()
    buf = bytearray(b"\xee" * (at + len(raw) + 3))
    assert opt.encode_into(buf, at) == len(raw)
    assert buf[at:at + len(raw)] == raw and buf[:at] == b"\xee" * at and buf[-3:] == b"\xee" * 3


def test_encode_tcp_options_into(backend):
    opts = [options.Timestamps(5, 6), options.Dss(data_ack=1, dsn=2, dsn64=True, subflow_seq=3,
                                                  data_len=4, checksum=5)]
    area = options.encode_tcp_options(opts)
    buf = np.zeros(60, np.uint8)                              # any writable buffer
    assert options.encode_tcp_options_into(opts, buf, 20) == len(area) == 40
    assert buf[20:60].tobytes() == area


@pytest.mark.parametrize("call, error, match", [
    (lambda: options.Mss(1460).encode_into(bytearray(3)), ValueError, "do not fit"),
    (lambda: options.Mss(1460).encode_into(bytearray(8), 5), ValueError, "do not fit"),
    (lambda: options.Mss(1460).encode_into(b"12345678"), TypeError, "writable"),
    (lambda: options.Mss(1460).encode_into(bytearray(8), -1), ValueError, "offset"),
    (lambda: options.Mss(1460).encode_into(bytearray(8), 1.0), TypeError, "offset"),
    (lambda: options.encode_tcp_options_into([options.NOP], bytearray(3)), ValueError, "do not fit"),
    (lambda: options.parse_tcp_options(b"\x01\x01", offset=3), ValueError, "outside"),
    (lambda: options.parse_tcp_options(b"\x01\x01", offset=1, length=2), ValueError, "past"),
    (lambda: options.parse_tcp_options(b"\x01\x01", offset=0.5), TypeError, "offset"),
    (lambda: options.parse_option(3), TypeError, ""),
])
def test_buffer_arguments_are_checked_alike(on_both, call, error, match):
    compiled, pure = on_both(call)
    assert compiled == pure and compiled[0] == "error" and compiled[1] is error
    assert match in compiled[2]

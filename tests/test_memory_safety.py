"""Regression tests for memory errors found with AddressSanitizer and UBSan builds of the
extensions, on both backends. Each test makes the call that found one; the compiled twin used to read or write outside a buffer, dereference NULL or
overflow int64 there, and now raises the same error class, with the same message, as the
pure twin. bench/sanitize.sh runs this file against a sanitizer build."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import crypto, dss, options, packet, receiver
from mptcp_fast.wire import segment
from mptcp_fast.errors import MptcpError, OptionError, PacketError
from mptcp_fast.wire.options import AddAddr, AddAddr2, Dss

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

V4_A, V4_B = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
V6_A = bytes.fromhex("20010002000000000000000000000001")
I64_MAX = 2**63 - 1


def new_receiver():
    """A DataReceiver of the active backend, with its events list."""
    events = []
    budget = receiver.ChecksumBudget(1 << 20, 1 << 20)
    return receiver.DataReceiver(events, budget, 0, dss.verify_dss_checksum), events


def data_packet(src, dst, payload):
    return segment.data_packet(src, dst, 1000, 2000, 1, 1, packet.ACK, 100, 5, 6, 7, 8, 1,
                               len(payload) & 0xFFFF, None, payload, 0, len(payload))


# ------------------------------------------------------------------------------------------------
# 14. the packet writer refuses mismatched families (it copied 16 bytes from a 4-byte address)

def test_14_build_segment_refuses_an_ipv6_source_with_an_ipv4_destination(backend):
    with pytest.raises(PacketError, match="one family") as info:
        packet.build_segment(V6_A, V4_B, 1, 2, 3, 4, packet.SYN, 100, b"", b"")
    assert info.value.reason == "family"


def test_14_build_segment_refuses_an_ipv4_source_with_an_ipv6_destination(backend):
    with pytest.raises(PacketError, match="one family"):
        packet.build_segment(V4_A, V6_A, 1, 2, 3, 4, packet.SYN, 100, b"", b"")


def test_14_the_engines_compiled_writers_refuse_mismatched_families(backend):
    with pytest.raises(PacketError, match="one family"):
        data_packet(V6_A, V4_B, b"data")
    with pytest.raises(PacketError, match="one family"):
        segment.ack_packet(V6_A, V4_B, 1000, 2000, 1, 1, 100, 5, 6, 7)
    with pytest.raises(PacketError, match="one family"):
        segment.segment_packet(V6_A, V4_B, 1000, 2000, 1, 1, packet.SYN, 100, b"", b"")


def test_14_addresses_of_other_sizes_are_refused(backend):
    with pytest.raises(PacketError, match="one family"):
        packet.build_segment(b"\x01" * 8, b"\x02" * 8, 1, 2, 3, 4, packet.ACK, 100, b"", b"")


def test_14_none_addresses_are_a_type_error(backend):
    with pytest.raises(TypeError, match="src must be bytes, not NoneType"):
        segment.ack_packet(None, V4_B, 1000, 2000, 1, 1, 100, 5, 6, 7)
    with pytest.raises(TypeError, match="src must be bytes, not NoneType"):
        segment.segment_packet(None, V4_B, 1000, 2000, 1, 1, packet.SYN, 100, b"", b"")
    with pytest.raises(TypeError, match="dst must be bytes, not NoneType"):
        data_packet(V4_A, None, b"")


# ------------------------------------------------------------------------------------------------
# 15. a payload over one IP packet is refused (the IPv4 length wrapped, locate failed, and the
#     checksum read an uninitialised layout)

def test_15_an_offloaded_chunk_over_64_kib_is_refused_by_the_engine_writer(backend):
    with pytest.raises(PacketError, match="does not fit one packet") as info:
        data_packet(V4_A, V4_B, bytes(65472))          # once a 65,552-byte packet
    assert info.value.reason == "too long"


def test_15_build_segment_refuses_a_payload_over_64_kib(backend):
    with pytest.raises(PacketError, match="does not fit one packet"):
        packet.build_segment(V4_A, V4_B, 1, 2, 3, 4, packet.ACK, 100, b"", bytes(70000))


@pytest.mark.parametrize("src, dst, largest", [(V4_A, V4_B, 65495), (V6_A, V6_A, 65515)])
def test_15_the_largest_payload_still_fits_and_one_more_byte_does_not(backend, src, dst, largest):
    out = packet.build_segment(src, dst, 1, 2, 3, 4, packet.ACK, 100, b"", bytes(largest))
    assert packet.verify_checksums(out)[1] is True
    with pytest.raises(PacketError, match=f"at most {largest}"):
        packet.build_segment(src, dst, 1, 2, 3, 4, packet.ACK, 100, b"", bytes(largest + 1))


def test_15_an_options_area_that_is_not_a_multiple_of_four_is_refused(backend):
    with pytest.raises(PacketError, match="multiple of 4") as info:
        packet.build_segment(V4_A, V4_B, 1, 2, 3, 4, packet.ACK, 100, b"\x01" * 44, b"")
    assert info.value.reason == "options"
    with pytest.raises(PacketError, match="multiple of 4"):
        packet.build_segment(V4_A, V4_B, 1, 2, 3, 4, packet.ACK, 100, b"\x01" * 3, b"")


# ------------------------------------------------------------------------------------------------
# 16. public APIs given out-of-range integers, None, or forged option tuples

def test_16_parse_tcp_options_with_a_length_near_2_63(backend):
    with pytest.raises(ValueError, match="runs past the buffer"):
        options.parse_tcp_options(bytes(30), None, False, 1, 2**63 - 1)


def test_16_parse_option_with_a_length_near_2_63(backend):
    with pytest.raises(ValueError, match="runs past the buffer"):
        options.parse_option(bytes(30), None, 1, 2**63 - 1)


def test_16_encode_tcp_options_into_at_an_offset_near_2_63(backend):
    with pytest.raises(ValueError, match="do not fit the buffer"):
        options.encode_tcp_options_into([options.NOP], bytearray(64), 2**63 - 2)


def test_16_encode_into_at_an_offset_near_2_63(backend):
    ts = options.Timestamps(1, 2)
    with pytest.raises(ValueError, match="do not fit the buffer"):
        ts.encode_into(bytearray(64), 2**63 - 1)


def test_16_parse_packet_with_a_length_near_2_63(backend):
    built = packet.build_packet(V4_A, V4_B, 1, 2, 3, 4, packet.ACK, 100)
    with pytest.raises(ValueError, match="runs past the buffer"):
        packet.parse_packet(built, 1, 2**63 - 1)


def test_16_build_segment_with_a_16_byte_source_and_a_4_byte_destination(backend):
    with pytest.raises(PacketError):
        packet.build_segment(V6_A, V4_B, 1, 2, 3, 4, packet.ACK, 100, b"", b"")


def test_16_build_segment_with_a_payload_over_64_kib(backend):
    with pytest.raises(PacketError):
        packet.build_segment(V6_A, V6_A, 1, 2, 3, 4, packet.ACK, 100, b"", bytes(1 << 17))


def test_16_declare_with_side_none(backend):
    up, _ = new_receiver()
    with pytest.raises(TypeError, match="side must be a SubflowReceiver, not NoneType"):
        up.declare(1, None, 1000, 1, 10, False, None, False)


def test_16_deliver_with_side_none(backend):
    up, _ = new_receiver()
    with pytest.raises(TypeError, match="side must be a SubflowReceiver, not NoneType"):
        up.deliver(1, None, 1, 3, b"abc")


def test_16_data_receiver_with_budget_none(backend):
    with pytest.raises(TypeError, match="budget must be a ChecksumBudget, not NoneType"):
        receiver.DataReceiver([], None, 0, dss.verify_dss_checksum)


def test_16_data_receiver_with_events_none(backend):
    budget = receiver.ChecksumBudget(1, 1)
    with pytest.raises(TypeError, match="events must be a list, not NoneType"):
        receiver.DataReceiver(None, budget, 0, dss.verify_dss_checksum)


@pytest.mark.parametrize("form", ["AddAddr", "AddAddr2"])
def test_16_verify_add_addr_with_a_forged_200_byte_address(backend, form):
    context = crypto.KeyContext(0x1122334455667788, 0x99AABBCCDDEEFF00)
    cls = AddAddr if form == "AddAddr" else AddAddr2
    forged = tuple.__new__(cls, (1, b"\x01" * 200, None, b"\x00" * 8))
    with pytest.raises(ValueError, match="address must be 4 or 16 bytes, got 200"):
        context.verify_add_addr(forged)


def test_16_the_hmac_backends_refuse_an_address_that_does_not_fit_their_buffer(backend):
    impl = crypto._impl
    state = impl.new_context(1, 2, 1)[0]          # (state, tokens and IDSNs)
    for call in (lambda: impl.add_addr_hmac(1, 2, 1, b"\x01" * 200, 80),
                 lambda: impl.add_addr2_hmac(1, 1, b"\x01" * 200, 80),
                 lambda: impl.context_add_addr(state, False, 1, b"\x01" * 200, -1, False)):
        with pytest.raises(ValueError, match="address must be 4 or 16 bytes, got 200"):
            call()
    with pytest.raises(TypeError, match="address must be bytes, not NoneType"):
        impl.context_add_addr(state, False, 1, None, -1, False)
    with pytest.raises(TypeError, match="state must be a ContextState, not NoneType"):
        impl.context_join(None, True, 1, 2, 8)


def test_16_a_dss_tuple_with_one_item_is_refused(backend):
    short = tuple.__new__(Dss, (1,))
    with pytest.raises(OptionError, match="expected 8 items, got 1"):
        short.encode()
    with pytest.raises(OptionError, match="expected 8 items, got 1"):
        short.encode_into(bytearray(64))
    with pytest.raises(OptionError, match="expected 8 items, got 1"):
        options.encode_tcp_options([short])


OPTION_CLASSES = [cls for cls in vars(options).values()
                  if isinstance(cls, type) and issubclass(cls, options._Option)
                  and cls.__dict__.get("_fields") is not None and cls not in
                  (options._Option, options._MptcpOption)]


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda cls: cls.__name__)
def test_16_every_option_tuple_with_the_wrong_item_count_is_refused(backend, cls):
    for items in {0, len(cls._fields) - 1, len(cls._fields) + 1} - {len(cls._fields)}:
        if items < 0:
            continue
        forged = tuple.__new__(cls, (None,) * items)
        with pytest.raises(OptionError, match=f"expected {len(cls._fields)} items"):
            forged.encode()


FORGED_BYTES_FIELDS = [
    ("MpJoinSynAck", (1, None, 5, False), "MP_JOIN hmac must be bytes, not NoneType"),
    ("MpJoinAck", (None,), "MP_JOIN hmac must be bytes, not NoneType"),
    ("AddAddr", (1, None, None, None), "ADD_ADDR address must be bytes, not NoneType"),
    ("AddAddr", (1, V4_A, None, 5), "ADD_ADDR hmac must be bytes, not int"),
    ("AddAddrV0", (1, None, None), "address must be bytes, not NoneType"),
    ("AddAddr2", (1, None, None, b"12345678"), "address must be bytes, not NoneType"),
    ("UnknownTcpOption", (99, None), "data must be bytes, not NoneType"),
    ("MalformedOption", (99, None, "x"), "data must be bytes, not NoneType"),
    ("MpExperimental", (1, None), "data must be bytes, not NoneType"),
    ("UnknownMptcpOption", (9, 0, None), "data must be bytes, not NoneType"),
]


@pytest.mark.parametrize("name, items, message", FORGED_BYTES_FIELDS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(FORGED_BYTES_FIELDS)])
def test_16_a_bytes_field_forged_as_none_is_refused(backend, name, items, message):
    """The compiled encoder copied None's 'bytes' (the MP_JOIN SYN/ACK sent 8 bytes of
    uninitialised stack where its HMAC goes)."""
    forged = tuple.__new__(getattr(options, name), items)
    with pytest.raises(TypeError, match=message):
        forged.encode()


# ------------------------------------------------------------------------------------------------
# 17. int64 arguments of the receive pipeline are range-checked (no signed overflow in C)

def test_17_declare_with_a_start_near_2_63(backend):
    up, _ = new_receiver()
    side = up.subflow(0)
    with pytest.raises(ValueError, match=r"start must be in 0\.\.9223372036854775802"):
        up.declare(1, side, 1000, I64_MAX, 5, False, None, False)
    up.declare(1, side, 1000, I64_MAX - 5, 5, False, None, False)    # the last that fits


@pytest.mark.parametrize("field, args, message", [
    ("number", (2**63, 1000, 1, 5), "number must be in"),
    ("dsn", (1, 2**64, 1, 5), "dsn must be in 0..18446744073709551615"),
    ("start", (1, 1000, -1, 5), "start must be in"),
    ("length", (1, 1000, 1, 0x10000), "length must be in 0..65535"),
])
def test_17_declare_fields_out_of_range(backend, field, args, message):
    up, _ = new_receiver()
    number, dsn, start, length = args
    with pytest.raises(ValueError, match=message):
        up.declare(number, up.subflow(0), dsn, start, length, False, None, False)


def test_17_declare_checksum_out_of_range(backend):
    up, _ = new_receiver()
    with pytest.raises(ValueError, match="checksum must be in 0..65535"):
        up.declare(1, up.subflow(0), 1000, 1, 5, False, 1 << 40, False)


def test_17_deliver_with_rel_plus_length_past_2_63(backend):
    up, _ = new_receiver()
    side = up.subflow(0)
    with pytest.raises(ValueError, match="length must be in 0..0, got 5"):
        up.deliver(1, side, I64_MAX, 5, None)
    with pytest.raises(ValueError, match="rel must be in"):
        up.deliver(1, side, -1, 5, None)


def test_17_resolve_with_rel_plus_length_past_2_63(backend):
    up, _ = new_receiver()
    with pytest.raises(ValueError, match="length must be in 0..1, got 5"):
        up.subflow(0).resolve(I64_MAX - 1, 5)


def test_17_subflow_ids_are_int32(backend):
    up, _ = new_receiver()
    with pytest.raises(ValueError, match="sid must be in"):
        up.subflow(2**31)


def test_17_checksum_budget_compares_without_overflow(backend):
    budget = receiver.ChecksumBudget(I64_MAX, I64_MAX)
    assert budget.claim(0, 10) is True
    assert budget.claim(0, I64_MAX) is False           # claimed + size would wrap negative
    assert budget.claimed == 10
    budget.release(0, 10)
    assert budget.claim(0, I64_MAX) is True


@pytest.mark.parametrize("call, message", [
    (lambda: receiver.ChecksumBudget(2**63, 1), "total must be in"),
    (lambda: receiver.ChecksumBudget(1, -1), "per_connection must be in"),
    (lambda: receiver.ChecksumBudget(1, 1).claim(0, -1), "size must be in"),
    (lambda: receiver.ChecksumBudget(1, 1).claim(2**63, 1), "connection must be in"),
    (lambda: receiver.ChecksumBudget(10, 10).release(0, 1), "releases 1 bytes but holds 0"),
])
def test_17_checksum_budget_arguments(backend, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_17_the_mapping_store_near_2_63(backend):
    maps = dss.SubflowMappings()
    with pytest.raises(ValueError, match="subflow_seq must be in"):
        maps.declare_fields(1000, I64_MAX, 2)
    assert maps.declare_fields(1000, I64_MAX - 2, 2) is True
    assert maps.resolve(I64_MAX - 2, 2) == [(1000, 2)]


# ------------------------------------------------------------------------------------------------
# the two backends agree on every call above (class and message)

PARITY_CALLS = {
    "parse past 2**63": lambda: options.parse_tcp_options(bytes(30), None, False, 1, 2**63 - 1),
    "encode at 2**63": lambda: options.encode_tcp_options_into([options.NOP], bytearray(8),
                                                               2**63 - 1),
    "families": lambda: packet.build_segment(V6_A, V4_B, 1, 2, 3, 4, 0x10, 1, b"", b""),
    "too long": lambda: packet.build_segment(V4_A, V4_B, 1, 2, 3, 4, 0x10, 1, b"", bytes(70000)),
    "writer too long": lambda: data_packet(V4_A, V4_B, bytes(65472)),
    "side None": lambda: new_receiver()[0].declare(1, None, 1, 1, 1, False, None, False),
    "budget None": lambda: receiver.DataReceiver([], None, 0, dss.verify_dss_checksum),
    "address 200": lambda: crypto.KeyContext(1, 2).verify_add_addr(
        tuple.__new__(AddAddr, (1, b"\x01" * 200, None, b"\x00" * 8))),
    "short Dss": lambda: tuple.__new__(Dss, (1,)).encode(),
    "None hmac": lambda: tuple.__new__(options.MpJoinSynAck, (1, None, 5, False)).encode(),
    "declare 2**63": lambda: (lambda up: up.declare(1, up.subflow(0), 1, I64_MAX, 5, False, None,
                                                    False))(new_receiver()[0]),
    "resolve 2**63": lambda: new_receiver()[0].subflow(0).resolve(I64_MAX - 1, 5),
    "budget wrap": lambda: receiver.ChecksumBudget(I64_MAX, I64_MAX).claim(0, I64_MAX),
}


@pytest.mark.parametrize("name", sorted(PARITY_CALLS))
def test_both_backends_raise_the_same(on_both, name):
    compiled, pure = on_both(PARITY_CALLS[name])
    assert compiled == pure


# ------------------------------------------------------------------------------------------------
# properties: offsets and lengths anywhere, near the int64 limits included

near_limits = st.one_of(
    st.integers(0, 80),
    st.integers(2**63 - 80, 2**63 - 1),
    st.integers(2**63, 2**64 + 5),
    st.integers(-80, -1),
    st.integers(-(2**63) - 5, -(2**63) + 80),
)
maybe_none = st.one_of(st.none(), near_limits)
ALLOWED = (TypeError, ValueError)            # OptionError and PacketError are ValueErrors


def both(on_both, call):
    """The outcome of ``call`` on each backend: equal, and only an allowed error class."""
    compiled, pure = on_both(call)
    assert compiled == pure
    if isinstance(pure, tuple) and pure and pure[0] == "error":
        assert issubclass(pure[1], ALLOWED), pure
    return pure


@relaxed
@given(data=st.binary(max_size=64), offset=maybe_none, length=maybe_none)
def test_parsers_at_any_offset_and_length(on_both, data, offset, length):
    both(on_both, lambda: options.parse_tcp_options(data, None, True, offset, length))
    both(on_both, lambda: options.parse_option(data, None, offset, length))
    if offset is not None:
        both(on_both, lambda: packet.parse_packet(data, offset, length))
        both(on_both, lambda: packet.verify_checksums(data, offset, length))


@relaxed
@given(size=st.integers(0, 64), offset=near_limits,
       opts=st.lists(st.sampled_from([options.NOP, options.Timestamps(1, 2), options.Mss(1460),
                                      options.Dss(data_ack=5, ack64=True)]), max_size=3))
def test_encoders_into_at_any_offset(on_both, size, offset, opts):
    def into_area():
        buf = bytearray(size)
        return options.encode_tcp_options_into(opts, buf, offset), bytes(buf)

    def into_one():
        buf = bytearray(size)
        return options.Timestamps(7, 8).encode_into(buf, offset), bytes(buf)

    def into_packet():
        buf = bytearray(size + 40)
        return packet.build_packet_into(buf, offset, V4_A, V4_B, 1, 2, 3, 4, 0x10, 1), bytes(buf)

    both(on_both, into_area)
    both(on_both, into_one)
    both(on_both, into_packet)


@relaxed
@given(number=near_limits, dsn=near_limits, start=near_limits, length=near_limits,
       rel=near_limits, count=near_limits)
def test_receiver_at_any_int64(on_both, number, dsn, start, length, rel, count):
    def run():
        up, events = new_receiver()
        side = up.subflow(0)
        results = []
        for call in (lambda: up.declare(number, side, dsn, start, length, False, None, False),
                     lambda: up.deliver(number, side, rel, count, None),
                     lambda: side.resolve(rel, count)):
            try:
                results.append(call())
            except (TypeError, ValueError, MptcpError) as exc:   # UnmappedData included
                results.append((type(exc), str(exc)))
        return results, [e.text for e in events], up.counters()

    both(on_both, run)


@relaxed
@given(total=near_limits, per=near_limits, sizes=st.lists(near_limits, max_size=4))
def test_checksum_budget_at_any_int64(on_both, total, per, sizes):
    def run():
        budget = receiver.ChecksumBudget(total, per)
        out = []
        for size in sizes:
            try:
                out.append(budget.claim(1, size))
            except ValueError as exc:
                out.append(str(exc))
        return out, budget.claimed

    both(on_both, run)


# ------------------------------------------------------------------------------------------------
# objects made with __new__ alone (no __init__): an error at most, never a C call on NULL

def test_a_reassembly_queue_without_init_does_not_write_a_null_array(backend):
    queue = dss.ReassemblyQueue.__new__(dss.ReassemblyQueue, 1000)
    try:
        queue.push(5, b"x")
        queue.push(2, b"y")
    except (AttributeError, TypeError, ValueError):
        pass


def test_a_data_receiver_without_init_does_not_call_into_none(backend):
    up = receiver.DataReceiver.__new__(receiver.DataReceiver)
    up.checksums = True
    try:
        up.declare(1, up.subflow(0), 1000, 1, 5, False, 0x1234, False)
    except (AttributeError, TypeError):
        pass

"""The 0-RTT TCP Convert codec (RFC 8803, mptcp_fast.wire.convert): exact bytes laid out as
the RFC's figures draw them, encode -> decode round trips of every TLV, the incremental reader
on any split of its input, and arbitrary bytes raising nothing but ConvertError."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_fast.errors import ConvertError, MptcpError
from mptcp_fast.wire import convert as c

u8 = st.integers(0, 255)
words = st.integers(0, 12).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))
ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)).filter(
    lambda a: a.ipv4_mapped is None)

tlvs = st.one_of(
    st.just(c.Info()),
    st.builds(c.Connect, ipv4 | ipv6, st.integers(0, 65535), words),
    st.builds(c.ExtendedTcpHeader, words),
    st.builds(c.SupportedTcpExtensions, st.lists(st.integers(1, 255), max_size=20).map(tuple)),
    st.builds(c.Cookie, words),
    st.builds(c.Error, u8, st.integers(0, 5).flatmap(
        lambda n: st.binary(min_size=4 * n + 1, max_size=4 * n + 1))),
    st.builds(c.Unknown, u8.filter(lambda t: t not in (1, 10, 20, 21, 22, 30)),
              st.integers(0, 5).flatmap(lambda n: st.binary(min_size=4 * n + 2,
                                                            max_size=4 * n + 2))),
)


# ---------------------------------------------------------------------- the figures' bytes
def test_the_fixed_header_alone():
    """§4.1: Version 1, Total Length 1 word (the header itself), Magic Number 0x2263."""
    assert c.encode([]) == bytes.fromhex("01012263")
    message, rest = c.decode(bytes.fromhex("01012263") + b"GET")
    assert message == c.Message(()) and rest == b"GET"


def test_a_connect_tlv_for_an_ipv4_destination():
    """The Connect TLV: Type 10, Length 5 words, the port, the IPv4-mapped IPv6 address; the
    header's Total Length counts 6 words."""
    wire = bytes.fromhex("01062263" "0a050050" "00000000000000000000ffff" "c6120401")
    assert c.encode([c.Connect(ipaddress.ip_address("198.18.4.1"), 80)]) == wire
    message, rest = c.decode(wire)
    assert message.tlvs == (c.Connect(ipaddress.IPv4Address("198.18.4.1"), 80),) and rest == b""


def test_a_connect_tlv_for_ipv6_with_tcp_options():
    """An IPv6 destination and one word of TCP options (MSS 1460): Length 6."""
    wire = bytes.fromhex("01072263" "0a0601bb" "20010002000000040000000000000001" "020405b4")
    tlv = c.Connect(ipaddress.ip_address("2001:2:0:4::1"), 443, bytes.fromhex("020405b4"))
    assert c.encode([tlv]) == wire
    assert c.decode(wire)[0].tlvs == (tlv,)


@pytest.mark.parametrize("tlv, wire", [
    (c.Info(), "01010000"),
    (c.Error(c.CONNECTION_RESET), "1e016000"),
    (c.Error(c.DESTINATION_UNREACHABLE, b"\x01"), "1e016101"),
    (c.Error(c.UNSUPPORTED_VERSION, b"\x01"), "1e010001"),
    (c.Cookie(b"abcd"), "1602000061626364"),
    (c.SupportedTcpExtensions((2, 30)), "15020000021e0000"),
    (c.ExtendedTcpHeader(bytes(20)), "14060000" + "00" * 20),
])
def test_each_tlv_as_its_figure_lays_it_out(tlv, wire):
    data = bytes.fromhex(wire)
    assert tlv.encode() == data
    message = c.encode([tlv])
    assert message[1] == 1 + len(data) // 4
    assert c.decode(message)[0].tlvs == (tlv,)


def test_error_names():
    assert c.Error(96).name == "Connection Reset" and c.Error(200).name == "error 200"


# ---------------------------------------------------------------------- properties
@given(st.lists(tlvs, max_size=6))
@settings(max_examples=300)
def test_encode_then_decode_gives_the_same_tlvs(items):
    try:
        wire = c.encode(items)
    except ConvertError:
        assert sum(len(t.encode()) for t in items) > c.MAX_MESSAGE - 4
        return
    assert len(wire) % 4 == 0 and wire[1] * 4 == len(wire)
    message, rest = c.decode(wire + b"app")
    assert message.tlvs == tuple(items) and rest == b"app"


@given(st.lists(tlvs, max_size=4), st.lists(st.integers(1, 40), max_size=30), st.binary(max_size=8))
def test_the_reader_takes_any_split(items, cuts, after):
    wire = c.encode(items) + after
    reader = c.Reader()
    found = None
    at = 0
    for cut in cuts + [len(wire)]:
        piece = wire[at:at + cut]
        at += len(piece)
        found = reader.feed(piece)
        if found is not None:
            break
    assert found is not None and found.tlvs == tuple(items)
    assert reader.rest + wire[at:] == after


@given(st.binary(max_size=1100), st.booleans())
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_convert_error(data, headed):
    if headed and len(data) >= 4:      # a valid header's first fields: the TLVs get read
        data = b"\x01" + data[1:2] + b"\x22\x63" + data[4:]
    try:
        message, rest = c.decode(data)
    except ConvertError as exc:
        assert exc.code in (c.UNSUPPORTED_VERSION, c.MALFORMED_MESSAGE)
        return
    assert len(data) - len(rest) == data[1] * 4
    assert c.encode(message.tlvs) == bytes(data[:4]) + b"".join(
        t.encode() for t in message.tlvs)


@given(st.binary(min_size=4, max_size=1100), st.integers(1, 7))
def test_arbitrary_bytes_fed_in_pieces_raise_only_convert_error(data, step):
    reader = c.Reader()
    data = b"\x01" + data[1:2] + b"\x22\x63" + data[4:]     # get past the header more often
    try:
        for i in range(0, len(data), step):
            if reader.feed(data[i:i + step]) is not None:
                break
    except ConvertError:
        pass
    assert reader.wanted <= c.MAX_MESSAGE


# ---------------------------------------------------------------------- strictness
@pytest.mark.parametrize("wire, code, offset", [
    ("02012263", c.UNSUPPORTED_VERSION, 0),          # version 2
    ("01002263", c.MALFORMED_MESSAGE, 1),            # Total Length 0
    ("01010000", c.MALFORMED_MESSAGE, 2),            # no Magic Number
    ("01022263" "0a000000", c.MALFORMED_MESSAGE, 5),  # a TLV of length 0
    ("01022263" "0a050050", c.MALFORMED_MESSAGE, 5),  # Connect running past the message
    ("01022263" "0a010050", c.MALFORMED_MESSAGE, 5),  # Connect shorter than its fields
    ("01032263" "01020000" "00000000", c.MALFORMED_MESSAGE, 5),   # Info of 2 words
    ("01032263" "15020000" "02000300", c.MALFORMED_MESSAGE, 9),   # kind 0 inside the list
])
def test_malformed_messages_name_the_code_and_offset(wire, code, offset):
    with pytest.raises(ConvertError) as caught:
        c.decode(bytes.fromhex(wire))
    assert caught.value.code == code and caught.value.offset == offset
    assert isinstance(caught.value, MptcpError) and isinstance(caught.value, ValueError)


def test_a_truncated_message_is_not_a_message():
    reader = c.Reader()
    assert reader.feed(bytes.fromhex("0106")) is None and reader.wanted == 2
    assert reader.feed(bytes.fromhex("2263")) is None and reader.wanted == 20
    with pytest.raises(ConvertError):
        c.decode(bytes.fromhex("01062263"))


def test_feeding_after_the_message_is_refused():
    reader = c.Reader()
    assert reader.feed(c.encode([])) is not None
    with pytest.raises(ConvertError):
        reader.feed(b"x")


@pytest.mark.parametrize("make", [
    lambda: c.Connect(ipaddress.ip_address("198.18.0.1"), 70000),
    lambda: c.Connect(ipaddress.ip_address("198.18.0.1"), 80, b"\x01"),
    lambda: c.Cookie(b"abc"),
    lambda: c.Error(1, b""),
    lambda: c.Error(256),
    lambda: c.SupportedTcpExtensions((0,)),
    lambda: c.Unknown(10, b"\x00\x00"),
    lambda: c.encode([c.Cookie(bytes(1016))]),
])
def test_values_that_cannot_be_carried_are_refused(make):
    with pytest.raises(ConvertError):
        make()


def test_an_ipv4_mapped_ipv6_address_is_the_ipv4_address_it_carries():
    tlv = c.Connect(ipaddress.ip_address("::ffff:198.18.0.1"), 80)
    assert tlv.address == ipaddress.IPv4Address("198.18.0.1")
    assert c.Connect("198.18.0.1", 80) == tlv

"""The packet layer (mptcp_fast.wire.packet) on both backends: building and parsing IPv4/IPv6 + TCP
packets in place, the TCP and IPv4 header checksums checked against scapy's (an independent
implementation), errors for what is not a whole TCP packet, and backend parity on any bytes.
Kernel packets are checked in test_kernel_capture.py."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast.wire import options, packet
from mptcp_fast.wire.packet import PacketError

relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

v4 = st.builds(lambda a, b: (f"198.18.{a}.{b}"), st.integers(0, 255), st.integers(1, 254))
v6 = st.builds(lambda a: f"2001:2::{a:x}", st.integers(1, 0xFFFF))
addresses = st.one_of(st.tuples(v4, v4), st.tuples(v6, v6))
option_areas = st.lists(st.sampled_from([
    options.Timestamps(1, 2), options.Mss(1460), options.SackPermitted(), options.WindowScale(7),
    options.Dss(data_ack=5, dsn=2**40, dsn64=True, subflow_seq=9, data_len=100)]),
    max_size=2, unique=True).map(lambda opts: options.encode_tcp_options(opts) if opts else b"")
fields = st.fixed_dictionaries({
    "sport": st.integers(0, 0xFFFF), "dport": st.integers(0, 0xFFFF),
    "seq": st.integers(0, 2**32 - 1), "ack": st.integers(0, 2**32 - 1),
    "flags": st.integers(0, 0xFF), "window": st.integers(0, 0xFFFF)})
extras = st.fixed_dictionaries({
    "ttl": st.integers(0, 255), "tos": st.integers(0, 255), "ip_id": st.integers(0, 0xFFFF),
    "urgent": st.integers(0, 0xFFFF)})


@relaxed
@given(addrs=addresses, f=fields, extra=extras, area=option_areas,
       payload=st.binary(max_size=300), lead=st.integers(0, 9))
def test_build_then_parse_in_place(backend, addrs, f, extra, area, payload, lead):
    """A packet built at an offset inside a larger buffer parses back to every field, with
    the options and payload as views of that buffer, and both checksums verify."""
    buf = bytearray(lead + 60 + 40 + len(payload) + 7)
    n = packet.build_packet_into(buf, lead, *addrs, **f, options=area, payload=payload, **extra)
    p = packet.parse_packet(memoryview(buf), lead, n)
    assert (p.sport, p.dport, p.seq, p.ack, p.flags, p.window, p.urgent, p.ttl) == (
        f["sport"], f["dport"], f["seq"], f["ack"], f["flags"], f["window"], extra["urgent"],
        extra["ttl"])
    assert p.version == (4 if "." in addrs[0] else 6) and p.ip_offset == lead
    assert bytes(p.options(buf)) == area and bytes(p.payload(buf)) == payload
    assert p.payload_len == p.captured_len == len(payload) and not p.truncated
    assert p.payload_offset + len(payload) == lead + n
    assert packet.verify_checksums(buf, lead, n) == ((True if p.version == 4 else None), True)
    assert p.checksum == packet.tcp_checksum(buf, lead, n)


@relaxed
@given(addrs=addresses, f=fields, extra=extras, area=option_areas, payload=st.binary(max_size=200))
def test_checksums_equal_scapys(backend, addrs, f, extra, area, payload):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    raw = packet.build_packet(*addrs, **f, options=area, payload=payload, **extra)
    layer = IP if "." in addrs[0] else IPv6
    theirs = layer(raw)
    tcp = theirs[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.window, bytes(tcp.payload)) == (
        f["sport"], f["dport"], f["seq"], f["ack"], f["window"], payload)
    ours_tcp, ours_ip = tcp.chksum, (theirs.chksum if layer is IP else None)
    del tcp.chksum                                 # scapy computes them again on build
    if layer is IP:
        del theirs.chksum
    again = layer(bytes(theirs))
    assert again[TCP].chksum == ours_tcp
    if layer is IP:
        assert again.chksum == ours_ip == packet.ipv4_header_checksum(raw)


def test_a_flipped_bit_fails_the_checksum(backend):
    raw = bytearray(packet.build_packet("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, packet.ACK, 5,
                                        payload=b"payload"))
    raw[-1] ^= 0x10
    assert packet.verify_checksums(raw) == (True, False)
    raw[-1] ^= 0x10
    raw[8] ^= 0x01                                  # the TTL: only the IPv4 header fails
    assert packet.verify_checksums(raw) == (False, True)


def test_checksum_zero_and_ffff_both_verify(backend):
    """Ones' complement has two zeros: a packet whose checksum field holds 0xFFFF where the
    computation gives 0x0000 still verifies (the sum over everything is 0xFFFF either way)."""
    def build(word):
        return bytearray(packet.build_packet("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, 0, 5,
                                             payload=struct.pack(">H", word)))
    # with payload word w the sum grows by w: the checksum of word 0 is the word that makes it 0
    raw = build(packet.tcp_checksum(build(0)))
    assert packet.tcp_checksum(raw) == 0 and raw[36:38] == b"\x00\x00"
    raw[36:38] = b"\xff\xff"
    assert packet.verify_checksums(raw) == (True, True)


def ipv4(total=40, proto=6, frag=0x4000, ihl=5, version=4):
    return struct.pack(">BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 0, frag, 64, proto, 0,
                       bytes(4), bytes(4)) + bytes(4 * max(ihl - 5, 0))


TCP20 = struct.pack(">HHIIBBHHH", 1, 2, 3, 4, 0x50, 0x10, 5, 0, 0)


@pytest.mark.parametrize("raw, reason", [
    (b"", "truncated"),
    (ipv4()[:19], "truncated"),
    (ipv4() + TCP20[:19], "truncated"),
    (ipv4(proto=17) + TCP20, "not tcp"),
    (ipv4(frag=0x2000) + TCP20, "fragment"),            # MF set
    (ipv4(frag=0x0010) + TCP20, "fragment"),            # an offset
    (ipv4(ihl=4) + TCP20, "not tcp"),
    (ipv4(total=30) + TCP20, "not tcp"),                # the TCP header runs past the packet
    (ipv4(version=5) + TCP20, "not tcp"),
    (ipv4() + TCP20[:12] + b"\x40" + TCP20[13:], "not tcp"),   # data offset 16 bytes
    (struct.pack(">IHBB16s16s", 6 << 28, 20, 17, 64, bytes(16), bytes(16)) + TCP20, "not tcp"),
])
def test_what_is_not_a_tcp_packet(backend, raw, reason):
    with pytest.raises(PacketError) as info:
        packet.parse_packet(raw)
    assert info.value.reason == reason


def test_ipv6_extension_headers_are_skipped(backend):
    base = packet.build_packet("2001:2::1", "2001:2::2", 7, 8, 9, 10, packet.SYN, 11, payload=b"z")
    hop = bytes([6, 0]) + bytes(6)                       # hop-by-hop, next header TCP
    atomic = bytes([0, 0, 0, 0]) + bytes(4)              # a fragment header, offset 0, no M
    raw = bytearray(base[:40] + atomic + hop + base[40:])
    raw[6] = 44
    raw[4:6] = struct.pack(">H", len(raw) - 40)
    p = packet.parse_packet(raw)
    assert (p.tcp_offset, p.sport, bytes(p.payload(raw))) == (56, 7, b"z")
    raw[40 + 3] = 1                                      # the M flag: a real fragment
    with pytest.raises(PacketError, match="fragment"):
        packet.parse_packet(raw)


def test_a_truncated_payload_is_reported_not_refused(backend):
    raw = packet.build_packet("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, packet.ACK, 5,
                              payload=bytes(100))
    p = packet.parse_packet(raw[:70])
    assert (p.payload_len, p.captured_len, p.truncated) == (100, 30, True)
    with pytest.raises(PacketError, match="end before the packet does"):
        packet.verify_checksums(raw[:70])


def test_arguments_are_checked(backend):
    buf = bytearray(100)
    with pytest.raises(ValueError, match="multiple of 4"):
        packet.build_packet_into(buf, 0, "198.18.0.1", "198.18.0.2", 1, 2, 3, 4, 0, 5,
                                 options=b"\x01")
    with pytest.raises(ValueError, match="one family"):
        packet.build_packet_into(buf, 0, "198.18.0.1", "2001:2::1", 1, 2, 3, 4, 0, 5)
    with pytest.raises(ValueError, match="does not fit"):
        packet.build_packet_into(buf, 80, "198.18.0.1", "198.18.0.2", 1, 2, 3, 4, 0, 5)
    with pytest.raises(ValueError):
        packet.build_packet_into(buf, 0, "198.18.0.1", "198.18.0.2", 70000, 2, 3, 4, 0, 5)
    with pytest.raises(TypeError):
        packet.build_packet_into(buf, 0, "198.18.0.1", "198.18.0.2", 1.0, 2, 3, 4, 0, 5)
    with pytest.raises(TypeError):                           # read-only buffer
        packet.build_packet_into(bytes(100), 0, "198.18.0.1", "198.18.0.2", 1, 2, 3, 4, 0, 5)
    with pytest.raises(ValueError, match="outside the buffer"):
        packet.parse_packet(b"abc", 4)
    with pytest.raises(ValueError, match="past the buffer"):
        packet.parse_packet(b"abc", 1, 5)
    raw6 = packet.build_packet("2001:2::1", "2001:2::2", 1, 2, 3, 4, 0, 5)
    with pytest.raises(PacketError, match="IPv6 has no header checksum"):
        packet.ipv4_header_checksum(raw6)


@relaxed
@given(raw=st.binary(max_size=120), offset=st.integers(0, 8))
def test_any_bytes_give_a_packet_or_packet_error_alike(on_both, raw, offset):
    def run():
        out = []
        for call in (packet.parse_packet, packet.verify_checksums, packet.tcp_checksum):
            try:
                out.append(call(raw, min(offset, len(raw))))
            except PacketError as exc:
                out.append(("PacketError", exc.reason, str(exc)))
        return out
    compiled, pure = on_both(run)
    assert compiled == pure


@relaxed
@given(addrs=addresses, f=fields, area=option_areas, payload=st.binary(max_size=64),
       flips=st.lists(st.integers(0, 400), max_size=3))
def test_damaged_packets_agree_across_backends(on_both, addrs, f, area, payload, flips):
    raw = bytearray(packet.build_packet(*addrs, **f, options=area, payload=payload))
    for at in flips:
        raw[at % len(raw)] ^= 1 << (at % 8)

    def run():
        try:
            return packet.parse_packet(raw), packet.verify_checksums(raw)
        except PacketError as exc:
            return exc.reason, str(exc)
    compiled, pure = on_both(run)
    assert compiled == pure


@pytest.mark.requires("tshark")
def test_tshark_finds_our_checksums_good(backend, tmp_path):
    """A second opinion: packets we build, IPv4 and IPv6, odd and even payloads, with options;
    tshark validating both checksums calls every one good."""
    import subprocess
    frames = []
    for i in range(40):
        addrs = ("198.18.0.1", "198.18.1.2") if i % 2 else ("2001:2::1", "2001:2::2")
        area = options.encode_tcp_options([options.Timestamps(i, 2 * i)]) if i % 3 else b""
        frames.append(packet.build_packet(*addrs, 40000 + i, 10000, 7 * i, 3 * i, packet.ACK, 512,
                                          options=area, payload=bytes(range(i * 5 % 256)) * 2))
    path = tmp_path / "ours.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for frame in frames:
            f.write(struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame)
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-T", "fields", "-e", "ip.checksum.status", "-e", "tcp.checksum.status"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(rows) == len(frames)
    for i, row in enumerate(rows):                   # Wireshark: 0 bad, 1 good, 2 unverified
        ip_status, tcp_status = row.split("\t")
        assert tcp_status == "1" and ip_status == ("1" if i % 2 else ""), (i, row)

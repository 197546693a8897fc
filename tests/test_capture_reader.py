"""The capture reader on synthetic files: every link type, both pcap byte orders and time
units, pcapng sections/interfaces/tsresol, IPv4 options, IPv6 extension headers, fragments,
non-TCP, snap-length truncation, and corrupt or cut files (CaptureError with the offset)."""

import io
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mptcp_fast import CaptureError
from mptcp_fast.analysis import capture
from pcapwriter import tcp_packet

OPTS = bytes.fromhex("1e08200156788365")                 # a DSS data ACK, 8 bytes


def ipv4_tcp(**kw):
    return tcp_packet(OPTS, **kw)


def ipv6_tcp(payload=b"", ext=b"", next_header=6):
    tcp = struct.pack(">HHIIBBHHH", 40000, 10000, 7, 9, ((20 + len(OPTS)) // 4) << 4, 0x18, 100, 0, 0)
    body = ext + tcp + OPTS + payload
    src = bytes.fromhex("20010db8" + "00" * 11 + "01")
    dst = bytes.fromhex("20010db8" + "00" * 11 + "02")
    return struct.pack(">IHBB", 6 << 28, len(body), next_header, 64) + src + dst + body


def pcap_file(frames, linktype, order="<", nano=False):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        frac = 123456789 if nano else 123456
        data, orig = frame if isinstance(frame, tuple) else (frame, len(frame))
        out += struct.pack(order + "IIII", 1_700_000_000 + i, frac, len(data), orig) + data
    return out


def read(raw):
    reader = capture.CaptureReader(io.BytesIO(raw))
    return list(reader), reader.stats


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_time_units(backend, order, nano):
    segs, stats = read(pcap_file([ipv4_tcp(payload=b"hello")], 101, order, nano))
    (s,) = segs
    assert str(s.src_ip) == "198.18.0.1" and (s.sport, s.dport, s.seq, s.ack) == (40000, 10000, 1, 1)
    assert s.options == OPTS and s.payload == b"hello" and s.payload_len == 5 and not s.truncated
    assert s.time == pytest.approx(1_700_000_000 + (0.123456789 if nano else 0.123456), abs=1e-9)


def ether(payload, ethertype=0x0800, vlans=0):
    return bytes(12) + b"\x81\x00\x00\x05" * vlans + struct.pack(">H", ethertype) + payload


@pytest.mark.parametrize("linktype,frame", [
    (1, ether(ipv4_tcp())),
    (1, ether(ipv4_tcp(), vlans=2)),                                 # QinQ
    (113, bytes(14) + b"\x08\x00" + ipv4_tcp()),                      # Linux SLL
    (276, b"\x08\x00" + bytes(18) + ipv4_tcp()),                      # Linux SLL2
    (101, ipv4_tcp()), (228, ipv4_tcp()),
    (0, struct.pack("<I", 2) + ipv4_tcp()),                           # BSD loopback
    (108, struct.pack(">I", 2) + ipv4_tcp()),                         # OpenBSD loop
])
def test_link_types_ipv4(backend, linktype, frame):
    (s,), _ = read(pcap_file([frame], linktype))
    assert str(s.dst_ip) == "198.18.0.2" and s.options == OPTS


def test_ipv6_with_extension_headers(backend):
    hop_by_hop = bytes([43, 0]) + bytes(6)                           # -> routing
    routing = bytes([60, 0]) + bytes(6)                              # -> destination options
    dest = bytes([44, 0]) + bytes(6)                                 # -> fragment (offset 0, M 0)
    fragment = bytes([6, 0, 0, 0]) + bytes(4)                        # -> TCP
    frame = ipv6_tcp(b"data", hop_by_hop + routing + dest + fragment, next_header=0)
    for linktype, raw in ((229, frame), (1, ether(frame, 0x86DD)), (0, struct.pack("<I", 30) + frame)):
        (s,), _ = read(pcap_file([raw], linktype))
        assert str(s.src_ip) == "2001:db8::1" and s.payload == b"data" and (s.seq, s.ack) == (7, 9)


def test_skipped_and_truncated_are_counted(backend):
    fragment = bytearray(ipv4_tcp())
    fragment[6] |= 0x20                                              # MF set
    udp = bytearray(ipv4_tcp())
    udp[9] = 17
    v6_fragment = ipv6_tcp(ext=bytes([6, 0, 0, 8]) + bytes(4), next_header=44)   # offset 1
    full = ipv4_tcp(payload=b"x" * 100)
    cut = (full[:len(full) - 60], len(full))                         # snap length cut the payload
    headless = (full[:30], len(full))                                # not even the TCP header
    frames = [bytes(fragment), bytes(udp), v6_fragment, cut, headless]
    segs, stats = read(pcap_file(frames, 101))
    assert [s.truncated for s in segs] == [True] and segs[0].payload_len == 100
    assert len(segs[0].payload) == 40
    assert (stats.fragments, stats.non_tcp, stats.truncated_headers, stats.truncated_payloads) == (2, 1, 1, 1)
    _, stats = read(pcap_file([ether(b"\x00" * 28, 0x0806)], 1))     # ARP
    assert stats.non_tcp == 1 and stats.tcp == 0


def pcapng(blocks_order="<", tsresol=None):
    o = blocks_order

    def block(kind, body):
        body += bytes(-len(body) % 4)
        return struct.pack(o + "II", kind, len(body) + 12) + body + struct.pack(o + "I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack(o + "HH", 9, 1) + bytes([tsresol]) + bytes(3) + struct.pack(o + "HH", 0, 0)
    idb0 = block(1, struct.pack(o + "HHI", 101, 0, 65535) + opts)
    idb1 = block(1, struct.pack(o + "HHI", 1, 0, 65535))
    pkt_a = ipv4_tcp(payload=b"A")
    epb0 = block(6, struct.pack(o + "IIIII", 0, 0, 1_000_000, len(pkt_a), len(pkt_a)) + pkt_a)
    pkt_b = ether(ipv4_tcp(payload=b"B"))
    epb1 = block(6, struct.pack(o + "IIIII", 1, 0, 2_000_000, len(pkt_b), len(pkt_b)) + pkt_b)
    spb = block(3, struct.pack(o + "I", len(pkt_a)) + pkt_a)
    nrb = block(4, b"\x00\x00\x00\x00")                              # name resolution: skipped
    return shb + idb0 + idb1 + nrb + epb0 + epb1 + spb


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_and_tsresol(backend, order):
    segs, stats = read(pcapng(order, tsresol=9))                      # interface 0 in ns
    assert [s.payload for s in segs] == [b"A", b"B", b"A"]
    assert [s.interface for s in segs] == [0, 1, 0]
    assert segs[0].time == pytest.approx(0.001) and segs[1].time == pytest.approx(2.0)
    two_sections = pcapng(order) + pcapng(">" if order == "<" else "<")
    segs, _ = read(two_sections)
    assert [s.number for s in segs] == [1, 2, 3, 4, 5, 6] and segs[3].payload == b"A"


def test_cut_and_corrupt_files_name_the_offset(backend):
    good = pcap_file([ipv4_tcp(), ipv4_tcp()], 101)
    cut = good[:-10]
    reader = capture.CaptureReader(io.BytesIO(cut))
    got = []
    with pytest.raises(CaptureError, match=r"byte \d+") as info:
        for s in reader:
            got.append(s)
    assert len(got) == 1                                             # everything before it
    assert str(24 + 16 + len(ipv4_tcp()) + 16) in str(info.value)    # the second record's data
    corrupt = bytearray(good)
    struct.pack_into("<I", corrupt, 24 + 8, 1 << 30)                 # absurd captured length
    with pytest.raises(CaptureError, match="byte 24"):
        read(bytes(corrupt))
    with pytest.raises(CaptureError, match="not a pcap"):
        read(b"GIF89a" + bytes(30))
    with pytest.raises(CaptureError):
        read(pcapng()[:-7])


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(max_size=120), max_size=5),
       linktype=st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 9999]),
       tail=st.binary(max_size=40))
def test_any_bytes_give_segments_or_capture_error(backend, frames, linktype, tail):
    raw = pcap_file(frames, linktype) + tail
    try:
        segs, stats = read(raw)
    except CaptureError:
        return
    assert stats.records >= len(frames) and len(segs) <= stats.records


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_files_only_raise_capture_error(backend, raw):
    for prefix in (b"", pcapng()[:28], pcap_file([], 1)):
        reader = capture.CaptureReader(io.BytesIO(prefix + raw))
        segs = []
        try:
            segs.extend(reader)
        except CaptureError as exc:                  # names where the damage is
            assert "byte" in str(exc) or "not a pcap" in str(exc).lower(), str(exc)
        stats = reader.stats
        assert len(segs) == stats.tcp <= stats.records
        assert all(isinstance(s, capture.TcpSegment) and len(s.src) in (4, 16) for s in segs)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(max_size=120), max_size=4),
       linktype=st.sampled_from([0, 1, 101, 113, 229, 276]), cut=st.integers(0, 400),
       ng=st.booleans())
def test_backends_agree_on_any_file(on_both, frames, linktype, cut, ng):
    raw = pcapng() + pcap_file(frames, linktype)[24:] if ng else pcap_file(frames, linktype)
    raw = raw[:len(raw) - cut % (len(raw) + 1)]

    def run():
        reader = capture.CaptureReader(io.BytesIO(raw))
        got = []
        try:
            for seg in reader:
                got.append(seg)
        except CaptureError as exc:
            got.append(str(exc))
        return got, reader.stats.as_dict()
    compiled, pure = on_both(run)
    assert compiled == pure


def test_columns_equal_the_segments(backend):
    from mptcp_fast.wire import options
    dss_area = bytes.fromhex("0101080a00000001000000021e1c200f43143b25bce216b29a915667704f8201"
                             "0000000107d0c3c8")
    frames = [tcp_packet(dss_area, payload=b"p" * 9, seq=5), ipv4_tcp(payload=b"q"),
              ether(ipv6_tcp(b"six"), 0x86DD)]
    raw = pcap_file([ether(f) if f[0] >> 4 == 4 else f for f in frames], 1)
    segs, _ = read(raw)
    reader = capture.CaptureReader(io.BytesIO(raw))
    (cols,) = list(reader.columns(batch=10))
    assert reader.stats.tcp == 3 and list(cols["number"]) == [s.number for s in segs]
    for i, s in enumerate(segs):
        width = 4 if cols["family"][i] == 4 else 16
        assert bytes(cols["src"][i][:width]) == s.src and bytes(cols["dst"][i][:width]) == s.dst
        assert (cols["sport"][i], cols["dport"][i], cols["seq"][i], cols["ack"][i]) == (
            s.sport, s.dport, s.seq, s.ack)
        start, n = cols["options_start"][i], cols["options_len"][i]
        assert cols["options_blob"][start:start + n] == s.options
        start, n = cols["payload_start"][i], cols["captured_len"][i]
        assert cols["payload_blob"][start:start + n] == s.payload
    dss = options.parse_tcp_options(segs[0].options)[-1]
    assert cols["mptcp_subtypes"][0] == 1 << 2 and cols["dss_flags"][0] == dss.flags
    assert (cols["data_ack"][0], cols["dsn"][0], cols["dss_ssn"][0], cols["dss_len"][0],
            cols["dss_checksum"][0]) == (dss.data_ack, dss.dsn, 1, 2000, 0xC3C8)
    assert cols["dss_flags"][1] == 1 and cols["data_ack"][1] == 0x56788365   # the 8-byte DSS
    batches = list(capture.CaptureReader(io.BytesIO(raw)).columns(batch=2, payloads=False))
    assert [len(b["seq"]) for b in batches] == [2, 1] and batches[0]["payload_start"][0] == -1
    batches = list(capture.CaptureReader(io.BytesIO(raw)).columns(batch=10, payload_bytes=5))
    assert [len(b["seq"]) for b in batches] == [1, 2]          # 9 payload bytes fill the budget


def test_columns_of_a_cut_file_come_before_the_error(backend):
    raw = pcap_file([ipv4_tcp(), ipv4_tcp(), ipv4_tcp()], 101)[:-5]
    got = []
    with pytest.raises(CaptureError):
        for batch in capture.CaptureReader(io.BytesIO(raw)).columns(batch=100):
            got.append(len(batch["seq"]))
    assert got == [2]


def _option_areas():
    from strategies import any_option, mptcp_like_bytes
    encoded = st.lists(any_option, max_size=4).map(lambda opts: b"".join(o.encode() for o in opts))
    pieces = st.lists(st.one_of(encoded, mptcp_like_bytes, st.binary(max_size=12)), max_size=3)
    return pieces.map(lambda p: b"".join(p)[:40]).map(lambda a: a + bytes(-len(a) % 4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(area=_option_areas())
def test_columns_flag_what_the_codec_calls_malformed(backend, area):
    """The fast path of the analyzer trusts the columns for packets whose options are plain TCP
    options and one DSS: there, the flag and the DSS fields must agree with the full parse."""
    from mptcp_fast.wire import options
    (cols,) = list(capture.CaptureReader(io.BytesIO(pcap_file([tcp_packet(area)], 101))).columns())
    parsed = options.parse_tcp_options(area, keep_malformed=True)
    bad = [o for o in parsed if isinstance(o, options.MalformedOption)
           and not (o.kind == 30 and len(o.data) >= 3 and o.data[1] == len(o.data)
                    and o.data[2] >> 4 != 2)]        # other subtypes: the full parse decides
    assert bool(cols["options_malformed"][0]) == bool(bad)
    dss = [o for o in parsed if isinstance(o, options.Dss)]
    if dss:
        d = dss[0]
        assert cols["dss_flags"][0] == d.flags and cols["data_ack"][0] == (d.data_ack or 0)
        assert (cols["dsn"][0], cols["dss_ssn"][0], cols["dss_len"][0]) == (
            (d.dsn or 0), (d.subflow_seq or 0), (d.data_len or 0))
        assert cols["dss_checksum"][0] == (-1 if d.checksum is None else d.checksum)
    else:
        assert cols["dss_flags"][0] == 0xFF

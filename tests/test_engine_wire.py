"""The engine's wire output checked by things it did not write: every packet of a
demo capture decodes cleanly in tshark (checksums good, no warning or error expert info), and
``mptcp-fast analyze`` finds valid HMACs, verified DSS checksums and both streams byte-exact
against what the engines sent. Also the ``demo`` command itself."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess

import pytest

from mptcp_fast.cli import main as cli
from mptcp_fast.sim import demo
from mptcp_fast.wire import options as opt
from mptcp_fast.analysis import analyze
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.apps import pattern

from enginenet import C0, C1, S0, options_of, pump, transfer

MB = 1 << 20
TSHARK = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
          "-o", "mptcp.analyze_mptcp:TRUE",
          # port 5000 is IPA (GSM) to tshark's heuristics: our payload is random bytes
          "--disable-protocol", "gsm_ipa"]


def _stream_sha(seed: int, size: int) -> str:
    block = pattern(seed)
    n = len(block) // 2
    h = hashlib.sha256()
    for start in range(0, size, n):
        h.update(block[:min(n, size - start)])
    return h.hexdigest()


@pytest.fixture
def capture(backend, tmp_path):
    """A transfer both ways with checksums, one lossy path, written by the network."""
    path = tmp_path / "engine.pcap"
    paths = {(C0, S0): dict(rate=50e6, delay=0.010),
             (C1, S0): dict(rate=20e6, delay=0.020, loss=0.01)}
    run = transfer(paths, up=MB, down=MB // 2, checksums=True, pcap=str(path))
    run.check_exact(MB, MB // 2)
    return path, run


def test_analyze_agrees_with_the_engines(capture):
    path, run = capture
    report = analyze(str(path))
    assert len(report["connections"]) == 1
    c = report["connections"][0]
    assert c["version"] == 1 and c["checksums"] is True and c["fallback"] is None
    assert c["client_key"] == f"{run.conn.local_key:016x}"
    assert c["server_key"] == f"{run.conn.remote_key:016x}"
    joins = [s for s in c["subflows"] if not s["initial"]]
    assert len(joins) == 1
    assert joins[0]["join_synack_hmac"] == "valid" and joins[0]["join_ack_hmac"] == "valid"
    up, down = c["streams"]["up"], c["streams"]["down"]
    client, server = run.up
    assert up["complete"] and up["bytes"] == MB and up["sha256"] == client.sent_hash.hexdigest()
    assert down["complete"] and down["sha256"] == server.sent_hash.hexdigest()
    assert up["sha256"] == _stream_sha(1, MB)                       # the seeded stream itself
    assert c["checksum_failures"] == [] and c["anomalies"] == [] and c["events"] == []
    assert sum(s["unverified_checksums"]
               for s in c["subflows"]) == 0                         # every checksum was checked


@pytest.mark.requires("tshark")
def test_tshark_decodes_every_packet_cleanly(capture):
    path, _ = capture
    frames = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True).stdout.split()
    good = subprocess.run(["tshark", "-r", str(path), *TSHARK, "-Y",
                           "tcp.checksum.status == 1 and (ip.checksum.status == 1 or ipv6)",
                           "-T", "fields", "-e", "frame.number"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert len(frames) > 1000 and good == frames                    # every checksum verified
    # (a segment that fills the receiver's window exactly is flow control at work, which the
    # autotuned window, small at first, shows; tshark warns of it: not a defect)
    bad = subprocess.run(["tshark", "-r", str(path), *TSHARK, "-Y",
                          "_ws.malformed or (_ws.expert.severity >= warning and "
                          "not tcp.analysis.window_full)",
                          "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, check=True).stdout
    assert bad == ""
    # tshark's own MPTCP reading: one MPTCP stream, the keys we used, DSS on the data
    fields = subprocess.run(["tshark", "-r", str(path), *TSHARK, "-Y", "mptcp.dss.dsn",
                             "-T", "fields", "-e", "mptcp.stream"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert set(fields) == {"0"}


def test_demo_command_json_and_plot(backend, tmp_path, capsys):
    png = tmp_path / "demo.png"
    status = cli.main(["demo", "--size", "512k", "--path", "50M,10ms", "--path", "20M,20ms,0.1%",
                       "--seed", "3", "--plot", str(png), "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    m = result["multipath"]
    assert m["exact"] is True and m["size"] == 512 * 1024
    assert m["sha256"] == _stream_sha(3, 512 * 1024)
    assert len(m["subflows"]) == 2 and sum(s["bytes"] for s in m["subflows"]) >= 512 * 1024
    assert [a["size"] for a in result["alone"]] == [512 * 1024] * 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_command_text(backend, capsys):
    assert cli.main(["demo", "--size", "256k", "--no-alone", "--scheduler", "round-robin",
                     "--cc", "cubic"]) == 0
    out = capsys.readouterr().out
    assert "byte-exact yes" in out and "subflow 1 198.18.1.1 -> 198.18.0.2" in out
    assert "round-robin" in out and "cubic" in out


@pytest.mark.parametrize("bad", [["--size", "0"], ["--size", "lots"], ["--path", "100M"],
                                 ["--path", "100M,10ms,200%"], ["--cc", "bbr"]])
def test_demo_command_rejects_bad_flags(bad):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", *bad])
    assert exc.value.code == 2


def test_parse_path():
    assert demo.parse_path("100M,10ms") == demo.PathSpec(100e6, 0.010)
    assert demo.parse_path("50Mbit/s, 40ms, 0.05%") == demo.PathSpec(50e6, 0.040, 0.0005)
    assert demo.parse_path("2e7,0.02,0.001") == demo.PathSpec(2e7, 0.02, 0.001)


# -- the precompiled option areas of established subflows (mptcp_fast.wire.established)

from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

from mptcp_fast.wire import packet as pk                     # noqa: E402
from mptcp_fast.wire import established                      # noqa: E402
from mptcp_fast.wire.segment import Incoming, read_segment   # noqa: E402

u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
with_fixture = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@with_fixture
@given(tsval=u32, tsecr=u32, ack=u64, dsn=u64, ssn=u32, length=st.integers(0, 0xFFFF),
       checksum=st.none() | st.integers(0, 0xFFFF))
def test_wire_areas_are_the_codecs_bytes(backend, tsval, tsecr, ack, dsn, ssn, length, checksum):
    data = opt.encode_tcp_options([opt.Timestamps(tsval, tsecr),
                                   opt.Dss(ack, True, dsn, True, ssn, length, checksum)])
    assert established.data_area(tsval, tsecr, ack, dsn, ssn, length, checksum) == data
    assert established.read_common(data, 0, len(data)) == (tsval, tsecr, ack, (dsn, ssn, length, checksum))
    pure_ack = opt.encode_tcp_options([opt.Timestamps(tsval, tsecr), opt.Dss(ack, True)])
    assert established.ack_area(tsval, tsecr, ack) == pure_ack
    assert established.read_common(pure_ack, 0, len(pure_ack)) == (tsval, tsecr, ack, None)


@with_fixture
@given(area=st.binary(min_size=24, max_size=40).map(lambda b: b[:len(b) // 4 * 4]))
def test_read_segment_fast_path_agrees_with_the_codec(backend, area):
    """Whatever the area, the segment read with the fast path holds what the codec reads."""
    packet = pk.build_packet("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, pk.ACK, 5, options=area)
    seg = read_segment(packet)
    try:
        found = opt.parse_tcp_options(area, keep_malformed=True)
    except Exception:   # noqa: BLE001 — a broken area: the segment carries no options then
        found = []
    mptcp = [o for o in found if isinstance(o, opt._MptcpOption)]
    ts = [o for o in found if type(o) is opt.Timestamps]
    assert seg.mptcp == mptcp
    assert (seg.tsval, seg.tsecr) == ((ts[0].tsval, ts[0].tsecr) if ts else (None, None))


@pytest.mark.parametrize("v6", [False, True])
def test_a_verified_read_takes_the_kernels_partial_checksum(backend, v6):
    """A packet the local kernel made with its TCP checksum left to the device
    (CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not the checksum) reads as it is
    when the host vouches for it; without that it is a bad checksum, and a damaged IPv4 header
    is refused either way."""
    from mptcp_fast.wire import segment
    src, dst = ("2001:2::1", "2001:2::2") if v6 else ("198.18.0.1", "198.18.0.2")
    payload = bytes(range(256)) * 6
    packet = bytearray(pk.build_packet(src, dst, 1, 2, 3, 4, pk.ACK, 5, payload=payload))
    where = (40 if v6 else 20) + 16
    packet[where:where + 2] = (int.from_bytes(packet[where:where + 2], "big") ^ 0x5A5A) \
        .to_bytes(2, "big")
    read = segment.reader()
    assert read(bytes(packet), 1) == 6                        # a bad TCP checksum
    seg = read(memoryview(bytes(packet)), 1, True)
    assert not isinstance(seg, int) and seg.payload == payload and seg.seq == 3
    if not v6:
        packet[8] ^= 1                                        # the TTL: the header's sum is off
        assert read(bytes(packet), 1, True) == 5


def test_an_endpoint_answers_a_verified_syn_with_a_partial_checksum(backend):
    """Endpoint.receive_packet(verified=True): the listener answers the kernel's SYN whose
    checksum field holds only the pseudo-header sum; unverified, the SYN is dropped."""
    from mptcp_fast.engine import Endpoint
    syn = bytearray(pk.build_packet("198.18.0.1", "198.18.0.2", 40000, 80, 1000, 0, pk.SYN,
                                    64240, options=opt.encode_tcp_options([opt.Mss(1460)])))
    syn[36:38] = b"\x12\x34"
    for verified, answered in ((False, 0), (True, 1)):
        endpoint = Endpoint(["198.18.0.2"])
        endpoint.listen(80)
        endpoint.receive_packets([bytes(syn)], 0.0, [verified])
        out = endpoint.packets_to_send(0.0)
        assert len(out) == answered
        if answered:
            reply = pk.parse_packet(out[0])
            assert reply.flags == pk.SYN | pk.ACK and reply.ack == 1001
        else:
            assert endpoint.stats["dropped_checksum"] == 1


@pytest.mark.parametrize("area", [
    # Linux's data segment: TS + DSS, 32-bit data ACK, 64-bit DSN, no checksum, NOP NOP
    "0101080a00000001000000021e16200d112233440102030405060708" "0a0b0c0d01000101",
    "0101080a00000001000000021e16200dffffffffffffffffffffffff" "ffffffffffff0101",
    "0101080a00000001000000021e16200d112233440102030405060708" "0a0b0c0d01000100",  # not NOPs
    "0101080a00000001000000021e16201d112233440102030405060708" "0a0b0c0d01000101",  # DATA_FIN
    # Linux's pure ACK: TS + DSS with a 32-bit data ACK
    "0101080a00000001000000021e08200111223344",
    "0101080a00000001000000021e08200311223344",                                    # ack64 bit
])
def test_read_segment_reads_linuxs_layouts_as_the_codec(on_both, area):
    """The layouts the kernel sends most (read by the compiled reader's fast path) give
    what the codec reads, on both twins."""
    area = bytes.fromhex(area)
    packet = pk.build_packet("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, pk.ACK, 5, options=area,
                             payload=b"x" * 256)
    compiled, pure = on_both(lambda: read_segment(packet, 7))
    assert _fields(compiled) == _fields(pure)
    found = opt.parse_tcp_options(area, keep_malformed=True)
    assert compiled.mptcp == [o for o in found if isinstance(o, opt._MptcpOption)]


def _fields(seg):
    return {name: getattr(seg, name) for name in Incoming.FIELDS}   # either twin's


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(area=st.binary(max_size=40), payload=st.binary(max_size=64), cut=st.integers(0, 200),
       flip=st.none() | st.integers(0, 8 * 140 - 1), v6=st.booleans())
def test_read_segment_twins_agree(on_both, area, payload, cut, flip, v6):
    """Both twins give the same Incoming, or the same PacketError, on valid packets, cut ones
    and ones with a flipped bit."""
    area = area[:len(area) // 4 * 4]
    src, dst = ("2001:2::1", "2001:2::2") if v6 else ("198.18.0.1", "198.18.0.2")
    packet = bytearray(pk.build_packet(src, dst, 1, 2, 3, 4, pk.ACK, 5, options=area,
                                       payload=payload))
    if flip is not None and flip // 8 < len(packet):
        packet[flip // 8] ^= 1 << (flip % 8)
    if cut < len(packet) and cut % 3 == 0:
        del packet[cut:]
    data = bytes(packet)
    compiled, pure = on_both(lambda: read_segment(data, 7))
    if isinstance(compiled, tuple) and compiled[0] == "error":
        assert compiled == pure
        assert compiled[1].__name__ == "PacketError"
    else:
        assert _fields(compiled) == _fields(pure)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=u32, ack=u32, window=st.integers(0, 0xFFFF), tsval=u32, tsecr=u32, data_ack=u64,
       dsn=u64, ssn=u32, checksum=st.none() | st.integers(0, 0xFFFF),
       payload=st.binary(max_size=300), cut=st.tuples(st.integers(0, 300), st.integers(0, 300)),
       v6=st.booleans(), psh=st.booleans())
def test_segment_writers_are_build_packet_with_the_codecs_options(on_both, seq, ack, window,
                                                                  tsval, tsecr, data_ack, dsn,
                                                                  ssn, checksum, payload, cut,
                                                                  v6, psh):
    from mptcp_fast.wire import segment
    src, dst = ("2001:2::1", "2001:2::2") if v6 else ("198.18.0.1", "198.18.0.2")
    src_b, dst_b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    start, end = sorted(min(c, len(payload)) for c in cut)
    flags = pk.ACK | (pk.PSH if psh else 0)
    length = len(payload)
    expect = pk.build_packet(src, dst, 1000, 2000, seq, ack, flags, window, options=
                             opt.encode_tcp_options([opt.Timestamps(tsval, tsecr),
                                                     opt.Dss(data_ack, True, dsn, True, ssn,
                                                             length, checksum)]),
                             payload=payload[start:end])
    got = on_both(lambda: segment.data_packet(src_b, dst_b, 1000, 2000, seq, ack, flags, window,
                                              tsval, tsecr, data_ack, dsn, ssn, length, checksum,
                                              payload, start, end))
    assert got == (expect, expect)
    # the same segment in two parts, for a writev: the headers alone, the payload as a view of
    # the caller's bytes (not a copy); joined, the same bytes, checksums included
    parts = on_both(lambda: segment.data_packet_parts(src_b, dst_b, 1000, 2000, seq, ack, flags,
                                                      window, tsval, tsecr, data_ack, dsn, ssn,
                                                      length, checksum, payload, start, end))
    for head, body in parts:
        assert type(head) is bytes and type(body) is memoryview and body.obj is payload
        assert head + bytes(body) == expect and len(head) == len(expect) - (end - start)
    # with the checksum left to the device (CHECKSUM_PARTIAL): the field holds the folded sum
    # of the pseudo-header (RFC 9293 §3.1) alone; completed in software, the same packet
    tcp_at = 20 if not v6 else 40
    tcp_length = len(expect) - tcp_at
    pseudo = sum(int.from_bytes(src_b[i:i + 2], "big") + int.from_bytes(dst_b[i:i + 2], "big")
                 for i in range(0, len(src_b), 2)) + 6 + tcp_length
    while pseudo >> 16:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    partial = on_both(lambda: segment.data_packet_parts(src_b, dst_b, 1000, 2000, seq, ack,
                                                        flags, window, tsval, tsecr, data_ack,
                                                        dsn, ssn, length, checksum, payload,
                                                        start, end, True))
    for head, body in partial:
        assert head[:tcp_at + 16] == expect[:tcp_at + 16]
        assert head[tcp_at + 18:] == expect[tcp_at + 18:len(head)]
        assert int.from_bytes(head[tcp_at + 16:tcp_at + 18], "big") == pseudo
        assert segment.complete_checksum((head, body)) == expect
    expect_ack = pk.build_packet(src, dst, 1000, 2000, seq, ack, pk.ACK, window, options=
                                 opt.encode_tcp_options([opt.Timestamps(tsval, tsecr),
                                                         opt.Dss(data_ack, True)]))
    got = on_both(lambda: segment.ack_packet(src_b, dst_b, 1000, 2000, seq, ack, window, tsval,
                                             tsecr, data_ack))
    assert got == (expect_ack, expect_ack)
    # any other segment: its options area given as bytes (a SYN/ACK's, unaligned)
    area = opt.encode_tcp_options([opt.Mss(1460), opt.SackPermitted(),
                                   opt.Timestamps(tsval, tsecr), opt.NOP, opt.WindowScale(7),
                                   opt.MpCapable(1, opt.MPC_HMAC, data_ack)], align=False)
    syn_flags = pk.SYN | pk.ACK
    expect_syn = pk.build_packet(src, dst, 1000, 2000, seq, ack, syn_flags, window,
                                 options=area, payload=payload[start:end])
    got = on_both(lambda: segment.segment_packet(src_b, dst_b, 1000, 2000, seq, ack, syn_flags,
                                                 window, area, payload[start:end]))
    assert got == (expect_syn, expect_syn)


def test_ipv6_subflows_offer_an_mss_that_fits_the_mtu(backend):
    """An IPv6 header is 20 bytes longer than IPv4's: the SYN offers 1440 and no packet of
    an IPv6 transfer is longer than 1500 bytes (with 1460 the emulator's 1500-byte paths
    dropped every full segment)."""
    client = Endpoint(["2001:2::1"], Config())
    server = Endpoint(["2001:2::2"], Config())
    server.listen(5000)
    conn = client.connect(("2001:2::2", 5000), 0.0)
    conn.send(bytes(100_000), end_stream=True)
    seen = pump(client, server, until=2.0)
    syn = next(p for s, p in seen if s is client)
    assert [o.mss for o in options_of(syn) if type(o) is opt.Mss] == [1440]
    assert max(len(p) for _, p in seen) <= 1500
    got = 0
    while (e := server.next_event()) is not None:
        got += len(getattr(e, "data", b""))
    assert got == 100_000

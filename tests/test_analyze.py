"""The analyzer on synthetic MPTCP conversations (tests/mptcp_trace.py), on both backends:
reinjection, out-of-order and duplicate data-level bytes, fallback to TCP, infinite mappings,
4-tuple reuse, subflows and DSNs past 4 GiB, contradictions, and backend parity on random
traffic. Real kernel traffic is in test_kernel_capture.py."""

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings

from mptcp_fast import analysis
from mptcp_fast.analysis import analyzer as analyze_module
from mptcp_fast.wire.options import Dss
from mptcp_trace import Trace, blob, random_trace
from strategies import trace_ops

C1, S1 = ("198.18.0.1", 40000), ("198.18.0.2", 10000)
C2, S2 = ("198.18.1.1", 40001), ("198.18.1.2", 10000)


def run(trace, tmp_path, name="t.pcap"):
    path = tmp_path / name
    path.write_bytes(trace.pcap())
    return analysis.analyze(str(path))


def two_subflows(addresses=(C1, S1, C2, S2)):
    """A connection on the first address pair and a join on the second: (trace, initial, join)."""
    c1, s1, c2, s2 = addresses
    t = Trace()
    return t, t.connect(c1, s1), t.join(c2, s2)


V6 = [("2001:db8::1", 40000), ("2001:db8::2", 10000), ("2001:db8:1::1", 40001),
      ("2001:db8:1::2", 10000)]


@pytest.mark.parametrize("addresses", [(C1, S1, C2, S2), V6], ids=["ipv4", "ipv6"])
def test_reinjection_out_of_order_and_duplicates(backend, tmp_path, addresses):
    t, a, b = two_subflows(addresses)
    data = blob(6000)
    base = t.next_dsn["up"]
    t.send(a, "up", data[:1000])
    t.send(a, "up", data[1000:2000])
    t.next_dsn["up"] += 4000
    t.send(b, "up", data[4000:5000], dsn=base + 4000)          # ahead of 2000-4000: out of order
    t.send(b, "up", data[2000:4000], dsn=base + 2000)
    t.send(b, "up", data[1000:2000], dsn=base + 1000)          # a's bytes again on b: reinjected
    t.send(a, "up", data[1000:2000], dsn=base + 1000)          # retransmitted on a: duplicate
    t.send(b, "up", data[5000:], dsn=base + 5000)
    t.send(a, "up", b"", dsn=base + 6000, data_fin=True)
    (conn,) = run(t, tmp_path)["connections"]
    up = conn["streams"]["up"]
    assert up["bytes"] == up["data_bytes"] == 6000 and up["complete"]
    assert up["sha256"] == hashlib.sha256(data).hexdigest()
    assert up["out_of_order_bytes"] == 1000
    assert up["duplicate_bytes"] == 2000 and up["reinjected_bytes"] == 1000
    first, joined = conn["subflows"]
    assert first["bytes"]["up"] == 3000 and joined["bytes"]["up"] == 5000
    assert first["reinjected_bytes"]["up"] == 0 and joined["reinjected_bytes"]["up"] == 1000
    assert joined["join_synack_hmac"] == joined["join_ack_hmac"] == "valid"
    assert up["data_fin"] == base + 6000
    assert conn["anomalies"] == [] and conn["fallback"] is None
    host, port = addresses[0]
    assert first["client"] == (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


@pytest.mark.parametrize("addresses", [(C1, S1, C2, S2), V6], ids=["ipv4", "ipv6"])
def test_headers_only_still_counts_data_level_bytes(backend, tmp_path, addresses):
    t, a, b = two_subflows(addresses)
    base = t.next_dsn["up"]
    t.send(a, "up", blob(1400), captured=0)
    t.send(b, "up", blob(1400), captured=0, dsn=base)          # the same DSNs on b
    t.send(a, "up", blob(600), captured=0)
    (conn,) = run(t, tmp_path)["connections"]
    up = conn["streams"]["up"]
    assert (up["bytes"], up["data_bytes"], up["not_captured_bytes"]) == (0, 2000, 3400)
    assert up["reinjected_bytes"] == up["duplicate_bytes"] == 1400 and not up["complete"]


def test_fallback_when_the_syn_ack_has_no_mp_capable(backend, tmp_path):
    t = Trace()
    a = t.connect(C1, S1, mp_capable_reply=False)
    t.packet(a, "up")                                          # the third ACK, plain
    t.packet(a, "up", payload=b"GET / HTTP/1.0\r\n\r\n")
    a.sent["up"] += 18
    t.packet(a, "down", payload=b"HTTP/1.0 200 OK\r\n")
    a.sent["down"] += 17
    (conn,) = run(t, tmp_path)["connections"]
    assert conn["fallback"].startswith("packet 2: the SYN/ACK carries no MP_CAPABLE")
    assert conn["streams"]["up"]["sha256"] == hashlib.sha256(b"GET / HTTP/1.0\r\n\r\n").hexdigest()
    assert conn["streams"]["down"]["bytes"] == 17
    assert any(e["event"].startswith("fallback to TCP") for e in conn["events"])


def test_fallback_when_data_comes_without_a_mapping(backend, tmp_path):
    t = Trace()
    a = t.connect(C1, S1)
    t.send(a, "up", b"mapped")
    t.send(a, "down", b"plain tcp from here", mapping=False)
    t.send(a, "down", b" and on", mapping=False)
    (conn,) = run(t, tmp_path)["connections"]
    assert "data without a DSS mapping" in conn["fallback"]
    down = conn["streams"]["down"]
    assert down["sha256"] == hashlib.sha256(b"plain tcp from here and on").hexdigest()
    assert conn["streams"]["up"]["bytes"] == 6 and conn["anomalies"] == []


def test_infinite_mapping_is_an_event_and_maps_what_follows(backend, tmp_path):
    t = Trace()
    a = t.connect(C1, S1)
    t.send(a, "up", b"0123456789")
    dsn = t.next_dsn["up"]
    number = t.packet(a, "up", [Dss(dsn=dsn, dsn64=True, subflow_seq=11, data_len=0)], b"abc")
    a.sent["up"] += 3
    t.packet(a, "up", payload=b"defg")                       # no DSS any more
    (conn,) = run(t, tmp_path)["connections"]
    assert {"packet": number, "event": "infinite mapping (fallback)"} in conn["events"]
    assert conn["streams"]["up"]["sha256"] == hashlib.sha256(b"0123456789abcdefg").hexdigest()
    assert conn["anomalies"] == []


def test_a_later_connection_on_the_same_four_tuple(backend, tmp_path):
    t = Trace()
    a = t.connect(C1, S1)
    t.send(a, "up", b"first connection")
    t.packet(a, "up", flags=0x11)                              # FIN
    t2 = Trace(client_key=0x1111, server_key=0x2222)
    t2.packets = t.packets                                     # one file, same 4-tuple
    b = t2.connect(C1, S1, isn_up=777777, isn_down=888888)
    t2.send(b, "up", b"second connection")
    report = run(t2, tmp_path)
    first, second = report["connections"]
    assert first["streams"]["up"]["sha256"] == hashlib.sha256(b"first connection").hexdigest()
    assert second["streams"]["up"]["sha256"] == hashlib.sha256(b"second connection").hexdigest()
    assert second["client_key"] == "0000000000001111" and second["anomalies"] == []


def test_contradicting_mappings_and_unmapped_bytes_are_anomalies(backend, tmp_path):
    t = Trace()
    a = t.connect(C1, S1)
    base = t.next_dsn["up"]
    t.send(a, "up", b"x" * 10)
    a.sent["up"] = 0
    n1 = t.send(a, "up", b"x" * 10, dsn=base + 5)              # same subflow bytes, other DSNs
    n2 = t.send(a, "up", b"y" * 10, mapping=False)             # past every mapping
    (conn,) = run(t, tmp_path)["connections"]
    assert any(a.startswith(f"packet {n1}: Mapping(") and "contradicts" in a
               for a in conn["anomalies"])
    assert f"packet {n2}: subflow bytes from 11 have no mapping" in conn["anomalies"]


def test_checksum_failure_names_the_packets_of_the_mapping(backend, tmp_path):
    t = Trace(checksum=True)
    a = t.connect(C1, S1)
    t.send(a, "up", blob(500))
    bad = t.send(a, "up", blob(300, 1), bad_checksum=True)
    (conn,) = run(t, tmp_path)["connections"]
    assert conn["checksums"] and conn["checksum_failures"] == [[bad]]
    assert conn["subflows"][0]["unverified_checksums"] == 0


def test_subflow_and_dsn_past_four_gib(backend, tmp_path):
    """Headers-only segments of 32 500 bytes, one 32-bit DSS mapping per two: relative subflow
    sequence numbers and DSNs expand past 2**32 (Linux's __mptcp_expand_seq), so the segment after the wrap
    still finds the mapping declared before it, and nothing is unmapped or counted twice."""
    t = Trace()
    a = t.connect(C1, S1, isn_up=0xFFFF0000)
    half, count = 32500, (1 << 32) // 65000 + 20
    for _ in range(count):
        dsn = t.next_dsn["up"]
        t.next_dsn["up"] += 2 * half
        ssn = a.sent["up"] + 1
        opts = [Dss(data_ack=0, ack64=False, dsn=dsn & 0xFFFFFFFF, dsn64=False,
                    subflow_seq=ssn & 0xFFFFFFFF, data_len=2 * half)]
        t.packet(a, "up", opts, ip_len=20 + 20 + 20 + half)
        a.sent["up"] += half
        t.packet(a, "up", [], ip_len=20 + 20 + half)
        a.sent["up"] += half
    (conn,) = run(t, tmp_path)["connections"]
    up = conn["streams"]["up"]
    assert conn["anomalies"] == []
    assert up["data_bytes"] == up["not_captured_bytes"] == count * 2 * half > 1 << 32
    assert up["out_of_order_bytes"] == up["duplicate_bytes"] == 0


def test_connection_of_finds_a_four_tuple(backend, tmp_path):
    t = Trace()
    t.connect(C1, S1)
    path = tmp_path / "c.pcap"
    path.write_bytes(t.pcap())
    analyzer = analyze_module.Analyzer()
    from mptcp_fast.analysis import capture
    with capture.open_capture(str(path)) as reader:
        for cols in reader.columns():
            analyzer.feed_columns(cols)
    ip = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    assert analyzer.connection_of(ip[1], 10000, ip[0], 40000) == 1
    assert analyzer.connection_of(ip[1], 10001, ip[0], 40000) is None


# -- backend parity on random traffic ------------------------------------------------------------

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=trace_ops)
def test_backends_give_the_same_report_on_random_traffic(on_both, tmp_path_factory, drawn):
    path = tmp_path_factory.mktemp("parity") / "r.pcap"
    path.write_bytes(random_trace(drawn).pcap())
    compiled, pure = on_both(lambda: analysis.analyze(str(path)))
    assert compiled == pure
    assert not (isinstance(compiled, tuple) and compiled[0] == "error"), compiled


def test_the_terminal_report_shows_fallback_reinjection_and_counts(backend, tmp_path, capsys):
    from mptcp_fast.cli import main as cli
    t, a, b = two_subflows()
    base = t.next_dsn["up"]
    t.send(a, "up", blob(800))
    t.send(b, "up", blob(800), dsn=base)                      # reinjected on the join
    t.send(a, "down", b"no mapping", mapping=False)           # the server falls back
    path = tmp_path / "r.pcap"
    path.write_bytes(t.pcap())
    assert cli.main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "FALLBACK to TCP at packet 9: data without a DSS mapping" in out
    assert "reinjected up 800, down 0" in out
    assert ("stream client -> server: 800 data-level bytes seen, INCOMPLETE; rebuilt 800 bytes, "
            f"sha256 {hashlib.sha256(blob(800)).hexdigest()}; out of order 0, duplicate 800, "
            "reinjected 800") in out
    assert "event packet 9: fallback to TCP: data without a DSS mapping" in out


def test_ipv4_and_ipv6_flows_with_the_same_bytes_stay_apart(backend, tmp_path):
    """198.18.0.1 is c6 12 00 01; the IPv6 address c612:1:: starts with the same bytes."""
    t = Trace()
    four = t.connect(C1, S1)
    t6 = Trace(client_key=0x77, server_key=0x88)
    t6.packets = t.packets
    six = t6.connect(("c612:1::", C1[1]), ("c612:2::", S1[1]), isn_up=4242, isn_down=2424)
    t.send(four, "up", b"over IPv4")
    t6.send(six, "up", b"over IPv6")
    first, second = run(t, tmp_path)["connections"]
    assert first["streams"]["up"]["sha256"] == hashlib.sha256(b"over IPv4").hexdigest()
    assert second["streams"]["up"]["sha256"] == hashlib.sha256(b"over IPv6").hexdigest()


@pytest.mark.parametrize("bad", [False, True], ids=["good", "bad"])
def test_a_checksummed_mapping_over_segments_out_of_order(backend, tmp_path, bad):
    """One 3000-byte mapping carried by four segments out of order, one overlapping two
    others: its checksum is checked once every byte is in (RFC 8684 §3.3.1), and a failure
    names all four packets."""
    from mptcp_fast.wire import dss
    t = Trace(checksum=True)
    a = t.connect(C1, S1)
    data = blob(3000)
    dsn = t.next_dsn["up"]
    mapping = Dss(dsn=dsn, dsn64=True, subflow_seq=1, data_len=3000,
                  checksum=dss.dss_checksum(dsn, 1, 3000, data) ^ bad)
    numbers = [t.packet(a, "up", [mapping], data[lo:hi], seq=a.isn["up"] + 1 + lo)
               for lo, hi in ((0, 1000), (2000, 3000), (500, 1500), (1000, 2000))]
    (conn,) = run(t, tmp_path)["connections"]
    up = conn["streams"]["up"]
    assert up["sha256"] == hashlib.sha256(data).hexdigest() and up["duplicate_bytes"] == 1000
    assert conn["checksum_failures"] == ([sorted(numbers)] if bad else [])
    assert conn["subflows"][0]["unverified_checksums"] == 0


def test_tracker_counters_and_events_are_named(backend, tmp_path):
    """The tracker hands back dataclasses, not tuples: per-direction subflow counters, stream
    counters, and anomalies as TrackerEvent (here a checksum failure naming its packet)."""
    t = Trace(checksum=True)
    flow = t.connect(C1, S1)
    t.send(flow, "up", blob(300))
    bad = t.send(flow, "up", blob(200, 3), bad_checksum=True)
    path = tmp_path / "named.pcap"
    path.write_bytes(t.pcap())
    analyzer = analyze_module.Analyzer()
    events = []
    real_take = analyzer._take_tracker_events

    def take():
        events.extend(analyzer.tracker.events)
        real_take()
    analyzer._take_tracker_events = take
    from mptcp_fast.analysis import capture
    with capture.open_capture(str(path)) as reader:
        for cols in reader.columns():
            analyzer.feed_columns(cols)
    up, down = analyzer.tracker.subflow_counters(0)
    assert isinstance(up, analyze_module.DirectionCounters)
    assert (up.bytes, up.reinjected_bytes, up.unverified_checksums, down.bytes) == (500, 0, 0, 0)
    stream = analyzer.tracker.stream_counters(0)
    assert isinstance(stream, analyze_module.StreamCounters)
    assert (stream.data_bytes, stream.out_of_order_bytes, stream.all_seen) == (500, 0, False)
    (event,) = events
    assert isinstance(event, analyze_module.TrackerEvent)
    assert (event.packet, event.subflow, event.packets) == (bad, 0, (bad,))
    assert event.text.startswith("DSS checksum failure for the mapping at DSN")


# -- bytes the capture never had: gaps ---------------------------------------------------------

def _pieces_of(data: bytes, ranges) -> list:
    return [data[a:b] for a, b in ranges]


def test_holes_at_the_start_and_in_the_middle_are_gaps_and_the_stream_goes_on(
        backend, tmp_path, capsys):
    """The capture misses the stream's first 1,000 bytes (keys known: the stream starts at
    IDSN + 1) and 500 in the middle: both are gaps with their DSNs and lengths, the stream is
    rebuilt past them (holes left out), hashed whole and piece by piece, and dumped with an
    index of its pieces and gaps; the text says the same, and lists them as anomalies."""
    from mptcp_fast.cli import main as cli
    t, a, b = two_subflows()
    data = blob(5000, 3)
    first = t.next_dsn["up"]
    t.skip("up", 1000)                                  # never captured
    t.send(a, "up", data[1000:3000])
    t.skip("up", 500)
    t.send(b, "up", data[3500:])
    t.send(a, "up", b"", data_fin=True)
    path = tmp_path / "gaps.pcap"
    path.write_bytes(t.pcap())
    report = analysis.analyze(str(path), dump_dir=str(tmp_path))
    (conn,) = report["connections"]
    up = conn["streams"]["up"]
    pieces = _pieces_of(data, [(1000, 3000), (3500, 5000)])
    assert up["gaps"] == [{"dsn": first, "stream_offset": 0, "bytes": 1000},
                          {"dsn": first + 3000, "stream_offset": 3000, "bytes": 500}]
    assert (up["gap_count"], up["missing_bytes"], up["bytes"], up["data_bytes"]) == (
        2, 1500, 3500, 3500)
    assert up["pieces"] == [
        {"dsn": first + 1000, "stream_offset": 1000, "file_offset": 0, "bytes": 2000,
         "sha256": hashlib.sha256(pieces[0]).hexdigest()},
        {"dsn": first + 3500, "stream_offset": 3500, "file_offset": 2000, "bytes": 1500,
         "sha256": hashlib.sha256(pieces[1]).hexdigest()}]
    assert up["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert not up["complete"] and up["data_fin"] == first + 5000
    assert up["out_of_order_bytes"] == 3500             # as they came (passed at the end)
    assert (tmp_path / "connection1-up.bin").read_bytes() == b"".join(pieces)
    index = [json.loads(line) for line in
             (tmp_path / "connection1-up.index.jsonl").read_text().splitlines()]
    assert index == [{"kind": "gap", **up["gaps"][0]}, {"kind": "piece", **up["pieces"][0]},
                     {"kind": "gap", **up["gaps"][1]}, {"kind": "piece", **up["pieces"][1]}]
    assert conn["anomalies"] == [
        f"stream up (client -> server): 1,500 bytes in 2 gaps never seen in the capture, the "
        f"first at DSN {first}"]
    down = conn["streams"]["down"]
    assert down["gaps"] == [] and down["pieces"] == [] and down["gap_count"] == 0
    assert cli.main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("stream client -> server: 3,500 data-level bytes seen, INCOMPLETE; 1,500 bytes "
            "MISSING in 2 gaps (never in the capture); rebuilt 3,500 bytes in 2 pieces, the "
            "gaps left out (sha256 of the pieces joined; each piece's in the JSON), sha256 "
            f"{up['sha256']}; out of order 3,500") in out
    assert f"      gap at DSN {first} (0 bytes after the stream's first byte): 1,000 bytes\n" in out
    assert (f"      gap at DSN {first + 3000} (3,000 bytes after the stream's first byte): "
            "500 bytes\n") in out
    assert "  anomalies: \n    stream up (client -> server): 1,500 bytes in 2 gaps" in out


def test_a_hole_waits_for_a_retransmission_until_the_data_ack_passes_it(backend, tmp_path):
    """A byte missing at one point may come later (a retransmission): the hole is not a gap
    while nothing says it is. Once the receiver's DATA_ACK went past it, it is one: bytes that
    still come are late, counted, and not put into the rebuilt stream."""
    data = blob(3000, 5)
    reports, base = [], Trace().next_dsn["up"]
    for ack_first in (False, True):
        t, a, b = two_subflows()
        t.skip("up", 1000)
        t.send(a, "up", data[1000:2000])
        if ack_first:
            t.data_ack(a, "down", base + 2000)          # the server had [0, 2000)
        t.send(b, "up", data[:1000], dsn=base)          # ... and here they come
        t.send(b, "up", data[2000:], dsn=base + 2000)
        reports.append(run(t, tmp_path, f"r{ack_first}.pcap")["connections"][0]["streams"]["up"])
    filled, passed = reports
    assert filled["gaps"] == [] and filled["bytes"] == 3000 and filled["late_bytes"] == 0
    assert filled["sha256"] == hashlib.sha256(data).hexdigest()
    assert passed["gaps"] == [{"dsn": base, "stream_offset": 0, "bytes": 1000}]
    assert (passed["late_bytes"], passed["bytes"], passed["data_bytes"]) == (1000, 2000, 3000)
    assert passed["sha256"] == hashlib.sha256(data[1000:]).hexdigest()


def test_conflicting_bytes_are_anomalies(backend, tmp_path):
    """Bytes that differ from an earlier copy at the same DSNs: flagged on the stream's line
    (CONFLICTING) and listed with the anomalies."""
    t, a, b = two_subflows()
    data = blob(2000, 1)
    base = t.next_dsn["up"]
    t.send(a, "up", data[1000:], dsn=base + 1000)              # ahead of a hole: queued
    t.send(b, "up", bytes(1000), dsn=base + 1000)              # the same DSNs, other bytes
    t.send(a, "up", data[:1000], dsn=base)
    (conn,) = run(t, tmp_path)["connections"]
    up = conn["streams"]["up"]
    assert up["conflict_bytes"] == 1000 and up["sha256"] == hashlib.sha256(data).hexdigest()
    assert conn["anomalies"] == [
        "stream up (client -> server): 1,000 bytes differ from an earlier copy at the same "
        f"DSNs (CONFLICTING), the first at DSN {base + 1000}"]


def test_what_the_capture_did_not_show_prints_as_not_seen(backend, tmp_path, capsys):
    """A connection found without its handshakes: its keys, tokens and address ids print as
    "not seen" (null in the JSON), never as None."""
    from mptcp_fast.cli import main as cli
    from mptcp_trace import Flow
    t = Trace()
    flow = Flow(C1, S1, {"up": 1000, "down": 5000})       # no SYN, no MP_CAPABLE
    t.send(flow, "up", blob(500))
    t.send(flow, "down", blob(300))
    t.data_ack(flow, "up", t.next_dsn["down"])
    t.data_ack(flow, "down", t.next_dsn["up"])
    path = tmp_path / "mid.pcap"
    path.write_bytes(t.pcap())
    (conn,) = analysis.analyze(str(path))["connections"]
    assert conn["placed"].startswith("without handshakes")
    assert [conn[k] for k in ("client_key", "server_key", "client_token", "server_token")] == \
        [None] * 4
    (sub,) = conn["subflows"]
    assert (sub["client_address_id"], sub["server_address_id"]) == (None, None)
    assert cli.main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  client key not seen, server key not seen\n" in out
    assert f"  subflow 1: {C1[0]}:{C1[1]} -> {S1[0]}:{S1[1]}  address ids not seen/not seen" in out
    assert "None" not in out

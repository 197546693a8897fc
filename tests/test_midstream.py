"""Captures that start after the handshakes: subflows grouped into connections by
their shared data sequence space, ISNs placed from DSS mappings, streams rebuilt from the
first data-level byte seen. First on the engine's own traffic cut short (any machine), then
on a real kernel capture started mid-transfer (root)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies

import capture_oracle
from enginenet import C0, C1, PORT, S0
from mptcp_fast import analysis
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE
from mptcp_fast.testing import kernel_capture
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.apps import BulkApp, pattern
from mptcp_fast.sim.netem import Network

MB = 1 << 20


def _cut(src, dst, first_kept: int) -> None:
    """``src`` without its first ``first_kept`` packets."""
    header, records = capture_oracle.pcap_records(src)
    with open(dst, "wb") as f:
        f.write(header)
        f.writelines(records[first_kept:])


def _stream(seed: int, size: int) -> bytes:
    block = pattern(seed)[:len(pattern(seed)) // 2]
    return (block * (size // len(block) + 1))[:size]


def _two_connections(full, clients, server_address):
    """Two connections of two subflows each (3 MB up, 1 MB down), captured into ``full``."""
    net = Network(seed=3, pcap=str(full))
    config = Config(time_wait=0.5)
    client = BulkApp(Endpoint(clients, config), send_bytes=3 * MB, seed=1)
    server = BulkApp(Endpoint([server_address], config), send_bytes=MB, seed=2)
    server.endpoint.listen(PORT)
    net.add_host(client, clients)
    net.add_host(server, [server_address])
    for a in clients:
        net.add_path(a, server_address, rate=100e6, delay=0.005)
    conns = [client.open((server_address, PORT), 0.0) for _ in range(2)]
    net.run(until=60.0, stop=lambda: len(server.transfers) == 2 and all(
        t.done for app in (client, server) for t in app.transfers.values()))
    net.close()
    return conns


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_engine_capture_cut_after_the_handshakes(tmp_path, backend, family):
    """Two connections of two subflows each, the capture cut after its first 2,000 packets
    (every SYN and a good part of the data gone): both connections found with both subflows,
    each direction rebuilt byte-exact from its first byte seen to the DATA_FIN, and said so.
    Where the cut fell between two subflows, bytes one of them sent before it lie above the
    first byte the other sent after it: those are gaps, exactly the holes that the DSN
    ranges of the packets kept leave (capture_oracle, which reads them without the
    analyzer), and a stream is complete only without them."""
    full, cut = tmp_path / "full.pcap", tmp_path / "cut.pcap"
    clients, server_address = ([C0, C1], S0) if family == "ipv4" else \
        (["2001:2::1", "2001:2:0:1::1"], "2001:2::2")
    conns = _two_connections(full, clients, server_address)
    _cut(full, cut, 2000)
    report = analysis.analyze(str(cut), dump_dir=str(tmp_path))
    assert len(report["connections"]) == 2
    seen = capture_oracle.dsn_ranges(cut, capture_oracle.isns(full))
    sent = {"up": _stream(1, 3 * MB), "down": _stream(2, MB)}
    for c in report["connections"]:
        assert c["placed"].startswith("without handshakes")
        assert len(c["subflows"]) == 2
        assert {s["client"].rpartition(":")[0].strip("[]") for s in c["subflows"]} == \
            set(clients)
        assert all(not s["handshake_seen"] for s in c["subflows"])
        for name in ("up", "down"):
            st = c["streams"][name]
            assert st["start_missing"] and st["data_fin"] is not None
            ranges = [r for s in c["subflows"]
                      for r in seen.get((s["client"], s["server"], name), [])]
            start = st["start_dsn"]      # from the first byte seen: the DATA_FIN ends the stream
            origin = len(sent[name]) - (st["data_fin"] - start) % 2**64
            assert 0 <= origin < len(sent[name])
            capture_oracle.check_stream(st, ranges, start, sent[name], origin,
                                        tmp_path / f"connection{c['connection']}-{name}.bin")
    assert sum(len(open(tmp_path / f"connection{c['connection']}-up.bin", "rb").read())
               for c in report["connections"]) < 2 * 3 * MB     # the cut took some data
    assert {c.id for c in conns} == {0, 1}


def _dsn_to_32_bits(record: bytes) -> bytes:
    """A pcap record whose DSS mapping, if it has a 64-bit DSN, carries only the low 32 bits
    (RFC 8684 §3.3: the 'm' flag clear), the 4 bytes saved as NOPs at the end of the options
    and the TCP checksum fixed."""
    from mptcp_fast.testing.testbed import find_mptcp_option, fix_tcp_checksum
    packet = bytearray(record[16:])
    at = find_mptcp_option(packet, 2)
    if at is None or not packet[at + 3] & 0x04 or not packet[at + 3] & 0x08:
        return record
    ip_len = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    options_end = ip_len + (packet[ip_len + 12] >> 4) * 4
    size = packet[at + 1]
    dsn_at = at + 4 + ((8 if packet[at + 3] & 0x02 else 4) if packet[at + 3] & 0x01 else 0)
    option = packet[at:dsn_at] + packet[dsn_at + 4:at + size]
    option[1] = size - 4
    option[3] &= ~0x08 & 0xFF
    packet[at:options_end] = option + packet[at + size:options_end] + b"\x01" * 4
    return record[:16] + bytes(fix_tcp_checksum(packet))


def test_32_bit_dsns_are_expanded_against_the_data_acks(tmp_path):
    """Every mapping rewritten to a 32-bit DSN (the DATA_ACKs stay 64-bit, as Linux sends
    them): the connections are still found, and the streams rebuilt exactly as before."""
    full, cut, short = tmp_path / "full.pcap", tmp_path / "cut.pcap", tmp_path / "short.pcap"
    _two_connections(full, [C0, C1], S0)
    _cut(full, cut, 2000)
    header, records = capture_oracle.pcap_records(cut)
    with open(short, "wb") as f:
        f.write(header)
        f.writelines(_dsn_to_32_bits(r) for r in records)
    before = analysis.analyze(str(cut))
    after = analysis.analyze(str(short))
    assert len(after["connections"]) == 2
    for a, b in zip(before["connections"], after["connections"]):
        for name in ("up", "down"):
            assert (a["streams"][name]["sha256"], a["streams"][name]["bytes"],
                    a["streams"][name]["start_dsn"]) == \
                (b["streams"][name]["sha256"], b["streams"][name]["bytes"],
                 b["streams"][name]["start_dsn"])
            assert (a["streams"][name]["complete"], a["streams"][name]["gaps"]) == \
                (b["streams"][name]["complete"], b["streams"][name]["gaps"])


def test_packets_lost_by_the_capturing_host_are_gaps_and_the_rest_is_rebuilt(tmp_path, backend):
    """Cut after the handshakes and every 40th packet after that missing (as when tcpdump
    drops): each stream's gaps are exactly the DSN ranges no captured packet carried (read
    from the packets' own mappings, capture_oracle), the pieces between them the stream's
    bytes at their places (dumped with the holes left out), and the rebuilt and the missing
    bytes add up to the stream from its first byte seen to its DATA_FIN."""
    full, cut = tmp_path / "full.pcap", tmp_path / "cut.pcap"
    _two_connections(full, [C0, C1], S0)
    header, records = capture_oracle.pcap_records(full)
    with open(cut, "wb") as f:
        f.write(header)
        f.writelines(r for i, r in enumerate(records[2000:]) if i % 40 != 39)
    report = analysis.analyze(str(cut), dump_dir=str(tmp_path))
    seen = capture_oracle.dsn_ranges(cut, capture_oracle.isns(full))
    assert len(report["connections"]) == 2
    for c in report["connections"]:
        for name, whole in (("up", _stream(1, 3 * MB)), ("down", _stream(2, MB))):
            st = c["streams"][name]
            ranges = [r for s in c["subflows"]
                      for r in seen.get((s["client"], s["server"], name), [])]
            start, span = st["start_dsn"], (st["data_fin"] - st["start_dsn"]) % 2**64
            capture_oracle.check_stream(st, ranges, start, whole, len(whole) - span,
                                        tmp_path / f"connection{c['connection']}-{name}.bin")
            assert st["gap_count"] > 0 and not st["complete"]        # every 40th packet


def test_a_capture_with_handshakes_is_placed_as_before(tmp_path):
    """The survey pass runs only for flows the first pass could not place."""
    report = analysis.analyze(SHIPPED_CAPTURE)
    assert len(report["connections"]) == 1
    assert all(c["placed"] == "handshake" for c in report["connections"])
    assert all(not c["streams"][d]["start_missing"] for c in report["connections"]
               for d in ("up", "down"))


@pytest.mark.requires("root", "iproute2", "tcpdump", "kernel_mptcp")
def test_kernel_capture_started_mid_transfer(tmp_path):
    """Linux 6.18, three subflows, checksums on, tcpdump started after 600 kB of the upload:
    one connection with its three subflows; the upload rebuilt byte-exact from its first byte
    seen (a suffix of what the client sent), the download whole (its SHA-256 as the client
    read it), every DSS checksum verified."""
    path = str(tmp_path / "mid.pcap")
    result = kernel_capture.make_capture(path, upload=2_000_000, download=500_000,
                                         checksum=True, offload=False, start_after=600_000)
    report = analysis.analyze(path, dump_dir=str(tmp_path))
    (c,) = report["connections"]
    assert c["placed"].startswith("without handshakes") and c["checksums"]
    assert len(c["subflows"]) == 3
    assert {s["server"] for s in c["subflows"]} >= {"198.18.1.1:10000", "198.18.2.1:10000"}
    with open(tmp_path / "connection1-up.bin", "rb") as f:
        up = f.read()
    sent = kernel_capture.upload_stream(result.seed, result.upload_bytes)
    assert len(up) >= 2_000_000 - 600_000 - (1 << 16) and up == sent[-len(up):]
    assert c["streams"]["down"]["sha256"] == result.download_sha256
    assert c["streams"]["up"]["complete"] and c["streams"]["down"]["complete"]
    assert not c["checksum_failures"] and not c["anomalies"]
    assert all(s["unverified_checksums"] == 0 for s in c["subflows"])
    # the same file through a pipe (tcpdump -w - | mptcp-fast analyze -): the same report
    with open(path, "rb") as f:
        piped = subprocess.run([sys.executable, "-m", "mptcp_fast", "analyze", "-", "--json"],
                               stdin=f, capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    direct = analysis.analyze(path)
    assert json.loads(piped.stdout)["connections"] == json.loads(json.dumps(
        direct["connections"]))


def test_mp_fastclose_reveals_the_key_in_a_capture_without_handshakes(tmp_path, backend):
    """RFC 8684 §3.5: MP_FASTCLOSE carries the receiver's key. The client aborts mid-transfer;
    in the capture cut after the handshakes the server's key and token are learnt from it."""
    full, cut = tmp_path / "full.pcap", tmp_path / "cut.pcap"
    net = Network(seed=4, pcap=str(full))
    config = Config(time_wait=0.5)
    client = BulkApp(Endpoint([C0, C1], config), send_bytes=8 * MB, seed=1)
    server = BulkApp(Endpoint([S0], config), send_bytes=0, seed=2)
    server.endpoint.listen(PORT)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    for a in (C0, C1):
        net.add_path(a, S0, rate=100e6, delay=0.005)
    conn = client.open((S0, PORT), 0.0)
    net.run(until=5.0, stop=lambda: server.transfers and
            next(iter(server.transfers.values())).received > MB)
    server_conn = next(iter(server.transfers.values())).conn
    conn.abort(net.now)
    client.endpoint.touch(conn)
    net.wake(client)
    net.run(until=net.now + 2.0)
    net.close()
    _cut(full, cut, 300)
    (c,) = analysis.analyze(str(cut))["connections"]
    assert c["placed"].startswith("without handshakes")
    assert c["server_key"] == f"{server_conn.local_key:016x}"
    assert c["server_token"] == f"{server_conn.local_token:08x}"
    assert any("MP_FASTCLOSE" in e["event"] for e in c["events"])


@pytest.mark.requires("root", "iproute2", "tcpdump", "kernel_mptcp")
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_kernel_capture_of_two_connections_started_mid_transfer(tmp_path, ipv6):
    """Two kernel connections at once (ports 10000 and 10001), tcpdump started after 400 kB of
    each upload, IPv4 and IPv6: each connection found with its subflows (none shared), each
    upload a byte-exact suffix of what its client sent, each download whole."""
    path = str(tmp_path / "two.pcap")
    result = kernel_capture.make_capture(path, upload=1_500_000, download=400_000,
                                         checksum=True, offload=False, start_after=400_000,
                                         connections=2, ipv6=ipv6)
    report = analysis.analyze(path, dump_dir=str(tmp_path))
    assert len(report["connections"]) == 2
    by_port = {t.port: t for t in result.transfers}
    seen_ports = set()
    for c in report["connections"]:
        ports = {int(s["server"].rpartition(":")[2]) for s in c["subflows"]}
        assert len(ports) == 1 and len(c["subflows"]) >= 2       # one connection's subflows
        (port,) = ports
        seen_ports.add(port)
        transfer = by_port[port]
        with open(tmp_path / f"connection{c['connection']}-up.bin", "rb") as f:
            up = f.read()
        sent = kernel_capture.upload_stream(transfer.upload_seed, transfer.upload_bytes)
        assert len(up) >= 1_500_000 - 400_000 - (1 << 16) and up == sent[-len(up):]
        assert c["streams"]["down"]["sha256"] == transfer.download_sha256
        assert c["streams"]["up"]["complete"] and not c["checksum_failures"]
        if ipv6:
            assert all(s["client"].startswith("[2001:2:") for s in c["subflows"])
    assert seen_ports == {10000, 10001}


@settings(max_examples=200, deadline=None)
@given(strategies.data())
def test_packets_are_grouped_by_direction_as_unique_rows_would_be(data):
    """capture.group_directions against np.unique over the 36-byte keys (addresses, then
    ports big-endian): the same groups, in the same order, with the same first packets."""
    import numpy as np
    from mptcp_fast.analysis import capture
    flows = data.draw(strategies.integers(1, 8))
    # addresses from a small alphabet, so that flows share prefixes and suffixes
    address = strategies.lists(strategies.sampled_from([0, 1, 255]), min_size=16, max_size=16)
    ends = [[data.draw(address), data.draw(address)] for _ in range(flows)]
    ports = [[data.draw(strategies.sampled_from([0, 1, 256, 65535])) for _ in range(2)]
             for _ in range(flows)]
    which = data.draw(strategies.lists(strategies.integers(0, flows - 1), max_size=200))
    picked = data.draw(strategies.lists(strategies.booleans(), min_size=len(which),
                                        max_size=len(which)))
    cols = {"src": np.array([ends[w][0] for w in which], dtype=np.uint8).reshape(-1, 16),
            "dst": np.array([ends[w][1] for w in which], dtype=np.uint8).reshape(-1, 16),
            "sport": np.array([ports[w][0] for w in which], dtype=np.uint16),
            "dport": np.array([ports[w][1] for w in which], dtype=np.uint16)}
    rows = np.nonzero(np.array(picked, dtype=bool))[0]
    first, inverse = capture.group_directions(cols, rows)
    if not len(rows):
        assert len(first) == len(inverse) == 0
        return
    keys = np.concatenate([cols["src"][rows], cols["dst"][rows],
                           cols["sport"][rows].astype(">u2").view(np.uint8).reshape(-1, 2),
                           cols["dport"][rows].astype(">u2").view(np.uint8).reshape(-1, 2)],
                          axis=1)
    _, want_first, want_inverse = np.unique(keys, axis=0, return_index=True,
                                            return_inverse=True)
    assert first.tolist() == want_first.tolist()
    assert inverse.tolist() == want_inverse.reshape(-1).tolist()


def _dss_batch(rows):
    """A batch of capture columns (as CaptureReader.columns gives them) of one flow,
    198.18.0.1:40000 (the client) <-> 198.18.0.2:80, from rows of (direction, DSN of a
    mapping or None, its length, DATA_ACK or None); every mapping's first byte at subflow
    byte 1000 + its DSN's offset, the client's ISN 5000, the server's 9000."""
    import numpy as np
    n = len(rows)
    cols = {"family": np.full(n, 4, np.uint8), "flags": np.full(n, 0x10, np.uint8),
            "src": np.zeros((n, 16), np.uint8), "dst": np.zeros((n, 16), np.uint8),
            "sport": np.zeros(n, np.uint16), "dport": np.zeros(n, np.uint16),
            "seq": np.zeros(n, np.uint32), "dss_ssn": np.zeros(n, np.uint32),
            "dsn": np.zeros(n, np.uint64), "data_ack": np.zeros(n, np.uint64),
            "dss_flags": np.zeros(n, np.uint8), "dss_checksum": np.full(n, -1, np.int32),
            "dss_len": np.zeros(n, np.uint16), "payload_len": np.zeros(n, np.uint32)}
    client, server = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    for i, (up, dsn, length, ack) in enumerate(rows):
        cols["src"][i, :4] = list(client if up else server)
        cols["dst"][i, :4] = list(server if up else client)
        cols["sport"][i], cols["dport"][i] = (40000, 80) if up else (80, 40000)
        if dsn is not None:
            ssn = 1000 + dsn % 100_000
            cols["dsn"][i], cols["dss_len"][i], cols["payload_len"][i] = dsn, length, length
            cols["dss_ssn"][i], cols["seq"][i] = ssn, (5000 if up else 9000) + ssn
            cols["dss_flags"][i] |= 4 | 8                   # a 64-bit mapping
        if ack is not None:
            cols["data_ack"][i] = ack
            cols["dss_flags"][i] |= 1 | 2                   # a 64-bit DATA_ACK
    return cols


@pytest.mark.parametrize("split", [False, True])
def test_a_one_byte_mapping_below_every_data_ack_does_not_start_the_stream(split):
    """Where the survey starts a stream without handshakes: a one-byte mapping below every
    DATA_ACK the capture holds for it is left out, the stream begins after it. That is
    Linux's zero-window probe (one byte at snd_una - 1 carrying the next byte): whether the
    capture caught an ACK before it or began at it, with more probes or one. Headers alone do
    not tell it from a one-byte write acknowledged after it (a keystroke): that byte is left
    before the stream's start too, the one error of the two that puts no wrong byte in the
    stream (a probe taken as the first byte would). Whether or not the DATA_ACK and the
    mapping fall in one batch (``split``)."""
    from mptcp_fast.analysis import midstream
    X, Y = 7 << 40, 3 << 50                  # the client's and the server's data sequence
    ack_then_probe = [(False, None, 0, X + 1), (True, X, 1, Y), (True, X + 1, 1400, Y),
                      (False, None, 0, X + 1401)]
    probes_from_the_start = [(True, X, 1, Y), (False, None, 0, X + 1), (True, X, 1, Y),
                             (True, X + 1, 1400, Y), (False, None, 0, X + 1401)]
    one_probe_first = [(True, X, 1, Y), (False, None, 0, X + 1), (True, X + 1, 1400, Y),
                       (False, None, 0, X + 1401)]        # or a keystroke: the same headers
    earlier_ack = [(False, None, 0, X), (True, X, 1, Y), (False, None, 0, X + 1),
                   (True, X + 1, 1400, Y)]                # acknowledged from X: a real byte
    for rows, start in ((ack_then_probe, X + 1), (probes_from_the_start, X + 1),
                        (one_probe_first, X + 1), (earlier_ack, X)):
        batches = [_dss_batch(rows[:2]), _dss_batch(rows[2:])] if split else [_dss_batch(rows)]
        (conn,) = midstream.survey(batches).connections
        assert conn["first_dsn"]["up"] == start

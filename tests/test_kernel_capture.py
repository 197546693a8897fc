"""Real kernel MPTCP traffic, end to end: the reader, the option codec, the crypto and the
data-sequence layer, checked against the Linux kernel and tshark (root only; CI is root)."""

import hashlib
import shutil
import subprocess

import pytest

from mptcp_fast.analysis import capture
from mptcp_fast.wire import crypto, dss, options
from mptcp_fast.testing import kernel_capture
from mptcp_fast.wire.dss import Mapping

# kernel_capture.make_capture: namespaces, veths, tcpdump and kernel MPTCP; tshark judges.
pytestmark = pytest.mark.requires("root", "iproute2", "tcpdump", "kernel_mptcp", "tshark")


@pytest.fixture(scope="module", params=[False, True], ids=["csum-off", "csum-on"])
def kernel_pcap(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("kernel") / "mptcp.pcap"
    offload = shutil.which("ethtool") is None      # MSS-sized segments where ethtool exists
    result = kernel_capture.make_capture(str(path), upload=120_000, download=80_000,
                                         checksum=request.param, offload=offload)
    return result


def segments(path):
    with capture.open_capture(path) as reader:
        return list(reader), reader.stats


def test_reader_agrees_with_tshark(backend, kernel_pcap):
    segs, stats = segments(kernel_pcap.path)
    assert stats.records == len(segs) > 50 and stats.non_tcp == 0
    out = subprocess.run(["tshark", "-r", kernel_pcap.path, "-T", "fields", "-e", "frame.number",
                          "-e", "ip.src", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e",
                          "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.len"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [f"{s.number}\t{s.src_ip}\t{s.sport}\t{s.dport}\t{s.seq}\t{s.ack}\t{s.payload_len}"
            for s in segs]
    assert ours == out


def test_pcapng_copy_reads_the_same(backend, kernel_pcap, tmp_path):
    ng = tmp_path / "copy.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", kernel_pcap.path, str(ng)], check=True)
    a, _ = segments(kernel_pcap.path)
    b, _ = segments(str(ng))
    strip = lambda s: (s.number, s.src, s.sport, s.seq, s.ack, s.flags, s.options, s.payload)  # noqa: E731
    assert [strip(s) for s in a] == [strip(s) for s in b]
    assert abs(a[-1].time - b[-1].time) < 1e-6


def test_handshake_crypto_matches_the_kernel(backend, kernel_pcap):
    """Tokens from the MP_CAPABLE keys name the joins; every join and ADD_ADDR HMAC verifies."""
    segs, _ = segments(kernel_pcap.path)
    keys, joins, add_addrs = {}, {}, []
    for s in segs:
        for opt in options.parse_tcp_options(s.options):
            if isinstance(opt, options.MpCapable) and opt.receiver_key is not None:
                keys = {"client": opt.sender_key, "server": opt.receiver_key}
            elif isinstance(opt, options.MpJoinSyn):
                joins[(s.src, s.sport)] = {"token": opt.token, "r_a": opt.nonce}
            elif isinstance(opt, options.MpJoinSynAck):
                joins[(s.dst, s.dport)].update(r_b=opt.nonce, thmac=opt.hmac)
            elif isinstance(opt, options.MpJoinAck):
                joins[(s.src, s.sport)]["hmac"] = opt.hmac
            elif isinstance(opt, options.AddAddr) and not opt.echo:
                add_addrs.append(opt)
    assert set(keys) == {"client", "server"}, "no third ACK (an MP_CAPABLE with both keys)"
    assert len(joins) >= 2 and len(add_addrs) >= 1             # ADD_ADDR is resent until echoed
    client = crypto.KeyContext(keys["client"], keys["server"])
    server = crypto.KeyContext(keys["server"], keys["client"])
    for join in joins.values():
        assert join["token"] == crypto.key_token(keys["server"]) == server.local_token
        assert client.verify_synack(join["thmac"], join["r_a"], join["r_b"])
        assert server.verify_ack(join["hmac"], join["r_b"], join["r_a"])
    for opt in add_addrs:
        assert client.verify_add_addr(opt)
        assert str(opt.address) == "198.18.2.1"


def test_both_directions_reassemble_byte_exact(backend, kernel_pcap):
    """DSS mappings -> SubflowMappings -> ReassemblyQueue per direction; SHA-256 as the kernel
    endpoints computed it, and every DSS checksum that covers one segment verifies."""
    segs, _ = segments(kernel_pcap.path)
    isn, mappings, keys = {}, {}, {}
    queues, with_checksum, subflow_bytes = {}, [], {}
    for s in segs:
        flow = (s.src, s.sport, s.dst, s.dport)
        opts = options.parse_tcp_options(s.options)
        if s.flags & 0x02:
            isn[flow] = s.seq
        for opt in opts:
            if isinstance(opt, options.MpCapable) and opt.receiver_key is not None:
                keys = {"up": opt.sender_key, "down": opt.receiver_key}
        if not keys or flow not in isn:
            continue
        direction = "up" if s.dport == kernel_capture.PORT else "down"
        if direction not in queues:
            queues[direction] = dss.ReassemblyQueue(crypto.key_idsn(keys[direction]) + 1,
                                                    window=1 << 22)
        maps = mappings.setdefault(flow, dss.SubflowMappings())
        rel = (s.seq - isn[flow]) & 0xFFFFFFFF
        for opt in opts:
            if isinstance(opt, options.Dss) and opt.dsn is not None and opt.data_len:
                mapping = Mapping(opt.dsn, opt.subflow_seq, opt.data_len, opt.data_fin, opt.checksum)
                maps.declare(mapping)
                if opt.data_fin:
                    queues[direction].data_fin(mapping.data_fin_dsn)
                if opt.checksum is not None:
                    with_checksum.append((flow, mapping))
            elif isinstance(opt, options.MpCapable) and opt.data_len is not None:
                maps.declare(Mapping(crypto.key_idsn(opt.sender_key) + 1, 1, opt.data_len))
        if s.payload:
            stream = subflow_bytes.setdefault(flow, bytearray())
            if len(stream) < rel - 1 + len(s.payload):
                stream.extend(bytes(rel - 1 + len(s.payload) - len(stream)))
            stream[rel - 1:rel - 1 + len(s.payload)] = s.payload
            start = 0                                   # ranges follow the payload in order
            for dsn, length in maps.resolve(rel, len(s.payload)):
                queues[direction].push(dsn, s.payload[start:start + length])
                start += length
    up, down = queues["up"].read(), queues["down"].read()
    assert (len(up), hashlib.sha256(up).hexdigest()) == (kernel_pcap.upload_bytes,
                                                         kernel_pcap.upload_sha256)
    assert (len(down), hashlib.sha256(down).hexdigest()) == (kernel_pcap.download_bytes,
                                                             kernel_pcap.download_sha256)
    assert queues["up"].eof and queues["down"].eof
    assert queues["up"].conflict_bytes == queues["down"].conflict_bytes == 0
    # a mapping's checksum covers all its bytes, which may span several segments
    for flow, m in with_checksum:
        carried = subflow_bytes.get(flow, b"")         # a lone DATA_FIN may go on an idle subflow
        data = bytes(carried[m.subflow_seq - 1:m.subflow_seq - 1 + m.payload_length])
        assert dss.verify_dss_checksum(m.dsn, m.subflow_seq, m.length, data, m.checksum), m
        corrupted = data[:-1] + bytes([data[-1] ^ 0x01]) if data else b"\x01"
        assert not dss.verify_dss_checksum(m.dsn, m.subflow_seq, m.length, corrupted, m.checksum)
    assert (len(with_checksum) > 20) == kernel_pcap.checksum


def test_columns_match_the_codec_on_kernel_traffic(backend, kernel_pcap):
    segs, _ = segments(kernel_pcap.path)
    with capture.open_capture(kernel_pcap.path) as reader:
        (cols,) = list(reader.columns(batch=1 << 20))
    assert len(cols["seq"]) == len(segs)
    dss_rows = 0
    for i, s in enumerate(segs):
        opts = options.parse_tcp_options(s.options)
        bits = 0
        for opt in opts:
            if isinstance(opt, options._MptcpOption):
                bits |= 1 << int(getattr(opt, "subtype", 0))
        assert cols["mptcp_subtypes"][i] == bits
        first_dss = next((o for o in opts if isinstance(o, options.Dss)), None)
        if first_dss is None:
            assert cols["dss_flags"][i] == 0xFF
            continue
        dss_rows += 1
        assert cols["dss_flags"][i] == first_dss.flags
        if first_dss.dsn is not None:
            assert (cols["dsn"][i], cols["dss_ssn"][i], cols["dss_len"][i]) == (
                first_dss.dsn, first_dss.subflow_seq, first_dss.data_len)
            assert cols["dss_checksum"][i] == (-1 if first_dss.checksum is None else first_dss.checksum)
    assert dss_rows > len(segs) // 2


# ---------------------------------------------------------------- the analyzer on kernel traffic

from mptcp_fast import analysis  # noqa: E402
from mptcp_fast.analysis import analyzer as analyze_module  # noqa: E402
from mptcp_fast.cli import main as cli  # noqa: E402


def test_analyzer_rebuilds_both_directions(backend, kernel_pcap):
    report = analysis.analyze(kernel_pcap.path)
    (conn,) = report["connections"]
    assert conn["checksums"] == kernel_pcap.checksum
    up, down = conn["streams"]["up"], conn["streams"]["down"]
    assert (up["bytes"], up["sha256"], up["complete"]) == (
        kernel_pcap.upload_bytes, kernel_pcap.upload_sha256, True)
    assert (down["bytes"], down["sha256"], down["complete"]) == (
        kernel_pcap.download_bytes, kernel_pcap.download_sha256, True)
    assert len(conn["subflows"]) == 3 and conn["anomalies"] == []
    assert all(s["join_synack_hmac"] == s["join_ack_hmac"] == "valid"
               for s in conn["subflows"] if not s["initial"])
    assert [(a["address"], a["hmac"]) for a in conn["add_addr"]] == [("198.18.2.1", "valid")]
    assert conn["server_token"] == f"{crypto.key_token(int(conn['server_key'], 16)):08x}"


def _flip(path, needle: bytes, out, index=0):
    raw = bytearray(open(path, "rb").read())
    at = raw.find(needle)
    assert at > 0 and raw.find(needle, at + 1) < 0
    raw[at + index] ^= 0x01
    out.write_bytes(bytes(raw))
    return out


def test_a_flipped_hmac_byte_is_reported_at_its_packet(backend, kernel_pcap, tmp_path):
    segs, _ = segments(kernel_pcap.path)
    join_ack = next(s for s in segs for o in options.parse_tcp_options(s.options)
                    if isinstance(o, options.MpJoinAck))
    hmac = next(o.hmac for o in options.parse_tcp_options(join_ack.options)
                if isinstance(o, options.MpJoinAck))
    bad = _flip(kernel_pcap.path, hmac, tmp_path / "bad-hmac.pcap", index=7)
    (conn,) = analysis.analyze(str(bad))["connections"]
    assert f"packet {join_ack.number}: MP_JOIN third-ACK HMAC invalid" in conn["anomalies"]
    assert sorted(s["join_ack_hmac"] for s in conn["subflows"] if not s["initial"]) == [
        "invalid", "valid"]


@pytest.mark.parametrize("kernel_pcap", [True], ids=["csum-on"], indirect=True)
def test_a_flipped_payload_byte_is_a_checksum_failure(backend, kernel_pcap, tmp_path):
    assert kernel_pcap.checksum                                 # only a checksum can catch it
    segs, _ = segments(kernel_pcap.path)
    victim = [s for s in segs if len(s.payload) > 1000][5]
    bad = _flip(kernel_pcap.path, victim.payload[:64], tmp_path / "bad-payload.pcap", index=10)
    (conn,) = analysis.analyze(str(bad))["connections"]
    assert len(conn["checksum_failures"]) == 1 and victim.number in conn["checksum_failures"][0]
    direction = "up" if victim.dport == kernel_capture.PORT else "down"
    assert conn["streams"][direction]["sha256"] != getattr(kernel_pcap, f"{direction}load_sha256")


def test_cli_analyze_cut_file_exit_2_and_dump_stream(backend, kernel_pcap, tmp_path, capsys):
    cut = tmp_path / "cut.pcap"
    raw = open(kernel_pcap.path, "rb").read()
    cut.write_bytes(raw[:len(raw) * 2 // 3])
    assert cli.main(["analyze", str(cut)]) == 2
    captured = capsys.readouterr()
    assert "capture truncated at byte" in captured.err and "connection 1" in captured.out
    dump = tmp_path / "streams"
    assert cli.main(["analyze", "--json", "--dump-stream", str(dump), kernel_pcap.path]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    up = (dump / "connection1-up.bin").read_bytes()
    assert hashlib.sha256(up).hexdigest() == report["connections"][0]["streams"]["up"]["sha256"]
    assert len(up) == kernel_pcap.upload_bytes


def test_tshark_agrees_on_tokens_grouping_and_dss_fields(backend, kernel_pcap):
    """tshark's mptcp.expected_token, mptcp.stream and the raw DSN / subflow sequence / data
    ACK of every packet, against our decode and the analyzer's grouping."""
    fields = ["frame.number", "mptcp.stream", "mptcp.expected_token",
              "tcp.options.mptcp.rawdataseqno", "tcp.options.mptcp.subflowseqno",
              "tcp.options.mptcp.rawdataack"]
    cmd = ["tshark", "-r", kernel_pcap.path, "-o", "mptcp.analyze_mptcp:TRUE", "-T", "fields",
           "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    rows = [line.split("\t") for line in
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()]
    segs, _ = segments(kernel_pcap.path)
    analyzer = analyze_module.Analyzer()
    with capture.open_capture(kernel_pcap.path) as reader:
        for cols in reader.columns():
            analyzer.feed_columns(cols)
    stream_to_connection, compared = {}, 0
    for seg, row in zip(segs, rows, strict=True):
        number, stream, token, dsn, ssn, dack = row
        assert int(number) == seg.number
        opts = options.parse_tcp_options(seg.options)
        if token:
            mpc = next(o for o in opts if isinstance(o, options.MpCapable))
            assert crypto.key_token(mpc.sender_key) == int(token)
            compared += 1
        if stream:
            conn = analyzer.connection_of(seg.src, seg.sport, seg.dst, seg.dport)
            assert conn is not None and stream_to_connection.setdefault(stream, conn) == conn
        dss_opt = next((o for o in opts if isinstance(o, options.Dss)), None)
        ours = ("", "", "") if dss_opt is None else (
            "" if dss_opt.dsn is None else str(dss_opt.dsn),
            "" if dss_opt.subflow_seq is None else str(dss_opt.subflow_seq),
            "" if dss_opt.data_ack is None else str(dss_opt.data_ack))
        assert (dsn, ssn, dack) == ours, seg.number
        compared += dss_opt is not None
    assert len(set(stream_to_connection.values())) == len(stream_to_connection) == 1
    assert compared > len(segs) // 2


def test_joins_are_grouped_by_token_without_the_handshake(backend, kernel_pcap, tmp_path):
    """Drop the initial subflow's packets: the joins still form one connection by token, and
    their HMACs are reported as impossible to verify instead of failing."""
    segs, _ = segments(kernel_pcap.path)
    def flow(s):
        return frozenset([(s.src, s.sport), (s.dst, s.dport)])
    raw = open(kernel_pcap.path, "rb").read()
    kept = [s for s in segs if flow(s) != flow(segs[0])]
    out = bytearray(raw[:24])
    offsets = [s.offset for s in segs] + [len(raw)]
    keep_offsets = {s.offset for s in kept}
    for start, end in zip(offsets, offsets[1:]):
        if start in keep_offsets:
            out += raw[start:end]
    path = tmp_path / "no-handshake.pcap"
    path.write_bytes(bytes(out))
    report = analysis.analyze(str(path))
    (conn,) = report["connections"]
    assert len(conn["subflows"]) == 2 and conn["client_key"] is None
    assert {s["join_ack_hmac"] for s in conn["subflows"]} == {"cannot verify"}
    assert any("not in the capture" in a for a in conn["anomalies"])


def test_headers_only_capture_is_accounted_not_rebuilt(backend, kernel_pcap, tmp_path):
    """A snap length of 128: HMACs still verify, payload is counted as not captured."""
    import struct
    raw = open(kernel_pcap.path, "rb").read()
    out, pos = bytearray(raw[:24]), 24
    while pos < len(raw):
        sec, frac, incl, orig = struct.unpack_from("<IIII", raw, pos)
        keep = min(incl, 128)
        out += struct.pack("<IIII", sec, frac, keep, orig) + raw[pos + 16:pos + 16 + keep]
        pos += 16 + incl
    path = tmp_path / "headers.pcap"
    path.write_bytes(bytes(out))
    (conn,) = analysis.analyze(str(path))["connections"]
    assert [s["join_ack_hmac"] for s in conn["subflows"] if not s["initial"]] == ["valid"] * 2
    up = conn["streams"]["up"]
    assert up["bytes"] == 0 and up["not_captured_bytes"] >= kernel_pcap.upload_bytes - 2000
    assert sum(s["bytes"]["up"] for s in conn["subflows"]) >= kernel_pcap.upload_bytes
    # every data-level byte was still seen in the headers, up to the DATA_FIN
    assert up["data_bytes"] == kernel_pcap.upload_bytes and up["complete"]
    assert conn["streams"]["down"]["data_bytes"] == kernel_pcap.download_bytes


def test_backends_give_the_same_report(on_both, kernel_pcap):
    compiled, pure = on_both(lambda: analysis.analyze(kernel_pcap.path))
    assert compiled == pure
    (conn,) = compiled["connections"]
    assert conn["anomalies"] == [] and conn["fallback"] is None
    assert conn["streams"]["up"]["data_bytes"] == kernel_pcap.upload_bytes


@pytest.fixture(scope="module")
def reinjection_pcap(tmp_path_factory):
    """Path 1 fails once the subflows are up: what the client sent on it is lost, and the
    kernel sends it again on another subflow."""
    path = tmp_path_factory.mktemp("kernel") / "reinjection.pcap"
    return kernel_capture.make_capture(str(path), upload=2_000_000, download=100_000,
                                       offload=shutil.which("ethtool") is None, fail_path=True)


def test_reinjection_after_a_path_fails(backend, reinjection_pcap):
    """Both streams still byte-exact; the lost subflow's data is counted as reinjected on the
    subflows that carried it again; every subflow byte is new or duplicate at the data level;
    and tshark (intersubflows_retransmission) marks the same reinjected upload bytes."""
    (conn,) = analysis.analyze(reinjection_pcap.path)["connections"]
    up, down = conn["streams"]["up"], conn["streams"]["down"]
    assert (up["bytes"], up["sha256"]) == (reinjection_pcap.upload_bytes,
                                           reinjection_pcap.upload_sha256)
    assert (down["bytes"], down["sha256"]) == (reinjection_pcap.download_bytes,
                                               reinjection_pcap.download_sha256)
    failed = next(s for s in conn["subflows"] if s["client"].startswith("198.18.1.2:"))
    assert failed["bytes"]["up"] > 0 and failed["reinjected_bytes"]["up"] == 0
    for name, stream in (("up", up), ("down", down)):
        assert sum(s["bytes"][name] for s in conn["subflows"]) == (
            stream["data_bytes"] + stream["duplicate_bytes"])
        assert sum(s["reinjected_bytes"][name] for s in conn["subflows"]) == (
            stream["reinjected_bytes"]) <= stream["duplicate_bytes"]
    assert up["reinjected_bytes"] > 0 and conn["anomalies"] == []
    # an independent model: the first subflow to carry each upload byte, byte by byte
    import numpy as np
    segs, _ = segments(reinjection_pcap.path)
    first = np.zeros(reinjection_pcap.upload_bytes, np.uint8)
    isn, maps, subflow_ids, base, reinjected = {}, {}, {}, None, 0
    reinjecting = set()         # (source port, raw sequence number) of each packet counted
    for s in segs:
        if s.dport != kernel_capture.PORT:
            continue
        flow = (s.src, s.sport)
        opts = options.parse_tcp_options(s.options)
        if s.flags & 0x02:
            isn[flow] = s.seq
        for opt in opts:
            if isinstance(opt, options.MpCapable) and opt.receiver_key is not None:
                base = crypto.key_idsn(opt.sender_key) + 1
                if opt.data_len:
                    maps.setdefault(flow, dss.SubflowMappings()).declare(Mapping(base, 1, opt.data_len))
            elif isinstance(opt, options.Dss) and opt.dsn is not None and opt.data_len:
                maps.setdefault(flow, dss.SubflowMappings()).declare(
                    Mapping(opt.dsn, opt.subflow_seq, opt.data_len, opt.data_fin))
        if s.payload_len and flow in isn:
            sid = subflow_ids.setdefault(flow, len(subflow_ids) + 1)
            for dsn, n in maps[flow].resolve((s.seq - isn[flow]) & 0xFFFFFFFF, s.payload_len):
                carriers = first[dsn - base:dsn - base + n]
                again = int(np.count_nonzero((carriers != 0) & (carriers != sid)))
                if again:
                    reinjected += again
                    reinjecting.add((s.sport, s.seq))
                carriers[carriers == 0] = sid
    assert np.all(first) and reinjected == up["reinjected_bytes"]
    # tshark marks the packets whose data went out on another subflow before: each of them is
    # one our model counts. It does not mark them all: a packet whose bytes an earlier
    # subflow carried in two packets (the reinjection cut at other boundaries) can go
    # unmarked, as 11 of 81 did in one loaded run. It also marks the failed subflow's own late
    # retransmissions (its data had meanwhile been reinjected), which are duplicates of that
    # subflow's first copy to us, not reinjections: left out here.
    failed_port = int(failed["client"].rsplit(":", 1)[1])
    rows = subprocess.run(
        ["tshark", "-r", reinjection_pcap.path, "-o", "mptcp.analyze_mptcp:TRUE", "-o",
         "mptcp.analyze_mappings:TRUE", "-o", "mptcp.intersubflows_retransmission:TRUE",
         "-Y", f"mptcp.reinjection_of and tcp.dstport == {kernel_capture.PORT}"
               f" and tcp.srcport != {failed_port}",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.seq_raw"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    marked = {tuple(map(int, row.split("\t"))) for row in rows}
    assert marked and marked <= reinjecting, sorted(marked - reinjecting)[:5]


@pytest.mark.requires("ethtool")                 # to switch checksum offload off
def test_the_packet_layer_agrees_with_the_kernels_checksums(backend, reinjection_pcap):
    """Every packet the kernel sent (checksum offload off: the capture holds final checksums)
    parses with the packet layer, and its IPv4 header and TCP checksums verify; the checksum
    we compute equals the one the kernel wrote."""
    import struct
    from mptcp_fast.wire import packet
    raw = open(reinjection_pcap.path, "rb").read()
    ip_offset = {1: 14, 101: 0, 113: 16, 276: 20}[struct.unpack_from("<I", raw, 20)[0]]
    pos, checked, wrong = 24, 0, []
    while pos < len(raw):
        _, _, incl, _ = struct.unpack_from("<IIII", raw, pos)
        frame = raw[pos + 16:pos + 16 + incl]
        p = packet.parse_packet(frame, ip_offset)
        verdict = packet.verify_checksums(frame, ip_offset)
        ours = packet.tcp_checksum(frame, ip_offset)
        # the kernel completes the checksum in skb_checksum_help, which writes a sum that
        # folds to 0 as 0xFFFF (CSUM_MANGLED_0): one's complement's other zero, the same
        # checksum (about one packet in 65,536 of a random capture)
        same = ours == p.checksum or (ours == 0 and p.checksum == 0xFFFF)
        if verdict != (True, True) or not same:
            wrong.append((checked + 1, verdict, frame[:ip_offset + 60].hex()))
        checked += 1
        pos += 16 + incl
    assert checked > 1000 and wrong == []


def test_a_prefix_names_the_namespaces_and_veths(tmp_path, monkeypatch):
    """make_capture(prefix=...): every namespace and veth it makes begins with the prefix
    (and a tag of the run's own), the capture still holds the transfer; a bad prefix is a
    ValueError before anything is made."""
    made = []
    run = kernel_capture._run

    def recording(*command):
        if command[:3] == ("ip", "netns", "add") or "veth" in command:
            made.append(command)
        return run(*command)
    monkeypatch.setattr(kernel_capture, "_run", recording)
    result = kernel_capture.make_capture(str(tmp_path / "p.pcap"), upload=40_000,
                                         download=20_000, paths=2, prefix="zq7")
    assert result.upload_bytes == 40_000
    namespaces = [c[3] for c in made if c[:3] == ("ip", "netns", "add")]
    assert len(namespaces) == 2 and namespaces[0][:4] == "zq7A" and namespaces[1][:4] == "zq7B"
    veths = [c[3] for c in made if "veth" in c] + [c[c.index("name") + 1] for c in made
                                                    if "veth" in c]
    assert len(veths) == 4 and all(v.startswith(("zq7a", "zq7b")) for v in veths)
    for bad in ("", "toolong", "a-b"):
        with pytest.raises(ValueError, match="prefix"):
            kernel_capture.make_capture(str(tmp_path / "x.pcap"), prefix=bad)

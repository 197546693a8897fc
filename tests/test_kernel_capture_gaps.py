"""Real kernel MPTCP captures that begin mid-transfer or miss packets (root): every gap the
analyzer names is exactly a DSN range no captured packet carried (tests/capture_oracle.py reads
them from the packets' own mappings), the pieces between the gaps are the bytes the kernel
sockets sent, and the text, the JSON, the time series and the Parquet tables give the same
numbers.

The capture: both directions at once on two paths, the client a slow reader, so its download
meets a zero window, which Linux probes with one byte mapped at an old DSN (docs/analysis.md).
It is cut (the capture began mid-transfer) and packets are dropped from it (the capture missed
them)."""

from __future__ import annotations

import json
import shutil

import pytest

import capture_oracle
from mptcp_fast import analysis
from mptcp_fast.analysis import capture, timeseries
from mptcp_fast.analysis.model import build_model
from mptcp_fast.testing import kernel_capture
from mptcp_fast.wire import crypto

pytestmark = pytest.mark.requires("root", "iproute2", "tcpdump", "kernel_mptcp")

UPLOAD, DOWNLOAD = 6_000_000, 3_000_000


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    path = tmp_path_factory.mktemp("gaps") / "both.pcap"
    offload = shutil.which("ethtool") is None      # MSS-sized segments where ethtool exists
    return kernel_capture.make_capture(str(path), upload=UPLOAD, download=DOWNLOAD, paths=2,
                                       offload=offload, both_ways=True, client_pause=1.0,
                                       prefix="gap")


def _sent(result):
    (t,) = result.transfers
    return {"up": kernel_capture.upload_stream(t.upload_seed, t.upload_bytes),
            "down": kernel_capture.upload_stream(t.download_seed, t.download_bytes)}


def _write(path, header, records) -> None:
    with open(path, "wb") as f:
        f.write(header)
        f.writelines(records)


def _data_packets(path) -> list:
    """(record index, direction, payload length) of every packet with payload."""
    out = []
    with capture.open_capture(str(path)) as reader:
        for seg in reader:
            if seg.payload_len:
                direction = "up" if seg.dport == kernel_capture.PORT else "down"
                out.append((seg.number - 1, direction, seg.payload_len))
    return out


def _check_streams(conn, seen, sent, dump_dir, keys_known: bool) -> None:
    """Both streams of ``conn`` against what the capture shows and what was sent."""
    for name in ("up", "down"):
        st = conn["streams"][name]
        ranges = [r for s in conn["subflows"]
                  for r in seen.get((s["client"], s["server"], name), [])]
        if keys_known:
            key = conn["client_key"] if name == "up" else conn["server_key"]
            start, origin = (crypto.key_idsn(int(key, 16)) + 1) % 2**64, 0
        else:                    # from the first byte seen: the DATA_FIN ends what was sent
            start = st["start_dsn"]
            origin = len(sent[name]) - (st["data_fin"] - start) % 2**64
        capture_oracle.check_stream(st, ranges, start, sent[name], origin,
                                    dump_dir / f"connection{conn['connection']}-{name}.bin")


def test_the_whole_capture_is_rebuilt_and_the_zero_window_probes_set_aside(
        backend, both_ways, tmp_path):
    """Both directions byte-exact (the kernel's own SHA-256s), no gap, nothing conflicting;
    each one-byte zero-window probe is counted and kept out of the stream."""
    report = analysis.analyze(both_ways.path, dump_dir=str(tmp_path))
    (conn,) = report["connections"]
    up, down = conn["streams"]["up"], conn["streams"]["down"]
    assert up["sha256"] == both_ways.upload_sha256 and up["bytes"] == UPLOAD
    assert down["sha256"] == both_ways.download_sha256 and down["bytes"] == DOWNLOAD
    assert up["complete"] and down["complete"] and conn["anomalies"] == []
    probes = sum(1 for _, d, n in _data_packets(both_ways.path) if d == "down" and n == 1)
    assert probes > 0 and down["zero_window_probes"] == probes
    assert up["conflict_bytes"] == down["conflict_bytes"] == 0
    assert up["gaps"] == down["gaps"] == [] and up["pieces"][0]["sha256"] == up["sha256"]


def test_a_hole_before_the_probes_is_a_gap_not_a_conflict(backend, both_ways, tmp_path):
    """A download packet the capture missed before the window closed: the bytes after it
    waited for it, and the zero-window probes (one byte mapped at a DSN already
    acknowledged) used to be compared with the bytes waiting there, CONFLICTING. The hole
    is a gap now, the probes are set aside, and the rest is what the server sent."""
    header, records = capture_oracle.pcap_records(both_ways.path)
    down = [i for i, d, n in _data_packets(both_ways.path) if d == "down" and n > 1]
    dropped = set(down[2:4])                           # early in the download
    cut = tmp_path / "hole.pcap"
    _write(cut, header, [r for i, r in enumerate(records) if i not in dropped])
    report = analysis.analyze(str(cut), dump_dir=str(tmp_path))
    (conn,) = report["connections"]
    st = conn["streams"]["down"]
    assert st["conflict_bytes"] == 0 and st["zero_window_probes"] > 0 and st["gap_count"] >= 1
    seen = capture_oracle.dsn_ranges(cut, capture_oracle.isns(both_ways.path))
    _check_streams(conn, seen, _sent(both_ways), tmp_path, keys_known=True)
    assert conn["anomalies"] == [
        f"stream down (server -> client): {st['missing_bytes']:,} bytes in "
        f"{st['gap_count']} gap{'s' if st['gap_count'] != 1 else ''} never seen in the "
        f"capture, the first at DSN {st['gaps'][0]['dsn']}"]


def _mid_transfer_with_holes(both_ways, path) -> None:
    """The capture begun at the 40th percent of the upload's packets, then three upload
    packets and two download packets missed."""
    header, records = capture_oracle.pcap_records(both_ways.path)
    data = _data_packets(both_ways.path)
    up = [i for i, d, n in data if d == "up" and n > 1]
    down = [i for i, d, n in data if d == "down" and n > 1]
    begin = up[len(up) * 4 // 10]
    dropped = set(up[len(up) * 6 // 10:len(up) * 6 // 10 + 3])
    dropped |= set(down[len(down) // 2:len(down) // 2 + 2])
    _write(path, header, [r for i, r in enumerate(records) if i >= begin and i not in dropped])


def test_a_capture_begun_mid_transfer_with_holes(backend, both_ways, tmp_path):
    """No handshake in the capture, in-flight bytes it never had, packets it missed: each
    stream from its first byte seen is the server's and the client's bytes, piece by piece,
    the gaps exactly where no captured packet mapped a byte."""
    cut = tmp_path / "mid.pcap"
    _mid_transfer_with_holes(both_ways, cut)
    report = analysis.analyze(str(cut), dump_dir=str(tmp_path))
    (conn,) = report["connections"]
    assert conn["placed"].startswith("without handshakes") and conn["client_key"] is None
    seen = capture_oracle.dsn_ranges(cut, capture_oracle.isns(both_ways.path))
    _check_streams(conn, seen, _sent(both_ways), tmp_path, keys_known=False)
    assert conn["streams"]["up"]["gap_count"] >= 1 and conn["streams"]["down"]["gap_count"] >= 1
    assert all(st["conflict_bytes"] == 0 for st in conn["streams"].values())
    index = [json.loads(line) for line in
             (tmp_path / "connection1-up.index.jsonl").read_text().splitlines()]
    up = conn["streams"]["up"]

    def listed(kind):
        return [{k: v for k, v in e.items() if k != "kind"} for e in index if e["kind"] == kind]
    assert listed("gap") == up["gaps"] and listed("piece") == up["pieces"]


@pytest.mark.requires("pyarrow")
def test_text_json_series_and_tables_agree_on_the_gaps(both_ways, tmp_path, capsys):
    """One capture with gaps, every output: the text names each gap and the bytes missing
    as the JSON does, the Parquet tables hold the same numbers, and the time series' delivery
    goes past the gaps to the bytes the report rebuilt."""
    import pyarrow.parquet as pq
    from mptcp_fast.cli import main as cli
    cut = tmp_path / "mid.pcap"
    _mid_transfer_with_holes(both_ways, cut)
    assert cli.main(["analyze", str(cut), "--json", "--parquet", str(tmp_path / "t")]) == 0
    (conn,) = json.loads(capsys.readouterr().out)["connections"]
    assert cli.main(["analyze", str(cut)]) == 0
    text = capsys.readouterr().out
    (row,) = pq.read_table(tmp_path / "t" / "connections.parquet").to_pylist()
    model = build_model(str(cut), packets=True)
    (series,) = timeseries.model_series(model)
    for name in ("up", "down"):
        st = conn["streams"][name]
        assert (f"{st['missing_bytes']:,} bytes MISSING in {st['gap_count']:,} "
                f"gap{'s' if st['gap_count'] != 1 else ''}") in text
        for gap in st["gaps"]:
            assert (f"      gap at DSN {gap['dsn']} ({gap['stream_offset']:,} bytes after the "
                    f"stream's first byte): {gap['bytes']:,} bytes\n") in text
        assert (row[f"{name}_bytes"], row[f"{name}_gap_count"], row[f"{name}_missing_bytes"],
                row[f"{name}_sha256"]) == (st["bytes"], st["gap_count"], st["missing_bytes"],
                                            st["sha256"])
        assert (row[f"{name}_gaps"], row[f"{name}_pieces"]) == (st["gaps"], st["pieces"])
        assert series["gaps"][name] == {"count": st["gap_count"],
                                        "missing_bytes": st["missing_bytes"],
                                        "listed": st["gaps"]}
        times, delivered = series["delivery"][name][-1]
        assert delivered == st["bytes"] == st["data_bytes"]
    assert model.report["connections"][0]["streams"] == conn["streams"]


def test_a_capture_begun_at_a_zero_window_probe_starts_after_it(backend, both_ways, tmp_path):
    """The capture begins while the client's window is closed: the first download packet is
    Linux's one-byte probe, mapped at the byte before the first one not acknowledged. That
    byte was acknowledged before the capture began and the probe does not carry it, so the
    stream is rebuilt from the first byte sent after it: no one-byte gap at its start."""
    header, records = capture_oracle.pcap_records(both_ways.path)
    data = _data_packets(both_ways.path)
    first_probe = next(i for i, d, n in data if d == "down" and n == 1)
    cut = tmp_path / "probe-first.pcap"
    _write(cut, header, records[first_probe:])
    report = analysis.analyze(str(cut), dump_dir=str(tmp_path))
    (conn,) = report["connections"]
    down = conn["streams"]["down"]
    seen = capture_oracle.dsn_ranges(cut, capture_oracle.isns(both_ways.path))
    first_real = min(a for (_, _, name), ranges in seen.items() if name == "down"
                     for a, _ in ranges)
    assert down["start_dsn"] == first_real
    assert (down["gap_count"], down["missing_bytes"], down["complete"]) == (0, 0, True)
    assert down["zero_window_probes"] >= 1 and conn["anomalies"] == []
    sent = _sent(both_ways)["down"]                 # the DATA_FIN ends what was sent
    origin = len(sent) - (down["data_fin"] - first_real) % 2**64
    ranges = [r for s in conn["subflows"] for r in seen.get((s["client"], s["server"], "down"))]
    capture_oracle.check_stream(down, ranges, first_real, sent, origin,
                                tmp_path / f"connection{conn['connection']}-down.bin")

"""The capture analyzer reads a file once, whatever it is asked for: the text report, JSON,
--timing, --plot and --parquet are views of one model (connections, subflows, streams and the
per-packet table). A capture without its handshakes is read twice: its flows are surveyed
during the first read and placed in the second."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from mptcp_fast.analysis import analyzer, capture, midstream, model, timeseries
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE
from mptcp_fast.cli.main import build_parser

from test_midstream import _cut, _two_connections
from test_raster import read_png
from enginenet import C0, C1, S0


@pytest.fixture
def reads(monkeypatch):
    """Counts the opens of capture files and the column batches decoded from them."""
    counted = {"opens": 0, "batches": 0}
    real_open = capture.open_capture

    def counting_open(path):
        counted["opens"] += 1
        reader = real_open(path)
        real_columns = reader.columns

        def columns(*args, **kwargs):
            for batch in real_columns(*args, **kwargs):
                counted["batches"] += 1
                yield batch
        reader.columns = columns
        return reader
    monkeypatch.setattr(capture, "open_capture", counting_open)
    return counted


def _run(arguments) -> str:
    args = build_parser().parse_args(["analyze", *arguments])
    out = io.StringIO()
    assert args.func(args, out) == 0
    return out.getvalue()


def _batches(path) -> int:
    with capture.open_capture(path) as reader:
        return sum(1 for _ in reader.columns(analyzer.BATCH_PACKETS, payloads=True,
                                             payload_bytes=analyzer.BATCH_PAYLOAD))


@pytest.mark.parametrize("outputs", [[], ["--json"], ["--timing"], ["--plot", "plots"],
                                     ["--parquet", "tables"],
                                     ["--plot", "plots", "--parquet", "tables", "--json"]],
                         ids=["text", "json", "timing", "plot", "parquet", "all"])
def test_a_capture_with_handshakes_is_read_once(tmp_path, reads, outputs):
    if "--parquet" in outputs:
        pytest.importorskip("pyarrow")
    one_read = _batches(SHIPPED_CAPTURE)
    reads.update(opens=0, batches=0)
    arguments = [str(tmp_path / a) if a in ("plots", "tables") else a for a in outputs]
    _run([SHIPPED_CAPTURE, *arguments])
    assert reads == {"opens": 1, "batches": one_read}
    if "--plot" in outputs:
        pixels = read_png((tmp_path / "plots" / "connection1-sequence.png").read_bytes())
        assert pixels.shape == (450, 1200, 3)
    if "--parquet" in outputs:
        assert (tmp_path / "tables" / "packets.parquet").exists()


def test_outputs_do_not_change_the_report(tmp_path):
    """--plot and --parquet add "timing" to the report and nothing else."""
    plain = json.loads(_run([SHIPPED_CAPTURE, "--json"]))
    timed = json.loads(_run([SHIPPED_CAPTURE, "--json", "--timing"]))
    everything = json.loads(_run([SHIPPED_CAPTURE, "--json", "--plot", str(tmp_path / "p"),
                                  "--parquet", str(tmp_path / "t")]))
    assert everything == timed
    for conn in timed["connections"]:
        assert conn.pop("timing")["subflows"]
    assert timed == plain


@pytest.fixture(scope="module")
def midstream_capture(tmp_path_factory):
    """Two connections of two subflows each, cut after their handshakes."""
    where = tmp_path_factory.mktemp("one_pass")
    full, cut = where / "full.pcap", where / "cut.pcap"
    _two_connections(full, [C0, C1], S0)
    _cut(full, cut, 2000)
    return str(cut)


def test_a_capture_without_handshakes_is_read_twice(reads, midstream_capture, backend):
    """The survey is gathered during the first read (no read of its own), and it is what a
    survey of the whole file finds."""
    one_read = _batches(midstream_capture)
    first, damage = model._analyze_pass(midstream_capture, None, None, None, False)
    assert damage is None
    gathered = first.survey_collector.survey()
    with capture.open_capture(midstream_capture) as reader:
        whole = midstream.survey(reader.columns(analyzer.BATCH_PACKETS, payloads=False),
                                 set(first.unplaced))
    assert gathered == whole and len(whole.flows) == 4 and len(whole.connections) == 2
    reads.update(opens=0, batches=0)
    built = model.build_model(midstream_capture, packets=True)
    assert reads == {"opens": 2, "batches": 2 * one_read} and built.reads == 2
    assert [c["placed"].startswith("without handshakes") for c in built.report["connections"]] \
        == [True, True]


def test_the_model_series_are_the_report_series(midstream_capture):
    """The time series from the model's typed connections and per-packet table equal the ones
    made from the report's text and the per-packet arrays (the older entry points)."""
    built = model.build_model(midstream_capture, packets=True)
    from_model = timeseries.model_series(built)
    arrays = built.packets.arrays()
    from_report = [timeseries.connection_series(built.report, arrays, c["connection"])
                   for c in built.report["connections"]]
    assert len(from_model) == 2
    for a, b in zip(from_model, from_report):
        assert timeseries.summary(a) == timeseries.summary(b)
        for x, y in zip(a["subflows"], b["subflows"]):
            for direction in ("up", "down"):
                for name, column in x["samples"][direction].items():
                    assert np.array_equal(column, y["samples"][direction][name])
        assert a["delivery"] == b["delivery"]


def test_the_packet_table_is_the_same_however_much_room_was_reserved(monkeypatch):
    """Rows are copied into arrays reserved for what the file can hold; a table that
    outgrows them (here: 16 rows reserved, batches of 64) grows, and holds the same rows."""
    from mptcp_fast.analysis import packets
    reserved = model.build_model(SHIPPED_CAPTURE, packets=True).packets
    monkeypatch.setattr(model, "ROWS_RESERVED_AT_MOST", 16)
    monkeypatch.setattr(packets.PacketTableBuilder, "FIRST_ROOM", 16)
    monkeypatch.setattr(analyzer, "BATCH_PACKETS", 64)
    grown = model.build_model(SHIPPED_CAPTURE, packets=True).packets
    assert len(grown) == len(reserved) > 64
    for name, column in reserved.columns.items():
        assert grown[name].dtype == column.dtype and np.array_equal(grown[name], column), name
    assert (grown.addresses, grown.src_code.tolist(), grown.dst_code.tolist()) == \
        (reserved.addresses, reserved.src_code.tolist(), reserved.dst_code.tolist())
    assert model._rows_at_most(SHIPPED_CAPTURE) == 16
    assert model._rows_at_most("/no/such/file") == 0

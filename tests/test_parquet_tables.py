"""The Parquet tables ``analyze --parquet`` writes (``tables.write_tables``: the packet
table's text columns as dictionaries, no Arrow schema in the file) read back as the tables
of ``tables.arrow_tables``."""

from __future__ import annotations

import pytest

from mptcp_fast.analysis import tables
from mptcp_fast.analysis.model import CaptureModel, build_model
from mptcp_fast.analysis.packets import PacketTableBuilder
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE

pq = pytest.importorskip("pyarrow.parquet")


def _read_back_equal(model, out_dir):
    paths = tables.write_tables(model, out_dir)
    expected = dict(tables.arrow_tables(model))
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"{n}.parquet" for n in expected]
    for path, (name, table) in zip(paths, expected.items()):
        back = pq.read_table(path)
        assert back.schema == table.schema, name
        assert back.equals(table), name
    return pq.read_table(paths[0])


def test_written_tables_are_the_arrow_tables(tmp_path):
    packets = _read_back_equal(build_model(SHIPPED_CAPTURE, packets=True), tmp_path)
    assert packets.num_rows > 0 and set(packets["direction"].to_pylist()) == {"up", "down"}
    assert str(packets.schema.field("src").type) == "string"


def test_an_empty_packet_table_is_written_as_one(tmp_path):
    report = {"packets": 0, "connections": []}
    model = CaptureModel(report, [], PacketTableBuilder().finish())
    assert _read_back_equal(model, tmp_path).num_rows == 0


def _streamed(path, out_dir, monkeypatch, batch_packets=None):
    """The model of ``path`` with its packet table streamed into ``out_dir`` (batches of
    ``batch_packets``, row groups of 3 batches); the streams made, in order."""
    from mptcp_fast.analysis import analyzer
    if batch_packets is not None:
        monkeypatch.setattr(analyzer, "BATCH_PACKETS", batch_packets)
        monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 3 * batch_packets)
    made = []

    def stream():
        made.append(tables.PacketStream(str(out_dir)))
        return made[-1]
    return build_model(path, packets=True, packet_stream=stream), made


def test_the_streamed_packet_table_is_the_one_written_at_once(tmp_path, monkeypatch):
    built, made = _streamed(SHIPPED_CAPTURE, tmp_path / "streamed", monkeypatch, 64)
    assert made == [built.packet_stream] and built.packet_stream.rows == len(built.packets)
    paths = tables.finish_tables(built, str(tmp_path / "streamed"))
    expected = dict(tables.arrow_tables(built))
    back = pq.read_table(paths[0])
    assert back.schema == expected["packets"].schema and back.equals(expected["packets"])
    layout = pq.ParquetFile(paths[0]).metadata
    assert layout.num_row_groups == -(-len(built.packets) // (3 * 64)) > 1
    assert all(layout.row_group(i).num_rows == 3 * 64 for i in range(layout.num_row_groups - 1))
    for path, name in zip(paths[1:], ("subflows", "connections")):
        assert pq.read_table(path).equals(expected[name])


def test_a_second_read_streams_anew(tmp_path, monkeypatch):
    """A capture without handshakes is read twice: the first read's stream is dropped (its
    file removed), the second one's is the model's table."""
    from test_one_pass import _cut, _two_connections
    from enginenet import C0, C1, S0
    full, cut = tmp_path / "full.pcap", tmp_path / "cut.pcap"
    _two_connections(full, [C0, C1], S0)
    _cut(full, cut, 2000)
    built, made = _streamed(str(cut), tmp_path / "t", monkeypatch, 4096)
    assert built.reads == 2 and len(made) == 2 and built.packet_stream is made[1]
    assert made[0]._aborted           # (it had no rows: no flow was placed in that read)
    (path, *_) = tables.finish_tables(built, str(tmp_path / "t"))
    assert pq.read_table(path).equals(built.packets.arrow())


def test_a_stream_given_no_rows_leaves_the_table_to_be_written_at_once(tmp_path):
    stream = tables.PacketStream(str(tmp_path))
    model = CaptureModel({"packets": 0, "connections": []}, [], PacketTableBuilder().finish(),
                         packet_stream=stream)
    (path, *_) = tables.finish_tables(model, str(tmp_path))
    assert pq.read_table(path).equals(model.packets.arrow())


def test_the_command_writes_no_table_of_a_file_it_cannot_open(tmp_path):
    """The stream made for the read is stopped: no thread left, no file."""
    import io
    import threading
    from mptcp_fast.cli.main import build_parser
    args = build_parser().parse_args(["analyze", str(tmp_path / "missing.pcap"), "--parquet",
                                      str(tmp_path / "t")])
    assert args.func(args, io.StringIO()) == 2
    assert not (tmp_path / "t" / "packets.parquet").exists()
    assert "packets.parquet" not in [t.name for t in threading.enumerate()]

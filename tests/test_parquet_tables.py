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


def test_packet_columns_are_required_and_the_selecting_ones_have_statistics(tmp_path):
    model = build_model(SHIPPED_CAPTURE, packets=True)
    path = tables.write_tables(model, tmp_path)[0]
    back = pq.read_table(path)
    assert not any(field.nullable for field in back.schema)
    group = pq.ParquetFile(path).metadata.row_group(0)
    with_statistics = {group.column(k).path_in_schema for k in range(group.num_columns)
                       if group.column(k).is_stats_set}
    assert with_statistics == set(tables.STATISTICS_COLUMNS)
    number = group.column(back.column_names.index("number")).statistics
    assert (number.min, number.max) == (min(back["number"].to_pylist()),
                                         max(back["number"].to_pylist()))

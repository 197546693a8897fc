"""The analyzer's results as tables for pandas, DuckDB or Spark: Parquet files
written with pyarrow (the optional extra ``pip install 'mptcp_fast[parquet]'``).

    write_tables(model, out_dir)        # model: model.build_model(path, packets=True)
        out_dir/packets.parquet      one row per TCP packet of an MPTCP connection
        out_dir/subflows.parquet     one row per subflow (the report's fields)
        out_dir/connections.parquet  one row per connection (streams flattened: up_*, down_*;
                                     up_gaps, up_pieces: lists of structs, as in the JSON)

The packet table holds the columns the capture decoder computes (number, time, addresses,
ports, seq, ack, flags, window, payload_len, the first DSS: dss_flags, data_ack, dsn, dss_ssn,
dss_len, dss_checksum, mptcp_subtypes) plus ``connection``, ``subflow`` (the numbers of the
report) and ``direction`` ("up": from the client). ``dss_flags`` bits: 1 DATA_ACK, 2 64-bit
DATA_ACK, 4 mapping, 8 64-bit DSN, 16 DATA_FIN; 255 when the packet has no DSS. It is the
model's per-packet table (``packets.PacketTable``), gathered while the analyzer read the file.
"""

from __future__ import annotations

import os

from .packets import PACKET_COLUMNS

__all__ = ["write_tables", "write_parquet", "PACKET_COLUMNS"]


def _model_with_packets(capture_path):
    from .model import build_model
    return build_model(capture_path, packets=True)


def packet_table(report, capture_path):
    """The per-packet table (a pyarrow.Table) of the capture ``report`` was made from (the
    file is analysed again for it: with a model at hand, ``model.packets.arrow()``)."""
    return _model_with_packets(capture_path).packets.arrow()


def packet_arrays(report, capture_path) -> dict:
    """The per-packet columns as numpy arrays (``direction``, ``src``, ``dst``: object
    arrays of text) of the capture ``report`` was made from (analysed again for them: with a
    model at hand, ``model.packets``)."""
    return _model_with_packets(capture_path).packets.arrays()


def subflow_table(report):
    rows = []
    for c in report["connections"]:
        for i, s in enumerate(c["subflows"], 1):
            rows.append({"connection": c["connection"], "subflow": i, "client": s["client"],
                         "server": s["server"], "initial": s["initial"],
                         "first_packet": s["first_packet"], "backup": s["backup"],
                         "client_address_id": s["client_address_id"],
                         "server_address_id": s["server_address_id"],
                         "bytes_up": s["bytes"]["up"], "bytes_down": s["bytes"]["down"],
                         "share_up": s["share"]["up"], "share_down": s["share"]["down"],
                         "reinjected_up": s["reinjected_bytes"]["up"],
                         "reinjected_down": s["reinjected_bytes"]["down"],
                         "join_synack_hmac": s["join_synack_hmac"],
                         "join_ack_hmac": s["join_ack_hmac"],
                         "handshake_seen": s["handshake_seen"],
                         "unverified_checksums": s["unverified_checksums"]})
    return _table(rows)


def connection_table(report):
    rows = []
    for c in report["connections"]:
        row = {k: c[k] for k in ("connection", "version", "checksums", "client_key",
                                 "server_key", "client_token", "server_token", "fallback",
                                 "placed")}
        row["subflows"] = len(c["subflows"])
        row["add_addr"] = len(c["add_addr"])
        row["events"] = len(c["events"])
        row["anomalies"] = len(c["anomalies"])
        for name in ("up", "down"):
            for key, value in c["streams"][name].items():
                row[f"{name}_{key}"] = value
        rows.append(row)
    return _table(rows)


_UINT64 = ("up_data_fin", "up_data_acked", "up_start_dsn", "down_data_fin", "down_data_acked",
           "down_start_dsn")                   # 64-bit DSNs: beyond int64


def _list_types(pa) -> dict:
    """The Arrow types of a stream's lists (the JSON's; DSNs are 64 bits, beyond int64)."""
    gap = pa.struct([("dsn", pa.uint64()), ("stream_offset", pa.uint64()),
                     ("bytes", pa.int64())])
    piece = pa.struct([("dsn", pa.uint64()), ("stream_offset", pa.uint64()),
                       ("file_offset", pa.int64()), ("bytes", pa.int64()),
                       ("sha256", pa.string())])
    return {"gaps": pa.list_(gap), "pieces": pa.list_(piece),
            "zero_window_probe_packets": pa.list_(pa.int64())}


def _table(rows):
    import pyarrow as pa
    if not rows:
        return pa.table({})
    lists = _list_types(pa)

    def column_type(key):
        if key in _UINT64:
            return pa.uint64()
        return lists.get(key.partition("_")[2]) if key.startswith(("up_", "down_")) else None
    return pa.table({key: pa.array([row.get(key) for row in rows], type=column_type(key))
                     for key in rows[0]})


def write_tables(model, out_dir) -> list:
    """Write the three tables of ``model`` (built with ``packets=True``) into ``out_dir``;
    return their paths."""
    return write_arrow(tables_to_write(model), out_dir)


TEXT_COLUMNS = ("direction", "src", "dst")
# the packet table's text columns go to Parquet as the dictionaries they are (a few distinct
# texts): no text copied per row, no hashing of the numeric columns (whose values rarely
# repeat). Without the Arrow schema in the file they read back as text, the table equal to
# ``arrow_tables``' one. Its columns are required (no validity levels: they took a third of
# the write); statistics (each row group's minimum and maximum, for readers that skip row
# groups) for the columns one selects packets by only: for all, they took another quarter.
STATISTICS_COLUMNS = ("connection", "subflow", "number", "time")
PACKET_PARQUET = {"use_dictionary": list(TEXT_COLUMNS), "store_schema": False,
                  "write_statistics": list(STATISTICS_COLUMNS)}


def tables_to_write(model) -> list:
    """[(name, pyarrow.Table, options of pyarrow.parquet.write_table)] of ``model``."""
    return [("packets", model.packets.arrow(dictionaries=True), PACKET_PARQUET),
            ("subflows", subflow_table(model.report), {}),
            ("connections", connection_table(model.report), {})]


def arrow_tables(model) -> list:
    """[(name, pyarrow.Table)] of ``model``: packets, subflows, connections."""
    return [("packets", model.packets.arrow()), ("subflows", subflow_table(model.report)),
            ("connections", connection_table(model.report))]


def write_arrow(named_tables, out_dir) -> list:
    """Write [(name, table)] or [(name, table, options)] as ``out_dir/name.parquet``; return
    the paths. Arrow encodes and compresses without holding Python's lock, so this may run
    on a thread of its own."""
    import pyarrow.parquet as pq
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, table, *options in named_tables:
        path = os.path.join(out_dir, f"{name}.parquet")
        pq.write_table(table, path, **(options[0] if options else {}))
        written.append(path)
    return written


def write_parquet(report, capture_path, out_dir) -> list:
    """Write the three tables of ``report`` (the analysis of ``capture_path``, analysed again
    for its per-packet table: with a model at hand, ``write_tables``) into ``out_dir``."""
    return _write(packet_table(report, capture_path), report, out_dir)


def _write(packets, report, out_dir) -> list:
    return write_arrow([("packets", packets), ("subflows", subflow_table(report)),
                        ("connections", connection_table(report))], out_dir)

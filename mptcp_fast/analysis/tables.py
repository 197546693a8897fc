"""The analyzer's results as tables for pandas, DuckDB or Spark: Parquet files
written with pyarrow (the optional extra ``pip install 'mptcp_fast[parquet]'``).

    write_tables(model, out_dir)        # model: model.build_model(path, packets=True)
        out_dir/packets.parquet      one row per TCP packet of an MPTCP connection
        out_dir/subflows.parquet     one row per subflow (the report's fields)
        out_dir/connections.parquet  one row per connection (streams flattened: up_*, down_*)

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


def _table(rows):
    import pyarrow as pa
    if not rows:
        return pa.table({})
    return pa.table({key: pa.array([row.get(key) for row in rows],
                                   type=pa.uint64() if key in _UINT64 else None)
                     for key in rows[0]})


def write_tables(model, out_dir) -> list:
    """Write the three tables of ``model`` (built with ``packets=True``) into ``out_dir``;
    return their paths."""
    return write_arrow(tables_to_write(model), out_dir)


TEXT_COLUMNS = ("direction", "src", "dst")
# the packet table's text columns go to Parquet as the dictionaries they are (a few distinct
# texts): no text copied per row, no hashing of the numeric columns (whose values rarely
# repeat). Without the Arrow schema in the file they read back as text, the table equal to
# ``arrow_tables``' one.
PACKET_PARQUET = {"use_dictionary": list(TEXT_COLUMNS), "store_schema": False}


def tables_to_write(model) -> list:
    """[(name, pyarrow.Table, options of pyarrow.parquet.write_table)] of ``model``."""
    return [("packets", model.packets.arrow(dictionaries=True), PACKET_PARQUET),
            *report_tables(model.report)]


def report_tables(report) -> list:
    """[(name, pyarrow.Table, options)] of the subflow and connection tables."""
    return [("subflows", subflow_table(report), {}),
            ("connections", connection_table(report), {})]


def finish_tables(model, out_dir, others=None) -> list:
    """``write_tables`` for a model whose packet table may have been written as the file
    was read (``model.packet_stream``: a ``PacketStream``): that file is finished, the
    other tables (``others``: ``report_tables``, made now when not given) written; return
    the paths. Without a stream, or one given no rows, the tables are written at once."""
    stream = model.packet_stream
    others = report_tables(model.report) if others is None else others
    if stream is None or not stream.rows:
        if stream is not None:
            stream.abort()
        return write_arrow([tables_to_write(model)[0], *others], out_dir)
    return [stream.finish(), *write_arrow(others, out_dir)]


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


ROW_GROUP_ROWS = 1 << 17           # rows per row group of a packet table written as read


class PacketStream:
    """``out_dir/packets.parquet`` written while the capture is read (``build_model``'s
    ``packet_stream``): each batch's rows (``add``) go to a thread that writes a row group
    of ``ROW_GROUP_ROWS`` rows whenever it has that many (Arrow encodes and compresses
    without Python's lock, so it works while the file is read). ``finish()`` writes the rest
    and closes the file; ``abort()`` stops and removes it. Read back, the table is the one
    ``write_tables`` writes at once (in row groups of ``ROW_GROUP_ROWS`` rows instead of
    pyarrow's 1M)."""

    _FINISH, _ABORT = object(), object()

    def __init__(self, out_dir):
        import queue
        import threading
        import pyarrow.parquet            # noqa: F401  (ImportError here: no pyarrow)
        self.path = os.path.join(out_dir, "packets.parquet")
        self.rows = 0                     # rows handed over
        self._error = None
        self._aborted = False
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="packets.parquet",
                                        daemon=True)
        self._thread.start()

    def add(self, table) -> None:
        if self._error is None:
            self.rows += table.num_rows
            self._queue.put(table)

    def finish(self) -> str:
        """Write what is left and close the file; return its path. Raises what writing
        raised."""
        self._queue.put(self._FINISH)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.path

    def abort(self) -> None:
        """Stop writing, and remove the file (once: a later stream may write that path)."""
        if self._aborted:
            return
        self._aborted = True
        self._queue.put(self._ABORT)
        self._thread.join()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _run(self) -> None:
        writer, pending, count = None, [], 0
        try:
            while (item := self._queue.get()) is not self._ABORT:
                if item is not self._FINISH:
                    pending.append(item)
                    count += item.num_rows
                if count >= ROW_GROUP_ROWS or (item is self._FINISH and pending):
                    writer = writer or self._open(pending[0].schema)
                    writer.write_table(_concat(pending), row_group_size=max(count, 1))
                    pending, count = [], 0
                if item is self._FINISH:
                    break
        except BaseException as exc:      # raised by finish()
            self._error = exc
        finally:
            if writer is not None:
                writer.close()

    def _open(self, schema):
        import pyarrow.parquet as pq
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        return pq.ParquetWriter(self.path, schema, **PACKET_PARQUET)


def _concat(tables):
    import pyarrow as pa
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def write_parquet(report, capture_path, out_dir) -> list:
    """Write the three tables of ``report`` (the analysis of ``capture_path``, analysed again
    for its per-packet table: with a model at hand, ``write_tables``) into ``out_dir``."""
    return _write(packet_table(report, capture_path), report, out_dir)


def _write(packets, report, out_dir) -> list:
    return write_arrow([("packets", packets), ("subflows", subflow_table(report)),
                        ("connections", connection_table(report))], out_dir)

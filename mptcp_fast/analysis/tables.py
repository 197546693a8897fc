"""The analyzer's results as tables for pandas, DuckDB or Spark: Parquet files
written with pyarrow (the optional extra ``pip install 'mptcp_fast[parquet]'``).

    write_parquet(report, capture_path, out_dir)
        out_dir/packets.parquet      one row per TCP packet of an MPTCP connection
        out_dir/subflows.parquet     one row per subflow (the report's fields)
        out_dir/connections.parquet  one row per connection (streams flattened: up_*, down_*)

The packet table holds the columns the capture decoder computes (number, time, addresses,
ports, seq, ack, flags, window, payload_len, the first DSS: dss_flags, data_ack, dsn, dss_ssn,
dss_len, dss_checksum, mptcp_subtypes) plus ``connection``, ``subflow`` (the numbers of the
report) and ``direction`` ("up": from the client). ``dss_flags`` bits: 1 DATA_ACK, 2 64-bit
DATA_ACK, 4 mapping, 8 64-bit DSN, 16 DATA_FIN; 255 when the packet has no DSS.
"""

from __future__ import annotations

import ipaddress
import os

import numpy as np

from . import capture

__all__ = ["write_parquet", "PACKET_COLUMNS"]

PACKET_COLUMNS = ("number", "time", "sport", "dport", "seq", "ack", "flags", "window",
                  "payload_len", "mptcp_subtypes", "dss_flags", "data_ack", "dsn", "dss_ssn",
                  "dss_len", "dss_checksum")


def _endpoint_key(text: str) -> tuple[bytes, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")).packed, int(port)


def _flows(report) -> dict:
    """(client, server) endpoints -> [(first packet, connection, subflow)], latest last."""
    flows = {}
    for c in report["connections"]:
        for i, s in enumerate(c["subflows"], 1):
            key = (_endpoint_key(s["client"]), _endpoint_key(s["server"]))
            flows.setdefault(key, []).append((s["first_packet"], c["connection"], i))
    for entries in flows.values():
        entries.sort()
    return flows


def packet_table(report, capture_path):
    """The per-packet table (a pyarrow.Table) of the connections in ``report``."""
    import pyarrow as pa
    arrays = packet_arrays(report, capture_path)
    columns = {name: arrays[name] for name in ("connection", "subflow")}
    for name in ("direction", "src", "dst"):
        columns[name] = pa.array(list(arrays[name]), pa.string())
    for name in PACKET_COLUMNS:
        columns[name] = arrays[name]
    return pa.table(columns)


def packet_arrays(report, capture_path) -> dict:
    """The per-packet columns as numpy arrays (``direction``, ``src``, ``dst``: object
    arrays of text), for the time series (mptcp_fast.analysis.timeseries) and the tables."""
    flows = _flows(report)
    parts = {name: [] for name in PACKET_COLUMNS}
    extra = {"src": [], "dst": [], "connection": [], "subflow": [], "direction": []}
    with capture.open_capture(capture_path) as reader:
        for cols in reader.columns(65536, payloads=False):
            n = len(cols["number"])
            connection = np.zeros(n, np.int32)
            subflow = np.zeros(n, np.int32)
            direction = np.full(n, "", dtype=object)
            width = np.where(cols["family"] == 4, 4, 16)
            _, first, inverse = np.unique(capture.flow_keys(cols), axis=0, return_index=True,
                                          return_inverse=True)
            inverse = inverse.reshape(-1)
            group_src = np.empty(len(first), dtype=object)
            group_dst = np.empty(len(first), dtype=object)
            for g, row in enumerate(first):
                w = int(width[row])
                a = (bytes(cols["src"][row, :w]), int(cols["sport"][row]))
                b = (bytes(cols["dst"][row, :w]), int(cols["dport"][row]))
                group_src[g] = str(ipaddress.ip_address(a[0]))
                group_dst[g] = str(ipaddress.ip_address(b[0]))
                for key, name in (((a, b), "up"), ((b, a), "down")):
                    entries = flows.get(key)
                    if not entries:
                        continue
                    rows = np.nonzero(inverse == g)[0]
                    numbers = cols["number"][rows]
                    for first_packet, conn, sub in entries:     # later uses of the 4-tuple win
                        take = rows[numbers >= first_packet]
                        connection[take], subflow[take], direction[take] = conn, sub, name
            keep = connection > 0
            for name in PACKET_COLUMNS:
                parts[name].append(cols[name][keep])
            extra["src"].append(group_src[inverse][keep])
            extra["dst"].append(group_dst[inverse][keep])
            extra["connection"].append(connection[keep])
            extra["subflow"].append(subflow[keep])
            extra["direction"].append(direction[keep])
    columns = {"connection": np.concatenate(extra["connection"] or [np.zeros(0, np.int32)])}
    columns["subflow"] = np.concatenate(extra["subflow"] or [np.zeros(0, np.int32)])
    for name in ("direction", "src", "dst"):
        columns[name] = np.concatenate(extra[name]) if extra[name] else np.zeros(0, object)
    for name in PACKET_COLUMNS:
        columns[name] = np.concatenate(parts[name]) if parts[name] else np.zeros(0)
    return columns


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


def write_parquet(report, capture_path, out_dir) -> list:
    """Write the three tables of ``report`` (the analysis of ``capture_path``) into
    ``out_dir``; return their paths."""
    import pyarrow.parquet as pq
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, table in (("packets", packet_table(report, capture_path)),
                        ("subflows", subflow_table(report)),
                        ("connections", connection_table(report))):
        path = os.path.join(out_dir, f"{name}.parquet")
        pq.write_table(table, path)
        written.append(path)
    return written

"""The per-packet table of an analysed capture, gathered while the analyzer reads the file: the
rows of every packet of its MPTCP connections, with the decoder's columns and the subflow
direction the tracker placed each one on. The time series (``timeseries``) and the Parquet
tables (``tables``) are views of this one table: nothing reads the capture again.

``PACKET_COLUMNS`` are the decoder's columns kept per packet; ``connection`` and ``subflow``
are the report's numbers and ``up`` is True for packets from the client (who sent the SYN).
A packet belongs to the subflow its 4-tuple was registered to when it was read (a new SYN on a
4-tuple starts a new subflow from that packet on; the tracker's rule).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PACKET_COLUMNS", "PacketTable", "PacketTableBuilder"]

PACKET_COLUMNS = ("number", "time", "sport", "dport", "seq", "ack", "flags", "window",
                  "payload_len", "mptcp_subtypes", "dss_flags", "data_ack", "dsn", "dss_ssn",
                  "dss_len", "dss_checksum")
DIRECTION_NAMES = ("up", "down")


class PacketTableBuilder:
    """Collects, batch by batch, the rows the analyzer placed on a subflow of a connection."""

    FIRST_ROOM = 1 << 16                # rows reserved at least

    def __init__(self, rows_at_most: int = 0):
        # the rows so far, in arrays with room for more: ``rows_at_most`` (e.g. what a file
        # of its size can hold) rows are reserved at once, so that no row is copied twice;
        # the pages never written are never given memory
        self._columns: dict | None = None
        self._rows = 0
        self._rows_at_most = rows_at_most
        self._connection = np.zeros(0, np.int32)     # sid -> connection number (0: none)
        self._subflow = np.zeros(0, np.int32)        # sid -> subflow number in it
        self._labels: list = []                      # sid -> (client address, server address)

    def subflow(self, sid: int, connection: int, subflow: int, client: bytes,
                server: bytes) -> None:
        """Register the tracker's subflow ``sid`` (connection 0: a flow not analysed)."""
        if sid >= len(self._connection):
            grow = max(64, 2 * len(self._connection), sid + 1)
            self._connection = np.concatenate(
                [self._connection, np.zeros(grow - len(self._connection), np.int32)])
            self._subflow = np.concatenate(
                [self._subflow, np.zeros(grow - len(self._subflow), np.int32)])
            self._labels += [None] * (grow - len(self._labels))
        self._connection[sid], self._subflow[sid] = connection, subflow
        self._labels[sid] = (client, server)

    def add(self, cols, sides) -> None:
        """The rows of one batch: ``sides`` is the tracker's 2 * sid + direction per row (-1:
        no subflow)."""
        sid = np.where(sides >= 0, sides >> 1, 0)
        if len(self._connection):
            connection = np.where(sides >= 0, self._connection[sid], 0)
        else:
            connection = np.zeros(len(sides), np.int32)
        keep = connection > 0
        rows = slice(None) if keep.all() else np.nonzero(keep)[0]   # views when all are kept
        part = {name: cols[name][rows] for name in PACKET_COLUMNS}
        part["connection"] = connection[rows].astype(np.int32, copy=False)
        part["subflow"] = self._subflow[sid[rows]] if len(self._subflow) else \
            np.zeros(0, np.int32)
        part["side"] = sides[rows]
        self._append(part)

    def _append(self, part: dict) -> None:
        n = len(part["side"])
        if self._columns is None:
            try:
                self._columns = self._reserve(part, max(self._rows_at_most, n, self.FIRST_ROOM))
            except MemoryError:              # no room for that many at once: grow as needed
                self._columns = self._reserve(part, max(n, self.FIRST_ROOM))
        elif self._rows + n > len(self._columns["side"]):     # more than foreseen: grow
            room = max(2 * len(self._columns["side"]), self._rows + n)
            for name, values in self._columns.items():
                grown = np.empty(room, values.dtype)
                grown[:self._rows] = values[:self._rows]
                self._columns[name] = grown
        for name, values in part.items():
            self._columns[name][self._rows:self._rows + n] = values
        self._rows += n

    @staticmethod
    def _reserve(part: dict, rows: int) -> dict:
        return {name: np.empty(rows, values.dtype) for name, values in part.items()}

    def finish(self) -> "PacketTable":
        import ipaddress
        if self._columns is None:        # no packet at all: the layout of an empty read
            columns: dict[str, np.ndarray] = {
                "connection": np.zeros(0, np.int32), "subflow": np.zeros(0, np.int32),
                "side": np.zeros(0, np.int64)}
            columns.update({name: np.zeros(0) for name in PACKET_COLUMNS})
        else:
            columns = {name: self._columns[name][:self._rows]
                       for name in ("connection", "subflow", "side", *PACKET_COLUMNS)}
        self._columns, self._rows = None, 0
        side = columns.pop("side")
        columns["up"] = (side & 1) == 0
        # src / dst addresses as text, one entry per subflow direction seen
        # the subflow directions present, and each row's index among them: small integers,
        # so a lookup table instead of a sort
        present = np.zeros(int(side.max()) + 1 if len(side) else 0, bool)
        present[side] = True
        sides = np.nonzero(present)[0]
        lookup = np.zeros(len(present), np.int64)
        lookup[sides] = np.arange(len(sides))
        code = lookup[side]
        texts: list[str] = []
        src_code: list[int] = []
        dst_code: list[int] = []
        index = {}
        for s in sides.tolist():
            client, server = self._labels[s >> 1]
            src, dst = (client, server) if s & 1 == 0 else (server, client)
            for address, codes in ((src, src_code), (dst, dst_code)):
                if address not in index:
                    index[address] = len(texts)
                    texts.append(str(ipaddress.ip_address(address)))
                codes.append(index[address])
        code = code.reshape(-1)
        return PacketTable(columns, texts,
                           np.asarray(src_code, np.int32)[code] if len(code) else
                           np.zeros(0, np.int32),
                           np.asarray(dst_code, np.int32)[code] if len(code) else
                           np.zeros(0, np.int32))


class PacketTable:
    """The per-packet columns (numpy arrays by name: ``connection``, ``subflow``, ``up`` and
    ``PACKET_COLUMNS``); the addresses as codes into ``addresses`` (text)."""

    def __init__(self, columns: dict, addresses: list, src_code, dst_code):
        self.columns = columns
        self.addresses = addresses
        self.src_code, self.dst_code = src_code, dst_code

    def __len__(self) -> int:
        return len(self.columns["connection"])

    def __getitem__(self, name):
        return self.columns[name]

    def __contains__(self, name) -> bool:
        return name in self.columns

    def arrays(self) -> dict:
        """The layout of ``tables.packet_arrays``: ``direction``, ``src``, ``dst`` as object
        arrays of text."""
        out = {"connection": self.columns["connection"], "subflow": self.columns["subflow"]}
        out["direction"] = np.array(DIRECTION_NAMES, dtype=object)[
            (~self.columns["up"]).astype(np.intp)]
        texts = np.array(self.addresses + [""], dtype=object)
        out["src"], out["dst"] = texts[self.src_code], texts[self.dst_code]
        for name in PACKET_COLUMNS:
            out[name] = self.columns[name]
        return out

    def arrow(self, dictionaries: bool = False):
        """The table for Parquet (pyarrow): connection, subflow, direction, src, dst, then
        ``PACKET_COLUMNS``, none of them nullable; the text columns are built in Arrow from
        the codes. With
        ``dictionaries``, the text columns are dictionary arrays over the codes (no text is
        copied per row; written to Parquet without the Arrow schema they read back as the
        text columns: ``tables.write_tables``)."""
        import pyarrow as pa
        out = {"connection": pa.array(self.columns["connection"]),
               "subflow": pa.array(self.columns["subflow"])}
        direction = pa.array((~self.columns["up"]).astype(np.int8))
        names = pa.array(list(DIRECTION_NAMES), pa.string())
        texts = pa.array(self.addresses, pa.string())
        src, dst = pa.array(self.src_code), pa.array(self.dst_code)
        if dictionaries:
            out["direction"] = pa.DictionaryArray.from_arrays(direction, names)
            out["src"] = pa.DictionaryArray.from_arrays(src, texts)
            out["dst"] = pa.DictionaryArray.from_arrays(dst, texts)
        else:
            out["direction"], out["src"], out["dst"] = \
                names.take(direction), texts.take(src), texts.take(dst)
        for name in PACKET_COLUMNS:
            out[name] = pa.array(self.columns[name])
        # every column has a value in every row: declared so (no validity levels to write)
        schema = pa.schema([pa.field(name, column.type, nullable=False)
                            for name, column in out.items()])
        return pa.Table.from_arrays(list(out.values()), schema=schema)

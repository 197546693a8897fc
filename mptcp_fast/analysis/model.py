"""What an analysed capture holds, built in one read of the file: the analyzer's connections
and subflows (typed: keys as integers, addresses as bytes), the report made from them, and,
when asked for, the per-packet table. Every output is a view of this model: the text and
JSON reports (the report dict), the time series and figures (``timeseries.model_series``),
the Parquet tables (``tables.write_tables``).

    from mptcp_fast.analysis.model import build_model
    model = build_model("trace.pcap", packets=True)
    model.report              # the dict of analyze()
    model.connections         # analyzer.Connection objects
    model.packets             # packets.PacketTable (None unless packets=True)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from . import capture, midstream
from .analyzer import BATCH_PACKETS, BATCH_PAYLOAD, Analyzer

__all__ = ["CaptureModel", "analyze", "analyze_file", "build_model", "model_of_file",
           "small_pages"]


@dataclass
class CaptureModel:
    """One analysed capture (see the module text): ``report`` (the dict of
    ``analyze``), ``connections`` (the analyzer's typed connections, in report
    order), ``packets`` (the per-packet table, or None) and ``reads`` (how many times the
    file was read: 2 when flows without handshakes were placed)."""
    report: dict
    connections: list           # analyzer.Connection, in report order
    packets: object = None      # packets.PacketTable, or None
    reads: int = 1              # times the file was read (2: flows placed without handshakes)


def analyze(path, dump_dir: str | None = None, progress=None) -> dict:
    """Analyse a capture file; a cut or corrupt file raises CaptureError after the packets
    before the damage were analysed (the partial report is on the exception as ``report``).
    ``progress(byte_offset)`` is called after every batch when given. The report of
    ``build_model``, which also keeps the per-packet table on request.

    Args:
        path: the pcap or pcapng file.
        dump_dir: write each connection's rebuilt streams there
            (``connectionN-up.bin``, ``connectionN-down.bin``).
        progress: called with the byte offset reached after every batch.

    Returns:
        The report: the dict ``mptcp-fast analyze --json`` prints for one file.

    Raises:
        CaptureError: the file is cut, corrupt or not a capture (``exc.report`` holds the
            report of what came before).
        OSError: the file cannot be read.
    """
    return build_model(path, dump_dir, progress).report


def analyze_file(path, dump_dir: str | None = None, progress=None) -> dict:
    """``analyze`` for one file among many (a process pool, or a cluster scheduler such as
    Dask: ``dask.bag.from_sequence(paths).map(analyze_file)``): never raises for the file's
    own faults. A cut or corrupt file gives the report of what came before with ``"error"``
    set; a file that cannot be read at all gives ``{"capture": path, "error": ...}``."""
    return model_of_file(path, dump_dir, progress).report


def build_model(path, dump_dir: str | None = None, progress=None, *,
                packets: bool = False) -> CaptureModel:
    """Analyse a capture file (``analyze``), keeping the per-packet table when
    ``packets``. A cut or corrupt file raises CaptureError after the packets before the
    damage were analysed: the partial report is on the exception as ``report``, the partial
    model as ``model``. ``progress(byte_offset)`` is called after every batch when given."""
    analyzer = _analyze_pass(path, dump_dir, progress, None, packets)
    reads = 1
    if analyzer.unplaced:
        # MPTCP flows without handshakes, surveyed while the first pass read them. They are
        # analysed in a second read: their ISNs and the first data-level byte of each stream
        # are minima over the whole capture, needed before the first byte can be placed, and
        # holding their packets (payload included) until the end would make memory follow the
        # capture's size instead of its live connections.
        found = analyzer.survey_collector.survey()
        if found is None:            # rows of those 4-tuples came before they were unplaced
            found = _survey_file(path, set(analyzer.unplaced))
            reads += 1
        if found is not None and found.flows:
            analyzer = _analyze_pass(path, dump_dir, progress, found, packets)
            reads += 1
    return _model(analyzer, reads)


def model_of_file(path, dump_dir: str | None = None, progress=None, *,
                  packets: bool = False) -> CaptureModel:
    """``build_model`` for one file among many: never raises for the file's own faults. A cut
    or corrupt file gives the model of what came before with ``"error"`` in its report; a
    file that cannot be read at all gives an empty model whose report is
    ``{"capture": path, "error": ...}``."""
    try:
        model = build_model(path, dump_dir, progress, packets=packets)
    except capture.CaptureError as exc:
        model = getattr(exc, "model", None) or CaptureModel(
            dict(getattr(exc, "report", None) or {}), [])
        model.report["error"] = str(exc)
    except OSError as exc:
        return CaptureModel({"capture": os.fspath(path), "error": str(exc)}, [])
    model.report = {"capture": os.fspath(path), **model.report}
    return model


def _rows_at_most(path) -> int:
    """The most packets a capture file of this size can hold (0: not known)."""
    try:
        return min(os.path.getsize(path) // SMALLEST_RECORD, ROWS_RESERVED_AT_MOST)
    except (OSError, TypeError, ValueError):
        return 0


def _survey_file(path, wanted):
    """The survey in a read of its own (the first pass could not gather it: a 4-tuple was in
    use before its flow turned out to be unplaced)."""
    with capture.open_capture(path) as reader:
        try:
            return midstream.survey(reader.columns(BATCH_PACKETS, payloads=False), wanted)
        except capture.CaptureError:
            return None                  # the first pass reports the damage


def _model(analyzer, reads: int) -> CaptureModel:
    table = analyzer.packet_table
    return CaptureModel(analyzer.report(), list(analyzer.connections),
                        None if table is None else table.finish(), reads)


# the fewest bytes a packet of the table takes in a file: a pcap record header (16) and the
# IPv4 and TCP headers (40)
SMALLEST_RECORD = 56
ROWS_RESERVED_AT_MOST = 1 << 24     # beyond: the table grows as it fills


def _analyze_pass(path, dump_dir, progress, survey, packets):
    analyzer = Analyzer(dump_dir, survey=survey, packets=packets,
                        packet_rows_at_most=_rows_at_most(path) if packets else 0)
    with capture.open_capture(path) as reader:
        try:
            for cols in reader.columns(BATCH_PACKETS, payloads=True, payload_bytes=BATCH_PAYLOAD):
                analyzer.feed_columns(cols)
                if progress is not None:
                    progress(int(cols["record_offset"][-1]))
        except capture.CaptureError as exc:
            exc.model = _model(analyzer, 1)
            exc.report = exc.model.report
            raise
    return analyzer


@contextmanager
def small_pages():
    """numpy's arrays of 4 MiB and more in ordinary (4 KiB) pages while in the block.

    numpy asks the kernel for transparent huge pages for every such array (madvise), and
    where the kernel grants them on request each first touch clears a whole 2 MiB page.
    The per-packet table and the time series are such arrays, written once and soon freed;
    in a virtual machine whose memory the host supplies as the guest first touches it, those
    clears are dear and their cost swings (``analyze --plot --parquet`` of a capture of 1.3M
    packets, under load: 130 huge pages, 0.44-0.60 s of system time in the analysing
    process, 0.25-0.29 s with small pages, whose faults are more but each cheap; on a quiet
    machine huge pages were as fast at best and slower in the median). Does nothing where
    numpy has no such switch."""
    from numpy._core import multiarray
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    before = switch(False) if switch is not None else None
    try:
        yield
    finally:
        if switch is not None:
            switch(before)

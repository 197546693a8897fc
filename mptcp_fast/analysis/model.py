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
    set; a file that cannot be read at all, is not a capture or is cut before its first
    record gives ``{"capture": path, "error": ...}``."""
    return model_of_file(path, dump_dir, progress).report


def build_model(path, dump_dir: str | None = None, progress=None, *,
                packets: bool = False) -> CaptureModel:
    """Analyse a capture file (``analyze``), keeping the per-packet table when
    ``packets``. A cut or corrupt file raises CaptureError after the packets before the
    damage were analysed: the partial report is on the exception as ``report``, the partial
    model as ``model``. ``progress(byte_offset)`` is called after every batch when given."""
    analyzer, damage = _analyze_pass(path, dump_dir, progress, None, packets)
    reads = 1
    if analyzer.unplaced:
        # MPTCP flows without handshakes, surveyed while the first pass read them. They are
        # analysed in a second read: their ISNs and the first data-level byte of each stream
        # are minima over the whole capture, needed before the first byte can be placed, and
        # holding their packets (payload included) until the end would make memory follow the
        # capture's size instead of its live connections. A damaged file is read again too:
        # up to its damage, which the second read meets where the first did (tcpdump killed
        # mid-write, after it was started mid-transfer: such flows are all the file has).
        found = analyzer.survey_collector.survey()
        if found is None:            # rows of those 4-tuples came before they were unplaced
            found = _survey_file(path, set(analyzer.unplaced))
            reads += 1
        if found is not None and found.flows:
            analyzer, damage = _analyze_pass(path, dump_dir, progress, found, packets)
            reads += 1
    model = _model(analyzer, reads)
    if damage is not None:
        damage.model, damage.report = model, model.report
        raise damage
    return model


def model_of_file(path, dump_dir: str | None = None, progress=None, *,
                  packets: bool = False) -> CaptureModel:
    """``build_model`` for one file among many: never raises for the file's own faults. A cut
    or corrupt file gives the model of what came before with ``"error"`` in its report; a
    file that cannot be read at all, is not a capture (a text file) or is cut before its
    first record gives an empty model whose report is ``{"capture": path, "error": ...}``:
    it holds nothing to report."""
    try:
        model = build_model(path, dump_dir, progress, packets=packets)
    except capture.CaptureError as exc:
        if getattr(exc, "records", None) == 0:     # not a capture, or cut before its first
            return _error_only(path, exc)          # record: nothing to report
        model = getattr(exc, "model", None) or CaptureModel(
            dict(getattr(exc, "report", None) or {}), [])
        model.report["error"] = str(exc)
    except OSError as exc:
        return _error_only(path, exc)
    model.report = {"capture": os.fspath(path), **model.report}
    return model


def _error_only(path, exc) -> CaptureModel:
    """The model of a file nothing could be read from: its report is the error alone."""
    return CaptureModel({"capture": os.fspath(path), "error": str(exc)}, [])


def _rows_at_most(path) -> int:
    """The most packets a capture file of this size can hold (0: not known)."""
    try:
        return min(os.path.getsize(path) // SMALLEST_RECORD, ROWS_RESERVED_AT_MOST)
    except (OSError, TypeError, ValueError):
        return 0


def _survey_file(path, wanted):
    """The survey in a read of its own (the first pass could not gather it: a 4-tuple was in
    use before its flow turned out to be unplaced), of the packets before any damage (the
    first pass reports the damage)."""
    with capture.open_capture(path) as reader:
        return midstream.survey(_until_damage(reader.columns(BATCH_PACKETS, payloads=False)),
                                wanted)


def _until_damage(batches):
    """The batches of a capture reader before a cut or corrupt record, if any."""
    try:
        yield from batches
    except capture.CaptureError:
        return


def _model(analyzer, reads: int) -> CaptureModel:
    table = analyzer.packet_table
    return CaptureModel(analyzer.report(), list(analyzer.connections),
                        None if table is None else table.finish(), reads)


# the fewest bytes a packet of the table takes in a file: a pcap record header (16) and the
# IPv4 and TCP headers (40)
SMALLEST_RECORD = 56
ROWS_RESERVED_AT_MOST = 1 << 24     # beyond: the table grows as it fills


def _analyze_pass(path, dump_dir, progress, survey, packets) -> tuple:
    """One read of the file: (the analyzer fed every packet before any damage, the
    CaptureError of the damage or None). The error's ``records`` says how many records were
    read before it (0: the file is not a capture, or is cut before its first record)."""
    analyzer = Analyzer(dump_dir, survey=survey, packets=packets,
                        packet_rows_at_most=_rows_at_most(path) if packets else 0)
    with capture.open_capture(path) as reader:
        try:
            for cols in reader.columns(BATCH_PACKETS, payloads=True, payload_bytes=BATCH_PAYLOAD):
                analyzer.feed_columns(cols)
                if progress is not None:
                    progress(int(cols["record_offset"][-1]))
        except capture.CaptureError as exc:
            exc.records = reader.stats.records
            return analyzer, exc
    return analyzer, None


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

"""Reading capture files: pcap / pcapng to TCP segments.

    from mptcp_fast.analysis import capture
    with capture.open_capture("x.pcap") as reader:
        for seg in reader:
            seg.src, seg.sport, seg.seq, seg.options, seg.payload ...
        reader.stats.as_dict()      # records, tcp, non_tcp, fragments, truncated_* ...

A truncated or corrupt file raises CaptureError naming the byte offset, after
every packet before it has been yielded. The reading and decoding is a hot path
with two twins (pyx/mptcp_fast/analysis/_pcap_c.pyx, analysis/_pcap_py.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import numpy as np

from .. import _check
from ..errors import CaptureError
from ._pcap_common import COLUMN_TYPES, Stats

__all__ = ["TcpSegment", "CaptureReader", "open_capture", "CaptureError", "check_columns",
           "MAX_BATCH"]

MAX_BATCH = 1 << 20          # rows per column batch: the arrays are reserved up front


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment of a capture. ``payload`` holds the captured payload bytes;
    ``payload_len`` is the length the IP header announces (larger when ``truncated``)."""
    number: int                 # 1-based packet number in the file
    time: float                 # seconds since the epoch
    interface: int
    src: bytes                  # packed address, 4 or 16 bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    options: bytes              # the TCP options area
    payload: bytes
    payload_len: int
    truncated: bool
    offset: int                 # byte offset of the record in the file

    @property
    def src_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The source address as an ``ipaddress.IPv4Address`` or ``IPv6Address``."""
        return ipaddress.ip_address(self.src)

    @property
    def dst_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The destination address as an ``ipaddress.IPv4Address`` or ``IPv6Address``."""
        return ipaddress.ip_address(self.dst)


class CaptureReader:
    """A pcap or pcapng capture, read as a stream: iterate it for its ``TcpSegment``s, or
    call ``columns()`` for numpy batches (one pass; iterate or take columns, not both).
    ``stats`` counts what was read and skipped (``stats.as_dict()``: records, tcp, non_tcp,
    fragments, truncated ones, ...).

    Link types: Ethernet (VLAN/QinQ), Linux SLL and SLL2, raw IP/IPv4/IPv6, BSD loopback.

    Args:
        file: a binary file object open for reading (it need not seek: standard input
            works); the reader closes it with ``close()`` or at the end of a ``with`` block.

    Iterating raises ``CaptureError`` (naming the byte offset) at a cut or corrupt record or
    a file that is no pcap or pcapng, after yielding every segment before it.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._impl = _impl
        self.stats = Stats()

    def __iter__(self) -> Iterator[TcpSegment]:
        return self._impl.iter_segments(self._file, self.stats, TcpSegment)

    def columns(self, batch: int = 65536, payloads: bool = True,
                payload_bytes: int = 1 << 24) -> Iterator[dict[str, np.ndarray]]:
        """Decode the file into batches of numpy columns, in one compiled pass per batch.

        Each batch is a dict: ``number`` (int64), ``time`` (float64), ``interface``,
        ``family`` (4 or 6), ``src`` / ``dst`` ((n, 16) uint8; IPv4 in the first 4 bytes),
        ``sport``, ``dport``, ``seq``, ``ack``, ``flags``, ``window``, ``payload_len`` (as the
        IP header says), ``captured_len``, ``truncated``, ``record_offset``; the TCP options
        as ``options_blob[options_start:options_start + options_len]`` and the payload as
        ``payload_blob[payload_start:payload_start + captured_len]`` (``payloads=False``
        keeps no payload: payload_start is -1; a batch ends early once it holds
        ``payload_bytes`` of payload); and the MPTCP fields: ``mptcp_subtypes`` (bit i set
        when subtype i is present), ``options_malformed`` (a broken TLV structure, a known TCP
        option or a DSS with a length the codec rejects, an MPTCP option without its subtype
        octet; other MPTCP subtypes are checked by the full parse only) and the first valid
        DSS: ``dss_flags``
        (0xFF when none), ``data_ack``, ``dsn``, ``dss_ssn``, ``dss_len``, ``dss_checksum``
        (-1 when none). A cut or corrupt file yields the batch before the bad record, then
        raises CaptureError.

        ``batch`` is 1..MAX_BATCH rows, ``payload_bytes`` at least 1 (ValueError otherwise)."""
        batch = _check.in_range("batch", batch, 1, MAX_BATCH)
        payload_bytes = _check.in_range("payload_bytes", payload_bytes, 1, 1 << 40)
        return self._impl.iter_columns(self._file, self.stats, batch, bool(payloads),
                                       payload_bytes)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(path) -> CaptureReader:
    """Open the pcap or pcapng file at ``path`` for reading: a ``CaptureReader``, to use in a
    ``with`` block (which closes the file).

        with open_capture("trace.pcapng") as reader:
            for seg in reader:                  # TcpSegment
                print(seg.number, seg.src_ip, seg.sport, seg.dst_ip, seg.dport, seg.seq)

    Args:
        path: the file's path (str, bytes or os.PathLike).

    Raises:
        OSError: the file cannot be opened (FileNotFoundError, PermissionError, ...).

    A file that is not a capture raises ``CaptureError`` when it is read, not here.
    """
    return CaptureReader(open(path, "rb"))


def group_directions(cols, rows) -> tuple:
    """Group the packets ``rows`` of a batch by direction of a flow (source and destination
    address and port: the tracker's key is the same for both directions of a 4-tuple, the
    engine's wire.segment.flow_key puts the subflow's own side first). Returns (first,
    inverse) as ``np.unique(keys, axis=0, return_index=True, return_inverse=True)`` would for
    the 36-byte keys (addresses, then ports big-endian): the groups in key order, ``first``
    the position in ``rows`` of each group's first packet, ``inverse`` each packet's group.
    A stable sort over five integer columns: np.unique over rows of bytes sorts them as
    opaque records, two orders of magnitude slower on a batch."""
    addresses = [np.ascontiguousarray(cols[name][rows]).view(">u8") for name in ("src", "dst")]
    ports = cols["sport"][rows].astype(np.uint32) << 16 | cols["dport"][rows].astype(np.uint32)
    columns = [addresses[0][:, 0], addresses[0][:, 1], addresses[1][:, 0], addresses[1][:, 1],
               ports]
    order = np.lexsort(columns[::-1])            # the last key is the primary one
    if not len(order):
        return order, order
    ordered = [c[order] for c in columns]
    starts = np.zeros(len(order), dtype=bool)      # where each group begins in key order
    starts[0] = True
    for c in ordered:
        starts[1:] |= c[1:] != c[:-1]
    group = np.cumsum(starts) - 1
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = group
    return order[starts], inverse


def check_columns(cols) -> int:
    """Check a batch of columns (the layout ``CaptureReader.columns`` yields) before compiled
    code reads it, and return its row count: every column present with its dtype, one
    dimension (``src``/``dst``: (n, 16)), C-contiguous, n rows; the blobs are bytes; every
    options and captured payload range lies inside its blob. Anything else is a
    CaptureError naming the column, so no reader reads outside a buffer whatever it is given."""
    if not hasattr(cols, "get"):
        raise CaptureError(f"columns must be a dict of arrays, not {type(cols).__name__}")
    number = cols.get("number")
    if not isinstance(number, np.ndarray) or number.ndim != 1:
        raise CaptureError("column 'number' must be a one-dimensional numpy array")
    n = len(number)
    shapes: dict[str, tuple[int, ...]] = {name: (n,) for name in COLUMN_TYPES}
    shapes.update(src=(n, 16), dst=(n, 16))
    types = dict(COLUMN_TYPES, src="uint8", dst="uint8")
    for name, shape in shapes.items():
        arr = cols.get(name)
        if not isinstance(arr, np.ndarray):
            raise CaptureError(f"column {name!r} is missing or not a numpy array")
        if arr.dtype != np.dtype(types[name]) or arr.shape != shape or not arr.flags.c_contiguous:
            raise CaptureError(f"column {name!r} must be a C-contiguous {types[name]} array of "
                               f"shape {shape}, got {arr.dtype} {arr.shape}")
    for blob in ("payload_blob", "options_blob"):
        if type(cols.get(blob)) is not bytes:
            raise CaptureError(f"column {blob!r} must be bytes")
    _check_ranges("options", cols["options_start"].astype(np.int64), cols["options_len"],
                  len(cols["options_blob"]), np.ones(n, dtype=bool))
    _check_ranges("payload", cols["payload_start"], cols["captured_len"],
                  len(cols["payload_blob"]), cols["payload_start"] >= 0)
    whole = (cols["payload_start"] >= 0) & ~cols["truncated"]
    if np.any(cols["captured_len"][whole] != cols["payload_len"][whole]):
        raise CaptureError("column 'captured_len' differs from 'payload_len' on a packet not "
                           "marked truncated")
    if np.any(cols["payload_start"] < -1):
        raise CaptureError("column 'payload_start' holds a value below -1")
    checksums = cols["dss_checksum"]
    if np.any((checksums < -1) | (checksums > 0xFFFF)):
        raise CaptureError("column 'dss_checksum' holds a value outside -1..65535")
    return n


def _check_ranges(what: str, starts, lengths, blob_length: int, used) -> None:
    # start + length may overflow int64: compare the start with what the blob leaves instead
    room = blob_length - lengths[used].astype(np.int64)
    if np.any(starts[used] < 0) or np.any(starts[used] > room):
        raise CaptureError(f"column '{what}_start' points outside '{what}_blob' "
                           f"({blob_length} bytes)")


_impl: Any = None      # the active twin, _pcap_c or _pcap_py


def _bind(impl: Any) -> None:
    global _impl
    _impl = impl


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_pcap", _bind)

"""Reading capture files: pcap / pcapng to TCP segments (first part of issue #5).

    from mptcp_fast import capture
    with capture.open_capture("x.pcap") as reader:
        for seg in reader:
            seg.src, seg.sport, seg.seq, seg.options, seg.payload ...
        reader.stats.as_dict()      # records, tcp, non_tcp, fragments, truncated_* ...

A truncated or corrupt file raises CaptureError naming the byte offset, after
every packet before it has been yielded. The reading and decoding is a hot path
with two twins (pyx/_pcap.pyx, _pure/_pcap.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .errors import CaptureError

__all__ = ["TcpSegment", "CaptureReader", "open_capture", "CaptureError"]


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
    def src_ip(self):
        return ipaddress.ip_address(self.src)

    @property
    def dst_ip(self):
        return ipaddress.ip_address(self.dst)


class CaptureReader:
    """Iterate a capture's TCP segments; ``stats`` counts what was skipped."""

    def __init__(self, file):
        self._file = file
        self._impl = _impl
        self.stats = _impl.Stats()

    def __iter__(self):
        return self._impl.iter_segments(self._file, self.stats, TcpSegment)

    def columns(self, batch: int = 65536, payloads: bool = True, payload_bytes: int = 1 << 24):
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
        raises CaptureError."""
        return self._impl.iter_columns(self._file, self.stats, batch, payloads, payload_bytes)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_capture(path) -> CaptureReader:
    return CaptureReader(open(path, "rb"))


_impl = None


def _bind(impl) -> None:
    global _impl
    _impl = impl


from . import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_pcap", _bind)

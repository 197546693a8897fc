"""What the capture API (``mptcp_fast.analysis.capture``) and both capture-reading twins
(``_pcap_py``, ``_pcap_c``) share, defined once: the counters of what a read skipped, and the
column layout a batch of ``CaptureReader.columns`` has (name -> numpy dtype; ``src`` and
``dst`` are (n, 16) uint8 besides, and the blobs bytes).
"""

from __future__ import annotations

__all__ = ["Stats", "COLUMN_TYPES"]


class Stats:
    """What the reader skipped or could use only in part."""
    __slots__ = ("records", "tcp", "non_tcp", "fragments", "truncated_headers",
                 "truncated_payloads", "unknown_link")
    records: int
    tcp: int
    non_tcp: int
    fragments: int
    truncated_headers: int
    truncated_payloads: int
    unknown_link: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


COLUMN_TYPES = {
    "number": "int64", "time": "float64", "interface": "uint32", "family": "uint8",
    "sport": "uint16", "dport": "uint16", "seq": "uint32", "ack": "uint32", "flags": "uint8",
    "window": "uint16", "payload_len": "uint32", "captured_len": "uint32", "truncated": "bool",
    "record_offset": "int64", "options_start": "uint32", "options_len": "uint8",
    "payload_start": "int64", "mptcp_subtypes": "uint16", "options_malformed": "bool",
    "dss_flags": "uint8",
    "data_ack": "uint64", "dsn": "uint64", "dss_ssn": "uint32", "dss_len": "uint16",
    "dss_checksum": "int32",
}

"""The data sequence mapping types, defined once: what ``mptcp_fast.wire.dss`` (which exports
them) and the twins of the reassembly and sender sides (``_dss_py`` / ``_dss_c``,
``_sender_py`` / ``_sender_c``) build and read. The twins import this module; it imports
neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _check

__all__ = ["Mapping", "SentRange", "WHOLE_PIECE"]

_MASK64 = (1 << 64) - 1
# ReassemblyQueue.read_some hands a first piece this large alone, uncopied (the compiled twin
# has the same number as a C constant)
WHOLE_PIECE = 8192


# ------------------------------------------------------------------------------------------------
# mappings (RFC 8684 §3.3.1): subflow sequence space -> data sequence space

@dataclass(frozen=True)
class Mapping:
    """One data sequence mapping: ``length`` is the Data-Level Length of the option
    (the DATA_FIN, if any, counts one and has no subflow byte); 0 is the infinite mapping."""
    dsn: int
    subflow_seq: int
    length: int
    data_fin: bool = False
    checksum: int | None = None

    def __post_init__(self):
        """Every field checked once, here (TypeError / ValueError): a 64-bit DSN, a 16-bit
        Data-Level Length and checksum, and relative subflow sequence numbers below 2**63
        (the data sequence layer's range, mptcp_fast.wire.serial). Plain ints in range take the
        fast path; anything else goes through mptcp_fast._check (numpy ints become ints)."""
        dsn, ssn, length, fin, csum = (self.dsn, self.subflow_seq, self.length, self.data_fin,
                                       self.checksum)
        if (type(dsn) is int and type(ssn) is int and type(length) is int and type(fin) is bool
                and 0 <= dsn <= _MASK64 and 0 <= length <= 0xFFFF and 0 <= ssn
                and ssn + length <= _check.I64_MAX
                and (csum is None or (type(csum) is int and 0 <= csum <= 0xFFFF))):
            return
        fix = object.__setattr__
        fix(self, "dsn", _check.uint("dsn", dsn, 64))
        fix(self, "length", _check.uint("length", length, 16))
        fix(self, "data_fin", _check.flag("data_fin", fin))
        if csum is not None:
            fix(self, "checksum", _check.uint("checksum", csum, 16))
        fix(self, "subflow_seq", _check.in_range("subflow_seq", ssn, 0,
                                                 _check.I64_MAX - max(self.payload_length, 0)))

    @property
    def infinite(self) -> bool:
        return self.length == 0

    @property
    def payload_length(self) -> int:
        """Subflow bytes covered (the DATA_FIN takes a DSN but no subflow byte)."""
        return self.length - 1 if self.data_fin else self.length

    @property
    def subflow_end(self) -> int:
        return self.subflow_seq + self.payload_length

    @property
    def data_fin_dsn(self) -> int | None:
        return (self.dsn + self.length - 1) & _MASK64 if self.data_fin else None

    def covers(self, subflow_seq: int) -> bool:
        """Whether the relative subflow byte ``subflow_seq`` lies in this mapping."""
        return self.subflow_seq <= subflow_seq and (self.infinite or subflow_seq < self.subflow_end)

    def dsn_of(self, subflow_seq: int) -> int:
        """The DSN this mapping gives the relative subflow byte ``subflow_seq``."""
        return (self.dsn + subflow_seq - self.subflow_seq) & _MASK64


@dataclass(frozen=True)
class SentRange:
    """Data-level bytes [dsn, dsn + length) sent on ``subflow`` at subflow sequence ``subflow_seq``."""
    dsn: int
    length: int
    subflow: object
    subflow_seq: int

"""The sending side of the data sequence (RFC 8684 §3.3.6): which DSNs went out on which
subflow, what the peer's DATA_ACK has covered, and what a failed subflow leaves to reinject.

One source for both backends: this module runs as it is as the pure backend, and setup.py
compiles it with Cython (pure-Python mode, typed by ``pyx/mptcp_fast/_sender.pxd``) into
``mptcp_fast._sender`` for the compiled one.

The structure follows the shape of a QUIC stream sender (aioquic's): positions are offsets
from the initial DSN, so they only grow; the DATA_ACK is cumulative (RFC 8684 §3.3.2), so
"acknowledged" is one offset and acknowledging costs O(1) plus, amortised, the records it
retires; every subflow keeps its sent ranges in the order they went out, trimmed from the
front as the DATA_ACK passes them. A reinjection query reads only the failed subflow's
records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from mptcp_fast import _check        # absolute: the compiled build is mptcp_fast.wire._sender_c
from mptcp_fast.wire._dss_common import Mapping as _Mapping, SentRange as _SentRange

if not cython.compiled:     # compiled: pyx/mf_gc.pxd's C call, cimported by _sender_c.pxd
    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (a list of numbers, never in a
        reference cycle); the pure run has nothing to do."""

if TYPE_CHECKING:
    from typing import Hashable  # noqa: F401  (in the type comments)

# Parameters are typed for type checkers by type comments (``# type: (...) -> ...``), which
# Cython does not read: it compiles this source, and a parameter's annotation would become a
# C type or an exact-type check (an ``int`` annotation would refuse numpy integers).

_MASK64 = 0xFFFFFFFFFFFFFFFF
_MAX_MAPPING = 0xFFFF            # a mapping's Data-Level Length is 16 bits (RFC 8684 §3.3)



class _SubflowSent:
    """One subflow's sent ranges [start, end) (offsets) with their subflow sequence numbers,
    in the order they were sent; entries before ``head`` are retired."""

    def __init__(self, subflow):
        self.subflow = subflow
        self.starts = []
        self.ends = []
        self.seqs = []
        if cython.compiled:               # C numbers (add): not walked by the collector;
            _untrack(self.starts)         # seqs stays tracked, it holds what the caller of
            _untrack(self.ends)           # allocate_dsn passed
        self.head = 0

    def add(self, start: cython.longlong, end: cython.longlong, seq) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.seqs.append(seq)

    def retire(self, acked: cython.longlong) -> None:
        """Drop the leading ranges wholly below ``acked``; compact once half is dead."""
        head: cython.Py_ssize_t = self.head
        n: cython.Py_ssize_t = len(self.ends)
        end: cython.longlong
        while head < n:
            end = self.ends[head]
            if end > acked:
                break
            head += 1
        if head > 64 and head * 2 > n:
            del self.starts[:head], self.ends[:head], self.seqs[:head]
            head = 0
        self.head = head

    def live(self) -> cython.Py_ssize_t:
        return len(self.ends) - self.head


class DsnAllocator:
    """``DsnAllocator(initial_dsn)``: the sender's side of the data sequence. Hands out DSN
    ranges for new data and remembers where each went, so that data not yet DATA_ACKed can be
    reinjected on another subflow (RFC 8684 §3.3.6).

        alloc = DsnAllocator(idsn + 1)
        mapping = alloc.allocate(subflow, subflow_seq, length)   # the next DSNs, as a Mapping
        alloc.acknowledge(data_ack)        # False when behind or beyond what was sent
        alloc.to_reinject(failed_subflow)  # [(dsn, length)] still unacknowledged there

    The class is the active backend's (one source, compiled for the compiled backend):
    ``mptcp_fast.wire.dss.DsnAllocator``.

    Args:
        initial_dsn: the DSN of the first byte (the local IDSN + 1), 0..2**64-1.

    Raises:
        TypeError: an argument is not an integer (floats and bools included).
        ValueError: an argument out of its range.
    """

    def __init__(self, initial_dsn):
        # type: (int) -> None
        self._base = _check.uint("initial_dsn", initial_dsn, 64)   # IDSN + 1 for the first data
        self._next = 0                    # offset of the next new byte
        self._acked = 0                   # offset the peer's DATA_ACK has reached
        self._subflows = {}               # type: dict[Hashable, _SubflowSent]  # by subflow
        self._order = []                  # type: list[_SubflowSent]  # in first-use order

    @property
    def next_dsn(self) -> int:
        """The DSN the next new byte gets."""
        return self._dsn_at(self._next)

    @property
    def data_ack(self) -> int:
        """The highest DATA_ACK taken: every byte below it was acknowledged."""
        return self._dsn_at(self._acked)

    def _dsn_at(self, offset) -> int:
        """The DSN ``offset`` bytes after the initial one (mod 2**64: C arithmetic compiled)."""
        if cython.compiled:
            return self._base + cython.cast(cython.ulonglong, offset)
        return (self._base + offset) & _MASK64

    def _sent_on(self, subflow):
        sent = self._subflows.get(subflow)
        if sent is None:
            sent = _SubflowSent(subflow)
            self._subflows[subflow] = sent
            self._order.append(sent)
        return sent

    def allocate_dsn(self, subflow, subflow_seq, length) -> int:
        """Assign the next ``length`` data-level bytes to a segment on ``subflow`` starting at
        ``subflow_seq``; return their first DSN (``allocate`` without building a Mapping)."""
        if type(length) is int and 1 <= length <= _MAX_MAPPING:
            n: cython.longlong = length               # the per-chunk path skips the call
        else:
            n = _check.in_range("length", length, 1, _MAX_MAPPING)
        start: cython.longlong = self._next
        self._sent_on(subflow).add(start, start + n, subflow_seq)
        self._next = start + n
        return self._dsn_at(start)

    def allocate(self, subflow, subflow_seq, length):
        # type: (Hashable, int, int) -> _Mapping
        """``allocate_dsn`` as a Mapping(dsn, subflow_seq, length)."""
        return _Mapping(self.allocate_dsn(subflow, subflow_seq, length), subflow_seq, length)

    def resend(self, dsn, length, subflow, subflow_seq):
        # type: (int, int, Hashable, int) -> _Mapping
        """Record that already-allocated bytes [dsn, dsn + length) were sent again
        (reinjection) on ``subflow``; return their Mapping there."""
        n: cython.longlong = _check.in_range("length", length, 1, _MAX_MAPPING)
        start: cython.longlong = self._offset(_check.uint("dsn", dsn, 64))
        if start < 0 or start + n > self._next:
            raise ValueError(f"resend of DSN {dsn} + {n}: only allocated bytes (DSN "
                             f"{self._base} up to {self.next_dsn}) can be sent again")
        self._sent_on(subflow).add(start, start + n, subflow_seq)
        return _Mapping(dsn, subflow_seq, n)

    def _offset(self, dsn) -> cython.longlong:
        """The offset of a checked 64-bit ``dsn`` from the initial DSN, as the signed distance
        on the 2**64 circle (negative when it lies before it; mptcp_fast.wire.serial)."""
        if cython.compiled:
            return cython.cast(cython.longlong, cython.cast(cython.ulonglong, dsn) - self._base)
        distance = (dsn - self._base) & _MASK64
        return distance - (1 << 64) if distance >> 63 else distance

    def acknowledge(self, data_ack) -> bool:
        """A DATA_ACK arrived: everything below it is delivered. Returns False (and changes
        nothing) for one behind the current DATA_ACK or beyond what was sent, which Linux
        ignores too (ack_update_msk)."""
        if type(data_ack) is not int or data_ack < 0 or data_ack > _MASK64:
            data_ack = _check.uint("data_ack", data_ack, 64)     # the per-ack path skips the call
        offset: cython.longlong = self._offset(data_ack)
        if offset <= self._acked or offset > self._next:
            return offset == self._acked
        self._acked = offset
        sent: _SubflowSent
        for sent in self._order:
            sent.retire(offset)
        return True

    def outstanding(self, subflow=None) -> list[_SentRange]:
        """SentRange(dsn, length, subflow, subflow_seq) for every range sent (on ``subflow``,
        or anywhere) that the DATA_ACK has not wholly covered, in the order they were sent."""
        out = []
        acked: cython.longlong = self._acked
        sent: _SubflowSent
        i: cython.Py_ssize_t
        for sent in self._order:
            if subflow is not None and sent.subflow is not subflow:
                continue
            for i in range(sent.head, len(sent.ends)):
                if sent.ends[i] > acked:
                    start: cython.longlong = sent.starts[i]
                    out.append(_SentRange((self._base + start) & _MASK64, sent.ends[i] - start,
                                          sent.subflow, sent.seqs[i]))
        return out

    def to_reinject(self, failed_subflow) -> list[tuple[int, int]]:
        """Data-level ranges sent on ``failed_subflow`` and still unacknowledged, trimmed to
        the DATA_ACK: what another subflow must carry again, as [(dsn, length)]."""
        sent = self._subflows.get(failed_subflow)
        if sent is None:
            return []
        out = []
        acked: cython.longlong = self._acked
        i: cython.Py_ssize_t
        for i in range(sent.head, len(sent.ends)):
            end: cython.longlong = sent.ends[i]
            if end > acked:
                start: cython.longlong = max(sent.starts[i], acked)
                out.append(((self._base + start) & _MASK64, end - start))
        return out

    def outstanding_bytes(self) -> int:
        """Bytes allocated and not yet DATA_ACKed."""
        return self._next - self._acked

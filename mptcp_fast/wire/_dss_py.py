"""Pure-Python twin of pyx/mptcp_fast/wire/_dss_c.pyx: sequence expansion, the DSS checksum,
reassembly.

Same functions, classes, results and errors as the compiled module. Arguments are checked
with mptcp_fast._check (the compiled twin uses the same functions on its slow path), and
64-bit sequence arithmetic follows the one rule of mptcp_fast.wire.serial.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Sequence

from .. import _check
from .._bytes import compact, immutable_buffer
from ._dss_common import WHOLE_PIECE, Mapping as _Mapping
from .serial import MASK64 as _MASK64, beyond_reach, expand_seq, seq64_diff
from ..errors import MappingConflict, ProtocolError, UnmappedData, conflict_text
from ._csum_py import add16 as _add16, sum16 as _sum16

if TYPE_CHECKING:
    from .._typing import BytesLike

__all__ = ["expand_seq", "DssChecksum", "dss_checksum", "ReassemblyQueue", "SubflowMappings",
           "MAX_WINDOW"]

MAX_WINDOW = 1 << 62         # the largest reassembly window (far above any real one)
RELEASES_GIL = False


# ------------------------------------------------------------------------------------------------
# the DSS checksum (RFC 8684 §3.3.1): the internet checksum of a pseudo-header and the payload

def _contiguous_bytes(data) -> bytes:
    _check.byte_length("data", data)            # TypeError / ValueError as the compiled twin
    with memoryview(data) as view:
        return view.tobytes()


class DssChecksum:
    """The DSS checksum of one mapping (RFC 8684 §3.3.1), computed incrementally: ``update``
    with the mapped payload in pieces of any length (odd ones included; any C-contiguous
    buffer, counted in bytes), then ``finish(dsn, subflow_seq, data_len)`` adds the
    pseudo-header and returns the 16-bit checksum. ``length`` is the bytes given so far.

    The class is the active backend's (compiled or pure twin):
    ``mptcp_fast.wire.dss.DssChecksum``.

    Raises:
        TypeError: ``update`` of something that is not a buffer, or a ``finish`` argument
            that is not an integer.
        ValueError: a ``finish`` argument out of its range (dsn 64 bits, subflow_seq 32,
            data_len 16).
    """
    __slots__ = ("_sum", "_length")

    def __init__(self) -> None:
        self._sum = 0
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def update(self, data: BytesLike) -> None:
        """Add payload bytes: any C-contiguous buffer, counted in bytes whatever its item
        size or shape."""
        raw = data if type(data) is bytes else _contiguous_bytes(data)
        if raw:
            self._sum = _add16(self._sum, _sum16(raw, bool(self._length & 1)))
            self._length += len(raw)

    def finish(self, dsn: int, subflow_seq: int, data_len: int) -> int:
        """The checksum with the pseudo-header (DSN 64, SSN 32, length 16, zero 16)."""
        dsn = _check.uint("dsn", dsn, 64)
        subflow_seq = _check.uint("subflow_seq", subflow_seq, 32)
        data_len = _check.uint("data_len", data_len, 16)
        header = (dsn.to_bytes(8, "big") + subflow_seq.to_bytes(4, "big")
                  + data_len.to_bytes(2, "big") + b"\x00\x00")
        total = _add16(self._sum, _sum16(header, False))
        return ~total & 0xFFFF


def dss_checksum(dsn: int, subflow_seq: int, data_len: int, payload: BytesLike) -> int:
    acc = DssChecksum()
    acc.update(payload)
    return acc.finish(dsn, subflow_seq, data_len)


# ------------------------------------------------------------------------------------------------
# connection-level reassembly (RFC 8684 §3.3.4, §3.3.6)

def _stable(data: BytesLike) -> bytes | memoryview:
    """``data`` itself when it cannot change under us (bytes, and read-only views of bytes
    that hold at least half of the bytes under them), else a copy: a read-only view of some
    other buffer may still change through it, and a small view would keep a large buffer."""
    if type(data) is bytes:
        return data
    view = memoryview(data).cast("B")
    return compact(view) if immutable_buffer(view) else bytes(view)   # (at most twice it)


class ReassemblyQueue:
    """The data-level receive queue of one direction of a connection (RFC 8684 §3.3.4, §3.3.6):
    pieces of the stream pushed in any order at their 64-bit DSNs come out in order.

        queue = ReassemblyQueue(idsn + 1, window=1 << 20)
        queue.push(dsn, payload)            # -> new bytes accepted; any order
        queue.data_fin(fin_dsn)             # the DATA_FIN's DSN
        queue.read()                        # in-order bytes not read yet
        queue.data_ack, queue.eof           # the DATA_ACK to send; whole up to the DATA_FIN

    Duplicate and overlapping pieces are trimmed; bytes that differ where they overlap are
    counted in ``conflict_bytes`` and listed in ``conflicts`` ((dsn, length), the first 64;
    the first copy wins). Data beyond the window (counted from the first unread byte) or
    beyond the DATA_FIN is refused and counted in ``refused_bytes``, and so is a piece that
    would end 2**63 or more past the initial DSN (outside every window); once the stream is
    whole up to its DATA_FIN, bytes below it are duplicates. Counters: ``out_of_order_bytes``,
    ``duplicate_bytes``, ``conflict_bytes``, ``refused_bytes``, ``peak_queued_bytes``; state:
    ``data_ack``, ``eof``, ``queued_bytes``, ``window_left``, ``window``.

    Methods: ``push(dsn, data)``, ``push_many(dsns, pieces)`` (many in one call),
    ``data_fin(dsn)``, ``read(max_bytes=-1)`` (joined once), ``read_pieces()`` (the pieces,
    without copying), ``grow_window(window)`` (larger only), ``skip_to(dsn)`` (a hole that
    will never be filled, for a capture's analysis: the in-order bytes read first).

    The class is the active backend's (the compiled or the pure twin, same API, results and
    errors): ``mptcp_fast.wire.dss.ReassemblyQueue``.

    Args:
        initial_dsn: the DSN of the stream's first byte (the peer's IDSN + 1), 0..2**64-1.
        window: the most bytes held beyond the first unread one, 1..2**62.

    Raises:
        TypeError: an argument is not an integer (floats and bools included).
        ValueError: an argument out of its range; ``grow_window`` with a smaller window;
            ``skip_to`` with in-order bytes unread, to a DSN outside any window, beyond the
            DATA_FIN or past queued bytes.
        ProtocolError: ``data_fin`` at a DSN that moves, lies below data received, or is
            2**63 away.
    """

    def __init__(self, initial_dsn: int, window: int = 1 << 20) -> None:
        self._base = _check.uint("initial_dsn", initial_dsn, 64)   # DSN of relative offset 0
        self._window = _check.in_range("window", window, 1, MAX_WINDOW)
        self._ack = 0                          # next expected offset
        self._read = 0                         # offset of the first unread byte
        self._ready: list[bytes | memoryview] = []   # in-order pieces not yet read
        self._starts: list[int] = []           # out-of-order piece offsets, sorted
        self._pieces: list[bytes | memoryview] = []  # their bytes
        self._queued_ooo = 0
        self._fin = -1                         # offset of the DATA_FIN, -1 if none yet
        self._eof = False
        self.out_of_order_bytes = 0
        self.duplicate_bytes = 0
        self.refused_bytes = 0
        self.conflict_bytes = 0
        self.peak_queued_bytes = 0
        self.conflicts: list[tuple[int, int]] = []   # (dsn, length) of the first 64 conflicts

    # -- positions
    def _distance(self, dsn: int) -> int:
        """How far ``dsn`` is ahead of the next expected byte (negative: behind)."""
        return seq64_diff(dsn, (self._base + self._ack) & _MASK64)

    @property
    def data_ack(self) -> int:
        """The DATA_ACK to send: the next DSN expected (past the DATA_FIN once it is in order)."""
        return (self._base + self._ack + (1 if self._eof else 0)) & _MASK64

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def queued_bytes(self) -> int:
        return (self._ack - self._read) + self._queued_ooo

    @property
    def window_left(self) -> int:
        return self._read + self._window - self._ack

    @property
    def window(self) -> int:
        return self._window

    def grow_window(self, window: int) -> None:
        """A larger window (receive-buffer autotuning); the right edge never moves back."""
        window = _check.in_range("window", window, 1, MAX_WINDOW)
        if window < self._window:
            raise ValueError(f"window {window} is smaller than the current {self._window}")
        self._window = window

    # -- input
    def push(self, dsn: int, data: BytesLike) -> int:
        """Queue payload ``data`` at ``dsn``; return how many new bytes were accepted."""
        distance = self._distance(_check.uint("dsn", dsn, 64))
        view = _stable(data)
        n = len(view)
        if n == 0:
            return 0
        if beyond_reach(distance, self._ack + n):
            self.refused_bytes += n            # would end 2**63 or more past the origin:
            return 0                           # outside any window (mptcp_fast.wire.serial)
        start = self._ack + distance
        end = start + n
        if self._eof:                          # (the stream is whole up to its DATA_FIN)
            self._after_eof(start, end)
            return 0
        if end <= self._ack:
            self.duplicate_bytes += n
            return 0
        if start < self._ack:
            self.duplicate_bytes += self._ack - start
            view = compact(memoryview(view)[self._ack - start:])   # (holds no more than twice it)
            start = self._ack
        limit = self._read + self._window
        if self._fin >= 0 and limit > self._fin:
            limit = self._fin
        if end > limit:
            self.refused_bytes += end - max(limit, start)
            end = max(limit, start)
            if end == start:
                return 0
            view = compact(memoryview(view)[:end - start])
        if start == self._ack and (not self._starts or self._starts[0] >= end):
            self._ready.append(view)            # in order, nothing queued in the way: no copy
            self._ack = end
            accepted = end - start
        else:
            accepted = self._insert(start, view)
        if self._starts and self._starts[0] <= self._ack:
            self._drain()
        self._note_peak()
        self._check_fin()
        return accepted

    def _after_eof(self, start: int, end: int) -> None:
        """Bytes that arrive once the stream is whole: those below the DATA_FIN are
        duplicates (a retransmission, on another subflow, of bytes already here: the subflow
        must still acknowledge them, or its peer sends them for ever), those beyond it are
        refused (RFC 8684 §3.3.3: nothing follows a DATA_FIN)."""
        ack = self._ack
        if start < ack:
            self.duplicate_bytes += min(end, ack) - start
        if end > ack:
            self.refused_bytes += end - max(start, ack)

    def push_many(self, dsns: Sequence[int], pieces: Sequence[BytesLike]) -> int:
        """push() each piece at its DSN, in order, in one call; return the bytes accepted."""
        if len(dsns) != len(pieces):
            raise ValueError(f"{len(dsns)} DSNs for {len(pieces)} pieces")
        push = self.push
        return sum(push(dsn, piece) for dsn, piece in zip(dsns, pieces))

    def _insert(self, start: int, view) -> int:
        """Queue an out-of-order (or overlapping) piece around the queued ones."""
        end = start + len(view)
        starts, pieces = self._starts, self._pieces
        i = bisect_right(starts, start) - 1
        if i < 0 or starts[i] + len(pieces[i]) <= start:
            i += 1
        accepted = 0
        pos = start
        while pos < end:
            if i < len(starts) and starts[i] <= pos:
                piece_start, piece = starts[i], pieces[i]
                overlap_end = min(end, piece_start + len(piece))
                self._compare(pos, view[pos - start:overlap_end - start],
                              piece[pos - piece_start:overlap_end - piece_start])
                pos = overlap_end
                i += 1
                continue
            gap_end = min(end, starts[i]) if i < len(starts) else end
            fragment = bytes(view[pos - start:gap_end - start])
            starts.insert(i, pos)
            pieces.insert(i, fragment)
            i += 1
            accepted += gap_end - pos
            if pos > self._ack:
                self.out_of_order_bytes += gap_end - pos
            self._queued_ooo += gap_end - pos
            pos = gap_end
        return accepted

    def _compare(self, offset: int, new, old) -> None:
        self.duplicate_bytes += len(new)
        if new != old:
            self.conflict_bytes += len(new)
            if len(self.conflicts) < 64:
                self.conflicts.append(((self._base + offset) & _MASK64, len(new)))

    def _drain(self) -> None:
        starts, pieces = self._starts, self._pieces
        taken = 0
        while taken < len(starts) and starts[taken] <= self._ack:
            piece = pieces[taken]
            self._queued_ooo -= len(piece)
            self._ready.append(piece)
            self._ack = starts[taken] + len(piece)
            taken += 1
        del starts[:taken], pieces[:taken]      # once: popping the front one by one is O(n) each

    def _note_peak(self) -> None:
        queued = (self._ack - self._read) + self._queued_ooo
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued

    def data_fin(self, dsn: int) -> None:
        """The DATA_FIN occupies ``dsn`` (RFC 8684 §3.3.3); end of stream once data reaches it."""
        distance = self._distance(_check.uint("dsn", dsn, 64))
        if beyond_reach(distance, self._ack + 1):
            raise ProtocolError(f"DATA_FIN at DSN {dsn} is outside any window")
        offset = self._ack + distance
        if self._fin >= 0 and offset != self._fin:
            raise ProtocolError(f"DATA_FIN moved from DSN {self._fin + self._base & _MASK64} "
                                f"to {dsn}")
        if offset < self._ack or (self._starts and self._starts[-1] + len(self._pieces[-1]) > offset):
            raise ProtocolError(f"DATA_FIN at DSN {dsn} is below data already received")
        self._fin = offset
        self._check_fin()

    def _check_fin(self) -> None:
        if self._fin >= 0 and self._ack == self._fin:
            self._eof = True

    def skip_to(self, dsn: int) -> int:
        """Go on from ``dsn``: the bytes from the next expected one up to it will never come
        (a capture that missed them); return how many were passed over (0 when ``dsn`` is not
        ahead). The in-order bytes must all have been read first, so that the reader knows
        where the hole is; the pieces queued beyond ``dsn`` follow it in order."""
        distance = self._distance(_check.uint("dsn", dsn, 64))
        if distance <= 0:
            return 0
        if self._ready:
            raise ValueError(f"{self._ack - self._read} in-order bytes are not read: read them "
                             "before passing a hole")
        if beyond_reach(distance, self._ack):
            raise ValueError(f"DSN {dsn} is outside any window")
        offset = self._ack + distance
        if self._fin >= 0 and offset > self._fin:
            raise ValueError(f"DSN {dsn} lies beyond the DATA_FIN")
        if self._starts and self._starts[0] < offset:
            raise ValueError(f"bytes are queued below DSN {dsn}: it does not end a hole")
        self._ack = self._read = offset
        if self._starts and self._starts[0] == self._ack:
            self._drain()
        self._note_peak()
        self._check_fin()
        return distance

    # -- output
    def read_pieces(self) -> list[bytes | memoryview]:
        """The in-order data not read yet as a list of bytes-like pieces, without copying
        (for os.writev, socket.sendmsg or a join of your own)."""
        pieces, self._ready = self._ready, []
        self._read += sum(len(piece) for piece in pieces)
        return pieces

    def read(self, max_bytes: int = -1) -> bytes:
        """In-order bytes not read yet (all of them, or at most ``max_bytes``; -1: all)."""
        max_bytes = _check.integer("max_bytes", max_bytes)
        if max_bytes < -1:
            raise ValueError(f"max_bytes must be -1 (all) or at least 0, got {max_bytes}")
        ready = self._ready
        if not ready:
            return b""
        if max_bytes < 0 or max_bytes >= self._ack - self._read:
            out = ready[0] if len(ready) == 1 and type(ready[0]) is bytes else b"".join(ready)
            ready.clear()
        else:
            out = self._take(max_bytes)
        self._read += len(out)
        return out

    def read_some(self, max_bytes: int) -> bytes | memoryview:
        """At most ``max_bytes`` (1 or more) in-order bytes not read yet, as ``read`` gives
        them, but never a large piece (``WHOLE_PIECE`` bytes or more: an offloaded segment's
        payload) joined with others: a first large piece comes alone, as it is when it fits
        (uncopied: bytes, or a read-only view when one was pushed, as ``push`` keeps it), and
        small pieces are joined up to the first large one.
        Joining them all would copy every large piece once more."""
        ready = self._ready
        if not ready:
            return b""
        first = ready[0]
        if len(first) >= WHOLE_PIECE:
            if (type(first) is bytes or type(first) is memoryview) and len(first) <= max_bytes:
                del ready[0]
                self._read += len(first)
                return first
            return self.read(min(max_bytes, len(first)))     # that piece alone (a copy)
        if len(ready) == 1:
            return self.read(max_bytes)
        count = 0
        for piece in ready:
            if len(piece) >= WHOLE_PIECE or count + len(piece) > max_bytes:
                break
            count += len(piece)
        return self.read(count if count else max_bytes)

    def _take(self, count):
        """The first ``count`` bytes of the ready pieces (fewer than they hold): whole pieces
        from the front and a cut of the next; the rest stays, uncopied."""
        ready = self._ready
        taken = []
        whole = 0
        while count > 0:
            piece = ready[whole]
            if len(piece) <= count:
                taken.append(piece)
                count -= len(piece)
                whole += 1
            else:
                view = memoryview(piece)
                taken.append(view[:count])
                ready[whole] = view[count:]
                count = 0
        del ready[:whole]
        return b"".join(taken)



# ------------------------------------------------------------------------------------------------
# mappings of one subflow (RFC 8684 §3.3.1), the rules of pyx/mf_mapstore.pxd

MAX_SUBFLOW_SEQ = (1 << 63) - 1      # relative subflow sequence numbers stay below 2**63


def _check_span(subflow_seq, length) -> tuple[int, int]:
    subflow_seq = _check.in_range("subflow_seq", subflow_seq, 0, MAX_SUBFLOW_SEQ)
    length = _check.in_range("length", length, 0, MAX_SUBFLOW_SEQ - subflow_seq)
    return subflow_seq, length


class SubflowMappings:
    """The DSS mappings received on one subflow (RFC 8684 §3.3.1): which data-level bytes (DSNs)
    its subflow bytes carry.

        maps = SubflowMappings()
        maps.declare(Mapping(dsn, subflow_seq, data_len))   # -> True if it mapped new bytes
        maps.resolve(subflow_seq, length)                   # -> [(dsn, length), ...]
        maps.release(upto)                                  # forget bytes at or before upto

    ``declare(mapping)`` (or ``declare_fields(dsn, subflow_seq, length, data_fin=False,
    checksum=None)``) records a mapping and returns whether it mapped a subflow byte no
    mapping had mapped before (False for retransmissions, TSO splits and sub-ranges of what is
    known); sending a mapping again with a DATA_FIN added, as Linux does, is not a
    contradiction. ``resolve`` merges contiguous DSN runs. ``infinite`` is the infinite
    mapping once declared; ``len()`` counts the stored pieces (consistent mappings that touch
    on one DSN line are stored as one, so a lookup is one bisection). Subflow sequence numbers
    are relative (first payload byte 1), already expanded beyond 32 bits, and below 2**63.

    The class is the active backend's (compiled or pure twin, same API, results and errors):
    ``mptcp_fast.wire.dss.SubflowMappings``.

    Raises:
        MappingConflict: ``declare`` of a mapping that puts known bytes at other DSNs.
        UnmappedData: ``resolve`` of bytes no mapping covers.
        TypeError: an argument is not an integer (floats and bools included).
        ValueError: an argument out of its range.

    Stored as disjoint pieces [start, end) of subflow bytes, each on one line of the data
    sequence space (``dsn`` of its first byte): a declaration is checked against the pieces
    it overlaps and merged with them and with touching pieces on its line, so lookups are
    one bisection (pyx/mf_mapstore.pxd explains the choice)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._dsns: list[int] = []
        self.infinite: _Mapping | None = None

    def __len__(self) -> int:
        return len(self._starts) + (self.infinite is not None)

    def declare(self, mapping: _Mapping) -> bool:
        """Record ``mapping`` (a ``Mapping``); return whether it mapped a subflow byte that no
        mapping had mapped before.

        Raises:
            TypeError: ``mapping`` is not a ``Mapping``.
            MappingConflict: it puts bytes already mapped at other DSNs.
        """
        if not isinstance(mapping, _Mapping):
            raise TypeError(f"declare() takes a Mapping, not {type(mapping).__name__}")
        return self._declare(mapping.dsn, mapping.subflow_seq, mapping.length, mapping.data_fin,
                             mapping.checksum)

    def declare_fields(self, dsn: int, subflow_seq: int, length: int, data_fin: bool = False,
                       checksum: int | None = None) -> bool:
        """``declare(Mapping(dsn, subflow_seq, length, data_fin, checksum))`` without building
        the Mapping: the same checks, in the same order, and the same errors."""
        dsn = _check.uint("dsn", dsn, 64)
        length = _check.uint("length", length, 16)
        data_fin = _check.flag("data_fin", data_fin)
        if checksum is not None:
            checksum = _check.uint("checksum", checksum, 16)
        payload = length - 1 if data_fin else length
        subflow_seq = _check.in_range("subflow_seq", subflow_seq, 0,
                                      MAX_SUBFLOW_SEQ - max(payload, 0))
        return self._declare(dsn, subflow_seq, length, data_fin, checksum)

    def _declare(self, dsn: int, start: int, length: int, data_fin: bool, checksum) -> bool:
        """The rules, on checked fields (the analyzer's tracker calls this directly)."""
        end = start + (length - 1 if data_fin else length)
        starts, ends, dsns = self._starts, self._ends, self._dsns
        if self.infinite is not None:
            inf = self.infinite
            if start >= inf.subflow_seq and dsn != (inf.dsn + start - inf.subflow_seq) & _MASK64:
                raise MappingConflict(f"{_Mapping(dsn, start, length, data_fin, checksum)} "
                                      f"contradicts the infinite mapping {inf}")
            return False
        i = bisect_right(ends, start)                  # first piece ending after start
        if length == 0:                                # the infinite mapping (RFC 8684 §3.7)
            for j in range(i, len(starts)):
                self._check_line(j, dsn, start, length, data_fin, checksum)
            self.infinite = _Mapping(dsn, start, length, data_fin, checksum)
            return True
        if end == start:
            return True                                # a standalone DATA_FIN maps no byte
        j = i
        covered = 0
        while j < len(starts) and starts[j] < end:     # the pieces it overlaps
            self._check_line(j, dsn, start, length, data_fin, checksum)
            covered += min(end, ends[j]) - max(start, starts[j])
            j += 1
        if covered == end - start:
            return False
        lo, hi = start, end                            # one piece for the union
        if i < j:
            lo, hi = min(lo, starts[i]), max(hi, ends[j - 1])
        if i > 0 and ends[i - 1] == lo and \
                (dsns[i - 1] + lo - starts[i - 1]) & _MASK64 == (dsn + lo - start) & _MASK64:
            i -= 1
            lo = starts[i]
        if j < len(starts) and starts[j] == hi and dsns[j] == (dsn + hi - start) & _MASK64:
            hi = ends[j]
            j += 1
        starts[i:j] = [lo]
        ends[i:j] = [hi]
        dsns[i:j] = [(dsn + lo - start) & _MASK64]
        return True

    def _check_line(self, j, dsn, start, length, data_fin, checksum) -> None:
        """Piece j and the declaration must put their common bytes at the same DSNs."""
        lo = max(self._starts[j], start)
        if (self._dsns[j] + lo - self._starts[j]) & _MASK64 != (dsn + lo - start) & _MASK64:
            raise MappingConflict(conflict_text(_Mapping(dsn, start, length, data_fin, checksum),
                                                self._starts[j], self._ends[j], self._dsns[j]))

    def _covering(self, subflow_seq: int):
        """(first byte, end or None, DSN of the first byte) of what holds this byte, or None."""
        i = bisect_right(self._ends, subflow_seq)
        if i < len(self._starts) and self._starts[i] <= subflow_seq:
            return self._starts[i], self._ends[i], self._dsns[i]
        inf = self.infinite
        if inf is not None and subflow_seq >= inf.subflow_seq:
            return inf.subflow_seq, None, inf.dsn
        return None

    def resolve(self, subflow_seq: int, length: int) -> list[tuple[int, int]]:
        """The DSNs of ``length`` subflow bytes from ``subflow_seq``: a list of (dsn, length)
        runs, contiguous runs merged.

        Raises:
            UnmappedData: a byte no mapping covers.
        """
        subflow_seq, length = _check_span(subflow_seq, length)
        out: list[tuple[int, int]] = []
        pos, end = subflow_seq, subflow_seq + length
        while pos < end:
            found = self._covering(pos)
            if found is None:
                raise UnmappedData(f"subflow bytes from {pos} have no mapping")
            first, stop, line = found
            stop = end if stop is None else min(end, stop)
            dsn = (line + pos - first) & _MASK64
            if out and (out[-1][0] + out[-1][1]) & _MASK64 == dsn:
                out[-1] = (out[-1][0], out[-1][1] + stop - pos)
            else:
                out.append((dsn, stop - pos))
            pos = stop
        return out

    def release(self, upto: int) -> None:
        """Forget the bytes mapped at or before relative subflow byte ``upto``, so memory
        follows the receive window."""
        upto = _check.in_range("upto", upto, -MAX_SUBFLOW_SEQ - 1, MAX_SUBFLOW_SEQ)
        k = bisect_right(self._ends, upto)
        del self._starts[:k], self._ends[:k], self._dsns[:k]

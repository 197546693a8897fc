"""Pure-Python twin of pyx/_dss.pyx: sequence expansion, the DSS checksum, reassembly.

Same functions, classes, results and errors as the compiled module.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from ..errors import MappingConflict, ProtocolError, UnmappedData

_MASK64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF
_MAX_PAYLOAD = 0xFFFF        # Data-Level Length is 16 bits: no mapping covers more bytes
RELEASES_GIL = False
_Mapping = None              # mptcp_fast.dss.Mapping, set by bind_types()


def bind_types(mapping_class) -> None:
    global _Mapping
    _Mapping = mapping_class


# ------------------------------------------------------------------------------------------------
# sequence numbers (KERNEL.md §3.2)

def expand_seq(reference: int, value32: int) -> int:
    """The 64-bit DSN nearest ``reference`` whose low 32 bits are ``value32`` (Linux's rule)."""
    old32 = reference & _MASK32
    candidate = (reference & ~_MASK32 & _MASK64) + value32
    if value32 < old32 and ((old32 - value32) & _MASK32) >= 0x80000000:   # forward wrap
        return (candidate + (1 << 32)) & _MASK64
    if value32 > old32 and ((value32 - old32) & _MASK32) >= 0x80000000:   # reverse wrap
        return (candidate - (1 << 32)) & _MASK64
    return candidate


# ------------------------------------------------------------------------------------------------
# the DSS checksum (RFC 8684 §3.3.1): the internet checksum of a pseudo-header and the payload

def _sum16(data, odd_start: bool) -> int:
    """Ones'-complement sum (folded to 16 bits, 0 only for all-zero data) of ``data`` read as
    big-endian 16-bit words; ``odd_start`` when it continues a stream at an odd offset."""
    raw = bytes(data)
    if odd_start:
        raw = b"\x00" + raw
    if len(raw) & 1:
        raw += b"\x00"
    value = int.from_bytes(raw, "big")
    # 2**16 = 1 (mod 0xffff): the big number modulo 0xffff is the sum of its 16-bit words.
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return folded


def _add16(a: int, b: int) -> int:
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


class DssChecksum:
    """Incremental DSS checksum: update() with payload pieces of any length, then finish()."""
    __slots__ = ("_sum", "_length")

    def __init__(self):
        self._sum = 0
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def update(self, data) -> None:
        n = len(data)
        if n:
            self._sum = _add16(self._sum, _sum16(data, bool(self._length & 1)))
            self._length += n

    def finish(self, dsn: int, subflow_seq: int, data_len: int) -> int:
        """The checksum with the pseudo-header (DSN 64, SSN 32, length 16, zero 16)."""
        header = (dsn.to_bytes(8, "big") + subflow_seq.to_bytes(4, "big")
                  + data_len.to_bytes(2, "big") + b"\x00\x00")
        total = _add16(self._sum, _sum16(header, False))
        return ~total & 0xFFFF


def dss_checksum(dsn: int, subflow_seq: int, data_len: int, payload) -> int:
    acc = DssChecksum()
    acc.update(payload)
    return acc.finish(dsn, subflow_seq, data_len)


# ------------------------------------------------------------------------------------------------
# connection-level reassembly (RFC 8684 §3.3.4, §3.3.6)

def _stable(data):
    """``data`` itself when it cannot change under us (bytes, read-only views), else a copy."""
    if type(data) is bytes:
        return data
    view = memoryview(data).cast("B")
    return view if view.readonly else bytes(view)


class ReassemblyQueue:
    """Data-level receive queue; see mptcp_fast.dss.ReassemblyQueue for the contract."""

    def __init__(self, initial_dsn: int, window: int = 1 << 20):
        if window < 1:
            raise ValueError(f"window must be at least 1 byte, not {window}")
        self._base = initial_dsn & _MASK64     # DSN of relative offset 0
        self._window = window
        self._ack = 0                          # next expected offset
        self._read = 0                         # offset of the first unread byte
        self._ready = []                       # in-order pieces not yet read
        self._starts = []                      # out-of-order piece offsets, sorted
        self._pieces = []                      # their bytes
        self._queued_ooo = 0
        self._fin = -1                         # offset of the DATA_FIN, -1 if none yet
        self._eof = False
        self.out_of_order_bytes = 0
        self.duplicate_bytes = 0
        self.refused_bytes = 0
        self.conflict_bytes = 0
        self.peak_queued_bytes = 0
        self.conflicts = []                    # (dsn, length) of the first 64 conflicts

    # -- positions
    def _offset(self, dsn: int) -> int:
        if not 0 <= dsn <= _MASK64:
            raise OverflowError(f"a DSN is 64 bits unsigned, not {dsn}")
        delta = ((dsn - self._base - self._ack) + (1 << 63)) & _MASK64
        return self._ack + delta - (1 << 63)

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

    # -- input
    def push(self, dsn: int, data) -> int:
        """Queue payload ``data`` at ``dsn``; return how many new bytes were accepted."""
        start = self._offset(dsn)
        view = _stable(data)
        n = len(view)
        end = start + n
        if n == 0 or self._eof:
            if n and self._eof:
                self.refused_bytes += n
            return 0
        if end <= self._ack:
            self.duplicate_bytes += n
            return 0
        if start < self._ack:
            self.duplicate_bytes += self._ack - start
            view = memoryview(view)[self._ack - start:]
            start = self._ack
        limit = self._read + self._window
        if self._fin >= 0 and limit > self._fin:
            limit = self._fin
        if end > limit:
            self.refused_bytes += end - max(limit, start)
            end = max(limit, start)
            if end == start:
                return 0
            view = memoryview(view)[:end - start]
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

    def push_many(self, dsns, pieces) -> int:
        """push() each piece at its DSN, in order, in one call; return the bytes accepted."""
        if len(dsns) != len(pieces):
            raise ValueError(f"{len(dsns)} DSNs for {len(pieces)} pieces")
        push = self.push
        return sum(push(int(dsn), piece) for dsn, piece in zip(dsns, pieces))

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
        while starts and starts[0] <= self._ack:
            piece_start, piece = starts.pop(0), pieces.pop(0)
            self._queued_ooo -= len(piece)
            self._ready.append(piece)
            self._ack = piece_start + len(piece)

    def _note_peak(self) -> None:
        queued = (self._ack - self._read) + self._queued_ooo
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued

    def data_fin(self, dsn: int) -> None:
        """The DATA_FIN occupies ``dsn`` (RFC 8684 §3.3.3); end of stream once data reaches it."""
        offset = self._offset(dsn)
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

    # -- output
    def read_pieces(self) -> list:
        """The in-order data not read yet as a list of bytes-like pieces, without copying
        (for os.writev, socket.sendmsg or a join of your own)."""
        pieces, self._ready = self._ready, []
        self._read += sum(len(piece) for piece in pieces)
        return pieces

    def read(self, max_bytes: int = -1) -> bytes:
        """In-order bytes not read yet (all of them, or at most ``max_bytes``)."""
        ready = self._ready
        if not ready:
            return b""
        if max_bytes < 0 or max_bytes >= self._ack - self._read:
            out = ready[0] if len(ready) == 1 and type(ready[0]) is bytes else b"".join(ready)
            ready.clear()
        else:
            joined = b"".join(ready)
            out = joined[:max_bytes]
            ready.clear()
            ready.append(joined[max_bytes:])
        self._read += len(out)
        return out


# ------------------------------------------------------------------------------------------------
# mappings of one subflow (RFC 8684 §3.3.1)

def _payload(m) -> int:
    return m.length - 1 if m.data_fin else m.length


def _dsn_at(m, subflow_seq: int) -> int:
    return (m.dsn + subflow_seq - m.subflow_seq) & _MASK64


def _check_consistent(old, new) -> None:
    """Overlapping mappings must put the same bytes at the same DSNs. A repeat that adds or
    drops a DATA_FIN is consistent: Linux compares mappings without the DATA_FIN's +1
    (KERNEL.md §2: "If DATA_FIN rides on the last data mapping, data_len++")."""
    lo = max(old.subflow_seq, new.subflow_seq)
    if _dsn_at(old, lo) != _dsn_at(new, lo):
        raise MappingConflict(f"{new} contradicts {old}")


class SubflowMappings:
    """The mappings received on one subflow; see mptcp_fast.dss for the contract."""

    def __init__(self):
        self._starts = []
        self._maps = []
        self.infinite = None

    def __len__(self) -> int:
        return len(self._maps) + (self.infinite is not None)

    def declare(self, mapping) -> bool:
        start = mapping.subflow_seq
        if self.infinite is not None:
            if start >= self.infinite.subflow_seq and _dsn_at(mapping, start) != _dsn_at(self.infinite, start):
                raise MappingConflict(f"{mapping} contradicts the infinite mapping {self.infinite}")
            return False
        if mapping.length == 0:                     # the infinite mapping (RFC 8684 §3.7)
            for old in self._overlapping(start, None):
                _check_consistent(old, mapping)
            self.infinite = mapping
            return True
        if _payload(mapping) == 0:
            return True                             # a standalone DATA_FIN maps no subflow byte
        new = True
        for old in self._overlapping(start, start + _payload(mapping)):
            _check_consistent(old, mapping)
            if old == mapping:
                new = False
        if new:
            i = bisect_left(self._starts, start)
            self._starts.insert(i, start)
            self._maps.insert(i, mapping)
        return new

    def _overlapping(self, start: int, end):
        """Mappings that share a subflow byte with [start, end) (end None: to infinity)."""
        i = bisect_left(self._starts, start - _MAX_PAYLOAD)
        maps = self._maps
        while i < len(maps):
            old = maps[i]
            if end is not None and old.subflow_seq >= end:
                break
            if old.subflow_seq + _payload(old) > start:
                yield old
            i += 1

    def _covering(self, subflow_seq: int):
        i = bisect_right(self._starts, subflow_seq) - 1
        while i >= 0 and self._starts[i] > subflow_seq - _MAX_PAYLOAD:
            m = self._maps[i]
            if subflow_seq < m.subflow_seq + _payload(m):
                return m
            i -= 1
        if self.infinite is not None and subflow_seq >= self.infinite.subflow_seq:
            return self.infinite
        return None

    def resolve(self, subflow_seq: int, length: int) -> list:
        out = []
        pos, end = subflow_seq, subflow_seq + length
        while pos < end:
            m = self._covering(pos)
            if m is None:
                raise UnmappedData(f"subflow bytes from {pos} have no mapping")
            stop = end if m.length == 0 else min(end, m.subflow_seq + _payload(m))
            dsn = _dsn_at(m, pos)
            if out and (out[-1][0] + out[-1][1]) & _MASK64 == dsn:
                out[-1] = (out[-1][0], out[-1][1] + stop - pos)
            else:
                out.append((dsn, stop - pos))
            pos = stop
        return out

    def release(self, upto: int) -> None:
        keep = [i for i, m in enumerate(self._maps) if m.subflow_seq + _payload(m) > upto]
        self._maps = [self._maps[i] for i in keep]
        self._starts = [self._starts[i] for i in keep]

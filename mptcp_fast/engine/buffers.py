"""The send side's two byte stores, kept as lists of the pieces they were given, so that no
byte is moved again once stored (a bytearray trimmed at the front and grown at the back moves
its whole content now and then; at 64 KiB a chunk that dominated the send path).

* ``Unsent``: what ``send()`` took and no subflow carries yet (a FIFO of pieces). The pieces
  are immutable bytes (or views of them), handed on as memoryviews: a chunk of them costs no copy until the
  packet is written.
* ``Retained``: what was sent and the peer has not DATA_ACKed, by DSN, for reinjection and the
  redundant scheduler (RFC 8684 §3.3.6: kept until acknowledged at the data level).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from ..wire.serial import seq64_diff

__all__ = ["Unsent", "Retained"]

if not cython.compiled:     # compiled: pyx/mf_gc.pxd's C call, cimported by buffers.pxd
    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (numbers and bytes only: never in a
        reference cycle); the pure run has nothing to do."""


def _diff64(a: int, b: int) -> int:
    """seq64_diff (mptcp_fast.wire.serial), as C arithmetic when compiled (two's complement of the
    unsigned difference: the same rule at 2**63)."""
    if cython.compiled:
        return cython.cast(cython.longlong, a - b)
    return seq64_diff(a, b)


class Unsent:
    def __init__(self):
        self._pieces: deque[memoryview] = deque()
        self.size = 0
        if cython.compiled:                 # bytes in a deque: the collector need not track it
            _untrack(self)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def push(self, data) -> None:
        """Queue ``data`` (immutable bytes, or a flat memoryview of bytes: it is referenced,
        not copied)."""
        if data:
            self._pieces.append(data if type(data) is memoryview else memoryview(data))
            self.size += len(data)

    def peek(self, n: int) -> bytes:
        """A copy of the next ``n`` bytes (fewer when fewer wait), left queued (a TCP Fast
        Open SYN carries them until its SYN/ACK says whether they were taken)."""
        out = []
        left = n
        for piece in self._pieces:
            if left <= 0:
                break
            out.append(piece[:left])
            left -= len(out[-1])
        return b"".join(out)

    def take(self, n: int):
        """The next ``n`` bytes (fewer when fewer wait), removed: a memoryview of one piece,
        or bytes joined from several."""
        pieces = self._pieces
        first = pieces[0]
        if len(first) >= n:                       # the usual case: one piece holds them
            if len(first) == n:
                pieces.popleft()
            else:
                pieces[0] = first[n:]
                first = first[:n]
            self.size -= n
            return first
        out = []
        left = n
        while left and pieces:
            piece = pieces.popleft()
            if len(piece) > left:
                pieces.appendleft(piece[left:])
                piece = piece[:left]
            out.append(piece)
            left -= len(piece)
        data = b"".join(out)
        self.size -= len(data)
        return data


class Retained:
    """Sent bytes by DSN offset from ``base`` (the first DSN); ``release(data_ack)`` drops
    the pieces the DATA_ACK covers wholly."""

    def __init__(self, base: int):
        self.base = base
        self._starts: list[int] = []              # offsets from base, increasing
        self._pieces: list[bytes] = []
        self._head = 0
        self._end = 0                             # offset one past the last byte
        self.size = 0
        if cython.compiled:                 # numbers and bytes: the collector need not track it
            _untrack(self)

    def __len__(self) -> int:
        return self.size

    def append(self, dsn: int, data: bytes) -> None:
        """``data`` sent for the first time at ``dsn`` (the next new DSN)."""
        offset = _diff64(dsn, self.base)
        self._starts.append(offset)
        self._pieces.append(data)
        self._end = offset + len(data)
        self.size += len(data)

    def release(self, data_ack: int) -> None:
        acked = _diff64(data_ack, self.base)
        head, starts, pieces = self._head, self._starts, self._pieces
        while head < len(starts):
            start = starts[head]
            if start + len(pieces[head]) > acked:
                break
            self.size -= len(pieces[head])
            pieces[head] = None          # its bytes go now, not when the list is cut
            head += 1
        if head > 64 and head * 2 > len(starts):
            del starts[:head], pieces[:head]
            head = 0
        self._head = head

    def slice(self, dsn: int, n: int) -> bytes:
        """The bytes [dsn, dsn + n) (they must still be held)."""
        offset = _diff64(dsn, self.base)
        starts, pieces = self._starts, self._pieces
        i = max(self._head, bisect_right(starts, offset, self._head) - 1)
        out = []
        pos, end = offset, offset + n
        while pos < end and i < len(starts):
            start, piece = starts[i], pieces[i]
            a, b = pos - start, min(end, start + len(piece)) - start
            out.append(piece[a:b])
            pos = start + b
            i += 1
        return out[0] if len(out) == 1 else b"".join(out)

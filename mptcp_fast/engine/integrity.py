"""DSS checksums on the receiving side of the engine (RFC 8684 §3.3.1 and §3.7).

With checksums negotiated, the bytes of a mapping are held until all of them arrived and the
mapping's checksum is verified; only then do they enter the data-level queue, so a failed
mapping is never DATA_ACKed and never reaches the application (it is sent again on another
subflow, or the connection falls back to TCP: the connection decides, with MP_FAIL).

    hold = ChecksumHold()
    hold.expect(sid, dsn, start, payload_length, data_len, checksum)   # a mapping arrived
    for done in hold.take(sid, seq, payload): ...                       # bytes arrived
        done.dsn, done.data, done.ok                                    # a whole mapping
"""

from __future__ import annotations

from .. import dss

__all__ = ["ChecksumHold", "Held"]

MASK32 = 0xFFFFFFFF
MAX_HELD_PER_SUBFLOW = 256          # mappings collecting per subflow (bounded memory)


class Held:
    """One checksummed mapping collecting its bytes: subflow bytes [start, end) at DSN dsn."""
    __slots__ = ("dsn", "start", "end", "data_len", "checksum", "data", "seen", "missing", "ok")

    def __init__(self, dsn: int, start: int, payload_length: int, data_len: int, checksum: int):
        self.dsn, self.start, self.end = dsn, start, start + payload_length
        self.data_len, self.checksum = data_len, checksum
        self.data = bytearray(payload_length)
        self.seen = bytearray(payload_length)
        self.missing = payload_length
        self.ok = None

    def runs(self):
        """The (subflow seq, bytes) runs received so far, in order."""
        out, i, n = [], 0, len(self.seen)
        while i < n:
            if not self.seen[i]:
                i += 1
                continue
            j = self.seen.find(0, i)
            j = n if j < 0 else j
            out.append((self.start + i, bytes(self.data[i:j])))
            i = j
        return out


class ChecksumHold:
    def __init__(self):
        self._held: dict[int, list[Held]] = {}

    def expect(self, sid: int, dsn: int, start: int, payload_length: int, data_len: int,
               checksum: int) -> bool:
        """A checksummed mapping of ``payload_length`` bytes from subflow byte ``start``;
        False when the subflow already holds too many (the caller refuses it)."""
        held = self._held.setdefault(sid, [])
        for h in held:
            if h.start == start and h.end == start + payload_length:
                return True                      # the same mapping again
        if len(held) >= MAX_HELD_PER_SUBFLOW:
            return False
        held.append(Held(dsn, start, payload_length, data_len, checksum))
        held.sort(key=lambda h: h.start)
        return True

    def covers(self, sid: int, seq: int, length: int) -> bool:
        """Whether every byte of [seq, seq + length) belongs to a held mapping."""
        pos, end = seq, seq + length
        for h in self._held.get(sid, ()):
            if h.start <= pos < h.end:
                pos = h.end
                if pos >= end:
                    return True
        return pos >= end

    def take(self, sid: int, seq: int, payload) -> list:
        """Record bytes [seq, seq + len(payload)); return the mappings now complete, verified
        (``ok``) and removed from the hold."""
        held = self._held.get(sid)
        if not held:
            return []
        end = seq + len(payload)
        done = []
        for h in held:
            lo, hi = max(seq, h.start), min(end, h.end)
            if lo >= hi:
                continue
            a, b = lo - h.start, hi - h.start
            h.data[a:b] = payload[lo - seq:hi - seq]
            h.missing -= (b - a) - h.seen.count(1, a, b)
            h.seen[a:b] = b"\x01" * (b - a)
            if h.missing == 0:
                h.ok = dss.verify_dss_checksum(h.dsn, h.start & MASK32, h.data_len,
                                               bytes(h.data), h.checksum)
                done.append(h)
        for h in done:
            held.remove(h)
        return done

    def drop(self, sid: int) -> list:
        """Forget a subflow's held mappings (it failed or closed); returns them."""
        return self._held.pop(sid, [])

"""DSS checksums on the receiving side of the engine (RFC 8684 §3.3.1 and §3.7).

With checksums negotiated, the bytes of a mapping are held until all of them arrived and the
mapping's checksum is verified; only then do they enter the data-level queue, so a failed
mapping is never DATA_ACKed and never reaches the application (it is sent again on another
subflow, or the connection falls back to TCP: the connection decides, with MP_FAIL).

    hold = ChecksumHold()
    if hold.can_hold(sid, start, payload_length, rcv_nxt):              # a mapping arrived
        hold.expect(sid, dsn, start, payload_length, data_len, checksum)
    for done in hold.take(sid, seq, payload): ...                       # bytes arrived
        done.dsn, done.data, done.ok                                    # a whole mapping
"""

from __future__ import annotations

from ..wire import dss

__all__ = ["ChecksumHold", "Held"]

MASK32 = 0xFFFFFFFF
MAX_HELD_PER_SUBFLOW = 256          # mappings collecting per subflow (bounded memory)


class Held:
    """One checksummed mapping collecting its bytes: subflow bytes [start, end) at DSN dsn.
    Its memory follows the bytes that arrived (``pieces``: disjoint (first byte, bytes) runs in
    order), never the length the mapping declares: a mapping whose data never comes costs a
    few dozen bytes."""
    __slots__ = ("dsn", "start", "end", "data_len", "checksum", "pieces", "missing", "ok")

    def __init__(self, dsn: int, start: int, payload_length: int, data_len: int, checksum: int):
        self.dsn, self.start, self.end = dsn, start, start + payload_length
        self.data_len, self.checksum = data_len, checksum
        self.pieces: list[tuple[int, bytes]] = []
        self.missing = payload_length
        self.ok: bool | None = None

    def add(self, seq: int, payload, lo: int, hi: int) -> None:
        """Keep subflow bytes [lo, hi) of ``payload`` (which starts at ``seq``) that are not
        held yet; bytes held first stand (as TCP keeps the first copy)."""
        pieces = self.pieces
        if not pieces or pieces[-1][0] + len(pieces[-1][1]) <= lo:    # the usual: in order
            pieces.append((lo, bytes(payload[lo - seq:hi - seq])))
            self.missing -= hi - lo
            return
        merged, pos = [], lo
        for first, data in pieces:
            last = first + len(data)
            if pos < hi and pos < first:              # a gap before this piece: fill it
                stop = min(hi, first)
                merged.append((pos, bytes(payload[pos - seq:stop - seq])))
                self.missing -= stop - pos
            merged.append((first, data))
            if last > pos:
                pos = last
        if pos < hi:
            merged.append((pos, bytes(payload[pos - seq:hi - seq])))
            self.missing -= hi - pos
        self.pieces = merged

    @property
    def data(self) -> bytes:
        """The mapping's bytes (whole once ``missing`` is 0)."""
        return b"".join(data for _, data in self.pieces)

    def runs(self):
        """The (subflow seq, bytes) runs received so far, in order."""
        out = []
        for first, data in self.pieces:
            if out and out[-1][0] + len(out[-1][1]) == first:
                out[-1] = (out[-1][0], out[-1][1] + data)
            else:
                out.append((first, data))
        return out


class ChecksumHold:
    def __init__(self):
        self._held: dict[int, list[Held]] = {}

    def can_hold(self, sid: int, start: int, payload_length: int, rcv_nxt: int) -> bool:
        """Whether a checksummed mapping of subflow bytes [start, start + payload_length) may
        be held: the same mapping again, or one that overlaps none held (a mapping never
        changes, RFC 8684 §3.3.1; Linux refuses a different map over one in progress too) while
        the subflow holds fewer than MAX_HELD_PER_SUBFLOW. Mappings wholly behind ``rcv_nxt``
        can get no more bytes and are forgotten first. Each byte is then held once: memory
        follows the receive window."""
        held = self._held.get(sid)
        if not held:
            return True
        if held[0].end <= rcv_nxt:
            held[:] = [h for h in held if h.end > rcv_nxt]
        end = start + payload_length
        for h in held:
            if h.start == start and h.end == end:
                return True
            if h.start < end and start < h.end:
                return False
        return len(held) < MAX_HELD_PER_SUBFLOW

    def expect(self, sid: int, dsn: int, start: int, payload_length: int, data_len: int,
               checksum: int) -> None:
        """Hold a checksummed mapping ``can_hold`` allowed (nothing new when it is held)."""
        held = self._held.setdefault(sid, [])
        for h in held:
            if h.start == start and h.end == start + payload_length:
                return
        held.append(Held(dsn, start, payload_length, data_len, checksum))
        held.sort(key=_start_of)

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
            h.add(seq, payload, lo, hi)
            if h.missing == 0:
                h.ok = dss.verify_dss_checksum(h.dsn, h.start & MASK32, h.data_len,
                                               h.data, h.checksum)
                done.append(h)
        for h in done:
            held.remove(h)
        return done

    def drop(self, sid: int) -> list:
        """Forget a subflow's held mappings (it failed or closed); returns them."""
        return self._held.pop(sid, [])

    def held_bytes(self) -> int:
        """Bytes held in all (memory that follows the receive window)."""
        return sum(len(data) for held in self._held.values() for h in held
                   for _, data in h.pieces)


def _start_of(held: Held) -> int:
    return held.start

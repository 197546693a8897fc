"""Pure-Python twin of pyx/_tracking.pyx: the capture analyzer's per-packet fast path.

The analyzer (mptcp_fast.analyze) keeps connections, handshakes, HMACs and events; this
module keeps what every data packet touches, over the columns of mptcp_fast.capture:
which subflow a 4-tuple is, relative subflow sequence numbers (expanded past 32 bits),
the DSS mappings of each subflow direction (RFC 8684 §3.3.1), data ACKs, each data-level
stream's coverage (new, out-of-order, duplicate and reinjected bytes: data seen on more
than one subflow), the payload pushed into the stream's ReassemblyQueue, and the DSS
checksum of every mapping whose bytes were all captured.

``Tracker.run(start)`` walks the loaded batch and stops at the first packet the analyzer
must see itself (SYN, RST, an MPTCP option other than the DSS, a malformed option area, an
infinite mapping, an unknown MPTCP flow, a subflow's first unmapped payload); the analyzer
handles its options and then calls ``packet(i, sid, direction)`` for its DSS and payload.
Same results, counters and event texts as the compiled twin.
"""

from __future__ import annotations

from bisect import bisect_right

from .._serial import MASK32 as _MASK32, MASK64 as _MASK64, beyond_reach, expand_seq, seq64_diff
from ..errors import MappingConflict, MptcpError, UnmappedData
from ._dss import SubflowMappings
SYN, RST = 0x02, 0x04
DSS_BIT = 1 << 2
HISTORY = 1 << 24               # DSN bytes behind the contiguous edge whose carrier is kept
MAX_INTERVALS = 1 << 16         # coverage intervals per stream (memory bound on hostile input)
MAPPINGS_KEPT_BEHIND = 1 << 24  # subflow bytes of mappings kept behind the newest segment
PENDING_CHECKSUMS_MAX = 256     # checksummed mappings per subflow direction still collecting
PACKETS_NAMED_MAX = 64          # packet numbers kept per checksummed mapping
DRAIN_EVERY = 1 << 22           # bytes pushed into a stream's queue between two drains


_Event = _DirectionCounters = _StreamCounters = None   # mptcp_fast.analyze's, by bind_types()


def bind_types(event, direction_counters, stream_counters) -> None:
    global _Event, _DirectionCounters, _StreamCounters
    _Event, _DirectionCounters, _StreamCounters = event, direction_counters, stream_counters


def checksum_failure(dsn: int, packets) -> str:
    return (f"DSS checksum failure for the mapping at DSN {dsn} carried by packets "
            f"{', '.join(map(str, sorted(packets)))}")


def flow_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The same key for both directions of a 4-tuple: the family (4 or 6), then the lower
    (address zero-padded to 16 bytes, port) side, then the other."""
    a = src.ljust(16, b"\0") + sport.to_bytes(2, "big")
    b = dst.ljust(16, b"\0") + dport.to_bytes(2, "big")
    return bytes([4 if len(src) == 4 else 6]) + (a + b if a <= b else b + a)


class _Stream:
    """One direction of a connection's data-level stream."""

    def __init__(self):
        self.origin = None            # DSN of coverage offset 0 (IDSN + 1 once keys are known)
        self.dsn_ref = None           # reference for expanding 32-bit DSNs and data ACKs
        self.queue = None
        self.drain = None
        self.pushed = 0
        self.checksums = False
        self.data_acked = None        # highest data ACK the peer sent for this stream
        self.data_fin = None
        self.starts, self.ends, self.carriers = [], [], []
        self.floor = self.edge = 0
        self.new_bytes = self.out_of_order = self.duplicate = self.reinjected = 0
        self.not_captured = self.outside_window = 0


class _Side:
    """One direction of one subflow."""

    def __init__(self, stream: int):
        self.stream = stream
        self.isn = None
        self.rel_ref = 1
        self.maps = SubflowMappings()
        self.probed = False           # a mapping was declared or a payload was looked at
        self.bytes = 0
        self.reinjected = 0
        self.pending = []             # _Pending, oldest first
        self.unverified = 0


class _Pending:
    """A checksummed mapping whose bytes are still being collected. The buffers are made
    when the first byte arrives: a mapping whose data never comes costs no payload memory."""
    __slots__ = ("start", "end", "dsn", "length", "checksum", "data", "seen", "missing",
                 "packets")

    def __init__(self, start, payload_length, dsn, length, checksum):
        self.start, self.end, self.dsn = start, start + payload_length, dsn
        self.length, self.checksum, self.missing = length, checksum, payload_length
        self.data = self.seen = None
        self.packets = []

    def add(self, payload, rel, lo, hi, number) -> None:
        """Subflow bytes [lo, hi) of a payload that starts at ``rel``."""
        if self.data is None:
            self.data = bytearray(self.end - self.start)
            self.seen = bytearray(self.end - self.start)
        a, b = lo - self.start, hi - self.start
        self.data[a:b] = payload[lo - rel:hi - rel]
        self.missing -= (b - a) - self.seen.count(1, a, b)
        self.seen[a:b] = b"\x01" * (b - a)
        if len(self.packets) < PACKETS_NAMED_MAX and (not self.packets or self.packets[-1] != number):
            self.packets.append(number)


class Tracker:
    """Subflows, mappings and data-level streams of one capture; ``verify_checksum(dsn,
    subflow_seq, data_len, payload, checksum) -> bool`` checks a whole mapping."""

    def __init__(self, verify_checksum, checksum_budget: int, connection_checksum_budget: int):
        self._verify = verify_checksum
        self._budget = checksum_budget          # payload bytes pending checksums may claim
        self._connection_budget = connection_checksum_budget
        self._claimed = 0
        self._claimed_by_connection = {}       # up stream // 2 -> bytes
        self._flows = {}              # flow_key -> sid
        self._clients = []            # sid -> (client address padded, client port)
        self._sides = []              # sid -> (_Side up, _Side down) or None when not analysed
        self._streams = []
        self.events = []              # (packet number, sid, text, packets or None)

    # -- set-up, from the analyzer
    def add_streams(self) -> int:
        """A connection's two data-level streams: returns the client's (up); down is up + 1."""
        self._streams += (_Stream(), _Stream())
        return len(self._streams) - 2

    def start_stream(self, stream: int, initial_dsn: int, queue, drain) -> None:
        st = self._streams[stream]
        st.origin = st.dsn_ref = initial_dsn & _MASK64
        st.queue, st.drain = queue, drain

    def set_checksums(self, stream: int, on: bool) -> None:
        self._streams[stream].checksums = bool(on)

    def add_subflow(self, client: bytes, client_port: int, server: bytes, server_port: int,
                    up_stream: int, down_stream: int) -> int:
        """Register a 4-tuple (a later SYN on the same 4-tuple replaces it); streams -1: the
        flow is known but not analysed."""
        sid = len(self._sides)
        self._flows[flow_key(client, client_port, server, server_port)] = sid
        self._clients.append((client.ljust(16, b"\0"), client_port))
        self._sides.append(None if up_stream < 0 else (_Side(up_stream), _Side(down_stream)))
        return sid

    def lookup(self, src: bytes, sport: int, dst: bytes, dport: int):
        sid = self._flows.get(flow_key(src, sport, dst, dport))
        if sid is None:
            return None
        return sid, 0 if (src.ljust(16, b"\0"), sport) == self._clients[sid] else 1

    def probed(self, sid: int, direction: int) -> bool:
        """Whether that subflow direction has had a mapping, or a payload was looked at."""
        sides = self._sides[sid]
        return sides is not None and sides[direction].probed

    def set_isn(self, sid: int, direction: int, isn: int) -> None:
        side = self._sides[sid][direction]
        side.isn, side.rel_ref = isn, 1

    def declare(self, number: int, sid: int, direction: int, dsn: int, subflow_seq: int,
                length: int, data_fin: bool, checksum, truncated: bool) -> None:
        """A mapping the analyzer found outside a DSS (MP_CAPABLE with data; fallback)."""
        side = self._sides[sid][direction]
        self._declare(number, sid, side, dsn & _MASK64, self._expand_rel(side, subflow_seq),
                      length, data_fin, checksum, truncated)

    # -- counters
    def subflow_counters(self, sid: int):
        """(DirectionCounters up, DirectionCounters down) of a subflow."""
        sides = self._sides[sid]
        if sides is None:
            return _DirectionCounters(0, 0, 0), _DirectionCounters(0, 0, 0)
        return tuple(_DirectionCounters(s.bytes, s.reinjected, s.unverified + len(s.pending))
                     for s in sides)

    def checksum_claims(self) -> int:
        """Payload bytes that pending checksummed mappings hold a claim on now."""
        return self._claimed

    def stream_counters(self, stream: int):
        """StreamCounters of one direction of a connection's data-level stream."""
        st = self._streams[stream]
        fin_reached = st.data_fin is not None and st.origin is not None and \
            st.edge >= seq64_diff(st.data_fin, st.origin)
        return _StreamCounters(st.new_bytes, st.not_captured, st.out_of_order, st.duplicate,
                               st.reinjected, st.outside_window, st.data_acked, st.data_fin,
                               fin_reached)

    # -- the walk
    def load(self, cols) -> None:
        """Take a batch of columns (CaptureReader.columns) for the next run() calls."""
        c = cols
        self._n = len(c["number"])
        self._number, self._family, self._src, self._dst = (
            c["number"].tolist(), c["family"].tolist(), c["src"], c["dst"])
        self._sport, self._dport, self._seq, self._flags = (
            c["sport"].tolist(), c["dport"].tolist(), c["seq"].tolist(), c["flags"].tolist())
        self._payload_len, self._truncated = c["payload_len"].tolist(), c["truncated"].tolist()
        self._payload_start, self._blob = c["payload_start"].tolist(), c["payload_blob"]
        self._subtypes, self._malformed = c["mptcp_subtypes"].tolist(), c["options_malformed"].tolist()
        self._dss_flags, self._data_ack, self._dsn = (
            c["dss_flags"].tolist(), c["data_ack"].tolist(), c["dsn"].tolist())
        self._ssn, self._dll, self._csum = (
            c["dss_ssn"].tolist(), c["dss_len"].tolist(), c["dss_checksum"].tolist())

    def _addresses(self, i: int):
        width = 4 if self._family[i] == 4 else 16
        return bytes(self._src[i][:width]), bytes(self._dst[i][:width])

    def run(self, start: int) -> int:
        """Handle packets from ``start``; return the index of the first the analyzer must see
        (or the batch length)."""
        for i in range(start, self._n):
            subtypes = self._subtypes[i]
            if self._flags[i] & (SYN | RST) or self._malformed[i] or subtypes & ~DSS_BIT:
                return i
            src, dst = self._addresses(i)
            found = self.lookup(src, self._sport[i], dst, self._dport[i])
            if found is None:
                if subtypes:
                    return i                  # MPTCP on a flow the analyzer has not seen
                continue                      # plain TCP: not ours
            sid, direction = found
            sides = self._sides[sid]
            if sides is None:
                continue
            side = sides[direction]
            has_mapping = self._dss_flags[i] != 0xFF and self._dss_flags[i] & 4
            if has_mapping and self._dll[i] == 0:
                return i                      # infinite mapping: an event for the analyzer
            if self._payload_len[i] and not side.probed and not has_mapping:
                return i                      # first data without a mapping: fallback?
            self._packet(i, sid, side)
        return self._n

    def packet(self, i: int, sid: int, direction: int) -> None:
        """The DSS and payload part of a packet the analyzer has handled."""
        sides = self._sides[sid]
        if sides is not None:
            self._packet(i, sid, sides[direction])

    def _packet(self, i, sid, side):
        number = self._number[i]
        f = self._dss_flags[i]
        truncated = self._truncated[i] or self._payload_start[i] < 0
        st = self._streams[side.stream]
        if f != 0xFF:
            if f & 1:
                self._ack(side, self._data_ack[i], f & 2)
            if f & 4:
                dsn = self._dsn[i]
                if not f & 8:
                    dsn = expand_seq(st.dsn_ref if st.dsn_ref is not None else dsn, dsn & _MASK32)
                csum = self._csum[i]
                self._declare(number, sid, side, dsn, self._expand_rel(side, self._ssn[i]),
                              self._dll[i], bool(f & 16), None if csum < 0 else csum, truncated)
        length = self._payload_len[i]
        if not length:
            return
        side.bytes += length
        side.probed = True
        if truncated:
            st.not_captured += length
        if side.isn is None:
            return
        syn = 1 if self._flags[i] & SYN else 0
        rel = self._expand_rel(side, (self._seq[i] - side.isn + syn) & _MASK32)
        if rel + length > side.rel_ref:
            side.rel_ref = rel + length
        try:
            ranges = side.maps.resolve(rel, length)
        except UnmappedData as exc:
            self.events.append(_Event(number, sid, str(exc), None))
            return
        payload = None if truncated else self._blob[self._payload_start[i]:self._payload_start[i] + length]
        pos = 0
        for dsn, n in ranges:
            self._cover(st, side, sid, dsn, n)
            if payload is not None and st.queue is not None:
                st.queue.push(dsn, payload[pos:pos + n])
                st.pushed += n
            pos += n
        if st.pushed >= DRAIN_EVERY:
            st.pushed = 0
            st.drain()
        if side.pending and payload is not None:
            self._collect(number, sid, side, rel, payload)
        if not number & 1023:                        # memory follows the window, not the file
            side.maps.release(rel - MAPPINGS_KEPT_BEHIND)

    @staticmethod
    def _expand_rel(side, rel32: int) -> int:
        """Relative subflow sequence numbers past 4 GiB: nearest the highest seen so far."""
        value = expand_seq(side.rel_ref, rel32)
        return value if value < (1 << 63) else rel32     # never below zero

    def _ack(self, side, ack, is64):
        peer = self._streams[side.stream ^ 1]    # streams come in (up, down) pairs
        if not is64:
            if peer.dsn_ref is None:
                return
            ack = expand_seq(peer.dsn_ref, ack & _MASK32)
        if peer.data_acked is None or ((ack - peer.data_acked) & _MASK64) < (1 << 63):
            peer.data_acked = ack

    def _declare(self, number, sid, side, dsn, start, length, data_fin, checksum, truncated):
        st = self._streams[side.stream]
        try:
            new = side.maps._declare(dsn, start, length, data_fin, checksum)
        except MappingConflict as exc:
            self.events.append(_Event(number, sid, str(exc), None))
            return
        side.probed = True
        if st.dsn_ref is None or ((dsn - st.dsn_ref) & _MASK64) < (1 << 63):
            st.dsn_ref = dsn
        if data_fin:
            fin = (dsn + length - 1) & _MASK64
            if st.data_fin is not None and fin != st.data_fin:
                self.events.append(_Event(number, sid,
                                          f"DATA_FIN moved from DSN {st.data_fin} to {fin}", None))
                return
            st.data_fin = fin
            if st.queue is not None:
                try:
                    st.queue.data_fin(fin)
                except MptcpError as exc:
                    self.events.append(_Event(number, sid, str(exc), None))
        payload_length = length - 1 if data_fin else length
        if (new and st.checksums and checksum is not None and payload_length > 0
                and not truncated):            # headers-only captures cannot be checked
            if len(side.pending) >= PENDING_CHECKSUMS_MAX:   # bytes that never all arrived
                self._unclaim(side, side.pending.pop(0))
                side.unverified += 1
            connection = side.stream >> 1
            claimed = self._claimed_by_connection.get(connection, 0)
            if (self._claimed + payload_length > self._budget
                    or claimed + payload_length > self._connection_budget):
                side.unverified += 1           # over the memory budget: counted, not held
                return
            self._claimed += payload_length
            self._claimed_by_connection[connection] = claimed + payload_length
            side.pending.append(_Pending(start, payload_length, dsn, length, checksum))

    def _unclaim(self, side, entry) -> None:
        size = entry.end - entry.start
        self._claimed -= size
        self._claimed_by_connection[side.stream >> 1] -= size

    # -- data-level coverage
    def _cover(self, st, side, sid, dsn, length):
        if st.origin is None:
            st.origin = dsn                  # keys unknown: offsets from the first DSN seen
        s = seq64_diff(dsn, st.origin)
        if beyond_reach(s, length):          # would end 2**63 past the origin: outside any
            st.outside_window += length      # window (mptcp_fast._serial), counted, not placed
            return
        e = s + length
        if s < st.floor:                     # long delivered: no carrier kept
            below = min(e, st.floor) - s
            st.duplicate += below
            s += below
        starts, ends, carriers = st.starts, st.ends, st.carriers
        i = bisect_right(ends, s)            # first interval ending after s
        pos = s
        while pos < e:
            if i < len(starts) and starts[i] <= pos:
                stop = min(e, ends[i])
                st.duplicate += stop - pos
                if carriers[i] != sid:
                    st.reinjected += stop - pos
                    side.reinjected += stop - pos
                pos = stop
                i += 1
                continue
            stop = min(e, starts[i]) if i < len(starts) else e
            st.new_bytes += stop - pos
            if pos != st.edge:
                st.out_of_order += stop - pos
            i = self._insert(st, i, pos, stop, sid) + 1
            if pos == st.edge:
                st.edge = stop
                j = i
                while j < len(starts) and starts[j] == st.edge:
                    st.edge = ends[j]
                    j += 1
            pos = stop
        self._prune(st)

    @staticmethod
    def _insert(st, i, start, end, sid) -> int:
        """Put [start, end) before interval i, merged into the one before when that one ends at
        ``start`` on the same subflow (the usual in-order case); return its index."""
        if i > 0 and st.ends[i - 1] == start and st.carriers[i - 1] == sid:
            st.ends[i - 1] = end
            return i - 1
        st.starts.insert(i, start)
        st.ends.insert(i, end)
        st.carriers.insert(i, sid)
        return i

    @staticmethod
    def _prune(st):
        """Forget carriers HISTORY bytes behind the edge, and bound the list on hostile input."""
        ends = st.ends
        n = len(ends)
        if n > 64 and ends[63] <= st.edge - HISTORY:
            k = bisect_right(ends, st.edge - HISTORY)
        elif n > MAX_INTERVALS:
            k = n - MAX_INTERVALS
        else:
            return
        st.floor = ends[k - 1]
        del st.starts[:k], st.ends[:k], st.carriers[:k]
        if st.edge < st.floor:
            st.edge = st.floor
            j = 0
            while j < len(st.starts) and st.starts[j] == st.edge:
                st.edge = st.ends[j]
                j += 1

    # -- DSS checksums over whole mappings (RFC 8684 §3.3.1)
    def _collect(self, number, sid, side, rel, payload):
        end = rel + len(payload)
        for entry in list(side.pending):
            lo, hi = max(rel, entry.start), min(end, entry.end)
            if lo >= hi:
                continue
            entry.add(payload, rel, lo, hi, number)
            if entry.missing == 0:
                side.pending.remove(entry)
                self._unclaim(side, entry)
                if not self._verify(entry.dsn, entry.start & _MASK32, entry.length,
                                    bytes(entry.data), entry.checksum):
                    self.events.append(_Event(number, sid,
                                              checksum_failure(entry.dsn, entry.packets),
                                              tuple(sorted(entry.packets))))

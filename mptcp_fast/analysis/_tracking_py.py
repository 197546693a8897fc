"""Pure-Python twin of pyx/mptcp_fast/analysis/_tracking_c.pyx: the capture analyzer's per-packet fast path.

The analyzer (mptcp_fast.analysis.analyzer) keeps connections, handshakes, HMACs and events; this
module walks the columns of mptcp_fast.analysis.capture for what every data packet touches: which
subflow a 4-tuple is, relative subflow sequence numbers (expanded past 32 bits), and the
DSS fields, which it hands with the payload to the data-level receive pipeline
(_receiver.py: mappings, data ACKs, coverage, reassembly and DSS checksums).

``Tracker.run(start)`` walks the loaded batch and stops at the first packet the analyzer
must see itself (SYN, RST, an MPTCP option other than the DSS, a malformed option area, an
infinite mapping, an unknown MPTCP flow, a subflow's first unmapped payload); the analyzer
handles its options and then calls ``packet(i, sid, direction)`` for its DSS and payload.
Same results, counters and event texts as the compiled twin.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..wire.serial import MASK32 as _MASK32, MASK64 as _MASK64, expand_seq
from ..wire import _receiver_py as _receiver
from ..wire._receiver_py import ChecksumBudget, DataReceiver

SYN, RST = 0x02, 0x04
DSS_BIT = 1 << 2


def either_way_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The same key for both directions of a 4-tuple: the family (4 or 6), then the lower
    (address zero-padded to 16 bytes, port) side, then the other. (The engine's
    wire.segment.flow_key is directional: a subflow's own side first.)"""
    a = src.ljust(16, b"\0") + sport.to_bytes(2, "big")
    b = dst.ljust(16, b"\0") + dport.to_bytes(2, "big")
    return bytes([4 if len(src) == 4 else 6]) + (a + b if a <= b else b + a)


class Tracker:
    """Subflows, mappings and data-level streams of one capture; ``verify_checksum(dsn,
    subflow_seq, data_len, payload, checksum) -> bool`` checks a whole mapping."""

    def __init__(self, verify_checksum, checksum_budget: int, connection_checksum_budget: int):
        self._verify = verify_checksum
        self._budget = ChecksumBudget(checksum_budget, connection_checksum_budget)
        self._flows: dict[bytes, int] = {}    # either_way_key -> sid
        self._clients: list[tuple[bytes, int]] = []   # sid -> (client address padded, port)
        # sid -> (SubflowReceiver up, down) or None when not analysed
        self._sides: list[Any] = []
        self._streams: list[DataReceiver] = []   # in (up, down) pairs per connection
        self.events: list[Any] = []          # TrackerEvent
        # 2 * sid + direction per row of the batch, or -1
        self.row_sides: np.ndarray | None = None
        self.stopped = None           # (sid, direction) of the row run() stopped at, or None

    # -- set-up, from the analyzer
    def add_streams(self) -> int:
        """A connection's two data-level streams: returns the client's (up); down is up + 1."""
        connection = len(self._streams) >> 1
        up = DataReceiver(self.events, self._budget, connection, self._verify)
        down = DataReceiver(self.events, self._budget, connection, self._verify)
        up.peer, down.peer = down, up         # each direction's DATA_ACKs are for the other's data
        self._streams += (up, down)
        return len(self._streams) - 2

    def start_stream(self, stream: int, initial_dsn: int, queue, drain) -> None:
        self._streams[stream].start(initial_dsn, queue, drain)

    def set_checksums(self, stream: int, on: bool) -> None:
        self._streams[stream].checksums = bool(on)

    def watch_gaps(self, stream: int, horizon: int, on_gap) -> None:
        """Let one direction's stream pass the holes the capture never fills
        (DataReceiver.watch_gaps: ``on_gap(dsn, length)`` for each)."""
        self._streams[stream].watch_gaps(horizon, on_gap)

    def finish_stream(self, stream: int) -> None:
        """The capture is over: that stream passes the holes left (DataReceiver.finish)."""
        self._streams[stream].finish()

    def zero_window_probes(self, stream: int):
        """The packet numbers of the zero-window probes that stream set aside (the first
        ones: DataReceiver.probes counts them all)."""
        return list(self._streams[stream].probe_packets)

    def add_subflow(self, client: bytes, client_port: int, server: bytes, server_port: int,
                    up_stream: int, down_stream: int) -> int:
        """Register a 4-tuple (a later SYN on the same 4-tuple replaces it); streams -1: the
        flow is known but not analysed."""
        sid = len(self._sides)
        self._flows[either_way_key(client, client_port, server, server_port)] = sid
        self._clients.append((client.ljust(16, b"\0"), client_port))
        self._sides.append(None if up_stream < 0 else (self._streams[up_stream].subflow(sid),
                                                       self._streams[down_stream].subflow(sid)))
        return sid

    def lookup(self, src: bytes, sport: int, dst: bytes, dport: int):
        sid = self._flows.get(either_way_key(src, sport, dst, dport))
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
        side.stream.declare(number, side, dsn & _MASK64,
                            self._expand_rel(side, subflow_seq), length, data_fin, checksum,
                            truncated)

    # -- counters
    def subflow_counters(self, sid: int):
        """(DirectionCounters up, DirectionCounters down) of a subflow."""
        sides = self._sides[sid]
        if sides is None:
            return _receiver.no_counters(), _receiver.no_counters()
        return sides[0].counters(), sides[1].counters()

    def checksum_claims(self) -> int:
        """Payload bytes that pending checksummed mappings hold a claim on now."""
        return self._budget.claimed

    def stream_counters(self, stream: int):
        """StreamCounters of one direction of a connection's data-level stream."""
        return self._streams[stream].counters()

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
        self._subtypes = c["mptcp_subtypes"].tolist()
        self._malformed = c["options_malformed"].tolist()
        self._dss_flags, self._data_ack, self._dsn = (
            c["dss_flags"].tolist(), c["data_ack"].tolist(), c["dsn"].tolist())
        self._ssn, self._dll, self._csum = (
            c["dss_ssn"].tolist(), c["dss_len"].tolist(), c["dss_checksum"].tolist())
        self.row_sides = np.full(self._n, -1, np.int64)
        self._row_sides = self.row_sides

    def set_row(self, i: int, sid: int, direction: int) -> None:
        """Name the subflow direction of row i (the analyzer's verdict on a row it handled)."""
        self._row_sides[i] = -1 if sid < 0 else 2 * sid + direction

    def _addresses(self, i: int):
        width = 4 if self._family[i] == 4 else 16
        return bytes(self._src[i][:width]), bytes(self._dst[i][:width])

    def run(self, start: int) -> int:
        """Handle packets from ``start``; return the index of the first the analyzer must see
        (or the batch length). ``row_sides[i]`` is 2 * sid + direction of every row whose
        4-tuple is registered (-1 otherwise), ``stopped`` the (sid, direction) of the row
        returned (None when its 4-tuple is unknown): the analyzer looks nothing up again."""
        rows = self._row_sides
        for i in range(start, self._n):
            subtypes = self._subtypes[i]
            src, dst = self._addresses(i)
            found = self.lookup(src, self._sport[i], dst, self._dport[i])
            if found is not None:
                rows[i] = 2 * found[0] + found[1]
            if self._flags[i] & (SYN | RST) or self._malformed[i] or subtypes & ~DSS_BIT:
                self.stopped = found
                return i
            if found is None:
                if subtypes:
                    self.stopped = None
                    return i                  # MPTCP on a flow the analyzer has not seen
                continue                      # plain TCP: not ours
            sid, direction = found
            sides = self._sides[sid]
            if sides is None:
                continue
            side = sides[direction]
            has_mapping = self._dss_flags[i] != 0xFF and self._dss_flags[i] & 4
            if (has_mapping and self._dll[i] == 0) or (
                    self._payload_len[i] and not side.probed and not has_mapping):
                # an infinite mapping (an event for the analyzer), or a subflow direction's
                # first data without a mapping (fallback?)
                self.stopped = found
                return i
            self._packet(i, sid, side)
        return self._n

    def packet(self, i: int, sid: int, direction: int) -> None:
        """The DSS and payload part of a packet the analyzer has handled."""
        sides = self._sides[sid]
        if sides is not None:
            self._packet(i, sid, sides[direction])

    def _packet(self, i, sid, side):
        """The DSS and the payload of packet i, handed to the side's DataReceiver."""
        number = self._number[i]
        f = self._dss_flags[i]
        truncated = self._truncated[i] or self._payload_start[i] < 0
        st = side.stream
        if f != 0xFF:
            if f & 1:                        # data ACKs are for the other direction's data
                st.peer.acknowledged(self._data_ack[i], f & 2)
            if f & 4:
                dsn = self._dsn[i] if f & 8 else st.expand_dsn(self._dsn[i])
                csum = self._csum[i]
                st.declare(number, side, dsn, self._expand_rel(side, self._ssn[i]), self._dll[i],
                           bool(f & 16), None if csum < 0 else csum, truncated)
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
        start = self._payload_start[i]
        st.deliver(number, side, rel, length,
                   None if truncated else self._blob[start:start + length])

    @staticmethod
    def _expand_rel(side, rel32: int) -> int:
        """Relative subflow sequence numbers past 4 GiB: nearest the highest seen so far."""
        value = expand_seq(side.rel_ref, rel32)
        return value if value < (1 << 63) else rel32     # never below zero

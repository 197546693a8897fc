# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/analysis/_tracking_py.py: the capture analyzer's per-packet fast path.

Reads the numpy columns of mptcp_fast.analysis.capture through typed memoryviews: which subflow a
4-tuple is, relative subflow sequence numbers, the DSS fields; and hands mappings, data ACKs
and payload to the receive pipeline (mptcp_fast.wire._receiver_c, cimported: no Python calls on
the way). Python objects are touched only for reassembly (queue.push of captured payload),
DSS checksums of captured mappings, and rare events. Same results, counters and event texts
as the pure twin.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcpy, memcmp, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from mf_bytes cimport bool8

from mf_serial cimport expand_seq
from mptcp_fast.wire._receiver_c cimport ChecksumBudget, DataReceiver, SubflowReceiver
from mptcp_fast.wire import _receiver_c as _receiver_module
import numpy as _np


cdef enum:
    SYN = 0x02
    RST = 0x04
    DSS_BIT = 1 << 2


cdef bytes either_way_key(uint8_t family, const uint8_t* a, uint16_t aport, const uint8_t* b,
                          uint16_t bport):
    """The same 37-byte key for both directions of a 4-tuple (the twin's either_way_key; the
    engine's wire.segment.flow_key is directional): the family, then the lower (address, port)
    side, then the other."""
    cdef uint8_t key[37]
    cdef uint8_t side_a[18]
    cdef uint8_t side_b[18]
    memcpy(side_a, a, 16)
    side_a[16] = aport >> 8
    side_a[17] = aport & 0xFF
    memcpy(side_b, b, 16)
    side_b[16] = bport >> 8
    side_b[17] = bport & 0xFF
    key[0] = family
    if memcmp(side_a, side_b, 18) <= 0:
        memcpy(key + 1, side_a, 18)
        memcpy(key + 19, side_b, 18)
    else:
        memcpy(key + 1, side_b, 18)
        memcpy(key + 19, side_a, 18)
    return PyBytes_FromStringAndSize(<char*>key, 37)


cdef bytes padded(bytes address):
    return address + bytes(16 - len(address))


cdef class Tracker:
    """Subflows, mappings and data-level streams of one capture; ``verify_checksum(dsn,
    subflow_seq, data_len, payload, checksum) -> bool`` checks a whole mapping."""
    cdef object _verify
    cdef dict _flows                  # flow key -> sid
    cdef list _clients                # sid -> 18-byte client address + port
    cdef list _sides                  # 2 * sid + direction -> SubflowReceiver, or None
    cdef list _streams                # DataReceiver, in (up, down) pairs per connection
    cdef public list events           # TrackerEvent
    cdef ChecksumBudget _budget
    # the loaded batch
    cdef Py_ssize_t _n
    cdef int64_t[::1] _number, _payload_start
    cdef uint8_t[::1] _family, _flags, _dss_flags
    cdef uint8_t[:, ::1] _src, _dst
    cdef uint16_t[::1] _sport, _dport, _subtypes, _dll
    cdef uint32_t[::1] _seq, _payload_len, _ssn
    cdef bool8[::1] _truncated, _malformed
    cdef uint64_t[::1] _data_ack, _dsn
    cdef int32_t[::1] _csum
    cdef bytes _blob
    cdef int64_t[::1] _sides_of_rows      # 2 * sid + direction per row of the batch, or -1
    cdef public object row_sides          # the same, as the numpy array the analyzer reads
    cdef public object stopped            # (sid, direction) of the row run() stopped at, or None

    def __init__(self, verify_checksum, int64_t checksum_budget, int64_t connection_checksum_budget):
        self._verify = verify_checksum
        self._budget = ChecksumBudget(checksum_budget, connection_checksum_budget)
        self._flows = {}
        self._clients = []
        self._sides = []
        self._streams = []
        self.events = []
        self._n = 0
        self.row_sides = None
        self.stopped = None

    # -- set-up, from the analyzer
    def add_streams(self):
        """A connection's two data-level streams: returns the client's (up); down is up + 1."""
        cdef int64_t connection = len(self._streams) >> 1
        cdef DataReceiver up = DataReceiver(self.events, self._budget, connection, self._verify)
        cdef DataReceiver down = DataReceiver(self.events, self._budget, connection, self._verify)
        up.peer, down.peer = down, up         # each direction's DATA_ACKs are for the other's data
        self._streams += (up, down)
        return len(self._streams) - 2

    def start_stream(self, int stream, initial_dsn, queue, drain):
        (<DataReceiver>self._streams[stream]).start(initial_dsn, queue, drain)

    def set_checksums(self, int stream, on):
        (<DataReceiver>self._streams[stream]).checksums = bool(on)

    def watch_gaps(self, int stream, horizon, on_gap):
        """Let one direction's stream pass the holes the capture never fills
        (DataReceiver.watch_gaps: ``on_gap(dsn, length)`` for each)."""
        (<DataReceiver>self._streams[stream]).watch_gaps(horizon, on_gap)

    def finish_stream(self, int stream):
        """The capture is over: that stream passes the holes left (DataReceiver.finish)."""
        (<DataReceiver>self._streams[stream]).finish()

    def zero_window_probes(self, int stream):
        """The packet numbers of the zero-window probes that stream set aside (the first
        ones: DataReceiver.probes counts them all)."""
        return list((<DataReceiver>self._streams[stream]).probe_packets)

    def add_subflow(self, bytes client, int client_port, bytes server, int server_port,
                    int up_stream, int down_stream):
        """Register a 4-tuple (a later SYN on the same 4-tuple replaces it); streams -1: the
        flow is known but not analysed."""
        cdef Py_ssize_t sid = len(self._clients)
        cdef bytes c = padded(client), s = padded(server)
        self._flows[either_way_key(4 if len(client) == 4 else 6,
                             <const uint8_t*>PyBytes_AS_STRING(c), client_port,
                             <const uint8_t*>PyBytes_AS_STRING(s), server_port)] = sid
        self._clients.append(c + bytes([client_port >> 8, client_port & 0xFF]))
        if up_stream < 0:
            self._sides += (None, None)
        else:
            self._sides += (SubflowReceiver(self._streams[up_stream], sid),
                            SubflowReceiver(self._streams[down_stream], sid))
        return sid

    def lookup(self, bytes src, int sport, bytes dst, int dport):
        cdef bytes a = padded(src), b = padded(dst)
        cdef int direction
        sid = self._flows.get(either_way_key(4 if len(src) == 4 else 6,
                                       <const uint8_t*>PyBytes_AS_STRING(a), sport,
                                       <const uint8_t*>PyBytes_AS_STRING(b), dport))
        if sid is None:
            return None
        return sid, self._direction(sid, <const uint8_t*>PyBytes_AS_STRING(a), sport)

    cdef int _direction(self, Py_ssize_t sid, const uint8_t* src, uint16_t sport):
        cdef bytes client = self._clients[sid]
        cdef const uint8_t* c = <const uint8_t*>PyBytes_AS_STRING(client)
        if memcmp(c, src, 16) == 0 and c[16] == sport >> 8 and c[17] == sport & 0xFF:
            return 0
        return 1

    def probed(self, Py_ssize_t sid, int direction):
        """Whether that subflow direction has had a mapping, or a payload was looked at."""
        side = self._sides[2 * sid + direction]
        return side is not None and (<SubflowReceiver>side).probed

    def set_isn(self, Py_ssize_t sid, int direction, uint32_t isn):
        cdef SubflowReceiver side = self._sides[2 * sid + direction]
        side.isn, side.isn_known, side.rel_ref = isn, True, 1

    def declare(self, int64_t number, Py_ssize_t sid, int direction, dsn, uint32_t subflow_seq,
                int64_t length, bint data_fin, checksum, bint truncated):
        """A mapping the analyzer found outside a DSS (MP_CAPABLE with data; fallback)."""
        cdef SubflowReceiver side = self._sides[2 * sid + direction]
        side.stream.declare_(number, side, <uint64_t>(dsn & 0xFFFFFFFFFFFFFFFF),
                             expand_rel(side, subflow_seq), length, data_fin,
                             -1 if checksum is None else checksum, truncated)

    # -- counters
    def subflow_counters(self, Py_ssize_t sid):
        """(DirectionCounters up, DirectionCounters down) of a subflow."""
        if self._sides[2 * sid] is None:
            return _receiver_module.no_counters(), _receiver_module.no_counters()
        return self._sides[2 * sid].counters(), self._sides[2 * sid + 1].counters()

    def checksum_claims(self):
        """Payload bytes that pending checksummed mappings hold a claim on now."""
        return self._budget.claimed

    def stream_counters(self, int stream):
        """StreamCounters of one direction of a connection's data-level stream."""
        return self._streams[stream].counters()

    # -- the walk
    def load(self, cols):
        """Take a batch of columns (CaptureReader.columns) for the next run() calls."""
        self._n = len(cols["number"])
        self._number, self._family = cols["number"], cols["family"]
        self._src, self._dst = cols["src"], cols["dst"]
        self._sport, self._dport, self._seq = cols["sport"], cols["dport"], cols["seq"]
        self._flags, self._payload_len = cols["flags"], cols["payload_len"]
        self._truncated, self._payload_start = cols["truncated"], cols["payload_start"]
        self._blob = cols["payload_blob"]
        self._subtypes, self._malformed = cols["mptcp_subtypes"], cols["options_malformed"]
        self._dss_flags, self._data_ack, self._dsn = cols["dss_flags"], cols["data_ack"], cols["dsn"]
        self._ssn, self._dll, self._csum = cols["dss_ssn"], cols["dss_len"], cols["dss_checksum"]
        self.row_sides = _np.full(self._n, -1, _np.int64)
        self._sides_of_rows = self.row_sides

    def set_row(self, Py_ssize_t i, Py_ssize_t sid, int direction):
        """Name the subflow direction of row i (the analyzer's verdict on a row it handled)."""
        self._sides_of_rows[i] = -1 if sid < 0 else 2 * sid + direction

    def run(self, Py_ssize_t start):
        """Handle packets from ``start``; return the index of the first the analyzer must see
        (or the batch length). ``row_sides[i]`` is 2 * sid + direction of every row whose
        4-tuple is registered (-1 otherwise), ``stopped`` the (sid, direction) of the row
        returned (None when its 4-tuple is unknown): the analyzer looks nothing up again."""
        cdef Py_ssize_t i
        cdef uint16_t subtypes
        cdef bint has_mapping
        cdef object sid
        cdef int direction
        cdef SubflowReceiver side
        cdef uint8_t src[16]
        cdef uint8_t dst[16]
        for i in range(start, self._n):
            subtypes = self._subtypes[i]
            # the addresses as the analyzer sees them: an IPv4 row's last 12 bytes are zero
            # (whatever a damaged batch holds there), so both twins find the same flow
            memcpy(src, &self._src[i, 0], 16)
            memcpy(dst, &self._dst[i, 0], 16)
            if self._family[i] == 4:
                memset(src + 4, 0, 12)
                memset(dst + 4, 0, 12)
            sid = self._flows.get(either_way_key(self._family[i], src, self._sport[i], dst,
                                           self._dport[i]))
            if sid is not None:
                direction = self._direction(sid, src, self._sport[i])
                self._sides_of_rows[i] = 2 * <Py_ssize_t>sid + direction
            if self._flags[i] & (SYN | RST) or self._malformed[i] or subtypes & ~DSS_BIT:
                self.stopped = None if sid is None else (sid, direction)
                return i
            if sid is None:
                if subtypes:
                    self.stopped = None
                    return i                  # MPTCP on a flow the analyzer has not seen
                continue                      # plain TCP: not ours
            found = self._sides[2 * <Py_ssize_t>sid + direction]
            if found is None:
                continue
            side = <SubflowReceiver>found
            has_mapping = self._dss_flags[i] != 0xFF and self._dss_flags[i] & 4
            if (has_mapping and self._dll[i] == 0) or (
                    self._payload_len[i] and not side.probed and not has_mapping):
                # an infinite mapping (an event for the analyzer), or a subflow direction's
                # first data without a mapping (fallback?)
                self.stopped = (sid, direction)
                return i
            self._packet(i, sid, side)
        return self._n

    def packet(self, Py_ssize_t i, Py_ssize_t sid, int direction):
        """The DSS and payload part of a packet the analyzer has handled."""
        side = self._sides[2 * sid + direction]
        if side is not None:
            self._packet(i, sid, <SubflowReceiver>side)

    cdef int _packet(self, Py_ssize_t i, Py_ssize_t sid, SubflowReceiver side) except -1:
        """The DSS and the payload of packet i, handed to the side's DataReceiver."""
        cdef int64_t number = self._number[i]
        cdef uint8_t f = self._dss_flags[i]
        cdef bint truncated = self._truncated[i] or self._payload_start[i] < 0
        cdef DataReceiver st = side.stream
        cdef uint64_t dsn
        cdef int64_t length, rel
        if f != 0xFF:
            if f & 1:                         # data ACKs are for the other direction's data
                st.peer.acknowledged_(self._data_ack[i], f & 2)
            if f & 4:
                dsn = self._dsn[i] if f & 8 else st.expand_dsn_(self._dsn[i])
                st.declare_(number, side, dsn, expand_rel(side, self._ssn[i]), self._dll[i],
                            f & 16, self._csum[i], truncated)
        length = self._payload_len[i]
        if not length:
            return 0
        side.bytes += length
        side.probed = True
        if truncated:
            st.not_captured += length
        if not side.isn_known:
            return 0
        rel = expand_rel(side, <uint32_t>(self._seq[i] - side.isn + (1 if self._flags[i] & SYN else 0)))
        if rel + length > side.rel_ref:
            side.rel_ref = rel + length
        st.deliver_(number, side, rel, length, NULL if truncated else
                    <const uint8_t*>PyBytes_AS_STRING(self._blob) + self._payload_start[i])
        return 0


cdef inline int64_t expand_rel(SubflowReceiver side, uint32_t rel32) noexcept:
    """Relative subflow sequence numbers past 4 GiB: nearest the highest seen so far."""
    cdef uint64_t value = expand_seq(<uint64_t>side.rel_ref, rel32)
    return <int64_t>value if value < (1ULL << 63) else rel32     # never below zero

"""MPTCP capture analysis: connections, subflows, HMAC verdicts, DSS checksums,
fallback, events, and each direction's data-level byte stream rebuilt with the project's own
mapping and reassembly rules.

    from mptcp_fast.analysis.analyzer import Analyzer
    analyzer = Analyzer()
    analyzer.feed_columns(columns)            # batches of capture.CaptureReader.columns()
    report = analyzer.report()                # a JSON-ready dict (schema in docs/analysis.md)

``mptcp_fast.analysis.analyze(path)`` does this for a file (analysis/model.py). The capture is decoded into numpy columns (mptcp_fast.analysis.capture); the per-packet work of data
packets (subflow lookup, DSS mappings, coverage, reassembly, checksums) is the hot module
_tracking (pyx/mptcp_fast/analysis/_tracking_c.pyx, analysis/_tracking_py.py). It hands back the packets that need more
than that — handshakes, resets, MPTCP options other than the DSS, malformed options, infinite
mappings, unknown MPTCP flows — and this module handles their options.

Facts used: RFC 8684 §3.1 (keys -> tokens, IDSNs; first DSN = IDSN + 1; the MP_CAPABLE with
data maps DSN IDSN+1 to subflow sequence 1), §3.2 (MP_JOIN: the SYN carries the receiver's
token; SYN/ACK and third-ACK HMACs), §3.3 (DSS mappings, checksums, DATA_FIN), §3.4 (ADD_ADDR
HMAC, REMOVE_ADDR), §3.3.8 (MP_PRIO), §3.5-3.7 (MP_FASTCLOSE, MP_TCPRST, MP_FAIL, fallback).
Memory follows the live connections: streams are hashed (or written with ``dump_dir``) as
they are rebuilt, never kept whole.

A capture can miss bytes of a stream: packets it dropped, or bytes that were in flight on
another subflow when it began. Such a hole is passed (a gap: its DSN and length reported)
once the receiver's DATA_ACK went beyond it, once the stream was seen ``GAP_HORIZON`` bytes
beyond it, or at the end, and the stream is rebuilt on past it: the rebuilt bytes leave the
holes out, and are hashed whole (``sha256``) and piece by piece (``pieces``: where each
piece lies in the stream and in the dump, and its own SHA-256).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import numpy as np

from .. import _check
from . import capture, midstream
from .packets import PacketTableBuilder
from ..wire import crypto, dss, options, receiver

VALID, INVALID, UNVERIFIABLE = "valid", "invalid", "cannot verify"
SYN, ACK = 0x02, 0x10
BATCH_PACKETS = 16384               # packets decoded per column batch
BATCH_PAYLOAD = 1 << 24             # ... or payload bytes, whichever fills first
WINDOW = 1 << 26                    # reassembly window per stream (RFC 8684 §3.3.4 scale)
# A hole with more than this seen beyond it is passed: with Linux's defaults no receive window
# reaches that far (the largest is net.ipv4.tcp_rmem[2], 32 MiB), so its bytes were
# acknowledged and will not be sent again; and the queue (WINDOW) never has to refuse bytes
# while it waits for them.
GAP_HORIZON = 48 << 20
LISTED = 1000                       # gaps and pieces listed per stream in the report
DIRECTIONS = ("up", "down")         # up: from the client (who sent the SYN)
MASK64 = (1 << 64) - 1


def _endpoint(addr: bytes, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass
class Direction:
    """One direction of a connection's data-level stream, as far as it was rebuilt: the
    bytes in order with the holes left out (hashed whole, and written to ``dump``), the
    gaps passed, and the pieces between them (each with its own SHA-256; ``index`` lists
    them when dumping)."""
    queue: dss.ReassemblyQueue | None = None
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    delivered: int = 0
    dump: BinaryIO | None = None             # an open file when dumping streams
    index: TextIO | None = None              # ... and its index of pieces and gaps
    start_dsn: int | None = None             # DSN of the first byte (of the first piece)
    gaps: list[dict[str, Any]] = field(default_factory=list)     # the first LISTED
    pieces: list[dict[str, Any]] = field(default_factory=list)   # the first LISTED finished
    piece_count: int = 0
    gap_count: int = 0                       # every gap, listed or not ...
    missing_bytes: int = 0                   # ... and the bytes in them
    probe_packets: list = field(default_factory=list)   # zero-window probes set aside
    piece_dsn: int | None = None             # where the piece being rebuilt begins ...
    piece_offset: int = 0                    # ... in the stream and in the rebuilt bytes
    piece_sha256: "hashlib._Hash | None" = None  # None before the first gap: sha256 is it

    def start(self, first_dsn: int, queue: dss.ReassemblyQueue, dump: BinaryIO | None = None,
              index: TextIO | None = None) -> None:
        """The stream is rebuilt from ``first_dsn`` on, through ``queue`` (and written to
        ``dump``, its pieces and gaps listed in ``index``, when given)."""
        self.queue, self.dump, self.index = queue, dump, index
        self.start_dsn = self.piece_dsn = first_dsn

    def drain(self) -> None:
        """Hash (and dump) the bytes rebuilt in order so far."""
        if self.queue is None:
            return
        for piece in self.queue.read_pieces():
            self.sha256.update(piece)
            if self.piece_sha256 is not None:
                self.piece_sha256.update(piece)
            self.delivered += len(piece)
            if self.dump is not None:
                self.dump.write(piece)

    def gap(self, dsn: int, length: int) -> None:
        """The receiver passed a hole (after draining the bytes before it): the piece
        before it ends, the next begins after it."""
        self._end_piece()
        entry = {"dsn": dsn, "stream_offset": self._offset(dsn), "bytes": length}
        if len(self.gaps) < LISTED:
            self.gaps.append(entry)
        self.gap_count += 1
        self.missing_bytes += length
        self._note({"kind": "gap", **entry})
        self.piece_dsn = (dsn + length) & MASK64
        self.piece_offset = self.delivered
        self.piece_sha256 = hashlib.sha256()

    def finish(self) -> None:
        """The last piece, and the files closed."""
        self._end_piece()
        self.piece_offset = self.delivered
        if self.dump is not None:
            self.dump.close()
            self.dump = None
        if self.index is not None:
            self.index.close()
            self.index = None

    def _end_piece(self) -> None:
        length = self.delivered - self.piece_offset
        if length == 0 or self.piece_dsn is None:
            return
        digest = (self.piece_sha256 or self.sha256).hexdigest()
        entry = {"dsn": self.piece_dsn, "stream_offset": self._offset(self.piece_dsn),
                 "file_offset": self.piece_offset, "bytes": length, "sha256": digest}
        if len(self.pieces) < LISTED:
            self.pieces.append(entry)
        self.piece_count += 1
        self._note({"kind": "piece", **entry})
        self.piece_offset = self.delivered

    def _offset(self, dsn: int) -> int | None:
        """Where ``dsn`` lies from the stream's first byte, holes counted."""
        return None if self.start_dsn is None else (dsn - self.start_dsn) & MASK64

    def _note(self, entry: dict) -> None:
        if self.index is not None:
            self.index.write(json.dumps(entry) + "\n")


@dataclass
class Subflow:
    """One subflow of an analysed connection: its ends (``client`` sent the SYN), address
    ids, backup flag, ISNs per direction and MP_JOIN HMAC verdicts."""
    sid: int                                 # the tracker's subflow number
    client: tuple[bytes, int]                # who sent the SYN
    server: tuple[bytes, int]
    initial: bool                            # the MP_CAPABLE subflow
    first_packet: int
    isn: dict = field(default_factory=dict)  # "up" / "down" -> ISN
    client_address_id: int | None = None
    server_address_id: int | None = None
    backup: bool = False
    nonces: dict = field(default_factory=dict)
    token: int | None = None
    synack_hmac: bytes | None = None
    synack_verdict: str | None = None
    ack_verdict: str | None = None
    placed: bool = False                     # found without its SYN (midstream module)


@dataclass
class Connection:
    """One analysed MPTCP connection, typed (keys as integers, addresses as bytes): what its
    entry in the report is made from. ``streams`` holds each direction's ``Direction``."""
    number: int
    streams_id: int                          # the tracker's up stream; down is streams_id + 1
    client_key: int | None = None
    server_key: int | None = None
    server_token: int | None = None          # what MP_JOINs name
    version: int = 1
    checksum: bool = False
    fallback: str | None = None
    subflows: list = field(default_factory=list)
    add_addrs: list = field(default_factory=list)
    events: list = field(default_factory=list)
    anomalies: list = field(default_factory=list)            # (packet, text)
    checksum_failures: list = field(default_factory=list)    # packet numbers of each failed mapping
    streams: dict = field(default_factory=lambda: {"up": Direction(), "down": Direction()})
    placed: str = "handshake"                # how its subflows were found (midstream module)
    start_dsn: dict = field(default_factory=dict)   # streams rebuilt from a later first byte


# The tracker's results are the receive pipeline's types (mptcp_fast.wire.receiver).
TrackerEvent = receiver.Event
DirectionCounters, StreamCounters = receiver.DirectionCounters, receiver.StreamCounters


CHECKSUM_BUDGET = 1 << 28             # bytes of pending checksummed mappings, all connections
CONNECTION_CHECKSUM_BUDGET = 1 << 26  # ... and per connection


class Analyzer:
    """Feed column batches (``CaptureReader.columns``) in capture order; ``report()``
    summarises what was seen.

    DSS checksums are verified over whole mappings, so the bytes of a checksummed mapping
    are held until all of them were seen. ``checksum_budget`` (all connections) and
    ``connection_checksum_budget`` bound the payload bytes such mappings may claim at once;
    a mapping that would exceed either is counted as unverified instead of held, so a
    capture full of mappings whose data never comes cannot exhaust memory."""

    def __init__(self, dump_dir: str | None = None, *, checksum_budget: int = CHECKSUM_BUDGET,
                 connection_checksum_budget: int = CONNECTION_CHECKSUM_BUDGET, survey=None,
                 packets: bool = False, packet_rows_at_most: int = 0):
        self.dump_dir = dump_dir
        self.survey = survey                 # midstream.Survey: flows without handshakes
        self.unplaced: list = []             # MPTCP flows seen without a handshake (4-tuples)
        self._placed: dict[int, Connection] = {}   # survey connection index -> Connection
        self.tracker = _impl.Tracker(
            dss.verify_dss_checksum,
            _check.in_range("checksum_budget", checksum_budget, 0, 1 << 48),
            _check.in_range("connection_checksum_budget", connection_checksum_budget, 0, 1 << 48))
        self.connections: list[Connection] = []
        self._subflows: list = []            # tracker sid -> (Connection, Subflow) or None
        self._by_token: dict[int, Connection] = {}
        self.packets = 0
        self.mptcp_packets = 0
        self.malformed_options = 0
        # the per-packet table, gathered as the batches go by (``packets=True``), with room
        # for ``packet_rows_at_most`` rows reserved at once
        self.packet_table = PacketTableBuilder(packet_rows_at_most) if packets else None
        # the facts of flows without handshakes, gathered as the batches go by: the survey
        # (midstream) needs no read of its own (a pass that has its survey needs none)
        self.survey_collector = midstream.Collector() if survey is None else None

    # -- batches
    def feed_columns(self, cols: dict) -> None:
        """Analyse one batch of columns; a batch that does not have the layout of
        ``CaptureReader.columns`` (missing or mistyped columns, ranges outside the blobs)
        raises CaptureError before anything is read (``capture.check_columns``)."""
        n = capture.check_columns(cols)
        tracker = self.tracker
        tracker.load(cols)
        self.packets += n
        self.mptcp_packets += int(np.count_nonzero(cols["mptcp_subtypes"]))
        i = tracker.run(0)
        while i < n:
            self._packet(cols, i)
            i = tracker.run(i + 1)
        self._take_tracker_events()
        if self.packet_table is not None:
            self.packet_table.add(cols, tracker.row_sides)
        if self.survey_collector is not None:
            self.survey_collector.add(cols, tracker.row_sides)

    def connection_of(self, src: bytes, sport: int, dst: bytes, dport: int) -> int | None:
        """The number of the connection a 4-tuple belongs to (its latest use), if any."""
        found = self.tracker.lookup(src, sport, dst, dport)
        entry = None if found is None else self._subflows[found[0]]
        return None if entry is None else entry[0].number

    def _take_tracker_events(self) -> None:
        for event in self.tracker.events:
            conn = self._subflows[event.subflow][0]
            conn.anomalies.append((event.packet, event.text))
            if event.packets is not None:
                conn.checksum_failures.append(list(event.packets))
        del self.tracker.events[:]

    # -- packets the tracker hands back
    @staticmethod
    def _segment(cols, i) -> capture.TcpSegment:
        width = 4 if cols["family"][i] == 4 else 16
        o, ol = int(cols["options_start"][i]), int(cols["options_len"][i])
        p, pl = int(cols["payload_start"][i]), int(cols["captured_len"][i])
        return capture.TcpSegment(
            int(cols["number"][i]), float(cols["time"][i]), int(cols["interface"][i]),
            bytes(cols["src"][i][:width]), bytes(cols["dst"][i][:width]),
            int(cols["sport"][i]), int(cols["dport"][i]), int(cols["seq"][i]), int(cols["ack"][i]),
            int(cols["flags"][i]), int(cols["window"][i]), cols["options_blob"][o:o + ol],
            cols["payload_blob"][p:p + pl] if p >= 0 else b"", int(cols["payload_len"][i]),
            bool(cols["truncated"][i]), int(cols["record_offset"][i]))

    def _packet(self, cols, i) -> None:
        seg = self._segment(cols, i)
        if cols["mptcp_subtypes"][i] or cols["options_malformed"][i]:
            opts = options.parse_tcp_options(seg.options, keep_malformed=True)
            self.malformed_options += sum(isinstance(o, options.MalformedOption) for o in opts)
            mptcp = [o for o in opts if o.kind == options.TCPOPT_MPTCP
                     and not isinstance(o, options.MalformedOption)]
        else:                    # the decoder saw no MPTCP option and nothing malformed
            mptcp = []
        found = self.tracker.stopped                # the tracker's lookup of this 4-tuple
        if found is not None and seg.flags & (SYN | ACK) == SYN:
            entry = self._subflows[found[0]]        # a new SYN on a known 4-tuple: reuse?
            if entry is None or entry[1].isn.get("up", seg.seq) != seg.seq:
                found = None
        if found is None:
            found = self._new_subflow(seg, mptcp)
            if found is None:
                if (self.survey_collector is not None and cols["dss_flags"][i] != 0xFF
                        and not seg.flags & SYN):
                    self.survey_collector.unregistered_dss((seg.src, seg.sport, seg.dst,
                                                            seg.dport))
                return
            self.tracker.set_row(i, *found)
        entry = self._subflows[found[0]]
        if entry is None:
            return                                  # plain TCP, or MPTCP we cannot place
        conn, sub = entry
        sid, direction = found
        name = DIRECTIONS[direction]
        if seg.flags & SYN:
            sub.isn[name] = seg.seq
            self.tracker.set_isn(sid, direction, seg.seq)
            if seg.flags & ACK and sub.initial and name == "down" and not any(
                    isinstance(o, options.MpCapable) for o in mptcp):
                self._fall_back(seg, conn, sub, "the SYN/ACK carries no MP_CAPABLE", plain=True)
        for opt in mptcp:
            self._option(seg, conn, sub, direction, opt)
        if (seg.payload_len and sub.initial and not seg.flags & SYN and conn.fallback is None
                and not any(isinstance(o, (options.Dss, options.MpCapable)) for o in mptcp)
                and not self.tracker.probed(sid, direction)):
            self._fall_back(seg, conn, sub, "data without a DSS mapping")
        self.tracker.packet(i, sid, direction)

    def _new_subflow(self, seg, mptcp):
        syn = seg.flags & (SYN | ACK) == SYN
        client, server = ((seg.src, seg.sport), (seg.dst, seg.dport)) \
            if syn or not seg.flags & SYN else ((seg.dst, seg.dport), (seg.src, seg.sport))
        for opt in mptcp:
            if isinstance(opt, options.MpCapable):
                conn = self._connection(version=1 if opt.version else 0)
                return self._attach(conn, seg, client, server, True)
            if isinstance(opt, options.MpJoinSyn):
                conn = self._by_token.get(opt.token)
                placed = self._surveyed(seg)
                if conn is None and placed is not None:     # the survey knows its connection
                    conn = self._surveyed_connection(placed)
                    conn.server_token = opt.token
                    self._by_token[opt.token] = conn
                if conn is None:                    # handshake not captured: group by token
                    conn = self._connection(server_token=opt.token)
                    conn.anomalies.append((seg.number, f"MP_JOIN for token 0x{opt.token:08x} "
                                                       "whose MP_CAPABLE is not in the capture"))
                    self._by_token[opt.token] = conn
                return self._attach(conn, seg, client, server, False)
        if not mptcp:
            return None                              # plain TCP: the tracker skips it anyway
        placed = self._surveyed(seg)
        if placed is not None:                       # placed by its DSS options (midstream)
            conn = self._surveyed_connection(placed)
            found = self._attach(conn, seg, placed.client, placed.server, False)
            sub = conn.subflows[-1]
            sub.placed = True
            for direction, name in enumerate(DIRECTIONS):
                if name in placed.isn:
                    sub.isn[name] = placed.isn[name]
                    self.tracker.set_isn(found[0], direction, placed.isn[name])
            return found
        # MPTCP options on a flow whose handshake is not in the capture: known, not analysed
        flow = (seg.src, seg.sport, seg.dst, seg.dport)
        self.unplaced.append(flow)
        if self.survey_collector is not None:
            self.survey_collector.unplaced(flow, self.tracker.lookup(*flow) is not None)
        sid = self.tracker.add_subflow(*client, *server, -1, -1)
        self._subflows.append(None)
        self._follow(sid, flow)
        return sid, 0 if (seg.src, seg.sport) == client else 1

    def _follow(self, sid, flow) -> None:
        """The survey sees the rows of every later use of an unplaced 4-tuple too (as a
        survey of the whole file would)."""
        if self.survey_collector is not None and self.survey_collector.is_unplaced(flow):
            self.survey_collector.follow(sid)

    def _surveyed(self, seg):
        if self.survey is None:
            return None
        return self.survey.placement(seg.src, seg.sport, seg.dst, seg.dport)

    def _surveyed_connection(self, placed) -> Connection:
        """The Connection of a surveyed group (made at its first packet): its streams start at
        the first data-level byte seen in each direction (midstream module)."""
        conn = self._placed.get(placed.connection)
        if conn is not None:
            return conn
        conn = self._connection()
        conn.placed = ("without handshakes: subflows grouped by their shared data sequence "
                       "space, ISNs placed from the DSS mappings, roles guessed from the ports")
        self._placed[placed.connection] = conn
        first = self.survey.connections[placed.connection]["first_dsn"]
        if placed.checksums:
            conn.checksum = True
            self.tracker.set_checksums(conn.streams_id, True)
            self.tracker.set_checksums(conn.streams_id + 1, True)
        for name in DIRECTIONS:
            if name in first:
                conn.start_dsn[name] = first[name]
                self._start_stream(conn, name, first[name])
        return conn

    def _connection(self, **fields) -> Connection:
        """A new Connection and its two streams, which pass the holes the capture never fills
        (module text)."""
        conn = Connection(len(self.connections) + 1, self.tracker.add_streams(), **fields)
        for k, name in enumerate(DIRECTIONS):
            self.tracker.watch_gaps(conn.streams_id + k, GAP_HORIZON, conn.streams[name].gap)
        self.connections.append(conn)
        return conn

    def _attach(self, conn, seg, client, server, initial):
        sid = self.tracker.add_subflow(*client, *server, conn.streams_id, conn.streams_id + 1)
        sub = Subflow(sid, client, server, initial, seg.number)
        conn.subflows.append(sub)
        self._subflows.append((conn, sub))
        if self.packet_table is not None:
            self.packet_table.subflow(sid, conn.number, len(conn.subflows), client[0], server[0])
        self._follow(sid, (seg.src, seg.sport, seg.dst, seg.dport))
        return sid, 0 if (seg.src, seg.sport) == client else 1

    def _fall_back(self, seg, conn, sub, why, plain=False):
        """RFC 8684 §3.7: the connection goes on as plain TCP on this subflow. Its bytes are
        rebuilt through an infinite mapping from subflow byte 1: at IDSN + 1 when the keys are
        known, else (``plain``: no MPTCP at all) as TCP streams starting at 1."""
        conn.fallback = f"packet {seg.number}: {why}"
        conn.events.append((seg.number, f"fallback to TCP: {why}"))
        for direction, name in enumerate(DIRECTIONS):
            if self.tracker.probed(sub.sid, direction):
                continue                             # this direction already had its mappings
            key = conn.client_key if name == "up" else conn.server_key
            if plain and conn.streams[name].queue is None:
                self._start_stream(conn, name, 1)
            start = 1 if key is None else (crypto.key_idsn(key, conn.version) + 1)
            self.tracker.declare(seg.number, sub.sid, direction, start, 1, 0, False, None, True)

    # -- options
    def _option(self, seg, conn, sub, direction, opt):
        n, name = seg.number, DIRECTIONS[direction]
        if isinstance(opt, options.MpCapable):
            if opt.checksum_required and not conn.checksum:
                conn.checksum = True
                self.tracker.set_checksums(conn.streams_id, True)
                self.tracker.set_checksums(conn.streams_id + 1, True)
            if opt.receiver_key is not None:         # third ACK (v1) or v0: both keys
                self._keys(conn, opt.sender_key, opt.receiver_key)
                if opt.data_len is not None:         # MP_CAPABLE with data: DSN IDSN+1 at SSN 1
                    idsn = crypto.key_idsn(opt.sender_key, conn.version)
                    self.tracker.declare(n, sub.sid, direction, idsn + 1, 1, opt.data_len, False,
                                         opt.checksum, seg.truncated)
            elif opt.sender_key is not None and name == "down":
                conn.server_key = opt.sender_key
        elif isinstance(opt, options.MpJoinSyn):
            sub.token, sub.backup = opt.token, opt.backup
            sub.client_address_id, sub.nonces["client"] = opt.address_id, opt.nonce
        elif isinstance(opt, options.MpJoinSynAck):
            sub.server_address_id, sub.nonces["server"] = opt.address_id, opt.nonce
            sub.synack_hmac = opt.hmac
            sub.synack_verdict = self._verify_synack(conn, sub)
            if sub.synack_verdict == INVALID:
                conn.anomalies.append((n, "MP_JOIN SYN/ACK HMAC invalid"))
        elif isinstance(opt, options.MpJoinAck):
            sub.ack_verdict = self._verify_ack(conn, sub, opt.hmac)
            if sub.ack_verdict == INVALID:
                conn.anomalies.append((n, "MP_JOIN third-ACK HMAC invalid"))
        elif isinstance(opt, options.Dss):
            if opt.is_infinite_mapping:              # the tracker declares it (RFC 8684 §3.7)
                conn.events.append((n, "infinite mapping (fallback)"))
                conn.fallback = conn.fallback or f"packet {n}: infinite mapping"
        elif isinstance(opt, (options.AddAddr, options.AddAddr2)) and opt.hmac is not None:
            verdict = UNVERIFIABLE
            if conn.client_key is not None and conn.server_key is not None:
                sender = conn.client_key if name == "up" else conn.server_key
                receiver = conn.server_key if name == "up" else conn.client_key
                verdict = VALID if crypto.verify_add_addr(opt, sender, receiver) else INVALID
            conn.add_addrs.append({"packet": n, "from": "client" if name == "up" else "server",
                                   "address_id": opt.address_id, "address": str(opt.address),
                                   "port": opt.port, "hmac": verdict})
            if verdict == INVALID:
                conn.anomalies.append((n, "ADD_ADDR HMAC invalid"))
        elif isinstance(opt, options.RemoveAddr):
            conn.events.append((n, f"REMOVE_ADDR ids {list(opt.address_ids)}"))
        elif isinstance(opt, options.MpPrio):
            conn.events.append((n, f"MP_PRIO backup={opt.backup}"))
        elif isinstance(opt, options.MpFail):
            conn.events.append((n, f"MP_FAIL at DSN {opt.dsn}"))
        elif isinstance(opt, options.MpFastclose):
            conn.events.append((n, "MP_FASTCLOSE"))
            # RFC 8684 §3.5: it carries the receiver's key: a capture without the handshake
            # learns it here (and the token the peer's MP_JOINs name)
            if name == "up" and conn.server_key is None:
                conn.server_key = opt.receiver_key
                conn.server_token = crypto.key_token(opt.receiver_key, conn.version)
            elif name == "down" and conn.client_key is None:
                conn.client_key = opt.receiver_key
        elif isinstance(opt, options.MpTcpRst):
            reason = getattr(opt.reason, "name", str(opt.reason))
            conn.events.append((n, f"MP_TCPRST {reason}{' (transient)' if opt.transient else ''}"))

    def _keys(self, conn, client_key, server_key):
        if conn.client_key is not None:
            return
        conn.client_key, conn.server_key = client_key, server_key
        conn.server_token = crypto.key_token(server_key, conn.version)
        self._by_token[conn.server_token] = conn
        for name, key in (("up", client_key), ("down", server_key)):
            self._start_stream(conn, name, crypto.key_idsn(key, conn.version) + 1)

    def _start_stream(self, conn, name, first_dsn):
        stream = conn.streams[name]
        first_dsn &= MASK64
        dump = index = None
        if self.dump_dir is not None:
            # the rebuilt bytes with the holes left out, and the index of their pieces and
            # of the gaps between them (JSON lines, in stream order)
            base = os.path.join(self.dump_dir, f"connection{conn.number}-{name}")
            dump, index = open(base + ".bin", "wb"), open(base + ".index.jsonl", "w")
        stream.start(first_dsn, dss.ReassemblyQueue(first_dsn, window=WINDOW), dump, index)
        self.tracker.start_stream(conn.streams_id + DIRECTIONS.index(name), first_dsn,
                                  stream.queue, stream.drain)

    def _context(self, conn, local_is_server: bool):
        if conn.client_key is None or conn.server_key is None:
            return None
        if local_is_server:
            return crypto.KeyContext(conn.server_key, conn.client_key, conn.version)
        return crypto.KeyContext(conn.client_key, conn.server_key, conn.version)

    def _verify_synack(self, conn, sub):
        ctx = self._context(conn, local_is_server=False)
        if ctx is None or "client" not in sub.nonces:
            return UNVERIFIABLE
        ok = ctx.verify_synack(sub.synack_hmac, sub.nonces["client"], sub.nonces["server"])
        return VALID if ok else INVALID

    def _verify_ack(self, conn, sub, hmac160):
        ctx = self._context(conn, local_is_server=True)
        if ctx is None or "client" not in sub.nonces or "server" not in sub.nonces:
            return UNVERIFIABLE
        ok = ctx.verify_ack(hmac160, sub.nonces["server"], sub.nonces["client"])
        return VALID if ok else INVALID

    # -- output
    def report(self) -> dict:
        """The report of everything fed so far: ``packets``, ``mptcp_packets``,
        ``malformed_options`` and ``connections`` (the schema of ``mptcp-fast analyze
        --json`` without ``capture``)."""
        self._take_tracker_events()
        out: dict[str, Any] = {"packets": self.packets, "mptcp_packets": self.mptcp_packets,
               "malformed_options": self.malformed_options, "connections": []}
        for conn in self.connections:
            out["connections"].append(self._connection_dict(conn))
        return out

    def _connection_dict(self, conn) -> dict:
        for k, stream in enumerate(conn.streams.values()):
            self.tracker.finish_stream(conn.streams_id + k)     # the holes left are gaps
            stream.drain()
            stream.finish()
            stream.probe_packets = self.tracker.zero_window_probes(conn.streams_id + k)
        counters = {s.sid: self.tracker.subflow_counters(s.sid) for s in conn.subflows}
        total = {d: sum(counters[s.sid][k].bytes for s in conn.subflows) or 1
                 for k, d in enumerate(DIRECTIONS)}
        return {
            "connection": conn.number, "version": conn.version, "checksums": conn.checksum,
            "client_key": _hex(conn.client_key), "server_key": _hex(conn.server_key),
            "client_token": _hex(crypto.key_token(conn.client_key, conn.version), 8)
            if conn.client_key is not None else None,
            "server_token": _hex(conn.server_token, 8),
            "fallback": conn.fallback,
            "placed": conn.placed,
            "subflows": [{
                "client": _endpoint(*s.client), "server": _endpoint(*s.server),
                "initial": s.initial, "first_packet": s.first_packet, "backup": s.backup,
                "client_address_id": 0 if s.initial else s.client_address_id,
                "server_address_id": 0 if s.initial else s.server_address_id,
                "bytes": {d: counters[s.sid][k].bytes for k, d in enumerate(DIRECTIONS)},
                "share": {d: round(counters[s.sid][k].bytes / total[d], 4)
                          for k, d in enumerate(DIRECTIONS)},
                "reinjected_bytes": {d: counters[s.sid][k].reinjected_bytes
                                     for k, d in enumerate(DIRECTIONS)},
                "join_synack_hmac": s.synack_verdict if not s.placed else UNVERIFIABLE,
                "join_ack_hmac": s.ack_verdict if not s.placed else UNVERIFIABLE,
                "handshake_seen": not s.placed,
                "isn": {d: s.isn.get(d) for d in DIRECTIONS},
                "unverified_checksums": sum(c.unverified_checksums for c in counters[s.sid]),
            } for s in conn.subflows],
            "add_addr": conn.add_addrs,
            "streams": {d: self._stream_dict(conn, k, d) for k, d in enumerate(DIRECTIONS)},
            "events": [{"packet": n, "event": text} for n, text in sorted(conn.events)],
            "checksum_failures": conn.checksum_failures,
            "anomalies": [f"packet {n}: {text}" for n, text in sorted(conn.anomalies)]
            + [text for k, name in enumerate(DIRECTIONS)
               for text in self._stream_anomalies(conn, k, name)],
        }

    def _stream_anomalies(self, conn, k, name) -> list:
        """What a stream's line flags, as anomalies: bytes that contradict an earlier copy,
        bytes outside any window, gaps (bytes the capture never had) and late bytes."""
        c = self.tracker.stream_counters(conn.streams_id + k)
        q = conn.streams[name].queue
        where = f"stream {name} ({'client -> server' if name == 'up' else 'server -> client'})"
        out = []
        if q is not None and q.conflict_bytes:
            out.append(f"{where}: {q.conflict_bytes:,} bytes differ from an earlier copy at "
                       f"the same DSNs (CONFLICTING), the first at DSN {q.conflicts[0][0]}")
        if c.outside_window_bytes:
            out.append(f"{where}: {c.outside_window_bytes:,} bytes 2**63 or more ahead "
                       "(outside any window)")
        if c.gaps:
            first = conn.streams[name].gaps[0]["dsn"]
            out.append(f"{where}: {c.missing_bytes:,} bytes in {c.gaps:,} "
                       f"gap{'s' if c.gaps != 1 else ''} never seen in the capture, the "
                       f"first at DSN {first}")
        if c.late_bytes:
            out.append(f"{where}: {c.late_bytes:,} bytes came after their gap was passed "
                       "(not in the rebuilt stream)")
        return out

    def _stream_dict(self, conn, k, name) -> dict:
        """``bytes``/``sha256``: what was rebuilt from captured payload (keys known);
        ``data_bytes``: distinct data-level bytes seen, payload captured or not."""
        stream = conn.streams[name]
        c = self.tracker.stream_counters(conn.streams_id + k)
        q = stream.queue
        rebuilt = q is not None and not c.not_captured_bytes
        return {
            "bytes": stream.delivered,                   # rebuilt, the holes left out
            "sha256": stream.sha256.hexdigest() if q is not None else None,
            "pieces": stream.pieces if q is not None else None,
            "piece_count": stream.piece_count,
            "complete": (q.eof if rebuilt else c.all_seen) and not c.gaps,
            "gaps": stream.gaps, "gap_count": c.gaps, "missing_bytes": c.missing_bytes,
            "late_bytes": c.late_bytes, "zero_window_probes": c.zero_window_probes,
            "zero_window_probe_packets": stream.probe_packets,
            "data_bytes": c.data_bytes, "not_captured_bytes": c.not_captured_bytes,
            "out_of_order_bytes": c.out_of_order_bytes, "duplicate_bytes": c.duplicate_bytes,
            "reinjected_bytes": c.reinjected_bytes,
            "outside_window_bytes": c.outside_window_bytes,
            "conflict_bytes": q.conflict_bytes if q is not None else 0,
            "data_fin": c.data_fin, "data_acked": c.data_acked,
            "start_dsn": conn.start_dsn.get(name),          # set when the start is missing
            "start_missing": name in conn.start_dsn,
        }


def _hex(value, width=16):
    return None if value is None else f"{value:0{width}x}"



_impl: Any = None      # the active twin, _tracking_c or _tracking_py


def _bind(impl: Any) -> None:
    global _impl
    _impl = impl


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_tracking", _bind)

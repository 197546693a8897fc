"""MPTCP capture analysis (issue #5, first version): connections, subflows, HMAC verdicts,
DSS checksums, and each direction's data-level byte stream rebuilt with the project's own
mapping and reassembly modules.

    from mptcp_fast.analyze import analyze
    report = analyze("trace.pcap")            # -> Report; report.to_dict() is JSON-ready

Facts used: RFC 8684 §3.1 (keys -> tokens, IDSNs; first DSN = IDSN + 1; the MP_CAPABLE with
data maps DSN IDSN+1 to subflow sequence 1), §3.2 (MP_JOIN: the SYN carries the receiver's
token; SYN/ACK and third-ACK HMACs), §3.3 (DSS mappings, checksums, DATA_FIN), §3.4 (ADD_ADDR
HMAC, REMOVE_ADDR), §3.3.8 (MP_PRIO), §3.5-3.7 (MP_FASTCLOSE, MP_TCPRST, MP_FAIL).
Memory follows the live connections: streams are hashed (or written with ``dump_dir``) as
they are rebuilt, never kept whole.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field

from . import capture, crypto, dss, options
from .dss import Mapping
from .errors import MappingConflict, MptcpError, UnmappedData

VALID, INVALID, UNVERIFIABLE = "valid", "invalid", "cannot verify"
PENDING_CHECKSUMS_MAX = 256         # mappings per subflow whose bytes are still being collected
MAPPINGS_KEPT_BEHIND = 1 << 24      # subflow bytes of mappings kept behind the newest segment


def _endpoint(addr: bytes, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass
class Direction:
    """One direction of a connection's data-level stream."""
    queue: dss.ReassemblyQueue | None = None
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    delivered: int = 0
    not_captured: int = 0                    # payload bytes cut by the snap length
    dump: object = None                      # an open file when dumping streams

    def drain(self) -> None:
        if self.queue is None:
            return
        for piece in self.queue.read_pieces():
            self.sha256.update(piece)
            self.delivered += len(piece)
            if self.dump is not None:
                self.dump.write(piece)


@dataclass
class Subflow:
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
    payload: dict = field(default_factory=lambda: {"up": 0, "down": 0})
    mappings: dict = field(default_factory=lambda: {"up": dss.SubflowMappings(),
                                                    "down": dss.SubflowMappings()})
    pending_checksums: dict = field(default_factory=dict)   # (direction, mapping) -> collected
    unverified_checksums: int = 0


@dataclass
class Connection:
    number: int
    client_key: int | None = None
    server_key: int | None = None
    server_token: int | None = None          # what MP_JOINs name
    version: int = 1
    checksum: bool = False
    subflows: list = field(default_factory=list)
    add_addrs: list = field(default_factory=list)
    events: list = field(default_factory=list)
    anomalies: list = field(default_factory=list)
    checksum_failures: list = field(default_factory=list)   # packet numbers of each failed mapping
    streams: dict = field(default_factory=lambda: {"up": Direction(), "down": Direction()})


class Analyzer:
    """Feed TcpSegments in capture order; ``report()`` summarises what was seen."""

    def __init__(self, dump_dir: str | None = None):
        self.dump_dir = dump_dir
        self.connections: list[Connection] = []
        self._subflows: dict[tuple, tuple[Connection, Subflow]] = {}
        self._by_token: dict[int, Connection] = {}
        self.packets = 0
        self.mptcp_packets = 0
        self.malformed_options = 0

    # -- segments
    def feed(self, seg: capture.TcpSegment) -> None:
        self.packets += 1
        opts = options.parse_tcp_options(seg.options, keep_malformed=True)
        mptcp = [o for o in opts if o.kind == options.TCPOPT_MPTCP]
        self.malformed_options += sum(isinstance(o, options.MalformedOption) for o in opts)
        if mptcp:
            self.mptcp_packets += 1
        key = self._flow_key(seg)
        known = self._subflows.get(key)
        if known is None:
            known = self._new_subflow(seg, key, mptcp)
            if known is None:
                return
        conn, sub = known
        direction = "up" if (seg.src, seg.sport) == sub.client else "down"
        if seg.flags & 0x02:
            sub.isn[direction] = seg.seq
        for opt in mptcp:
            self._option(seg, conn, sub, direction, opt)
        if seg.payload_len and direction in sub.isn:
            self._payload(seg, conn, sub, direction)

    @staticmethod
    def _flow_key(seg):
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        return (a, b) if a <= b else (b, a)

    def _new_subflow(self, seg, key, mptcp):
        syn = seg.flags & 0x12 == 0x02
        client, server = ((seg.src, seg.sport), (seg.dst, seg.dport)) if syn or not seg.flags & 0x02 \
            else ((seg.dst, seg.dport), (seg.src, seg.sport))
        for opt in mptcp:
            if isinstance(opt, options.MpCapable):
                conn = Connection(len(self.connections) + 1, version=1 if opt.version else 0)
                self.connections.append(conn)
                return self._attach(conn, key, Subflow(client, server, True, seg.number))
            if isinstance(opt, options.MpJoinSyn):
                conn = self._by_token.get(opt.token)
                if conn is None:                    # handshake not captured: group by token
                    conn = Connection(len(self.connections) + 1, server_token=opt.token)
                    conn.anomalies.append(f"packet {seg.number}: MP_JOIN for token "
                                          f"0x{opt.token:08x} whose MP_CAPABLE is not in the capture")
                    self.connections.append(conn)
                    self._by_token[opt.token] = conn
                return self._attach(conn, key, Subflow(client, server, False, seg.number))
        return None                                  # plain TCP: not ours to analyse

    def _attach(self, conn, key, sub):
        conn.subflows.append(sub)
        self._subflows[key] = (conn, sub)
        return conn, sub

    # -- options
    def _option(self, seg, conn, sub, direction, opt):
        n = seg.number
        if isinstance(opt, options.MpCapable):
            conn.checksum = conn.checksum or opt.checksum_required
            if opt.receiver_key is not None:         # third ACK (v1) or v0: both keys
                self._keys(conn, opt.sender_key, opt.receiver_key)
                if opt.data_len is not None:         # MP_CAPABLE with data: DSN IDSN+1 at SSN 1
                    idsn = crypto.key_idsn(opt.sender_key, conn.version)
                    self._declare(seg, conn, sub, direction,
                                  Mapping((idsn + 1) & (2**64 - 1), 1, opt.data_len,
                                          checksum=opt.checksum))
            elif opt.sender_key is not None and direction == "down":
                conn.server_key = opt.sender_key
        elif isinstance(opt, options.MpJoinSyn):
            sub.token, sub.backup = opt.token, opt.backup
            sub.client_address_id, sub.nonces["client"] = opt.address_id, opt.nonce
        elif isinstance(opt, options.MpJoinSynAck):
            sub.server_address_id, sub.nonces["server"] = opt.address_id, opt.nonce
            sub.synack_hmac = opt.hmac
            sub.synack_verdict = self._verify_synack(conn, sub)
            if sub.synack_verdict == INVALID:
                conn.anomalies.append(f"packet {n}: MP_JOIN SYN/ACK HMAC invalid")
        elif isinstance(opt, options.MpJoinAck):
            sub.ack_verdict = self._verify_ack(conn, sub, opt.hmac)
            if sub.ack_verdict == INVALID:
                conn.anomalies.append(f"packet {n}: MP_JOIN third-ACK HMAC invalid")
        elif isinstance(opt, options.Dss):
            if opt.dsn is not None and opt.data_len == 0:
                conn.events.append((n, "infinite mapping (fallback)"))
            elif opt.dsn is not None:
                dsn = opt.dsn if opt.dsn64 else self._expand(conn, direction, opt.dsn)
                self._declare(seg, conn, sub, direction,
                              Mapping(dsn, opt.subflow_seq, opt.data_len, opt.data_fin, opt.checksum))
        elif isinstance(opt, (options.AddAddr, options.AddAddr2)) and opt.hmac is not None:
            verdict = UNVERIFIABLE
            if conn.client_key is not None and conn.server_key is not None:
                sender = conn.client_key if direction == "up" else conn.server_key
                receiver = conn.server_key if direction == "up" else conn.client_key
                verdict = VALID if crypto.verify_add_addr(opt, sender, receiver) else INVALID
            conn.add_addrs.append({"packet": n, "from": "client" if direction == "up" else "server",
                                   "address_id": opt.address_id, "address": str(opt.address),
                                   "port": opt.port, "hmac": verdict})
            if verdict == INVALID:
                conn.anomalies.append(f"packet {n}: ADD_ADDR HMAC invalid")
        elif isinstance(opt, options.RemoveAddr):
            conn.events.append((n, f"REMOVE_ADDR ids {list(opt.address_ids)}"))
        elif isinstance(opt, options.MpPrio):
            conn.events.append((n, f"MP_PRIO backup={opt.backup}"))
        elif isinstance(opt, options.MpFail):
            conn.events.append((n, f"MP_FAIL at DSN {opt.dsn}"))
        elif isinstance(opt, options.MpFastclose):
            conn.events.append((n, "MP_FASTCLOSE"))
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
            idsn = crypto.key_idsn(key, conn.version)
            conn.streams[name].queue = dss.ReassemblyQueue((idsn + 1) & (2**64 - 1), window=1 << 26)
            if self.dump_dir is not None:
                path = os.path.join(self.dump_dir, f"connection{conn.number}-{name}.bin")
                conn.streams[name].dump = open(path, "wb")

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
        return VALID if ctx.verify_ack(hmac160, sub.nonces["server"], sub.nonces["client"]) else INVALID

    @staticmethod
    def _expand(conn, direction, dsn32):
        queue = conn.streams[direction].queue
        reference = queue.data_ack if queue is not None else dsn32
        return dss.expand_seq(reference, dsn32)

    def _declare(self, seg, conn, sub, direction, mapping):
        try:
            sub.mappings[direction].declare(mapping)
        except MappingConflict as exc:
            conn.anomalies.append(f"packet {seg.number}: {exc}")
            return
        if mapping.data_fin and conn.streams[direction].queue is not None:
            try:
                conn.streams[direction].queue.data_fin(mapping.data_fin_dsn)
            except MptcpError as exc:
                conn.anomalies.append(f"packet {seg.number}: {exc}")
        if (conn.checksum and mapping.checksum is not None and mapping.payload_length
                and not seg.truncated):              # headers-only captures cannot be checked
            pending = sub.pending_checksums
            if (direction, mapping) not in pending:
                if len(pending) >= PENDING_CHECKSUMS_MAX:    # bytes that never all arrived
                    del pending[next(iter(pending))]
                    sub.unverified_checksums += 1
                pending[(direction, mapping)] = (set(), bytearray(mapping.payload_length),
                                                 bytearray(mapping.payload_length))

    # -- payload
    def _payload(self, seg, conn, sub, direction):
        sub.payload[direction] += seg.payload_len
        stream = conn.streams[direction]
        if seg.truncated:
            stream.not_captured += seg.payload_len   # headers only: accounted, not rebuilt
            return
        if stream.queue is None:
            return                                   # keys unknown
        # relative subflow sequence: the SYN takes ISN, the first payload byte is 1 (RFC 8684 §3.3.1)
        rel = (seg.seq - sub.isn[direction] + (1 if seg.flags & 0x02 else 0)) & 0xFFFFFFFF
        try:
            ranges = sub.mappings[direction].resolve(rel, len(seg.payload))
        except UnmappedData as exc:
            conn.anomalies.append(f"packet {seg.number}: {exc}")
            return
        pos = 0
        for dsn, length in ranges:
            stream.queue.push(dsn, seg.payload[pos:pos + length])
            pos += length
        stream.drain()
        if sub.pending_checksums:
            self._checksums(seg, conn, sub, direction, rel)
        if not seg.number & 1023:                    # memory follows the window, not the file
            sub.mappings[direction].release(rel - MAPPINGS_KEPT_BEHIND)

    def _checksums(self, seg, conn, sub, direction, rel):
        """Collect each checksummed mapping's bytes; verify once it is complete (RFC 8684 §3.3.1)."""
        for (d, mapping), (packets, data, seen) in list(sub.pending_checksums.items()):
            if d != direction:
                continue
            lo = max(rel, mapping.subflow_seq)
            hi = min(rel + len(seg.payload), mapping.subflow_seq + mapping.payload_length)
            if lo >= hi:
                continue
            start = lo - mapping.subflow_seq
            data[start:start + hi - lo] = seg.payload[lo - rel:hi - rel]
            seen[start:start + hi - lo] = b"\x01" * (hi - lo)
            packets.add(seg.number)
            if seen.find(0) < 0:                     # every byte of the mapping was captured
                if not dss.verify_dss_checksum(mapping.dsn, mapping.subflow_seq, mapping.length,
                                               bytes(data), mapping.checksum):
                    conn.checksum_failures.append(sorted(packets))
                    conn.anomalies.append(f"packet {seg.number}: DSS checksum failure for the "
                                          f"mapping at DSN {mapping.dsn} carried by packets "
                                          f"{', '.join(map(str, sorted(packets)))}")
                del sub.pending_checksums[(d, mapping)]

    # -- output
    def report(self) -> dict:
        out = {"packets": self.packets, "mptcp_packets": self.mptcp_packets,
               "malformed_options": self.malformed_options, "connections": []}
        for conn in self.connections:
            for stream in conn.streams.values():
                stream.drain()
                if stream.dump is not None:
                    stream.dump.close()
                    stream.dump = None
            total = {d: sum(s.payload[d] for s in conn.subflows) or 1 for d in ("up", "down")}
            out["connections"].append({
                "connection": conn.number, "version": conn.version, "checksums": conn.checksum,
                "client_key": _hex(conn.client_key), "server_key": _hex(conn.server_key),
                "client_token": _hex(crypto.key_token(conn.client_key, conn.version), 8)
                if conn.client_key is not None else None,
                "server_token": _hex(conn.server_token, 8),
                "subflows": [{
                    "client": _endpoint(*s.client), "server": _endpoint(*s.server),
                    "initial": s.initial, "first_packet": s.first_packet, "backup": s.backup,
                    "client_address_id": 0 if s.initial else s.client_address_id,
                    "server_address_id": 0 if s.initial else s.server_address_id,
                    "bytes": dict(s.payload),
                    "share": {d: round(s.payload[d] / total[d], 4) for d in ("up", "down")},
                    "join_synack_hmac": s.synack_verdict, "join_ack_hmac": s.ack_verdict,
                    "unverified_checksums": s.unverified_checksums + len(s.pending_checksums),
                } for s in conn.subflows],
                "add_addr": conn.add_addrs,
                "streams": {d: self._stream_dict(conn.streams[d]) for d in ("up", "down")},
                "events": [{"packet": n, "event": text} for n, text in conn.events],
                "checksum_failures": conn.checksum_failures,
                "anomalies": conn.anomalies,
            })
        return out

    @staticmethod
    def _stream_dict(stream: Direction) -> dict:
        q = stream.queue
        if q is None:
            return {"bytes": 0, "sha256": None, "complete": False,
                    "not_captured_bytes": stream.not_captured}
        return {"bytes": stream.delivered, "sha256": stream.sha256.hexdigest(), "complete": q.eof,
                "not_captured_bytes": stream.not_captured,
                "out_of_order_bytes": q.out_of_order_bytes, "duplicate_bytes": q.duplicate_bytes,
                "conflict_bytes": q.conflict_bytes}


def _hex(value, width=16):
    return None if value is None else f"{value:0{width}x}"


def analyze(path, dump_dir: str | None = None, progress=None) -> dict:
    """Analyse a capture file; a cut or corrupt file raises CaptureError after the packets
    before the damage were analysed (the partial report is on the exception as ``report``).
    ``progress(byte_offset)`` is called every 4096 packets when given."""
    analyzer = Analyzer(dump_dir)
    with capture.open_capture(path) as reader:
        try:
            for seg in reader:
                analyzer.feed(seg)
                if progress is not None and not seg.number & 4095:
                    progress(seg.offset)
        except capture.CaptureError as exc:
            exc.report = analyzer.report()
            raise
    return analyzer.report()

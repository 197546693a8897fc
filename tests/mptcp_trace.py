"""Build synthetic MPTCP v1 conversations as pcap bytes, with the project's own option
encoder and crypto, for analyzer scenarios the kernel will not produce on demand
(reinjection, fallback, 4-tuple reuse, subflows past 4 GiB, contradictions).

    t = Trace(client_key=..., server_key=...)
    a = t.connect(("198.18.0.1", 40000), ("198.18.0.2", 10000))
    t.send(a, "up", b"hello")              # DSS mapping + payload at the next DSN
    path.write_bytes(t.pcap())
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from mptcp_fast.wire import crypto, dss, options
from mptcp_fast.wire.options import Dss, MpCapable, MpJoinAck, MpJoinSyn, MpJoinSynAck

SYN, ACK, FIN = 0x02, 0x10, 0x01


@dataclass
class Flow:
    client: tuple[str, int]
    server: tuple[str, int]
    isn: dict                                   # "up"/"down" -> ISN
    sent: dict = field(default_factory=lambda: {"up": 0, "down": 0})   # payload bytes so far


class Trace:
    def __init__(self, client_key=0x0123456789ABCDEF, server_key=0xFEDCBA9876543210,
                 checksum=False):
        self.keys = {"up": client_key, "down": server_key}
        self.checksum = checksum
        self.next_dsn = {d: crypto.key_idsn(k) + 1 for d, k in self.keys.items()}
        self.packets: list[bytes] = []

    # -- packets
    def packet(self, flow: Flow, direction: str, opts=(), payload=b"", flags=ACK, seq=None,
               ip_len=None, raw_options=None) -> int:
        """Append one packet; returns its 1-based number. ``ip_len`` claims a longer IP
        packet than the bytes written (a snap-length cut); ``raw_options`` is an options
        area as is (padded with EOL to 32 bits)."""
        src, dst = (flow.client, flow.server) if direction == "up" else (flow.server, flow.client)
        area = options.encode_tcp_options(list(opts)) if opts else b""
        if raw_options is not None:
            area = raw_options[:40] + bytes(-len(raw_options[:40]) % 4)
        if seq is None:
            seq = (flow.isn[direction] + 1 + flow.sent[direction]) & 0xFFFFFFFF
        tcp_len = 20 + len(area)
        tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq, 0, (tcp_len // 4) << 4, flags,
                          65535, 0, 0)
        if ":" in src[0]:                        # IPv6: the payload length excludes the header
            body = (ip_len - 40) if ip_len is not None else tcp_len + len(payload)
            ip = struct.pack(">IHBB16s16s", 6 << 28, body, 6, 64,
                             ipaddress.IPv6Address(src[0]).packed, ipaddress.IPv6Address(dst[0]).packed)
        else:
            total = ip_len if ip_len is not None else 20 + tcp_len + len(payload)
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
                             ipaddress.IPv4Address(src[0]).packed, ipaddress.IPv4Address(dst[0]).packed)
        self.packets.append(ip + tcp + area + payload)
        return len(self.packets)

    def pcap(self) -> bytes:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)]
        for i, pkt in enumerate(self.packets):
            ip_total = struct.unpack_from(">H", pkt, 2)[0] if pkt[0] >> 4 == 4 else \
                40 + struct.unpack_from(">H", pkt, 4)[0]
            out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, len(pkt),
                                   max(ip_total, len(pkt))))
            out.append(pkt)
        return b"".join(out)

    # -- conversations
    def connect(self, client, server, isn_up=1000, isn_down=5000, mp_capable_reply=True) -> Flow:
        flow = Flow(client, server, {"up": isn_up, "down": isn_down})
        flags = 0x81 if self.checksum else 0x01
        self.packet(flow, "up", [MpCapable(1, flags)], flags=SYN, seq=isn_up)
        synack = [MpCapable(1, flags, self.keys["down"])] if mp_capable_reply else []
        self.packet(flow, "down", synack, flags=SYN | ACK, seq=isn_down)
        if mp_capable_reply:
            self.packet(flow, "up", [MpCapable(1, flags, self.keys["up"], self.keys["down"])])
        return flow

    def join(self, client, server, isn_up=70000, isn_down=90000, address_id=2) -> Flow:
        flow = Flow(client, server, {"up": isn_up, "down": isn_down})
        nonce_c, nonce_s = 0x11111111, 0x22222222
        token = crypto.key_token(self.keys["down"])
        self.packet(flow, "up", [MpJoinSyn(address_id, token, nonce_c)], flags=SYN, seq=isn_up)
        thmac = crypto.join_synack_hmac(self.keys["down"], self.keys["up"], nonce_s, nonce_c)
        self.packet(flow, "down", [MpJoinSynAck(0, thmac, nonce_s)], flags=SYN | ACK, seq=isn_down)
        hmac = crypto.join_ack_hmac(self.keys["up"], self.keys["down"], nonce_c, nonce_s)
        self.packet(flow, "up", [MpJoinAck(hmac)])
        return flow

    def send(self, flow: Flow, direction: str, data: bytes, dsn=None, data_fin=False,
             dsn64=True, mapping=True, captured=None, bad_checksum=False) -> int:
        """Data with its DSS mapping at the next subflow byte; ``dsn`` defaults to the next
        DSN of that direction (pass an older one to reinject). ``captured`` keeps only that
        many payload bytes in the file."""
        if dsn is None:
            dsn = self.next_dsn[direction]
            self.next_dsn[direction] += len(data) + data_fin
        ssn = flow.sent[direction] + 1
        length = len(data) + data_fin
        opts = []
        if mapping:
            csum = None
            if self.checksum:
                csum = dss.dss_checksum(dsn, ssn & 0xFFFFFFFF, length, data) ^ bad_checksum
            opts = [Dss(dsn=dsn & (2**64 - 1) if dsn64 else dsn & 0xFFFFFFFF, dsn64=dsn64,
                        subflow_seq=ssn & 0xFFFFFFFF, data_len=length, checksum=csum,
                        data_fin=data_fin)]
        kept = data if captured is None else data[:captured]
        header = 40 if ":" in flow.client[0] else 20
        ip_len = None if captured is None else header + 20 + len(options.encode_tcp_options(opts)) + len(data)
        number = self.packet(flow, direction, opts, kept, ip_len=ip_len)
        flow.sent[direction] += len(data)
        return number

    def skip(self, direction: str, n: int) -> int:
        """``n`` bytes of that direction's stream the capture never sees (sent elsewhere, or
        dropped before it): the next send maps the DSNs after them. Returns their first DSN."""
        dsn = self.next_dsn[direction]
        self.next_dsn[direction] += n
        return dsn

    def data_ack(self, flow: Flow, direction: str, ack: int) -> int:
        """A pure ACK in ``direction`` whose DATA_ACK ``ack`` acknowledges the other
        direction's data (RFC 8684 §3.3.2)."""
        return self.packet(flow, direction, [Dss(data_ack=ack & (2**64 - 1))])


# -- random conversations (analyzer parity and fuzz tests)

CLIENT_1, SERVER_1 = ("198.18.0.1", 40000), ("198.18.0.2", 10000)
CLIENT_2, SERVER_2 = ("198.18.1.1", 40001), ("198.18.1.2", 10000)


def blob(n, seed=0) -> bytes:
    """``n`` bytes of a simple pattern (``seed`` shifts it)."""
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def random_trace(draw_ops: dict) -> Trace:
    """A conversation made of a drawn ``strategies.trace_ops`` example: one connection (and a
    join when drawn), then sends, reinjections, cut and unmapped packets, rewinds, bad
    checksums and packets of arbitrary option bytes."""
    t = Trace(checksum=draw_ops["checksum"])
    flows = [t.connect(CLIENT_1, SERVER_1)]
    if draw_ops["join"]:
        flows.append(t.join(CLIENT_2, SERVER_2))
    for flow_i, direction, kind, n, back, fin in draw_ops["ops"]:
        flow = flows[flow_i % len(flows)]
        data = blob(n, flow_i)
        if kind == "send":
            t.send(flow, direction, data, data_fin=fin)
        elif kind == "reinject":
            t.send(flow, direction, data, dsn=t.next_dsn[direction] - back, data_fin=fin)
        elif kind == "cut":
            t.send(flow, direction, data, captured=n // 2)
        elif kind == "plain":
            t.send(flow, direction, data, mapping=False)
        elif kind == "rewind":
            flow.sent[direction] = max(0, flow.sent[direction] - back)
        elif kind == "skip":                                  # bytes the capture never has
            t.skip(direction, n)
        elif kind == "ack":                                   # a DATA_ACK back, n bytes ahead
            other = "down" if direction == "up" else "up"
            t.data_ack(flow, other, t.next_dsn[direction] - back + n)
        elif kind == "garbage":                               # any option bytes, any flags
            area = draw_ops["garbage"][n % len(draw_ops["garbage"])]
            t.packet(flow, direction, raw_options=area, payload=data[:back % 64], flags=back & 0x3F)
        else:
            t.send(flow, direction, data, bad_checksum=True)
    return t

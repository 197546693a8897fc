"""What a capture shows of each data-level stream, read without the analyzer: the DSN range of
every data packet, from its own DSS mapping (or the last one of its subflow direction, when it
carries none) and its subflow's ISN (from the SYNs of the whole capture, before it was cut),
per RFC 8684 §3.3.1 (DSN = mapping DSN + subflow byte - mapping's subflow sequence number).
The holes between those ranges are the gaps the analyzer must report, the ranges themselves
the pieces it must rebuild.

    handshakes = isns(full_capture)
    seen = dsn_ranges(cut_capture, handshakes)     # {(client, server, "up"|"down"): [(a, b)]}
    holes(ranges, start, end)                      # [(dsn, length)] of [start, end) not seen
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

from mptcp_fast.analysis import capture
from mptcp_fast.wire import options

MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1
SYN, ACK = 0x02, 0x10


def endpoint(address: bytes, port: int) -> str:
    """An endpoint as the report writes it."""
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def pcap_records(path) -> tuple:
    """The pcap file's header and its records (16-byte record header and packet), in order:
    to cut a capture into another (the header, then any of the records)."""
    with open(path, "rb") as f:
        data = f.read()
    header, at, records = data[:24], 24, []
    while at + 16 <= len(data):
        length = struct.unpack_from("<I", data, at + 8)[0]
        records.append(data[at:at + 16 + length])
        at += 16 + length
    return header, records


def isns(path) -> tuple:
    """({(src, sport, dst, dport): ISN} of every SYN and SYN/ACK in the capture, {(address,
    port)} of the sides that sent a SYN without ACK: the clients)."""
    isn, clients = {}, set()
    with capture.open_capture(str(path)) as reader:
        for seg in reader:
            if seg.flags & SYN:
                isn[(seg.src, seg.sport, seg.dst, seg.dport)] = seg.seq
                if not seg.flags & ACK:
                    clients.add((seg.src, seg.sport))
    return isn, clients


def dsn_ranges(path, handshakes: tuple, one_byte_probes: bool = False) -> dict:
    """{(client, server, direction): [(first DSN, end DSN)] of each data packet, in capture
    order} (``handshakes``: what ``isns`` found in the whole capture). Linux's one-byte
    zero-window probes (mapped at an old DSN, docs/analysis.md) are left out unless
    ``one_byte_probes``: the kernel captures' streams are written in 64 KiB blocks, so a
    one-byte segment is one."""
    isn, clients = handshakes
    last_mapping: dict = {}
    out: dict = {}
    with capture.open_capture(str(path)) as reader:
        for seg in reader:
            if not seg.payload_len or seg.flags & SYN:
                continue
            flow = (seg.src, seg.sport, seg.dst, seg.dport)
            if flow not in isn or (seg.payload_len == 1 and not one_byte_probes):
                continue
            for opt in options.parse_tcp_options(seg.options):
                if isinstance(opt, options.Dss) and opt.dsn is not None and opt.data_len:
                    last_mapping[flow] = (opt.dsn, opt.subflow_seq, opt.data_len)
            if flow not in last_mapping:
                continue
            dsn, ssn, length = last_mapping[flow]
            rel = (seg.seq - isn[flow]) & MASK32
            if not ssn <= rel < ssn + length:
                continue
            src, dst = endpoint(seg.src, seg.sport), endpoint(seg.dst, seg.dport)
            key = (src, dst, "up") if (seg.src, seg.sport) in clients else (dst, src, "down")
            first = (dsn + rel - ssn) & MASK64
            out.setdefault(key, []).append((first, first + seg.payload_len))
    return out


def merged(ranges) -> list:
    """The ranges joined where they touch or overlap, in DSN order."""
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [tuple(r) for r in out]


def holes(ranges, start: int, end: int) -> list:
    """[(dsn, length)] of the bytes of [start, end) that no range covers."""
    out, at = [], start
    for a, b in merged(ranges):
        a, b = max(a, start), min(b, end)
        if a > at:
            out.append((at, a - at))
        at = max(at, b)
    if at < end:
        out.append((at, end - at))
    return out


def pieces(ranges, start: int, end: int) -> list:
    """[(dsn, length)] of the covered bytes of [start, end), joined."""
    out = []
    for a, b in merged(ranges):
        a, b = max(a, start), min(b, end)
        if a < b:
            out.append((a, b - a))
    return out


def check_stream(st: dict, ranges, start: int, sent: bytes, origin: int, dump=None) -> None:
    """A stream of the report (``st``) against what the capture showed of it (``ranges``,
    from ``dsn_ranges``) and what was sent (``sent``; ``origin``: where in it the DSN
    ``start`` lies): its gaps are the holes between the ranges, its pieces the ranges joined,
    each piece's SHA-256 (and its bytes in ``dump``, the --dump-stream file, when given)
    those of the bytes sent there; the rebuilt and the missing bytes add up to the stream
    from ``start`` to its DATA_FIN (or the last byte seen)."""
    end = st["data_fin"] if st["data_fin"] is not None else max(b for _, b in ranges)
    want_gaps, want_pieces = holes(ranges, start, end), pieces(ranges, start, end)
    assert [(g["dsn"], g["bytes"]) for g in st["gaps"]] == want_gaps
    assert [g["stream_offset"] for g in st["gaps"]] == [d - start for d, _ in want_gaps]
    assert (st["gap_count"], st["missing_bytes"]) == (len(want_gaps),
                                                      sum(n for _, n in want_gaps))
    assert [(p["dsn"], p["bytes"]) for p in st["pieces"]] == want_pieces
    real, at = [], 0
    for p in st["pieces"]:
        here = origin + p["dsn"] - start
        real.append(sent[here:here + p["bytes"]])
        assert len(real[-1]) == p["bytes"] and p["file_offset"] == at
        assert p["sha256"] == hashlib.sha256(real[-1]).hexdigest()
        at += p["bytes"]
    rebuilt = b"".join(real)
    assert st["bytes"] == len(rebuilt) and st["sha256"] == hashlib.sha256(rebuilt).hexdigest()
    if dump is not None:
        with open(dump, "rb") as f:
            assert f.read() == rebuilt
    assert st["bytes"] + st["missing_bytes"] == end - start
    assert st["complete"] == (not want_gaps and st["data_fin"] is not None)
    assert st["late_bytes"] == 0

"""Pure-Python capture reader: pcap and pcapng files to TCP segments.

Streaming: one record at a time, so memory does not grow with the file. Formats:
pcap (microsecond and nanosecond, both byte orders) and pcapng (SHB, IDB, EPB,
SPB, obsolete PB; several sections and interfaces; if_tsresol per interface).
Link types: Ethernet (VLAN and QinQ tags), Linux SLL and SLL2, raw IP, IPv4,
IPv6, BSD loopback (host- and network-order AF). IPv4 options and IPv6 extension
headers are skipped; fragments and non-TCP packets are counted and skipped.
"""

from __future__ import annotations

import struct

from ..errors import CaptureError
from ._pcap_common import COLUMN_TYPES, Stats
from ..wire._options_py import OPT_EOL, OPT_NOP, OPT_TLV, dss_fields, opt_step
from ..wire._packet_py import PK_FRAGMENT, PK_OK, PK_TRUNCATED, locate

# link-layer header types (tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
_RAW_ALIASES = {12, 14}               # DLT_RAW on some BSDs
_MAX_RECORD = 1 << 24                 # no capture record is larger: a bigger length is corruption

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A


def _read_exact(f, n: int, offset: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CaptureError(f"capture truncated at byte {offset}: {what} needs {n} bytes, "
                           f"{len(data)} left")
    return data


def iter_segments(f, stats: Stats, make):
    """Yield ``make(number, time, interface, src, dst, sport, dport, seq, ack, flags, window,
    options, payload, payload_len, truncated, offset)`` for every TCP segment of the file."""
    for number, time, iface, linktype, data, _orig, offset in records(f, stats):
        where = network_offset(linktype, data)
        if where is None:
            stats.non_tcp += 1
            continue
        ip, version = where
        if ip < 0:
            stats.unknown_link += 1
            continue
        fields = decode_tcp(data, ip, version, stats)
        if fields is not None:
            yield make(number, time, iface, *fields, offset)


def records(f, stats: Stats):
    """Yield (number, time, interface, linktype, data, orig_len, offset) for each packet."""
    start = f.read(4)
    if len(start) < 4:
        raise CaptureError("capture truncated at byte 0: no file header")
    if start in _PCAP_MAGICS:
        yield from _pcap_records(f, start, stats)
    elif struct.unpack("<I", start)[0] == _PCAPNG_SHB:
        yield from _pcapng_records(f, start, stats)
    else:
        raise CaptureError(f"not a pcap or pcapng file at byte 0 (magic {start.hex()})")


def _pcap_records(f, magic: bytes, stats: Stats):
    order, unit = _PCAP_MAGICS[magic]
    header = _read_exact(f, 20, 4, "the pcap file header")
    _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(order + "HHiIII", header)
    linktype &= 0xFFFF                  # the upper bits carry FCS information
    record = struct.Struct(order + "IIII")
    offset, number = 24, 0
    while True:
        head = f.read(16)
        if not head:
            return
        if len(head) < 16:
            raise CaptureError(f"capture truncated at byte {offset}: record header needs 16 bytes, "
                               f"{len(head)} left")
        sec, frac, incl, orig = record.unpack(head)
        if incl > _MAX_RECORD:
            raise CaptureError(f"corrupt record at byte {offset}: captured length {incl}")
        data = _read_exact(f, incl, offset + 16, "the record data")
        number += 1
        stats.records += 1
        yield number, sec + frac * unit, 0, linktype, data, orig, offset
        offset += 16 + incl


def _pcapng_records(f, first: bytes, stats: Stats):
    offset, number = 0, 0
    order = "<"
    interfaces: list[tuple[int, float]] = []      # (linktype, seconds per tick)
    pending = first
    while True:
        head = pending + f.read(8 - len(pending)) if pending else f.read(8)
        pending = b""
        if not head:
            return
        if len(head) < 8:
            raise CaptureError(f"capture truncated at byte {offset}: block header")
        block_type_le = struct.unpack("<I", head[:4])[0]
        if block_type_le == _PCAPNG_SHB:
            magic = _read_exact(f, 4, offset + 8, "the section byte-order magic")
            found = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">" if magic == b"\x1a\x2b\x3c\x4d" else None
            if found is None:
                raise CaptureError(f"corrupt section header at byte {offset}: magic {magic.hex()}")
            order = found
            length = struct.unpack(order + "I", head[4:8])[0]
            if length < 28 or length % 4 or length > _MAX_RECORD:
                raise CaptureError(f"corrupt section header at byte {offset}: length {length}")
            _read_exact(f, length - 12, offset + 12, "the section header")
            interfaces = []
            offset += length
            continue
        block_type, length = struct.unpack(order + "II", head)
        if length < 12 or length % 4 or length > _MAX_RECORD:
            raise CaptureError(f"corrupt pcapng block at byte {offset}: length {length}")
        body = _read_exact(f, length - 8, offset + 8, "the block")[:-4]
        if block_type == 1:                                   # Interface Description Block
            if len(body) < 8:
                raise CaptureError(f"corrupt interface block at byte {offset}")
            linktype = struct.unpack(order + "H", body[:2])[0]
            interfaces.append((linktype, _tsresol(body[8:], order)))
        elif block_type in (6, 2):                            # Enhanced / obsolete Packet Block
            if len(body) < 20:
                raise CaptureError(f"corrupt packet block at byte {offset}")
            if block_type == 6:
                iface, hi, lo, caplen, orig = struct.unpack(order + "IIIII", body[:20])
            else:
                iface, _drops, hi, lo, caplen, orig = struct.unpack(order + "HHIIII", body[:20])
            if iface >= len(interfaces) or caplen > len(body) - 20:
                raise CaptureError(f"corrupt packet block at byte {offset}: interface {iface}, "
                                   f"captured length {caplen}")
            linktype, tick = interfaces[iface]
            number += 1
            stats.records += 1
            yield number, ((hi << 32) | lo) * tick, iface, linktype, body[20:20 + caplen], orig, offset
        elif block_type == 3:                                 # Simple Packet Block
            if len(body) < 4 or not interfaces:
                raise CaptureError(f"corrupt simple packet block at byte {offset}")
            orig = struct.unpack(order + "I", body[:4])[0]
            number += 1
            stats.records += 1
            yield number, 0.0, 0, interfaces[0][0], body[4:4 + orig], orig, offset
        offset += length


def _tsresol(options: bytes, order: str) -> float:
    """Seconds per timestamp tick from the if_tsresol option (code 9); default microseconds."""
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack(order + "HH", options[pos:pos + 4])
        if code == 0:
            break
        if code == 9 and size >= 1 and pos + 4 < len(options):
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        pos += 4 + size + (-size % 4)
    return 1e-6


def network_offset(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) for a link-layer frame, or None if not IP."""
    if linktype == LINKTYPE_ETHERNET:
        pos, ethertype = 12, None
        while pos + 2 <= len(data):
            ethertype = (data[pos] << 8) | data[pos + 1]
            if ethertype in (0x8100, 0x88A8, 0x9100):        # VLAN / QinQ tags
                pos += 4
                continue
            break
        return _by_ethertype(ethertype, pos + 2)
    if linktype == LINKTYPE_LINUX_SLL:
        return _by_ethertype((data[14] << 8) | data[15], 16) if len(data) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return _by_ethertype((data[0] << 8) | data[1], 20) if len(data) >= 20 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6) or linktype in _RAW_ALIASES:
        return (0, data[0] >> 4) if data else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        family = struct.unpack(">I" if linktype == LINKTYPE_LOOP else "<I", data[:4])[0]
        if linktype == LINKTYPE_NULL and family > 0xFFFF:   # written on a big-endian machine
            family = struct.unpack(">I", data[:4])[0]
        if family == 2:
            return 4, 4
        if family in (10, 24, 28, 30):                       # AF_INET6 on Linux, BSDs, macOS
            return 4, 6
        return None
    return -1, 0


def _by_ethertype(ethertype, offset):
    if ethertype == 0x0800:
        return offset, 4
    if ethertype == 0x86DD:
        return offset, 6
    return None


def decode_tcp(data: bytes, ip: int, version: int, stats: Stats):
    """The TCP segment in an IP packet at ``ip`` (the packet layer's ``locate``): a tuple of
    its fields, or None (counted in ``stats``)."""
    status, layout = locate(data, len(data), ip, version)
    if status == PK_TRUNCATED:
        stats.truncated_headers += 1
        return None
    if status == PK_FRAGMENT:
        stats.fragments += 1
        return None
    if status != PK_OK:
        stats.non_tcp += 1
        return None
    _, src, addr_len, tcp, doff, ip_end, cap_end = layout
    sport, dport, seq, ack = struct.unpack_from(">HHII", data, tcp)
    flags = data[tcp + 13]
    window = (data[tcp + 14] << 8) | data[tcp + 15]
    payload_len = ip_end - tcp - doff
    captured = data[tcp + doff:cap_end]
    truncated = len(captured) < payload_len
    if truncated:
        stats.truncated_payloads += 1
    stats.tcp += 1
    return (data[src:src + addr_len], data[src + addr_len:src + 2 * addr_len], sport, dport,
            seq, ack, flags, window, data[tcp + 20:tcp + doff], captured, payload_len, truncated)


# ------------------------------------------------------------------------------------------------
# columns in batches (the layout of pyx/mptcp_fast/analysis/_pcap_c.pyx _ColumnSink)



# Lengths the option codec accepts for the plain TCP options it knows (RFC 9293 §3.2, RFC 7323,
# RFC 2018); anything else there is a MalformedOption to parse_tcp_options.
_TCP_OPTION_LENGTHS = {2: (4,), 3: (3,), 4: (2,), 5: (10, 18, 26, 34), 8: (10,)}


def mptcp_columns(options: bytes):
    """(subtype bits, malformed, dss_flags or 0xFF, data_ack, dsn, ssn, dll, checksum or -1):
    which MPTCP subtypes the area holds, whether its TLV structure, a plain TCP option's length,
    an MPTCP option's subtype octet or a DSS length is malformed (other MPTCP subtypes are left
    to the full parse), and the first valid DSS (RFC 8684 §3.3). The walk and the DSS decoder
    are the codec's (``opt_step``, ``dss_fields``)."""
    subtypes, malformed, dss = 0, False, (0xFF, 0, 0, 0, 0, -1)
    pos, n = 0, len(options)
    while pos < n:
        step, length = opt_step(options, n, pos)
        if step == OPT_EOL:
            break
        if step == OPT_NOP:
            pos += 1
            continue
        if step != OPT_TLV:
            malformed = True
            break
        kind = options[pos]
        if kind in _TCP_OPTION_LENGTHS and length not in _TCP_OPTION_LENGTHS[kind]:
            malformed = True
        if kind == 30 and length < 3:
            malformed = True
        elif kind == 30:
            subtype = options[pos + 2] >> 4
            subtypes |= 1 << subtype
            if subtype == 2:
                fields = dss_fields(options, pos, length)
                if fields is None:
                    malformed = True
                elif dss[0] == 0xFF:
                    f, ack, dsn, ssn, dll, csum = fields
                    dss = (f, ack or 0, dsn or 0, ssn or 0, dll or 0, -1 if csum is None else csum)
        pos += length
    return (subtypes, malformed, *dss)


def iter_columns(f, stats: Stats, batch: int, payloads: bool, payload_bytes: int = 1 << 24):
    """Yield dicts of numpy columns, ``batch`` segments at most each (see mptcp_fast.analysis.capture)."""
    import numpy as np

    batch = max(batch, 1)
    rows: list[tuple] = []
    options_blob, payload_blob = bytearray(), bytearray()

    def flush():
        out = {name: np.array([row[i] for row in rows], dtype=kind)
               for i, (name, kind) in enumerate(COLUMN_TYPES.items())}
        for name, i in (("src", -2), ("dst", -1)):
            out[name] = np.array([list(row[i].ljust(16, b"\0")) for row in rows],
                                 dtype=np.uint8).reshape(-1, 16)
        out["options_blob"], out["payload_blob"] = bytes(options_blob), bytes(payload_blob)
        rows.clear()
        options_blob.clear()
        payload_blob.clear()
        return out

    def make(number, time, iface, src, dst, sport, dport, seq, ack, flags, window, options,
             payload, payload_len, truncated, offset):
        row = (number, time, iface, 4 if len(src) == 4 else 6, sport, dport, seq, ack, flags,
               window, payload_len, len(payload), truncated, offset, len(options_blob),
               len(options), len(payload_blob) if payloads else -1, *mptcp_columns(options),
               src, dst)
        options_blob.extend(options)
        if payloads:
            payload_blob.extend(payload)
        rows.append(row)
        return row

    try:
        for _ in iter_segments(f, stats, make):
            if len(rows) == batch or len(payload_blob) >= payload_bytes:
                yield flush()
    except CaptureError:
        if rows:
            yield flush()                  # everything before the bad record, then the error
        raise
    if rows:
        yield flush()

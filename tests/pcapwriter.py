"""Write minimal pcap files of IPv4/TCP packets for cross-checks with tshark.

Only what the tests need: LINKTYPE_RAW (101), no checksums (tshark does not
verify them by default), one TCP segment per packet carrying the given options.
"""

import struct

LINKTYPE_RAW = 101


def tcp_packet(options_area: bytes, *, src="198.18.0.1", dst="198.18.0.2", sport=40000, dport=10000,
               seq=1, ack=1, flags=0x10, payload=b"") -> bytes:
    """An IPv4 packet holding one TCP segment whose options area is ``options_area``."""
    assert len(options_area) % 4 == 0 and len(options_area) <= 40
    tcp_len = 20 + len(options_area)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, (tcp_len // 4) << 4, flags, 65535, 0, 0)
    total = 20 + tcp_len + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return ip + tcp + options_area + payload


def write_pcap(path, packets) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for i, pkt in enumerate(packets):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(pkt), len(pkt)))
            f.write(pkt)

"""Wireshark as a second opinion: a pcap with every option form, decoded by tshark and by us,
compared field by field (tcp.options.mptcp.* raw fields: reliable, unlike some of its analysis fields on MP_JOIN subflows)."""

import random
import subprocess

import pytest

from mptcp_fast.wire import options as o
from pcapwriter import tcp_packet, write_pcap

pytestmark = pytest.mark.requires("tshark")

FIELDS = [
    "subtype", "version", "flags", "sendkey", "recvkey", "datalvllen", "checksum", "addrid",
    "recvtok", "sendrand", "sendtrunchmac", "sendhmac", "backup.flag", "rawdataack",
    "rawdataseqno", "subflowseqno", "datafin.flag", "dataack8.flag", "dseqn8.flag",
    "dataackpresent.flag", "dseqnpresent.flag", "ipver", "echo", "ipv4", "ipv6", "port",
    "addaddrtrunchmac", "rst_reason", "flag_T.flag",
]


def every_form(rng: random.Random) -> list:
    """All option classes and forms, with random field values."""
    u = rng.getrandbits

    def addr(v6):
        return bytes(u(8) for _ in range(16 if v6 else 4))

    forms = []
    for _ in range(6):
        forms += [
            o.MpCapable(1, 0x01 | (u(1) << 7)),
            o.MpCapable(1, 0x01, u(64)),
            o.MpCapable(1, 0x81, u(64), u(64)),
            o.MpCapable(1, 0x01, u(64), u(64), data_len=u(16)),
            o.MpCapable(1, 0x81, u(64), u(64), data_len=u(16), checksum=u(16)),
            o.MpJoinSyn(u(8), u(32), u(32), bool(u(1))),
            o.MpJoinSynAck(u(8), u(64).to_bytes(8, "big"), u(32), bool(u(1))),
            o.MpJoinAck(u(160).to_bytes(20, "big")),
            o.AddAddr(u(8), addr(False), None, u(64).to_bytes(8, "big")),
            o.AddAddr(u(8), addr(False), u(16), u(64).to_bytes(8, "big")),
            o.AddAddr(u(8), addr(True), None, u(64).to_bytes(8, "big")),
            o.AddAddr(u(8), addr(True), u(16), u(64).to_bytes(8, "big")),
            o.AddAddr(u(8), addr(False)), o.AddAddr(u(8), addr(False), u(16)),
            o.AddAddr(u(8), addr(True)), o.AddAddr(u(8), addr(True), u(16)),
            o.AddAddrV0(u(8), addr(False)), o.AddAddrV0(u(8), addr(True), u(16)),
            o.AddAddr2(u(8), addr(False), None, u(64).to_bytes(8, "big")),
            o.AddAddr2(u(8), addr(False), u(16), u(64).to_bytes(8, "big")),
            o.RemoveAddr([u(8) for _ in range(1 + u(3))]),
            o.MpPrio(bool(u(1))), o.MpPrio(bool(u(1)), u(8)),
            o.MpFail(u(64)), o.MpFastclose(u(64)),
            o.MpTcpRst(u(3) % 7, bool(u(1))),
        ]
        for flags in range(32):   # every combination of F m M a A, with and without checksum
            ack64, dsn64 = bool(flags & 2), bool(flags & 8)
            mapping = {}
            if flags & 4:
                mapping = dict(dsn=u(64 if dsn64 else 32), subflow_seq=u(32), data_len=u(16),
                               checksum=u(16) if u(1) else None)
            forms.append(o.Dss(data_ack=u(64 if ack64 else 32) if flags & 1 else None, ack64=ack64,
                               dsn64=dsn64, data_fin=bool(flags & 16), **mapping))
    return forms


def tcp_flags_for(opt) -> int:
    if isinstance(opt, o.MpCapable) and opt.sender_key is None or isinstance(opt, o.MpJoinSyn):
        return 0x02
    if isinstance(opt, (o.MpJoinSynAck,)) or (isinstance(opt, o.MpCapable) and opt.receiver_key is None):
        return 0x12
    if isinstance(opt, o.MpTcpRst):
        return 0x14
    return 0x10


def expected_fields(opt) -> dict:
    """What tshark should print for ``opt``, in tshark's notation."""
    e = {"subtype": str(int(opt.subtype))}
    hmac_int = lambda b: str(int.from_bytes(b, "big"))  # noqa: E731
    if isinstance(opt, o.MpCapable):
        e.update(version=str(opt.version), flags=f"0x{opt.flags:02x}")
        if opt.sender_key is not None:
            e["sendkey"] = str(opt.sender_key)
        if opt.receiver_key is not None:
            e["recvkey"] = str(opt.receiver_key)
        if opt.data_len is not None:
            e["datalvllen"] = str(opt.data_len)
        e["checksum"] = "" if opt.checksum is None else f"0x{opt.checksum:04x}"
    elif isinstance(opt, o.MpJoinSyn):
        e.update(addrid=str(opt.address_id), recvtok=str(opt.token), sendrand=str(opt.nonce))
        e["backup.flag"] = str(int(opt.backup))
    elif isinstance(opt, o.MpJoinSynAck):
        e.update(addrid=str(opt.address_id), sendtrunchmac=hmac_int(opt.hmac), sendrand=str(opt.nonce))
        e["backup.flag"] = str(int(opt.backup))
    elif isinstance(opt, o.MpJoinAck):
        e["sendhmac"] = opt.hmac.hex()
    elif isinstance(opt, o.Dss):
        e["flags"] = f"0x{opt.flags:02x}"
        e["dataackpresent.flag"] = str(int(opt.data_ack is not None))
        e["dseqnpresent.flag"] = str(int(opt.dsn is not None))
        e["dataack8.flag"], e["dseqn8.flag"] = str(int(opt.ack64)), str(int(opt.dsn64))
        e["datafin.flag"] = str(int(opt.data_fin))
        if opt.data_ack is not None:
            e["rawdataack"] = str(opt.data_ack)
        if opt.dsn is not None:
            e.update(rawdataseqno=str(opt.dsn), subflowseqno=str(opt.subflow_seq),
                     datalvllen=str(opt.data_len))
        # tshark 4.0 prints no DSS checksum for a connection whose handshake it has not
        # analysed, so the DSS checksum is checked by the kernel vectors instead.
    elif isinstance(opt, (o.AddAddr, o.AddAddrV0, o.AddAddr2)):
        e["addrid"] = str(opt.address_id)
        e["ipv4" if opt.family == 4 else "ipv6"] = str(opt.address)
        if opt.port is not None:
            e["port"] = str(opt.port)
        if isinstance(opt, o.AddAddr):
            e["echo"] = str(int(opt.echo))
        else:
            e["ipver"] = str(opt.family)
        if getattr(opt, "hmac", None) is not None:
            e["addaddrtrunchmac"] = hmac_int(opt.hmac)
    elif isinstance(opt, o.RemoveAddr):
        e["addrid"] = ",".join(str(i) for i in opt.address_ids)
    elif isinstance(opt, o.MpPrio):
        e["backup.flag"] = str(int(opt.backup))
        if opt.address_id is not None:
            e["addrid"] = str(opt.address_id)
    elif isinstance(opt, o.MpFail):
        e["rawdataseqno"] = str(opt.dsn)
    elif isinstance(opt, o.MpFastclose):
        e["recvkey"] = str(opt.receiver_key)
    elif isinstance(opt, o.MpTcpRst):
        e.update(rst_reason=f"0x{int(opt.reason):02x}")
        e["flag_T.flag"] = "1" if opt.transient else "0"
    return e


def tshark_fields(path) -> list[dict]:
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "separator=\t"]
    for field in FIELDS:
        cmd += ["-e", f"tcp.options.mptcp.{field}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        rows.append({f: v.replace(":", "") if f == "sendhmac" else v for f, v in zip(FIELDS, values)})
    return rows


def normalise(field, value):
    # tshark prints booleans as True/False or 1/0 depending on field type; ipv6 compressed
    return {"True": "1", "False": "0"}.get(value, value)


def test_tshark_decodes_every_form_like_we_do(tmp_path, backend):
    forms = every_form(random.Random(8684))
    packets = []
    for i, opt in enumerate(forms):
        area = o.encode_tcp_options([opt])
        packets.append(tcp_packet(area, sport=20000 + i, flags=tcp_flags_for(opt)))
    pcap = tmp_path / "forms.pcap"
    write_pcap(pcap, packets)

    rows = tshark_fields(pcap)
    assert len(rows) == len(forms)
    compared = 0
    for number, (opt, row, pkt) in enumerate(zip(forms, rows, packets), start=1):
        # our decode of the bytes in the file, not the object we started from
        decoded = o.parse_tcp_options(pkt[40:])
        ours = [x for x in decoded if x is not o.NOP]
        assert ours == [opt]
        for field, want in expected_fields(ours[0]).items():
            got = normalise(field, row[field])
            assert got == want, f"frame {number} {opt!r}: {field}: tshark {got!r}, ours {want!r}"
            compared += 1
    assert compared > 1500

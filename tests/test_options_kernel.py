"""Every option seen live from Linux 6.18 (docs/kernel-behaviour.md §2, §4, §5) and the RFC/SPEC examples
decode to the stated values, re-encode byte-exact, and obey the kernel's acceptance rules."""

import ipaddress

import pytest

from mptcp_fast import OptionError
from mptcp_fast.wire import options
from mptcp_fast.wire.options import (AddAddr, AddAddr2, AddAddrV0, Dss, MpCapable, MpFail,
                                     MpFastclose, MpJoinAck, MpJoinSyn, MpJoinSynAck, MpPrio,
                                     MpTcpRst, RemoveAddr, ResetReason, Segment)

# Run x1 / x2 keys and nonces captured from the kernel (docs/kernel-behaviour.md §5).
K_A, K_B = 0x8EB52E2FFE8CC175, 0x1C5A07C724183A63

LIVE = [
    # (hex on the wire, expected object)
    ("1e040101", MpCapable(1, 0x01)),
    ("1e040181", MpCapable(1, 0x81)),
    (f"1e0c0101{K_B:016x}", MpCapable(1, 0x01, K_B)),
    (f"1e140101{K_A:016x}{K_B:016x}", MpCapable(1, 0x01, K_A, K_B)),
    ("1e0c1002081d2af62b5da663", MpJoinSyn(address_id=2, token=0x081D2AF6, nonce=0x2B5DA663)),
    ("1e101001727bd9c894992e352bc41846",
     MpJoinSynAck(address_id=1, hmac=bytes.fromhex("727bd9c894992e35"), nonce=0x2BC41846)),
    ("1e18100022abd0d9996ce8c26e72e75dd7a0143c4e6221d1",
     MpJoinAck(bytes.fromhex("22abd0d9996ce8c26e72e75dd7a0143c4e6221d1"))),
    ("1e08200156788365", Dss(data_ack=0x56788365, ack64=False)),
    ("1e0c200343143b25bce216b2", Dss(data_ack=0x43143B25BCE216B2)),
    # checksum-on data segment, server -> client, csum c3c8 over 2000 bytes (captured with net.mptcp.checksum_enabled=1)
    ("1e1c200f43143b25bce216b29a915667704f82010000000107d0c3c8",
     Dss(data_ack=0x43143B25BCE216B2, dsn=0x9A915667704F8201, subflow_seq=1, data_len=2000,
         checksum=0xC3C8)),
    ("1e1a200f43143b25bce216b29a915667704f8201000000010400",
     Dss(data_ack=0x43143B25BCE216B2, dsn=0x9A915667704F8201, subflow_seq=1, data_len=1024)),
    # 32-bit data ack with a 64-bit DSN, as the kernel answers DSN32 mappings
    ("1e16200d5678836598101daa067682cc000000010010",
     Dss(data_ack=0x56788365, ack64=False, dsn=0x98101DAA067682CC, subflow_seq=1, data_len=16)),
    # DATA_FIN without payload: SSN 0, length 1, on every subflow
    ("1e1a201f43143b25bce216b29a915667704f8a00000000000001",
     Dss(data_ack=0x43143B25BCE216B2, dsn=0x9A915667704F8A00, subflow_seq=0, data_len=1,
         data_fin=True)),
    ("1e1030010a000301b4eedf2375594a29", AddAddr(1, "10.0.3.1", hmac=bytes.fromhex("b4eedf2375594a29"))),
    ("1e0831010a000301", AddAddr(1, "10.0.3.1")),
    ("1e1230010a0003012711118607e7815b7f4d",
     AddAddr(1, "10.0.3.1", port=10001, hmac=bytes.fromhex("118607e7815b7f4d"))),
    ("1e0a31010a0003012711", AddAddr(1, "10.0.3.1", port=10001)),
    ("1e044001", RemoveAddr([1])),
    ("1e0351", MpPrio(backup=True)),
    ("1e045100", MpPrio(backup=True, address_id=0)),           # RFC 6824 form, Linux ignores it
    (f"1e0c7000{K_A:016x}", MpFastclose(K_A)),
    ("1e0c600043143b25bce216b2", MpFail(0x43143B25BCE216B2)),
    ("1e048000", MpTcpRst(ResetReason.UNSPECIFIED)),
    ("1e048001", MpTcpRst(ResetReason.MPTCP_ERROR)),
    ("1e048105", MpTcpRst(ResetReason.UNACCEPTABLE_PERFORMANCE, transient=True)),  # RFC 8684 §3.6
    # docs/add-addr2.md: ADD_ADDR2 from Key-A, ID 5, 192.0.2.1, no port
    ("1e103405c00002011bacfddc1024aa2a",
     AddAddr2(5, "192.0.2.1", hmac=bytes.fromhex("1bacfddc1024aa2a"))),
    # RFC 8684 §3.1: ACK with 12 bytes of first data, no checksum
    ("1e1601010123456789abcdeffedcba9876543210000c",
     MpCapable(1, 0x01, 0x0123456789ABCDEF, 0xFEDCBA9876543210, data_len=12)),
    # RFC 6824 ADD_ADDR (IPVer 4) with port, and IPv6 echo
    ("1e0a3403c0000201" "1f90", AddAddrV0(3, "192.0.2.1", port=8080)),
    ("1e14310720010db8000000000000000000000001", AddAddr(7, "2001:db8::1")),
]

@pytest.mark.parametrize("wire,expected", LIVE, ids=[w[:10] for w, _ in LIVE])
def test_live_option_decodes_and_reencodes(backend, wire, expected):
    raw = bytes.fromhex(wire)
    opt = options.parse_option(raw)
    assert opt == expected
    assert opt.encode() == raw
    assert expected.encode() == raw


def test_field_values_of_a_kernel_dss(backend):
    opt = options.parse_option(bytes.fromhex("1e1c200f43143b25bce216b29a915667704f8201"
                                             "0000000107d0c3c8"))
    assert (opt.data_ack, opt.ack64, opt.dsn, opt.dsn64) == (0x43143B25BCE216B2, True,
                                                             0x9A915667704F8201, True)
    assert (opt.subflow_seq, opt.data_len, opt.checksum, opt.data_fin) == (1, 2000, 0xC3C8, False)
    assert opt.flags == 0x0F and not opt.is_infinite_mapping


def test_add_addr_accessors(backend):
    v6 = options.parse_option(bytes.fromhex("1e1e3009" + "20010db8" + "00" * 11 + "05" + "0050"
                                            + "1122334455667788"))
    assert v6.address == ipaddress.ip_address("2001:db8::5") and v6.family == 6
    assert v6.port == 80 and v6.hmac == bytes.fromhex("1122334455667788") and not v6.echo
    v4 = options.parse_option(bytes.fromhex("1e0831010a000301"))
    assert v4.echo and v4.hmac is None and v4.family == 4 and v4.port is None


def test_mp_capable_flag_accessors(backend):
    opt = options.parse_option(bytes.fromhex("1e0401a1"))
    assert opt.checksum_required and opt.deny_join_to_source and not opt.extensibility
    assert opt.algorithm == "hmac-sha256"
    v0 = options.parse_option(bytes.fromhex("1e0c0081" + "0123456789abcdef"))
    assert v0.version == 0 and v0.algorithm == "hmac-sha1" and not v0.deny_join_to_source


# docs/kernel-behaviour.md §4: how a 6.18 listener answered crafted SYNs (accepted = it replied with MPTCP).
SYN_PROBES = [
    ("1e040101", True), ("1e040181", True), ("1e0c0081" + "0123456789abcdef", False),
    ("1e0c0181" + "0123456789abcdef", False), ("1e040201", True), ("1e040001", False),
    ("1e040103", False), ("1e040141", False), ("1e040100", False), ("1e040121", True),
]


@pytest.mark.parametrize("wire,accepted", SYN_PROBES)
def test_strict_syn_rules_match_the_kernel(backend, wire, accepted):
    raw = bytes.fromhex(wire)
    if accepted:
        assert isinstance(options.parse_option(raw, Segment.SYN), MpCapable)
    else:
        with pytest.raises(OptionError):
            options.parse_option(raw, Segment.SYN)


def test_strict_third_ack_rules(backend):
    ack20 = bytes.fromhex(f"1e140101{K_A:016x}{K_B:016x}")
    ack22 = bytes.fromhex(f"1e160101{K_A:016x}{K_B:016x}000c")
    assert options.parse_option(ack20, Segment.ACK) == MpCapable(1, 0x01, K_A, K_B)
    assert options.parse_option(ack22, Segment.DATA) == MpCapable(1, 0x01, K_A, K_B, data_len=12)
    with pytest.raises(OptionError, match="length"):
        options.parse_option(ack20, Segment.DATA)   # rawclient mpc20_with_data: fallback
    with pytest.raises(OptionError):
        options.parse_option(ack22, Segment.ACK)


def test_strict_rules_for_other_subtypes(backend):
    with pytest.raises(OptionError):
        options.parse_option(bytes.fromhex("1e045100"), Segment.ACK)      # MP_PRIO(4) ignored
    assert options.parse_option(bytes.fromhex("1e0351"), Segment.ACK) == MpPrio(backup=True)
    with pytest.raises(OptionError):
        options.parse_option(bytes.fromhex("1e048001"), Segment.ACK)      # MP_TCPRST needs RST
    assert options.parse_option(bytes.fromhex("1e048001"), Segment.RST) == \
        MpTcpRst(ResetReason.MPTCP_ERROR, transient=False)
    with pytest.raises(OptionError):
        options.parse_option(bytes.fromhex("1e0c1002081d2af62b5da663"), Segment.SYN_ACK)
    with pytest.raises(OptionError):                                     # v0 8-byte ADD_ADDR
        options.parse_option(bytes.fromhex("1e0834010a000301"), Segment.ACK)
    with pytest.raises(OptionError):                                     # > MPTCP_RM_IDS_MAX
        options.parse_option(bytes.fromhex("1e0d40" + "01" * 10), Segment.ACK)


def test_dss_claiming_dsn64_with_length_16_is_rejected(backend):
    # docs/kernel-behaviour.md §1: "a DSS claiming M|m with length 16 was ignored"
    with pytest.raises(OptionError) as info:
        options.parse_option(bytes.fromhex("1e10200c" + "00" * 12))
    err = info.value
    assert (err.option, err.field, err.offset) == ("DSS", "length", 1)
    assert "18 or 20" in str(err)


def test_typical_data_segment_options_area(backend):
    area = bytes.fromhex("0101080a0001e2400001e23f" "1e1c200f43143b25bce216b29a915667704f8201"
                         "0000000107d0c3c8")
    parsed = options.parse_tcp_options(area)
    assert parsed[:3] == [options.NOP, options.NOP, options.Timestamps(0x1E240, 0x1E23F)]
    assert parsed[3].checksum == 0xC3C8
    assert options.encode_tcp_options(parsed[2:]) == area


def test_kernel_syn_options_area(backend):
    # MSS, SACK_PERM, TS, NOP, WS, MP_CAPABLE as Linux sends a SYN (docs/kernel-behaviour.md §2)
    area = bytes.fromhex("020405b40402080a0001e24000000000010303071e040101")
    parsed = options.parse_tcp_options(area, Segment.SYN)
    assert parsed == [options.Mss(1460), options.SackPermitted(), options.Timestamps(0x1E240, 0),
                      options.NOP, options.WindowScale(7), MpCapable(1, 0x01)]
    assert options.encode_tcp_options(parsed, align=False) == area

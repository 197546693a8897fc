"""The protocol versions that deployed implementations older than RFC 8684 speak: RFC 6824's v0
(SHA-1 tokens and IDSNs, the key in the SYN, HMAC-SHA1 joins, ADD_ADDR without an HMAC, MP_PRIO
with an address id) and v0 with the HMAC-protected ADD_ADDR2 of draft-ietf-mptcp-rfc6824bis-00;
engine to engine in each profile, versions that cannot meet fall back to TCP, tshark decodes v0
cleanly.
"""

from __future__ import annotations

import subprocess

import pytest

from enginenet import C0, C1, PORT, S0, S1, drain, options_of, pump, transfer
from mptcp_fast.wire import crypto, options as opt
from mptcp_fast.engine import Config, Endpoint, events as ev

MB = 1 << 20
PATHS = {(C0, S0): dict(rate=20e6, delay=0.010), (C1, S0): dict(rate=20e6, delay=0.010),
         (C0, S1): dict(rate=20e6, delay=0.010)}


def _v0_transfer(profile, pcap):
    """2 MiB up, 1 MiB down over three paths in ``profile``, every packet written to ``pcap``."""
    run = transfer(PATHS, up=2 * MB, down=MB, server_addresses=(S0, S1), pcap=str(pcap),
                   config=Config(profile=profile, time_wait=0.5),
                   server_config=Config(profile=profile, signal_addresses={S1}, time_wait=0.5))
    run.check_exact(2 * MB, MB)
    return run


@pytest.mark.parametrize("profile", ["v0", "v0+add_addr2"])
def test_transfer_in_each_v0_profile(backend, profile, tmp_path):
    conn = _v0_transfer(profile, tmp_path / "v0.pcap").conn
    assert conn.version == 0 and conn.fallback is None
    assert conn.local_token == crypto.key_token(conn.local_key, version=0)      # SHA-1
    remotes = {sf.remote for sf in conn.all_subflows}
    assert bytes([198, 18, 1, 2]) in remotes                     # the announced address joined
    assert len(conn.all_subflows) == 3 and all(sf.bytes_sent > 0 for sf in conn.all_subflows)


@pytest.mark.requires("tshark")
@pytest.mark.parametrize("profile", ["v0", "v0+add_addr2"])
def test_tshark_flags_nothing_in_each_v0_profile(backend, profile, tmp_path):
    pcap = tmp_path / "v0.pcap"
    _v0_transfer(profile, pcap)
    bad = subprocess.run(["tshark", "-r", str(pcap), "-o", "tcp.check_checksum:TRUE",
                          "--disable-protocol", "gsm_ipa", "-Y",
                          # tshark counts the two NOPs before the timestamps and the
                          # two after a checksum-less DSS (Linux's layout) as "4 NOP in
                          # a row"; that note aside, nothing may be flagged
                          "_ws.malformed or (_ws.expert.severity >= warning and "
                          "!(_ws.expert.message contains \"NOP in a row\"))",
                          "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    assert bad == ""


def test_the_v0_handshake_on_the_wire(backend):
    client = Endpoint([C0], Config(profile="v0"))
    server = Endpoint([S0], Config(profile="v0"))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    seen = pump(client, server)
    mpcs = [(s is client, o) for s, p in seen for o in options_of(p) if type(o) is opt.MpCapable]
    server_conn = next(iter(server.connections.values()))
    assert mpcs[:3] == [(True, opt.MpCapable(0, 0x01, conn.local_key)),       # SYN: 12 bytes
                        (False, opt.MpCapable(0, 0x01, server_conn.local_key)),
                        (True, opt.MpCapable(0, 0x01, conn.local_key, server_conn.local_key))]
    keys = crypto.KeyContext(conn.local_key, server_conn.local_key, version=0)
    conn.send(b"v0 data")
    seen = pump(client, server, 1.0)
    dss = [o for s, p in seen if s is client for o in options_of(p) if type(o) is opt.Dss and o.dsn]
    assert dss[0].dsn == keys.local_idsn + 1                      # SHA-1 IDSN, DSS from the start
    assert b"".join(e.data for e in drain(server) if type(e) is ev.DataReceived) == b"v0 data"


@pytest.mark.parametrize("client_profile, server_profile",
                         [("v1", "v0"), ("v0", "v1")])
def test_versions_that_cannot_meet_fall_back_to_tcp(backend, client_profile, server_profile):
    run = transfer({(C0, S0): dict(rate=20e6, delay=0.010)}, up=MB, down=MB // 2,
                   client_addresses=(C0,),
                   config=Config(profile=client_profile, time_wait=0.5),
                   server_config=Config(profile=server_profile, time_wait=0.5))
    run.check_exact(MB, MB // 2)
    assert run.conn.fallback is not None and run.up[1].conn.fallback is not None


def test_mp_prio_v0_names_the_address(backend):
    client = Endpoint([C0, C1], Config(profile="v0", time_wait=0.1))
    server = Endpoint([S0], Config(profile="v0", time_wait=0.1))
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    conn.send(b"x")
    pump(client, server)
    server_conn = next(iter(server.connections.values()))
    conn.set_backup(1, True)
    seen = pump(client, server, 1.0)
    prio = [o for s, p in seen for o in options_of(p) if type(o) is opt.MpPrio]
    assert prio == [opt.MpPrio(True, conn.subflows[1].local_address_id)]
    assert server_conn.subflows[1].backup and not server_conn.subflows[0].backup

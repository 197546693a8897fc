"""The engine against the Linux kernel over a TUN device (issue #13): transfers both ways with
several subflows, byte-exact; the kernel's counters say what it accepted. Root only (network
namespaces and /dev/net/tun); skipped cleanly elsewhere, run in CI (root)."""

from __future__ import annotations

import hashlib
import threading

import pytest

from mptcp_fast import kernel
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.engine import events as ev
from mptcp_fast.engine.apps import BulkApp, pattern
from mptcp_fast.netns import have_root
from mptcp_fast.testbed import KernelPeer, TunBed, find_mptcp_option, fix_tcp_checksum
from mptcp_fast.tunhost import TunHost


def _kernel_mptcp() -> bool:
    try:
        kernel.mptcp_socket().close()
        return True
    except kernel.KernelMptcpError:
        return False


pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not have_root() or not _kernel_mptcp(),
                                 reason="needs root, /dev/net/tun, iproute2 and kernel MPTCP")]

MB = 1_000_000
PORT = 5000
FALLBACK_COUNTERS = ("MPTcpExtInfiniteMapTx", "MPTcpExtDSSCorruptionFallback",
                     "MPTcpExtMPCapableFallbackACK", "MPTcpExtMPCapableFallbackSYNACK",
                     "MPTcpExtMPCapableDataFallback", "MPTcpExtDssFallback")
HMAC_FAILURES = ("MPTcpExtMPJoinAckHMacFailure", "MPTcpExtMPJoinSynAckHMacFailure")


@pytest.fixture
def bed():
    with TunBed(paths=3) as made:
        yield made


def _app(bed, addresses, send_bytes, seed=3, close_when_done=True, **config):
    config.setdefault("offload", True)
    endpoint = Endpoint(addresses, Config(**config))
    app = BulkApp(endpoint, send_bytes=send_bytes, seed=seed, close_when_done=close_when_done)
    return app, TunHost(app, bed.device)


def _stream(seed: int, size: int) -> bytes:
    """The first ``size`` bytes of the seeded stream BulkApp and KernelPeer send."""
    block = pattern(seed)[:len(pattern(seed)) // 2]
    return (block * (size // len(block) + 1))[:size]


def _only(app):
    (transfer,) = app.transfers.values()
    return transfer


def _to_kernel_server(bed, app, host, peer, timeout=60):
    """Open our connection to the kernel's server and run until both ends finished; return
    our side's transfer."""
    app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=timeout)
    peer.join()
    return _only(app)


def _from_kernel_client(bed, app, host, send_bytes, timeout=60):
    """The kernel's client connects to our server at our first address, sending
    ``send_bytes``; both ends run until they finished and the streams are exact both ways.
    Returns (the kernel's peer, our side's transfer)."""
    peer = KernelPeer(bed.ns, send_bytes=send_bytes).connect(bed.engine_addresses[0], PORT)
    assert host.run(until=lambda: peer.done() and app.transfers and _only(app).eof,
                    timeout=timeout)
    peer.join()
    transfer = _only(app)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    return peer, transfer


def _established(transfer):
    return [e for _, e in transfer.subflow_events if type(e) is ev.SubflowEstablished]


def test_kernel_client_to_engine_server_three_subflows_both_ways(bed, backend):
    """Kernel client (two "subflow" endpoints: three subflows) to the engine's server, 100 MB
    each way at once, byte-exact; the kernel's MP_JOINs met our HMACs."""
    for address in bed.kernel_addresses[1:]:
        bed.endpoint(address, "subflow")
    app, host = _app(bed, bed.engine_addresses[:1], 100 * MB)
    app.endpoint.listen(PORT)
    before = bed.counters()
    peer = KernelPeer(bed.ns, send_bytes=100 * MB, seed=9).connect(bed.engine_addresses[0], PORT)
    assert host.run(until=lambda: peer.done() and app.transfers and _only(app).eof, timeout=120)
    peer.join()
    assert peer.error is None
    transfer = _only(app)
    assert peer.received == 100 * MB and peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received == 100 * MB and transfer.received_hash.hexdigest() == \
        peer.sent_sha256
    assert len(_established(transfer)) == 3
    assert {local for (local, _), _ in peer.subflows} == set(bed.kernel_addresses)
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNTX") == 1 and moved.get("MPTcpExtMPCapableSYNACKRX") == 1
    assert moved.get("MPTcpExtMPJoinSynTx") == 2 and moved.get("MPTcpExtMPJoinSynAckRx") == 2
    assert not any(moved.get(name) for name in HMAC_FAILURES + FALLBACK_COUNTERS)


def test_engine_client_to_kernel_server_three_subflows_both_ways(bed, backend):
    """The engine's client joins from its two other addresses; the kernel server checks our
    MP_JOIN HMACs (MPJoinAckRx rises, no HMAC failure); 100 MB each way, byte-exact."""
    app, host = _app(bed, bed.engine_addresses, 100 * MB)
    peer = KernelPeer(bed.ns, send_bytes=100 * MB, seed=9).listen(bed.kernel_addresses[0], PORT)
    before = bed.counters()
    app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=120)
    peer.join()
    assert peer.error is None
    transfer = _only(app)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest() and peer.received == 100 * MB
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert len(_established(transfer)) == 3
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX") == 1 and moved.get("MPTcpExtMPCapableACKRX") == 1
    assert moved.get("MPTcpExtMPJoinSynRx") == 2 and moved.get("MPTcpExtMPJoinAckRx") == 2
    assert not any(moved.get(name) for name in HMAC_FAILURES + FALLBACK_COUNTERS)
    assert peer.info is not None and not peer.info.fallback


@pytest.mark.parametrize("announce", [False, True], ids=["alone", "with-signal"])
def test_deny_join_to_the_initial_address_is_honoured(bed, announce):
    """With net.mptcp.allow_join_initial_addr_port=0 the kernel server's
    MP_CAPABLE SYN/ACK carries flag C (RFC 8684 §3.1). Our client, which would join the server's
    address from each of its other addresses, sends no MP_JOIN to it (MPJoinSynRx stays 0);
    when the server also announces an address, that one is joined."""
    bed.ns.sysctl("net.mptcp.allow_join_initial_addr_port", 0)
    if announce:
        bed.endpoint(bed.kernel_addresses[1], "signal")
    app, host = _app(bed, bed.engine_addresses, 4 * MB)
    peer = KernelPeer(bed.ns, send_bytes=4 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=60)
    peer.join()
    transfer = _only(app)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert transfer.conn.peer_denies_initial
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynRx", 0) == (1 if announce else 0)
    remotes = {e.remote[0] for e in _established(transfer)}
    assert remotes == ({bed.kernel_addresses[0], bed.kernel_addresses[1]} if announce
                       else {bed.kernel_addresses[0]})


def _corrupt_once(subtype, length, at):
    """A rewrite that flips one byte (``at`` bytes into the option) of the first MPTCP option
    of ``subtype``/``length`` it sees, and fixes the TCP checksum: a forgery, not noise."""
    state = {"done": 0}

    def rewrite(packet):
        where = find_mptcp_option(packet, subtype, length)
        if where is None or state["done"]:
            return packet
        state["done"] += 1
        edited = bytearray(packet)
        edited[where + at] ^= 0x5A
        return fix_tcp_checksum(edited)
    rewrite.state = state
    return rewrite


def test_kernel_refuses_a_wrong_join_hmac_from_us(bed):
    """Our third MP_JOIN ACK (24 bytes: the 160-bit HMAC) with one byte forged: the kernel
    counts MPJoinAckHMacFailure and resets that subflow; the data still arrives whole on
    the others."""
    app, host = _app(bed, bed.engine_addresses, 5 * MB)
    host.rewrite_outbound = forge = _corrupt_once(1, 24, 10)
    peer = KernelPeer(bed.ns, send_bytes=5 * MB).listen(bed.kernel_addresses[0], PORT)
    before = bed.counters()
    transfer = _to_kernel_server(bed, app, host, peer, timeout=60)
    assert forge.state["done"] == 1
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinAckHMacFailure") == 1
    assert moved.get("MPTcpExtMPJoinAckRx", 0) == 1            # the good one of the two
    closed = [e for _, e in transfer.subflow_events if type(e) is ev.SubflowClosed]
    assert len(closed) >= 1


def test_engine_refuses_a_forged_join_synack_from_the_kernel_side(bed):
    """The kernel's MP_JOIN SYN/ACK (16 bytes: the truncated 64-bit HMAC) forged on its way to
    us: we refuse the subflow with a RST carrying MP_TCPRST, the kernel never completes that
    join (its request is dropped by the RST, so no counter of its moves) and the connection
    carries on on the initial subflow."""
    app, host = _app(bed, bed.engine_addresses[:2], 5 * MB)
    host.rewrite_inbound = forge = _corrupt_once(1, 16, 6)
    resets = []

    def watch(packet):
        where = find_mptcp_option(packet, 8)                     # MP_TCPRST
        if where is not None and packet[20 + 13] & 0x04:          # on a RST
            resets.append(bytes(packet[where:where + 4]))
        return packet
    host.rewrite_outbound = watch
    peer = KernelPeer(bed.ns, send_bytes=5 * MB).listen(bed.kernel_addresses[0], PORT)
    before = bed.counters()
    conn = app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=60)
    peer.join()
    transfer = _only(app)
    assert forge.state["done"] == 1 and conn.bad_join == 1
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert _established(transfer) and len(_established(transfer)) == 1   # the initial one
    assert resets == [bytes([30, 4, 0x80, 0x01])]   # MP_TCPRST, T=0, reason 1: MPTCP error
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynRx") == 1 and not moved.get("MPTcpExtMPJoinAckRx")
    assert len(peer.subflows) == 1 and peer.info.subflows == 0


def test_kernel_add_addr_is_verified_and_joined(bed):
    """The kernel server announces 198.18.2.1 ("signal" endpoint): we check its HMAC, echo it
    and join it (the kernel counts AddAddrTx, EchoAdd and our MP_JOIN). The ADD_ADDR has no
    port, so the join goes to port 5000 at the new address: the listener takes any address,
    as a server's does."""
    bed.endpoint(bed.kernel_addresses[1], "signal")
    app, host = _app(bed, bed.engine_addresses[:1], 16 * MB)
    peer = KernelPeer(bed.ns, send_bytes=16 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    transfer = _to_kernel_server(bed, app, host, peer, timeout=60)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert not [e for _, e in transfer.subflow_events if type(e) is ev.SubflowClosed
                and e.reason == "reset"]                  # the join was not refused
    remotes = {e.remote for e in _established(transfer)}
    assert len(remotes) == 2
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtAddAddrTx") == 1 and moved.get("MPTcpExtEchoAdd") == 1
    assert moved.get("MPTcpExtMPJoinSynRx") == 1 and moved.get("MPTcpExtMPJoinAckRx") == 1


@pytest.mark.parametrize("announce", [False, True], ids=["alone", "with-signal"])
def test_the_kernel_honours_our_flag_c(bed, announce):
    """Flag C the other way (the selftests' deny_join_id0): our server sets C in its MP_CAPABLE SYN/ACK
    (Config.deny_join_initial). The kernel client, which would join our initial address from
    its "subflow" endpoint, sends no MP_JOIN there (MPJoinSynTx 0); an address we announce is
    joined (MPJoinSynTx 1)."""
    bed.endpoint(bed.kernel_addresses[1], "subflow")
    extra = {"signal_addresses": {bed.engine_addresses[1]}} if announce else {}
    app, host = _app(bed, bed.engine_addresses[:2], 4 * MB, deny_join_initial=True, **extra)
    app.endpoint.listen(PORT)
    before = bed.counters()
    peer, transfer = _from_kernel_client(bed, app, host, 4 * MB)
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynTx", 0) == (1 if announce else 0)
    assert app.endpoint.stats.get("refused_join", 0) == 0         # it never tried


def test_the_kernels_syn_cookies_to_our_client(bed, backend):
    """SYN cookies the other way: the kernel server answers every SYN with a cookie
    (net.ipv4.tcp_syncookies=2), the MP_CAPABLE handshake and our MP_JOIN from our second
    address included (Linux keeps MPTCP state in its cookies); the transfer is exact both
    ways over two subflows."""
    bed.ns.sysctl("net.ipv4.tcp_syncookies", 2)
    app, host = _app(bed, bed.engine_addresses[:2], 4 * MB)
    peer = KernelPeer(bed.ns, send_bytes=4 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    paws = bed.ns.counters("TcpExt").get("TcpExtPAWSEstab", 0)
    transfer = _to_kernel_server(bed, app, host, peer, timeout=60)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert len(_established(transfer)) == 2
    tcp = bed.ns.counters("TcpExt")
    assert tcp.get("TcpExtSyncookiesSent", 0) >= 2 and tcp.get("TcpExtSyncookiesRecv", 0) >= 2
    assert tcp.get("TcpExtPAWSEstab", 0) == paws
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPCapableSYNRX") == 1 and moved.get("MPTcpExtMPJoinAckRx") == 1


def test_an_address_removed_and_announced_again_is_joined_again(bed):
    """The kernel server deletes its "signal" endpoint (its subflow to us
    ends, REMOVE_ADDR) and adds it again with the same id: its ADD_ADDR comes again, and we
    join it again (a second MPJoinSynRx), as Linux skips a join only while a subflow to that
    address exists."""
    address = bed.kernel_addresses[1]
    bed.ns.ip("mptcp", "endpoint", "add", address, "dev", bed.device.name, "id", "7", "signal")
    app, host = _app(bed, bed.engine_addresses[:1], 60 * MB)
    peer = KernelPeer(bed.ns, send_bytes=60 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    app.open((bed.kernel_addresses[0], PORT), host.clock())

    def joined(n):
        return lambda: sum(e.remote[0] == address for e in _established(_only(app))) >= n

    assert host.run(until=joined(1), timeout=20)
    bed.ns.ip("mptcp", "endpoint", "delete", "id", "7")
    gone = lambda: any(type(e) is ev.SubflowClosed and e.remote[0] == address  # noqa: E731
                       for _, e in _only(app).subflow_events)
    assert host.run(until=gone, timeout=20)
    bed.ns.ip("mptcp", "endpoint", "add", address, "dev", bed.device.name, "id", "7", "signal")
    assert host.run(until=joined(2), timeout=20)
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=60)
    peer.join()
    transfer = _only(app)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynRx") == 2 and moved.get("MPTcpExtRmAddrTx") == 1
    # each announcement echoed at once: the kernel never had to send one again
    assert moved.get("MPTcpExtAddAddrTx") == 2 and moved.get("MPTcpExtEchoAdd") == 2


def test_a_kernel_client_through_our_syn_cookies(bed, backend):
    """Our server answers every SYN with a cookie (syn_backlog=0). The
    kernel client's transfer and its MP_JOIN complete, and no segment of ours fails the
    kernel's PAWS check (TcpExtPAWSEstab unchanged): the timestamps of the subflow rebuilt
    from the cookie continue the clock of the cookie's SYN/ACK (they jumped by 2**31 when
    their offset came from the cookie ISN)."""
    bed.endpoint(bed.kernel_addresses[1], "subflow")
    app, host = _app(bed, bed.engine_addresses[:1], 8 * MB, syn_backlog=0)
    app.endpoint.listen(PORT)
    before = bed.counters()
    paws = bed.ns.counters("TcpExt").get("TcpExtPAWSEstab", 0)
    peer, transfer = _from_kernel_client(bed, app, host, 8 * MB)
    assert peer.error is None and peer.received == 8 * MB
    assert app.endpoint.stats["syn_cookies_accepted"] >= 1
    assert len(_established(transfer)) == 2                     # the join went through
    assert bed.ns.counters("TcpExt").get("TcpExtPAWSEstab", 0) == paws
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynAckRx") == 1


# ---------------------------------------------------------------- with part 2 of the engine
def test_our_add_addr_is_accepted_and_joined_by_the_kernel(bed, backend):
    """Our server announces 198.18.2.2 ("signal"): the kernel client checks the HMAC (AddAddr
    rises, no drop), echoes it (EchoAddTx) and joins it (MPJoinSynTx)."""
    app, host = _app(bed, bed.engine_addresses[:2], 16 * MB,
                     signal_addresses={bed.engine_addresses[1]})
    app.endpoint.listen(PORT)
    before = bed.counters()
    peer, transfer = _from_kernel_client(bed, app, host, 16 * MB)
    assert {e.local[0] for e in _established(transfer)} == set(bed.engine_addresses[:2])
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtAddAddr") == 1 and moved.get("MPTcpExtEchoAddTx") == 1
    assert moved.get("MPTcpExtMPJoinSynTx") == 1 and moved.get("MPTcpExtMPJoinSynAckRx") == 1
    assert not moved.get("MPTcpExtAddAddrDrop")


def test_a_kernel_join_to_our_backup_address_is_answered_with_b(bed, backend):
    """The kernel joins an address our server holds as a backup address
    (Config.backup_addresses, as Linux's "backup" endpoint flag): our MP_JOIN SYN/ACK carries
    B (RFC 8684 §3.2) and the kernel counts MPJoinSynAckBackupRx; the subflow is a backup to
    our scheduler too."""
    app, host = _app(bed, bed.engine_addresses[:2], 16 * MB,
                     signal_addresses={bed.engine_addresses[1]},
                     backup_addresses={bed.engine_addresses[1]})
    app.endpoint.listen(PORT)
    before = bed.counters()
    peer, transfer = _from_kernel_client(bed, app, host, 16 * MB)
    joined = [e for e in _established(transfer) if e.local[0] == bed.engine_addresses[1]]
    assert len(joined) == 1 and joined[0].backup
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinSynAckRx") == 1
    assert moved.get("MPTcpExtMPJoinSynAckBackupRx") == 1


@pytest.fixture
def checksum_bed():
    with TunBed(paths=2, checksums=True) as made:
        yield made


def test_dss_checksums_both_ways(checksum_bed, backend):
    """net.mptcp.checksum_enabled=1 on the kernel and checksums in our Config: negotiated
    (MPTCP_INFO says so), 20 MB each way over two subflows, not one checksum error."""
    bed = checksum_bed
    app, host = _app(bed, bed.engine_addresses, 20 * MB, checksums=True)
    peer = KernelPeer(bed.ns, send_bytes=20 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    transfer = _to_kernel_server(bed, app, host, peer, timeout=60)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert peer.info.csum_enabled == 1 and transfer.conn.checksums
    assert len(_established(transfer)) == 2
    moved = bed.ns.counters_since(before)
    assert not moved.get("MPTcpExtDataCsumErr") and not moved.get("MPTcpExtMPFailTx")


def _flip_payload_byte(after: int):
    """A rewrite that flips one payload byte of the ``after``-th large data segment and fixes
    the TCP checksum (what the kernel's MP_FAIL selftest does with tc pedit): only the DSS
    checksum can tell. Records the subflow sequence number of the flipped byte."""
    state = {"seen": 0, "flipped_seq": None, "isn": None}

    def rewrite(packet):
        ip_len = (packet[0] & 0x0F) * 4
        tcp_len = (packet[ip_len + 12] >> 4) * 4
        flags = packet[ip_len + 13]
        seq = int.from_bytes(packet[ip_len + 4:ip_len + 8], "big")
        if flags & 0x02:                                          # SYN: the ISN
            state["isn"] = seq
        if len(packet) - ip_len - tcp_len < 1000 or state["flipped_seq"] is not None:
            return packet
        state["seen"] += 1
        if state["seen"] < after:
            return packet
        edited = bytearray(packet)
        edited[ip_len + tcp_len + 500] ^= 0xFF
        state["flipped_seq"] = seq + 500
        return fix_tcp_checksum(edited)
    rewrite.state = state
    return rewrite


def test_corrupted_byte_to_the_kernel_is_met_with_mp_fail(checksum_bed):
    """One payload byte we send is changed on the way (TCP checksum fixed): the kernel's DSS
    checksum catches it (DataCsumErr), it sends MP_FAIL (MPFailTx), we answer with MP_FAIL on
    a pure ACK (MPFailRx) and an infinite mapping on the next data (InfiniteMapRx), and both
    continue as TCP. The kernel keeps what the path delivered: everything arrives, exactly one
    byte differing from what we sent; its own 16 MB reach us whole. (The kernel sends too,
    and more than we do: a Linux 6.18 whose side was already shut down before the fallback
    never reports the end of the stream to its application. So our 2nd large segment is the
    one changed, and the kernel sends 16 MB: with 3 MB and the 10th segment, the kernel
    sometimes finished before the MP_FAIL.)"""
    bed = checksum_bed
    size = 3 * MB
    app, host = _app(bed, bed.engine_addresses[:1], size, checksums=True)
    host.rewrite_outbound = flip = _flip_payload_byte(2)
    peer = KernelPeer(bed.ns, send_bytes=16 * MB, seed=9).listen("0.0.0.0", PORT)
    before = bed.counters()
    app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=60)
    peer.join()
    state = flip.state
    offset = (state["flipped_seq"] - state["isn"] - 1) % (1 << 32)     # in the byte stream
    expected = bytearray(_stream(3, size))
    expected[offset] ^= 0xFF
    assert peer.received == size
    assert peer.received_sha256 == hashlib.sha256(expected).hexdigest()
    assert _only(app).received_hash.hexdigest() == peer.sent_sha256
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtDataCsumErr") == 1 and moved.get("MPTcpExtInfiniteMapRx") == 1
    assert moved.get("MPTcpExtMPFailTx") == 1 and moved.get("MPTcpExtMPFailRx") == 1
    assert any(type(e) is ev.FellBackToTcp for e in app.events)


def test_corrupted_byte_from_the_kernel_is_met_with_mp_fail(checksum_bed):
    """One payload byte the kernel sends is changed on the way: our DSS checksum catches it,
    we send MP_FAIL (the kernel's MPFailRx), the kernel answers with MP_FAIL (MPFailTx) and an
    infinite mapping (InfiniteMapTx); both sides continue as TCP. (Linux 6.18 then stops
    sending on that subflow here — its retransmissions never reach the device — so this test
    checks the exchange, not the rest of the transfer.)"""
    bed = checksum_bed
    app, host = _app(bed, bed.engine_addresses[:1], 0, checksums=True)
    host.rewrite_inbound = flip = _flip_payload_byte(10)
    KernelPeer(bed.ns, send_bytes=3 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    conn = app.open((bed.kernel_addresses[0], PORT), host.clock())

    def exchanged():
        moved = bed.ns.counters_since(before)
        return moved.get("MPTcpExtInfiniteMapTx") == 1
    assert host.run(until=exchanged, timeout=30)
    assert flip.state["flipped_seq"] is not None
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPFailRx") == 1 and moved.get("MPTcpExtMPFailTx") == 1
    assert conn.checksum_failures == 1 and conn.fallback.endswith("(MP_FAIL)")
    assert any(type(e) is ev.FellBackToTcp for e in app.events)


def test_fallback_to_a_kernel_without_mptcp(bed, backend):
    """net.mptcp.enabled=0 on the kernel side (a plain TCP listener): our MP_CAPABLE SYN is
    answered without it, we continue as TCP, 10 MB each way byte-exact."""
    bed.ns.sysctl("net.mptcp.enabled", 0)
    with pytest.raises(kernel.KernelMptcpError):
        with bed.ns.entered():
            kernel.mptcp_socket()
    app, host = _app(bed, bed.engine_addresses, 10 * MB)
    peer = KernelPeer(bed.ns, send_bytes=10 * MB, mptcp=False).listen("0.0.0.0", PORT)
    transfer = _to_kernel_server(bed, app, host, peer, timeout=60)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert any(type(e) is ev.FellBackToTcp for e in app.events)
    assert len(_established(transfer)) == 1


def test_a_path_going_down_mid_transfer(bed, backend):
    """Two subflows; after 5 MB the second path drops every packet both ways: the kernel
    marks that subflow stale and retransmits at the data level, we reinject ours; 20 MB
    each way arrive whole."""
    app, host = _app(bed, bed.engine_addresses[:2], 20 * MB)
    peer = KernelPeer(bed.ns, send_bytes=20 * MB).listen("0.0.0.0", PORT)
    before = bed.counters()
    app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: _only(app).received > 5 * MB and peer.received > 5 * MB,
                    timeout=30)
    down = host.impair(bed.engine_addresses[1], down=True)
    assert host.run(until=lambda: peer.done() and _only(app).eof, timeout=90)
    peer.join()
    transfer = _only(app)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    assert down.dropped > 0
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPJoinAckRx") == 1


def test_loss_and_delay_in_our_packet_path(bed, backend):
    """The harness impairs both paths both ways (1 % loss, 5 ms each way): both ends resend
    what was dropped and 10 MB each way arrive whole over the two subflows."""
    app, host = _app(bed, bed.engine_addresses[:2], 10 * MB)
    impaired = [host.impair(address, loss=0.01, delay=0.005)
                for address in bed.engine_addresses[:2]]
    peer = KernelPeer(bed.ns, send_bytes=10 * MB).listen("0.0.0.0", PORT)
    transfer = _to_kernel_server(bed, app, host, peer, timeout=120)
    assert peer.received_sha256 == transfer.sent_hash.hexdigest()
    assert transfer.received_hash.hexdigest() == peer.sent_sha256
    dropped = sum(i.dropped for i in impaired)
    assert dropped > 0 and sum(i.delayed for i in impaired) > dropped
    assert len(_established(transfer)) == 2
    assert sum(s["retransmits"] for s in transfer.conn.stats()["subflows"]) > 0   # we resent
    assert bed.ns.counters("TcpRetransSegs")["TcpRetransSegs"] > 0        # and so did Linux


def test_our_fastclose_is_seen_by_the_kernel(bed):
    """We abort mid-transfer: MP_FASTCLOSE with MP_TCPRST on our RSTs; the kernel counts
    MPFastcloseRx and MPRstRx and its socket reports ECONNRESET."""
    app, host = _app(bed, bed.engine_addresses[:2], 50 * MB)
    peer = KernelPeer(bed.ns).listen("0.0.0.0", PORT)
    before = bed.counters()
    conn = app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: peer.received > 2 * MB, timeout=30)
    conn.abort(host.clock())
    assert host.run(until=peer.done, timeout=10)
    assert isinstance(peer.error, ConnectionResetError)
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPFastcloseRx") == 1 and moved.get("MPTcpExtMPRstRx") >= 1
    assert _only(app).terminated == "aborted"


def test_kernel_fastclose_is_seen_by_us(bed):
    """The kernel application closes with data unread: the kernel sends MP_FASTCLOSE (and
    MP_TCPRST) on both subflows; we check the key and end the connection ("fastclose")."""
    with bed.ns.entered():
        listener = kernel.mptcp_socket()
    listener.bind(("0.0.0.0", PORT))
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    app, host = _app(bed, bed.engine_addresses[:2], 50 * MB, close_when_done=False)
    before = bed.counters()
    conn = app.open((bed.kernel_addresses[0], PORT), host.clock())
    assert host.run(until=lambda: accepted and len(_established(_only(app))) == 2, timeout=30)
    assert accepted[0].recv(1000)
    host.run(timeout=0.3)                                 # more arrives, left unread
    accepted[0].close()                                   # unread data: MP_FASTCLOSE
    listener.close()
    assert host.run(until=lambda: _only(app).terminated is not None, timeout=10)
    moved = bed.ns.counters_since(before)
    assert moved.get("MPTcpExtMPFastcloseTx") == 2            # one per subflow
    assert moved.get("MPTcpExtMPRstTx") == 2
    assert _only(app).terminated == "fastclose"
    assert conn.bad_fastclose == 0
    closed = [e for e in app.events if type(e) is ev.SubflowClosed]
    assert len(closed) == 2 and {e.reason for e in closed} == {"fastclose"}
    # the RST that carried MP_FASTCLOSE carried MP_TCPRST too: reason 0, "unspecified" (the
    # other subflow's RST finds it already closed)
    assert [e.reset_reason for e in closed].count(0) == 1

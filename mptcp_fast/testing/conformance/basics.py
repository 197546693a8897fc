"""Handshakes, fallback, forged HMACs, DSS checksums and MP_FAIL, a path lost, MP_FASTCLOSE
(after the kernel's mptcp_connect.sh and mptcp_join.sh groups of the same names).

The kernel's counters: ``MPJoinAckHMacFailure`` (a third ACK whose HMAC is wrong),
``DataCsumErr`` (a DSS checksum wrong), ``MPFailTx`` / ``MPFailRx``, ``InfiniteMapTx`` /
``InfiniteMapRx`` (the fallback after MP_FAIL), ``MPFastcloseTx`` / ``MPFastcloseRx`` and
``MPRstTx`` / ``MPRstRx`` (MP_TCPRST on a RST).
"""

from __future__ import annotations

import hashlib
import threading

from ...net import kernel
from ...engine import events as ev
from ..testbed import KernelPeer, TunBed, find_mptcp_option, fix_tcp_checksum, stream
from . import case
from .scenario import MIB, PORT, Engine, established, fell_back, judge_exact

HMAC_FAILURES = ("MPJoinAckHMacFailure", "MPJoinSynAckHMacFailure")
FALLBACK_COUNTERS = ("InfiniteMapTx", "DSSCorruptionFallback", "MPCapableFallbackACK",
                     "MPCapableFallbackSYNACK", "MPCapableDataFallback", "DssFallback")


# ---------------------------------------------------------------- handshakes, three subflows
@case("handshake", "handshake/kernel-client-three-subflows",
      "the kernel's client joins us twice (two subflow endpoints); 32 MiB each way, exact")
def kernel_client_three_subflows(judge):
    with TunBed("mfb", paths=3) as bed:
        for address in bed.kernel_addresses[1:]:
            bed.endpoint(address, "subflow")
        engine = Engine(bed, bed.engine_addresses[:1], 32 * MIB, subflows=3).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=32 * MIB, seed=9, subflows=3)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=120))
        judge.equal("subflows", len(established(engine.transfer)), 3)
        judge.equal("the kernel's subflow addresses",
                    {local for (local, _), _ in peer.subflows}, set(bed.kernel_addresses))
        judge.kernel(bed.ns, before, {"MPCapableSYNTX": 1, "MPCapableSYNACKRX": 1,
                                      "MPJoinSynTx": 2, "MPJoinSynAckRx": 2},
                 HMAC_FAILURES + FALLBACK_COUNTERS)


@case("handshake", "handshake/engine-client-three-subflows",
      "we join the kernel's server from our two other addresses; 32 MiB each way, exact")
def engine_client_three_subflows(judge):
    with TunBed("mfb", paths=3) as bed:
        engine = Engine(bed, bed.engine_addresses, 32 * MIB, subflows=3)
        peer = KernelPeer(bed.ns, send_bytes=32 * MIB, seed=9, subflows=3)
        peer.listen(bed.kernel_addresses[0], PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=120))
        judge.equal("subflows", len(established(engine.transfer)), 3)
        judge.check("MPTCP_INFO: no fallback", peer.info is not None and not peer.info.fallback)
        judge.kernel(bed.ns, before, {"MPCapableSYNRX": 1, "MPCapableACKRX": 1,
                                      "MPJoinSynRx": 2, "MPJoinAckRx": 2},
                 HMAC_FAILURES + FALLBACK_COUNTERS)


@case("fallback", "fallback/kernel-without-mptcp",
      "net.mptcp.enabled=0 on the kernel: our MP_CAPABLE SYN is answered without it, we go on "
      "as TCP; 8 MiB each way, exact")
def kernel_without_mptcp(judge):
    with TunBed("mfb", paths=2) as bed:
        bed.ns.sysctl("net.mptcp.enabled", 0)
        engine = Engine(bed, bed.engine_addresses, 8 * MIB)
        peer = KernelPeer(bed.ns, send_bytes=8 * MIB, mptcp=False).listen("0.0.0.0", PORT)
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.check("we fell back to TCP", fell_back(engine))
        judge.equal("subflows", len(established(engine.transfer)), 1)


# ---------------------------------------------------------------- forged HMACs
def corrupt_once(subtype, length, at):
    """A rewrite that flips one byte (``at`` bytes into the option) of the first MPTCP option
    of ``subtype``/``length`` it sees, and fixes the TCP checksum: a forgery, not noise."""
    def rewrite(packet):
        where = find_mptcp_option(packet, subtype, length)
        if where is None or rewrite.done:
            return packet
        rewrite.done += 1
        edited = bytearray(packet)
        edited[where + at] ^= 0x5A
        return fix_tcp_checksum(edited)
    rewrite.done = 0
    return rewrite


@case("hmac", "hmac/the-kernel-refuses-our-forged-third-ack",
      "our MP_JOIN third ACK's HMAC forged on the way: the kernel counts MPJoinAckHMacFailure "
      "and resets that subflow; the data arrives whole on the others")
def forged_third_ack(judge):
    with TunBed("mfb", paths=3) as bed:
        engine = Engine(bed, bed.engine_addresses, 4 * MIB)
        engine.host.rewrite_outbound = forge = corrupt_once(1, 24, 10)
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB).listen(bed.kernel_addresses[0], PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("third ACKs forged", forge.done, 1)
        judge.kernel(bed.ns, before, {"MPJoinAckHMacFailure": 1, "MPJoinAckRx": 1})
        judge.check("our subflow was closed", any(
            type(e) is ev.SubflowClosed for _, e in engine.transfer.subflow_events))


@case("hmac", "hmac/we-refuse-a-forged-synack",
      "the kernel's MP_JOIN SYN/ACK forged on the way: we answer with a RST carrying "
      "MP_TCPRST reason 1, the kernel never completes the join; the data arrives whole")
def forged_synack(judge):
    with TunBed("mfb", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 4 * MIB)
        engine.host.rewrite_inbound = forge = corrupt_once(1, 16, 6)
        resets = []

        def watch(packet):
            where = find_mptcp_option(packet, 8)                     # MP_TCPRST
            if where is not None and packet[20 + 13] & 0x04:          # on a RST
                resets.append(bytes(packet[where:where + 4]))
            return packet
        engine.host.rewrite_outbound = watch
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB).listen(bed.kernel_addresses[0], PORT)
        before = bed.counters()
        conn = engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("SYN/ACKs forged", forge.done, 1)
        judge.equal("joins we refused", conn.bad_join, 1)
        judge.equal("subflows", len(established(engine.transfer)), 1)
        judge.equal("our RST's MP_TCPRST (reason 1: MPTCP error)", resets,
                    [bytes([30, 4, 0x80, 0x01])])
        judge.kernel(bed.ns, before, {"MPJoinSynRx": 1, "MPJoinAckRx": 0})


# ---------------------------------------------------------------- checksums and MP_FAIL
def flip_payload_byte(after: int):
    """A rewrite that flips one payload byte of the ``after``-th large data segment and fixes
    the TCP checksum (what the kernel's MP_FAIL selftest does with tc pedit): only the DSS
    checksum can tell. Records the subflow sequence number of the flipped byte."""
    state = {"seen": 0, "flipped_seq": None, "isn": None}

    def rewrite(packet):
        ip_len = (packet[0] & 0x0F) * 4
        tcp_len = (packet[ip_len + 12] >> 4) * 4
        seq = int.from_bytes(packet[ip_len + 4:ip_len + 8], "big")
        if packet[ip_len + 13] & 0x02:                           # SYN: the ISN
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
    rewrite.state = state  # type: ignore[attr-defined]  # (the test reads it)
    return rewrite


@case("checksums", "checksums/both-ways-two-subflows",
      "DSS checksums negotiated with the kernel (MPTCP_INFO), 16 MiB each way over two "
      "subflows, DataCsumErr 0, MPFailTx 0")
def checksums_both_ways(judge):
    with TunBed("mfb", paths=2, checksums=True) as bed:
        engine = Engine(bed, bed.engine_addresses, 16 * MIB, checksums=True, subflows=2)
        peer = KernelPeer(bed.ns, send_bytes=16 * MIB, subflows=2).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.check("checksums on both sides",
                    peer.info is not None and peer.info.csum_enabled == 1
                    and engine.transfer.conn.checksums)
        judge.equal("subflows", len(established(engine.transfer)), 2)
        judge.kernel(bed.ns, before, {}, ("DataCsumErr", "MPFailTx"))


@case("mp_fail", "mp_fail/a-byte-we-send-is-changed",
      "one payload byte of ours changed on the way: the kernel's DSS checksum catches it, "
      "MP_FAIL both ways, an infinite mapping from us; the kernel keeps what the path "
      "delivered (one byte differs), its 16 MB reach us whole")
def mp_fail_to_the_kernel(judge):
    size = 3 * MIB
    with TunBed("mfb", paths=1, checksums=True) as bed:
        engine = Engine(bed, bed.engine_addresses[:1], size, checksums=True, hold=0)
        engine.host.rewrite_outbound = flip = flip_payload_byte(2)
        # the kernel sends more than we do: a Linux 6.18 whose side was already shut down
        # before the fallback never reports the end of the stream to its application
        peer = KernelPeer(bed.ns, send_bytes=16 * MIB, seed=9).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        finished = engine.exchange(peer, timeout=60)
        judge.check("both ends finished in time", finished)
        state = flip.state
        judge.check("a byte was changed", state["flipped_seq"] is not None)
        if state["flipped_seq"] is not None:
            offset = (state["flipped_seq"] - state["isn"] - 1) % (1 << 32)
            expected = bytearray(stream(3, size))
            expected[offset] ^= 0xFF
            judge.equal("bytes the kernel received", peer.received, size)
            judge.check("the kernel received what we sent, one byte changed",
                        peer.received_sha256 == hashlib.sha256(expected).hexdigest())
        judge.check("we received exactly what the kernel sent",
                    engine.transfer.received_hash.hexdigest() == peer.sent_sha256)
        judge.check("we fell back to TCP", fell_back(engine))
        judge.kernel(bed.ns, before, {"DataCsumErr": 1, "InfiniteMapRx": 1, "MPFailTx": 1,
                                      "MPFailRx": 1})


@case("mp_fail", "mp_fail/a-byte-the-kernel-sends-is-changed",
      "one payload byte of the kernel's changed on the way: our DSS checksum catches it, we "
      "send MP_FAIL, the kernel answers with MP_FAIL and an infinite mapping")
def mp_fail_from_the_kernel(judge):
    # (Linux 6.18 then stops sending on that subflow here, its retransmissions never reach
    # the device: the exchange is judged, not the rest of the transfer)
    with TunBed("mfb", paths=1, checksums=True) as bed:
        engine = Engine(bed, bed.engine_addresses[:1], 0, checksums=True, hold=0)
        engine.host.rewrite_inbound = flip = flip_payload_byte(10)
        KernelPeer(bed.ns, send_bytes=3 * MIB).listen("0.0.0.0", PORT)
        before = bed.counters()
        conn = engine.open(bed.kernel_addresses[0])
        judge.check("the kernel sent its infinite mapping", engine.run(
            lambda: bed.ns.counters_since(before).get("MPTcpExtInfiniteMapTx") == 1, 30))
        judge.check("a byte was changed", flip.state["flipped_seq"] is not None)
        judge.equal("checksum failures we found", conn.checksum_failures, 1)
        judge.check("we fell back for MP_FAIL", conn.fallback.endswith("(MP_FAIL)"))
        judge.kernel(bed.ns, before, {"MPFailRx": 1, "MPFailTx": 1})


# ---------------------------------------------------------------- a path lost
@case("path_down", "path_down/the-second-path-blackholed",
      "after 5 MB the second path drops everything both ways: the kernel's data and ours go "
      "around it; 20 MB each way, exact")
def path_down(judge):
    with TunBed("mfb", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 20 * MIB)
        peer = KernelPeer(bed.ns, send_bytes=20 * MIB).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge.check("5 MB each way before the cut", engine.run(
            lambda: engine.transfer.received > 5 * MIB and peer.received > 5 * MIB, 30))
        down = engine.host.impair(bed.engine_addresses[1], down=True)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=90))
        judge.check("packets were dropped", down.dropped > 0)
        judge.kernel(bed.ns, before, {"MPJoinAckRx": 1})


# ---------------------------------------------------------------- MP_FASTCLOSE
@case("fastclose", "fastclose/ours",
      "we abort mid-transfer: MP_FASTCLOSE and MP_TCPRST on our RSTs; the kernel counts "
      "MPFastcloseRx and its socket reports ECONNRESET")
def our_fastclose(judge):
    with TunBed("mfb", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 50 * MIB)
        peer = KernelPeer(bed.ns).listen("0.0.0.0", PORT)
        before = bed.counters()
        conn = engine.open(bed.kernel_addresses[0])
        judge.check("2 MB arrived", engine.run(lambda: peer.received > 2 * MIB, 30))
        conn.abort(engine.host.clock())
        judge.check("the kernel's side ended", engine.run(peer.done, 10))
        judge.check("the kernel's socket reported ECONNRESET",
                    isinstance(peer.error, ConnectionResetError))
        judge.equal("our end", engine.transfer.terminated, "aborted")
        # Every one of our RSTs carries MP_FASTCLOSE (RFC 8684 §3.5). Linux counts each whose
        # key matches until its worker has torn the connection down, so a busy machine counts
        # the second subflow's too: one or two, never more than the subflows.
        moved = judge.kernel(bed.ns, before)
        judge.counter_between(moved, "MPFastcloseRx", 1, 2)
        judge.counter_at_least(moved, "MPRstRx", 1)


@case("fastclose", "fastclose/the-kernels",
      "the kernel's application closes with data unread: MP_FASTCLOSE and MP_TCPRST on both "
      "subflows; we check the key and end the connection")
def kernel_fastclose(judge):
    with TunBed("mfb", paths=2) as bed:
        with bed.ns.entered():
            listener = kernel.mptcp_socket()
        listener.bind(("0.0.0.0", PORT))
        listener.listen(1)
        accepted = []
        threading.Thread(target=lambda: accepted.append(listener.accept()[0]),
                         daemon=True).start()
        engine = Engine(bed, bed.engine_addresses, 50 * MIB)
        before = bed.counters()
        conn = engine.open(bed.kernel_addresses[0])
        judge.check("both subflows up", engine.run(
            lambda: accepted and len(established(engine.transfer)) == 2, 30))
        if accepted:
            accepted[0].recv(1000)
            engine.run(lambda: False, 0.3)                  # more arrives, left unread
            accepted[0].close()                             # unread data: MP_FASTCLOSE
        listener.close()
        judge.check("our connection ended", engine.run(
            lambda: engine.transfer.terminated is not None, 10))
        judge.equal("our end", engine.transfer.terminated, "fastclose")
        judge.equal("forged fastcloses", conn.bad_fastclose, 0)
        closed = [e for e in engine.app.events if type(e) is ev.SubflowClosed]
        judge.equal("subflows closed by it", sorted(e.reason for e in closed),
                    ["fastclose", "fastclose"])
        # the RST that carried MP_FASTCLOSE carried MP_TCPRST too: reason 0, "unspecified"
        judge.equal("MP_TCPRST reason 0 seen", [e.reset_reason for e in closed].count(0), 1)
        judge.kernel(bed.ns, before, {"MPFastcloseTx": 2, "MPRstTx": 2})

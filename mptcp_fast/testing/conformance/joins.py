"""Joins and addresses with the kernel's in-kernel path manager (after the kernel's
mptcp_join.sh): ADD_ADDR both ways and again after a removal, add_addr_timeout both ways,
fullmesh and signal+subflow endpoints toward three addresses of ours, backup joins, flag C
(deny_join_id0) both ways, SYN cookies both ways, IPv4-mapped IPv6 sockets on the kernel's
side, and a mapping on a joined subflow that the kernel acknowledges and drops.

Linux counts an ADD_ADDR it sends in AddAddrTx and one it receives in AddAddr, an echo it
receives in EchoAdd and one it sends in EchoAddTx; MPJoinSynTx / MPJoinSynAckRx are the joins
it opens, MPJoinSynRx / MPJoinAckRx those it accepts.
"""

from __future__ import annotations

import socket

from ...engine import events as ev
from ...sim.netem import remap_to_past
from ..testbed import KernelPeer, TunBed, find_mptcp_option, fix_tcp_checksum
from . import case
from .scenario import MIB, PORT, Engine, established, judge_exact

ADD_ADDR = 3


def strip_first_echo():
    """A rewrite that blanks (with NOPs) the first ADD_ADDR echo it sees, as a middlebox that
    drops an option would: the announcer never learns it was heard and must announce again.
    ``rewrite.stripped`` counts what it did."""
    def rewrite(packet):
        if rewrite.stripped:
            return packet
        where = find_mptcp_option(packet, ADD_ADDR)
        if where is None or not packet[where + 2] & 0x01:         # the E flag (RFC 8684 §3.4.1)
            return packet
        edited = bytearray(packet)
        edited[where:where + packet[where + 1]] = b"\x01" * packet[where + 1]
        rewrite.stripped += 1
        return fix_tcp_checksum(edited)
    rewrite.stripped = 0
    return rewrite


def on_address(address: str, middlebox):
    """The (outbound, inbound) rewrites of a TunHost that hand the IPv4 packets from and to our
    ``address`` to a netem middlebox (outbound as its a-to-b direction), the others unchanged."""
    packed = socket.inet_aton(address)

    def outbound(packet):
        return middlebox(packet, True) if packet[12:16] == packed else packet

    def inbound(packet):
        return middlebox(packet, False) if packet[16:20] == packed else packet
    return outbound, inbound


@case("data-level", "data-level/a-mapping-the-kernel-drops-is-sent-again",
      "our third mapping on the joined subflow is moved onto bytes the kernel has: it "
      "acknowledges the segment and drops the bytes; our data-level timer sends them again")
def dropped_mapping_sent_again(judge):
    with TunBed("mfj", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 4 * MIB, subflows=2)
        remap = remap_to_past(nth=3)
        engine.host.rewrite_outbound, engine.host.rewrite_inbound = on_address(
            bed.engine_addresses[1], remap)
        peer = KernelPeer(bed.ns, send_bytes=MIB, subflows=2).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        judge.at_least("our data-level retransmissions",
                       engine.transfer.conn.data_retransmits, 1)
        moved = judge.kernel(bed.ns, before, {"MPJoinSynRx": 1, "MPJoinAckRx": 1})
        judge.counter_at_least(moved, "DuplicateData", 1)       # the kernel dropped the bytes


@case("add_addr_timeout", "add_addr_timeout/the-kernel-announces-again",
      "our first echo lost: the kernel sends its ADD_ADDR again after add_addr_timeout "
      "(AddAddrTx 2, EchoAdd 1); we join it once")
def kernel_announces_again(judge):
    with TunBed("mfj", paths=2) as bed:
        bed.ns.sysctl("net.mptcp.add_addr_timeout", 1)
        bed.endpoint(bed.kernel_addresses[1], "signal")
        engine = Engine(bed, bed.engine_addresses[:1], 4 * MIB)
        engine.host.rewrite_outbound = strip = strip_first_echo()
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, hold=2.0).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("echoes stripped", strip.stripped, 1)
        judge.kernel(bed.ns, before, {"AddAddrTx": 2, "EchoAdd": 1, "MPJoinSynRx": 1,
                                      "MPJoinAckRx": 1})


@case("add_addr_timeout", "add_addr_timeout/we-announce-again",
      "the kernel's first echo lost: we send our ADD_ADDR again after an RTO (AddAddr 2, "
      "EchoAddTx 2); the kernel joins it once")
def we_announce_again(judge):
    with TunBed("mfj", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses[:2], 4 * MIB,
                        signal_addresses={bed.engine_addresses[1]}).listen()
        engine.host.rewrite_inbound = strip = strip_first_echo()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, hold=2.0)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("echoes stripped", strip.stripped, 1)
        judge.kernel(bed.ns, before, {"AddAddr": 2, "EchoAddTx": 2, "MPJoinSynTx": 1,
                                      "MPJoinSynAckRx": 1})


@case("fullmesh", "fullmesh/two-endpoints-to-three-addresses",
      "the kernel's two fullmesh endpoints join each of our three addresses: 6 joins")
def fullmesh(judge):
    with TunBed("mfj", paths=3) as bed:
        for address in bed.kernel_addresses[1:]:
            bed.endpoint(address, "subflow", "fullmesh")
        engine = Engine(bed, bed.engine_addresses, 8 * MIB,
                        signal_addresses=set(bed.engine_addresses[1:])).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=8 * MIB, hold=1.0)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        pairs = {(e.remote[0], e.local[0]) for e in established(engine.transfer)}
        expected = {(k, e) for k in bed.kernel_addresses[1:] for e in bed.engine_addresses}
        judge.equal("joined (kernel address, our address) pairs", pairs - {
            (bed.kernel_addresses[0], bed.engine_addresses[0])}, expected)
        moved = judge.kernel(bed.ns, before)
        judge.echoed(moved, "AddAddr", "EchoAddTx", 2)
        judge.counter(moved, "MPJoinSynTx", 6)
        judge.counter(moved, "MPJoinSynAckRx", 6)


@case("signal+subflow", "signal+subflow/kernel-client-to-three-addresses",
      "the kernel's signal+subflow endpoint opens a subflow and is announced (echoed by us); "
      "it joins the two addresses we announce: 3 joins")
def signal_and_subflow(judge):
    with TunBed("mfj", paths=3) as bed:
        bed.endpoint(bed.kernel_addresses[1], "signal", "subflow")
        engine = Engine(bed, bed.engine_addresses, 8 * MIB,
                        signal_addresses=set(bed.engine_addresses[1:])).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=8 * MIB, hold=1.0)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("subflows", len(established(engine.transfer)), 4)
        moved = judge.kernel(bed.ns, before)
        judge.echoed(moved, "AddAddrTx", "EchoAdd", 1)
        judge.echoed(moved, "AddAddr", "EchoAddTx", 2)
        judge.counter(moved, "MPJoinSynTx", 3)
        judge.counter(moved, "MPJoinSynAckRx", 3)


@case("v4-mapped", "v4-mapped/kernel-server",
      "an IPv6 kernel socket on :: takes our IPv4 connection and join (v4-mapped)")
def v4_mapped_server(judge):
    with TunBed("mfj", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 4 * MIB, subflows=2)
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, family=socket.AF_INET6, subflows=2)
        peer.listen("::", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        judge.check("the kernel's socket saw v4-mapped addresses",
                    all(local.startswith("::ffff:") for (local, _), _ in peer.subflows)
                    and len(peer.subflows) == 2)
        judge.kernel(bed.ns, before, {"MPCapableSYNRX": 1, "MPJoinSynRx": 1, "MPJoinAckRx": 1})


@case("v4-mapped", "v4-mapped/kernel-client",
      "an IPv6 kernel socket connects to ::ffff:198.18.0.2 and its subflow endpoint joins us")
def v4_mapped_client(judge):
    with TunBed("mfj", paths=2) as bed:
        bed.endpoint(bed.kernel_addresses[1], "subflow")
        engine = Engine(bed, bed.engine_addresses[:1], 4 * MIB, subflows=2).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, family=socket.AF_INET6, subflows=2)
        peer.connect("::ffff:" + bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        judge.kernel(bed.ns, before, {"MPCapableSYNTX": 1, "MPJoinSynTx": 1, "MPJoinSynAckRx": 1})


@case("join-retry", "join-retry/a-lost-join-syn-is-sent-again",
      "the kernel's MP_JOIN SYN is lost; its retransmission, 1 s later, is accepted "
      "(MPJoinSynAckRx 1), 1 MiB each way exact")
def lost_join_syn(judge):
    with TunBed("mfj", paths=2, ipv6=True) as bed:
        bed.endpoint(bed.kernel_addresses[1], "subflow")
        engine = Engine(bed, bed.engine_addresses[:1], MIB, subflows=2).listen()
        second_path = engine.host.impair(bed.kernel_addresses[1], down=True)
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=MIB, family=socket.AF_INET6, subflows=2)
        peer.connect(bed.engine_addresses[0], PORT)
        judge.check("the first MP_JOIN SYN was lost",
                    engine.run(lambda: second_path.dropped > 0, timeout=10))
        second_path.down = False
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=30))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        judge.kernel(bed.ns, before, {"MPCapableSYNTX": 1, "MPJoinSynAckRx": 1})


# ---------------------------------------------------------------- ADD_ADDR both ways
@case("add_addr", "add_addr/the-kernels-is-verified-and-joined",
      "the kernel's server announces an address: we check its HMAC, echo it and join it "
      "(AddAddrTx 1, EchoAdd 1, MPJoinSynRx 1)")
def kernel_add_addr(judge):
    with TunBed("mfj", paths=2) as bed:
        bed.endpoint(bed.kernel_addresses[1], "signal")
        engine = Engine(bed, bed.engine_addresses[:1], 16 * MIB)
        peer = KernelPeer(bed.ns, send_bytes=16 * MIB).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("addresses we reached", {e.remote[0] for e in established(engine.transfer)},
                    set(bed.kernel_addresses))
        moved = judge.kernel(bed.ns, before, {"MPJoinSynRx": 1, "MPJoinAckRx": 1})
        judge.echoed(moved, "AddAddrTx", "EchoAdd", 1)


@case("add_addr", "add_addr/ours-is-verified-and-joined",
      "we announce our second address: the kernel's client checks the HMAC, echoes it and "
      "joins it (AddAddr 1, EchoAddTx 1, MPJoinSynTx 1, no AddAddrDrop)")
def our_add_addr(judge):
    with TunBed("mfj", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 16 * MIB,
                        signal_addresses={bed.engine_addresses[1]}).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=16 * MIB).connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("our addresses joined", {e.local[0] for e in established(engine.transfer)},
                    set(bed.engine_addresses))
        moved = judge.kernel(bed.ns, before, {"MPJoinSynTx": 1, "MPJoinSynAckRx": 1},
                             absent=("AddAddrDrop",))
        judge.echoed(moved, "AddAddr", "EchoAddTx", 1)


@case("add_addr", "add_addr/removed-and-announced-again",
      "the kernel deletes its signal endpoint and adds it again: its ADD_ADDR comes again "
      "and we join it again (MPJoinSynRx 2, RmAddrTx 1, every ADD_ADDR echoed)")
def announced_again(judge):
    with TunBed("mfj", paths=2) as bed:
        address = bed.kernel_addresses[1]
        add = ("mptcp", "endpoint", "add", address, "dev", bed.device.name, "id", "7", "signal")
        bed.ns.ip(*add)
        engine = Engine(bed, bed.engine_addresses[:1], 60 * MIB)
        peer = KernelPeer(bed.ns, send_bytes=60 * MIB).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])

        def joined(n):
            return lambda: sum(e.remote[0] == address
                               for e in established(engine.transfer)) >= n

        def gone():
            return any(type(e) is ev.SubflowClosed and e.remote[0] == address
                       for _, e in engine.transfer.subflow_events)
        judge.check("joined", engine.run(joined(1), 20))
        bed.ns.ip("mptcp", "endpoint", "delete", "id", "7")
        judge.check("the subflow to the deleted address closed", engine.run(gone, 20))
        bed.ns.ip(*add)
        judge.check("joined again", engine.run(joined(2), 20))
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        moved = judge.kernel(bed.ns, before, {"MPJoinSynRx": 2, "RmAddrTx": 1})
        # every announcement echoed: two, or three when the kernel announced the re-added
        # endpoint both for the endpoint and from its worker (seen under load)
        judge.echoed(moved, "AddAddrTx", "EchoAdd", 2)


@case("backup", "backup/a-join-to-our-backup-address-is-answered-with-b",
      "the kernel joins an address we hold as backup: our MP_JOIN SYN/ACK carries B "
      "(MPJoinSynAckBackupRx 1) and the subflow is a backup to our scheduler")
def backup_join(judge):
    with TunBed("mfj", paths=2) as bed:
        engine = Engine(bed, bed.engine_addresses, 16 * MIB,
                        signal_addresses={bed.engine_addresses[1]},
                        backup_addresses={bed.engine_addresses[1]}).listen()
        before = bed.counters()
        peer = KernelPeer(bed.ns, send_bytes=16 * MIB).connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        joined = [e for e in established(engine.transfer) if e.local[0] == bed.engine_addresses[1]]
        judge.check("one backup subflow to our backup address",
                    len(joined) == 1 and joined[0].backup)
        judge.kernel(bed.ns, before, {"MPJoinSynAckRx": 1, "MPJoinSynAckBackupRx": 1})


# ---------------------------------------------------------------- flag C (deny_join_id0)
def deny_join_initial_kernel(judge, announce):
    """net.mptcp.allow_join_initial_addr_port=0: the kernel server's SYN/ACK carries C (RFC
    8684 §3.1); we send no MP_JOIN to its initial address, and join what it announces."""
    with TunBed("mfj", paths=3) as bed:
        bed.ns.sysctl("net.mptcp.allow_join_initial_addr_port", 0)
        if announce:
            bed.endpoint(bed.kernel_addresses[1], "signal")
        # announced: our side ends only once our join is up (a short transfer on a loaded
        # machine can end before it)
        engine = Engine(bed, bed.engine_addresses, 4 * MIB, subflows=2 if announce else 1)
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB).listen("0.0.0.0", PORT)
        before = bed.counters()
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.check("we saw flag C", engine.transfer.conn.pm.peer_denies_initial)
        judge.equal("addresses we reached", {e.remote[0] for e in established(engine.transfer)},
                    set(bed.kernel_addresses[:2] if announce else bed.kernel_addresses[:1]))
        judge.kernel(bed.ns, before, {"MPJoinSynRx": 1 if announce else 0})


def deny_join_initial_ours(judge, announce):
    """Config(deny_join_initial=True): our SYN/ACK carries C; the kernel's client, which
    would join our initial address from its subflow endpoint, does not; what we announce it
    joins."""
    with TunBed("mfj", paths=2) as bed:
        bed.endpoint(bed.kernel_addresses[1], "subflow")
        extra = {"signal_addresses": {bed.engine_addresses[1]}} if announce else {}
        engine = Engine(bed, bed.engine_addresses, 4 * MIB, deny_join_initial=True,
                        **extra).listen()
        before = bed.counters()
        # announced: the kernel shuts its side down only once its join is up (it opens joins
        # only while ESTABLISHED, from its path manager's queue: on a loaded machine a short
        # transfer can end first)
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, subflows=2 if announce else 1)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("joins we refused", engine.endpoint.stats.get("refused_join", 0), 0)
        judge.kernel(bed.ns, before, {"MPJoinSynTx": 1 if announce else 0})


for _announce in (False, True):
    _how = "with-signal" if _announce else "alone"
    case("deny_join_id0", f"deny_join_id0/the-kernels-flag-c-{_how}",
         "the kernel sets C: no MP_JOIN to its initial address"
         + (", the announced one joined" if _announce else ""),
         announce=_announce)(deny_join_initial_kernel)
    case("deny_join_id0", f"deny_join_id0/our-flag-c-{_how}",
         "we set C: the kernel sends no MP_JOIN to our initial address"
         + (", joins the announced one" if _announce else ""),
         announce=_announce)(deny_join_initial_ours)


# ---------------------------------------------------------------- SYN cookies both ways
@case("syncookies", "syncookies/the-kernels-to-our-client",
      "the kernel answers every SYN with a cookie (tcp_syncookies=2), our MP_JOIN included; "
      "exact over two subflows, TcpExtPAWSEstab unchanged")
def kernel_cookies(judge):
    with TunBed("mfj", paths=2) as bed:
        bed.ns.sysctl("net.ipv4.tcp_syncookies", 2)
        engine = Engine(bed, bed.engine_addresses, 4 * MIB, subflows=2)
        peer = KernelPeer(bed.ns, send_bytes=4 * MIB, subflows=2).listen("0.0.0.0", PORT)
        before = bed.counters()
        tcp_before = bed.ns.counters("TcpExt")
        engine.open(bed.kernel_addresses[0])
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.equal("subflows", len(established(engine.transfer)), 2)
        tcp = bed.ns.counters_since(tcp_before, "TcpExt")
        judge.at_least("TcpExtSyncookiesSent", tcp.get("TcpExtSyncookiesSent", 0), 2)
        judge.at_least("TcpExtSyncookiesRecv", tcp.get("TcpExtSyncookiesRecv", 0), 2)
        judge.equal("TcpExtPAWSEstab", tcp.get("TcpExtPAWSEstab", 0), 0)
        judge.kernel(bed.ns, before, {"MPCapableSYNRX": 1, "MPJoinAckRx": 1})


@case("syncookies", "syncookies/ours-to-the-kernels-client",
      "we answer every SYN with a cookie (syn_backlog=0): the kernel's transfer and its join "
      "complete, no segment of ours fails its PAWS check (TcpExtPAWSEstab unchanged)")
def our_cookies(judge):
    with TunBed("mfj", paths=2) as bed:
        bed.endpoint(bed.kernel_addresses[1], "subflow")
        engine = Engine(bed, bed.engine_addresses[:1], 8 * MIB, syn_backlog=0,
                        subflows=2).listen()
        before = bed.counters()
        tcp_before = bed.ns.counters("TcpExt")
        peer = KernelPeer(bed.ns, send_bytes=8 * MIB, subflows=2)
        peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.at_least("cookies we accepted", engine.endpoint.stats["syn_cookies_accepted"], 1)
        judge.equal("subflows", len(established(engine.transfer)), 2)
        tcp = bed.ns.counters_since(tcp_before, "TcpExt")
        judge.equal("TcpExtPAWSEstab", tcp.get("TcpExtPAWSEstab", 0), 0)
        judge.kernel(bed.ns, before, {"MPJoinSynAckRx": 1})

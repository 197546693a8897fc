"""mptcp_connect: transfers both ways at once through impaired paths (after the kernel's
mptcp_connect.sh, which runs its tool over netem loss, delay and reordering, IPv4 and IPv6, and
between MPTCP and plain TCP sockets).

Every transfer must be exact both ways. With MPTCP on both sides the kernel counts the
handshake (MPCapableSYNRX and MPCapableACKRX when we open, MPCapableSYNTX and
MPCapableSYNACKRX when it does), no fallback and, with checksums, no DataCsumErr. Between an
MPTCP side and a plain TCP one the MPTCP side falls back (RFC 8684 §3.1): the kernel counts
nothing of MPTCP, we report the fallback.
"""

from __future__ import annotations

import socket
from typing import Any

from ..testbed import KernelPeer, TunBed
from . import case
from .scenario import MIB, PORT, Engine, established, fell_back, judge_exact

KIB = 1 << 10
FALLBACK_COUNTERS = ("InfiniteMapTx", "DSSCorruptionFallback", "MPCapableFallbackACK",
                     "MPCapableFallbackSYNACK", "MPCapableDataFallback", "DssFallback")

# (name, the impairment of each path, bytes each way, the engine opens)
IMPAIRED: tuple[tuple[str, dict[str, Any], int, bool], ...] = (
    ("clean", {}, 8 * MIB, True),
    ("loss-0.5%", {"loss": 0.005}, 1 * MIB, False),
    ("loss-1%-delay-25ms", {"loss": 0.01, "delay": 0.025}, 1 * MIB, True),
    # (1 MiB: with 256 KiB the transfer could end, on a loaded machine, before the kernel's
    # MP_JOIN reached the engine, which refuses a join to a connection that has ended)
    ("delay-50ms-reorder-25%", {"delay": 0.05, "reorder": 0.25}, 1 * MIB, False),
)


def transfer(judge, ipv6, impairment, size, engine_opens, checksums=False):
    with TunBed("mfc", paths=2, ipv6=ipv6, checksums=checksums) as bed:
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        if engine_opens:
            engine = Engine(bed, bed.engine_addresses, size, checksums=checksums, subflows=2)
            peer = KernelPeer(bed.ns, send_bytes=size, family=family, subflows=2)
            peer.listen(bed.kernel_addresses[0], PORT)
        else:
            bed.endpoint(bed.kernel_addresses[1], "subflow")
            engine = Engine(bed, bed.engine_addresses[:1], size, checksums=checksums,
                            subflows=2).listen()
        # (a lost MP_JOIN SYN is sent again after a 1 s RTO, when the transfer may be over and
        # the join refused: the SYNs are spared, so the loss falls on the data and ACKs)
        rules = [engine.host.impair(address, spare_syns=True, **impairment) for address in
                 (bed.engine_addresses if engine_opens else bed.kernel_addresses)
                 if impairment]
        before = bed.counters()
        if engine_opens:
            engine.open(bed.kernel_addresses[0])
        else:
            peer = KernelPeer(bed.ns, send_bytes=size, family=family, subflows=2)
            peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=90))
        judge.check("no fallback on our side", not fell_back(engine))
        if impairment.get("loss"):
            judge.check("packets were lost (both sides resent)",
                        sum(rule.dropped for rule in rules) > 0)
        if impairment.get("reorder"):
            judge.check("packets were reordered", sum(rule.reordered for rule in rules) > 0)
        moved = judge.kernel(bed.ns, before)
        subflows = len(established(engine.transfer))
        if impairment.get("reorder") and subflows == 1 and moved.get("MPTcpExtMPRstTx") == 1:
            # Linux resets a joined subflow whose first segment after the third ACK is not
            # its first byte (check_fully_established: out of order is a protocol violation
            # on an MP_JOIN subflow), so reordering may cost the join; the data must not suffer
            judge.check("the kernel reset the reordered join (Linux's rule), data exact", True)
        else:
            refused = {name: n for name, n in engine.endpoint.stats.items()
                       if name.startswith(("refused", "dropped"))}
            judge.check(f"subflows = {subflows}, expected 2 (what our endpoint refused or "
                        f"dropped: {refused or 'nothing'})", subflows == 2)
        if engine_opens:
            judge.counter(moved, "MPCapableSYNRX", 1)
            judge.counter(moved, "MPCapableACKRX", 1)
        else:
            judge.counter(moved, "MPCapableSYNTX", 1)
            judge.counter(moved, "MPCapableSYNACKRX", 1)
        for name in FALLBACK_COUNTERS + ("DataCsumErr",):
            judge.counter(moved, name, 0)
        if checksums:
            judge.check("checksums in use on our side", engine.transfer.conn.checksums)


def with_plain_tcp(judge, ipv6, engine_opens):
    """Our MPTCP against the kernel's plain TCP socket: we fall back, the bytes are exact."""
    size = 2 * MIB
    with TunBed("mfc", paths=1, ipv6=ipv6) as bed:
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        peer = KernelPeer(bed.ns, send_bytes=size, mptcp=False, family=family)
        engine = Engine(bed, bed.engine_addresses, size)
        before = bed.counters()
        if engine_opens:
            peer.listen(bed.kernel_addresses[0], PORT)
            engine.open(bed.kernel_addresses[0])
        else:
            engine.listen()
            peer.connect(bed.engine_addresses[0], PORT)
        judge_exact(judge, engine, peer, engine.exchange(peer, timeout=60))
        judge.check("we fell back to TCP", fell_back(engine))
        moved = judge.kernel(bed.ns, before)
        judge.equal("MPTCP counters that moved on the kernel", sorted(moved), [])


for _ipv6 in (False, True):
    _family = "ipv6" if _ipv6 else "ipv4"
    for _name, _impairment, _size, _opens in IMPAIRED:
        case("mptcp_connect", f"mptcp_connect/{_family}-{_name}-engine-"
             f"{'client' if _opens else 'server'}",
             f"{_size // KIB} KiB each way, exact, two subflows, no fallback",
             ipv6=_ipv6, impairment=_impairment, size=_size, engine_opens=_opens)(transfer)
    for _opens in (True, False):
        case("mptcp_connect", f"mptcp_connect/{_family}-mptcp-{'to' if _opens else 'from'}-tcp",
             "2 MiB each way, exact, we fall back, the kernel counts no MPTCP",
             ipv6=_ipv6, engine_opens=_opens)(with_plain_tcp)
case("mptcp_connect", "mptcp_connect/ipv4-checksums-loss-1%-engine-client",
     "1 MiB each way with DSS checksums, exact, DataCsumErr 0",
     ipv6=False, impairment={"loss": 0.01}, size=MIB, engine_opens=True,
     checksums=True)(transfer)
case("mptcp_connect", "mptcp_connect/ipv6-checksums-engine-server",
     "1 MiB each way with DSS checksums, exact, DataCsumErr 0",
     ipv6=True, impairment={}, size=MIB, engine_opens=False, checksums=True)(transfer)

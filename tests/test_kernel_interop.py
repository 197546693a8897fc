"""The engine against the Linux kernel over a TUN device (issue #13): transfers both ways with
several subflows, byte-exact; the kernel's counters say what it accepted. Root only (network
namespaces and /dev/net/tun); skipped cleanly elsewhere, run in CI (root)."""

from __future__ import annotations

import pytest

from mptcp_fast import kernel
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.engine import events as ev
from mptcp_fast.engine.apps import BulkApp
from mptcp_fast.netns import have_root
from mptcp_fast.testbed import KernelPeer, TunBed
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


def _app(bed, addresses, send_bytes, seed=3, **config):
    config.setdefault("offload", True)
    endpoint = Endpoint(addresses, Config(**config))
    app = BulkApp(endpoint, send_bytes=send_bytes, seed=seed)
    return app, TunHost(app, bed.device)


def _only(app):
    (transfer,) = app.transfers.values()
    return transfer


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

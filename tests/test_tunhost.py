"""The impairments of TunHost's packet path (tunhost.py): a rate-limited FIFO with tail drop,
as netem's rate and limit, on top of loss and delay. No device is needed: the packet path is
judged directly with an explicit clock."""

from __future__ import annotations

import os

import pytest

from mptcp_fast.wire import packet as pk
from mptcp_fast.net.tunhost import TunBridge, TunHost

ENGINE, KERNEL = "198.18.0.2", "198.18.0.1"


class _Device:
    def __init__(self):
        self._read, self._write = os.pipe()

    def fileno(self):
        return self._read

    def close(self):
        os.close(self._read), os.close(self._write)


@pytest.fixture
def host():
    device = _Device()
    yield TunHost(None, device)
    device.close()


def _packet(size: int, inbound: bool = False) -> bytes:
    """An IPv4 packet of ``size`` bytes from the engine (to it when ``inbound``)."""
    src, dst = (KERNEL, ENGINE) if inbound else (ENGINE, KERNEL)
    return pk.build_packet(src, dst, 4000, 5000, 1, 1, pk.ACK, 1000, payload=bytes(size - 40))


def test_a_rate_serialises_each_direction_through_a_fifo(host):
    rule = host.impair(ENGINE, rate=8e6, queue=3000)          # 1 byte per microsecond
    assert host._filter([_packet(1000), _packet(1000)], False, 10.0) == []   # both held
    assert [round(t, 6) for t, *_ in sorted(host._held)] == [10.001, 10.002]
    assert host._filter([_packet(1000)], False, 10.0) == []    # 3,000 bytes queued: full
    assert host._filter([_packet(1000)], False, 10.0) == [] and rule.dropped == 1
    assert host._filter([_packet(1000, inbound=True)], True, 10.0) == []   # its own FIFO
    assert round(max(t for t, _, inbound, _ in host._held if inbound), 6) == 10.001
    assert rule.delayed == 4


def test_rate_and_delay_add_up(host):
    host.impair(ENGINE, rate=8e6, delay=0.025)
    host._filter([_packet(1000)], False, 1.0)
    assert round(host._held[0][0], 6) == 1.026


def test_bad_impairments_are_refused(host):
    for kwargs in (dict(rate=-1), dict(queue=0), dict(loss=2), dict(delay=-1),
                   dict(reorder=0.5), dict(delay=0.01, reorder=1.5)):
        with pytest.raises(ValueError):
            host.impair(ENGINE, **kwargs)


def test_reordered_packets_skip_the_delay_and_overtake(host):
    """netem's "delay D reorder P": a packet goes at once with chance P, the others wait D; of
    2,000 packets about P go first, from the seeded generator (the same each run)."""
    rule = host.impair(ENGINE, delay=0.05, reorder=0.25)
    sent = [_packet(100 + i % 50) for i in range(2000)]
    at_once = host._filter(sent, False, 1.0)
    assert len(at_once) == rule.reordered and 400 < rule.reordered < 600
    assert rule.delayed == 2000 - rule.reordered == len(host._held)
    assert all(t == 1.05 for t, *_ in host._held)


def test_a_rule_for_the_peers_address_applies_when_ours_has_none(host):
    """A path the peer opens from its second address to our single one is told apart by the
    peer's address; a rule for our address comes first."""
    peer_rule = host.impair(KERNEL, down=True)
    assert host._filter([_packet(200)], False, 1.0) == []
    assert host._filter([_packet(200, inbound=True)], True, 1.0) == []
    assert peer_rule.dropped == 2
    ours = host.impair(ENGINE, delay=0.01)
    assert host._filter([_packet(200)], False, 1.0) == [] and ours.delayed == 1
    assert peer_rule.dropped == 2


class _Queue(_Device):
    """A device whose reads are what a test put in ``inbox`` and whose writes are kept."""
    def __init__(self):
        super().__init__()
        self.inbox, self.written = [], []

    def read_batch(self):
        batch, self.inbox = self.inbox, []
        return batch

    def write(self, packet):
        self.written.append(packet)


def test_a_bridge_forwards_both_ways_through_the_impairments():
    """TunBridge (the kernel<->kernel reference): what one device gives goes to the other,
    held by the rule's delay; packets from ``a`` to ``b`` count as inbound."""
    a, b = _Queue(), _Queue()
    now = [5.0]
    bridge = TunBridge(a, b, clock=lambda: now[0])
    bridge.impair(ENGINE, delay=0.010)                       # b's side of the path
    a.inbox.append(_packet(300, inbound=True))               # kernel a -> engine address
    b.inbox.append(_packet(200))                             # and back
    bridge.step(timeout=0)
    assert a.written == b.written == []                      # both held 10 ms
    now[0] = 5.011
    bridge.step(timeout=0)
    assert [len(p) for p in b.written] == [300] and [len(p) for p in a.written] == [200]
    a.close(), b.close()

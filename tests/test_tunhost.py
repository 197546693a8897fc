"""The impairments of TunHost's packet path (tunhost.py): a rate-limited FIFO with tail drop,
as netem's rate and limit, on top of loss and delay. No device is needed: the packet path is
judged directly with an explicit clock."""

from __future__ import annotations

import os

import pytest

from mptcp_fast import packet as pk
from mptcp_fast.tunhost import TunHost

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
    for kwargs in (dict(rate=-1), dict(queue=0), dict(loss=2), dict(delay=-1)):
        with pytest.raises(ValueError):
            host.impair(ENGINE, **kwargs)

"""tun.DeviceWriter: large batches written by a thread of its own, small ones by the caller
when nothing is queued, and never a batch before one queued ahead of it. A stand-in device
records what it was given (no TUN device, no root)."""

from __future__ import annotations

import threading
import time

from mptcp_fast.net.tun import DeviceWriter


class SlowDevice:
    """Records every packet written, and by which thread; a large batch takes a while."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.threads: set[str] = set()

    def write_batch(self, packets) -> None:
        if sum(map(len, packets)) >= DeviceWriter.INLINE_BYTES:
            time.sleep(0.02)                  # the queue fills behind it
        self.threads.add(threading.current_thread().name)
        self.written.extend(packets)


def _batch(tag: int, large: bool) -> list[bytes]:
    size = DeviceWriter.INLINE_BYTES if large else 60
    return [bytes([tag % 256]) * size, tag.to_bytes(4, "big")]


def test_batches_reach_the_device_in_order_and_close_writes_what_is_queued():
    device = SlowDevice()
    writer = DeviceWriter(device)             # type: ignore[arg-type]  # (a stand-in)
    batches = [_batch(i, large=i % 3 == 0) for i in range(60)]
    for batch in batches:
        writer.write_batch(batch)
    writer.close()
    assert device.written == [packet for batch in batches for packet in batch]
    assert "tun-writer" in device.threads     # the large ones went through the thread
    assert not any(t.name == "tun-writer" for t in threading.enumerate())
    writer.close()                            # (again: nothing to do)


def test_small_batches_are_written_at_once_without_a_thread():
    device = SlowDevice()
    writer = DeviceWriter(device)             # type: ignore[arg-type]
    for i in range(10):
        writer.write_batch(_batch(i, large=False))
        assert len(device.written) == 2 * (i + 1)      # written before the call returned
    writer.write_batch([])
    assert device.threads == {threading.current_thread().name}
    writer.close()

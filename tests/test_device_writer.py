"""tun.DeviceWriter: large batches written by a thread of its own, small ones by the caller
when nothing is queued, and never a batch before one queued ahead of it. A stand-in device
records what it was given (no TUN device, no root)."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_a_caller_waits_while_the_queue_holds_its_limit():
    """A device slower than the engine: the queue holds at most MAX_QUEUED_BYTES and one batch
    more (the caller then waits for the thread), not everything the caller ever handed over."""
    device = SlowDevice()
    writer = DeviceWriter(device)             # type: ignore[arg-type]
    batch_size = sum(map(len, _batch(0, large=True)))
    most = 0
    for i in range(3 * DeviceWriter.MAX_QUEUED_BYTES // batch_size):
        writer.write_batch(_batch(i, large=True))
        most = max(most, writer._queued_bytes)
    writer.close()
    assert DeviceWriter.MAX_QUEUED_BYTES < most <= DeviceWriter.MAX_QUEUED_BYTES + batch_size
    assert len(device.written) == 2 * (3 * DeviceWriter.MAX_QUEUED_BYTES // batch_size)


class BrokenDevice(SlowDevice):
    """Its third large batch raises what no device should (a bug, not an OSError)."""

    def __init__(self) -> None:
        super().__init__()
        self.large = 0

    def write_batch(self, packets) -> None:
        if sum(map(len, packets)) >= DeviceWriter.INLINE_BYTES:
            self.large += 1
            if self.large == 3:
                raise ValueError("a bug in the device")
        super().write_batch(packets)


def test_a_writer_thread_that_fails_says_so_and_leaves_nobody_waiting():
    """The thread fails on a batch: a caller waiting for room (the queue full behind it) is
    released, that call or the next raises RuntimeError from the failure, so does close(),
    and what was queued behind the failure is not written later out of order."""
    device = BrokenDevice()
    writer = DeviceWriter(device)             # type: ignore[arg-type]
    batch_size = sum(map(len, _batch(0, large=True)))
    failed_at = None
    for i in range(3 * DeviceWriter.MAX_QUEUED_BYTES // batch_size):
        try:
            writer.write_batch(_batch(i, large=True))
        except RuntimeError as exc:
            assert isinstance(exc.__cause__, ValueError)
            failed_at = i
            break
    assert failed_at is not None              # (the loop would otherwise have waited forever)
    with pytest.raises(RuntimeError):
        writer.close()
    written = len(device.written) // 2
    assert device.written == [p for i in range(written) for p in _batch(i, large=True)]
    assert written == 2                       # the two before the failure, nothing after

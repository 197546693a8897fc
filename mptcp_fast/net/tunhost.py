"""Run an engine over a TUN device in this thread: the loop the CLI, the tests and
the benchmarks share. The asyncio layer (``mptcp_fast.net.aio``) is the same loop on an event loop.

    host = TunHost(app, device)                    # app: an Endpoint or an engine.apps.BulkApp
    host.run(until=lambda: transfer.done, timeout=30)

Each turn waits for the device or the engine's timer, reads every packet waiting (one batch
into the engine), runs the timers that are due, and writes what the engine has to send. Time
is the monotonic clock.

Impairments live here, in the packet path this process owns (the kernel here has no netem):
``host.impair(address, loss=0.01, delay=0.02, down=False)`` applies to every packet to or from
``address``, both directions, from a seeded generator: one of the engine's addresses, or one
of the peer's (a path the peer opens to a single engine address is told apart by its own).
``rate=`` and ``queue=`` add a FIFO with tail drop and ``reorder=`` lets packets overtake the
delayed ones, as netem's rate, limit and reorder do. A test that plays
middlebox or attacker sets ``host.rewrite_inbound`` / ``host.rewrite_outbound`` to a function
of a packet that returns the packet to deliver instead (edited) or None (dropped).
"""

from __future__ import annotations

import heapq
import inspect
import random
import select
import time
from dataclasses import dataclass

from .. import _check
from ..wire import packet as pk
from .tun import TunDevice, write_packets

__all__ = ["TunHost", "TunBridge", "Impairment"]


@dataclass
class Impairment:
    """What happens to the packets of one of the engine's addresses."""
    loss: float = 0.0            # the chance each packet is dropped
    delay: float = 0.0           # seconds each packet is held (one way)
    down: bool = False           # every packet dropped
    rate: float = 0.0            # bits per second each way (0: unlimited), a FIFO in front
    queue: int = 1_500_000       # bytes that FIFO holds (tail drop beyond, as netem's limit)
    reorder: float = 0.0         # the chance a packet skips the delay and overtakes the
                                 # packets held (netem's "delay D reorder P")
    spare_syns: bool = False     # ``loss`` spares SYNs (a lost MP_JOIN SYN waits a 1 s RTO)
    dropped: int = 0
    delayed: int = 0
    reordered: int = 0
    busy_until: tuple = (0.0, 0.0)   # when the link is free again: (outbound, inbound)


def _takes_checksum_flags(app) -> bool:
    """Whether ``app.receive_packets`` takes the device's checksum flags (``verified``)."""
    try:
        return "verified" in inspect.signature(app.receive_packets).parameters
    except (AttributeError, TypeError, ValueError):
        return False


class TunHost:
    """See the module text."""

    def __init__(self, app, device, seed: int = 0, clock=time.monotonic):
        self.app = app
        self.device = device
        self.clock = clock
        self._rng = random.Random(seed)
        self._impairments: dict[bytes, Impairment] = {}
        self._held: list[tuple[float, int, bool, bytes]] = []   # (release time, order,
        #                                                           direction, packet)
        self._order = 0
        self._batch = getattr(app, "receive_packets", None)
        # an application whose receive_packets takes a TunDevice's checksum flags
        # (TunDevice.read_batch: an Endpoint, the emulator's BulkApp) gets them; any other
        # device with read_batch() and write() will do too (a test's pipe)
        self._tun = isinstance(device, TunDevice)
        self._flags = self._tun and _takes_checksum_flags(app)
        # a TunDevice writes (headers, payload) tuples with one writev each: an application
        # that gives them (Endpoint.packets_to_write, the emulator's BulkApp) is asked for
        # them, any other for bytes
        self._vectored = self._tun and hasattr(app, "packets_to_write")
        # ... and with offload their TCP checksums are left to the device (the engine's
        # Endpoint.checksum_offload: neither this process nor the kernel sums their payload)
        endpoint = getattr(app, "endpoint", app)
        self._partial = self._vectored and device.completes_checksums \
            and hasattr(endpoint, "checksum_offload")
        if self._partial:
            endpoint.checksum_offload = True
        self.rewrite_inbound = None         # packet -> packet or None (see the module text)
        self.rewrite_outbound = None
        self._poll = select.poll()
        self._poll.register(device.fileno(), select.POLLIN)

    # ------------------------------------------------------------------ impairments
    def impair(self, address, loss: float = 0.0, delay: float = 0.0,
               down: bool = False, rate: float = 0.0, queue: int = 1_500_000,
               reorder: float = 0.0, spare_syns: bool = False) -> Impairment:
        """Impair every packet to or from ``address`` (one of the engine's, or of the peer's:
        a rule for the engine's address is applied first); replaces what was set for it
        before. ``rate`` (bits per second, each way) serialises the packets through a FIFO
        of ``queue`` bytes, as netem's rate and limit do; ``reorder`` is the chance a packet
        is not delayed (netem's reorder: it overtakes those held); ``spare_syns``: ``loss``
        drops no SYN. Returns the record, whose counters say what was done."""
        packed = _check.address("address", address)
        if not 0.0 <= loss <= 1.0 or delay < 0 or rate < 0 or queue <= 0 \
                or not 0.0 <= reorder <= 1.0 or (reorder and not delay):
            raise ValueError("need 0 <= loss <= 1, delay >= 0, rate >= 0, queue > 0 and "
                             "0 <= reorder <= 1 (with a delay to overtake)")
        record = self._impairments[packed] = Impairment(loss, delay, down, rate, queue, reorder,
                                                        spare_syns)
        return record

    def _judge(self, packet, ends: tuple, inbound: bool, now: float) -> bool:
        """Apply the impairment of the packet's engine-side address, else of its peer-side
        one (``ends``: source, destination): True when the packet goes on now."""
        ours, theirs = (ends[1], ends[0]) if inbound else ends
        rule = self._impairments.get(ours)
        if rule is None:
            rule = self._impairments.get(theirs)
            if rule is None:
                return True
        if rule.down or (rule.loss and self._rng.random() < rule.loss
                         and not (rule.spare_syns and pk.parse_packet(packet).flags & pk.SYN)):
            rule.dropped += 1
            return False
        release = now
        if rule.rate:                             # the link serialises: a FIFO, tail drop
            free = max(now, rule.busy_until[inbound])
            if (free - now) * rule.rate / 8 + len(packet) > rule.queue:
                rule.dropped += 1
                return False
            release = free + len(packet) * 8 / rule.rate
            rule.busy_until = (release, rule.busy_until[1]) if not inbound \
                else (rule.busy_until[0], release)
        if rule.reorder and self._rng.random() < rule.reorder:
            rule.reordered += 1                   # sent at once: it overtakes the held ones
        else:
            release += rule.delay
        if release > now:
            rule.delayed += 1
            self._order += 1
            heapq.heappush(self._held, (release, self._order, inbound, packet))
            return False
        return True

    @staticmethod
    def _addresses(packet):
        """(source, destination) of an IP packet, or None when it is too short to say."""
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            return bytes(packet[12:16]), bytes(packet[16:20])
        if len(packet) >= 40 and packet[0] >> 4 == 6:
            return bytes(packet[8:24]), bytes(packet[24:40])
        return None

    def _filter(self, packets, inbound: bool, now: float) -> list:
        rewrite = self.rewrite_inbound if inbound else self.rewrite_outbound
        if rewrite is not None:
            packets = [p for p in map(rewrite, packets) if p is not None]
        if not self._impairments:
            return packets
        kept = []
        for packet in packets:
            ends = self._addresses(packet)
            if ends is None or self._judge(packet, ends, inbound, now):
                kept.append(packet)
        return kept

    # ------------------------------------------------------------------ the loop
    def step(self, timeout: float = 0.05) -> None:
        """One turn: wait at most ``timeout`` seconds for a packet or a timer, then serve."""
        now = self.clock()
        deadline = now + timeout
        timer = self._timer()
        if timer is not None:
            deadline = min(deadline, timer)
        if self._held:
            deadline = min(deadline, self._held[0][0])
        wait_ms = max(0, int((deadline - now) * 1000 + 0.999))
        if wait_ms:
            self._poll.poll(wait_ms)
        self.serve(self.clock())

    def _timer(self):
        """When the application wants its timer (None: no timer)."""
        return self.app.get_timer()

    def _release(self, now: float) -> tuple:
        """The held packets whose time has come: (inbound, outbound)."""
        inbound: list[bytes] = []
        outbound: list[bytes] = []
        held = self._held
        while held and held[0][0] <= now:
            _, _, is_inbound, packet = heapq.heappop(held)
            (inbound if is_inbound else outbound).append(packet)
        return inbound, outbound

    def serve(self, now: float) -> None:
        """Everything due at ``now``: packets waiting on the device (and those whose delay is
        over), timers, and the engine's output."""
        app = self.app
        if self._flags and self.rewrite_inbound is None and not self._impairments \
                and not self._held:
            # the plain path: the kernel's packets straight in, none completed by us
            verified: list[bool] = []
            inbound = self.device.read_batch(verified=verified)
            if inbound:
                app.receive_packets(inbound, now, verified)
            outbound_late: list = []
        else:
            inbound = self._filter(self.device.read_batch(), True, now)
            inbound_late, outbound_late = self._release(now)
            inbound += inbound_late
            if inbound:
                if self._batch is not None:
                    self._batch(inbound, now)
                else:
                    for packet in inbound:
                        app.receive_packet(packet, now)
        timer = app.get_timer()
        if timer is not None and timer <= now:
            app.handle_timer(now)
        if self.rewrite_outbound is not None or self._impairments:
            outbound = self._filter(app.packets_to_send(now), False, now)   # (bytes to look at)
        elif self._vectored:
            outbound = app.packets_to_write(now)   # large segments as (headers, payload)
        else:
            outbound = app.packets_to_send(now)
        if outbound_late:
            outbound = outbound_late + outbound
        if self._partial:
            self.device.write_batch(outbound, True)
        else:
            write_packets(self.device, outbound)

    def run(self, until=None, timeout: float | None = None) -> bool:
        """Turn until ``until()`` is true (True) or ``timeout`` seconds pass (False)."""
        end = None if timeout is None else self.clock() + timeout
        while until is None or not until():
            if end is not None and self.clock() >= end:
                return False
            self.step()
        return True


class TunBridge(TunHost):
    """Two TUN devices joined through this process: every packet read from one is written to
    the other, through a TunHost's impairments (``bridge.impair(...)``, the same rules;
    packets from ``a`` to ``b`` count as inbound, ``b`` playing the engine's side). The
    kernel<->kernel reference over the very paths the engine is tested on (this kernel has
    no netem). ``run`` and ``step`` are TunHost's."""

    def __init__(self, a, b, seed: int = 0, clock=time.monotonic):
        super().__init__(None, a, seed, clock)
        self.a, self.b = a, b
        self._poll.register(b.fileno(), select.POLLIN)

    def _timer(self):
        return None                               # no application here

    def serve(self, now: float) -> None:
        to_b = self._filter(self.a.read_batch(), True, now)
        to_a = self._filter(self.b.read_batch(), False, now)
        late_b, late_a = self._release(now)
        for packet in to_b + late_b:
            self.b.write(packet)
        for packet in to_a + late_a:
            self.a.write(packet)

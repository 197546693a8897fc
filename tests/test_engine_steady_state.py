"""An established transfer's per-segment path leaves nothing behind: after thousands of data
segments, acknowledged and read, the two engines hold no more Python objects and no more
memory than before (``sys.getallocatedblocks``: the small-object allocator's blocks, every
object up to 512 bytes; ``tracemalloc``: every allocation, payloads too).

This is what is kept, not what is made: the compiled engine still makes some twenty objects
per segment and frees them (bench/RESULTS.md, "instructions per data segment").

What a connection keeps is bounded by its windows and the configuration, not by how much it
moved: a retransmission-queue entry, a chunk, a mapping piece, a segment or an event that
outlived its use would show here as growth proportional to the segments. Both backends; the
compiled one is the one the per-packet work was moved into C for.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from enginenet import C0, C1, PORT, S0
from mptcp_fast.engine import Config, Endpoint

PIECE = 64 << 10                  # bytes the client hands send() at a time
STEP = 0.0005                     # seconds between exchanges (the packets' travel time)


def _exchange(client, server, conn, size: int, now: float, kept: list | None = None) -> float:
    """``size`` bytes from the client's application to the server's, every packet delivered
    and every byte read, timers fired when the engines are quiet, until every byte was read
    and acknowledged and both engines are quiet. With ``kept``, each packet the server
    receives is kept there (a leak on purpose: the control)."""
    sent = received = 0
    while True:
        server_conn = next(iter(server.connections.values()), None)
        while sent < size and conn.send_space > 0:
            sent += conn.send(b"m" * min(PIECE, size - sent, conn.send_space))
        moved = False
        for src, dst in ((client, server), (server, client)):
            for packet in src.packets_to_send(now):
                dst.receive_packet(packet, now)
                moved = True
                if kept is not None and dst is server:
                    kept.append((len(packet), packet))
        while server_conn is not None and (event := server_conn.next_event()) is not None:
            received += len(getattr(event, "data", b""))
        while client.next_event() is not None:
            pass
        if not moved:
            timer = min((t for t in (client.get_timer(), server.get_timer()) if t is not None),
                        default=None)
            if sent == size and received == size and len(conn.subflows) == 2 and \
                    conn.allocator.data_ack == conn.allocator.next_dsn:
                return now
            assert timer is not None, "stalled"
            now = max(now, timer)
            for ep in (client, server):
                if ep.get_timer() is not None and ep.get_timer() <= now:
                    ep.handle_timer(now)
        now += STEP


def _growth(kept: list | None = None) -> tuple[int, int, int]:
    """(blocks, bytes) the interpreter holds more after an 8 MiB window than before it, and the
    data segments in the window, once the connection is established with two subflows and
    warmed up. Blocks are the small-object allocator's (objects up to 512 bytes: numbers,
    tuples, segments, events); bytes are every allocation tracemalloc sees (payloads too)."""
    config = Config(delayed_ack=0.001)
    client, server = Endpoint([C0, C1], config), Endpoint([S0], config)
    server.listen(PORT)
    conn = client.connect((S0, PORT), 0.0)
    now = _exchange(client, server, conn, 1, 0.0)      # the handshake and the join
    server_conn = next(iter(server.connections.values()))
    assert len(server_conn.subflows) == 2
    # warm up: windows grown, buffers and free lists at their working size
    now = _exchange(client, server, conn, 4 << 20, now)
    tracemalloc.start()
    try:
        gc.collect()
        blocks, (size, _) = sys.getallocatedblocks(), tracemalloc.get_traced_memory()
        received_before = sum(sf.bytes_received for sf in server_conn.all_subflows)
        _exchange(client, server, conn, 8 << 20, now, kept)
        gc.collect()
        blocks = sys.getallocatedblocks() - blocks
        size = tracemalloc.get_traced_memory()[0] - size
    finally:
        tracemalloc.stop()
    received = sum(sf.bytes_received for sf in server_conn.all_subflows) - received_before
    return blocks, size, received // 1420


def test_an_established_transfer_keeps_no_object_per_segment(backend):
    blocks, size, segments = _growth()
    assert segments > 5_000
    # a few hundred blocks and some 50-100 KB come and go either way (dicts and lists
    # resized, free lists); one object kept per six segments would be 1,000 more blocks, one
    # payload kept per forty segments 200 KB
    assert blocks < 1_000 and size < 200_000, (blocks, size, segments)


def test_the_measure_sees_what_is_kept_per_segment():
    """The control (the backend that is active: the measure is the interpreter's, not the
    engine's): the same window with every packet the server receives kept (a tuple and the
    packet) grows by at least a block and the packet's bytes per segment."""
    kept: list = []
    blocks, size, segments = _growth(kept)
    assert len(kept) >= segments > 5_000
    assert blocks >= segments and size >= sum(n for n, _ in kept), (blocks, size, segments)

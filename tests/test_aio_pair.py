"""Two asyncio stacks joined in process (no TUN device, no root): each device is a list of
packets plus a pipe whose byte wakes the other loop's reader, so the streams' flow control
and ends are tested as an application meets them."""

from __future__ import annotations

import asyncio
import contextlib
import os

from enginenet import count_connection_visits
from mptcp_fast.net import aio

A, B = "198.18.0.1", "198.18.0.2"


class PipeDevice:
    """What aio.Stack needs of a device: fileno(), read_batch(), write()."""

    def __init__(self):
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.queue = []
        self.peer = None

    def fileno(self) -> int:
        return self._r

    def read_batch(self, limit: int = 256) -> list:
        try:
            os.read(self._r, 1 << 16)
        except BlockingIOError:
            pass
        out, self.queue = self.queue, []
        return out

    def write(self, packet) -> None:
        self.peer.queue.append(bytes(packet))
        os.write(self.peer._w, b"x")

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def _pair():
    a, b = PipeDevice(), PipeDevice()
    a.peer, b.peer = b, a
    return a, b


def test_a_writer_waiting_for_space_learns_that_its_connection_was_reset(backend):
    """The server's handler writes 4 MiB and waits in drain() without reading; the client
    sends 1 MiB, reads nothing and aborts. The writer, parked for want of send space, is
    told: drain() raises ConnectionResetError (it waited for ever: its reader, paused, held
    back the event that said the connection was reset, and nothing fed it again)."""
    async def main():
        a, b = _pair()
        client, server = aio.Stack([A], a), aio.Stack([B], b)
        outcome = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            writer.write(bytes(4 << 20))
            try:
                await asyncio.wait_for(writer.drain(), 10)
                outcome.set_result("returned")
            except asyncio.TimeoutError:
                outcome.set_result("hung")
            except ConnectionResetError:
                outcome.set_result("reset")
            outcome.parked = writer in server._blocked.values()

        await server.start_server(handler, 5000)
        reader, writer = await client.open_connection(B, 5000)
        writer.write(bytes(1 << 20))
        await asyncio.sleep(0.5)
        writer.abort()
        result = await asyncio.wait_for(outcome, 15)
        client.close()
        server.close()
        a.close()
        b.close()
        return result, outcome.parked

    assert asyncio.run(main()) == ("reset", False)


@contextlib.asynccontextmanager
async def _connection():
    """Two stacks joined in process and one connection between them, held open by the
    server's handler: (client stack, server stack, client (reader, writer), server (reader,
    writer)); everything is closed at the end."""
    a, b = _pair()
    client, server = aio.Stack([A], a), aio.Stack([B], b)
    served = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        served.set_result((reader, writer))
        await asyncio.sleep(3600)

    try:
        await server.start_server(handler, 5000)
        client_streams = await client.open_connection(B, 5000)
        server_streams = await asyncio.wait_for(served, 5)
        yield client, server, client_streams, server_streams
    finally:
        client.close()
        server.close()
        a.close()
        b.close()


def test_a_stack_busy_in_a_long_pass_of_the_loop_still_reads_its_device(backend):
    """asyncio runs the device's reader once per pass of its loop; a pass that runs many
    slow callbacks (thousands of client sockets in a proxy) held the packets in the device
    for its whole length. Any turn of the stack reads the device once a millisecond has
    passed since the last read, so the server takes the client's bytes during the pass."""
    import time

    async def main():
        async with _connection() as (_, server, (_, writer), (_, server_writer)):
            await asyncio.sleep(0.1)                    # the handshake settled
            received = server.endpoint.packets_received
            seen_during_the_pass = []
            loop = asyncio.get_running_loop()

            def client_sends():
                writer.write(b"x" * 1000)               # a packet into the server's device

            def slow_callback():                        # e.g. another socket's read, 2 ms
                time.sleep(0.002)
                server_writer.write(b"y")               # a turn of the server's stack

            def look():
                seen_during_the_pass.append(server.endpoint.packets_received - received)

            loop.call_soon(client_sends)                # one pass: all these are ready now
            for _ in range(20):
                loop.call_soon(slow_callback)
            loop.call_soon(look)
            await asyncio.sleep(0.2)
        assert seen_during_the_pass and seen_during_the_pass[0] >= 1

    asyncio.run(main())


def test_a_reader_that_does_not_read_buffers_at_most_three_times_its_limit(backend):
    """The stack feeds a reader events of at most its limit, until it holds twice that:
    before, one event carried up to 1 MiB, which sat in the reader's buffer (and was copied
    again whenever the buffer grew)."""
    async def main():
        async with _connection() as (_, server, (_, writer), (server_reader, _)):
            writer.write(os.urandom(4 << 20))
            await asyncio.sleep(0.5)                    # the engine's window fills
            conn = next(iter(server.endpoint.connections.values()))
            assert conn.queue.queued_bytes > 2 * aio.READ_LIMIT   # more waits in the engine
            got = bytearray()
            while len(server_reader._buffer) > aio.READ_LIMIT:    # read: the reader resumes
                got += await server_reader.read(aio.READ_LIMIT // 2)
            await asyncio.sleep(0.1)                    # ...and is fed again
            held = len(server_reader._buffer)
            assert 2 * aio.READ_LIMIT <= held <= 3 * aio.READ_LIMIT
            while len(got) < 4 << 20:
                got += await server_reader.read(1 << 18)
            assert len(got) == 4 << 20

    asyncio.run(main())


def test_a_turn_of_the_stack_visits_only_the_connections_with_something_to_do(monkeypatch):
    """Thirty connections open and idle while one moves a MiB: neither stack's turns feed the
    idle ones' writers or read their events, and the engine neither flushes, times nor reads
    them (the pure engine's methods counted, as tests/test_concurrency.py counts them for
    the emulator's application): the stacks work from connections_with_events and
    connections_with_send_space."""
    from mptcp_fast import _backend

    idle_count, size = 30, 1 << 20
    visits = count_connection_visits(monkeypatch)
    fed: dict[int, int] = {}
    feed = aio.MptcpStreamWriter._feed

    def counted_feed(writer):
        fed[id(writer._conn)] = fed.get(id(writer._conn), 0) + 1
        return feed(writer)
    monkeypatch.setattr(aio.MptcpStreamWriter, "_feed", counted_feed)

    async def main():
        a, b = _pair()
        client, server = aio.Stack([A], a), aio.Stack([B], b)
        moved = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            got = 0
            while chunk := await reader.read(1 << 16):
                got += len(chunk)
            if got and not moved.done():
                moved.set_result(got)
            writer.close()

        try:
            await server.start_server(handler, 5000)
            idle = [await client.open_connection(B, 5000) for _ in range(idle_count)]
            quiet = list(client.endpoint.connections.values())
            for _ in range(100):                       # the handshakes and their timers settle
                await asyncio.sleep(0.05)
                quiet = list(client.endpoint.connections.values()) + \
                    list(server.endpoint.connections.values())
                if len(quiet) == 2 * idle_count and all(c.next_timer() is None for c in quiet):
                    break
            assert len(quiet) == 2 * idle_count
            assert all(c.next_timer() is None for c in quiet)
            visits.clear()
            fed.clear()
            _, writer = await client.open_connection(B, 5000)
            writer.write(bytes(size))
            writer.write_eof()
            assert await asyncio.wait_for(moved, 20) == size
            active = client.endpoint.connection(writer._conn.id)
            assert visits.get(id(active), 0) > 10 and fed.get(id(active), 0) > 0
            assert [visits[id(c)] for c in quiet if id(c) in visits] == []
            assert [fed[id(c)] for c in quiet if id(c) in fed] == []
            for _, idle_writer in idle:
                idle_writer.close()
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    with _backend.use("python"):
        asyncio.run(main())

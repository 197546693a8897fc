"""Two asyncio stacks joined in process (no TUN device, no root): each device is a list of
packets plus a pipe whose byte wakes the other loop's reader, so the streams' flow control
and ends are tested as an application meets them."""

from __future__ import annotations

import asyncio
import os

from mptcp_fast import aio

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

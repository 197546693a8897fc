"""Kernel sockets (plain TCP, or Linux MPTCP) as asyncio streams that hand bytes on as they
arrived: no copy on the way in.

asyncio's StreamReader appends every chunk the socket gave to one bytearray and ``read(n)``
copies the front of it out again. When a reader falls behind (a proxy whose other side is
slower), the bytearray holds up to a few hundred KiB and every append may move all of it: in
the proxy at 2,000 connections those copies took a tenth of its CPU. A ``ChunkStream`` keeps
the chunks as they came and ``read`` returns the next one whole.

One object is both halves of the connection (reader and writer), with the methods of
asyncio's StreamReader and StreamWriter that a relay needs: ``read``, ``write``, ``drain``,
``write_eof``, ``close``, ``wait_closed``, ``abort`` (a reset), ``get_extra_info``.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct

READ_LIMIT = 1 << 16          # as asyncio's streams: reading pauses beyond twice this


class ChunkStream(asyncio.Protocol):
    """One connection. Reading pauses while more than ``2 * limit`` bytes wait to be read
    and resumes at ``limit``; ``drain`` waits while the transport's write buffer is above
    its high-water mark."""

    def __init__(self, limit: int = READ_LIMIT, on_connected=None):
        self._limit = limit
        self._on_connected = on_connected       # called with the stream once connected
        self._chunks = collections.deque()
        self._buffered = 0
        self._eof = False
        self._error = None
        self._reading_paused = False
        self._writing_paused = False
        self._read_waiter = None
        self._drain_waiter = None
        self.transport = None
        self._loop = asyncio.get_running_loop()
        self._closed = self._loop.create_future()

    # ------------------------------------------------------------------ the protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > 2 * self._limit and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True                     # keep the transport open: we may still write

    def connection_lost(self, exc) -> None:
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reading
    async def read(self, n: int = -1) -> bytes:
        """The next chunk as it arrived (at most ``n`` bytes when ``n`` > 0: a longer chunk
        is split); b"" at the end of the stream. Raises the error that ended the
        connection, as asyncio's StreamReader does."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._read_waiter = self._loop.create_future()
            await self._read_waiter
        if self._error is not None:
            raise self._error
        data = self._chunks.popleft()
        if 0 < n < len(data):
            view = memoryview(data)
            self._chunks.appendleft(bytes(view[n:]))
            data = bytes(view[:n])
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= self._limit:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._buffered

    # ------------------------------------------------------------------ writing
    def write(self, data) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self._error is not None:
            raise self._error
        if self.transport.is_closing():
            # as asyncio's StreamWriter: let connection_lost run, then say why
            await asyncio.sleep(0)
            if self._error is not None:
                raise self._error
            raise ConnectionResetError("Connection lost")
        while self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
            if self._error is not None:
                raise self._error

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def close(self) -> None:
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        """End the connection with a reset (SO_LINGER with a zero timeout, then close)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def get_extra_info(self, name: str, default=None):
        return self.transport.get_extra_info(name, default)


async def open_connection(host=None, port=None, *, sock=None, limit: int = READ_LIMIT):
    """Connect (or take the connected ``sock``); return the stream twice, as
    (reader, writer)."""
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(lambda: ChunkStream(limit), host, port,
                                             sock=sock)
    return stream, stream


async def start_server(handler, host=None, port=None, *, sock=None, backlog: int = 100,
                       limit: int = READ_LIMIT):
    """Call the coroutine function ``handler(reader, writer)`` (one ChunkStream, twice)
    for every connection; return the asyncio Server."""
    loop = asyncio.get_running_loop()
    tasks = set()

    def connected(stream: ChunkStream) -> None:
        task = loop.create_task(handler(stream, stream))
        tasks.add(task)                          # referenced until it ends
        task.add_done_callback(tasks.discard)

    return await loop.create_server(lambda: ChunkStream(limit, connected), host, port,
                                    sock=sock, backlog=backlog)

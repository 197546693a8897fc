"""Streams that hand bytes on as they arrived: no copy on the way in.

asyncio's StreamReader appends every chunk it is fed to one bytearray and ``read(n)`` copies
the front of it out again. When a reader falls behind (a proxy whose other side is slower),
the bytearray holds a few hundred KiB and every append may move all of it: in the proxy at
2,000 connections those copies and reallocations took a quarter of its CPU. A
``ChunkReader`` keeps the chunks as they came: ``read`` returns the next one whole (or joins
a few small ones, up to ``n``), and only ``readuntil``/``readline`` join what they search.

- ``ChunkReader``: the reading half with asyncio.StreamReader's methods (read, readexactly,
  readuntil, readline, at_eof, exception, ``async for``) and its producer side (feed_data,
  feed_eof, set_exception, set_transport). The userspace engine's streams (aio) use it.
- ``ChunkStream``: a kernel socket (plain TCP, or Linux MPTCP) as one asyncio Protocol with
  the reader's and the writer's methods a relay needs (``read``, ``write``, ``drain``,
  ``write_eof``, ``close``, ``wait_closed``, ``abort`` (a reset), ``get_extra_info``); the
  proxy's plain TCP side and the kernel engine use it.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct

READ_LIMIT = 1 << 16          # as asyncio's streams: reading pauses beyond twice this


class ChunkReader:
    """Bytes fed in chunks, read back without copying them. The producer is paused (its
    ``pause_reading()``) while more than ``2 * limit`` bytes wait, and resumed at ``limit``
    (asyncio.StreamReader's rule)."""

    def __init__(self, limit: int = READ_LIMIT, loop=None):
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._limit = limit
        self._loop = loop or asyncio.get_running_loop()
        self._chunks = collections.deque()
        self._size = 0
        self._eof = False
        self._exception = None
        self._waiter = None
        self._transport = None
        self._paused = False

    # ------------------------------------------------------------------ the producer's side
    def set_transport(self, transport) -> None:
        self._transport = transport

    def feed_data(self, data) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake()
        if (self._transport is not None and not self._paused
                and self._size > 2 * self._limit):
            self._paused = True
            self._transport.pause_reading()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, exc) -> None:
        self._exception = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def exception(self):
        return self._exception

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ the reader's side
    @property
    def buffered(self) -> int:
        """Bytes fed and not read yet."""
        return self._size

    def at_eof(self) -> bool:
        return self._eof and not self._size

    async def _wait(self, name: str) -> None:
        if self._waiter is not None:
            raise RuntimeError(f"{name}() called while another coroutine is already waiting "
                               "for incoming data")
        self._waiter = self._loop.create_future()
        if self._paused:               # (a readexactly beyond twice the limit waits on it)
            self._paused = False
            self._transport.resume_reading()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self, n: int) -> bytes:
        """Up to ``n`` bytes from the front: the first chunk whole when it is all there is or
        at least ``n``; else the chunks up to ``n``, joined."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n or len(chunks) == 1:
            if len(first) > n:
                view = memoryview(first)
                chunks[0] = view[n:]
                first = view[:n]
            else:
                chunks.popleft()
            data = first if type(first) is bytes else bytes(first)
        else:
            pieces, left = [], n
            while chunks and left:
                piece = chunks[0]
                if len(piece) > left:
                    view = memoryview(piece)
                    chunks[0] = view[left:]
                    piece = view[:left]
                else:
                    chunks.popleft()
                pieces.append(piece)
                left -= len(piece)
            data = b"".join(pieces)
        self._size -= len(data)
        if self._paused and self._size <= self._limit:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (what is there, at least one byte, once there is any); with
        ``n`` < 0 everything until the end. b"" at the end of the stream."""
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if n < 0:
            blocks = []
            while block := await self.read(self._limit):
                blocks.append(block)
            return b"".join(blocks)
        if not self._size and not self._eof:
            await self._wait("read")
        if not self._size:
            return b""
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        while self._size < n:
            if self._eof:
                incomplete = self._take(self._size) if self._size else b""
                raise asyncio.IncompleteReadError(incomplete, n)
            await self._wait("readexactly")
        return self._take(n)

    def _joined(self) -> bytes:
        """Everything buffered as one chunk (for a search)."""
        chunks = self._chunks
        if len(chunks) > 1 or (chunks and type(chunks[0]) is not bytes):
            joined = b"".join(chunks)
            chunks.clear()
            chunks.append(joined)
        return chunks[0] if chunks else b""

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """As asyncio.StreamReader.readuntil: through the separator; LimitOverrunError (the
        data stays) when the separator is not within the limit; IncompleteReadError (with
        all that was left) at the end of the stream."""
        seplen = len(separator)
        if seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        if self._exception is not None:
            raise self._exception
        offset = 0
        while True:
            buffered = self._joined()
            if len(buffered) - offset >= seplen:
                found = buffered.find(separator, offset)
                if found != -1:
                    if found > self._limit:
                        raise asyncio.LimitOverrunError(
                            "Separator is found, but chunk is longer than limit", found)
                    return self._take(found + seplen)
                offset = len(buffered) + 1 - seplen
                if offset > self._limit:
                    raise asyncio.LimitOverrunError(
                        "Separator is not found, and chunk exceed the limit", offset)
            if self._eof:
                chunk = self._take(self._size) if self._size else b""
                raise asyncio.IncompleteReadError(chunk, None)
            await self._wait("readuntil")

    async def readline(self) -> bytes:
        """As asyncio.StreamReader.readline: a line with its b"\\n", or the rest at the
        end; ValueError (the line dropped) when it is longer than the limit."""
        separator = b"\n"
        try:
            return await self.readuntil(separator)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            buffered = self._joined()
            if buffered.startswith(separator, exc.consumed):
                self._take(exc.consumed + len(separator))
            elif self._size:
                self._take(self._size)
            raise ValueError(exc.args[0])

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line


class ChunkStream(asyncio.Protocol):
    """One connection: its reading half is a ChunkReader (reading pauses while more than
    ``2 * limit`` bytes wait to be read); ``drain`` waits while the transport's write buffer
    is above its high-water mark."""

    def __init__(self, limit: int = READ_LIMIT, on_connected=None):
        self._on_connected = on_connected       # called with the stream once connected
        self._loop = asyncio.get_running_loop()
        self._reader = ChunkReader(limit, self._loop)
        self._error = None
        self._writing_paused = False
        self._drain_waiter = None
        self.transport = None
        self._closed = self._loop.create_future()

    # ------------------------------------------------------------------ the protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._reader.set_transport(transport)
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        return True                     # keep the transport open: we may still write

    def connection_lost(self, exc) -> None:
        if exc is None:
            self._reader.feed_eof()
        else:
            self._error = exc
            self._reader.set_exception(exc)
        self._wake_drain()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reading
    def read(self, n: int = -1):
        """The next chunk as it arrived (see ChunkReader.read); b"" at the end. Raises the
        error that ended the connection, as asyncio's StreamReader does."""
        return self._reader.read(n)

    def readexactly(self, n: int):
        return self._reader.readexactly(n)

    def readline(self):
        return self._reader.readline()

    def at_eof(self) -> bool:
        return self._reader.at_eof()

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._reader.buffered

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

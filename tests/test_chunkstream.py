"""ChunkStream: kernel sockets as asyncio streams that hand bytes on as they arrived (the
proxy's plain TCP side and the kernel engine's sockets), against asyncio's own streams on
loopback."""
import asyncio
import os
import socket
import struct

import pytest

from mptcp_fast import chunkstream


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def _pair(limit=chunkstream.READ_LIMIT):
    """A ChunkStream server on loopback and an asyncio client connected to it."""
    accepted = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        assert reader is writer
        accepted.set_result(reader)
        await asyncio.Event().wait()               # held open until the test ends

    server = await chunkstream.start_server(handler, "127.0.0.1", 0, limit=limit)
    port = server.sockets[0].getsockname()[1]
    client_reader, client_writer = await asyncio.open_connection("127.0.0.1", port)
    stream = await accepted
    return server, stream, client_reader, client_writer


def test_bytes_arrive_exact_in_the_chunks_the_socket_gave():
    async def main():
        server, stream, _, client = await _pair()
        data = os.urandom(4 << 20)
        client.write(data)
        client.write_eof()
        got = []
        while chunk := await stream.read(1 << 18):
            assert type(chunk) is bytes and 0 < len(chunk) <= 1 << 18
            got.append(chunk)
        assert b"".join(got) == data and stream.at_eof()
        assert await stream.read() == b""              # the end stays the end
        client.close()
        server.close()
    run(main())


def test_a_short_read_cuts_a_chunk_and_keeps_the_rest():
    async def main():
        server, stream, _, client = await _pair()
        client.write(b"0123456789")
        await client.drain()
        first = await stream.read(3)
        while len(first) < 3:                         # (the kernel may split the ten bytes)
            first += await stream.read(3 - len(first))
        assert first == b"012"
        rest = b""
        while len(rest) < 7:
            rest += await stream.read(100)
        assert rest == b"3456789"
        client.close()
        server.close()
    run(main())


def test_reading_pauses_beyond_twice_the_limit_and_resumes():
    async def main():
        limit = 1 << 16
        server, stream, _, client = await _pair(limit)
        data = os.urandom(8 << 20)
        client.write(data)
        sending = asyncio.ensure_future(client.drain())
        await asyncio.sleep(0.3)                       # nobody reads: the proxy side fills
        # bounded: twice the limit, plus the one receive (at most 256 KiB) that crossed it
        assert stream.buffered <= 2 * limit + (1 << 18)
        assert stream.transport.is_reading() is False
        assert not sending.done()                      # the rest waits in the kernel
        got = bytearray()
        while len(got) < len(data):
            got += await stream.read(1 << 18)
        assert got == data
        await sending
        client.close()
        server.close()
    run(main())


def test_half_close_then_the_answer_goes_back():
    async def main():
        server, stream, client_reader, client = await _pair()
        client.write(b"request")
        client.write_eof()
        got = b""
        while chunk := await stream.read():
            got += chunk
        assert got == b"request"
        assert stream.can_write_eof()
        stream.write(b"answer")
        await stream.drain()
        stream.write_eof()
        assert await client_reader.read() == b"answer"
        stream.close()
        await stream.wait_closed()
        client.close()
        server.close()
    run(main())


def test_a_reset_from_the_peer_is_raised_by_read():
    async def main():
        server, stream, _, client = await _pair()
        sock = client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.transport.abort()
        with pytest.raises(ConnectionResetError):
            while await stream.read():
                pass
        with pytest.raises(ConnectionResetError):
            await stream.drain()
        server.close()
    run(main())


def test_abort_resets_the_peer():
    async def main():
        server, stream, client_reader, client = await _pair()
        stream.abort()
        with pytest.raises(ConnectionResetError):
            await client_reader.read()
        await stream.wait_closed()
        client.close()
        server.close()
    run(main())


def test_drain_waits_while_the_peer_does_not_read():
    async def main():
        server, stream, client_reader, client = await _pair()
        stream.transport.set_write_buffer_limits(high=1 << 16)
        payload = os.urandom(32 << 20)
        stream.write(payload)                          # far beyond the kernel's buffers
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(stream.drain()), 0.3)
        draining = asyncio.ensure_future(stream.drain())
        got = await client_reader.readexactly(len(payload))
        assert got == payload
        await draining                                 # the buffer emptied: drain returns
        client.close()
        server.close()
    run(main())


def test_open_connection_gives_one_stream_for_both_halves():
    async def main():
        async def echo(reader, writer):
            while data := await reader.read(1 << 16):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await chunkstream.open_connection("127.0.0.1", port)
        assert reader is writer
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        data = os.urandom(1 << 20)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        got = bytearray()
        while chunk := await reader.read():
            got += chunk
        assert got == data
        writer.close()
        await writer.wait_closed()
        assert writer.is_closing()
        server.close()
    run(main())


# ---------------------------------------------------------------------- ChunkReader
from hypothesis import given, settings, strategies as st   # noqa: E402

_OPS = st.lists(st.one_of(
    st.tuples(st.just("read"), st.integers(-1, 40)),
    st.tuples(st.just("readexactly"), st.integers(0, 40)),
    st.tuples(st.just("readline"), st.just(None)),
    st.tuples(st.just("readuntil"), st.sampled_from([b"\n", b"ab", b"\n\n"])),
    st.tuples(st.just("at_eof"), st.just(None)),
), max_size=12)


async def _apply(reader, op, arg):
    """One operation's outcome, comparable across readers: a value or the error's type
    and what it carries."""
    try:
        if op == "at_eof":
            return reader.at_eof()
        value = await getattr(reader, op)(*(() if arg is None else (arg,)))
        return bytes(value)
    except asyncio.IncompleteReadError as exc:
        return ("incomplete", exc.partial, exc.expected)
    except asyncio.LimitOverrunError as exc:
        return ("overrun", exc.consumed, str(exc))
    except ValueError as exc:
        return ("value", str(exc))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"\n")),
                       max_size=8),
       limit=st.integers(1, 64), ops=_OPS)
def test_chunk_reader_answers_as_asyncio_stream_reader(chunks, limit, ops):
    """Fed the same chunks and the end, a ChunkReader and asyncio's StreamReader give the
    same bytes and the same errors for every sequence of read, readexactly, readline and
    readuntil (limits, separators split across chunks, lines longer than the limit)."""
    async def main():
        ours = chunkstream.ChunkReader(limit)
        theirs = asyncio.StreamReader(limit=limit)
        for reader in (ours, theirs):
            for chunk in chunks:
                reader.feed_data(chunk)
            reader.feed_eof()
        for op, arg in ops:
            assert await _apply(ours, op, arg) == await _apply(theirs, op, arg), (op, arg)
        assert ours.at_eof() == theirs.at_eof()
    asyncio.run(main())


def test_chunk_reader_hands_back_the_chunk_it_was_fed():
    async def main():
        reader = chunkstream.ChunkReader()
        chunk = os.urandom(1000)
        reader.feed_data(chunk)
        assert await reader.read(1 << 16) is chunk            # no copy
        reader.feed_data(b"ab")
        reader.feed_data(b"cd")
        assert await reader.read(3) == b"abc"                # small ones joined up to n
        assert await reader.read(3) == b"d"
    asyncio.run(main())


def test_chunk_reader_waits_raises_and_pauses_its_producer():
    class Producer:
        def __init__(self):
            self.paused = False

        def pause_reading(self):
            self.paused = True

        def resume_reading(self):
            self.paused = False

    async def main():
        reader = chunkstream.ChunkReader(limit=10)
        producer = Producer()
        reader.set_transport(producer)
        waiting = asyncio.ensure_future(reader.readexactly(25))
        await asyncio.sleep(0)
        for piece in (b"x" * 8, b"y" * 8, b"z" * 8):          # 24 > twice the limit: paused
            reader.feed_data(piece)
        await asyncio.sleep(0)
        assert not waiting.done()
        assert not producer.paused       # a readexactly beyond twice the limit resumes it
        reader.feed_data(b"!")
        assert await waiting == b"x" * 8 + b"y" * 8 + b"z" * 8 + b"!"
        reader.feed_data(b"q" * 30)
        assert producer.paused and reader.buffered == 30
        assert await reader.read(25) == b"q" * 25
        assert not producer.paused       # back under the limit
        assert await reader.read(25) == b"q" * 5
        with pytest.raises(RuntimeError):                     # one waiter at a time
            first = asyncio.ensure_future(reader.readexactly(100))
            await asyncio.sleep(0)
            await reader.read(100)
        reader.set_exception(ConnectionResetError("reset"))
        with pytest.raises(ConnectionResetError):
            await first
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
    asyncio.run(main())

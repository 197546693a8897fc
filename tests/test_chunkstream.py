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

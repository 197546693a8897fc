"""asyncio streams over the engine and a TUN device, against the kernel: an echo
server in the engine for a kernel client, a client of a kernel server; flow control both
ways; on asyncio's loop and on uvloop. Root only."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from mptcp_fast.net import aio
from mptcp_fast.engine import Config
from mptcp_fast.testing.testbed import KernelPeer, TunBed

from mptcp_fast.testing.testbed import stream as _stream

pytestmark = pytest.mark.requires("testbed")

MB = 1_000_000


@pytest.fixture
def bed():
    with TunBed(name="mfa", paths=2) as made:
        yield made


# uvloop is an optional extra: where it is missing its runs are skipped (a failure in CI)
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.requires("uvloop"))]


def _run(kind: str, coroutine, timeout: float = 60.0):
    """Run on the chosen loop; a stall fails the test instead of hanging it."""
    guarded = asyncio.wait_for(coroutine, timeout)
    if kind == "uvloop":
        import uvloop
        return uvloop.run(guarded)
    return asyncio.run(guarded)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_engine_echo_server_for_a_kernel_client(bed, loop_kind):
    """start_server: every byte the kernel client sends comes back (32 MB, two subflows: the
    kernel joins from its second address), and the end of the stream closes the echo. (With
    8 MB the kernel's path manager sometimes had not joined before the echo ended.)"""
    bed.endpoint(bed.kernel_addresses[1], "subflow")
    size = 32 * MB

    async def main():
        subflows = []

        async def echo(reader, writer):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            subflows.append(len(writer.get_extra_info("subflows")))
            writer.close()
            await writer.wait_closed()

        server = await aio.start_server(echo, 5000, local_addresses=bed.engine_addresses[:1],
                                        device=bed.device, config=Config(offload=True))
        peer = KernelPeer(bed.ns, send_bytes=size, seed=4).connect(bed.engine_addresses[0], 5000)
        while not peer.done():
            await asyncio.sleep(0.01)
        server.close()
        server.stack.close()
        return peer, subflows

    peer, subflows = _run(loop_kind, main())
    assert peer.error is None
    assert peer.received == size and peer.received_sha256 == peer.sent_sha256
    assert subflows == [2]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_engine_client_of_a_kernel_server(bed, loop_kind):
    """open_connection from two local addresses: 6 MB each way, byte-exact; the reader is a
    StreamReader: readexactly of more than its limit (it pauses the engine's reading and
    resumes it while waiting, as with a socket) and wait_closed returns once our DATA_FIN is
    acknowledged."""
    size = 6 * MB
    peer = KernelPeer(bed.ns, send_bytes=size, seed=5).listen("0.0.0.0", 5000)

    async def main():
        reader, writer = await aio.open_connection(
            bed.kernel_addresses[0], 5000, local_addresses=bed.engine_addresses,
            device=bed.device, config=Config(offload=True))
        assert writer.get_extra_info("peername") == (bed.kernel_addresses[0], 5000)
        source = _stream(8, size)

        async def send():
            for i in range(0, size, 100_000):
                writer.write(source[i:i + 100_000])
                await writer.drain()
            writer.write_eof()

        sending = asyncio.ensure_future(send())
        received = await reader.readexactly(size)
        assert await reader.read() == b""
        await sending
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 10)
        joined = len(writer.get_extra_info("subflows"))
        writer.stack.close()
        return source, received, joined

    source, received, joined = _run(loop_kind, main())
    peer.join()
    assert peer.received_sha256 == hashlib.sha256(source).hexdigest()
    assert received == _stream(5, size)
    assert joined == 2


def test_a_reader_that_does_not_read_closes_the_window(bed):
    """Flow control: the application reads nothing for a while, so the engine stops taking
    the connection's data out (the reader's buffer stays near its limit and the kernel is
    stopped by our closed window); then it reads everything, byte-exact."""
    size = 30 * MB
    peer = KernelPeer(bed.ns, send_bytes=size, seed=6).listen("0.0.0.0", 5000)

    async def main():
        config = Config(offload=True, receive_window=1 << 20)
        reader, writer = await aio.open_connection(
            bed.kernel_addresses[0], 5000, local_addresses=bed.engine_addresses[:1],
            device=bed.device, config=config)
        await asyncio.sleep(0.5)                     # not reading
        buffered = len(reader._buffer)               # what the stream holds unread
        digest, total = hashlib.sha256(), 0
        while data := await reader.read(1 << 20):
            digest.update(data)
            total += len(data)
        writer.close()
        await writer.wait_closed()
        writer.stack.close()
        return buffered, total, digest.hexdigest()

    buffered, total, digest = _run("asyncio", main())
    peer.join()
    assert buffered <= 2 * aio.READ_LIMIT + (1 << 20)    # the limit, plus one event's data
    assert total == size and digest == peer.sent_sha256


def test_refused_connection_raises(bed):
    """Nothing listens on the port: the kernel answers RST and open_connection raises
    ConnectionRefusedError."""
    async def main():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(aio.open_connection(
                bed.kernel_addresses[0], 5999, local_addresses=bed.engine_addresses[:1],
                device=bed.device), 10)
    _run("asyncio", main())


def test_a_connection_reset_mid_write_lets_go_of_the_unsent_bytes(bed):
    """The server never reads and then closes its socket with our bytes unread (Linux sends
    MP_FASTCLOSE): the writer's bytes that the connection had not taken are let go at once,
    the writer leaves the stack's work list, and drain() raises, instead of the stack
    feeding a connection that is gone for ever (a proxy kept ~1 MB per such connection)."""
    import socket
    import threading
    with bed.ns.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    listener.bind(("0.0.0.0", 5000))
    listener.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()

    async def main():
        config = Config(offload=True, send_buffer=1 << 20)
        reader, writer = await aio.open_connection(
            bed.kernel_addresses[0], 5000, local_addresses=bed.engine_addresses[:1],
            device=bed.device, config=config)
        stack = writer.stack
        writer.write(bytes(8 << 20))                 # more than window and send buffer take
        await asyncio.sleep(0.5)
        held = writer.transport._pending_bytes
        accepted[0].close()                          # unread bytes: a fastclose
        with pytest.raises(ConnectionResetError):
            await reader.read()
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        left = writer.transport._pending_bytes, writer.transport in stack._wanting or \
            writer.transport in stack._blocked.values()
        stack.close()
        return held, left

    try:
        held, left = _run("asyncio", main())
    finally:
        listener.close()
    assert held > 4 << 20                            # the writer did hold bytes back
    assert left == (0, False)


def test_a_writer_whose_peer_does_not_read_waits_outside_the_work_list(bed):
    """The kernel server reads nothing for a second: the connection holds twice the
    server's largest window at most (its send_space, as Linux sizes a send buffer), the rest
    stays with the writer, and the writer leaves the stack's work list (a turn does not
    visit it) until the engine reports acknowledgments for it (connections_with_send_space);
    then the server reads everything, byte-exact."""
    import socket
    import threading
    size = 16 << 20
    with bed.ns.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    listener.bind(("0.0.0.0", 5000))
    listener.listen(1)
    received = {}

    def serve():
        conn = listener.accept()[0]
        threading.Event().wait(1.0)                  # not reading
        digest, total = hashlib.sha256(), 0
        while data := conn.recv(1 << 20):
            digest.update(data)
            total += len(data)
        received.update(total=total, sha=digest.hexdigest())
        conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    data = _stream(11, size)

    async def main():
        reader, writer = await aio.open_connection(
            bed.kernel_addresses[0], 5000, local_addresses=bed.engine_addresses[:1],
            device=bed.device, config=Config(offload=True))
        stack, conn = writer.stack, writer.get_extra_info("connection")
        writer.write(data)
        await asyncio.sleep(0.5)
        seen = dict(blocked=writer.transport in stack._blocked.values(),
                    wanting=writer.transport in stack._wanting,
                    held=conn._buffered(), window=conn.peer_window_max,
                    pending=writer.transport._pending_bytes)
        writer.write_eof()
        await writer.drain()
        await reader.read()
        writer.close()
        await writer.wait_closed()
        stack.close()
        return seen

    try:
        seen = _run("asyncio", main())
    finally:
        server.join(30)
        listener.close()
    assert seen["blocked"] and not seen["wanting"]
    assert 0 < seen["held"] <= 2 * seen["window"] and seen["pending"] > 0
    assert received == dict(total=size, sha=hashlib.sha256(data).hexdigest())

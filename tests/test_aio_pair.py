"""Two asyncio stacks joined in process (no TUN device, no root): each device is a list of
packets plus a pipe whose byte wakes the other loop's reader, so the streams' flow control
and ends are tested as an application meets them."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from certificates import self_signed
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
            outcome.parked = writer.transport in server._blocked.values()

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
    feed = aio.MptcpTransport._feed

    def counted_feed(transport):
        fed[id(transport._conn)] = fed.get(id(transport._conn), 0) + 1
        return feed(transport)
    monkeypatch.setattr(aio.MptcpTransport, "_feed", counted_feed)

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
            active = client.endpoint.connection(writer.get_extra_info("connection").id)
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


# ---------------------------------------------------------------------------- TLS on the streams

def _contexts(tmp_path, trusted: bytes | None = None):
    """(server context with a fresh certificate, client context trusting ``trusted``, by
    default that certificate)."""
    import ssl
    cert, key = self_signed("mptcp.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=(trusted or cert).decode())
    return server, client


class _Tap(PipeDevice):
    """A PipeDevice that keeps every packet it carries (to look for plaintext in them)."""

    def __init__(self):
        super().__init__()
        self.carried: list = []

    def write(self, packet) -> None:
        self.carried.append(bytes(packet))
        super().write(packet)


def test_tls_over_an_mptcp_connection_carries_a_mebibyte_both_ways_and_nothing_in_clear(
        tmp_path, backend):
    """start_server(ssl=) and open_connection(ssl=, server_hostname=): the client's
    certificate check passes, the handler gets plaintext streams, 1 MiB goes up and comes
    back byte-exact, and no packet between the stacks holds a 64-byte piece of it; the
    writer still answers what the engine knows ("connection", "subflows") beside TLS's
    own ("ssl_object", "peercert")."""
    import ssl
    server_context, client_context = _contexts(tmp_path)
    data = os.urandom(1 << 20)

    async def main():
        a, b = _Tap(), _Tap()
        a.peer, b.peer = b, a
        client, server = aio.Stack([A], a), aio.Stack([B], b)

        async def echo(reader, writer):
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
            writer.close()

        try:
            await server.start_server(echo, 5443, ssl=server_context)
            reader, writer = await client.open_connection(B, 5443, ssl=client_context,
                                                          server_hostname="mptcp.test")
            info = (writer.get_extra_info("ssl_object").version(),
                    writer.get_extra_info("peercert")["subject"],
                    writer.get_extra_info("connection").id,
                    writer.get_extra_info("subflows"), writer.can_write_eof())

            async def send():
                for i in range(0, len(data), 50_000):
                    writer.write(data[i:i + 50_000])
                    await writer.drain()
            sender = asyncio.ensure_future(send())
            back = await asyncio.wait_for(reader.readexactly(len(data)), 30)
            await sender
            writer.close()
            end = await asyncio.wait_for(reader.read(), 10)
            await asyncio.wait_for(writer.wait_closed(), 10)
            return info, back, end, a.carried + b.carried
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    info, back, end, carried = asyncio.run(main())
    version, subject, cid, subflows, eof = info
    assert version in ("TLSv1.2", "TLSv1.3") and subject == ((("commonName", "mptcp.test"),),)
    assert isinstance(cid, int) and subflows == [((A, subflows[0][0][1]), (B, 5443))]
    assert eof is False                                   # TLS ends only whole
    assert back == data and end == b""
    wire = b"".join(carried)
    assert len(wire) > 2 * len(data)                      # both ways went through the tap
    pieces = [data[i:i + 64] for i in range(0, len(data), 64 * 1024)]
    assert not [p for p in pieces if p in wire]
    assert ssl.OPENSSL_VERSION                            # (the module is what ran it)


class _LazyPipe(PipeDevice):
    """A PipeDevice whose peer is woken 20 ms after the first packet of a burst: what one
    side sends within those 20 ms arrives in one batch (a third ACK and the first data)."""

    def write(self, packet) -> None:
        self.peer.queue.append(bytes(packet))
        if not getattr(self, "_waking", False):
            self._waking = True
            asyncio.get_running_loop().call_later(0.02, self._wake)

    def _wake(self) -> None:
        self._waking = False
        os.write(self.peer._w, b"x")


def test_a_tls_client_hello_in_the_batch_of_the_third_ack_reaches_tls(tmp_path, backend):
    """The client's first TLS bytes arrive with the ACK that establishes the connection
    (one batch: both events in one turn of the server's stack): they wait in the engine
    for the server's TLS, not in the plaintext reader, and the handshake completes."""
    server_context, client_context = _contexts(tmp_path)

    async def main():
        a, b = _LazyPipe(), _LazyPipe()
        a.peer, b.peer = b, a
        client, server = aio.Stack([A], a), aio.Stack([B], b)
        got = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            got.set_result(await reader.readexactly(5))

        try:
            await server.start_server(handler, 5443, ssl=server_context)
            reader, writer = await asyncio.wait_for(client.open_connection(
                B, 5443, ssl=client_context, server_hostname="mptcp.test"), 20)
            writer.write(b"hello")
            return await asyncio.wait_for(got, 10)
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    assert asyncio.run(main()) == b"hello"


def test_a_tls_handshake_that_fails_raises_for_the_client_and_never_calls_the_handler(
        tmp_path, backend):
    """The client trusts another certificate than the server's: open_connection raises
    ssl.SSLCertVerificationError, the server's handler is never called, and both stacks
    are left without the connection (aborted on the client, reset on the server)."""
    import ssl
    other, _ = self_signed("other.test")
    server_context, client_context = _contexts(tmp_path, trusted=other)
    called = []

    async def main():
        a, b = _pair()
        client, server = aio.Stack([A], a), aio.Stack([B], b)

        async def handler(reader, writer):
            called.append(writer)

        try:
            await server.start_server(handler, 5443, ssl=server_context)
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.open_connection(B, 5443, ssl=client_context,
                                             server_hostname="mptcp.test")
            for _ in range(100):
                if not client.endpoint.connections and not server.endpoint.connections:
                    break
                await asyncio.sleep(0.05)
            return len(client.endpoint.connections), len(server.endpoint.connections)
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    assert asyncio.run(main()) == (0, 0)
    assert called == []


def test_starttls_upgrades_an_open_connection(tmp_path, backend):
    """A plaintext line, then writer.start_tls on both sides (the server side is the side
    that accepted), then lines over TLS: each side reads what the other wrote, in order."""
    server_context, client_context = _contexts(tmp_path)

    async def main():
        a, b = _pair()
        client, server = aio.Stack([A], a), aio.Stack([B], b)
        served = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            first = await reader.readline()
            writer.write(b"go ahead\n")
            await writer.start_tls(server_context)
            second = await reader.readline()
            writer.write(b"secret received\n")
            await writer.drain()
            served.set_result((first, second, writer.get_extra_info("ssl_object") is not None))

        try:
            await server.start_server(handler, 5025)
            reader, writer = await client.open_connection(B, 5025)
            plain = writer.get_extra_info("ssl_object")
            writer.write(b"STARTTLS\n")
            answer = await reader.readline()
            await writer.start_tls(client_context, server_hostname="mptcp.test")
            writer.write(b"a secret\n")
            reply = await asyncio.wait_for(reader.readline(), 10)
            return plain, answer, reply, await asyncio.wait_for(served, 10)
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    plain, answer, reply, served = asyncio.run(main())
    assert plain is None and answer == b"go ahead\n" and reply == b"secret received\n"
    assert served == (b"STARTTLS\n", b"a secret\n", True)


def test_ssl_arguments_that_cannot_work_are_refused_at_once(tmp_path):
    """A server without a context, a context of the wrong kind, server_hostname without
    ssl: the errors asyncio's own calls give, before anything is sent."""
    async def main():
        a, b = _pair()
        stack = aio.Stack([A], a)
        try:
            with pytest.raises(TypeError, match="SSLContext"):
                await stack.start_server(lambda r, w: None, 5443, ssl=True)  # type: ignore
            with pytest.raises(TypeError, match="SSLContext"):
                await stack.open_connection(B, 5443, ssl="yes")              # type: ignore
            with pytest.raises(ValueError, match="server_hostname"):
                await stack.open_connection(B, 5443, server_hostname="mptcp.test")
            return len(stack.endpoint.connections), a.peer.queue if a.peer else None
        finally:
            stack.close()
            a.close()
            b.close()

    assert asyncio.run(main()) == (0, [])


def test_a_protocol_that_fails_on_its_data_ends_its_connection_alone(backend):
    """A protocol whose data_received raises (as asyncio's transports treat it): that
    connection is aborted and its protocol told with the exception; the stack goes on, and
    the server's side learns of the abort."""
    class Failing(asyncio.Protocol):
        lost: list = []

        def data_received(self, data):
            raise ValueError("not for me")

        def connection_lost(self, exc):
            self.lost.append(exc)

    async def main():
        async with _connection() as (client, server, (c_reader, c_writer), (s_reader, s_writer)):
            protocol = Failing()
            c_writer.transport.set_protocol(protocol)
            s_writer.write(b"data")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(s_reader.read(), 10)
            return protocol.lost, c_writer.get_extra_info("connection").terminated

    lost, terminated = asyncio.run(main())
    assert [type(e) for e in lost] == [ValueError] and terminated


def test_subflows_ever_keeps_a_join_that_closed_before_its_connection(backend):
    """The client joins from its second address, then loses that address (its subflow reset,
    REMOVE_ADDR to the server, RFC 8684 §3.4.2): the server's live "subflows" are back to one,
    and "subflows_ever" still lists both, in order (what the CLI's records report)."""
    A2 = "198.18.2.1"

    async def main():
        a, b = _pair()
        client, server = aio.Stack([A, A2], a), aio.Stack([B], b)
        served = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            await reader.readexactly(1)             # (its DATA_ACK: the client may join)
            served.set_result(writer)
            await asyncio.sleep(3600)

        try:
            await server.start_server(handler, 5000)
            _, client_writer = await client.open_connection(B, 5000)
            client_writer.write(b"x")
            writer = await asyncio.wait_for(served, 5)
            for _ in range(200):
                if len(writer.get_extra_info("subflows")) == 2:
                    break
                await asyncio.sleep(0.01)
            both = writer.get_extra_info("subflows")
            client.endpoint.remove_address(A2)
            client._turn()
            for _ in range(200):
                if len(writer.get_extra_info("subflows")) == 1:
                    break
                await asyncio.sleep(0.01)
            return both, writer.get_extra_info("subflows"), writer.get_extra_info("subflows_ever")
        finally:
            client.close()
            server.close()
            a.close()
            b.close()

    both, live, ever = asyncio.run(main())
    assert [local[0] for local, _ in both] == [B, B]
    assert [remote[0] for _, remote in both] == [A, A2]
    assert len(live) == 1 and ever == both

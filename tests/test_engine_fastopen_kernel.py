"""The engine's TCP Fast Open against Linux's (net.ipv4.tcp_fastopen in the kernel's namespace,
over a TUN device: TunBed). Our client to a kernel MPTCP server whose listener takes TFO: the
first connection asks for a cookie, the second one's MP_CAPABLE SYN carries the data and the
kernel takes them (TcpExtTCPFastOpenPassive); a kernel MPTCP client (TCP_FASTOPEN_CONNECT) to
our server: its second SYN carries its data and we take them (TcpExtTCPFastOpenActive on its
side). Byte for byte both ways, no fallback. Root only."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from mptcp_fast.engine import Config
from mptcp_fast.net import aio, kernel
from mptcp_fast.testing.testbed import TunBed, VethBed

pytestmark = pytest.mark.requires("testbed")

PORT = 5000
TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)    # linux/tcp.h
FALLBACKS = ("MPCapableFallbackACK", "MPCapableFallbackSYNACK", "MPCapableDataFallback",
             "DssFallback", "InfiniteMapTx")


@pytest.fixture
def bed():
    with TunBed(name="mfo", paths=1) as made:
        made.ns.sysctl("net.ipv4.tcp_fastopen", 3)         # client and server sides
        yield made


def _fastopen_counters(bed) -> dict:
    return bed.ns.counters("TcpExtTCPFastOpen")


def _moved(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


class _KernelServer:
    """A kernel MPTCP listener with TCP_FASTOPEN in the namespace, in a thread: each accepted
    connection is read to its end, what it brought kept, and answered with b"ok"."""

    def __init__(self, bed, connections: int) -> None:
        with bed.ns.entered():
            self.sock = kernel.mptcp_socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
        self.sock.bind((bed.kernel_addresses[0], PORT))
        self.sock.listen(8)
        self.sock.settimeout(20)
        self.received: list[bytes] = []
        self.fallback: list[bool] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections: int) -> None:
        try:
            for _ in range(connections):
                conn, _ = self.sock.accept()
                conn.settimeout(20)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.fallback.append(_fell_back(conn))
                self.received.append(data)
                conn.sendall(b"ok")
                conn.close()
        except BaseException as exc:                         # reported to the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(30)
        self.sock.close()


def test_our_syn_carries_data_to_a_kernel_server_that_takes_them(bed):
    server = _KernelServer(bed, connections=2)
    # the second message is longer than a SYN takes: the rest follows, mapped from IDSN + 1
    first, second = b"first: asks for a cookie", bytes(range(256)) * 20
    before = _fastopen_counters(bed)
    before_mptcp = bed.counters()

    async def main():
        stack = aio.Stack(bed.engine_addresses, bed.device, Config(fastopen=True))
        answers = []
        try:
            for message in (first, second + b" and after"):
                reader, writer = await stack.open_connection(bed.kernel_addresses[0], PORT,
                                                             data=message)
                writer.write_eof()
                answers.append(await asyncio.wait_for(reader.read(), 20))
                writer.close()
            return answers, stack.endpoint.stats
        finally:
            stack.close()

    answers, stats = asyncio.run(asyncio.wait_for(main(), 60))
    server.join()
    assert server.error is None
    assert server.received == [first, second + b" and after"] and answers == [b"ok", b"ok"]
    assert server.fallback == [False, False]
    moved = _moved(before, _fastopen_counters(bed))
    print("kernel server:", moved)
    # the kernel gave a cookie to the first SYN and took the second one's data
    assert moved.get("TcpExtTCPFastOpenCookieReqd") == 1, moved
    assert moved.get("TcpExtTCPFastOpenPassive") == 1, moved
    assert not moved.get("TcpExtTCPFastOpenPassiveFail"), moved
    assert stats["fastopen_syn_data_acked"] == 1 and stats["fastopen_cookies_received"] == 1
    mptcp = bed.ns.counters_since(before_mptcp)
    assert mptcp.get("MPTcpExtMPCapableSYNRX") == 2 and not any(
        mptcp.get(f"MPTcpExt{name}") for name in FALLBACKS), mptcp


def _fell_back(sock) -> bool:
    """Whether a kernel MPTCP socket fell back to TCP (MPTCP_INFO is refused once it has)."""
    try:
        return kernel.mptcp_info(sock).fallback
    except kernel.KernelMptcpError:
        return True


def _kernel_client(bed, message: bytes, out: list) -> None:
    """A kernel MPTCP client with TCP_FASTOPEN_CONNECT: connect() returns at once and the
    first write sends the SYN, with the data once the kernel holds our cookie."""
    try:
        with bed.ns.entered():
            sock = kernel.mptcp_socket()
        sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        sock.settimeout(20)
        sock.connect((bed.engine_addresses[0], PORT))
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        out.append((answer, _fell_back(sock)))
        sock.close()
    except BaseException as exc:                             # reported to the test
        out.append(exc)


def test_a_kernel_clients_syn_data_are_taken_by_our_server(bed):
    first, second = b"first: the kernel asks for a cookie", b"in the SYN, then after " * 200
    before = _fastopen_counters(bed)

    async def main():
        got = []

        async def handler(reader, writer):
            got.append(await reader.read())
            writer.write(b"answer")
            writer.close()

        server = await aio.start_server(handler, PORT, local_addresses=bed.engine_addresses,
                                        device=bed.device, config=Config(fastopen=True))
        results: list = []
        try:
            for message in (first, second):
                thread = threading.Thread(target=_kernel_client, args=(bed, message, results))
                thread.start()
                while thread.is_alive():
                    await asyncio.sleep(0.01)
            return got, results, server.stack.endpoint.stats
        finally:
            server.close()
            server.stack.close()

    got, results, stats = asyncio.run(asyncio.wait_for(main(), 60))
    assert results == [(b"answer", False), (b"answer", False)], results
    assert got == [first, second]
    assert stats["fastopen_cookie_requests"] == 1 and stats["fastopen_accepted"] == 1
    moved = _moved(before, _fastopen_counters(bed))
    print("kernel client:", moved)
    assert moved.get("TcpExtTCPFastOpenActive") == 1, moved
    assert not moved.get("TcpExtTCPFastOpenActiveFail"), moved



def test_our_refused_syn_data_come_again_mapped_and_a_kernel_server_stays_mptcp(bed):
    """The kernel server's TFO key changes (net.ipv4.tcp_fastopen_key): our cookie is stale,
    the kernel does not take the SYN's data (TcpExtTCPFastOpenPassiveFail) and sends a fresh
    cookie; we send the data again after the handshake as MP_CAPABLE data from DSN IDSN + 1
    (RFC 8684 App. B.3), and the connection stays MPTCP, byte for byte."""
    server = _KernelServer(bed, connections=3)
    messages = [b"asks for a cookie", b"taken " * 300, b"refused, then sent again " * 80]

    async def main():
        stack = aio.Stack(bed.engine_addresses, bed.device, Config(fastopen=True))
        try:
            for i, message in enumerate(messages):
                if i == 2:
                    bed.ns.run("sysctl", "-q", "-w", "net.ipv4.tcp_fastopen_key="
                               "00000000-00000000-00000000-00000001")
                reader, writer = await stack.open_connection(bed.kernel_addresses[0], PORT,
                                                             data=message)
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 20) == b"ok"
                writer.close()
            return stack.endpoint.stats
        finally:
            stack.close()

    before = _fastopen_counters(bed)
    before_mptcp = bed.counters()
    stats = asyncio.run(asyncio.wait_for(main(), 60))
    server.join()
    assert server.error is None and server.received == messages
    assert server.fallback == [False, False, False]
    moved = _moved(before, _fastopen_counters(bed))
    print("kernel server, stale cookie:", moved)
    assert moved.get("TcpExtTCPFastOpenPassive") == 1 and \
        moved.get("TcpExtTCPFastOpenPassiveFail") == 1, moved
    assert stats["fastopen_syn_data_acked"] == 1 and stats["fastopen_cookies_received"] == 2
    mptcp = bed.ns.counters_since(before_mptcp)
    assert not any(mptcp.get(f"MPTcpExt{name}") for name in FALLBACKS), mptcp


def test_a_kernel_clients_refused_syn_data_come_again_unmapped_and_it_falls_back(bed):
    """The other way round, as Linux does with itself: our server restarts (a new secret), so
    the kernel client's cookie is stale and its SYN's data are not taken. Linux sends them
    again as plain subflow bytes, without a mapping (its SYN's data are TCP's, not MPTCP's),
    which both ends take as a fallback to TCP (RFC 8684 §3.7; a kernel server does the same:
    MPTcpExtMPCapableFallbackACK, docs/kernel-behaviour.md): the data arrive once, in order."""
    first, second = b"asks for a cookie", b"a stale cookie's data " * 100

    async def serve(message):
        got = []

        async def handler(reader, writer):
            got.append(await reader.read())
            writer.write(b"answer")
            writer.close()

        server = await aio.start_server(handler, PORT, local_addresses=bed.engine_addresses,
                                        device=bed.device, config=Config(fastopen=True))
        results: list = []
        try:
            thread = threading.Thread(target=_kernel_client, args=(bed, message, results))
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)
            return got, results, server.stack.endpoint.stats
        finally:
            server.close()
            server.stack.close()

    got, results, _ = asyncio.run(asyncio.wait_for(serve(first), 30))
    assert got == [first] and results == [(b"answer", False)], results
    got, results, stats = asyncio.run(asyncio.wait_for(serve(second), 30))   # a new secret
    assert got == [second] and results == [(b"answer", True)], results
    assert stats["fastopen_cookies_refused"] == 1 and not stats["fastopen_accepted"]
    assert stats["fallbacks"] == 1


def test_linux_with_itself_falls_back_when_a_stale_cookies_data_are_refused():
    """The reference for the test above: two kernels (VethBed), the server's TFO key changed
    between the client's second and third connection: the third's SYN data are refused
    (TcpExtTCPFastOpenPassiveFail), sent again unmapped, and the connection falls back to
    TCP (the server's MPTcpExtMPCapableFallbackACK), its bytes whole."""
    with VethBed(name="mfk", paths=1) as bed:
        for ns in (bed.a, bed.b):
            ns.sysctl("net.ipv4.tcp_fastopen", 3)
        with bed.b.entered():
            listener = kernel.mptcp_socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
        listener.bind((bed.b_addresses[0], PORT))
        listener.listen(8)
        listener.settimeout(20)
        served: list = []

        def serve() -> None:
            for _ in range(3):
                conn, _ = listener.accept()
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                served.append((data, _fell_back(conn)))
                conn.sendall(b"ok")
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        before = bed.b.counters()
        results: list = []
        for i, message in enumerate((b"cookie", b"taken " * 300, b"refused " * 200)):
            if i == 2:
                bed.b.run("sysctl", "-q", "-w", "net.ipv4.tcp_fastopen_key="
                          "00000000-00000000-00000000-00000001")
            _kernel_client(_Side(bed.a, bed.b_addresses[0]), message, results)
        thread.join(30)
        listener.close()
        assert [r[1] for r in results] == [False, False, True], results
        assert served == [(b"cookie", False), (b"taken " * 300, False),
                          (b"refused " * 200, True)]
        assert bed.b.counters_since(before).get("MPTcpExtMPCapableFallbackACK") == 1


class _Side:
    """What _kernel_client needs of a bed: the client's namespace, the server's address."""

    def __init__(self, ns, server: str) -> None:
        self.ns = ns
        self.engine_addresses = [server]

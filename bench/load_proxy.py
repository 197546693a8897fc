"""The proxy under load, as an operator runs it (root): ``mptcp-fast proxy`` (tcp-to-mptcp) on
127.0.0.1 in front of a kernel MPTCP echo server in a namespace, N plain TCP clients at once,
each sending SIZE bytes of its own seeded stream and reading the echo back.

    python bench/load_proxy.py --engine kernel --clients 1000 --size 256K

Topology: a VethBed (two namespaces over two veth pairs): the echo server in ``mfl-a<tag>``
(198.18.0.1), the proxy's MPTCP sockets in ``mfl-b<tag>`` (198.18.0.2 and a "subflow" endpoint on
198.18.2.2, so each connection has two subflows); the proxy's TCP listener and the clients in
this namespace. The echo server is a plain selectors loop (``--echo-server``), independent of
the project's code, which checks every word on arrival (each 8-byte word of a client's stream
says which stream and which word it is). Prints exact / short / corrupt / failed counts, the
time and the proxy's peak RSS.

``--direct`` leaves the proxy out: the clients' own kernel MPTCP sockets in the proxy's
namespace, driven by asyncio (each send() logged), by blocking threads (``--blocking``) or by
a selectors loop (``--selectors``). With asyncio at 2,000 concurrent connections Linux 6.18
delivers 1-8 streams per 2,000 to the server with the bytes after the first 64 KiB write
shifted (the server's check on arrival sees it; every send() had returned its full length).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

IPPROTO_MPTCP = 262
ECHO_QUEUE = 1 << 20        # bytes the echo server holds for a connection before it stops reading
DELAY = 0.0                 # seconds a client waits after connecting before it sends (--delay)


def echo_server(host: str, port: int, close_after: int = 0, congestion: str = "") -> None:
    """A kernel MPTCP echo server: what arrives goes back, half-closes follow. With
    ``close_after``, a connection is closed once that many bytes arrived, whatever is still
    unread (as a server that has seen enough of a request)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if congestion:                  # inherited by every connection and its subflows
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
    listener.bind((host, port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    pending = {}                                     # socket -> bytearray to send back
    print("ready", flush=True)
    while True:
        for key, events in sel.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                # echo queue, client ended, arrived not yet checked, next word, bytes in
                pending[conn] = [bytearray(), False, bytearray(), 0, 0]
                sel.register(conn, selectors.EVENT_READ, None)
                continue
            state = pending[sock]
            if events & selectors.EVENT_READ and len(state[0]) < ECHO_QUEUE:
                try:
                    data = sock.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data, state[0] = b"", bytearray()
                if data == b"":
                    state[1] = True                  # the client ended its stream
                elif data:
                    state[0] += data
                    _check_arrival(state, data)
                    state[4] += len(data)
                    if close_after and state[4] >= close_after:
                        sel.unregister(sock)
                        del pending[sock]
                        sock.close()
                        continue
            if state[0]:
                try:
                    sent = sock.send(state[0])
                    del state[0][:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    state[0], state[1] = bytearray(), True
            if state[1] and not state[0]:
                sel.unregister(sock)
                del pending[sock]
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                sock.close()
                continue
            # read on while little waits to go back: a client that reads slowly holds up
            # its own stream only (its bytes wait in the kernel's buffers, not here)
            want = selectors.EVENT_READ if not state[1] and len(state[0]) < ECHO_QUEUE else 0
            if state[0]:
                want |= selectors.EVENT_WRITE
            sel.modify(sock, want or selectors.EVENT_WRITE, None)


def _check_arrival(state, data: bytes) -> None:
    """The echo server's check of the words that arrived (see _stream): the first that is
    not where it belongs is reported once per connection."""
    import numpy
    state[2] += data
    whole = len(state[2]) // 8 * 8
    if state[3] >= 0 and whole:
        words = numpy.frombuffer(bytes(state[2][:whole]), dtype=">u8")
        indexes = words & numpy.uint64((1 << 40) - 1)
        expected = numpy.arange(state[3], state[3] + len(words), dtype=numpy.uint64)
        wrong = numpy.nonzero(indexes != expected)[0]
        if len(wrong):
            k = int(wrong[0])
            print(f"server: stream {int(words[k]) >> 40} word {state[3] + k} (offset "
                  f"{(state[3] + k) * 8}) holds word {int(indexes[k])}", flush=True)
            state[3] = -(1 << 60)
        else:
            state[3] += len(words)
    del state[2][:whole]


def _stream(seed: int, size: int) -> bytes:
    """Each 8-byte word says whose stream it is and where it belongs: (seed << 40) | index,
    so the echo server can check what arrives as well as the client what comes back."""
    import numpy
    words = numpy.arange(size // 8, dtype=numpy.uint64) | numpy.uint64(seed << 40)
    return words.astype(">u8").tobytes()          # big-endian, as the server reads them


async def _client(port, seed: int, size: int, results: dict) -> None:
    data = _stream(seed, size)
    try:
        if callable(port):                           # a kernel MPTCP socket, no proxy
            reader, writer = await port()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        results["failed"] += 1
        results.setdefault("errors", {}).setdefault(str(exc), 0)
        results["errors"][str(exc)] += 1
        return

    async def send():
        for i in range(0, size, 1 << 16):
            writer.write(data[i:i + (1 << 16)])
            await writer.drain()
        writer.write_eof()

    if DELAY:
        await asyncio.sleep(DELAY)
    sender = asyncio.create_task(send())
    got = bytearray()
    try:
        while chunk := await reader.read(1 << 16):
            got += chunk
        await sender
    except (OSError, ConnectionError) as exc:
        results["failed"] += 1
        results.setdefault("errors", {}).setdefault(type(exc).__name__, 0)
        results["errors"][type(exc).__name__] += 1
        sender.cancel()
        writer.close()
        return
    writer.close()
    if bytes(got) == data:
        results["exact"] += 1
    elif data.startswith(bytes(got)):
        results["short"] += 1
    else:
        results["corrupt"] += 1
        first = next(i for i in range(min(len(got), size)) if got[i] != data[i]) \
            if len(got) and got[:size] != data[:len(got)] else len(got)
        got_bytes = bytes(got)
        logged = getattr(writer, "logged", None)
        if logged is not None:
            print(f"  corrupt at {first}: {logged.getsockname()} sends {logged.log[:12]}",
                  flush=True)
        results.setdefault("corrupt_at", []).append(
            (first, len(got), data.find(got_bytes[first:first + 64]),
             got_bytes.find(data[first:first + 64]), _mismatch_end(got_bytes, data, first)))


def _mismatch_end(got: bytes, data: bytes, first: int) -> int:
    """Where the received stream agrees with the sent one again after ``first``."""
    i = first
    while i < min(len(got), len(data)) and got[i] != data[i]:
        i += 1
    while i < min(len(got), len(data)) and got[i:i + 1024] != data[i:i + 1024]:
        i += 1024
    return i


async def _clients(port: int, n: int, size: int, seed: int) -> dict:
    """``n`` echoes at once; with the seconds by which half, 99 % and all of them ended."""
    results = {"exact": 0, "short": 0, "corrupt": 0, "failed": 0}
    loop = asyncio.get_running_loop()
    start = loop.time()
    ended = []

    async def timed(i):
        await _client(port, seed + i, size, results)
        ended.append(loop.time() - start)

    await asyncio.gather(*(timed(i) for i in range(n)))
    ended.sort()
    results["ended_s"] = [round(ended[int(q * (n - 1))], 2) for q in (0.5, 0.99, 1.0)]
    return results


async def _churn(port: int, total: int, parallel: int, size: int, seed: int) -> dict:
    """``total`` short echoes of ``size`` bytes, ``parallel`` at a time: each a new
    connection through the proxy, which opens a new MPTCP connection for it."""
    results = {"exact": 0, "short": 0, "corrupt": 0, "failed": 0}
    numbers = iter(range(total))

    async def worker():
        for i in numbers:
            await _client(port, seed + i, size, results)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return results


async def _slow_client(port: int, seed: int, size: int, rate: int, stop: asyncio.Event,
                       results: dict) -> None:
    """A client that sends ``size`` bytes at once and reads the echo at ``rate`` bytes/s
    until ``stop``; then it checks what it read is the start of what it sent and resets.
    Its stream is made and checked a piece at a time (a hundred of them would otherwise
    hold gigabytes on the machine that measures the proxy)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        results["slow_failed"] += 1
        return

    async def send():
        with contextlib.suppress(ConnectionError):
            for i in range(0, size, 1 << 16):
                writer.write(_piece(seed, i, min(1 << 16, size - i)))
                await writer.drain()

    loop = asyncio.get_running_loop()
    sender = asyncio.create_task(send())
    got = 0
    exact = True
    start = loop.time()
    try:
        while not stop.is_set() and got < size:
            allowed = int((loop.time() - start) * rate) - got
            if allowed > 0:
                chunk = await reader.readexactly(min(allowed, 4096) // 8 * 8 or 8)
                exact = exact and chunk == _piece(seed, got, len(chunk))
                got += len(chunk)
            else:
                await asyncio.sleep(0.05)
    except (ConnectionError, asyncio.IncompleteReadError):
        results["slow_failed"] += 1
        return
    finally:
        sender.cancel()
        writer.transport.abort()                     # a reset, as a client that gives up
    results["slow_read"] += got
    results["slow_prefix" if exact else "slow_corrupt"] += 1


def _piece(seed: int, offset: int, length: int) -> bytes:
    """``length`` bytes of ``_stream(seed, ...)`` from ``offset`` (both multiples of 8)."""
    import numpy
    words = numpy.arange(offset // 8, (offset + length) // 8, dtype=numpy.uint64)
    return (words | numpy.uint64(seed << 40)).astype(">u8").tobytes()


async def _slow_readers(port: int, fast: int, size: int, slow: int, slow_size: int,
                        rate: int, fill: float, proxy_pid: int, packets=None,
                        socket_memory=None) -> dict:
    """``slow`` readers at ``rate`` bytes/s fill the proxy for ``fill`` seconds, then
    ``fast`` clients echo ``size`` bytes each beside them; the proxy's RSS is sampled, and
    ``packets()`` (the TUN device's counts, for the userspace engine) read at each step;
    ``socket_memory()`` (the kernel engine's socket buffers, which its RSS does not show)
    is sampled with the RSS."""
    results = {"slow_prefix": 0, "slow_corrupt": 0, "slow_failed": 0, "slow_read": 0}
    stop = asyncio.Event()
    slow_tasks = [asyncio.create_task(_slow_client(port, 9000 + i, slow_size, rate, stop,
                                                   results)) for i in range(slow)]
    peak = sockets_peak = 0

    async def sample():
        nonlocal peak, sockets_peak
        while True:
            peak = max(peak, _rss_kib(proxy_pid, "VmRSS:") // 1024)
            if socket_memory is not None:
                sockets_peak = max(sockets_peak, await asyncio.to_thread(socket_memory))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    before = packets() if packets else None
    await asyncio.sleep(fill)
    filled = packets() if packets else None
    start = time.monotonic()
    results.update(await _clients(port, fast, size, 0))
    results["fast_seconds"] = round(time.monotonic() - start, 2)
    if packets:
        after = packets()
        results["packets_fill"] = [b - a for a, b in zip(before, filled)]
        results["packets_beside"] = [b - a for a, b in zip(filled, after)]
    stop.set()
    await asyncio.gather(*slow_tasks)
    sampler.cancel()
    results["rss_during_mib"] = peak
    if socket_memory is not None:
        results["kernel_sockets_mib"] = sockets_peak
    return results


class _LoggedSocket(socket.socket):
    """A socket whose send() calls are logged: (bytes offered, result, stream offset)."""
    def send(self, data, *flags):
        offset = self.sent_total
        try:
            result = super().send(data, *flags)
        except BlockingIOError:
            self.log.append((len(data), "EAGAIN", offset))
            raise
        self.log.append((len(data), result, offset))
        self.sent_total += result
        return result


def _direct(bed, host: str, port: int):
    """An opener of kernel MPTCP connections from the proxy's namespace to the server."""
    async def open_():
        with bed.b.entered():
            sock = _LoggedSocket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        sock.log, sock.sent_total = [], 0
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        sock.connect_ex((host, port))               # EINPROGRESS: wait until writable
        ready = loop.create_future()
        loop.add_writer(sock.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_writer(sock.fileno())
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            sock.close()
            raise OSError(error, os.strerror(error))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        writer.logged = sock
        return reader, writer
    return open_


def _blocking_clients(bed, host, port, n, size, seed) -> dict:
    """Each client a blocking kernel MPTCP socket in threads (one sends, one reads)."""
    import threading
    results = {"exact": 0, "short": 0, "corrupt": 0, "failed": 0}
    lock = threading.Lock()

    def client(i):
        data = _stream(seed + i, size)
        with bed.b.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        try:
            sock.connect((host, port))

            def send():
                for j in range(0, size, 1 << 16):
                    sock.sendall(data[j:j + (1 << 16)])
                sock.shutdown(socket.SHUT_WR)
            sender = threading.Thread(target=send)
            sender.start()
            got = bytearray()
            while chunk := sock.recv(1 << 16):
                got += chunk
            sender.join()
        except OSError:
            with lock:
                results["failed"] += 1
            return
        finally:
            sock.close()
        with lock:
            if bytes(got) == data:
                results["exact"] += 1
            else:
                results["corrupt"] += 1
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _selector_clients(bed, host, port, n, size, seed) -> dict:
    """Non-blocking kernel MPTCP sockets on one selectors loop; each send()'s offset and
    result is logged, and printed around the first wrong byte of a corrupt echo."""
    results = {"exact": 0, "short": 0, "corrupt": 0, "failed": 0}
    sel = selectors.DefaultSelector()
    conns = {}
    for i in range(n):
        with bed.b.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        sock.setblocking(False)
        sock.connect_ex((host, port))
        data = _stream(seed + i, size)
        conns[sock] = {"data": data, "sent": 0, "got": bytearray(), "log": [], "eof": False,
                       "shut": False}
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    open_ = n
    while open_:
        for key, events in sel.select(timeout=1):
            sock, c = key.fileobj, conns[key.fileobj]
            if events & selectors.EVENT_WRITE and not c["shut"]:
                pos = c["sent"]
                try:
                    r = sock.send(memoryview(c["data"])[pos:pos + (1 << 16)])
                    c["log"].append((pos, r))
                    c["sent"] += r
                except BlockingIOError:
                    c["log"].append((pos, "EAGAIN"))
                except OSError as exc:
                    c["log"].append((pos, str(exc)))
                if c["sent"] >= size:
                    sock.shutdown(socket.SHUT_WR)
                    c["shut"] = True
                    sel.modify(sock, selectors.EVENT_READ)
            if events & selectors.EVENT_READ:
                try:
                    chunk = sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    c["got"] += chunk
                    continue
                sel.unregister(sock)
                sock.close()
                open_ -= 1
                got, data = bytes(c["got"]), c["data"]
                if got == data:
                    results["exact"] += 1
                    continue
                results["corrupt"] += 1
                first = next((k for k in range(min(len(got), len(data))) if got[k] != data[k]),
                             min(len(got), len(data)))
                around = [e for e in c["log"] if first - (1 << 17) <= e[0] <= first + (1 << 17)]
                print(f"  corrupt: first wrong byte {first}, got {len(got)}; sends near: "
                      f"{around[:40]}", flush=True)
    return results


def _userspace_paths(bed) -> list:
    """The userspace engine's TUN device in the proxy's namespace, one engine address per
    path (198.18.8.2, 198.18.10.2, ...), forwarded by that namespace to the server's, which
    routes each back over its own veth: the proxy's options for them."""
    options = []
    bed.b.sysctl("net.ipv4.ip_forward", 1)
    for i, via in enumerate(bed.b_addresses):
        network = f"198.18.{8 + 2 * i}"
        bed.a.ip("route", "add", f"{network}.0/24", "via", via)
        options += ["--address", f"{network}.2", "--tun-address", f"{network}.1/24"]
    return options


def _tun_counters(bed) -> str:
    """The TUN device's packet counters in the proxy's namespace (RX: from the engine)."""
    import json
    out = []
    for link in json.loads(bed.b.ip("-s", "-j", "link", "show")):
        if link["ifname"].startswith("mft"):
            rx, tx = link["stats64"]["rx"], link["stats64"]["tx"]
            out.append(f"{link['ifname']} to engine {tx['packets']} pkts, {tx['dropped']} dropped"
                       f"; from engine {rx['packets']} pkts, {rx['dropped']} dropped")
    return "; ".join(out)


def _tun_packets(bed) -> tuple[int, int]:
    """Packets the TUN devices carried so far: (to the engine, from the engine)."""
    to = frm = 0
    for link in json.loads(bed.b.ip("-s", "-j", "link", "show")):
        if link["ifname"].startswith("mft"):
            to += link["stats64"]["tx"]["packets"]
            frm += link["stats64"]["rx"]["packets"]
    return to, frm


def _socket_mib(bed) -> int:
    """MiB the kernel holds in the buffers of the sockets in the proxy's namespace (the
    kernel engine's MPTCP sockets and their subflows: ss's skmem r + w)."""
    total = 0
    for line in bed.b.run("ss", "-tMmH").splitlines():
        start = line.find("skmem:(")
        if start < 0:
            continue
        for field in line[start + 7:line.index(")", start)].split(","):
            if field[:1] in ("r", "w") and field[1:].isdigit():
                total += int(field[1:])
    return total >> 20


def _server_states(bed) -> dict:
    """The server namespace's TCP sockets (subflows included) by state, listeners left out."""
    import collections
    states = collections.Counter(line.split()[0] for line in
                                 bed.a.run("ss", "-tanH").splitlines() if line.strip())
    states.pop("LISTEN", None)
    return dict(states)


def _server_counters(bed) -> str:
    """The server namespace's retransmissions, timeouts and MP_JOINs (received, completed,
    refused for want of a connection) so far."""
    text = bed.a.run("nstat", "-az", "TcpRetransSegs", "TcpExtTCPTimeouts",
                     "TcpExtListenOverflows", "MPTcpExtMPJoinSynRx", "MPTcpExtMPJoinAckRx",
                     "MPTcpExtMPJoinNoTokenFound")
    return ", ".join(" ".join(line.split()[:2]) for line in text.splitlines()
                     if line and not line.startswith("#"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (the clients) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _idle_seconds() -> float:
    """Seconds the machine's CPUs have been idle so far (all of them together)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int, field: str = "VmHWM:") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _size(text: str) -> int:
    """256K, 16M or a number of bytes."""
    scale = {"k": 1024, "m": 1 << 20}.get(text[-1].lower(), 1)
    return int(text.rstrip("KkMm")) * scale


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo-server", nargs=2, metavar=("HOST", "PORT"))
    parser.add_argument("--engine", choices=("kernel", "userspace"), default="kernel")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size", default="256K")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--blocking", action="store_true",
                        help="with --direct: blocking sockets in threads, not asyncio")
    parser.add_argument("--selectors", action="store_true",
                        help="with --direct: non-blocking sockets on a selectors loop, every "
                             "send() logged")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds each asyncio client waits after connecting")
    parser.add_argument("--close-after", type=int, default=0, metavar="BYTES",
                        help="the server closes each connection once BYTES arrived")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per round (counts, seconds, RSS in MiB)")
    parser.add_argument("--paths", type=int, default=2, choices=(1, 2),
                        help="subflows per connection (kernel engine: 1 leaves out the "
                             "'subflow' endpoint)")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="wait after each round, then report the proxy's RSS")
    parser.add_argument("--server-cc", metavar="NAME", default="",
                        help="the echo server's TCP congestion control (TCP_CONGESTION; "
                             "default: the machine's, net.ipv4.tcp_congestion_control)")
    parser.add_argument("--checksum", action="store_true",
                        help="DSS checksums on both namespaces (net.mptcp.checksum_enabled)")
    parser.add_argument("--capture", metavar="FILE",
                        help="write a pcap of the proxy's namespace's MPTCP side (tcpdump -s 0)")
    parser.add_argument("--churn", type=int, default=0, metavar="N",
                        help="N short echoes (--size each), --parallel at a time, each on a "
                             "new connection")
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--slow", type=int, default=0, metavar="N",
                        help="N slow readers beside the clients: the clients run alone, then "
                             "again while the slow readers hold their connections")
    parser.add_argument("--slow-rate", type=int, default=10_000, metavar="BYTES_PER_S")
    parser.add_argument("--slow-size", default="16M", help="bytes each slow reader sends")
    parser.add_argument("--slow-fill", type=float, default=5.0, metavar="SECONDS",
                        help="how long the slow readers run before the clients start")
    parser.add_argument("--direct", action="store_true",
                        help="no proxy: the clients' own kernel MPTCP sockets to the server")
    args = parser.parse_args()
    global DELAY
    DELAY = args.delay
    if args.echo_server:
        echo_server(args.echo_server[0], int(args.echo_server[1]), args.close_after,
                    args.server_cc)
        return
    size = _size(args.size)
    from mptcp_fast.testing.testbed import VethBed
    with VethBed("mfl", paths=2) as bed:
        if args.paths == 2:
            bed.endpoint("b", 1, "subflow")
        for ns in (bed.a, bed.b):
            ns.sysctl("net.core.somaxconn", 8192)
            ns.sysctl("net.ipv4.tcp_max_syn_backlog", 8192)
            if args.checksum:
                ns.sysctl("net.mptcp.checksum_enabled", 1)
        server = bed.a.popen([sys.executable, os.path.abspath(__file__), "--echo-server",
                              bed.a_addresses[0], "5000", "--close-after",
                              str(args.close_after), "--server-cc", args.server_cc],
                             stdout=subprocess.PIPE, text=True)
        server.stdout.readline()
        command = [sys.executable, "-m", "mptcp_fast", "proxy", "--engine", args.engine,
                   "--listen", f"127.0.0.1:{args.port}", "--to", f"{bed.a_addresses[0]}:5000"]
        if args.engine == "kernel":
            command += ["--netns", bed.b.name, "--address", bed.b_addresses[0]]
        else:
            command += ["--netns", bed.b.name] + _userspace_paths(bed)
        if args.uvloop:
            command.append("--uvloop")
        proxy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        proxy.stdout.readline()
        # the proxy prints a line per finished connection: keep reading them, or a full pipe
        # would stop it
        threading.Thread(target=proxy.stdout.read, daemon=True).start()
        rss_start = _rss_kib(proxy.pid, "VmRSS:") // 1024
        capture = None
        if args.capture:
            capture = bed.b.popen(["tcpdump", "-i", "any", "-s", "200", "-B", "1048576", "-U",
                                   "-w", args.capture, "tcp"], stderr=subprocess.PIPE)
            time.sleep(1.0)
        try:
            for round_ in range(args.rounds):
                start = time.monotonic()
                cpu_start = _cpu_seconds(proxy.pid)
                server_cpu_start, own_cpu_start = _cpu_seconds(server.pid), _own_cpu_seconds()
                idle_start = _idle_seconds()
                target = args.port
                if args.direct and args.selectors:
                    results = _selector_clients(bed, bed.a_addresses[0], 5000, args.clients,
                                                size, 1000 * round_)
                elif args.direct and args.blocking:
                    results = _blocking_clients(bed, bed.a_addresses[0], 5000, args.clients,
                                                size, 1000 * round_)
                elif args.churn:
                    results = asyncio.run(_churn(target, args.churn, args.parallel, size,
                                                 1000 * round_))
                elif args.slow:
                    counted = _tun_packets(bed) if args.engine == "userspace" else (0, 0)
                    alone = asyncio.run(_clients(target, args.clients, size, 1000 * round_))
                    alone["seconds"] = round(time.monotonic() - start, 2)
                    if args.engine == "userspace":
                        alone["packets"] = [b - a for a, b in zip(counted, _tun_packets(bed))]
                    results = asyncio.run(_slow_readers(
                        target, args.clients, size, args.slow, _size(args.slow_size),
                        args.slow_rate, args.slow_fill, proxy.pid,
                        (lambda: _tun_packets(bed)) if args.engine == "userspace" else None,
                        (lambda: _socket_mib(bed)) if args.engine == "kernel" else None))
                    results["alone"] = alone
                else:
                    if args.direct:
                        target = _direct(bed, bed.a_addresses[0], 5000)
                    results = asyncio.run(_clients(target, args.clients, size, 1000 * round_))
                took = time.monotonic() - start
                cpu = _cpu_seconds(proxy.pid) - cpu_start
                if not args.slow:
                    echoed = (args.churn or args.clients) * size
                    results["goodput_mbit"] = round(2 * echoed * 8 / took / 1e6)
                    results["connections_per_s"] = round((args.churn or args.clients) / took)
                results["proxy_cpu_s"] = round(cpu, 1)
                results["server_cpu_s"] = round(_cpu_seconds(server.pid) - server_cpu_start, 1)
                results["clients_cpu_s"] = round(_own_cpu_seconds() - own_cpu_start, 1)
                results["idle_cpu_s"] = round(_idle_seconds() - idle_start, 1)
                if args.engine == "userspace" and not args.direct:
                    print("  " + _tun_counters(bed) + "; server " + _server_counters(bed),
                          flush=True)
                print(f"round {round_}: {args.clients} clients x {size} bytes, {args.engine}: "
                      f"{results} in {took:.1f} s, proxy peak RSS "
                      f"{_rss_kib(proxy.pid) // 1024} MiB", flush=True)
                rss_after = states = None
                if args.settle:
                    time.sleep(args.settle)
                    rss_after = _rss_kib(proxy.pid, "VmRSS:") // 1024
                    states = _server_states(bed)
                    print(f"  after {args.settle:g} s: proxy RSS {rss_after} MiB, server "
                          f"sockets {states or 'none'}", flush=True)
                if args.json:
                    print(json.dumps({"round": round_, **results, "seconds": round(took, 2),
                                      "rss_start_mib": rss_start, "rss_after_mib": rss_after,
                                      "server_sockets_after": states,
                                      "peak_rss_mib": _rss_kib(proxy.pid) // 1024}), flush=True)
        finally:
            if capture is not None:
                time.sleep(0.5)
                capture.terminate()
                print(capture.communicate(timeout=30)[1].decode().strip())
            proxy.terminate()
            server.terminate()
            _, err = proxy.communicate(timeout=10)
            seen, _ = server.communicate(timeout=10)
            for line in seen.strip().splitlines()[:10]:
                print(line)
            lines = err.strip().splitlines()
            if lines:
                print(f"proxy stderr: {len(lines)} lines, e.g. {lines[:3]}")
                if any("Traceback" in line or "Unhandled" in line for line in lines):
                    print("proxy stderr has a traceback")


if __name__ == "__main__":
    main()

"""The proxy under load, as an operator runs it (root): ``mptcp-fast proxy`` (tcp-to-mptcp) on
127.0.0.1 in front of a kernel MPTCP echo server in a namespace, N plain TCP clients at once,
each sending SIZE bytes of its own seeded stream and reading the echo back.

    python bench/load_proxy.py --engine kernel --clients 1000 --size 256K

Topology: a VethBed (two namespaces over two veth pairs): the echo server in ``mfl-a``
(198.18.0.1), the proxy's MPTCP sockets in ``mfl-b`` (198.18.0.2 and a "subflow" endpoint on
198.18.2.2, so each connection has two subflows); the proxy's TCP listener and the clients in
this namespace. The echo server is a plain selectors loop (``--echo-server``), independent of
the project's code. Prints exact / short / corrupt / failed counts, the time and the proxy's
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import socket
import subprocess
import sys
import time

IPPROTO_MPTCP = 262


def echo_server(host: str, port: int) -> None:
    """A kernel MPTCP echo server: what arrives goes back, half-closes follow."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
                pending[conn] = [bytearray(), False, bytearray(), 0]
                sel.register(conn, selectors.EVENT_READ, None)
                continue
            state = pending[sock]
            if events & selectors.EVENT_READ:
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
            want = selectors.EVENT_READ if not state[1] else 0
            if state[0]:
                want |= selectors.EVENT_WRITE
            sel.modify(sock, want or selectors.EVENT_WRITE, None)


def _check_arrival(state, data: bytes) -> None:
    """The echo server's check of the words that arrived (see _stream): the first that is
    not where it belongs is reported once per connection."""
    state[2] += data
    whole = len(state[2]) // 8 * 8
    for i in range(0, whole, 8):
        word = int.from_bytes(state[2][i:i + 8], "big")
        index = state[3] + i // 8
        if state[3] >= 0 and (word & ((1 << 40) - 1)) != index:
            print(f"server: stream {word >> 40} word {index} (offset {index * 8}) holds "
                  f"word {word & ((1 << 40) - 1)}", flush=True)
            state[3] = -(1 << 60)
            break
    if state[3] >= 0:
        state[3] += whole // 8
    del state[2][:whole]


def _stream(seed: int, size: int) -> bytes:
    """Each 8-byte word says whose stream it is and where it belongs: (seed << 40) | index,
    so the echo server can check what arrives as well as the client what comes back."""
    return b"".join(((seed << 40) | i).to_bytes(8, "big") for i in range(size // 8))


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
    results = {"exact": 0, "short": 0, "corrupt": 0, "failed": 0}
    await asyncio.gather(*(_client(port, seed + i, size, results) for i in range(n)))
    return results


def _direct(bed, host: str, port: int):
    """An opener of kernel MPTCP connections from the proxy's namespace to the server."""
    async def open_():
        with bed.b.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
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
        return await asyncio.open_connection(sock=sock, limit=1 << 20)
    return open_


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo-server", nargs=2, metavar=("HOST", "PORT"))
    parser.add_argument("--engine", choices=("kernel", "userspace"), default="kernel")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size", default="256K")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--direct", action="store_true",
                        help="no proxy: the clients' own kernel MPTCP sockets to the server")
    args = parser.parse_args()
    if args.echo_server:
        echo_server(args.echo_server[0], int(args.echo_server[1]))
        return
    size = int(args.size.rstrip("KkMm")) * (1024 if args.size[-1] in "Kk" else
                                             1 << 20 if args.size[-1] in "Mm" else 1)
    from mptcp_fast.testbed import VethBed
    with VethBed("mfl", paths=2) as bed:
        bed.endpoint("b", 1, "subflow")
        for ns in (bed.a, bed.b):
            ns.sysctl("net.core.somaxconn", 8192)
            ns.sysctl("net.ipv4.tcp_max_syn_backlog", 8192)
        server = bed.a.popen([sys.executable, os.path.abspath(__file__), "--echo-server",
                              bed.a_addresses[0], "5000"], stdout=subprocess.PIPE, text=True)
        server.stdout.readline()
        command = [sys.executable, "-m", "mptcp_fast", "proxy", "--engine", args.engine,
                   "--listen", f"127.0.0.1:{args.port}", "--to", f"{bed.a_addresses[0]}:5000"]
        if args.engine == "kernel":
            command += ["--netns", bed.b.name, "--address", bed.b_addresses[0]]
        if args.uvloop:
            command.append("--uvloop")
        proxy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        proxy.stdout.readline()
        try:
            for round_ in range(args.rounds):
                start = time.monotonic()
                target = args.port
                if args.direct:
                    target = _direct(bed, bed.a_addresses[0], 5000)
                results = asyncio.run(_clients(target, args.clients, size, 1000 * round_))
                took = time.monotonic() - start
                print(f"round {round_}: {args.clients} clients x {size} bytes, {args.engine}: "
                      f"{results} in {took:.1f} s, proxy peak RSS "
                      f"{_rss_kib(proxy.pid) // 1024} MiB", flush=True)
        finally:
            proxy.terminate()
            server.terminate()
            _, err = proxy.communicate(timeout=10)
            seen, _ = server.communicate(timeout=10)
            for line in seen.strip().splitlines()[:10]:
                print(line)
            lines = err.strip().splitlines()
            if lines:
                print(f"proxy stderr: {len(lines)} lines, e.g. {lines[:3]}")


if __name__ == "__main__":
    main()

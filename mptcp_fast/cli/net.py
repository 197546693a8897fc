"""``mptcp-fast serve``, ``connect`` and ``proxy``: the engine on a TUN device, or
the kernel's MPTCP sockets, behind one command line each.

    # the userspace engine: a TUN device, the kernel's side of it, the engine's addresses
    mptcp-fast serve --tun mft0 --tun-address 198.18.0.1/24 --address 198.18.0.2 --mode echo
    mptcp-fast connect 198.18.0.1 5000 --tun mft0 --tun-address 198.18.0.1/24 \\
        --address 198.18.0.2 --bytes 100M
    # the same with Linux MPTCP sockets (IPPROTO_MPTCP)
    mptcp-fast serve --engine kernel --address 0.0.0.0 --mode sink
    # plain TCP on a local port carried over MPTCP, and back
    mptcp-fast proxy --listen 127.0.0.1:8080 --to 198.18.0.1:5000 --engine userspace ...
    mptcp-fast proxy --direction mptcp-to-tcp --listen 0.0.0.0:5000 --to 127.0.0.1:80 \\
        --engine kernel

Every command reports what it moved (bytes, SHA-256, subflows, throughput); ``--json`` makes
that one JSON object per connection. ``--netns NAME`` puts the kernel's side in a network
namespace: the TUN device is moved there, kernel sockets are made there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import hashlib
import json
import os
import socket
import struct
import sys
import time
from typing import Any

from ..net import kernel
from ..net.workers import kernel_side
from ..engine import Config
from ..sim.apps import pattern
from ..errors import MptcpError
from . import HelpFormatter, size_bar

__all__ = ["add_parsers"]

CHUNK = 1 << 18


# ====================================================================== the two engines
class _Engine:
    """What serve/connect/proxy need of an engine: open and accept streams."""

    def __init__(self, args):
        self.args = args
        self.stack = None
        self.device = None

    async def start(self) -> None:
        args = self.args
        if args.engine != "userspace":
            return
        from ..net import aio
        from ..net.tun import TunDevice
        if not args.address:
            raise SystemExit("mptcp-fast: the userspace engine needs --address (its own "
                             "addresses behind the TUN device)")
        if args.persist_tun and "%" in args.tun:
            raise MptcpError("--persist-tun needs a fixed device name (--tun NAME), not the "
                             f"template {args.tun!r}")
        # a persistent device is made (or found again) where it lives: in --netns if given;
        # so is a worker's, whose template name (mft%d) is then numbered among the devices
        # there, not here, where the workers' devices made and moved away would look free
        here = args.persist_tun or getattr(args, "worker_plan", None) is not None
        self.device = TunDevice(args.tun, offload=not args.no_offload, mtu=args.mtu,
                                persist=args.persist_tun,
                                netns=args.netns if here else None)
        sides = args.tun_address or [kernel_side(a) for a in args.address]
        self.device.configure(sides, args.route or (), netns=args.netns)
        self.device.check_routed(args.address, netns=args.netns)
        # --fastopen (proxy --convert): TCP Fast Open both ways (engine/fastopen.py)
        key = getattr(args, "fastopen_secret", None)    # --fastopen-key, or the workers' own
        config = Config(offload=not args.no_offload, checksums=args.checksums,
                        scheduler=args.scheduler, congestion_control=args.cc,
                        fastopen=bool(getattr(args, "fastopen", False)),
                        **({"fastopen_key": key} if key is not None else {}))
        plan = getattr(args, "worker_plan", None)
        if plan is not None:
            # a balanced worker (net/workers.py): flag C in its SYN/ACKs and its own address
            # announced (RFC 8684 §3.1, §3.4.1), so that its joins come to it; its cookies
            # are good at the other workers
            from ..net.workers import balanced_cookies, worker_config
            config = worker_config(config, plan)
        self.stack = aio.Stack(args.address, self.device, config)
        if plan is not None:
            balanced_cookies(self.stack, plan)

    async def open(self, host: str, port: int, data: bytes | None = None):
        """(reader, writer) of a new MPTCP connection, ``data`` sent first: in its SYN on the
        userspace engine with --fastopen, once it holds the server's TFO cookie."""
        if self.stack is not None:
            return await self.stack.open_connection(host, port, data=data)
        sock = self._kernel_socket(_family(host))
        if self.args.address:
            sock.bind((self.args.address[0], 0))
        try:      # in a thread: asyncio's sock_connect resolves with the socket's protocol,
            await asyncio.get_running_loop().run_in_executor(   # which getaddrinfo refuses
                None, sock.connect, (host, port))
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        # asyncio's default reader limit: the kernel's socket buffers hold the rest
        reader, writer = await asyncio.open_connection(sock=sock)
        if data:
            writer.write(data)
        return reader, writer

    async def serve(self, handler, host: str, port: int):
        if self.stack is not None:
            return await self.stack.start_server(handler, port)
        sock = self._kernel_socket(_family(host))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise MptcpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        # asyncio listens again on a given socket, with its own default of 100 unless told
        return await asyncio.start_server(handler, sock=sock,
                                          backlog=_backlog(self.args))

    def _kernel_socket(self, family: int) -> socket.socket:
        netns = self.args.netns
        if netns is None:
            return kernel.mptcp_socket(family)
        from ..net.netns import Namespace
        with Namespace(netns).entered():
            return kernel.mptcp_socket(family)

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        if self.device is not None:
            if not self.device.persist:
                self._warn_about_endpoints()
            self.device.close()

    def _warn_about_endpoints(self) -> None:
        """The kernel's MPTCP endpoints bound to the device stop working when it goes away,
        and stay dead when a later run makes a device of the same name (a new interface
        index): say so once, with the way out."""
        from ..net.tun import kernel_endpoints_on
        endpoints = kernel_endpoints_on(self.device.name, self.args.netns)
        if endpoints:
            print(f"mptcp-fast {self.args.command}: warning: the kernel's MPTCP endpoint(s) "
                  f"{', '.join(endpoints)} on {self.device.name} stop working as the device "
                  f"goes away, also for a later run's {self.device.name}; --persist-tun "
                  f"keeps the device (ip link del {self.device.name} removes it)",
                  file=sys.stderr, flush=True)


def system_backlog() -> int:
    """The kernel's limit on a listener's accept queue (net.core.somaxconn), which listen()
    silently caps any larger backlog to; socket.SOMAXCONN when it cannot be read."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(1, int(f.read()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


def _backlog(args) -> int:
    """--backlog, else the system's limit: asyncio's default of 100 overflows at a few
    hundred clients at once (the kernel then answers with SYN cookies and resets some)."""
    return args.backlog or system_backlog()


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _subflows(writer) -> list:
    """The subflows of a connection as [[local, remote], ...] (text addresses and ports)."""
    found = writer.get_extra_info("subflows")
    if found is None:                                 # a kernel socket
        sock = writer.get_extra_info("socket")
        try:
            raw = socket.socket(fileno=os.dup(sock.fileno()))
            try:
                found = kernel.subflow_addresses(raw)
            finally:
                raw.close()
        except (OSError, kernel.KernelMptcpError, AttributeError):
            found = []
    return [[f"{l[0]}:{l[1]}", f"{r[0]}:{r[1]}"] for l, r in found]


class _SubflowWatch:
    """The most subflows a connection had, sampled while data moves (at most every 50 ms):
    by the end the kernel may have closed them already. ``first_after``: seconds before the
    first look (the proxy's 50 ms: a short connection is looked at once, as it ends, by
    ``sample(force=True)``, not also at its first bytes)."""

    def __init__(self, writer, first_after: float = 0.0):
        self.writer = writer
        self.best: list = []
        self._next = time.monotonic() + first_after if first_after else 0.0

    def sample(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + 0.05
            found = _subflows(self.writer)
            if force:                   # the engine remembers the subflows already closed
                ever = self.writer.get_extra_info("subflows_ever")
                if ever and len(ever) > len(found):
                    found = [[f"{l[0]}:{l[1]}", f"{r[0]}:{r[1]}"] for l, r in ever]
            if len(found) > len(self.best):
                self.best = found


# ====================================================================== reporting
class _Report:
    def __init__(self, args, label: str, total: int | None):
        self.args = args
        self.label = label
        self.start = time.monotonic()
        self.sent = self.received = 0
        self.sent_hash = hashlib.sha256()
        self.received_hash = hashlib.sha256()
        self.bar = None
        if not args.json and sys.stderr.isatty() and total:
            self.bar = size_bar(total, label)

    def moved(self, sent: bytes = b"", received: bytes = b"") -> None:
        if sent:
            self.sent += len(sent)
            self.sent_hash.update(sent)
        if received:
            self.received += len(received)
            self.received_hash.update(received)
        if self.bar is not None:
            self.bar.update(len(sent) + len(received))

    def finish(self, subflows, error: str | None = None) -> dict:
        if self.bar is not None:
            self.bar.close()
        seconds = max(time.monotonic() - self.start, 1e-9)
        result = {"event": "connection", "connection": self.label, "sent": self.sent,
                  "sent_sha256": self.sent_hash.hexdigest(), "received": self.received,
                  "received_sha256": self.received_hash.hexdigest(), "seconds": seconds,
                  "goodput_bps": (self.sent + self.received) * 8 / seconds,
                  "subflows": subflows, "engine": self.args.engine}
        if getattr(self.args, "worker", None) is not None:
            result["worker"] = self.args.worker
        if error:
            result["error"] = error
        if self.args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{self.label}: sent {self.sent:,} B (sha256 {result['sent_sha256'][:16]}...), "
                  f"received {self.received:,} B (sha256 {result['received_sha256'][:16]}...) "
                  f"in {seconds:.2f} s, {result['goodput_bps'] / 1e6:,.1f} Mbit/s, "
                  f"{len(subflows)} subflow(s)" + (f", error: {error}" if error else ""),
                  flush=True)
            for local, remote in subflows:
                print(f"  subflow {local} -> {remote}", flush=True)
        return result


async def _send_stream(writer, report: _Report, size: int, source_file=None) -> None:
    if source_file is not None:
        with open(source_file, "rb") as f:
            while chunk := f.read(CHUNK):
                writer.write(chunk)
                report.moved(sent=chunk)
                await writer.drain()
    else:
        block = pattern(0)
        n = len(block) // 2
        view = memoryview(block)
        sent = 0
        while sent < size:
            start = sent % n
            piece = bytes(view[start:start + min(CHUNK, size - sent)])
            writer.write(piece)
            report.moved(sent=piece)
            sent += len(piece)
            await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _receive_all(reader, report: _Report, echo_to=None, watch=None) -> None:
    while data := await reader.read(1 << 20):
        report.moved(received=data)
        if watch is not None:
            watch.sample()
        if echo_to is not None:
            echo_to.write(data)
            report.moved(sent=data)
            await echo_to.drain()


# ====================================================================== the commands
TRIM_EVERY = 10.0           # seconds between two hand-backs of free heap memory


def _trim_heap() -> bool:
    """glibc's malloc_trim(0): give the system back the free pages of the heap. A proxy's
    buffers are many blocks of 1-64 KiB; freed, they stay in glibc's heap (only its top can
    shrink, and the mmap threshold grows past 64 KiB once a big block was freed), so after a
    burst of connections the process would keep its peak size for ever (measured: 283 MiB
    after 200 connections of 1 MiB had ended, 256 MiB of it free). False where there is no
    glibc (musl, macOS): nothing to do there."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


class _Handlers:
    """The connection handlers of a server: each one is referenced here (asyncio's stream
    protocol lets go of it when the client's side is lost, and a handler still waiting was
    then collected: "Task was destroyed but it is pending!"), and on shutdown (Ctrl-C) each
    is cancelled and awaited, its client aborted, and ends quietly (asyncio reports a handler
    task that ends cancelled as an exception, once per connection)."""

    def __init__(self):
        self.tasks = set()
        self._trimmer = asyncio.get_running_loop().create_task(self.give_back_memory())

    def wrap(self, handler):
        async def run(reader, writer):
            task = asyncio.current_task()
            self.tasks.add(task)
            try:
                await handler(reader, writer)
            except asyncio.CancelledError:
                _abort(writer)
            finally:
                self.tasks.discard(task)
        return run

    async def give_back_memory(self, every: float = TRIM_EVERY) -> None:
        """While serving: every ``every`` seconds, collect what ended and hand the heap's
        free pages back to the system. A connection that ended is a cycle of objects (the
        connection, its subflows, their controllers), which only the collector's oldest
        generation frees, and it runs rarely: measured, 200 ended connections of 1 MiB kept
        ~90 MiB for minutes. Connections end by themselves too (TIME_WAIT, timeouts), so this
        does not wait for a handler to end. A full collection of a busy proxy takes a few
        milliseconds, trimming a heap of hundreds of MiB up to ~50 ms."""
        while True:
            await asyncio.sleep(every)
            gc.collect()
            if not _trim_heap():
                return

    async def cancel(self) -> None:
        self._trimmer.cancel()
        pending = list(self.tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _endpoint(address) -> str:
    """host:port, with brackets around an IPv6 host."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _abort(writer) -> None:
    """End a stream at once: MP_FASTCLOSE on the userspace engine, a RST on a kernel socket
    (SO_LINGER with a zero timeout: closing then resets instead of sending a FIN)."""
    with contextlib.suppress(Exception):
        abort = getattr(writer, "abort", None)
        if abort is not None:
            abort()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def _serve(args) -> int:
    engine = _Engine(args)
    await engine.start()
    done = asyncio.Event()
    served = []

    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        report = _Report(args, f"{peer[0]}:{peer[1]}" if peer else "connection", None)
        watch = _SubflowWatch(writer)
        error = None
        try:
            if args.mode == "echo":
                await _receive_all(reader, report, echo_to=writer, watch=watch)
                writer.write_eof()
            elif args.mode == "send":
                await asyncio.gather(_send_stream(writer, report, args.bytes),
                                     _receive_all(reader, report, watch=watch))
            else:
                await _receive_all(reader, report, watch=watch)
            watch.sample(force=True)
            subflows = watch.best
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError) as exc:
            error, subflows = str(exc), watch.best          # the subflows it had until then
        served.append(report.finish(subflows, error))
        if args.count and len(served) >= args.count:
            done.set()

    handlers = _Handlers()
    try:
        host = args.address[0] if args.address else "0.0.0.0"
        server = await engine.serve(handlers.wrap(handle), host, args.port)
        if args.json:
            print(json.dumps({"event": "listening", "command": "serve", "port": args.port,
                              "mode": args.mode, "engine": args.engine}), flush=True)
        else:
            print(f"serving ({args.engine}, {args.mode}) on port {args.port}", flush=True)
        try:
            await done.wait()
        finally:
            server.close()
            await handlers.cancel()
    finally:
        if getattr(args, "worker_plan", None) is not None and engine.stack is not None:
            _report_worker(args, engine.stack.endpoint.stats, len(served),
                           sum(max(len(s["subflows"]) - 1, 0) for s in served))
        engine.close()
    return 0 if all("error" not in s for s in served) else 1


def _serve_mode(args):
    """``serve``'s ``_run`` ``threaded``: the balanced workers (--workers on the userspace
    engine, --worker-address), or None for the one asyncio server."""
    if args.workers < 1:
        raise MptcpError("--workers must be at least 1")
    if args.engine == "kernel" and (args.workers > 1 or args.worker_address):
        raise MptcpError("serve --workers and --worker-address are the userspace engine's "
                         "(proxy --engine kernel --workers shares one port among kernel "
                         "listeners)")
    if args.workers > 1 or args.worker_address:
        from .balanced import check_arguments
        check_arguments(args)
        return lambda args: _balanced(args, _serve)
    return None


async def _connect(args) -> int:
    # the file's size first: a missing file is an error before anything is opened
    size = os.path.getsize(args.send_file) if args.send_file else args.bytes
    engine = _Engine(args)
    await engine.start()
    try:
        try:
            reader, writer = await asyncio.wait_for(engine.open(args.host, args.port),
                                                    args.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            # asyncio's timeout says nothing of itself: say what happened
            reason = str(exc) or f"no answer within {args.timeout:g} s"
            print(f"mptcp-fast connect: {_endpoint((args.host, args.port))}: {reason}",
                  file=sys.stderr)
            return 1
        report = _Report(args, f"{args.host}:{args.port}", size)
        watch = _SubflowWatch(writer)
        await asyncio.gather(_send_stream(writer, report, size, args.send_file),
                             _receive_all(reader, report, watch=watch))
        watch.sample(force=True)
        subflows = watch.best
        writer.close()
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 10)
        report.finish(subflows)
    finally:
        engine.close()
    return 0


async def _pipe(reader, writer, watch: _SubflowWatch) -> int:
    moved = 0
    try:
        while data := await reader.read(1 << 18):
            writer.write(data)
            moved += len(data)
            watch.sample()
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        _abort(writer)              # a reset on one side is a reset on the other (MP_FASTCLOSE)
    return moved


FEED_LIMIT = 1 << 20        # bytes the MPTCP writer may hold not yet taken before the plain
                            # TCP side stops being read (aio.WRITE_LIMIT: what drain() allows)


class _TcpSide(asyncio.Protocol):
    """The proxy's plain TCP connection, without a StreamReader: each chunk asyncio reads
    (a bytes object, up to 256 KiB per ``recv``) is handed to the MPTCP writer as it is,
    which keeps that object rather than a copy. With a StreamReader each chunk was copied
    twice more (into the reader's buffer, out of it) and woke a task per read; reading into
    one reused buffer (BufferedProtocol) made the writer copy every chunk out of it. Reading pauses while the
    MPTCP writer holds more than FEED_LIMIT bytes the connection has not taken (its receive
    window then closes on the client, as with drain()). It is also the writing half (the
    methods of asyncio.StreamWriter that the proxy uses) for the other direction."""

    transport: Any                          # asyncio's socket transport, once connected
    _target: Any                            # the MPTCP writer fed
    _watch: Any

    def __init__(self, started) -> None:
        self._started = started             # called with the side once connected
        self.transport = self._target = self._watch = None
        self._moved = 0
        self._fed: asyncio.Future[int] | None = None   # the bytes moved, once this side ended
        self._paused = False                # writing paused by the transport
        self._writable: asyncio.Future[None] | None = None   # while drain() waits
        self._lost = asyncio.get_running_loop().create_future()
        self._error = None

    # -- asyncio's calls
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()           # until the other side is open (pipe_to)
        self._started(self)

    def data_received(self, data: bytes) -> None:
        target = self._target
        try:
            target.write(data)              # (bytes: the writer keeps them, no copy)
        except (ConnectionError, RuntimeError):
            self._end(reset=True)           # the other side is gone: so is this one
            return
        self._moved += len(data)
        self._watch.sample()
        if target.get_write_buffer_size() > FEED_LIMIT:
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._resume_when_taken(target))

    async def _resume_when_taken(self, target) -> None:
        try:
            await target.drain()
        except (ConnectionError, OSError):
            self._end(reset=True)
            return
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        if self._target is not None and not self._target.is_closing():
            with contextlib.suppress(RuntimeError, ConnectionError):
                self._target.write_eof()
        self._finish()
        return True                         # half-closed: the other direction goes on

    def connection_lost(self, exc) -> None:
        if exc is not None:
            self._error = exc
        if not self._lost.done():
            self._lost.set_result(None)
        if self._fed is not None and not self._fed.done():
            _abort(self._target)            # a reset (or a close) before the end of stream
        self._finish()
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # -- the proxy's calls
    def pipe_to(self, target, watch) -> "asyncio.Future[int]":
        """Feed ``target`` (the MPTCP writer) until this side ends; the future's result is
        the bytes moved."""
        self._target, self._watch = target, watch
        self._fed = asyncio.get_running_loop().create_future()
        if self._lost.done():
            self._finish()
        else:
            self.transport.resume_reading()
        return self._fed

    def _finish(self) -> None:
        if self._fed is not None and not self._fed.done():
            self._fed.set_result(self._moved)

    def _end(self, reset: bool) -> None:
        if reset:
            self.abort()
        self._finish()

    def _wake(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- the writing half (asyncio.StreamWriter's methods the proxy uses)
    def write(self, data) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        while True:
            if self._lost.done():
                raise ConnectionResetError("Connection lost") from self._error
            if not self._paused:
                return
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.transport.is_closing():
            self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        """A RST (SO_LINGER 0), now."""
        sock = self.transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def get_extra_info(self, name: str, default=None):
        return self.transport.get_extra_info(name, default)


CLOSE_TIMEOUT = 10.0        # seconds a proxied connection may take to deliver its last bytes
UNSENT_LIMIT = 128 << 10    # bytes a proxied TCP socket may hold not yet sent (TCP_NOTSENT_LOWAT)


def _bound_unsent(writer) -> None:
    """Let the kernel hold at most UNSENT_LIMIT bytes not yet sent on this side's socket
    (TCP_NOTSENT_LOWAT): past that the socket is not writable, asyncio keeps at most its
    write limit, and the pipe stops reading the other side (whose window then closes).
    Without it Linux takes up to tcp_wmem's maximum (4 MiB) per socket for a client that
    reads slowly, and a hundred such clients pushed the machine's TCP memory past tcp_mem's
    pressure mark: Linux then cut a *fast* socket's send buffer to its floor (4,608 bytes,
    sk_stream_moderate_sndbuf) and did not grow it back while the pressure lasted, so one
    fast echo moved 64 KiB per delayed ACK (~1.5 MB/s) for 50 s. Sockets without the option
    (an MPTCP socket on an older kernel) are left as they are."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_LIMIT)


async def _close_both(*writers) -> None:
    """Close both ends of a proxied connection; if either has not delivered what it was
    given within CLOSE_TIMEOUT (a server that closed its socket and stopped reading keeps
    its window shut for ever), reset both: the client learns its bytes did not all arrive,
    and neither end keeps the connection and its buffers (as Linux gives up an orphaned
    socket that makes no progress, tcp_orphan_retries)."""
    async def closed():
        for writer in writers:                      # both ends told before the next one
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
    for writer in writers:
        writer.close()
    try:
        await asyncio.wait_for(closed(), CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        for writer in writers:
            _abort(writer)


def _report_proxied(args, client: str, up: int, down: int, subflows, seconds: float,
                    destination: str | None = None) -> None:
    """One line per finished proxied connection (a JSON record under --json): the client,
    the bytes carried each way, the MPTCP side's subflows, how long it lasted; and where it
    went (``destination``) when each connection says so (--convert), and which worker
    carried it (--workers)."""
    worker = getattr(args, "worker", None)
    if args.json:
        record = {"event": "connection", "client": client, "upstream": up,
                  "downstream": down, "subflows": subflows, "seconds": seconds,
                  "engine": args.engine}
        if destination is not None:
            record["destination"] = destination
        if worker is not None:
            record["worker"] = worker
        print(json.dumps(record), flush=True)
    else:
        where = f" -> {destination}" if destination is not None else ""
        by = f", worker {worker}" if worker is not None else ""
        print(f"{client}{where}: {up:,} B up, {down:,} B down, {len(subflows)} subflow(s), "
              f"{seconds:.2f} s{by}", flush=True)


async def _proxy(args) -> int:
    """TCP in, MPTCP out (tcp-to-mptcp), or MPTCP in, TCP out (mptcp-to-tcp)."""
    engine = _Engine(args)
    await engine.start()
    listen_host, listen_port = _host_port(args.listen)
    to_host, to_port = _host_port(args.to) if args.to else ("", 0)
    done = asyncio.Event()
    count = joins = 0                   # connections carried, subflows they had beyond the first
    halves = None
    if args.convert or args.front != "tcp":         # the Convert halves (convert_aio.py)
        from .convert_aio import Halves
        halves = Halves(args, engine, endpoint=_endpoint, error_text=_error_text,
                        listen_port=listen_port, to=(to_host, to_port))

    async def handle(client_reader, client_writer):
        nonlocal count, joins
        destination = None
        try:
            if halves is not None:
                opened = await halves.converse(client_reader, client_writer)
                if opened is None:                  # answered and closed: nothing to carry
                    return
                out_reader, out_writer, destination = opened
            elif args.direction == "tcp-to-mptcp":
                out_reader, out_writer = await engine.open(to_host, to_port)
            else:
                out_reader, out_writer = await asyncio.open_connection(to_host, to_port)
        except (OSError, MptcpError) as exc:
            # one line per refused client, and a reset: an empty stream that ends cleanly
            # would look like an answer (no free local port, refused, unreachable, ...)
            client = client_writer.get_extra_info("peername") or ("?", 0)
            print(f"mptcp-fast proxy: {_endpoint(client)}: refused, {to_host}:{to_port}: "
                  f"{_error_text(exc)}", file=sys.stderr, flush=True)
            _abort(client_writer)
            return
        started = time.monotonic()
        client = _endpoint(client_writer.get_extra_info("peername") or ("?", 0))
        for writer in (client_writer, out_writer):
            _bound_unsent(writer)
        mptcp_writer = out_writer if args.direction == "tcp-to-mptcp" else client_writer
        watch = _SubflowWatch(mptcp_writer, first_after=0.05)
        upward = client_reader.pipe_to(out_writer, watch) if isinstance(client_reader, _TcpSide) \
            else _pipe(client_reader, out_writer, watch)
        up, down = await asyncio.gather(upward, _pipe(out_reader, client_writer, watch))
        watch.sample(force=True)
        subflows = watch.best
        await _close_both(out_writer, client_writer)
        _report_proxied(args, client, up, down, subflows, time.monotonic() - started,
                        destination)
        count += 1
        joins += max(len(subflows) - 1, 0)
        if args.count and count >= args.count:
            done.set()

    handlers = _Handlers()
    try:
        if halves is not None and args.direction == "tcp-to-mptcp":
            # a conversation reads the client first: asyncio's streams, on a listener made
            # as the kernel engine's (dual-stack for [::])
            server = await asyncio.start_server(
                handlers.wrap(handle), sock=halves.listener(listen_host, listen_port),
                backlog=_backlog(args))
        elif args.direction == "tcp-to-mptcp":
            run = handlers.wrap(handle)
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: _TcpSide(lambda side: loop.create_task(run(side, side))),
                listen_host, listen_port, backlog=_backlog(args))
        else:
            server = await engine.serve(handlers.wrap(handle), listen_host, listen_port)
        if args.json:
            print(json.dumps({"event": "listening", "command": "proxy", "listen": args.listen,
                              "to": args.to, "direction": args.direction,
                              "engine": args.engine}), flush=True)
        else:
            print(f"proxy ({args.direction}, {args.engine}): {args.listen} -> {args.to}",
                  flush=True)
        try:
            await done.wait()
        finally:
            server.close()
            await handlers.cancel()
    finally:
        if getattr(args, "worker_plan", None) is not None and engine.stack is not None:
            _report_worker(args, engine.stack.endpoint.stats, count, joins)
        engine.close()
    return 0


def _report_worker(args, stats, carried: int, joins: int) -> None:
    """A balanced worker's closing line (balanced.py): its addresses, the connections it
    carried and their joins, the joins its engine refused (an MP_JOIN whose token it does not
    hold, or one to its balanced address: a join that reached the wrong worker, or came by
    way of the balancer), and the packets that came for an address not its own (routed to
    the wrong worker's device)."""
    plan = args.worker_plan
    refused, not_ours = stats["refused_join"], stats["dropped_not_ours"]
    # --fastopen: the SYNs whose data it took (a valid cookie, maybe another worker's), the
    # cookies it handed out, and the ones it refused (forged, expired, or another key's)
    fastopen = None
    if getattr(args, "fastopen", False):
        fastopen = {name: stats[f"fastopen_{name}"]
                    for name in ("accepted", "cookies_sent", "cookies_refused")}
    if args.json:
        record = {"event": "worker", "worker": plan.number, "own": plan.own,
                  "balanced": plan.balanced, "connections": carried, "joins": joins,
                  "refused_joins": refused, "not_ours": not_ours}
        if fastopen is not None:
            record["fastopen"] = fastopen
        print(json.dumps(record), flush=True)
    else:
        tfo = "" if fastopen is None else (
            f", TFO: {fastopen['accepted']} SYN(s) with data taken, "
            f"{fastopen['cookies_sent']} cookie(s) sent, {fastopen['cookies_refused']} refused")
        print(f"worker {plan.number} ({plan.own}, balanced {plan.balanced}): {carried} "
              f"connection(s), {joins} join(s), {refused} join(s) refused, {not_ours} "
              f"packet(s) for another address{tfo}", flush=True)


def _proxy_kernel(args) -> int:
    """``proxy --engine kernel``: both ends kernel sockets, carried by epoll loops (relay.py),
    in ``--workers`` processes (workers.py)."""
    from .relay import run_proxy

    def serve(args) -> int:
        return run_proxy(args, report=_report_proxied, error_text=_error_text,
                         endpoint=_endpoint, backlog=_backlog(args), unsent_limit=UNSENT_LIMIT,
                         host_port=_host_port, trim=_trim_heap)
    return _in_workers(args, serve)


def _in_workers(args, serve) -> int:
    if args.workers > 1:
        from .workers import serve_workers
        return serve_workers(args, serve)
    return serve(args)


def _proxy_balanced(args) -> int:
    """``proxy --engine userspace --worker-address ...``: the asyncio proxy in workers."""
    return _balanced(args, _proxy)


def _balanced(args, coroutine_function) -> int:
    """``coroutine_function(args)`` (the asyncio proxy or server) in ``--workers`` processes,
    each its own engine, device and addresses, behind one public address (net/workers.py), the
    nftables balancer in place while they serve."""
    from functools import partial

    from ..net.workers import run_balanced
    from .balanced import apply_plan, plan_workers, public_address
    from .workers import serve_workers
    plans = plan_workers(args.worker_address, args.workers)
    if getattr(args, "fastopen", False) and args.fastopen_secret is None:
        # one TFO key for every worker, drawn before they fork: a client's next SYN may be
        # balanced to another worker, which must take the cookie this one gave (RFC 7413
        # §4.1.2: the server alone makes and checks its cookies, with a secret of its own)
        args.fastopen_secret = os.urandom(16)

    def serve(args) -> int:
        apply_plan(args, plans[args.worker])
        if args.uvloop:
            import uvloop
            return uvloop.run(coroutine_function(args))
        return asyncio.run(coroutine_function(args))

    def work(plan) -> int:
        args.worker = plan.number
        return serve(args)
    return serve_workers(args, serve, run=partial(
        run_balanced, work, plans, public=public_address(args), balancer=args.balancer,
        spread=args.spread, netns=args.netns))


def _proxy_convert(args) -> int:
    """``proxy --convert`` / ``--front socks5|transparent`` on the kernel engine: the halves of
    convert_proxy.py: each conversation on a thread of its own, then the relay's loops."""
    from .convert_proxy import run_convert_proxy

    def serve(args) -> int:
        return run_convert_proxy(args, report=_report_proxied, error_text=_error_text,
                                 endpoint=_endpoint, backlog=_backlog(args),
                                 unsent_limit=UNSENT_LIMIT,
                                 host_port=_host_port, trim=_trim_heap)
    return _in_workers(args, serve)


def _proxy_mode(args):
    """Which proxy runs (``_run``'s ``threaded``): the kernel engine's conversation proxies
    (--convert, a --front other than tcp), the kernel relay, or None for the asyncio proxy
    (on the userspace engine with the Convert halves of convert_aio.py when converting).
    Refuses the combinations that mean nothing, before anything is opened."""
    converting = args.convert or args.front != "tcp"
    if args.workers < 1:
        raise MptcpError("--workers must be at least 1")
    _check_fastopen_key(args)
    if args.engine == "userspace" and (args.workers > 1 or args.worker_address):
        from .balanced import check_arguments
        check_arguments(args)
        return _proxy_balanced
    if args.worker_address:
        raise MptcpError("--worker-address is the userspace engine's (the kernel engine's "
                         "workers share one listener, SO_REUSEPORT)")
    if args.workers > 1 and args.uvloop:
        raise MptcpError("--workers on --engine kernel runs the relay's epoll loops, "
                         "without --uvloop")
    if not converting:
        if args.to is None:
            raise MptcpError("proxy needs --to HOST:PORT (or --convert on the server half)")
        return _proxy_kernel if args.engine == "kernel" and not args.uvloop else None
    if args.engine == "kernel" and args.uvloop:
        raise MptcpError("--convert and --front socks5|transparent on --engine kernel run on "
                         "its threads, without --uvloop")
    if args.direction == "tcp-to-mptcp":
        if args.front == "tcp":
            raise MptcpError("the client half's destination comes from its front: --front "
                             "socks5 or transparent")
        if not args.convert:
            raise MptcpError(f"--front {args.front} tells the server half where to connect "
                             "with --convert (RFC 8803); give --convert, and the server half "
                             "too")
        if args.to is None:
            raise MptcpError("the client half needs --to SERVER_HALF_HOST:PORT")
    else:
        if args.front != "tcp":
            raise MptcpError(f"--front {args.front} is the client half's "
                             "(--direction tcp-to-mptcp)")
        if args.to is not None:
            raise MptcpError("with --convert the server half connects where each Connect TLV "
                             "says: no --to")
    if args.max_conversations < 1:
        raise MptcpError("--max-conversations must be at least 1")
    if args.socks_auth == "password" and not args.socks_users:
        raise MptcpError("--socks-auth password needs --socks-users FILE")
    return _proxy_convert if args.engine == "kernel" else None


def _check_fastopen_key(args) -> None:
    """``--fastopen-key``: read and checked here (one line and exit status 2 for a bad one,
    the key never shown); kept as ``args.fastopen_secret`` (None: each engine draws one)."""
    args.fastopen_secret = None
    if args.fastopen_key is None:
        return
    if args.engine != "userspace":
        raise MptcpError("--fastopen-key is the userspace engine's (the kernel's TFO key: "
                         "sysctl net.ipv4.tcp_fastopen_key)")
    if not args.fastopen or args.direction != "mptcp-to-tcp":
        raise MptcpError("--fastopen-key is the key of the server half's TFO cookies: with "
                         "--fastopen on --direction mptcp-to-tcp")
    from .balanced import fastopen_key
    args.fastopen_secret = fastopen_key(args.fastopen_key)


def _port(text: str) -> int:
    """A TCP port, 0-65535 (argparse type): a clear error, not an OverflowError from bind()."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {port}")
    return port


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "0.0.0.0"), _port(port)


# ====================================================================== the parsers
def _error_text(exc: BaseException) -> str:
    """An error in one line: an OSError's reason and the file it is about, if any
    ("No such file or directory: x.bin"), anything else as it prints."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _run(coroutine_function, threaded=None):
    """The command: ``coroutine_function(args)`` on an asyncio loop, or where
    ``threaded(args)`` says so (not None) the function it returns, without a loop."""
    def command(args) -> int:
        try:
            plain = threaded(args) if threaded is not None else None
            if plain is not None:
                return plain(args)
            if args.uvloop:
                import uvloop
                return uvloop.run(coroutine_function(args))
            return asyncio.run(coroutine_function(args))
        except ImportError as exc:
            print(f"mptcp-fast {args.command}: {exc} (pip install 'mptcp_fast[uvloop]')",
                  file=sys.stderr)
        except (MptcpError, OSError) as exc:
            print(f"mptcp-fast {args.command}: {_error_text(exc)}", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
        return 2
    return command


def _host_port_arg(text: str) -> str:
    try:
        _host_port(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}: {exc}") from None
    return text


def _engine_options(p, size_type) -> None:
    from ..engine.cc import CONTROLLERS
    from ..engine.scheduler import SCHEDULERS
    p.add_argument("--engine", choices=["userspace", "kernel"], default="userspace",
                   help="userspace: this project's engine over a TUN device; kernel: "
                        "Linux MPTCP sockets (IPPROTO_MPTCP)")
    p.add_argument("--address", action="append", metavar="ADDR",
                   help="userspace: the engine's own address (repeat for more subflows); "
                        "kernel: the address to bind (default: none; required by userspace, "
                        "kernel binds to any)")
    p.add_argument("--tun", default="mft%d", metavar="NAME",
                   help="userspace: the TUN device's name (mft%%d: the next free one)")
    p.add_argument("--tun-address", action="append", metavar="CIDR",
                   help="userspace: the kernel's address on the device (repeatable) (default: "
                        "x.x.x.1/24 beside each --address)")
    p.add_argument("--route", action="append", metavar="CIDR",
                   help="userspace: another network routed into the device (repeatable) "
                        "(default: none)")
    p.add_argument("--netns", metavar="NAME",
                   help="the kernel's side in this network namespace (the TUN device, or the "
                        "kernel socket) (default: this process's namespace)")
    p.add_argument("--mtu", type=int, default=1500, help="userspace: the device's MTU")
    p.add_argument("--persist-tun", action="store_true",
                   help="userspace: keep the TUN device (with its addresses and routes) when "
                        "the command ends and take it over when it starts again, so kernel "
                        "MPTCP endpoints bound to it keep working; needs a fixed --tun NAME")
    p.add_argument("--no-offload", action="store_true",
                   help="userspace: no GSO/checksum offload on the device (1500-byte packets)")
    p.add_argument("--checksums", action="store_true", help="userspace: ask for DSS checksums")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="lowest-rtt",
                   help="userspace: which subflow sends next")
    p.add_argument("--cc", choices=sorted(CONTROLLERS), default="lia",
                   help="userspace: congestion control per subflow (lia is coupled, RFC 6356)")
    p.add_argument("--backlog", type=int, default=0, metavar="N",
                   help="the accept queue of a kernel listener (plain TCP or MPTCP); the "
                        "userspace engine takes every completed handshake, half-open ones up "
                        "to its syn_backlog, SYN cookies beyond (default: 0, the system's "
                        "net.core.somaxconn)")
    p.add_argument("--uvloop", action="store_true",
                   help="run on uvloop (proxy --engine kernel: its asyncio streams on uvloop, "
                        "not its threads)")
    p.add_argument("--json", action="store_true", help="one JSON object per connection")


def _balanced_options(p, public: str) -> None:
    """The options of the userspace engine's workers behind one address (balanced.py)."""
    p.add_argument("--worker-address", action="append", metavar="ADDR",
                   help="userspace --workers: one per worker, its own address: announced "
                        f"to its clients (ADD_ADDR) for their joins, with flag C (no join to "
                        f"{public}); the next address (ADDR + 1) takes the initial "
                        "subflows the balancer gives the worker; each in a /24 (/64) of its "
                        "own (default: none; docs/proxy.md)")
    p.add_argument("--balancer", choices=["nftables", "none"], default="nftables",
                   help="--worker-address: nftables: install a table (inet "
                        f"mptcp_fast_<pid>, removed on exit) that DNATs the SYNs to {public} "
                        "over the workers' balanced addresses (as --spread says); "
                        "none: another L4 balancer does that")
    p.add_argument("--spread", choices=["hash", "round-robin"], default="hash",
                   help="--balancer nftables: how the SYNs are dealt to the workers: hash: "
                        "by a hash of the 4-tuple (nftables jhash, stateless like a "
                        "router's ECMP); round-robin: in turn (numgen inc), even shares "
                        "however few the connections")


def add_parsers(sub, size_type) -> None:
    srv = sub.add_parser("serve", formatter_class=HelpFormatter,
                         help="an MPTCP server: sink, echo, or send N bytes",
                         description="An MPTCP server on the userspace engine (TUN) or the "
                                     "kernel; one report per connection.")
    srv.add_argument("--port", type=_port, default=5000, help="the port to listen on")
    srv.add_argument("--mode", choices=["sink", "echo", "send"], default="sink",
                     help="sink: read and discard; echo: send back what comes; send: send "
                          "--bytes and close")
    srv.add_argument("--bytes", type=size_type, default="100M",
                     help="--mode send: how much (k, M, G suffixes)")
    srv.add_argument("--count", type=int, default=0,
                     help="exit after this many connections (default: serve until Ctrl-C)")
    srv.add_argument("--workers", type=int, default=1, metavar="N",
                     help="userspace engine: N processes, each its own engine and TUN device "
                          "with a --worker-address, behind --public's address (--balancer); "
                          "the records say which worker served each connection")
    srv.add_argument("--public", metavar="ADDR",
                     help="--worker-address: the address the clients connect to, which the "
                          "--balancer spreads over the workers (default: none; needed by "
                          "--balancer nftables)")
    _balanced_options(srv, "--public's address")
    _engine_options(srv, size_type)
    srv.set_defaults(func=_run(_serve, _serve_mode))

    con = sub.add_parser("connect", formatter_class=HelpFormatter,
                         help="an MPTCP client: send a file or N bytes, receive",
                         description="Connect, send (a file or N pseudo-random bytes), read "
                                     "until the server closes, report SHA-256s, subflows and "
                                     "throughput.")
    con.add_argument("host", help="the server's address")
    con.add_argument("port", type=_port, help="the server's port")
    what = con.add_mutually_exclusive_group()
    what.add_argument("--bytes", type=lambda text: 0 if text.strip() == "0" else size_type(text),
                      default="10M",
                      help="send this many pseudo-random bytes (k, M, G suffixes; 0: send "
                           "nothing, only receive, e.g. from serve --mode send)")
    what.add_argument("--send-file", metavar="FILE",
                      help="send this file instead (default: none, send --bytes)")
    con.add_argument("--timeout", type=float, default=15.0,
                     help="seconds to wait for the connection")
    _engine_options(con, size_type)
    con.set_defaults(func=_run(_connect))

    pro = sub.add_parser("proxy", formatter_class=HelpFormatter,
                         help="a TCP-to-MPTCP proxy (or MPTCP-to-TCP)",
                         description="Accept connections on --listen and carry each to --to: "
                                     "plain TCP in and MPTCP out (tcp-to-mptcp, the client "
                                     "side), or MPTCP in and plain TCP out (mptcp-to-tcp). "
                                     "With --convert the two halves of a "
                                     "link-aggregation proxy: the client half takes SOCKS5 "
                                     "clients or redirected connections (--front) and tells "
                                     "the server half each destination in RFC 8803's Convert "
                                     "protocol; the server half (no --to) connects there.")
    pro.add_argument("--listen", type=_host_port_arg, required=True, metavar="[HOST:]PORT",
                     help="where to accept connections (HOST: every address when left out)")
    pro.add_argument("--to", type=_host_port_arg, metavar="HOST:PORT",
                     help="where to carry each connection: the server, or with --convert on "
                          "the client half the server half (default: none; required except "
                          "on a --convert server half, which connects where each client asks)")
    pro.add_argument("--direction", choices=["tcp-to-mptcp", "mptcp-to-tcp"],
                     default="tcp-to-mptcp",
                     help="tcp-to-mptcp: accept plain TCP, connect over MPTCP (the client "
                          "side); mptcp-to-tcp: accept MPTCP, connect over plain TCP")
    pro.add_argument("--count", type=int, default=0,
                     help="exit after this many connections (default: until Ctrl-C)")
    pro.add_argument("--workers", type=int, default=1, metavar="N",
                     help="N processes; the records say which worker carried each connection. "
                          "Kernel engine: each with its own listener on --listen "
                          "(SO_REUSEPORT): the kernel spreads the connections over them and "
                          "routes every join to the worker that holds its connection. "
                          "Userspace engine (mptcp-to-tcp, the --convert server half too): "
                          "each its own engine and TUN device with a --worker-address, behind "
                          "--listen's address (--balancer); with --fastopen one TFO key for "
                          "all (default: 1)")
    _balanced_options(pro, "--listen's address")
    pro.add_argument("--front", choices=["tcp", "socks5", "transparent"], default="tcp",
                     help="the client half's side: tcp: every connection goes to --to; "
                          "socks5: a SOCKS5 server (RFC 1928 CONNECT), each client says where; "
                          "transparent: connections an nftables redirect sent here, to their "
                          "original destination (SO_ORIGINAL_DST); socks5 and transparent need "
                          "--convert")
    pro.add_argument("--convert", action="store_true",
                     help="speak the 0-RTT TCP Convert Protocol (RFC 8803) on the MPTCP side: "
                          "the client half sends each destination in a Connect TLV (in the "
                          "SYN with --fastopen), the server half (no --to) connects there "
                          "and answers (either engine; each accepts the other's half)")
    pro.add_argument("--socks-auth", choices=["none", "password"], default="none",
                     help="--front socks5: the one method offered: none (no authentication) or "
                          "password (username/password, RFC 1929, from --socks-users)")
    pro.add_argument("--socks-users", metavar="FILE",
                     help="--socks-auth password: a file of user:password lines (default: "
                          "none)")
    pro.add_argument("--allow-to", action="append", metavar="CIDR",
                     help="--convert server half: connect only to these networks (repeatable); "
                          "others get Convert error 32, Not Authorized (default: anywhere but "
                          "this host's loopback and unspecified addresses)")
    pro.add_argument("--convert-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="--convert: how long each conversation may take (a SOCKS5 "
                          "negotiation, a Convert message, a connect to the destination or "
                          "the server half)")
    pro.add_argument("--max-conversations", type=int, default=1024, metavar="N",
                     help="--convert: at most this many conversations (SOCKS5 negotiation, "
                          "Convert message, connect) under way at once (on the kernel engine "
                          "each on a thread of its own); beyond, a client is answered at once "
                          "(Convert error 64, Resource Exceeded, on the server half)")
    pro.add_argument("--fastopen", action="store_true",
                     help="--convert: TCP Fast Open on the MPTCP side: the client half's "
                          "Convert message rides in the SYN once it holds the server half's "
                          "cookie, the server half takes TFO (kernel engine: "
                          "TCP_FASTOPEN_CONNECT and TCP_FASTOPEN, needs "
                          "net.ipv4.tcp_fastopen=3 on the server half's side; userspace "
                          "engine: its own TFO, docs/engine.md). Off by default: "
                          "Linux 6.18 overruns the data-level window of a TFO-accepted "
                          "connection that has a second subflow and then crawls "
                          "(docs/kernel-behaviour.md)")
    pro.add_argument("--fastopen-key", metavar="HEX|@FILE",
                     help="userspace server half with --fastopen: the secret of its TFO "
                          "cookies, 16 or 32 bytes as hex (or @FILE holding it), so that "
                          "several machines (or restarts) take each other's cookies "
                          "(default: random; --workers share one drawn at start)")
    _engine_options(pro, size_type)
    pro.set_defaults(func=_run(_proxy, _proxy_mode))

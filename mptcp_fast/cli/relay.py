"""``mptcp-fast proxy --engine kernel``: both ends are kernel sockets, joined by threads.

asyncio is the limit of a proxy whose two ends are kernel sockets: every chunk goes through a
StreamReader (a copy into its buffer, another out), a write that copies what the socket did
not take, and a turn of the loop per wake-up, all on one thread. Here each direction of a
connection is one thread that moves the bytes itself with ``os.splice`` (Linux: through a
pipe, the pages of the received segments handed on to the other socket without a copy into
the process; MPTCP sockets take part as any TCP socket does: ``tcp_splice_read`` on a plain
TCP socket, MPTCP's own ``splice_read`` or the generic copy on older kernels, and both send
paths take spliced pages, ``MSG_SPLICE_PAGES``), or where splice is refused with
``recv_into`` / ``send`` on one buffer the thread keeps. Both sockets are non-blocking and each
thread waits in ``poll`` on its socket and on the connection's eventfd, so ending a connection
at once (a reset on either side, Ctrl-C) wakes both of its threads without a FIN going out
first: the sockets are then closed with SO_LINGER 0, a RST on plain TCP and MP_FASTCLOSE on
MPTCP (RFC 8684 §3.5) for a socket that still has data.

What the proxy does is the asyncio proxy's (``net._proxy``), which still runs the userspace
engine: a half-close is carried over (``shutdown(SHUT_WR)``: a FIN, or a DATA_FIN on MPTCP,
RFC 8684 §3.3.3), a reset on one side resets the other, a refused upstream resets the client
with one line on stderr, each finished connection prints one line (a JSON record under
``--json``) with the bytes carried each way and the MPTCP side's subflows, each socket holds
at most ``UNSENT_LIMIT`` bytes not yet sent (TCP_NOTSENT_LOWAT), ``--count`` ends the proxy.

Threads come from a pool that keeps up to ``IDLE_WORKERS`` idle ones: a short connection costs
two hand-offs, not two thread starts. The accept loop is the main thread (Ctrl-C lands there).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import fcntl
import gc
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from typing import Callable

from ..errors import MptcpError
from ..net import kernel

__all__ = ["run_proxy"]

CHUNK = 1 << 18             # bytes one read moves at most (the pipe's size when splicing)
IDLE_WORKERS = 64           # idle pump threads kept for the next connections
STACK_SIZE = 512 << 10      # a pump thread's stack: a poll loop, no deep calls
TRIM_EVERY = 10.0           # seconds between two hand-backs of free heap memory (net.py's)
SAMPLE_EVERY = 0.05         # seconds between two looks at the MPTCP side's subflows
F_SETPIPE_SZ = 1031         # fcntl.h (Python >= 3.10 names it, but not every build)
SPLICE_FLAGS = (getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2))
_LINGER_ZERO = struct.pack("ii", 1, 0)

# Splice where Linux has it; MPTCP_FAST_RELAY=copy forces recv_into / send (a check, and the
# way to compare the two).
_SPLICE = hasattr(os, "splice") and os.environ.get("MPTCP_FAST_RELAY", "splice") == "splice"


class _Workers:
    """Daemon threads that run one job at a time and wait for the next; a job finds an idle
    thread or starts one (a pump blocks for its connection's life, so jobs never queue
    behind each other). At most ``IDLE_WORKERS`` threads wait idle, the others end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: deque = deque()       # (event, slot) of each idle thread

    def submit(self, job: Callable[[], object]) -> None:
        with self._lock:
            if self._idle:
                wake, slot = self._idle.pop()
                slot.append(job)
                wake.set()
                return
        thread = threading.Thread(target=self._work, args=(job,), daemon=True)
        thread.start()

    def _work(self, first: Callable[[], object]) -> None:
        wake = threading.Event()
        slot: list = [first]
        del first                                   # (a job's sockets go when it ends)
        while True:
            with contextlib.suppress(Exception):    # a job reports its own failures
                slot.pop()()
            wake.clear()
            with self._lock:
                if len(self._idle) >= IDLE_WORKERS:
                    return
                self._idle.append((wake, slot))
            wake.wait()


class _Buffers(threading.local):
    """Per thread, reused by every connection it carries: the copy buffer, or the pipe that
    splice goes through (made once, drained at every end)."""
    buffer: bytearray | None = None
    pipe: tuple[int, int] | None = None


_buffers = _Buffers()


def _pipe() -> tuple[int, int]:
    pipe = _buffers.pipe
    if pipe is None:
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):      # beyond pipe-user-pages-soft: 64 KiB stays
            fcntl.fcntl(pipe[1], F_SETPIPE_SZ, CHUNK)
        _buffers.pipe = pipe
    return pipe


def _drop_pipe() -> None:
    """A pipe left holding bytes (a connection aborted mid-copy) is not reused."""
    pipe = _buffers.pipe
    if pipe is not None:
        _buffers.pipe = None
        for fd in pipe:
            os.close(fd)


class _Relay:
    """One proxied connection: two sockets, a pump per direction, an eventfd that wakes both
    pumps when the connection is aborted."""

    def __init__(self, proxy: "_Proxy", client: socket.socket, upstream: socket.socket,
                 mptcp: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.upstream, self.mptcp = client, upstream, mptcp
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.aborted = False
        self.subflows: list = []
        self._next_sample = 0.0
        self._down_done = threading.Event()
        self.down = 0
        self.peer = ""                         # the client, host:port

    def abort(self) -> None:
        """End both sides at once: linger 0 (closing resets), both pumps woken."""
        if self.aborted:
            return
        self.aborted = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        with contextlib.suppress(OSError):
            os.eventfd_write(self.wake, 1)

    def sample(self, force: bool = False) -> None:
        """The most subflows the MPTCP side had, looked at while data moves (at most every
        50 ms): by the end the kernel may have closed some already."""
        now = time.monotonic()
        if force or now >= self._next_sample:
            self._next_sample = now + SAMPLE_EVERY
            try:
                found = kernel.subflow_addresses(self.mptcp)
            except (OSError, MptcpError):
                return
            if len(found) > len(self.subflows):
                self.subflows = found

    def _waits(self, sock: socket.socket, event: int) -> Callable[[], bool]:
        """A wait for ``event`` on ``sock``: returns True when the connection was aborted."""
        poller = select.poll()
        poller.register(sock.fileno(), event)
        poller.register(self.wake, select.POLLIN)
        wake = self.wake

        def wait() -> bool:
            for fd, _ in poller.poll():
                if fd == wake:
                    return True
            return False
        return wait

    def pump(self, src: socket.socket, dst: socket.socket) -> int:
        """Move src's bytes to dst until src ends (then half-close dst) or either fails (then
        abort both); the bytes moved."""
        moved = 0
        try:
            moved = (self._splice if _SPLICE else self._copy)(src, dst)
            if not self.aborted:
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()
        return moved

    def _copy(self, src: socket.socket, dst: socket.socket) -> int:
        buffer = _buffers.buffer
        if buffer is None:
            buffer = _buffers.buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        readable = self._waits(src, select.POLLIN)
        writable = self._waits(dst, select.POLLOUT)
        recv_into, send, sample = src.recv_into, dst.send, self.sample
        moved = 0
        while True:
            try:
                n = recv_into(buffer)
            except BlockingIOError:
                if readable():
                    return moved
                continue
            if not n:
                return moved
            sent = 0
            while sent < n:
                try:
                    sent += send(view[sent:n])
                except BlockingIOError:
                    if writable():
                        return moved
            moved += n
            sample()

    def _splice(self, src: socket.socket, dst: socket.socket) -> int:
        rd, wr = _pipe()
        readable = self._waits(src, select.POLLIN)
        writable = self._waits(dst, select.POLLOUT)
        splice, sample = os.splice, self.sample
        src_fd, dst_fd = src.fileno(), dst.fileno()
        moved = 0
        held = 0                                    # bytes in the pipe
        try:
            while True:
                try:
                    n = splice(src_fd, wr, CHUNK, flags=SPLICE_FLAGS)
                except BlockingIOError:             # (the pipe is empty here: no data)
                    if readable():
                        return moved
                    continue
                if not n:
                    return moved
                held = n
                while held:
                    try:
                        held -= splice(rd, dst_fd, held, flags=SPLICE_FLAGS)
                    except BlockingIOError:
                        if writable():
                            return moved
                moved += n
                sample()
        finally:
            if held:
                _drop_pipe()

    def run(self) -> None:
        """The upward pump on this thread, the downward one on another; then close both
        sockets and report."""
        proxy = self.proxy
        started = time.monotonic()
        proxy.workers.submit(self._down)
        up = self.pump(self.client, self.upstream)
        self._down_done.wait()
        self.sample(force=True)
        with proxy.lock:                        # (stop() aborts only what is in live)
            proxy.live.discard(self)
        os.close(self.wake)
        self.client.close()
        self.upstream.close()
        proxy.finished(self, up, self.down, time.monotonic() - started)

    def _down(self) -> None:
        try:
            self.down = self.pump(self.upstream, self.client)
        finally:
            self._down_done.set()


class _Proxy:
    def __init__(self, args, report: Callable[..., None], error_text: Callable[..., str],
                 endpoint: Callable[..., str], backlog: int, unsent_limit: int,
                 host_port: Callable[[str], tuple[str, int]],
                 trim: Callable[[], bool]) -> None:
        self.args = args
        self.report, self.error_text, self.endpoint = report, error_text, endpoint
        self.backlog, self.unsent_limit = backlog, unsent_limit
        self.trim = trim
        self.listen_host, self.listen_port = host_port(args.listen)
        self.to_host, self.to_port = host_port(args.to)
        self.workers = _Workers()
        self.lock = threading.Lock()
        self.live: set = set()               # the relays carrying data
        self.count = 0
        self.done = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.stopping = False
        self._netns_fds: tuple[int, int] | None = None
        if args.netns:
            home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(f"/var/run/netns/{args.netns}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(home)
                raise
            self._netns_fds = (home, target)

    # ------------------------------------------------------------------ sockets
    def _mptcp_socket(self, family: int) -> socket.socket:
        """A kernel MPTCP socket, made inside --netns when given (a socket belongs to the
        namespace it was made in; setns is per thread, so only this thread moves)."""
        if self._netns_fds is None:
            return kernel.mptcp_socket(family)
        from ..net.netns import _setns
        home, target = self._netns_fds
        _setns(target)
        try:
            return kernel.mptcp_socket(family)
        finally:
            _setns(home)

    def _listener(self) -> socket.socket:
        host, port = self.listen_host, self.listen_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.args.direction == "tcp-to-mptcp":
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            sock = self._mptcp_socket(family)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise MptcpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    def _open_upstream(self) -> socket.socket:
        host, port = self.to_host, self.to_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.args.direction == "mptcp-to-tcp":
            return socket.create_connection((host, port))
        sock = self._mptcp_socket(family)
        try:
            if self.args.address:
                sock.bind((self.args.address[0], 0))
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _prepare(self, sock: socket.socket) -> None:
        """Non-blocking (the pumps wait in poll), no Nagle delay (as asyncio sets on every
        TCP transport; MPTCP takes it since Linux 5.19), and at most unsent_limit bytes not
        yet sent (TCP_NOTSENT_LOWAT: past that the socket is not writable, so the pump stops
        reading the other side, whose window then closes)."""
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, self.unsent_limit)

    # ------------------------------------------------------------------ connections
    def _connection(self, client: socket.socket, peer) -> None:
        """A worker's job for an accepted client: open the other side, carry, report."""
        try:
            upstream = self._open_upstream()
        except (OSError, MptcpError) as exc:
            # one line per refused client, and a reset: an empty stream that ends cleanly
            # would look like an answer (no free local port, refused, unreachable, ...)
            print(f"mptcp-fast proxy: {self.endpoint(peer)}: refused, "
                  f"{self.to_host}:{self.to_port}: {self.error_text(exc)}",
                  file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            client.close()
            return
        for sock in (client, upstream):
            self._prepare(sock)
        mptcp = upstream if self.args.direction == "tcp-to-mptcp" else client
        relay = _Relay(self, client, upstream, mptcp)
        relay.peer = self.endpoint(peer)
        with self.lock:
            if self.stopping:
                relay.abort()
            self.live.add(relay)
        relay.run()

    def finished(self, relay: _Relay, up: int, down: int, seconds: float) -> None:
        subflows = [[f"{local[0]}:{local[1]}", f"{remote[0]}:{remote[1]}"]
                    for local, remote in relay.subflows]
        with self.lock:
            if self.stopping:
                return
            self.report(self.args, relay.peer, up, down, subflows, seconds)
            self.count += 1
            if self.args.count and self.count >= self.args.count:
                os.eventfd_write(self.done, 1)

    # ------------------------------------------------------------------ the accept loop
    def serve(self) -> int:
        args = self.args
        threading.stack_size(STACK_SIZE)
        listener = self._listener()
        try:
            if args.json:
                print(json.dumps({"event": "listening", "command": "proxy",
                                  "listen": args.listen, "to": args.to,
                                  "direction": args.direction, "engine": args.engine}),
                      flush=True)
            else:
                print(f"proxy ({args.direction}, {args.engine}): {args.listen} -> {args.to}",
                      flush=True)
            poller = select.poll()
            poller.register(listener.fileno(), select.POLLIN)
            poller.register(self.done, select.POLLIN)
            accept, submit, connection = listener.accept, self.workers.submit, self._connection
            next_trim = time.monotonic() + TRIM_EVERY
            while True:
                events = poller.poll(TRIM_EVERY * 1000)
                if any(fd == self.done for fd, _ in events):
                    return 0
                while True:
                    try:
                        client, peer = accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                         errno.ENOMEM):
                            time.sleep(0.01)         # out of descriptors: let some end
                            break
                        if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                            continue
                        raise
                    submit(functools.partial(connection, client, peer))
                now = time.monotonic()
                if now >= next_trim:
                    next_trim = now + TRIM_EVERY
                    gc.collect()
                    self.trim()
        finally:
            listener.close()
            self.stop()

    def stop(self) -> None:
        """Abort what is still carried and give its pumps a moment to end."""
        with self.lock:
            self.stopping = True
            for relay in self.live:
                relay.abort()
        end = time.monotonic() + 2.0
        while self.live and time.monotonic() < end:
            time.sleep(0.01)


def run_proxy(args, **helpers) -> int:
    """The kernel engine's proxy (see the module text); ``helpers``: the report, error and
    address functions and limits the asyncio proxy uses, so both print the same."""
    return _Proxy(args, **helpers).serve()

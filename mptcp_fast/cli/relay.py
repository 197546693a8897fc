"""``mptcp-fast proxy --engine kernel``: both ends are kernel sockets, carried by a few loops.

asyncio is the limit of a proxy whose two ends are kernel sockets: every chunk goes through a
StreamReader (a copy into its buffer, another out), a write that copies what the socket did
not take, and a turn of the loop per wake-up. A thread per direction of each connection (this
module's first form) moved bytes fast but paid for every short connection in thread wake-ups:
the accept loop handed each connection to a worker, which handed the other direction to a
second one, and the kernel spent its time switching between them.

Here a small fixed number of loop threads (one per core, at most 4;
``MPTCP_FAST_RELAY_LOOPS`` sets it) each run an
``epoll`` loop over non-blocking sockets, and every step of a connection happens on the loop
that accepted it: the accept, the non-blocking ``connect`` of the other side, the bytes, the
close. No thread is started or woken per connection. The loops share the listener with
``EPOLLEXCLUSIVE`` (Linux 4.5: one waiting loop is woken per new connection, not all).

Each socket is registered once, edge-triggered (``EPOLLET``) for reading and writing, and the
loop keeps whether it is readable and writable itself: a flag is cleared only by an EAGAIN,
and Linux wakes the epoll entry again when that changes (new data, a FIN, room freed in the
send buffer after a send was refused), so no ``epoll_ctl`` is made after the registration.

A direction starts by copying (``recv_into`` one buffer the loop keeps, ``send``): a 64-byte
request costs two system calls and no pipe. A direction that has carried ``SPLICE_AFTER``
bytes is a bulk transfer and moves on to ``os.splice`` through a pipe of its own (Linux: the
pages of the received segments handed to the other socket without a copy into the process;
MPTCP sockets take part as any TCP socket does), unless ``MPTCP_FAST_RELAY=copy``. Pipes are
kept by the loop for the next bulk direction. (Whether one read fills the buffer is no test
of a bulk transfer: a loop that keeps up reads each of loopback's 64 KB segments as it
arrives, a little less than 64 KiB, and such a transfer stayed copying.)

What the proxy does is the asyncio proxy's (``net._proxy``), which still runs the userspace
engine: a half-close is carried over (``shutdown(SHUT_WR)``: a FIN, or a DATA_FIN on MPTCP,
RFC 8684 §3.3.3), a reset or an error on one side resets the other (SO_LINGER 0: a RST on
plain TCP, MP_FASTCLOSE on MPTCP, RFC 8684 §3.5), a refused upstream resets the client with
one line on stderr, each finished connection prints one line (a JSON record under ``--json``)
with the bytes carried each way and the MPTCP side's subflows, each socket holds at most
``unsent_limit`` bytes not yet sent (TCP_NOTSENT_LOWAT), ``--count`` ends the proxy.

The main thread only waits (for ``--count``, Ctrl-C, and the heap trim every ``TRIM_EVERY``
seconds); stopping aborts every connection still carried.

A subclass may talk with a client before carrying it (``convert_proxy.py``: a SOCKS5 or
Convert conversation, blocking, an RTT or more, so not on a loop): with ``takes_clients`` set
the loops offer it each accepted client (``accepted``), and once it holds the pair of
connected sockets it hands them back from its own thread with ``adopt``; a loop then carries,
reports and closes them as its own. A plain proxy leaves ``takes_clients`` unset and pays
nothing for it.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import gc
import itertools
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable

from ..errors import MptcpError
from ..net import kernel

__all__ = ["run_proxy"]

COPY_CHUNK = 1 << 16        # a copying direction's read at most
SPLICE_AFTER = 1 << 16      # bytes a direction copies before it moves on to splice
CHUNK = 1 << 18             # bytes one splice moves at most (the pipe's size)
SPARE_PIPES = 16            # empty pipes a loop keeps for its next bulk directions
ACCEPTS_PER_WAKE = 32       # clients one loop accepts before it looks at its connections
TRIM_EVERY = 10.0           # seconds between two hand-backs of free heap memory (net.py's)
SAMPLE_EVERY = 0.05         # seconds between two looks at the MPTCP side's subflows
F_SETPIPE_SZ = 1031         # fcntl.h (Python >= 3.10 names it, but not every build)
SPLICE_FLAGS = (getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2))
_LINGER_ZERO = struct.pack("ii", 1, 0)
_NO_FIELDS: dict[str, Any] = {}     # a relay's extra report fields: none (never changed)

_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_OUT = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_WATCH = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET

# Splice where Linux has it; MPTCP_FAST_RELAY=copy keeps every direction copying (a check,
# and the way to compare the two).
_SPLICE = hasattr(os, "splice") and os.environ.get("MPTCP_FAST_RELAY", "splice") == "splice"


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: a RST on plain TCP, MP_FASTCLOSE on MPTCP (RFC 8684 §3.5)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    sock.close()


def _loops() -> int:
    """How many loop threads: MPTCP_FAST_RELAY_LOOPS, else one per core (at most 4: the
    loops share one interpreter lock, so more only adds hand-offs)."""
    wanted = os.environ.get("MPTCP_FAST_RELAY_LOOPS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return max(1, min(4, os.cpu_count() or 1))


class _End:
    """One socket of a relay, with what the loop last learnt of it (edge-triggered: a flag
    stays set until an operation answers EAGAIN)."""
    __slots__ = ("sock", "fd", "relay", "readable", "writable")

    def __init__(self, sock: socket.socket, relay: "_Relay") -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.relay = relay
        self.readable = False
        self.writable = False


class _Pump:
    """One direction of a relay: src's bytes to dst, until src ends (then dst is half-closed).
    What was read and not yet written waits in ``pending`` (copying) or in the pipe
    (``held`` bytes, splicing); src is not read again before it is gone."""
    __slots__ = ("src", "dst", "pipe", "held", "pending", "moved", "ended", "shut")

    def __init__(self, src: _End, dst: _End) -> None:
        self.src, self.dst = src, dst
        self.pipe: tuple[int, int] | None = None    # (read end, write end) once splicing
        self.held = 0
        self.pending: memoryview | None = None
        self.moved = 0
        self.ended = False                          # src gave its end of stream
        self.shut = False                           # ... and dst was half-closed after it

    def run(self, loop: "_Loop") -> bool:
        """Move what can move now; True when this direction is over. OSError: the relay
        is aborted by the caller."""
        src, dst = self.src, self.dst
        while True:
            if self.pending is not None or self.held:
                if not dst.writable or not self._flush():
                    return False
                continue
            if self.ended:
                if not self.shut:
                    self.shut = True
                    dst.sock.shutdown(socket.SHUT_WR)
                return True
            if not src.readable:
                return False
            if self.pipe is not None:
                self._splice_in(src)
            else:
                self._copy_in(loop)

    def _copy_in(self, loop: "_Loop") -> None:
        src, dst = self.src, self.dst
        try:
            n = src.sock.recv_into(loop.buffer)
        except BlockingIOError:
            src.readable = False
            return
        if not n:
            self.ended = True
            return
        self.moved += n
        src.relay.sample()
        if self.moved >= SPLICE_AFTER and _SPLICE:  # a bulk transfer: splice from now on
            self.pipe = loop.take_pipe()
        data = loop.view[:n]
        sent = 0
        if dst.writable:
            try:
                sent = dst.sock.send(data)
            except BlockingIOError:
                dst.writable = False
        if sent < n:                                # kept apart: the buffer is the loop's
            self.pending = memoryview(bytes(data[sent:]))

    def _splice_in(self, src: _End) -> None:
        assert self.pipe is not None
        try:
            n = os.splice(src.fd, self.pipe[1], CHUNK, flags=SPLICE_FLAGS)
        except BlockingIOError:                     # (the pipe is empty: no data)
            src.readable = False
            return
        if not n:
            self.ended = True
            return
        self.held = n
        self.moved += n
        src.relay.sample()

    def _flush(self) -> bool:
        """Write what waits to dst; False when dst took less than all of it."""
        dst = self.dst
        try:
            if self.pending is not None:
                sent = dst.sock.send(self.pending)
                self.pending = self.pending[sent:] if sent < len(self.pending) else None
                return self.pending is None
            assert self.pipe is not None
            self.held -= os.splice(self.pipe[0], dst.fd, self.held, flags=SPLICE_FLAGS)
            return not self.held
        except BlockingIOError:
            dst.writable = False
            return False


class _Relay:
    """One proxied connection on one loop: two ends, a pump per direction."""

    def __init__(self, loop: "_Loop", client: socket.socket, upstream: socket.socket,
                 mptcp: socket.socket, peer: str, fields: dict[str, Any] = _NO_FIELDS) -> None:
        self.loop = loop
        self.client, self.upstream = _End(client, self), _End(upstream, self)
        self.mptcp = mptcp
        self.peer = peer
        self.fields = fields                        # more for the report (adopt's)
        self.connecting = True                      # upstream's connect still under way
        self.up = _Pump(self.client, self.upstream)
        self.down = _Pump(self.upstream, self.client)
        self.started = time.monotonic()
        self.subflows: list = []
        # (a short connection is looked at once, as it ends: a look is a getsockopt and
        # the parsing of its addresses, a tenth of a 64-byte echo's time in the proxy)
        self._next_sample = self.started + SAMPLE_EVERY
        self.closed = False

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

    def event(self, end: _End, events: int) -> None:
        if events & _IN:
            end.readable = True
        if events & _OUT:
            end.writable = True
        if self.connecting:
            if end is not self.upstream or not end.writable:
                return                              # the client waits for its upstream
            error = end.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.loop.refused(self, OSError(error, os.strerror(error)))
                return
            self.connecting = False
        self.run()

    def run(self) -> None:
        loop = self.loop
        try:
            up_done = self.up.run(loop)
            down_done = self.down.run(loop)
        except OSError:
            self.abort()
            return
        if up_done and down_done:
            self.finish()

    def abort(self) -> None:
        """End both sides at once: linger 0, so the close resets (MP_FASTCLOSE on MPTCP);
        the connection is reported as one that ended."""
        for end in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                end.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.finish()

    def finish(self) -> None:
        if self.closed:
            return
        self.sample(force=True)
        self.close()
        self.loop.proxy.finished(self, self.up.moved, self.down.moved,
                                 time.monotonic() - self.started)

    def close(self) -> None:
        """Close both sockets (which takes them out of the epoll set) and hand the pipes
        back to the loop."""
        if self.closed:
            return
        self.closed = True
        self.loop.forget(self)
        self.client.sock.close()
        self.upstream.sock.close()
        for pump in (self.up, self.down):
            if pump.pipe is not None:
                self.loop.give_pipe(pump.pipe, empty=not pump.held)
                pump.pipe = None


class _Loop(threading.Thread):
    """One epoll loop: accepts its share of the clients and carries their connections."""

    def __init__(self, proxy: "_Proxy", listener: socket.socket) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.listener = listener
        self.epoll = select.epoll()
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # pairs handed over by other threads (adopt): queued here, and the loop woken by
        # `handoff`, so that every relay is made and touched on its own loop only
        self.handed: collections.deque = collections.deque()
        self.handoff = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.ends: dict[int, _End] = {}             # fd -> end, for every live relay
        self.buffer = bytearray(COPY_CHUNK)
        self.view = memoryview(self.buffer)
        self.pipes: list[tuple[int, int]] = []
        self.failure: BaseException | None = None

    # ------------------------------------------------------------------ pipes
    def take_pipe(self) -> tuple[int, int]:
        if self.pipes:
            return self.pipes.pop()
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):      # beyond pipe-user-pages-soft: 64 KiB stays
            fcntl.fcntl(pipe[1], F_SETPIPE_SZ, CHUNK)
        return pipe

    def give_pipe(self, pipe: tuple[int, int], empty: bool) -> None:
        """A pipe left holding bytes (a connection aborted mid-copy) is not reused."""
        if empty and len(self.pipes) < SPARE_PIPES:
            self.pipes.append(pipe)
            return
        for fd in pipe:
            os.close(fd)

    # ------------------------------------------------------------------ relays
    def forget(self, relay: _Relay) -> None:
        self.ends.pop(relay.client.fd, None)
        self.ends.pop(relay.upstream.fd, None)

    def _accept(self) -> None:
        accept, proxy = self.listener.accept, self.proxy
        take = proxy.accepted if proxy.takes_clients else None
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                client, peer = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.01)                # out of descriptors: let some end
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            client.setblocking(False)
            if proxy.accepted_needs_options:
                proxy.prepare(client)
            if take is not None and take(client, peer):
                continue                            # the subclass's now (see adopt)
            self._connect(client, peer)

    def _connect(self, client: socket.socket, peer) -> None:
        """Open the other side without waiting: the relay starts when it is connected."""
        proxy = self.proxy
        try:
            upstream = proxy.upstream_socket()
        except (OSError, MptcpError) as exc:
            proxy.refuse(client, peer, exc)
            return
        mptcp = upstream if proxy.args.direction == "tcp-to-mptcp" else client
        relay = _Relay(self, client, upstream, mptcp, proxy.endpoint(peer))
        error = upstream.connect_ex(proxy.to_address)
        if error not in (0, errno.EINPROGRESS):
            upstream.close()
            proxy.refuse(client, peer, OSError(error, os.strerror(error)))
            return
        self._register(relay)

    def _register(self, relay: _Relay) -> None:
        for end in (relay.client, relay.upstream):
            self.ends[end.fd] = end
            self.epoll.register(end.fd, _WATCH)

    def hand(self, client: socket.socket, upstream: socket.socket, peer: str,
             fields: dict[str, Any]) -> None:
        """From another thread (the proxy's adopt): queue a connected pair, wake the loop."""
        self.handed.append((client, upstream, peer, fields))
        os.eventfd_write(self.handoff, 1)

    def _take_handed(self) -> None:
        """Carry the pairs handed over: both ends are connected already. Registering them
        reports what is readable now (epoll looks at a file as it is added), so bytes that
        arrived during the conversation are carried at once."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.handoff)
        mptcp_upstream = self.proxy.args.direction == "tcp-to-mptcp"
        while True:
            try:
                client, upstream, peer, fields = self.handed.popleft()
            except IndexError:
                return
            relay = _Relay(self, client, upstream, upstream if mptcp_upstream else client,
                           peer, fields)
            relay.connecting = False
            # the MPTCP side's subflows looked at now, not only at the end: after a
            # conversation (an RTT or more) the other subflows may be up already, and gone
            # again by the end of a short transfer
            relay.sample(force=True)
            self._register(relay)

    def drop_handed(self) -> None:
        """Reset the pairs handed over and not yet carried (the loop ended first)."""
        while True:
            try:
                client, upstream, _, _ = self.handed.popleft()
            except IndexError:
                return
            reset(client)
            reset(upstream)

    def refused(self, relay: _Relay, exc: OSError) -> None:
        self.forget(relay)
        relay.closed = True
        relay.upstream.sock.close()
        self.proxy.refuse(relay.client.sock, relay.peer, exc)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        try:
            self.proxy.enter_upstream_namespace()
            self._serve()
        except BaseException as exc:                # a bug: stop the proxy, say what
            self.failure = exc
            self.proxy.wake_main()
        finally:
            for end in list(self.ends.values()):
                end.relay.abort()
            self.drop_handed()
            self.epoll.close()
            for pipe in self.pipes:
                for fd in pipe:
                    os.close(fd)

    def _serve(self) -> None:
        listen_fd = self.listener.fileno()
        self.epoll.register(listen_fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self.epoll.register(self.wake, select.EPOLLIN)
        self.epoll.register(self.handoff, select.EPOLLIN)
        poll, ends, wake, handoff = self.epoll.poll, self.ends, self.wake, self.handoff
        while True:
            for fd, events in poll():
                end = ends.get(fd)
                if end is not None:
                    if not end.relay.closed:
                        end.relay.event(end, events)
                elif fd == listen_fd:
                    self._accept()
                elif fd == handoff:
                    self._take_handed()
                elif fd == wake:
                    return                          # stopping


class _Proxy:
    # A subclass that talks with its clients before carrying them sets takes_clients and
    # overrides accepted(); the plain proxy's loops never call it.
    takes_clients = False

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
        self.to_family = socket.AF_INET6 if ":" in self.to_host else socket.AF_INET
        self.to_address = self._resolve(self.to_host, self.to_port, self.to_family)
        # A plain TCP listener's accepted sockets inherit TCP_NODELAY and TCP_NOTSENT_LOWAT
        # (Linux clones the listener's tcp_sock); an MPTCP listener's do not all.
        self.accepted_needs_options = args.direction != "tcp-to-mptcp"
        self.lock = threading.Lock()
        self.count = 0
        self.done = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.stopping = False
        self.loops: list[_Loop] = []
        self._turn = itertools.count()              # adopt's next loop (round robin)
        self._netns_fds: tuple[int, int] | None = None
        if args.netns:
            home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(f"/var/run/netns/{args.netns}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(home)
                raise
            self._netns_fds = (home, target)

    @staticmethod
    def _resolve(host: str, port: int, family: int) -> tuple:
        """--to as connect() takes it: an address as it is; a name is looked up once, now
        (a non-blocking connect cannot look it up for us)."""
        try:
            socket.inet_pton(family, host)
            return (host, port)
        except OSError:
            pass
        try:
            return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
        except socket.gaierror as exc:
            raise MptcpError(f"cannot resolve {host}: {exc.strerror}") from None

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

    def enter_upstream_namespace(self) -> None:
        """A loop thread makes its upstream sockets in --netns when they are the MPTCP side
        (tcp-to-mptcp): it moves there for good, once, not per connection."""
        if self._netns_fds is not None and self.args.direction == "tcp-to-mptcp":
            from ..net.netns import _setns
            _setns(self._netns_fds[1])

    def _listener(self) -> socket.socket:
        host, port = self.listen_host, self.listen_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.args.direction == "tcp-to-mptcp":
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            sock = self._mptcp_socket(family)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if getattr(self.args, "workers", 1) > 1:   # one listener per worker (workers.py)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            self.prepare(sock)                      # (inherited by plain TCP's accepted)
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise MptcpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return sock

    def upstream_socket(self) -> socket.socket:
        """A non-blocking socket for the other side, prepared, not yet connected (made in
        the loop's namespace: see enter_upstream_namespace)."""
        if self.args.direction == "mptcp-to-tcp":
            sock = socket.socket(self.to_family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        else:
            sock = kernel.mptcp_socket(self.to_family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            if self.args.address and self.args.direction == "tcp-to-mptcp":
                sock.bind((self.args.address[0], 0))
            self.prepare(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def prepare(self, sock: socket.socket) -> None:
        """Non-blocking (the loops wait in epoll), no Nagle delay (as asyncio sets on every
        TCP transport; MPTCP takes it since Linux 5.19), and at most unsent_limit bytes not
        yet sent (TCP_NOTSENT_LOWAT: past that the socket is not writable, so the relay
        stops reading the other side, whose window then closes)."""
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, self.unsent_limit)

    # ------------------------------------------------------------------ connections
    def refuse(self, client: socket.socket, peer, exc: BaseException) -> None:
        """One line per refused client, and a reset: an empty stream that ends cleanly would
        look like an answer (no free local port, refused, unreachable, ...)."""
        name = peer if isinstance(peer, str) else self.endpoint(peer)
        print(f"mptcp-fast proxy: {name}: refused, {self.to_host}:{self.to_port}: "
              f"{self.error_text(exc)}", file=sys.stderr, flush=True)
        reset(client)

    def accepted(self, client: socket.socket, peer) -> bool:
        """With ``takes_clients``: an accepted client (non-blocking, prepared) offered to
        the subclass, on a loop thread (so it must not block). True: the subclass took it,
        and closes it or hands it back through adopt(); False: the loop connects upstream."""
        return False

    def adopt(self, client: socket.socket, upstream: socket.socket, peer,
              **fields: Any) -> None:
        """From any thread: carry a connected pair (a client taken by accepted(), and the
        upstream the subclass connected) on one of the loops, as the loops' own connections
        are carried, reported (``fields`` added to the report) and closed. Once the proxy
        is stopping both are reset instead."""
        for sock in (client, upstream):
            self.prepare(sock)
        loop = self.loops[next(self._turn) % len(self.loops)]
        with self.lock:                             # (stop() sets stopping under it)
            if not self.stopping:
                loop.hand(client, upstream, self.endpoint(peer), fields)
                return
        reset(client)
        reset(upstream)

    def finished(self, relay: _Relay, up: int, down: int, seconds: float) -> None:
        subflows = [[f"{local[0]}:{local[1]}", f"{remote[0]}:{remote[1]}"]
                    for local, remote in relay.subflows]
        with self.lock:
            if self.stopping:
                return
            self.report(self.args, relay.peer, up, down, subflows, seconds, **relay.fields)
            self.count += 1
            if self.args.count and self.count >= self.args.count:
                self.wake_main()

    def wake_main(self) -> None:
        os.eventfd_write(self.done, 1)

    # ------------------------------------------------------------------ the main thread
    def serve(self) -> int:
        args = self.args
        listener = self._listener()
        try:
            listener.setblocking(False)
            self.loops = [_Loop(self, listener) for _ in range(_loops())]
            for loop in self.loops:
                loop.start()
            if args.json:
                print(json.dumps({"event": "listening", "command": "proxy",
                                  "listen": args.listen, "to": args.to,
                                  "direction": args.direction, "engine": args.engine}),
                      flush=True)
            else:
                print(f"proxy ({args.direction}, {args.engine}): {args.listen} -> {args.to}",
                      flush=True)
            poller = select.poll()
            poller.register(self.done, select.POLLIN)
            while not poller.poll(TRIM_EVERY * 1000):
                gc.collect()
                self.trim()
            for loop in self.loops:
                if loop.failure is not None:
                    raise loop.failure
            return 0
        finally:
            self.stop()
            listener.close()

    def stop(self) -> None:
        """Abort what is still carried: each loop resets its connections and ends."""
        with self.lock:
            self.stopping = True
        for loop in self.loops:
            if loop.is_alive():
                with contextlib.suppress(OSError):
                    os.eventfd_write(loop.wake, 1)
        end = time.monotonic() + 2.0
        for loop in self.loops:
            loop.join(max(0.0, end - time.monotonic()))
            if not loop.is_alive():                 # (a loop still running keeps them)
                loop.drop_handed()                  # (a loop that failed left them there)
                os.close(loop.wake)
                os.close(loop.handoff)


def run_proxy(args, **helpers) -> int:
    """The kernel engine's proxy (see the module text); ``helpers``: the report, error and
    address functions and limits the asyncio proxy uses, so both print the same."""
    return _Proxy(args, **helpers).serve()

"""asyncio streams over the userspace engine, in the shape of ``asyncio.open_connection``
and ``asyncio.start_server``::

    device = TunDevice("mft0", offload=True); device.configure(["198.18.0.1/24"])
    stack = Stack(["198.18.0.2", "198.18.2.2"], device)         # an Endpoint on this loop
    reader, writer = await stack.open_connection("198.18.0.1", 5000)
    writer.write(b"hello"); await writer.drain()
    data = await reader.read(65536)
    writer.close(); await writer.wait_closed()

    server = await stack.start_server(handle, 5000)             # handle(reader, writer)

The device's descriptor is watched with the loop's ``add_reader`` and the engine's timer is a
``call_at`` on the loop, whose clock (monotonic) is the engine's clock: nothing blocks and
nothing polls. uvloop works the same (``uvloop.install()`` or its loop).

Flow control both ways: ``drain()`` waits while more than ``write_limit`` bytes wait beyond
what the connection's send buffer took; a reader whose buffer is over its limit stops being
fed, so the engine stops reading that connection's data and its receive window closes (RFC
8684 §3.3.4) until the application reads again.

The readers are ``asyncio.StreamReader`` (read, readline, readexactly, at_eof, async for...);
the writers have the methods of ``asyncio.StreamWriter``, and ``get_extra_info`` answers
"peername", "sockname", "connection" (the engine's Connection) and "subflows".
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterable

from ..engine import Config, Endpoint
from .tun import DeviceWriter, TunDevice, write_packets
from ..engine import events as ev

if TYPE_CHECKING:
    from .._typing import Address
    from ..engine.connection import Connection

__all__ = ["Stack", "MptcpStreamWriter", "open_connection", "start_server"]

# A reader is fed until it holds twice its limit (asyncio's StreamReader): asyncio's own 64 KiB
# keeps what waits here small, so the engine's receive window follows how fast the application
# really reads. A writer's bytes beyond the engine's send space wait here up to 1 MiB before
# drain() waits (with 64 KiB, 2,000 proxied echoes took a fifth longer).
READ_LIMIT = 1 << 16              # bytes a reader buffers before the engine stops feeding it
WRITE_LIMIT = 1 << 20             # bytes waiting beyond the send space before drain() waits

# what start_server calls for every connection: a coroutine function of (reader, writer)
Handler = Callable[[asyncio.StreamReader, "MptcpStreamWriter"], Coroutine[Any, Any, object]]


DEVICE_POLL = 0.001               # seconds: the device is read at least this often while
                                  # the stack works (see Stack._poll)


class _ReadTransport:
    """What an asyncio.StreamReader calls to pause and resume its producer: here, whether
    the stack reads this connection's data out of the engine."""

    def __init__(self, stack: "Stack", cid: int, limit: int):
        self._stack, self._cid = stack, cid
        self.limit = limit          # the reader's limit: what one DataReceived event carries
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        # Soon, not now: StreamReader._wait_for_data resumes its transport and only then makes
        # the future that data wakes; data fed from inside this call would wake nobody.
        if self.paused:
            self.paused = False
            self._stack._loop.call_soon(self._stack._resume, self._cid)


class MptcpStreamWriter:
    """The writing half of an MPTCP connection (the methods of asyncio.StreamWriter), made by
    ``Stack.open_connection`` and ``Stack.start_server``; never built by the user.

    ``write`` raises ``RuntimeError`` after ``close()`` or ``write_eof()``; once the connection
    was reset or aborted, ``write`` and ``drain`` raise ``ConnectionResetError``.
    """

    stack: Stack          # set by the module's open_connection (its own Stack, closed with it)

    def __init__(self, stack: Stack, conn: Connection) -> None:
        self._stack = stack
        self._conn = conn
        self._pending: collections.deque[bytes] = collections.deque()   # not taken yet
        self._pending_bytes = 0
        self._closing = False
        self._eof_requested = False
        self._drained: asyncio.Future[None] | None = None   # a Future while drain() waits
        self._closed = stack._loop.create_future()
        self._error: Exception | None = None

    # -- writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (bytes-like) for the connection; ``drain()`` waits while much is
        queued.

        Raises:
            RuntimeError: after ``close()`` or ``write_eof()``.
            ConnectionResetError: the connection was reset or aborted.
        """
        if self._closing or self._eof_requested:
            raise RuntimeError("write() after close() or write_eof()")
        if self._error is not None:
            raise self._error
        if data:
            self._pending.append(bytes(data))
            self._pending_bytes += len(data)
            self._stack._push(self)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """``write`` each of ``lines``."""
        for line in lines:
            self.write(line)

    async def drain(self) -> None:
        """Wait until what was written and not yet taken by the connection is at most
        ``WRITE_LIMIT`` (1 MiB) bytes.

        Raises:
            ConnectionResetError: the connection was reset or aborted.
        """
        if self._error is not None:
            raise self._error
        while self._pending_bytes > WRITE_LIMIT:
            self._drained = self._stack._loop.create_future()
            await self._drained
            if self._error is not None:
                raise self._error

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the connection (as asyncio's transports say):
        over ``WRITE_LIMIT``, ``drain()`` waits."""
        return self._pending_bytes

    def can_write_eof(self) -> bool:
        """True: an MPTCP connection can end one direction (DATA_FIN)."""
        return True

    def write_eof(self) -> None:
        """Send the DATA_FIN once everything written went out (the reading half stays open)."""
        self._eof_requested = True
        self._stack._push(self)

    # -- closing
    def close(self) -> None:
        """Close the writing half once everything written went out (DATA_FIN); the peer
        may still send. ``wait_closed()`` waits for the DATA_FIN's acknowledgement."""
        if not self._closing:
            self._closing = True
            self._eof_requested = True
            self._stack._push(self)

    def is_closing(self) -> bool:
        """Whether ``close()`` or ``abort()`` was called."""
        return self._closing

    async def wait_closed(self) -> None:
        """Until our DATA_FIN was acknowledged or the connection ended."""
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        """End the connection at once (MP_FASTCLOSE, RFC 8684 §3.5)."""
        self._closing = True
        self._conn.abort(self._stack._loop.time())
        self._stack._turn()

    # -- information
    @property
    def transport(self):
        """The writer itself (code written for asyncio reads ``writer.transport``)."""
        return self

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"`` and ``"sockname"`` (the initial subflow's (address, port)),
        ``"subflows"`` (a list of (local, remote) pairs of the live subflows),
        ``"connection"`` (the engine's ``Connection``); ``default`` for anything else."""
        conn = self._conn
        if name == "connection":
            return conn
        if name == "subflows":
            return [(_address(sf.local, sf.lport), _address(sf.remote, sf.rport))
                    for sf in conn.subflows]
        if name in ("peername", "sockname"):
            initial = conn.subflows[0] if conn.subflows else None
            if initial is None:
                return default
            return _address(initial.remote, initial.rport) if name == "peername" \
                else _address(initial.local, initial.lport)
        return default

    # -- called by the stack
    def _feed(self) -> None:
        """Hand the connection what it takes now; the DATA_FIN once all went."""
        conn = self._conn
        if conn.terminated:                          # nobody will take them
            if conn.terminated != "closed" and self._error is None:
                # (its reader may be paused, holding back the event that says so: a writer
                # waiting in drain() learns it here)
                self._error = _reset(conn.terminated)
            self._let_go()
            return
        pending = self._pending
        while pending:
            space = conn.send_space
            if space <= 0:
                break
            head = pending[0]
            taken = conn.send(head if len(head) <= space else memoryview(head)[:space])
            self._pending_bytes -= taken
            if taken == len(head):
                pending.popleft()
            else:
                pending[0] = head[taken:]
                break
        if not pending and self._eof_requested and not conn.local_closed:
            conn.close()
        if self._pending_bytes <= WRITE_LIMIT:
            self._wake_drain()

    def _let_go(self) -> None:
        """Drop the bytes the connection never took, and wake a drain() waiting on them."""
        self._pending.clear()
        self._pending_bytes = 0
        self._wake_drain()

    def _wake_drain(self) -> None:
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    def _check_closed(self) -> None:
        conn = self._conn
        if not self._closed.done() and (conn.terminated or (conn.local_closed and conn.fin_acked)):
            self._closed.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._let_go()                               # the connection is gone: so are they
        self._stack._wanting.discard(self)
        if not self._closed.done():
            self._closed.set_result(None)


def _reset(reason: str) -> ConnectionResetError:
    """What a stream raises once its connection ended otherwise than closed."""
    return ConnectionResetError(f"MPTCP connection {reason}")


def _address(packed: bytes, port: int):
    return (str(ipaddress.ip_address(packed)), port)


class Stack:
    """An Endpoint driven by a TUN device on an asyncio loop (see the module text). The stack
    does not own the device: close it after ``stack.close()``.

    Args:
        addresses: the engine's own addresses (routed into ``device``, not the kernel's).
        device: a configured ``TunDevice``.
        config: the endpoint's ``Config``.
        loop: the event loop (the running one by default).

    Raises:
        RuntimeError: no ``loop`` and none running.
        ValueError, TypeError: as ``Endpoint`` raises them for the addresses and config.

    Attributes:
        endpoint (Endpoint): the engine: its ``stats`` and connections.
    """

    def __init__(self, addresses: Iterable[Address], device: TunDevice,
                 config: Config | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.endpoint = Endpoint(addresses, config)
        self.endpoint.watch_send_space = True           # (connections_with_send_space)
        self.device = device
        self._loop = loop or asyncio.get_running_loop()
        self._readers: dict[int, asyncio.StreamReader] = {}
        self._transports: dict[int, _ReadTransport] = {}
        self._writers: dict[int, MptcpStreamWriter] = {}
        self._opening: dict[int, asyncio.Future[None]] = {}
        self._wanting: set[MptcpStreamWriter] = set()    # writers _turn must feed
        self._blocked: dict[int, MptcpStreamWriter] = {}   # connection id -> writer waiting
                                                         # for send space (not fed until
                                                         # the engine says it has some)
        self._handlers: dict[int | None, Handler] = {}  # port -> handler
        self._tasks: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._received_at = 0.0                          # when the device was last read
        self._closed = False
        # a TunDevice reads with checksum flags and writes a batch in one call; any other
        # object with read_batch() and write() will do too (a test's pipe)
        self._tun = isinstance(device, TunDevice)
        # large batches go to the device from a thread of its own (tun.DeviceWriter)
        self._out = DeviceWriter(device) if self._tun else None
        self._loop.add_reader(device.fileno(), self._on_readable)

    # ------------------------------------------------------------------ the user's calls
    async def open_connection(self, host: str, port: int, local_address: Address | None = None,
                              limit: int = READ_LIMIT
                              ) -> tuple[asyncio.StreamReader, MptcpStreamWriter]:
        """Open an MPTCP connection to ``host``:``port`` from ``local_address`` (the
        stack's first address of that family by default); return (reader, writer) once it is
        established. ``limit`` is the reader's buffer limit in bytes.

        Raises:
            ConnectionRefusedError: the connection failed before it was established
                (refused, reset or timed out).
            ValueError: a bad address or port.
        """
        conn = self.endpoint.connect((host, port), self._loop.time(), local_address)
        opened = self._opening[conn.id] = self._loop.create_future()
        self._streams(conn, limit)
        self._turn()
        try:
            await opened
        finally:
            self._opening.pop(conn.id, None)
        return self._readers[conn.id], self._writers[conn.id]

    async def start_server(self, handler: Handler, port: int) -> Server:
        """Call ``handler(reader, writer)`` (a coroutine function) for every connection to
        ``port`` on any of the stack's addresses; returns the ``Server``.

        Raises:
            OSError: ``port`` is already served by this stack (errno 98, EADDRINUSE).
        """
        if port in self._handlers:
            raise OSError(98, f"port {port} is already served by this stack")
        self._handlers[port] = handler
        self.endpoint.listen(port)
        return Server(self, port)

    def close(self) -> None:
        """Abort what is still open and stop watching the device."""
        if self._closed:
            return
        self._closed = True
        now = self._loop.time()
        for conn in list(self.endpoint.connections.values()):
            conn.abort(now)
        self._flush(now)
        if self._out is not None:
            self._out.close()                           # (what it holds goes out first)
        self._loop.remove_reader(self.device.fileno())
        if self._timer is not None:
            self._timer.cancel()
        for writer in self._writers.values():
            writer._fail(ConnectionAbortedError("the stack was closed"))

    # ------------------------------------------------------------------ the engine's turns
    def _on_readable(self) -> None:
        self._receive(self._loop.time())
        self._turn()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.endpoint.handle_timer(self._loop.time())
        self._turn()

    def _receive(self, now: float) -> None:
        self._received_at = now
        if self._tun:          # the kernel's own checksums are not summed again (read_batch)
            verified: list[bool] = []
            packets = self.device.read_batch(verified=verified)
            if packets:
                self.endpoint.receive_packets(packets, now, verified)
        else:
            packets = self.device.read_batch()
            if packets:
                self.endpoint.receive_packets(packets, now)

    def _poll(self) -> None:
        """The device and the timer, from inside any turn a millisecond after the last read.

        asyncio calls the device's reader once per pass of its loop, and a pass runs every
        callback that was ready: with thousands of connections that is thousands of client
        reads and writes, a pass took up to 0.8 s, and the kernel's packets waited that long
        in the device (its senders then saw round trips of a second, timed out and sent one
        segment per packet). Polled here, a packet waits about a millisecond however long the
        pass, and a timer fires on time."""
        now = self._loop.time()
        if now - self._received_at >= DEVICE_POLL:
            self._receive(now)
        if self._timer_at is not None and now >= self._timer_at:
            self.endpoint.handle_timer(now)

    def _turn(self) -> None:
        """Events to the streams, the writers' bytes to the engine, packets out, the timer."""
        if self._closed:
            return
        self._poll()
        self._dispatch()
        blocked = self._blocked
        for conn in self.endpoint.connections_with_send_space():
            writer = blocked.pop(conn.id, None)
            if writer is not None:
                self._wanting.add(writer)
        for writer in list(self._wanting):               # writers with bytes or a close left
            writer._feed()
            conn = writer._conn
            if not writer._pending and (not writer._eof_requested or conn.local_closed
                                        or conn.terminated):
                self._wanting.discard(writer)
            elif writer._pending and not conn.terminated and conn.send_space <= 0:
                self._wanting.discard(writer)             # fed again once acknowledgments
                blocked[conn.id] = writer                 # make room: a turn with many such
                                                          # writers costs nothing for them
        now = self._loop.time()
        self._flush(now)
        self._dispatch()                 # flushing can end connections: their last events
        timer = self.endpoint.get_timer()
        if timer != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = timer
            self._timer = self._loop.call_at(timer, self._on_timer) if timer is not None else None

    def _flush(self, now: float) -> None:
        packets = self.endpoint.packets_to_send(now)
        if self._out is not None:
            self._out.write_batch(packets)
        else:
            write_packets(self.device, packets)

    def _push(self, writer: MptcpStreamWriter) -> None:
        self._wanting.add(writer)
        self._turn()

    def _resume(self, cid: int) -> None:
        conn = self.endpoint.connections.get(cid)
        if conn is not None:
            self._drain_events(conn)
            self._turn()

    def _dispatch(self) -> None:
        for conn in self.endpoint.connections_with_events():
            self._drain_events(conn)

    def _drain_events(self, conn) -> None:
        """Read this connection's events while its reader wants data."""
        while True:
            transport = self._transports.get(conn.id)
            if transport is not None and transport.paused:
                return
            event = conn.next_event(transport.limit if transport is not None else READ_LIMIT)
            if event is None:
                return
            self._on_event(conn, event)

    def _streams(self, conn, limit: int = READ_LIMIT):
        reader = asyncio.StreamReader(limit=limit, loop=self._loop)
        transport = _ReadTransport(self, conn.id, limit)
        reader.set_transport(transport)  # type: ignore[arg-type]  # (it calls pause/resume only)
        self._readers[conn.id] = reader
        self._transports[conn.id] = transport
        self._writers[conn.id] = writer = MptcpStreamWriter(self, conn)
        return reader, writer

    def _on_event(self, conn, event) -> None:
        kind = type(event)
        cid = conn.id
        if kind is ev.DataReceived:
            self._readers[cid].feed_data(event.data)
        elif kind is ev.ConnectionEstablished:
            if cid in self._opening:
                if not self._opening[cid].done():
                    self._opening[cid].set_result(None)
            elif cid not in self._readers:
                handler = self._handlers.get(conn.subflows[0].lport if conn.subflows else None)
                reader, writer = self._streams(conn)
                if handler is not None:
                    task = self._loop.create_task(handler(reader, writer))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        elif kind is ev.EndOfStream:
            reader = self._readers.get(cid)
            if reader is not None:
                reader.feed_eof()
        elif kind is ev.ConnectionTerminated:
            self._terminated(cid, event.reason)
        writer = self._writers.get(cid)
        if writer is not None:
            writer._check_closed()

    def _terminated(self, cid: int, reason: str) -> None:
        opening = self._opening.get(cid)
        if opening is not None and not opening.done():
            opening.set_exception(ConnectionRefusedError(f"MPTCP connection failed: {reason}"))
        reader = self._readers.pop(cid, None)
        writer = self._writers.pop(cid, None)
        self._transports.pop(cid, None)
        self._blocked.pop(cid, None)
        if reason == "closed":
            if reader is not None and not reader.at_eof():
                reader.feed_eof()
            if writer is not None:
                writer._let_go()                         # (nothing is left to take them)
                self._wanting.discard(writer)
                writer._check_closed()
            return
        error = _reset(reason)
        if reader is not None:
            reader.set_exception(error)
        if writer is not None:
            writer._fail(error)


class Server:
    """What ``start_server`` returns (the useful part of asyncio.Server)."""

    stack: Stack          # set by the module's start_server (its own Stack)

    def __init__(self, stack: Stack, port: int) -> None:
        self._stack, self.port = stack, port
        self._closed = stack._loop.create_future()

    def close(self) -> None:
        """Stop accepting connections (those accepted go on)."""
        self._stack._handlers.pop(self.port, None)
        self._stack.endpoint.listening.discard(self.port)
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Until ``close()`` was called."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until ``close()`` (as ``asyncio.Server.serve_forever``)."""
        await self.wait_closed()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()


async def open_connection(host: str, port: int, *, local_addresses: Iterable[Address],
                          device: TunDevice, config: Config | None = None
                          ) -> tuple[asyncio.StreamReader, MptcpStreamWriter]:
    """``asyncio.open_connection`` over the engine: a Stack of its own on ``device`` with
    ``local_addresses`` (the first one opens the connection, the others join). The stack
    closes with the writer (after ``wait_closed``); the caller closes the device.

    Args:
        host: the server's address.
        port: the server's port.
        local_addresses: the engine's own addresses, routed into ``device``.
        device: a configured ``TunDevice``.
        config: the endpoint's ``Config``.

    Returns:
        A (reader, writer) pair: an ``asyncio.StreamReader`` and an ``MptcpStreamWriter``
        whose ``stack`` attribute is the ``Stack``.

    Raises:
        ConnectionRefusedError: the connection failed before it was established.
    """
    stack = Stack(local_addresses, device, config)
    try:
        reader, writer = await stack.open_connection(host, port)
    except BaseException:
        stack.close()
        raise
    writer.stack = stack
    return reader, writer


async def start_server(handler: Handler, port: int, *, local_addresses: Iterable[Address],
                       device: TunDevice, config: Config | None = None) -> Server:
    """``asyncio.start_server`` over the engine: a Stack of its own on ``device``; its
    ``stack`` attribute reaches the engine. ``handler(reader, writer)`` is a coroutine
    function called for every connection to ``port``; the other arguments are those of
    ``open_connection``."""
    stack = Stack(local_addresses, device, config)
    server = await stack.start_server(handler, port)
    server.stack = stack
    return server

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

Each connection is an asyncio transport (``MptcpTransport``, ``writer.transport``) under a
protocol that feeds the streams, so asyncio's TLS runs over it: ``ssl=`` on
``open_connection`` and ``start_server`` as asyncio's own take it, or ``await
writer.start_tls(context)`` on an open connection (STARTTLS)::

    server = await stack.start_server(handle, 5443, ssl=server_context)
    reader, writer = await stack.open_connection("198.18.0.1", 5443, ssl=client_context,
                                                 server_hostname="example.test")
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import ssl as _ssl
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterable, Union

from ..engine import Config, Endpoint
from .tun import DeviceWriter, TunDevice, write_packets
from ..engine import events as ev

if TYPE_CHECKING:
    from .._typing import Address
    from ..engine.connection import Connection

__all__ = ["Stack", "MptcpStreamWriter", "MptcpTransport", "open_connection", "start_server"]

_log = logging.getLogger(__name__)

# A reader is fed until it holds twice its limit (asyncio's StreamReader): asyncio's own 64 KiB
# keeps what waits here small, so the engine's receive window follows how fast the application
# really reads. A writer's bytes beyond the engine's send space wait here up to 1 MiB before
# drain() waits (with 64 KiB, 2,000 proxied echoes took a fifth longer).
READ_LIMIT = 1 << 16              # bytes a reader buffers before the engine stops feeding it
WRITE_LIMIT = 1 << 20             # bytes waiting beyond the send space before drain() waits

# what start_server calls for every connection: a coroutine function of (reader, writer)
Handler = Callable[[asyncio.StreamReader, "MptcpStreamWriter"], Coroutine[Any, Any, object]]
# the ssl= of open_connection (a context, True for the default one, or None: no TLS)
SslArgument = Union[_ssl.SSLContext, bool, None]


DEVICE_POLL = 0.001               # seconds: the device is read at least this often while
                                  # the stack works (see Stack._poll)


class MptcpTransport(asyncio.Transport):
    """One MPTCP connection as an asyncio transport (``writer.transport``): what the stack
    reads out of the engine goes to the protocol (``data_received``, or a
    ``BufferedProtocol``'s buffer), the peer's DATA_FIN to ``eof_received``, the connection's
    end to ``connection_lost``. A protocol that pauses reading stops the stack taking this
    connection's data out of the engine, so its receive window closes (RFC 8684 §3.3.4).

    ``loop.start_tls`` takes it (``_start_tls_compatible``), which is how
    ``MptcpStreamWriter.start_tls`` and the ``ssl=`` of ``open_connection`` and
    ``start_server`` put TLS on the stream. ``write`` raises ``RuntimeError`` after
    ``close()`` or ``write_eof()`` and ``ConnectionResetError`` once the connection was reset
    or aborted; ``close()`` sends the DATA_FIN after what was written (the peer may still
    send: its bytes still reach the protocol).
    """

    _start_tls_compatible = True          # (asyncio's start_tls refuses other transports)

    def __init__(self, stack: Stack, conn: Connection, protocol: asyncio.BaseProtocol,
                 limit: int) -> None:
        super().__init__()
        self._stack = stack
        self._conn = conn
        self._protocol = protocol
        self.limit = limit               # bytes one DataReceived event carries at most
        self._pending: collections.deque[bytes] = collections.deque()   # not taken yet
        self._pending_bytes = 0
        self._closing = False
        self._eof_requested = False
        self._reading_paused = False
        self._writing_paused = False     # the protocol was told pause_writing()
        self._closed = stack._loop.create_future()   # DATA_FIN acknowledged, or the end
        self._error: Exception | None = None
        self._lost = False               # connection_lost was called
        # every subflow the connection had since its streams opened, closed ones too
        # ("subflows_ever"): a join that ended before the connection still counts
        self._ever = {sf.sid: (_address(sf.local, sf.lport), _address(sf.remote, sf.rport))
                      for sf in conn.subflows}

    # -- asyncio.BaseTransport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"`` and ``"sockname"`` (the initial subflow's (address, port)),
        ``"subflows"`` (a list of (local, remote) pairs of the live subflows),
        ``"subflows_ever"`` (the same of every subflow it had, in order, closed ones too),
        ``"connection"`` (the engine's ``Connection``); ``default`` for anything else."""
        conn = self._conn
        if name == "connection":
            return conn
        if name == "subflows_ever":
            return list(self._ever.values())
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

    def is_closing(self) -> bool:
        """Whether ``close()`` or ``abort()`` was called (or the connection ended)."""
        return self._closing or self._lost

    def close(self) -> None:
        """Close the writing half once everything written went out (DATA_FIN)."""
        if not self._closing:
            self._closing = True
            self._eof_requested = True
            self._stack._push(self)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Give the connection's events to ``protocol`` from now on (start_tls does)."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol the connection's events go to."""
        return self._protocol

    # -- asyncio.ReadTransport
    def is_reading(self) -> bool:
        """Whether the stack takes this connection's data out of the engine."""
        return not self._reading_paused and not self._lost

    def pause_reading(self) -> None:
        """Stop taking this connection's data out of the engine: its receive window
        closes as the engine's buffer fills."""
        self._reading_paused = True

    def resume_reading(self) -> None:
        """Take this connection's data again (soon: from the loop's next pass)."""
        # Soon, not now: StreamReader._wait_for_data resumes its transport and only then makes
        # the future that data wakes; data fed from inside this call would wake nobody.
        if self._reading_paused:
            self._reading_paused = False
            self._stack._loop.call_soon(self._stack._resume, self._conn.id)

    # -- asyncio.WriteTransport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (bytes-like) for the connection.

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
            if self._pending_bytes > WRITE_LIMIT and not self._writing_paused:
                self._writing_paused = True
                self._protocol.pause_writing()

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """``write`` each of ``lines``."""
        for line in lines:
            self.write(line)

    def write_eof(self) -> None:
        """Send the DATA_FIN once everything written went out (the reading half stays open)."""
        self._eof_requested = True
        self._stack._push(self)

    def can_write_eof(self) -> bool:
        """True: an MPTCP connection can end one direction (DATA_FIN)."""
        return True

    def abort(self) -> None:
        """End the connection at once (MP_FASTCLOSE, RFC 8684 §3.5)."""
        self._closing = True
        self._conn.abort(self._stack._loop.time())
        self._stack._turn()

    def _force_close(self, exc: BaseException | None) -> None:
        """What asyncio's TLS protocol calls on a fatal error (a failed handshake, its
        timeouts): the connection aborted, and the protocol told at once."""
        self._closing = True
        self._connection_lost(exc if isinstance(exc, Exception) else None)   # (first: the
        if not self._conn.terminated:                                         # handshake's
            self.abort()                                                      # own error)

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the connection: over ``WRITE_LIMIT`` (1 MiB)
        the protocol is told to pause writing."""
        return self._pending_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high): both ``WRITE_LIMIT``."""
        return (WRITE_LIMIT, WRITE_LIMIT)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """The limits are the stack's (``WRITE_LIMIT``): the connection's send buffer, which
        follows the path, is the real one."""

    # -- called by the stack
    def _deliver(self, data: bytes | memoryview) -> None:
        """Bytes the engine delivered, to the protocol. A protocol that fails on them (TLS
        on bytes that are no TLS) ends this connection, as asyncio's transports end theirs,
        and no other."""
        protocol = self._protocol
        try:
            if isinstance(protocol, asyncio.BufferedProtocol):
                view = memoryview(data)
                while view:
                    buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
                    n = min(len(buffer), len(view))
                    if not n:
                        raise RuntimeError("get_buffer() returned an empty buffer")
                    buffer[:n] = view[:n]
                    protocol.buffer_updated(n)
                    view = view[n:]
            else:
                if type(data) is not bytes and type(protocol) is not _StreamProtocol:
                    data = bytes(data)         # asyncio's contract: data_received gets bytes
                protocol.data_received(data)   # type: ignore[attr-defined]
        except Exception as exc:
            self._force_close(exc)

    def _end_of_stream(self) -> None:
        """The peer's DATA_FIN: as asyncio's transports, close when the protocol says so."""
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except Exception as exc:
            self._force_close(exc)
            return
        if not keep_open:
            self.close()

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
            self._resume_writing()

    def _let_go(self) -> None:
        """Drop the bytes the connection never took, and wake a writer waiting on them."""
        self._pending.clear()
        self._pending_bytes = 0
        self._resume_writing()

    def _resume_writing(self) -> None:
        if self._writing_paused:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _check_closed(self) -> None:
        conn = self._conn
        if not self._closed.done() and (conn.terminated or (conn.local_closed and conn.fin_acked)):
            self._closed.set_result(None)

    def _connection_lost(self, error: Exception | None) -> None:
        """The connection ended (``error`` None: closed both ways)."""
        if error is not None:
            self._error = error
        self._let_go()                               # the connection is gone: so are they
        self._stack._wanting.discard(self)
        if not self._closed.done():
            self._closed.set_result(None)
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(error)


class _StreamProtocol(asyncio.Protocol):
    """Between a transport (ours, or the TLS transport over it) and the streams: bytes and
    the end into the StreamReader, the transport's pause/resume_writing into drain()."""

    def __init__(self, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = reader
        self._loop = loop
        self._paused = False
        self._drained: asyncio.Future[None] | None = None   # a Future while drain() waits
        self._error: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Ours first; after start_tls the TLS transport, made by asyncio's TLS protocol, so
        # that a full reader pauses the TLS layer (which pauses ours as its buffer fills).
        # StreamReader.set_transport refuses a second transport: the attribute is set.
        self._reader._transport = transport      # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        return True                              # the writing half stays open

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            if not self._reader.at_eof():
                self._reader.feed_eof()
        else:
            self._error = exc
            self._reader.set_exception(exc)
        self.resume_writing()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    async def drained(self) -> None:
        while self._paused:
            self._drained = self._loop.create_future()
            await self._drained


class MptcpStreamWriter:
    """The writing half of an MPTCP connection (the methods of asyncio.StreamWriter, with
    ``start_tls``), made by ``Stack.open_connection`` and ``Stack.start_server``; never
    built by the user. ``transport`` is the connection's ``MptcpTransport``, or the TLS
    transport over it after ``start_tls``.

    ``write`` raises ``RuntimeError`` after ``close()`` or ``write_eof()``; once the connection
    was reset or aborted, ``write`` and ``drain`` raise ``ConnectionResetError``.
    """

    stack: Stack          # set by the module's open_connection (its own Stack, closed with it)

    def __init__(self, transport: MptcpTransport, protocol: _StreamProtocol,
                 reader: asyncio.StreamReader, server_side: bool) -> None:
        self._mptcp = transport
        self._transport: asyncio.WriteTransport = transport
        self._protocol = protocol
        self._reader = reader
        self._server_side = server_side
        self._ended = False              # close() or write_eof() was called here
        self._closing = False            # close() was called here

    # -- writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (bytes-like) for the connection; ``drain()`` waits while much is
        queued.

        Raises:
            RuntimeError: after ``close()`` or ``write_eof()``.
            ConnectionResetError: the connection was reset or aborted.
        """
        mptcp = self._mptcp
        if self._ended or mptcp._closing or mptcp._eof_requested:
            raise RuntimeError("write() after close() or write_eof()")
        if mptcp._error is not None:
            raise mptcp._error
        self._transport.write(data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """``write`` each of ``lines``."""
        for line in lines:
            self.write(line)

    async def drain(self) -> None:
        """Wait until what was written and not yet taken by the connection is at most
        ``WRITE_LIMIT`` (1 MiB) bytes (with TLS: until the TLS layer takes more).

        Raises:
            ConnectionResetError: the connection was reset or aborted.
        """
        if self._mptcp._error is not None:
            raise self._mptcp._error
        await self._protocol.drained()
        if self._mptcp._error is not None:
            raise self._mptcp._error

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the connection (as asyncio's transports say):
        over ``WRITE_LIMIT``, ``drain()`` waits."""
        return self._transport.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        """True on a plain connection (DATA_FIN); False over TLS, which ends only whole."""
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        """Send the DATA_FIN once everything written went out (the reading half stays open).

        Raises:
            NotImplementedError: over TLS (TLS ends only whole: ``close()``).
        """
        self._transport.write_eof()
        self._ended = True

    # -- TLS
    async def start_tls(self, sslcontext: _ssl.SSLContext, *, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None) -> None:
        """Put TLS on the connection (as ``asyncio.StreamWriter.start_tls``): the handshake
        runs over the MPTCP stream; then this writer and its reader carry plaintext.
        The server side of the handshake is the side that accepted the connection.

        Raises:
            ssl.SSLError: the handshake failed (the connection is aborted).
            ConnectionResetError: the connection ended during the handshake.
        """
        await self.drain()
        loop = self._mptcp._stack._loop
        try:
            self._transport = await loop.start_tls(  # type: ignore[assignment]
                self._mptcp, self._protocol, sslcontext, server_side=self._server_side,
                server_hostname=None if self._server_side else server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout)
        except BaseException:
            self._mptcp.abort()
            raise

    # -- closing
    def close(self) -> None:
        """Close the writing half once everything written went out (DATA_FIN; over TLS the
        close_notify first); the peer may still send. ``wait_closed()`` waits for the
        DATA_FIN's acknowledgement."""
        self._ended = self._closing = True
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether ``close()`` or ``abort()`` was called."""
        return self._closing or self._mptcp._closing

    async def wait_closed(self) -> None:
        """Until our DATA_FIN was acknowledged or the connection ended."""
        await asyncio.shield(self._mptcp._closed)

    def abort(self) -> None:
        """End the connection at once (MP_FASTCLOSE, RFC 8684 §3.5)."""
        self._mptcp.abort()

    # -- information
    @property
    def transport(self) -> asyncio.WriteTransport:
        """The connection's ``MptcpTransport`` (or the TLS transport over it)."""
        return self._transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"`` and ``"sockname"`` (the initial subflow's (address, port)),
        ``"subflows"`` (a list of (local, remote) pairs of the live subflows),
        ``"connection"`` (the engine's ``Connection``); over TLS also ``"ssl_object"``,
        ``"peercert"``, ``"cipher"``; ``default`` for anything else."""
        return self._transport.get_extra_info(name, default)


def _ssl_context(ssl: SslArgument, server_side: bool) -> _ssl.SSLContext | None:
    """The context ``ssl=`` stands for (True: the default client context, as asyncio's)."""
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        if server_side:
            raise ValueError("a server needs an ssl.SSLContext with its certificate")
        return _ssl.create_default_context()
    if not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {type(ssl).__name__}")
    return ssl


async def _after_tls(handler: Handler, reader: asyncio.StreamReader,
                     writer: MptcpStreamWriter, context: _ssl.SSLContext) -> None:
    """A server's connection with ``ssl=``: the TLS handshake, then the handler (not called
    when the handshake fails: the connection was aborted, and the failure is logged)."""
    try:
        await writer.start_tls(context)
    except (OSError, EOFError, asyncio.TimeoutError) as exc:    # ssl.SSLError is an OSError
        _log.info("TLS handshake with %s failed: %s", writer.get_extra_info("peername"), exc)
        return
    await handler(reader, writer)


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
        self._transports: dict[int, MptcpTransport] = {}
        self._writers: dict[int, MptcpStreamWriter] = {}
        self._opening: dict[int, asyncio.Future[None]] = {}
        self._wanting: set[MptcpTransport] = set()       # transports _turn must feed
        self._blocked: dict[int, MptcpTransport] = {}    # connection id -> transport waiting
                                                         # for send space (not fed until
                                                         # the engine says it has some)
        self._handlers: dict[int | None, tuple[Handler, _ssl.SSLContext | None]] = {}   # port ->
                                                         # (handler, its ssl=)
        self._tasks: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._received_at = 0.0                          # when the device was last read
        self._closed = False
        # a TunDevice reads with checksum flags and writes a batch in one call; any other
        # object with read_batch() and write() will do too (a test's pipe)
        self._tun = isinstance(device, TunDevice)
        # large batches go to the device from a thread of its own (tun.DeviceWriter); with
        # offload the large segments' TCP checksums are left to the device
        # (Endpoint.checksum_offload)
        partial = self._tun and device.completes_checksums
        if partial:
            self.endpoint.checksum_offload = True
        # the streams take any bytes-like data (StreamReader.feed_data extends its buffer, TLS
        # writes into its MemoryBIO): an offloaded segment's payload reaches them uncopied
        self.endpoint.receive_views = True
        self._out = DeviceWriter(device, partial) if self._tun else None
        self._loop.add_reader(device.fileno(), self._on_readable)

    # ------------------------------------------------------------------ the user's calls
    async def open_connection(self, host: str, port: int, local_address: Address | None = None,
                              limit: int = READ_LIMIT, *, ssl: SslArgument = None,
                              server_hostname: str | None = None,
                              ssl_handshake_timeout: float | None = None,
                              data: bytes | None = None
                              ) -> tuple[asyncio.StreamReader, MptcpStreamWriter]:
        """Open an MPTCP connection to ``host``:``port`` from ``local_address`` (the
        stack's first address of that family by default); return (reader, writer) once it is
        established. ``limit`` is the reader's buffer limit in bytes.

        ``ssl``, ``server_hostname`` and ``ssl_handshake_timeout`` are those of
        ``asyncio.open_connection``: with an ``ssl.SSLContext`` (or True: the default
        context, which verifies the server's certificate against ``server_hostname``,
        ``host`` by default) the streams carry TLS over the MPTCP connection, once its
        handshake is done.

        ``data`` is sent first (``Endpoint.connect``'s): with ``Config.fastopen`` its first
        bytes ride in the SYN once the stack holds the server's TCP Fast Open cookie. Only
        bytes that may be replayed belong there (RFC 7413 §6), and not with ``ssl``.

        Raises:
            ConnectionRefusedError: the connection failed before it was established
                (refused, reset or timed out).
            ssl.SSLError: the TLS handshake failed (the connection is aborted).
            ValueError: a bad address or port, or server_hostname without ssl.
        """
        context = _ssl_context(ssl, server_side=False)
        if context is None and server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if data is not None and context is not None:
            raise ValueError("data is sent before the TLS handshake: not with ssl")
        conn = self.endpoint.connect((host, port), self._loop.time(), local_address, data)
        opened = self._opening[conn.id] = self._loop.create_future()
        self._streams(conn, limit, server_side=False)
        self._turn()
        try:
            await opened
        finally:
            self._opening.pop(conn.id, None)
        reader, writer = self._readers[conn.id], self._writers[conn.id]
        if context is not None:
            await writer.start_tls(context, server_hostname=server_hostname or host,
                                   ssl_handshake_timeout=ssl_handshake_timeout)
        return reader, writer

    async def start_server(self, handler: Handler, port: int, *,
                           ssl: _ssl.SSLContext | None = None) -> Server:
        """Call ``handler(reader, writer)`` (a coroutine function) for every connection to
        ``port`` on any of the stack's addresses; returns the ``Server``. With ``ssl`` (an
        ``ssl.SSLContext`` holding the server's certificate) each connection's TLS
        handshake comes first: the handler gets plaintext streams, and a connection whose
        handshake fails is aborted without calling it.

        Raises:
            OSError: ``port`` is already served by this stack (errno 98, EADDRINUSE).
            TypeError: ``ssl`` is not an ``ssl.SSLContext``.
        """
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError("start_server's ssl must be an ssl.SSLContext (with the "
                            "server's certificate)")
        if port in self._handlers:
            raise OSError(98, f"port {port} is already served by this stack")
        self._handlers[port] = (handler, ssl)
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
        for transport in list(self._transports.values()):
            transport._connection_lost(ConnectionAbortedError("the stack was closed"))

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
            transport = blocked.pop(conn.id, None)
            if transport is not None:
                self._wanting.add(transport)
        for transport in list(self._wanting):            # with bytes or a close left
            transport._feed()
            conn = transport._conn
            if not transport._pending and (not transport._eof_requested or conn.local_closed
                                           or conn.terminated):
                self._wanting.discard(transport)
            elif transport._pending and not conn.terminated and conn.send_space <= 0:
                self._wanting.discard(transport)          # fed again once acknowledgments
                blocked[conn.id] = transport              # make room: a turn with many such
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
        # large segments as (headers, payload) tuples, written with one writev each (a
        # TunDevice, its DeviceWriter), or joined for any other device (write_packets)
        packets = self.endpoint.packets_to_write(now)
        if self._out is not None:
            self._out.write_batch(packets)
        else:
            write_packets(self.device, packets)

    def _push(self, transport: MptcpTransport) -> None:
        self._wanting.add(transport)
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
            if transport is not None and transport._reading_paused:
                return
            event = conn.next_event(transport.limit if transport is not None else READ_LIMIT)
            if event is None:
                return
            self._on_event(conn, event)

    def _streams(self, conn, limit: int = READ_LIMIT, server_side: bool = True):
        """The connection's transport, the streams' protocol, and the streams."""
        reader = asyncio.StreamReader(limit=limit, loop=self._loop)
        protocol = _StreamProtocol(reader, self._loop)
        transport = MptcpTransport(self, conn, protocol, limit)
        protocol.connection_made(transport)
        writer = MptcpStreamWriter(transport, protocol, reader, server_side)
        self._readers[conn.id] = reader
        self._transports[conn.id] = transport
        self._writers[conn.id] = writer
        return reader, writer

    def _on_event(self, conn, event) -> None:
        kind = type(event)
        cid = conn.id
        if kind is ev.DataReceived:
            self._transports[cid]._deliver(event.data)
        elif kind is ev.ConnectionEstablished:
            if cid in self._opening:
                if not self._opening[cid].done():
                    self._opening[cid].set_result(None)
            elif cid not in self._readers:
                served = self._handlers.get(conn.subflows[0].lport if conn.subflows else None)
                reader, writer = self._streams(conn)
                if served is not None:
                    handler, context = served
                    if context is not None:
                        # the client's first TLS bytes may be among these very events:
                        # they wait in the engine until start_tls reads them (TLS's protocol)
                        writer.transport.pause_reading()
                    call = handler(reader, writer) if context is None else \
                        _after_tls(handler, reader, writer, context)
                    task = self._loop.create_task(call)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        elif kind is ev.EndOfStream:
            transport = self._transports.get(cid)
            if transport is not None:
                transport._end_of_stream()
        elif kind is ev.SubflowEstablished:
            transport = self._transports.get(cid)
            if transport is not None:
                transport._ever.setdefault(event.subflow_id, (event.local, event.remote))
        elif kind is ev.ConnectionTerminated:
            self._terminated(cid, event.reason)
        transport = self._transports.get(cid)
        if transport is not None:
            transport._check_closed()

    def _terminated(self, cid: int, reason: str) -> None:
        opening = self._opening.get(cid)
        if opening is not None and not opening.done():
            opening.set_exception(ConnectionRefusedError(f"MPTCP connection failed: {reason}"))
        self._readers.pop(cid, None)
        self._writers.pop(cid, None)
        transport = self._transports.pop(cid, None)
        self._blocked.pop(cid, None)
        if transport is not None:
            transport._connection_lost(None if reason == "closed" else _reset(reason))


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
                          device: TunDevice, config: Config | None = None,
                          ssl: SslArgument = None, server_hostname: str | None = None,
                          ssl_handshake_timeout: float | None = None
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
        ssl, server_hostname, ssl_handshake_timeout: TLS over the connection, as
            ``asyncio.open_connection`` takes them (see ``Stack.open_connection``).

    Returns:
        A (reader, writer) pair: an ``asyncio.StreamReader`` and an ``MptcpStreamWriter``
        whose ``stack`` attribute is the ``Stack``.

    Raises:
        ConnectionRefusedError: the connection failed before it was established.
        ssl.SSLError: the TLS handshake failed.
    """
    stack = Stack(local_addresses, device, config)
    try:
        reader, writer = await stack.open_connection(
            host, port, ssl=ssl, server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout)
    except BaseException:
        stack.close()
        raise
    writer.stack = stack
    return reader, writer


async def start_server(handler: Handler, port: int, *, local_addresses: Iterable[Address],
                       device: TunDevice, config: Config | None = None,
                       ssl: _ssl.SSLContext | None = None) -> Server:
    """``asyncio.start_server`` over the engine: a Stack of its own on ``device``; its
    ``stack`` attribute reaches the engine. ``handler(reader, writer)`` is a coroutine
    function called for every connection to ``port``; with ``ssl`` (the server's
    ``ssl.SSLContext``) after the connection's TLS handshake. The other arguments are those
    of ``open_connection``."""
    stack = Stack(local_addresses, device, config)
    server = await stack.start_server(handler, port, ssl=ssl)
    server.stack = stack
    return server

"""One MPTCP connection (RFC 8684): the MP_CAPABLE and MP_JOIN handshakes, DSS mappings out and
data ACKs in, the data-level receive window shared by every subflow, DATA_FIN, the
reinjection of what a failed subflow held, and the data-level retransmission timer (what the
peer acknowledged on a subflow but not at the data level goes again, RFC 8684 §3.3.6).

The user's side of it:

    conn = endpoint.connect(("198.18.0.2", 5000), now)      # or from a ConnectionEstablished
    accepted = conn.send(data, end_stream=False)             # bytes taken (the send buffer is bounded)
    conn.close()                                             # DATA_FIN after what was sent
    conn.abort()                                             # MP_FASTCLOSE on every subflow
    conn.join(local_address)                                 # one more subflow, from there

Received data is handed out by ``Endpoint.next_event()`` as ``DataReceived`` events, read from
the data-level ReassemblyQueue only when the user asks: the receive window opens as the user
reads, so memory stays bounded by ``Config.receive_window`` however slow the reader.

Two components, each with its own state, hold the rest of a connection's behaviour:
``pm``, a ``pathmanager.PathManager`` (extra subflows, ADD_ADDR, REMOVE_ADDR, MP_PRIO), and
``fb``, a ``fallback.Fallback`` (plain TCP, DSS checksums, MP_FAIL). Each asks the connection
for what it needs through a small interface the connection implements (``PathOwner``,
``FallbackOwner``), as a subflow does through ``SubflowOwner``; the user's path-manager calls
(``join``, ``announce``, ``set_backup``) are the connection's and hand on to ``pm``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from ..wire import crypto, dss, receiver
from ..wire import options as opt
from ..wire.serial import MASK64, seq64_diff
from ..errors import MptcpError, StateError
from mptcp_fast.engine import events as ev
from mptcp_fast.engine import fastopen
from mptcp_fast.engine.events import CloseReason

# Shared modules absolutely, the compiled siblings relatively: this source also builds
# mptcp_fast._cengine.connection (docs/design.md, "Two backends, one API").
from .cc import CONTROLLERS
from .scheduler import SCHEDULERS, LowestRtt
from .buffers import Retained, Unsent
from .subflow import MAX_CHUNK, Chunk, Subflow, SubflowOwner
from .pathmanager import PathManager, PathOwner, _text
from .fallback import Fallback, FallbackOwner

if TYPE_CHECKING:
    from mptcp_fast._typing import Address, BytesLike
    from mptcp_fast.wire._receiver_py import SubflowReceiver

if not cython.compiled:     # compiled: C reads of their fields (connection.pxd, _dss_c.pxd)
    def _queue_data_ack(queue) -> int:
        return queue.data_ack

    def _queue_window_left(queue) -> int:
        return queue.window_left

    def _queue_eof(queue) -> bool:
        return queue.eof

    def _allocator_next_dsn(allocator) -> int:
        return allocator.next_dsn

    def _allocator_data_ack(allocator) -> int:
        return allocator.data_ack

    def _receiver_deliver(receiver, number: int, side, rel: int, payload) -> None:
        receiver.deliver(number, side, rel, len(payload), payload)

    def _receiver_declare(receiver, number: int, side, dsn: int, start: int,
                          length: int) -> None:
        receiver.declare(number, side, dsn, start, length, False, None, False)

    def _side_release(side, upto: int) -> None:
        side.release(upto)

if not cython.compiled:     # compiled: the C enum and _diff32, cimported by connection.pxd
    from .subflow import (CLOSE_WAIT, CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT, TIME_WAIT,
                          _diff32, _earlier, _new_chunk)
    from .scheduler import _shortest_linger      # LowestRtt's pick

__all__ = ["Connection"]

MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000                    # typed in the .pxd (a literal this large is an object)
MAX_READ = 1 << 20                      # bytes in one DataReceived event
SEND_BUFFER_FLOOR = 64 << 10            # the smallest send buffer (before the peer's window)
DEFAULT_ROUND_TRIP = 0.1                # autotuning's round trip while no subflow measured one
MAX_MAPPINGS_AHEAD = 1024               # mapping pieces a subflow stores (bounded memory)
ANOMALIES_KEPT = 256                    # anomaly records kept for the user; the rest counted
RETRANS_BACKOFF_MAX = 16                # the data-level timer doubles at most this many times
_NEVER = float("inf")                   # the rank of a subflow without an RTT sample
_DATA, _EOF = object(), object()        # markers in the event queue: read data / end of stream
_NO_BUDGET_LIMIT = 1 << 62
_Dss = opt.Dss                                      # a module global: one cached lookup
_MpCapable = opt.MpCapable
_new_tuple = tuple.__new__
_DataReceived = ev.DataReceived
if not cython.compiled:     # compiled: the same two calls of the C API (connection.pxd)
    _new_object, _set_field = object.__new__, object.__setattr__

    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (pyx/mf_gc.pxd: a container of
        numbers, bytes and events, never in a reference cycle); the pure run has nothing
        to do."""


def _data_received(connection: int, data) -> ev.DataReceived:
    """``ev.DataReceived(connection, data)``, one per segment read: made as its frozen
    dataclass __init__ makes it (object.__setattr__ on each field) without running that
    Python-level __init__ (compiled, PyType_GenericAlloc and PyObject_GenericSetAttr, what
    object.__new__ and object.__setattr__ call)."""
    event = _new_object(_DataReceived)
    _set_field(event, "connection", connection)
    _set_field(event, "data", data)
    return event


def _mp_capable(version: int, flags: int, sender_key=None, receiver_key=None, data_len=None,
                checksum=None) -> opt.MpCapable:
    """``opt.MpCapable(...)`` built as the codec's parser builds it, without the constructor's
    checks: the engine's own fields (a version, 8 bits of flags, 64-bit keys, a 16-bit length
    and checksum), in one of the forms RFC 8684 §3.1 (RFC 6824 §3.1 for v0) defines. A
    handshake writes several: checked, each one cost microseconds of Python."""
    return _new_tuple(_MpCapable, (version, flags, sender_key, receiver_key, data_len, checksum))


def _dss(data_ack, dsn=None, ssn=None, length=None, checksum=None,
         data_fin: bool = False) -> opt.Dss:
    """``opt.Dss(data_ack, True, dsn, True, ssn, length, checksum, data_fin)`` (a 64-bit data
    ACK, and a mapping with a 64-bit DSN when ``dsn`` is given), built without the
    constructor's checks, as ``_mp_capable``."""
    return _new_tuple(_Dss, (data_ack, True, dsn, dsn is not None, ssn, length, checksum,
                             data_fin))


def _new_event(cls, *values):
    """An event of ``cls`` (a frozen dataclass with slots) with its fields ``values``, in
    their order: made as its __init__ makes it (object.__setattr__ on each field) without
    running that Python-level __init__, as ``_data_received``. A connection pair's set-up and
    teardown report a dozen events."""
    event = _new_object(cls)
    for name, value in zip(cls.__match_args__, values):
        _set_field(event, name, value)
    return event


def _no_drain() -> None:
    """The receiver's drain: the engine reads its queue when the user asks (one function for
    every connection, not a closure each: one object fewer for the collector to track)."""


def _diff64(a: int, b: int) -> int:
    """seq64_diff (mptcp_fast.wire.serial): a - b on the 64-bit circle, as C arithmetic when
    compiled (two's complement of the unsigned difference: the same rule at 2**63). buffers.py
    has the same five lines: a compiled module's C function cannot also be imported by name."""
    if cython.compiled:
        return cython.cast(cython.longlong, a - b)
    return seq64_diff(a, b)


def _add64(a: int, b: int) -> int:
    """(a + b) mod 2**64 of two 64-bit values, as C arithmetic when compiled."""
    if cython.compiled:
        return a + b                     # unsigned long long (connection.pxd): wraps in C
    return (a + b) & MASK64


def _immutable_view(data) -> bool:
    """``data`` is a flat memoryview of bytes (one byte per item, contiguous): its content can
    never change, so ``send`` may keep a view of it instead of a copy (the view holds the
    bytes alive, whatever the caller does with its own view afterwards)."""
    return type(data) is memoryview and type(data.obj) is bytes and data.c_contiguous \
        and data.itemsize == 1 and data.ndim == 1


def _beyond(ranges, limit) -> bool:
    """One of the (dsn, length) ``ranges`` ends beyond the DSN ``limit`` (the window's edge)."""
    for dsn, n in ranges:
        if seq64_diff((dsn + n) & MASK64, limit) > 0:
            return True
    return False


def _carriers(sent, dsn) -> list:
    """The subflows of the SentRange records ``sent`` that carried the byte at ``dsn``."""
    out = []
    for r in sent:
        if 0 <= seq64_diff(dsn, r.dsn) < r.length and r.subflow not in out:
            out.append(r.subflow)
    return out


def _shows_full_establishment(mptcp) -> bool:
    """A DATA_ACK, or an ADD_ADDR that is not an echo: the server has our key (Linux's
    check_fully_established takes either as the sign, RFC 8684 §3.1)."""
    for o in mptcp:
        kind = type(o)
        if kind is opt.Dss and o.data_ack is not None or kind is opt.AddAddr and not o.echo \
                or kind is opt.AddAddrV0 or kind is opt.AddAddr2:
            return True
    return False


class Connection(SubflowOwner, PathOwner, FallbackOwner):
    """One MPTCP connection: made by its ``Endpoint`` (``Endpoint.connect``, or an incoming
    MP_CAPABLE SYN on a listening port, reported by ``ConnectionEstablished``); never built
    by the user.

    The user's calls: ``send`` and ``send_space``, ``close`` (DATA_FIN), ``abort``
    (MP_FASTCLOSE), ``join`` (one more subflow), ``announce`` (ADD_ADDR), ``set_backup``
    (MP_PRIO), ``next_event`` (this connection's events only) and ``stats``. Its packets go
    out through the endpoint's ``packets_to_send``.

    Its subflows reach it only through ``SubflowOwner`` (subflow.py), its path manager
    (``pm``) through ``PathOwner`` (pathmanager.py), its fallback (``fb``) through
    ``FallbackOwner`` (fallback.py): it implements all three.

    Attributes:
        id (int): the connection's id, as events carry it.
        is_client (bool): whether this side opened it.
        terminated (CloseReason | None): why it ended, once it has.
        fallback (str | None): why it fell back to plain TCP, if it did.
    """

    def __init__(self, endpoint, cid: int, is_client: bool):
        self.endpoint, self.id, self.is_client = endpoint, cid, is_client
        self._with_events: list = endpoint._with_events   # (_event appends to it)
        config = self.config = endpoint.config
        self.version = config.version               # 1: RFC 8684; 0: RFC 6824
        self.send_buffer = config.send_buffer       # read per send() and ACK (Config is frozen)
        # the receive window grows from its initial size as the application reads (autotuning)
        self.receive_window = min(config.initial_receive_window, config.receive_window)
        self.cc = CONTROLLERS[config.congestion_control](config.hystart)
        self.scheduler = SCHEDULERS[config.scheduler]()
        self.redundant = config.scheduler == "redundant"   # every byte on every subflow
        self.subflows: list[Subflow] = []           # live ones (CLOSED ones leave the list)
        self.all_subflows: list[Subflow] = []
        self.local_key, self.local_token = endpoint.tokens.new_key(self)
        self.remote_key: int | None = None
        self.keys: crypto.KeyContext | None = None  # once both keys are known
        self.established = False                    # the MP_CAPABLE handshake completed
        self.fully_established = False              # RFC 8684 §3.1: the peer has our key too
        self.terminated: CloseReason | None = None  # once it is gone
        self.local_first_dsn: int | None = None
        self.remote_first_dsn: int | None = None
        self.syn_key: int | None = None
        self.half_open = False
        self.fastopen: fastopen.Handshake | None = None   # TCP Fast Open, when tried
        # the initial subflow's (address, port)
        self.local: tuple[bytes, int] | None = None
        self.remote: tuple[bytes, int] | None = None
        self.pm = PathManager(self, endpoint, cid, is_client, self.subflows)
        self.fb = Fallback(self, cid)               # fallback, DSS checksums, MP_FAIL
        # -- sending (RFC 8684 §3.3)
        self.allocator: dss.DsnAllocator | None = None
        self.unsent = Unsent()                      # taken by send(), not yet given DSNs
        self.retained: Retained | None = None       # sent, not yet DATA_ACKed
        self.reinject: deque[tuple[int, int]] = deque()   # (dsn, length) to send again
        self.redundant_sent: dict[int, int] = {}    # subflow id -> DSN sent up to (redundant)
        self.peer_edge = 0                          # right edge of the peer's window (a DSN,
                                                    # once the data level exists)
        self.peer_window_max = 0                    # the largest window the peer offered
        self.local_closed = False                   # close() was called
        self.fin_dsn: int | None = None             # our DATA_FIN's DSN once it is sent
        self.fin_acked = False
        self.fin_at: float | None = None
        self.fin_backoff = 0
        self.persist_at: float | None = None
        self.persist_backoff = 0
        # the data-level retransmission timer (RFC 8684 §3.3.6, Linux's mptcp_retransmit_timer):
        # armed while sent data waits for its DATA_ACK; three numbers whatever the peer does
        self.retrans_at: float | None = None        # when it fires (None: disarmed)
        self.progress_at = 0.0                      # the DATA_ACK last moved (or the wait began)
        self.retrans_backoff = 0                    # expiries since, at most RETRANS_BACKOFF_MAX
        # -- receiving
        self.queue: dss.ReassemblyQueue | None = None
        self.receiver: receiver.DataReceiver | None = None
        self.receiver_side: dict[int, SubflowReceiver] = {}   # by subflow id
        self.anomalies: list[receiver.Event] = []   # conflicts, unmapped data...
        # a few at a time: a list (C calls compiled); Events, and _DATA and _EOF that mark
        # data and the end of the stream to read from the queue
        self.events: list[Any] = []
        if cython.compiled:     # events and numbers only: never in a cycle (a thousand
            _untrack(self.reinject)     # connections' empty containers are not walked by
            _untrack(self.anomalies)    # every full pass of the collector)
            _untrack(self.events)
        self.eof_reported = False
        self.advertised = self.receive_window
        self.read_in_round = 0                      # bytes read since round_started (autotuning)
        self.round_started = -1.0
        self.segments = 0
        self._queued = False                        # in the endpoint's queue of event sources
        self._space_queued = False                  # in its list of connections with more space
        self._touched = False                       # in its list of connections to flush
        # -- counters
        self.ignored_options = 0
        self.anomalies_dropped = 0
        self.bad_join = 0
        self.bad_fastclose = 0
        self.refused_mappings = 0                   # inconsistent with what we know: ignored
        self.refused_data_fins = 0
        self.reinjected_bytes = 0
        self.data_retransmits = 0                   # chunks the data-level timer sent again
        self.window_probes = 0

    def __repr__(self):
        return (f"<Connection {self.id} {'client' if self.is_client else 'server'} "
                f"subflows={len(self.subflows)} terminated={self.terminated}>")

    # ================================================================ the user's calls
    def send(self, data: BytesLike, end_stream: bool = False) -> int:
        """Queue ``data`` for sending; return how many bytes were taken (the rest does not fit
        ``Config.send_buffer`` now: offer it again after the peer acknowledged some). With
        ``end_stream`` the DATA_FIN follows once every byte was taken.

        Args:
            data: any bytes-like object.
            end_stream: close the stream after ``data`` (as ``close()``), when all of it was
                taken.

        Returns:
            The number of bytes taken, from the start of ``data``.

        Raises:
            StateError: the stream was closed (``close``, ``end_stream``), aborted, or the
                connection has ended.
        """
        if self.local_closed or self.terminated:
            raise StateError("send() after close(), abort() or the end of the connection")
        room = max(0, self.send_buffer - self._buffered())
        if type(data) is bytes and len(data) <= room:
            size = taken = len(data)         # immutable and whole: kept as it is, no copy
            self.unsent.push(data)
        elif _immutable_view(data):
            flat: memoryview = data          # type: ignore[assignment]  # (checked)
            size = len(flat)                 # a view of bytes: they cannot change under it,
            taken = min(room, size)          # so a view of its part is kept, no copy
            self.unsent.push(flat[:taken])
        else:
            view = memoryview(data)
            if not view.c_contiguous:        # (a strided view: its bytes, in order)
                view = memoryview(view.tobytes())
            view = view.cast("B")
            size = len(view)
            taken = min(room, size)
            self.unsent.push(bytes(view[:taken]))    # a copy: the caller may reuse its buffer
        if end_stream and taken == size:
            self.local_closed = True
        self.endpoint.touch(self)
        return taken

    @property
    def send_space(self) -> int:
        """Bytes worth giving ``send()`` now: the send buffer is twice the largest window the
        peer offered (what can be in flight, and as much again queued behind it), at least
        SEND_BUFFER_FLOOR, at most ``Config.send_buffer`` (``Config.send_buffer`` before the
        peer's first window). As Linux sizes a socket's send buffer from what the path
        carries (tcp_sndbuf_expand), an application that gives what this says holds little
        for a peer that stops reading. ``send()`` itself takes up to ``Config.send_buffer``
        (a message handed over at once)."""
        return self._send_space()

    def _send_space(self) -> int:
        """``send_space`` (a C call from the emulator's apps)."""
        limit = self.send_buffer
        if self.peer_window_max:
            limit = min(limit, max(SEND_BUFFER_FLOOR, 2 * self.peer_window_max))
        return max(0, limit - self._buffered())

    def _buffered(self) -> int:
        return self.unsent.size + (self.retained.size if self.retained is not None else 0)

    def close(self) -> None:
        """Send a DATA_FIN after the data queued (RFC 8684 §3.3.3)."""
        if not self.terminated:
            self.local_closed = True
            self.endpoint.touch(self)

    def abort(self, now: float | None = None) -> None:
        """End the connection at once: MP_FASTCLOSE with the peer's key and MP_TCPRST on a RST on
        every subflow (RFC 8684 §3.5, as Linux sends it)."""
        if self.terminated:
            return
        now = self.endpoint.now if now is None else now
        extra: list[opt.Option] = []
        if self.fb.reason:
            pass                                      # plain TCP: a bare RST
        elif self.remote_key is not None:
            extra.append(opt.MpFastclose(self.remote_key))
        if not self.fb.reason:
            extra.append(opt.MpTcpRst(opt.ResetReason.UNSPECIFIED))
        self._terminate(now, CloseReason.ABORTED)
        for sf in list(self.subflows):
            sf.close(now, CloseReason.ABORTED, reset=True, mptcp=extra)
        self.endpoint.touch(self)

    # -- the user's path manager (RFC 8684 §3.4): pathmanager.PathManager does the work
    def join(self, local_address: Address, remote: tuple[Address, int] | None = None, *,
             backup: bool | None = None,
             now: float | None = None) -> int:
        """Open one more subflow from ``local_address`` (an address of the endpoint) to ``remote``
        ((address, port); the initial subflow's by default); returns its subflow id.

        Args:
            local_address: one of the endpoint's addresses, text or packed.
            remote: the peer's (address, port); the initial subflow's by default.
            backup: open it as a backup subflow (MP_JOIN B flag); by default as
                ``Config.backup_addresses`` says for ``local_address``.
            now: the current time (the endpoint's last one by default).

        Raises:
            StateError: the connection is not established, is ending, fell back to TCP, has
                ``Config.max_subflows`` subflows, or the server refuses joins to ``remote``.
            ValueError: ``local_address`` is not the endpoint's, or the two addresses are of
                different families.
        """
        return self.pm.join(local_address, remote, backup, now)

    def announce(self, address: Address, port: int | None = None,
                 now: float | None = None) -> int:
        """Announce one of our addresses to the peer with ADD_ADDR (RFC 8684 §3.4.1, HMAC'd
        with our key), resent until the peer echoes it; returns its address id.

        Args:
            address: one of the endpoint's addresses, text or packed.
            port: a port to announce with it (none by default).
            now: the current time (the endpoint's last one by default).

        Raises:
            StateError: the connection is not established or has ended.
            ValueError: ``address`` is not one of the endpoint's.
        """
        return self.pm.announce(address, port, now)

    def set_backup(self, subflow_id: int, backup: bool, now: float | None = None) -> None:
        """Ask the peer to use subflow ``subflow_id`` as a backup (or not) with MP_PRIO, and use
        it so ourselves (RFC 8684 §3.3.8).

        Raises:
            StateError: no live MPTCP subflow has that id (or the connection fell back).
        """
        self.pm.set_backup(subflow_id, backup)

    # -- the endpoint's calls to the path manager
    def join_from(self, address: bytes, now: float) -> bool:
        """The path manager's rule for one local address of a client (False: no room left)."""
        return self.pm.join_from(address, now)

    def signal(self, now: float) -> None:
        """Announce the "signal" addresses (Config.signal_addresses) that the endpoint has."""
        self.pm.signal(now)

    def accept_join(self, seg, join_syn, now: float) -> bool:
        """Server side: an MP_JOIN SYN for this connection (token already matched)."""
        return self.pm.accept_join(seg, join_syn, now)

    def address_removed(self, address: bytes, address_id: int, now: float) -> None:
        """Our ``address`` is gone: its subflows are reset and REMOVE_ADDR tells the peer on the
        others (RFC 8684 §3.4.2)."""
        self.pm.address_removed(address, address_id, now)

    # -- what the components hold, read as before
    @property
    def fallback(self) -> str | None:
        """Why the connection fell back to TCP (RFC 8684 §3.7), or None."""
        return self.fb.reason

    @property
    def checksums(self) -> bool:
        """DSS checksums were negotiated (and the connection did not fall back since)."""
        return self.fb.checksums

    @property
    def checksum_failures(self) -> int:
        return self.fb.checksum_failures

    @property
    def mp_fail_received(self) -> int:
        return self.fb.mp_fail_received

    @property
    def bad_add_addr(self) -> int:
        return self.pm.bad_add_addr

    @property
    def removal_refuted(self) -> int:
        return self.pm.removal_refuted

    def stats(self) -> dict[str, Any]:
        """Counters of the connection and each subflow (bytes, retransmissions, RTT, cwnd)."""
        return {
            "id": self.id, "subflows": [
                {"id": sf.sid, "state": sf.state_name, "local": (_text(sf.local), sf.lport),
                 "remote": (_text(sf.remote), sf.rport), "backup": sf.backup,
                 "bytes_sent": sf.bytes_sent, "bytes_received": sf.bytes_received,
                 "retransmits": sf.stats_retransmits, "srtt": sf.srtt, "cwnd": sf.window.cwnd}
                for sf in self.all_subflows],
            "reinjected_bytes": self.reinjected_bytes,
            "data_retransmits": self.data_retransmits,
            "anomalies": [a.text for a in self.anomalies[:16]],
            "ignored_options": self.ignored_options, "bad_add_addr": self.pm.bad_add_addr,
            "bad_join": self.bad_join, "bad_fastclose": self.bad_fastclose,
            "checksum_failures": self.fb.checksum_failures,
            "refused_mappings": self.refused_mappings,
            "refused_data_fins": self.refused_data_fins,
            "anomalies_dropped": self.anomalies_dropped,
            "removal_refuted": self.pm.removal_refuted,
            "mp_fail_received": self.fb.mp_fail_received, "window_probes": self.window_probes,
            "fallback": self.fb.reason, "version": self.version,
            # TCP Fast Open: bytes of the SYN's data the server took (None: TFO not tried)
            "fastopen_taken": None if self.fastopen is None else self.fastopen.taken,
        }

    # ================================================================ events
    def next_event(self, max_data: int = MAX_READ) -> ev.Event | None:
        """The next event of this connection, or None. Data is read from the queue here, at
        most ``max_data`` bytes per event (a reader that buffers little asks for little: a
        larger piece would sit in its buffer, copied again each time the buffer grows)."""
        events = self.events
        while events:
            head = events[0]
            if head is _DATA or head is _EOF:
                # (a large segment's payload alone and uncopied, smaller ones joined)
                data = self.queue.read_some(max_data) if self.queue is not None else b""
                if type(data) is not bytes and not self.endpoint.receive_views:
                    data = bytes(data)               # a view left by the queue's own cuts
                if data:
                    self._autotune(len(data))
                    self._window_opened()
                    return _data_received(self.id, data)
                del events[0]                        # (compiled, a C call: pop(0) is a
                if head is _EOF and not self.eof_reported:    # method call when others follow)
                    self.eof_reported = True
                    return _new_event(ev.EndOfStream, self.id)
                continue
            del events[0]
            return head
        return None

    def _event(self, event) -> None:
        self.events.append(event)
        if not self._queued:                 # Endpoint.has_events, without the method call:
            self._queued = True              # the endpoint's list of connections with events
            self._with_events.append(self)   # (it is never replaced, only emptied)

    def _mark_data(self) -> None:
        if not self.events or self.events[-1] is not _DATA:
            self._event(_DATA)

    def _autotune(self, taken: int) -> None:
        """Receive-buffer autotuning (after Linux's dynamic right-sizing, tcp_rcv_space_adjust):
        at most once per round trip, the window grows to twice what the application reads per
        round trip (its reading rate over the time since the last look, times the round
        trip), up to ``Config.receive_window``. A reader that keeps up with a fast path gets
        the window the path needs (doubling each round trip, as slow start does); a slow one,
        even one that takes all that is queued whenever it reads, keeps a small window, so
        the connection holds little for it. (Linux counts the bytes read since its last look
        whatever the time between, so a reader that empties the queue every few seconds
        grows its buffer; this is stricter.)"""
        self.read_in_round += taken
        now = self.endpoint.now
        if self.round_started < 0:
            self.round_started = now
        round_trip = self._round_trip()
        elapsed = now - self.round_started
        if elapsed < round_trip:
            return
        per_round_trip = self.read_in_round * round_trip / elapsed
        target = min(int(2 * per_round_trip), self.config.receive_window)
        if target > self.receive_window:
            self.receive_window = target
            self.queue.grow_window(target)
        self.read_in_round = 0
        self.round_started = now

    def _round_trip(self) -> float:
        """The longest round trip of the live subflows as their receivers see it (else their
        handshake's): the one window must cover the slowest path that carries data (Linux's
        mptcp_rcv_space_adjust takes the subflows' largest too)."""
        longest = 0.0
        for sf in self.subflows:
            rtt = sf.rcv_rtt
            if rtt == 0.0 and sf.rtt.srtt is not None:
                rtt = sf.rtt.srtt
            if rtt > longest:
                longest = rtt
        return longest if longest > 0.0 else DEFAULT_ROUND_TRIP

    def _window_opened(self) -> None:
        """Reading freed window: tell the peer when it grew by a quarter of the maximum
        (Linux's receive-window update, tcp_cleanup_rbuf, in spirit)."""
        left = _queue_window_left(self.queue)
        if left - self.advertised >= self.receive_window // 4:
            for sf in self.subflows:
                if sf.can_carry():
                    sf.request_ack()
                    break
            self.endpoint.touch(self)

    def receive_window_left(self) -> int:
        """The window every subflow advertises (RFC 8684 §3.3.4: one window, relative to the
        DATA_ACK)."""
        left = _queue_window_left(self.queue) if self.queue is not None else self.receive_window
        self.advertised = left
        return left

    # ================================================================ opening
    def open(self, local: bytes, remote: bytes, rport: int, now: float) -> None:
        lport = self.endpoint.new_port(local, remote, rport, now)
        self.local, self.remote = (local, lport), (remote, rport)
        sf = self._new_subflow(local, lport, remote, rport, now)
        payload = b""
        if self.config.fastopen and self.version == 1:    # never with v0, as Linux
            payload = self._fastopen_connect(sf, remote, now)
        sf.send_syn(now, payload)

    def _fastopen_connect(self, sf, server: bytes, now: float) -> bytes:
        """Client, TFO (RFC 7413 §4.2): the option our SYN carries, and its data: a cookie
        request to a server we have no cookie of; with a cookie, up to an MSS of what the
        application queued (it stays queued until the SYN/ACK says what was taken). None of
        it to a server whose SYNs with data went unanswered lately (§4.1.3)."""
        plan = self.endpoint.fastopen.servers.plan(server, now)
        if plan is None:
            self.endpoint.counts["fastopen_server_avoided"] += 1
            return b""
        cookie, server_mss = plan
        state = self.fastopen = fastopen.Handshake(cookie)
        if not cookie:
            self.endpoint.counts["fastopen_cookie_requests_sent"] += 1
            return b""
        room = state.syn_data_room(sf.own_mss, server_mss)
        state.data = self.unsent.peek(room) if self.unsent else b""
        if state.data:
            self.endpoint.counts["fastopen_syn_data_sent"] += 1
        return state.data

    def accept(self, seg, now: float, mptcp: bool = True) -> None:
        """Server side: the SYN ``seg`` opens this connection: MPTCP with its MP_CAPABLE (RFC
        8684 §3.1), plain TCP without a usable one (§3.7: the connection falls back)."""
        mpc = seg.first(opt.MpCapable)
        if not mptcp:
            self.fb.without_mptcp("the SYN had no usable MP_CAPABLE")
            self._forget_token()                      # plain TCP: nothing may join it (§3.7)
        else:
            self.fb.negotiate(self.config.checksums or mpc.checksum_required)
            self.syn_key = mpc.sender_key             # v0: the client's key is in its SYN
        self.local, self.remote = (seg.dst, seg.dport), (seg.src, seg.sport)
        sf = self._new_subflow(seg.dst, seg.dport, seg.src, seg.sport, now)
        self._count_half_open(+1)
        if mptcp and self.version == 1 and self.config.fastopen and seg.fastopen is not None:
            taken = self._fastopen_accept(sf, seg, now)
            sf.accept_syn(seg, now, taken, timestamps=self.fastopen.option is None)
            if taken:
                self._fastopen_deliver(bytes(seg.payload[:taken]))
            return
        sf.accept_syn(seg, now)

    def _fastopen_accept(self, sf, seg, now: float) -> int:
        """Server, TFO (RFC 7413 §4.1.2, §4.2.2): how many bytes of the SYN's data to take:
        its data when its cookie is valid for its source address (at most our MSS, and only
        while at most Config.fastopen_backlog handshakes, this one included, are half open:
        §5.1), else none. The SYN/ACK carries a fresh cookie for a request, a forged or an
        expired cookie, or one of the period before (engine/cookies.py)."""
        jar = self.endpoint.fastopen.cookies
        counts = self.endpoint.counts
        cookie = seg.fastopen
        verdict = jar.check(seg.src, seg.dst, cookie, now) if cookie else None
        state = self.fastopen = fastopen.Handshake()
        if not cookie:
            counts["fastopen_cookie_requests"] += 1
        elif verdict is None:
            counts["fastopen_cookies_refused"] += 1     # its data are not taken
        if verdict != jar.VALID:
            state.option = jar.make(seg.src, seg.dst, now)
            counts["fastopen_cookies_sent"] += 1
        if verdict is None or not seg.payload:
            return 0
        if self.endpoint.half_open > self.config.fastopen_backlog:
            counts["fastopen_backlog_full"] += 1
            return 0
        state.taken = min(len(seg.payload), sf.own_mss)
        counts["fastopen_accepted"] += 1
        return state.taken

    def _fastopen_deliver(self, data: bytes) -> None:
        """Server, TFO: the application hears of the connection at the SYN and reads its data
        at once (RFC 7413 §4.2.2; Linux's listener hands out a TFO child at the SYN): they are
        the stream's first bytes, before the one of DSN IDSN + 1 (RFC 8684 App. B.2). What it
        sends waits for the third ACK, which brings the client's key (RFC 8684 §3.1)."""
        self.fastopen.early = True
        self._event(_new_event(ev.ConnectionEstablished, self.id,
                               (_text(self.local[0]), self.local[1]),
                               (_text(self.remote[0]), self.remote[1]), self.fb.checksums))
        self._event(_data_received(self.id, data))

    def accept_cookie(self, seg, now: float, mss: int) -> bool:
        """Server side, under SYN cookies: the third ACK ``seg`` carried a valid cookie; the
        subflow is rebuilt from it (engine/cookies.py) and takes the ACK as usual. Our MPTCP
        key comes back in its MP_CAPABLE (Linux: mptcp_subflow_init_cookie_req)."""
        mpc = seg.first(opt.MpCapable)
        if mpc is None or mpc.receiver_key is None or mpc.sender_key is None \
                or mpc.version != self.version:
            self.fb.without_mptcp("the third ACK had no MP_CAPABLE")
        else:
            tokens = self.endpoint.tokens
            tokens.remove(self.local_token)
            try:
                self.local_token = tokens.adopt(mpc.receiver_key, self)
            except crypto.TokenTableError:
                return False
            self.local_key = mpc.receiver_key
            self.syn_key = mpc.sender_key
            self.fb.negotiate(self.config.checksums or mpc.checksum_required)
        self.local, self.remote = (seg.dst, seg.dport), (seg.src, seg.sport)
        sf = self._new_subflow(seg.dst, seg.dport, seg.src, seg.sport, now,
                               iss=(seg.ack - 1) & MASK32)
        sf.restore_from_cookie(seg, mss, now)
        self._count_half_open(+1)
        sf.receive(seg, now)
        return True

    def _count_half_open(self, step: int) -> None:
        """The endpoint's count of server handshakes waiting for the third ACK."""
        if step > 0 and not self.half_open:
            self.half_open = True
            self.endpoint.half_open += 1
        elif step < 0 and self.half_open:
            self.half_open = False
            self.endpoint.half_open -= 1

    def _new_subflow(self, local, lport, remote, rport, now, join=None, backup=False,
                     iss=None, remote_address_id=0) -> Subflow:
        isn = self.endpoint.isn
        if iss is None:
            iss = isn.isn(local, lport, remote, rport, now)
        # the 4-tuple's TSval clock (RFC 7323 §7.1, Linux's secure_tcp_ts_off): one per 4-tuple,
        # never offset by the ISN, whose clock runs 250 times faster (a cookie ISN's top bits
        # even carry the MSS index): the TSvals of a later incarnation, and the subflow rebuilt
        # from a cookie, never go back on the peer's PAWS check (RFC 7323 §5)
        sf = Subflow(self, len(self.all_subflows), local, lport, remote, rport, iss,
                     config=self.config, cc=self.cc, out=self.endpoint.outbox(),
                     ts_offset=isn.ts_offset(local, lport, remote, rport),
                     local_address_id=self.endpoint.address_id(self, local),
                     remote_address_id=remote_address_id, join=join, backup=backup)
        self.subflows.append(sf)
        self.all_subflows.append(sf)
        self.endpoint.register(sf)
        return sf

    def _mpc_flags(self) -> int:
        flags = opt.MPC_HMAC
        if self.fb.checksums or (self.is_client and self.config.checksums):
            flags |= opt.MPC_CHECKSUM_REQUIRED
        return flags

    def syn_options(self, sf) -> list:
        if self.fb.reason:
            return []
        if sf.join is None:
            if self.is_client and self.version == 1:
                return [_mp_capable(1, self._mpc_flags())] + self._fastopen_option(sf)
            # the v1 SYN/ACK, and both v0 forms: the sender's key (RFC 6824 §3.1)
            flags = self._mpc_flags()
            if self.version == 1 and self.config.deny_join_initial:
                flags |= opt.MPC_DENY_JOIN_TO_SOURCE  # C: no subflow to this address/port
            return [_mp_capable(self.version, flags, self.local_key)] + self._fastopen_option(sf)
        if self.is_client or sf.state == SYN_SENT:
            return [opt.MpJoinSyn(sf.local_address_id, self.keys.remote_token, sf.join.local_nonce,
                                  sf.backup)]
        return [opt.MpJoinSynAck(sf.local_address_id,
                                 self.keys.synack_hmac(sf.join.local_nonce, sf.join.remote_nonce),
                                 sf.join.local_nonce, sf.join.local_backup)]

    def _fastopen_option(self, sf) -> list:
        """The TCP Fast Open option (RFC 7413 §4.1.1, kind 34) after the MP_CAPABLE: the
        client's cookie or request in its first SYN only (Linux: "Exclude Fast Open option
        for SYN retries"), the server's fresh cookie in its SYN/ACK."""
        state = self.fastopen
        if state is None or state.option is None or (self.is_client and sf.syn_sent_count > 1):
            return []
        return [opt.UnknownTcpOption(fastopen.TCPOPT_FASTOPEN, state.option)]

    def syn_retransmitted(self, sf, now: float) -> None:
        """Client: our SYN goes again. When the first one carried data, a middlebox may drop
        SYNs with data: that server gets none for a while (RFC 7413 §4.1.3)."""
        state = self.fastopen
        if state is not None and state.data and sf.join is None and sf.syn_sent_count == 2:
            self.endpoint.fastopen.servers.syn_lost(self.remote[0], now)
            self.endpoint.counts["fastopen_syn_lost"] += 1

    def _fastopen_synack(self, sf, seg) -> None:
        """Client, TFO: the SYN/ACK took ``sf.syn_data_taken`` bytes of our SYN's data (they
        leave the send queue: delivered, outside the data sequence space, RFC 8684 App. B.2;
        the rest goes after the handshake, mapped from IDSN + 1), and may bring a cookie and
        the server's MSS to remember (an unsolicited cookie is ignored, as Linux does)."""
        state = self.fastopen
        servers = self.endpoint.fastopen.servers
        taken = sf.syn_data_taken
        if taken:
            self.unsent.take(taken)
            state.taken = taken
            servers.data_taken(self.remote[0])
            self.endpoint.counts["fastopen_syn_data_acked"] += 1
        state.data = b""                              # (a copy: the queue holds the rest)
        if state.option is not None:
            servers.learned(self.remote[0], seg.fastopen, seg.mss)
            if seg.fastopen:
                self.endpoint.counts["fastopen_cookies_received"] += 1

    def mpc_ack_options(self) -> list:
        return [_mp_capable(self.version, self._mpc_flags(), self.local_key, self.remote_key)]

    def join_ack_options(self, sf) -> list:
        return [opt.MpJoinAck(self.keys.ack_hmac(sf.join.local_nonce, sf.join.remote_nonce))]

    def on_handshake(self, sf, seg, now: float) -> bool:
        """The SYN/ACK (client) or third ACK (server) arrived: check its MPTCP part."""
        if sf.join is not None:
            return self._join_handshake(sf, seg, now)
        mpc = seg.first(opt.MpCapable)
        if self.is_client:
            if self.fastopen is not None:
                self._fastopen_synack(sf, seg)
            if mpc is None or mpc.sender_key is None or mpc.receiver_key is not None \
                    or mpc.version != self.version:
                # RFC 8684 §3.7 (Linux's MPCapableActiveFallback): plain TCP from here on
                self.fb.start(now, "the SYN/ACK had no MP_CAPABLE", sf, seg.window)
                return True
            self.fb.negotiate(self.config.checksums or mpc.checksum_required)
            # RFC 8684 §3.1, flag C: the server takes no new subflow to the address and port
            # of this one (Linux: net.mptcp.allow_join_initial_addr_port=0)
            self.pm.peer_flags(self.version == 1 and bool(mpc.flags & opt.MPC_DENY_JOIN_TO_SOURCE))
            self._keys_known(mpc.sender_key, seg.window)   # a SYN's window is never scaled
            return True
        window = seg.window << sf.peer_wscale
        if self.fb.reason:                          # a plain TCP SYN: nothing to check
            self.fb.start(now, self.fb.reason, sf, window)
            return True
        if mpc is None and self.version == 0 and self.syn_key is not None \
                and seg.first(opt.Dss) is not None:
            # RFC 6824: the client's key came in its SYN; a lost third ACK is covered by the
            # first data segment's DSS
            self._keys_known(self.syn_key, window)
            self.fully_established = True
            self.pm.signal(now)
            return True
        if mpc is None:                             # Linux's MPCapableFallbackACK
            self.fb.start(now, "the third ACK had no MP_CAPABLE", sf, window)
            return True
        if mpc.sender_key is None or mpc.receiver_key != self.local_key:
            self.endpoint.counts["refused_mp_capable"] += 1
            sf.close(now, CloseReason.RESET, reset=True)
            return False
        self._keys_known(mpc.sender_key, window)
        self.fully_established = True
        self.pm.signal(now)
        return True

    def _keys_known(self, remote_key: int, window: int) -> None:
        """Both keys are known: tokens, IDSNs and the data-level state (RFC 8684 §3.1; the
        first DSN is IDSN + 1, as Linux sends it); ``window`` is the peer's first window."""
        self.remote_key = remote_key
        self.keys = crypto.KeyContext(self.local_key, remote_key, self.version)
        self._data_level((self.keys.local_idsn + 1) & MASK64, (self.keys.remote_idsn + 1) & MASK64,
                         window)

    def _data_level(self, local_first: int, remote_first: int, window: int) -> None:
        """The sending and receiving state of the data sequence, from the first DSN each way."""
        self.local_first_dsn, self.remote_first_dsn = local_first, remote_first
        self.allocator = dss.DsnAllocator(local_first)
        self.retained = Retained(_allocator_next_dsn(self.allocator))
        self.peer_edge = (_allocator_next_dsn(self.allocator) + window) & MASK64
        self.peer_window_max = window
        start = remote_first
        self.queue = dss.ReassemblyQueue(start, window=self.receive_window)
        self.receiver = receiver.DataReceiver(self.anomalies,
                                              receiver.ChecksumBudget(_NO_BUDGET_LIMIT,
                                                                      _NO_BUDGET_LIMIT),
                                              self.id, dss.verify_dss_checksum)
        self.receiver.start(start, self.queue, _no_drain)
        self.receiver.checksums = False             # the engine's ChecksumHold verifies them
        self.established = True

    def _join_handshake(self, sf, seg, now: float) -> bool:
        join = sf.join
        if self.keys is None or self.fb.reason:     # RFC 8684 §3.7: no subflow joins a
            self.bad_join += 1                      # connection that fell back (or has no
            sf.close(now, CloseReason.RESET, reset=True,      # keys); accept_join refuses it first
                     mptcp=[opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR)])
            return False
        if self.is_client or sf.state == SYN_SENT:
            synack = seg.first(opt.MpJoinSynAck)
            if synack is None or not self.keys.verify_synack(synack.hmac, join.local_nonce,
                                                             synack.nonce):
                self.bad_join += 1          # RFC 8684 §3.2: a bad HMAC closes with a RST
                sf.close(now, CloseReason.RESET, reset=True,
                         mptcp=[opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR)])
                return False
            sf.take_join_synack(synack)
            return True
        ack = seg.first(opt.MpJoinAck)
        if ack is None or not self.keys.verify_ack(ack.hmac, join.local_nonce, join.remote_nonce):
            self.bad_join += 1
            sf.close(now, CloseReason.RESET, reset=True,
                     mptcp=[opt.MpTcpRst(opt.ResetReason.MPTCP_ERROR)])
            return False
        return True

    def subflow_established(self, sf, now: float) -> None:
        """The subflow's TCP handshake completed (and its MPTCP part was valid)."""
        sf.start_keepalive(now)
        if sf.join is None:
            self._count_half_open(-1)
            if self.is_client:
                sf.send_ack(now, [] if self.fb.reason else self.mpc_ack_options())
            if self.fastopen is None or not self.fastopen.early:   # (TFO: told at the SYN)
                self._event(_new_event(ev.ConnectionEstablished, self.id,
                                       (_text(self.local[0]), self.local[1]),
                                       (_text(self.remote[0]), self.remote[1]),
                                       self.fb.checksums))
            self._subflow_event(sf)
            self.fb.established()                   # reported from now on (RFC 8684 §3.7)
            return
        if self.is_client:                          # third ACK; data waits for the fourth
            sf.send_join_ack(now, self.join_ack_options(sf))
            return
        sf.complete_join(now)                       # server: the fourth ACK (RFC 8684 §3.2)
        self._subflow_event(sf)

    def _subflow_event(self, sf) -> None:
        self._event(_new_event(ev.SubflowEstablished, self.id, sf.sid,
                               (_text(sf.local), sf.lport), (_text(sf.remote), sf.rport),
                               sf.local_address_id, sf.remote_address_id, sf.backup))

    def on_duplicate_syn(self, sf, now: float) -> None:
        """A SYN or SYN/ACK again on an established subflow: our last handshake ACK was lost."""
        if sf.join is None and self.is_client and not self.fully_established:
            sf.send_ack(now, self.mpc_ack_options())
        elif sf.join is not None and self.is_client and not sf.join.established:
            sf.send_ack(now, self.join_ack_options(sf))

    # ================================================================ PathOwner
    # what the path manager asks (pathmanager.PathOwner)
    def mptcp_keys(self):
        return self.keys

    def ended(self):
        return self.terminated

    def is_fully_established(self) -> bool:
        return self.fully_established

    def join_refusal(self):
        """Why no subflow may join now, or None. Linux accepts a join only while its MPTCP
        socket is ESTABLISHED and fully established (mptcp_can_accept_new_subflow), else a RST
        with MP_TCPRST "administratively prohibited": not once it has our DATA_FIN in order
        (CLOSE_WAIT) or has closed its own side. So none once our DATA_FIN is sent or next to
        go (close() with nothing left before it), or the peer's has arrived in order. Data still
        waiting behind a close() may yet be carried by a join, which the peer, not having our
        DATA_FIN, accepts; Linux's client opens none from FIN_WAIT_1 (mptcp_is_fully_established
        in __mptcp_subflow_connect)."""
        if self.terminated:
            return f"the connection has ended ({self.terminated})"
        if self.fb.reason:
            return "the connection fell back to TCP (RFC 8684 §3.7)"
        if self.local_closed and not self.unsent:
            return "our DATA_FIN is sent or next to go (close() or end_stream)"
        if self.queue is not None and _queue_eof(self.queue):
            return "the peer's DATA_FIN has arrived"
        return None

    def initial_path(self) -> tuple:
        return self.local, self.remote

    def open_subflow(self, local: bytes, lport: int, remote: bytes, rport: int, now: float,
                     join, backup: bool, remote_address_id: int):
        return self._new_subflow(local, lport, remote, rport, now, join=join, backup=backup,
                                 remote_address_id=remote_address_id)

    def usable_subflows(self) -> list:
        return self._usable()

    def emit(self, event) -> None:
        self._event(event)

    def option_ignored(self) -> None:
        self.ignored_options += 1

    # ================================================================ FallbackOwner
    # what the fallback asks (fallback.FallbackOwner)
    def has_data_level(self) -> bool:
        return self.allocator is not None

    def only_subflow(self, sf) -> bool:
        return len(self.all_subflows) == 1 and sf.join is None

    def continue_as_tcp(self, sf, window, held: list, now: float) -> None:
        """RFC 8684 §3.7, the data level's side of a fallback (fallback.Fallback.start)."""
        self.endpoint.counts["fallbacks"] += 1
        self._forget_token()
        if self.allocator is None:                  # no keys: number the data from 1 each way
            self._data_level(1, 1, 0xFFFF if window is None else window)
            self.established = True
        self.fully_established = True
        # RFC 8684 §3.7: from now on only TCP resends, at the original subflow positions;
        # nothing queued for reinjection before the fallback may go out after it
        self.reinject.clear()
        self.retrans_at = None                      # nor the data-level timer
        side = self._side(sf)
        self.receiver.declare(0, side, self.remote_first_dsn, 1, 0, False, None, False)
        self._deliver_held(sf, held)                # TCP took them: now plain TCP's bytes
        for other in list(self.subflows):
            if other is not sf:
                other.close(now, CloseReason.RESET, reset=True)
        if self.fin_dsn is not None and not self.fin_acked:
            # our DATA_FIN went out as a DSS but was not acknowledged: the peer reads no DSS
            # any more, so it goes again as what a DATA_FIN is after fallback, the TCP FIN
            # (RFC 8684 §3.7; §3.3.3: it takes the stream's next sequence number); TCP
            # resends it, and its ACK is the DATA_ACK (_fallback_ack)
            self.fin_at = None
            if self.fb.pending_fail is not None:
                sf.send_ack(now)                      # the MP_FAIL answer first, on a pure
            sf.send_fin(now)                          # ACK (as data_options sends it)

    def deliver_as_tcp(self, sf, held: list) -> None:
        self._deliver_held(sf, held)
        self._check_eof()

    def _deliver_held(self, sf, held: list) -> None:
        """The bytes of checksum-held mappings, delivered as plain TCP's (after fallback)."""
        for mapping in held:
            for start, data in mapping.runs():
                self.receiver.deliver(0, self._side(sf), start, len(data), data)
        if held:
            self._mark_data()

    def note_anomaly(self, sid: int, text: str) -> None:
        self.anomalies.append(receiver.Event(0, sid, text, None))
        self._bound_anomalies()

    def _forget_token(self) -> None:
        """RFC 8684 §3.7: no subflow may join a connection that fell back (or never spoke
        MPTCP), so its token leaves the endpoint's table: an MP_JOIN SYN naming it is then an
        unknown token (RST with MP_TCPRST, §3.2). The token is forgotten here too, so that the
        connection's end cannot remove another connection that drew the same token since."""
        self.endpoint.tokens.remove(self.local_token)
        self.local_token = None

    def _fallback_ack(self, sf, seg, now: float) -> None:
        """After fallback the subflow's ACK is the DATA_ACK (our FIN is the DATA_FIN)."""
        if sf.join is not None:
            return
        ack = sf.rel_ack(seg.ack)
        if not 1 <= ack <= sf.snd_nxt:
            return
        data = ack - 1
        if sf.fin_sent and ack == sf.snd_nxt:
            data -= 1
            if not self.fin_acked:
                self.fin_acked = True
                self.fin_at = None
        data_ack = (self.local_first_dsn + data) & MASK64
        before = _allocator_data_ack(self.allocator)
        if self.allocator.acknowledge(data_ack):
            self.retained.release(_allocator_data_ack(self.allocator))
            if _allocator_data_ack(self.allocator) != before:
                self._space_opened()
            self._update_window(seg.window << sf.peer_wscale, data_ack)
        if self.fin_acked:
            self._check_closed(now)

    # ================================================================ established segments
    def on_options(self, sf, seg, now: float) -> None:
        """The MPTCP options of a segment on an established subflow (RFC 8684 §3.3-3.4)."""
        self.segments += 1
        if self.fb.reason:
            for o in seg.mptcp:                       # only the answer to our MP_FAIL counts
                if type(o) is opt.MpFail:
                    self.fb.mp_fail_seen()
            self._fallback_ack(sf, seg, now)
            return
        if self.is_client and not self.fully_established and sf.join is None \
                and sf.rel_ack(seg.ack) > 1:
            if not _shows_full_establishment(seg.mptcp):
                # RFC 8684 §3.7: our data was acknowledged without a DATA_ACK: the server (or
                # a middlebox) does not speak MPTCP any more
                self.fb.start(now, "data acknowledged without a DATA_ACK", sf)
                self._fallback_ack(sf, seg, now)
                return
            self._fully_established(now)            # (an ADD_ADDR without a DATA_ACK)
        if sf.join is not None and not sf.join.established and self.is_client \
                and not seg.flags & 0x02:
            sf.join_acknowledged()                  # the fourth ACK
            self._subflow_event(sf)
        if seg.dss_only:                              # the usual layout: one DSS, read into
            # the segment's fields (wire.established.read_usual); the DATA_ACK in C
            usual_ack = 0
            window_usable = False                     # (no data level: no DATA_ACK to take)
            if self.allocator is not None:
                usual_ack = self._full_data_ack(seg.dss_ack, seg.dss_ack64)
                window_usable = self._on_data_ack(usual_ack, now)
            if seg.dss_mapped:
                self._on_mapping(sf, seg.dss_dsn, True, seg.dss_ssn, seg.dss_length,
                                 seg.dss_checksum, False, seg)
            if self.allocator is not None and window_usable:
                self._move_edge(seg.window << sf.peer_wscale, usual_ack)
            return
        data_ack = None
        window_usable = True
        for o in seg.mptcp:
            if type(o) is _Dss:                       # the fast path: every data segment's
                # its fields by name, unpacked from a plain tuple: compiled, a cast (indexing a
                # subclass of tuple from C goes through its type's __getitem__, a tuple's items
                # are read directly; nothing is allocated)
                ack, ack64, dsn, dsn64, ssn, length, checksum, data_fin = cython.cast(tuple, o)
                if ack is not None and self.allocator is None:
                    data_ack, window_usable = None, False
                elif ack is not None:
                    data_ack = self._full_data_ack(ack, ack64)
                    window_usable = self._on_data_ack(data_ack, now)
                    if not window_usable:
                        data_ack = None
                if dsn is not None:
                    self._on_mapping(sf, dsn, dsn64, ssn, length, checksum, data_fin, seg)
                continue
            handler = _OPTION_HANDLERS.get(type(o))   # the others, by type (below the class)
            if handler is None:
                self.ignored_options += 1             # one the engine does not act upon here
            elif handler(self, sf, o, seg, now):
                return                                # the segment's processing ends there
        if self.allocator is not None and window_usable:
            self._update_window(seg.window << sf.peer_wscale, data_ack)

    def _full_data_ack(self, ack: int, ack64: bool) -> int:
        """A DATA_ACK as 64 bits: one of 32 bits (RFC 8684 §3.3.2) is placed next to the
        next DSN to send (Linux's __mptcp_expand_seq). The data level must exist."""
        if ack64:
            return ack
        return dss.expand_seq(_allocator_next_dsn(self.allocator), ack)

    def _on_data_ack(self, ack: int, now: float) -> bool:
        """A DATA_ACK (RFC 8684 §3.3.2), as 64 bits (``_full_data_ack``), on a connection
        with a data level: what it acknowledges is released. Returns whether it was taken:
        not when it lies behind the current one or beyond what was sent (ignored, as Linux
        does; the window of that segment is then ignored too)."""
        if self.is_client and not self.fully_established:
            self._fully_established(now)
        before = _allocator_data_ack(self.allocator)
        if ack == before:                           # the same DATA_ACK again (every segment
            return True                             # of a one-way transfer's receiver)
        if self.fin_dsn is not None and ack == (self.fin_dsn + 1) & MASK64:
            self.allocator.acknowledge(self.fin_dsn)
            if not self.fin_acked:
                self.fin_acked = True
                self.fin_at = None
                self._check_closed(now)
            self.retained.release(_allocator_data_ack(self.allocator))
        elif self.allocator.acknowledge(ack):
            self.retained.release(ack)              # the allocator's DATA_ACK is now ``ack``
        else:
            return False
        if _allocator_data_ack(self.allocator) != before:
            self._space_opened()
            self._data_acked(now)
        return True

    def _data_acked(self, now: float) -> None:
        """The DATA_ACK moved: the data-level retransmission timer waits anew from now, without
        backoff (Linux's __mptcp_clean_una resets it on every advance), or stops when nothing
        sent waits any more. The timer keeps its deadline: handle_timer pushes it on from
        ``progress_at`` when it fires early (a per-ACK move costs two stores)."""
        self.progress_at = now
        self.retrans_backoff = 0
        if _allocator_next_dsn(self.allocator) == _allocator_data_ack(self.allocator):
            self.retrans_at = None

    def _space_opened(self) -> None:
        """Acknowledged bytes left the send buffer, the peer offered a larger window, or the
        connection ended: an endpoint that watches send space lists this connection
        (connections_with_send_space), so a writer waiting on it learns either way."""
        endpoint = self.endpoint
        if endpoint.watch_send_space and not self._space_queued:
            self._space_queued = True
            endpoint._with_space.append(self)

    def _fully_established(self, now: float) -> None:
        """Client: the server has our key (RFC 8684 §3.1): joins and announcements may start,
        the joins once this segment was taken whole (``flush``)."""
        self.fully_established = True
        self.pm.fully_established(now)

    def _update_window(self, window: int, data_ack: int | None) -> None:
        """RFC 8684 §3.3.4: the window is relative to the DATA_ACK (of this segment, else
        the last one taken); the right edge never moves back."""
        if data_ack is None:
            self._move_edge(window, _allocator_data_ack(self.allocator))
        else:
            self._move_edge(window, data_ack)

    def _move_edge(self, window: int, data_ack: int) -> None:
        """``_update_window`` with the DATA_ACK known (a C call where compiled)."""
        edge = _add64(data_ack, window)
        if window > self.peer_window_max:
            self.peer_window_max = window
            self._space_opened()
        if _diff64(edge, self.peer_edge) > 0:
            self.peer_edge = edge
            self.persist_backoff = 0
            self.persist_at = None

    def _on_mapping(self, sf, dsn, dsn64, ssn: int, length: int, checksum, data_fin,
                    seg) -> None:
        """A DSS mapping (RFC 8684 §3.3.1): ``length`` data-level bytes (a DATA_FIN counted)
        from DSN ``dsn`` (32 bits unless ``dsn64``) at relative subflow sequence ``ssn``. Acted
        upon only when it is consistent with what the connection knows (docs/hardening.md,
        "Mappings and DATA_FINs"); anything else is ignored, not stored, and counted in
        ``refused_mappings``."""
        if self.receiver is None:
            return
        if not dsn64:                                 # a 32-bit DSN: the 64-bit value next
            # to the 64-bit value next to the one we expect (§3.3.1)
            dsn = dss.expand_seq(_queue_data_ack(self.queue), dsn)
        if length == 0:                               # the infinite mapping (RFC 8684 §3.7)
            if len(self.all_subflows) == 1 and sf.join is None and self._dsn_acceptable(dsn):
                self.fb.start(self.endpoint.now, "an infinite mapping from the peer", sf)
            else:
                self.ignored_options += 1
            return
        payload_length = length - 1 if data_fin else length
        if payload_length > 0 and sf.last_mapping_is(ssn, dsn, payload_length):
            pass                                      # the one stored last, on every segment
                                                      # cut from its chunk: checked already
        elif payload_length > 0:
            start = self._mapped_start(sf, ssn, seg, payload_length)
            if start < 0 or not self._dsn_acceptable(dsn):
                self.refused_mappings += 1
                return
            if start + payload_length > sf.rcv_nxt:  # (all received before: nothing to store)
                if not self._store_mapping(sf, seg, dsn, start, payload_length, length, checksum):
                    return
                sf.remember_mapping(ssn, dsn, payload_length)
        if data_fin:
            self._on_data_fin(sf, (dsn + payload_length) & MASK64)

    def _mapped_start(self, sf, ssn32: int, seg, payload_length: int) -> int:
        """The relative subflow sequence number a mapping's first byte stands for (its 32-bit
        value taken nearest ``rcv_nxt``, as the subflow reads sequence numbers), or -1 when the
        mapping cannot be the segment's: it came without data (Linux ignores such a mapping
        too; only a DATA_FIN is taken from a pure ACK), does not cover the segment's first
        byte, or starts before the subflow's first byte."""
        if not seg.payload:
            return -1
        rcv_nxt = sf.rcv_nxt
        start = rcv_nxt + _diff32(ssn32, rcv_nxt & MASK32)
        first = sf.rel_seq(seg.seq)
        if start < 1 or first < start or first >= start + payload_length:
            return -1
        return start

    def _dsn_acceptable(self, dsn: int) -> bool:
        """A mapping's first DSN lies within the data-level receive window, or behind it back to
        the peer's first DSN (a retransmission of bytes that came on another subflow: they are
        acknowledged and dropped as duplicates, as Linux does)."""
        return _diff64(dsn, self.remote_first_dsn) >= 0 and \
            _diff64(dsn, _queue_data_ack(self.queue)) < self.receive_window

    def _store_mapping(self, sf, seg, dsn: int, start: int, payload_length: int,
                       data_len: int, checksum) -> bool:
        """Store an acceptable mapping in the subflow's mapping store (and, with checksums, in
        the hold that verifies it). False when it is not stored: it contradicts one stored
        before (an anomaly), or the store or hold has no room for one more mapping ahead."""
        side = self._side(sf)
        _side_release(side, sf.rcv_nxt - 0x10000)     # no acceptable mapping reaches back there
        if len(side) >= MAX_MAPPINGS_AHEAD and start > sf.rcv_nxt:
            self.refused_mappings += 1                # the next in-order one always has room
            return False
        if self.fb.checksums and (checksum is None or not self.fb.hold.can_hold(
                sf.sid, start, payload_length, sf.rcv_nxt)):
            # RFC 8684 §3.3: every mapping carries the checksum once it was negotiated; the
            # hold is full or holds another mapping of these bytes: refused until they come again
            self.refused_mappings += 1
            return False
        before = len(self.anomalies)
        _receiver_declare(self.receiver, seg.number, side, dsn, start, payload_length)
        if len(self.anomalies) != before:             # it contradicts a stored mapping: the
            self._bound_anomalies()                   # first declaration stands
            return False
        if self.fb.checksums:
            self.fb.hold.expect(sf.sid, dsn, start, payload_length, data_len, checksum)
        return True

    def _on_data_fin(self, sf, fin: int) -> None:
        """A DATA_FIN at DSN ``fin`` (RFC 8684 §3.3.3), taken only within the receive window
        and where it agrees with the stream (the same DSN as one taken before, not below data
        received); a refused one leaves no trace, so the genuine one is still taken later."""
        queue = self.queue
        ahead = _diff64(fin, _queue_data_ack(queue))
        if _queue_eof(queue):
            acceptable = ahead == -1                  # the same DATA_FIN again
        else:
            acceptable = 0 <= ahead <= self.receive_window
        if acceptable:
            try:
                queue.data_fin(fin)
            except MptcpError:
                acceptable = False
        if not acceptable:
            self.refused_data_fins += 1
            return
        sf.request_ack()
        self._check_eof()

    def _on_mpc(self, sf, mpc, seg, now: float) -> None:
        """Server: MP_CAPABLE with data maps the first data bytes (RFC 8684 §3.1): subflow
        bytes from 1 at the peer's first DSN, when the segment carries them."""
        if self.is_client or sf.join is not None or mpc.data_len is None or self.receiver is None:
            return
        if not mpc.data_len or not seg.payload or sf.rel_seq(seg.seq) != 1:
            self.refused_mappings += 1
            return
        self._store_mapping(sf, seg, (self.keys.remote_idsn + 1) & MASK64, 1, mpc.data_len,
                            mpc.data_len, mpc.checksum)

    def _side(self, sf):
        """The receive pipeline's side of subflow ``sf`` (kept on the subflow once made)."""
        side = sf.data_side
        if side is None:
            side = self.receiver_side.get(sf.sid)
            if side is None:
                side = self.receiver_side[sf.sid] = self.receiver.subflow(sf.sid)
            sf.data_side = side
        return side

    def receive_data(self, sf, seq: int, payload, seg, now: float) -> bool:
        """In-window subflow bytes [seq, seq + len): place them at the data level. False when
        none could be taken (no mapping yet, or beyond the window): the subflow then does not
        acknowledge them and the peer sends them again."""
        if self.receiver is None:
            return False
        if self.fb.checksums and not self.fb.reason:
            return self._receive_checksummed(sf, seq, payload, seg, now)
        queue = self.queue
        refused, before = queue.refused_bytes, len(self.anomalies)
        _receiver_deliver(self.receiver, seg.number, self._side(sf), seq, payload)
        if queue.refused_bytes != refused:
            return False
        if len(self.anomalies) != before:
            return self._after_anomalies(sf, seq, payload, seg, now, before)
        self._mark_data()
        self._check_eof()
        return True

    def _after_anomalies(self, sf, seq: int, payload, seg, now: float, before: int) -> bool:
        """receive_data's answer when delivering raised anomalies (from index ``before``)."""
        unmapped = any(a.text.endswith("have no mapping") for a in self.anomalies[before:])
        if unmapped and self._unmapped_means_fallback(sf, seq, seg):
            del self.anomalies[before:]
            self.fb.start(now, "data without a DSS mapping", sf)
            return self.receive_data(sf, seq, payload, seg, now)
        self._bound_anomalies()
        if unmapped:
            return False
        self._mark_data()
        self._check_eof()
        return True

    def _receive_checksummed(self, sf, seq: int, payload, seg, now: float) -> bool:
        """With DSS checksums: the bytes wait in the hold until their mapping is whole and
        verified (mptcp_fast.engine.integrity); a failure is RFC 8684 §3.7's MP_FAIL
        (fallback.Fallback.checksum_failed)."""
        fb = self.fb
        if not fb.hold.covers(sf.sid, seq, len(payload)):
            if self._unmapped_means_fallback(sf, seq, seg):     # the peer fell back
                fb.start(now, "data without a DSS mapping", sf)
                return self.receive_data(sf, seq, payload, seg, now)
            return False                              # no checksummed mapping (yet): not ACKed
        try:
            ranges = self._side(sf).resolve(seq, len(payload))
        except MptcpError:
            return False
        queue = self.queue
        limit = (_queue_data_ack(queue) + _queue_window_left(queue)) & MASK64
        if _beyond(ranges, limit):
            return False                              # beyond the window: not taken
        for held in fb.hold.take(sf.sid, seq, payload):
            if held.ok:
                fb.count_verified()
                queue.push(held.dsn, bytes(held.data))
                self._mark_data()
            else:
                fb.checksum_failed(sf, held, now)
                return sf.state != CLOSED
        self._check_eof()
        return True

    def _unmapped_means_fallback(self, sf, seq: int, seg) -> bool:
        """Linux's DssFallback (RFC 8684 §3.7): in-order data that came without any mapping on
        the only subflow there has ever been, in a segment whose sequence and ACK were
        acceptable (RFC 5961; Linux reads mappings in order too), turns the connection into
        plain TCP; with checksums, only before any mapping's checksum was verified (Linux's
        valid_csum_seen), so that both ends decide it together. A segment whose mapping was
        refused, e.g. one that lies, is only refused."""
        if self.fb.reason or len(self.all_subflows) != 1 or sf.join is not None \
                or seq != sf.rcv_nxt or (self.fb.checksums and self.fb.checksums_verified):
            return False
        for o in seg.mptcp:
            if type(o) is opt.Dss and o.dsn is not None or type(o) is opt.MpCapable:
                return False
        return True

    def _bound_anomalies(self) -> None:
        """Keep the first anomalies for the user; count the rest."""
        if len(self.anomalies) > ANOMALIES_KEPT:
            self.anomalies_dropped += len(self.anomalies) - ANOMALIES_KEPT
            del self.anomalies[ANOMALIES_KEPT:]

    def _check_eof(self) -> None:
        if self.queue is not None and _queue_eof(self.queue) and not self.eof_reported:
            if not self.events or self.events[-1] is not _EOF:
                if _EOF not in self.events:
                    self._event(_EOF)
            self._check_closed(self.endpoint.now)

    # ================================================================ writing
    def checksum_offload(self) -> bool:
        return self.endpoint.checksum_offload

    def data_options(self, sf, chunk) -> list:
        if self.fb.pending_fail is not None:          # the answer to the peer's MP_FAIL goes
            sf.send_ack(self.endpoint.now)            # first, on a pure ACK as Linux sends it:
                                                      # data without a mapping would be read
                                                      # as a fallback of its own (DssFallback)
        if self.fb.take_infinite_mapping():           # RFC 8684 §3.7: one DSS of length 0
            return [opt.Dss(None, None, chunk.dsn, True, chunk.seq & MASK32, 0,
                            0 if self.fb.checksums or self.fb.reason else None)]
        if self.fb.reason:
            return []
        if chunk.mpc:
            return [_mp_capable(self.version, self._mpc_flags(), self.local_key, self.remote_key,
                                len(chunk.data), chunk.checksum)]
        return [_dss(_queue_data_ack(self.queue), chunk.dsn, chunk.seq & MASK32, len(chunk.data),
                     chunk.checksum)]

    def dss_data_ack(self):
        """The DATA_ACK of the usual data segment, or None: after fallback (no MPTCP option)
        and while the answer to an MP_FAIL is owed (data_options sends it first)."""
        if self.fb.reason or self.fb.pending_fail is not None:
            return None
        return _queue_data_ack(self.queue)

    def fell_back(self) -> bool:
        return bool(self.fb.reason)

    def plain_data_ack(self):
        """The DATA_ACK when a pure ACK carries nothing else (no echo, announcement or
        DATA_FIN due), else None."""
        fb = self.fb
        if self.queue is None or self.terminated or fb.reason or fb.pending_fail is not None \
                or self.pm.signals_owed() \
                or (self.fin_dsn is not None and not self.fin_acked):
            return None
        return _queue_data_ack(self.queue)

    def ack_options(self, sf) -> list:
        if self.fb.pending_fail is not None and self.queue is not None:   # RFC 8684 §3.7
            return [opt.Dss(_queue_data_ack(self.queue), True), opt.MpFail(self.fb.take_fail())]
        data_ack = None if self.queue is None else _queue_data_ack(self.queue)
        signals = self.pm.ack_options(sf, data_ack)
        if signals is not None:                       # an echo, REMOVE_ADDR, MP_PRIO, ADD_ADDR
            return signals
        if self.queue is None or self.terminated is CloseReason.ABORTED or self.fb.reason:
            return []
        if self.fin_dsn is not None and not self.fin_acked:
            return [_dss(_queue_data_ack(self.queue), self.fin_dsn, 0, 1,
                         0 if self.fb.checksums else None, True)]
        return [_dss(_queue_data_ack(self.queue))]

    def flush(self, now: float) -> None:
        """Send what can be sent now: lost segments, reinjections, new data, DATA_FIN, ACKs."""
        for sf in self.subflows:
            if sf.loss_scan > sf.snd_una and sf.has_lost():
                sf.retransmit_lost(now)
        if self.allocator is not None and not self.terminated:
            self._push(now)
        self.pm.flush(now)                            # the path manager's turn: joins due,
                                                      # an ADD_ADDR due
        for sf in self.subflows:
            if sf.ack_pending and sf.state != CLOSED:
                if sf.join is not None and not sf.join.established and self.is_client:
                    continue
                sf.send_ack(now)

    def _usable(self):
        return [sf for sf in self.subflows if sf.usable]

    def _push(self, now: float) -> None:
        redundant = self.redundant and not self.fb.reason
        if not self.unsent and not self.reinject and (not self.local_closed
                                                      or self.fin_dsn is not None) \
                and not redundant:
            return                                    # nothing to send: the common ACK case
        allocator = self.allocator
        scheduler = self.scheduler
        if self.is_client and not self.fully_established:
            ready = [sf for sf in self.subflows if sf.join is None and sf.usable]
        else:
            ready = self.subflows
        while self.reinject:
            if not self._send_reinjection(ready, now):
                break
        if redundant:
            self._catch_up(ready, now)
        while self.unsent:
            room = _diff64(self.peer_edge, _allocator_next_dsn(allocator))
            if room <= 0:
                self._arm_persist(now)
                break
            if type(scheduler) is LowestRtt:          # the default's pick, as a C call
                sf = _shortest_linger(ready)
            else:
                sf = scheduler.pick(ready, len(self.unsent),
                                    _diff64(self.peer_edge, _allocator_data_ack(allocator)))
            if sf is None:
                break
            size = sf.window.mss                   # its payload_size, read as a C field
            burst = scheduler.burst                # the most the scheduler gives it at once
            n = min(len(self.unsent), room, sf.room(), MAX_CHUNK // size * size, burst)
            first = self.is_client and not self.fully_established and sf.join is None \
                and not self.fb.reason and self.version == 1     # v0 has no such form
            if first:
                if _allocator_next_dsn(allocator) != (self.keys.local_idsn + 1) & MASK64:
                    break                             # one MP_CAPABLE data segment at a time
                n = min(n, size)
            data = self.unsent.take(n)
            dsn = allocator.allocate_dsn(sf, sf.snd_nxt, n)
            self.retained.append(dsn, data)
            sf.send_chunk(_new_chunk(sf.snd_nxt, data, dsn,
                                     self._checksum(dsn, sf.snd_nxt, data), first), now)
            if redundant:                             # and on every other subflow with room
                self.redundant_sent[sf.sid] = _allocator_next_dsn(allocator)
                self._catch_up(ready, now)
        if self.retrans_at is None:
            self._arm_retransmission(now)
        if not self.unsent and not self.reinject and self.local_closed and self.fin_dsn is None:
            self.fin_dsn = _allocator_next_dsn(allocator)   # RFC 8684 §3.3.3: a DSN of its own
            if self.fb.reason:
                for sf in self.subflows:              # plain TCP: the FIN is the DATA_FIN
                    sf.send_fin(now)
            else:
                self._send_data_fin(now)

    def _catch_up(self, ready, now: float) -> None:
        """The redundant scheduler: every subflow sends every byte. Each has a cursor (the
        data-level byte it has sent up to); with room, it sends what it has not yet carried
        and the peer has not yet acknowledged, before any new data."""
        allocator = self.allocator
        for sf in ready:
            if not sf.usable or not sf.has_room(0):
                continue
            cursor = self.redundant_sent.get(sf.sid, _allocator_data_ack(allocator))
            if seq64_diff(_allocator_data_ack(allocator), cursor) > 0:
                cursor = _allocator_data_ack(allocator)           # acknowledged meanwhile: skip it
            size = sf.payload_size
            while seq64_diff(_allocator_next_dsn(allocator), cursor) > 0 and sf.has_room(0):
                n = min(seq64_diff(_allocator_next_dsn(allocator), cursor), sf.room(),
                        MAX_CHUNK // size * size)
                if n <= 0:
                    break
                data = self.retained.slice(cursor, n)
                allocator.resend(cursor, n, sf, sf.snd_nxt)
                sf.send_chunk(Chunk(sf.snd_nxt, data, cursor,
                                    self._checksum(cursor, sf.snd_nxt, data)), now)
                cursor = (cursor + n) & MASK64
            self.redundant_sent[sf.sid] = cursor

    def _checksum(self, dsn: int, seq: int, data: bytes):
        if not self.fb.checksums:
            return None
        return dss.dss_checksum(dsn, seq & MASK32, len(data), data)

    def _send_reinjection(self, ready, now: float) -> bool:
        """Send the first reinjection range (or what the window allows of it) on another
        subflow; False when none can take it now. Never after fallback (RFC 8684 §3.7): with
        no DSS mapping a subflow byte is the next stream byte, so a copy sent at the current
        position would be delivered as new data; TCP resends at the original positions."""
        if self.fb.reason:
            self.reinject.clear()
            return False
        dsn, length = self.reinject[0]
        behind = seq64_diff(_allocator_data_ack(self.allocator), dsn)
        if behind > 0:                                # acknowledged meanwhile
            if behind >= length:
                self.reinject.popleft()
                return True
            dsn, length = (dsn + behind) & MASK64, length - behind
        scheduler = self.scheduler
        sf = scheduler.pick(ready, length,
                            _diff64(self.peer_edge, _allocator_data_ack(self.allocator)))
        if sf is None:
            return False
        size = sf.payload_size
        n = min(length, sf.room(), MAX_CHUNK // size * size, scheduler.burst)
        data = self.retained.slice(dsn, n)
        self.allocator.resend(dsn, n, sf, sf.snd_nxt)
        sf.send_chunk(Chunk(sf.snd_nxt, data, dsn, self._checksum(dsn, sf.snd_nxt, data)), now)
        self.reinjected_bytes += n
        if n == length:
            self.reinject.popleft()
        else:
            self.reinject[0] = ((dsn + n) & MASK64, length - n)
        return True

    def _send_data_fin(self, now: float) -> None:
        """The DATA_FIN on a pure ACK on every usable subflow, as Linux sends it; resent until
        it is acknowledged."""
        for sf in self._usable():
            sf.send_ack(now)
        rto = max([sf.rtt.rto for sf in self.subflows]) if self.subflows else 1.0
        self.fin_at = now + rto * (2 ** self.fin_backoff)

    def _arm_persist(self, now: float) -> None:
        """The peer's window is closed: probe it when nothing is in flight (RFC 9293 §3.8.6.1)."""
        if self.persist_at is None and not any(sf.outstanding for sf in self.subflows):
            rto = min([sf.rtt.rto for sf in self.subflows]) if self.subflows else 1.0
            self.persist_at = now + min(rto * (2 ** self.persist_backoff), 60.0)

    # ================================================================ data-level retransmission
    # RFC 8684 §3.3.6: data not DATA_ACKed in time is sent again at the data level, on another
    # subflow, even when its own subflow did not time out: the peer may have acknowledged a
    # segment at the subflow level and dropped its mapping (Linux's NoDSSInWindow: the mapping
    # lies beyond the window it announced), and then no subflow ever sends those bytes again.
    # After Linux (net/mptcp/protocol.c: mptcp_retransmit_timer, __mptcp_retrans): a timer
    # armed while data waits for its DATA_ACK, pushed on by every DATA_ACK that moves, which
    # resends the oldest unacknowledged chunk when it fires.

    def _data_waiting(self) -> bool:
        """Sent data waits for its DATA_ACK, and the data level may still send it again (not
        after fallback, RFC 8684 §3.7, nor before the server has our key: the initial subflow's
        own retransmission carries the MP_CAPABLE data)."""
        return self.allocator is not None and not self.terminated and not self.fb.reason \
            and _allocator_next_dsn(self.allocator) != _allocator_data_ack(self.allocator) \
            and (self.fully_established or not self.is_client)

    def _arm_retransmission(self, now: float) -> None:
        """Start the timer when data was sent and none was waiting before."""
        if self._data_waiting():
            self.progress_at = now
            self.retrans_at = now + self._retransmission_interval()

    def _retransmission_interval(self) -> float:
        """How long the DATA_ACK may stand still: the longest RTO of the subflows that can carry
        data (Linux's mptcp_set_timeout waits for the last of their retransmission timers, and
        leaves stale subflows out), at least Config.min_rto, doubled for each expiry since the
        DATA_ACK last moved, at most Config.max_rto."""
        longest = self.config.min_rto
        for sf in self.subflows:
            if sf.can_carry() and sf.rtt.rto > longest:
                longest = sf.rtt.rto
        return min(longest * (1 << self.retrans_backoff), self.config.max_rto)

    def _retransmission_timeout(self, now: float) -> None:
        """The timer's deadline came: pushed on when the DATA_ACK moved since it was armed, else
        the oldest unacknowledged chunk goes again and the timer backs off."""
        self.retrans_at = None
        if not self._data_waiting():
            return
        due = self.progress_at + self._retransmission_interval()
        if due > now:
            self.retrans_at = due
            return
        if self._resend_oldest(now):
            self.data_retransmits += 1
        if self.retrans_backoff < RETRANS_BACKOFF_MAX:
            self.retrans_backoff += 1
        self.progress_at = now
        self.retrans_at = now + self._retransmission_interval()

    def _resend_oldest(self, now: float) -> bool:
        """Send the bytes from the DATA_ACK on (one chunk, what the chosen subflow's window
        takes) again, under a new mapping; False when no subflow can take them now."""
        allocator = self.allocator
        head = _allocator_data_ack(allocator)
        sf = self._retransmission_subflow(head)
        if sf is None:
            return False
        size = sf.window.mss                   # its payload_size, read as a C field
        n = min(_diff64(_allocator_next_dsn(allocator), head), sf.room(), MAX_CHUNK // size * size)
        if n <= 0:
            return False
        data = self.retained.slice(head, n)
        allocator.resend(head, n, sf, sf.snd_nxt)
        sf.send_chunk(Chunk(sf.snd_nxt, data, head, self._checksum(head, sf.snd_nxt, data)), now)
        self.reinjected_bytes += n
        return True

    def _retransmission_subflow(self, head: int):
        """The subflow to send the bytes at DSN ``head`` again: one that can carry data and has
        room, best one that did not carry them yet (their own subflow acknowledged them, so its
        path may be the one that loses them), then a non-backup one, then an idle one (Linux's
        mptcp_subflow_get_retrans takes only subflows with nothing in flight), then the lowest
        RTT; their own subflow when it is the only one. None when none has room."""
        carriers = _carriers(self.allocator.outstanding(), head)
        best = best_rank = None
        for sf in self.subflows:
            if not sf.can_carry() or not sf.has_room(0):
                continue
            rank = (sf in carriers, sf.backup, sf.has_outstanding(),
                    _NEVER if sf.rtt.srtt is None else sf.rtt.srtt)
            if best is None or rank < best_rank:
                best, best_rank = sf, rank
        return best

    # ================================================================ timers
    def next_timer(self):
        best = None
        for sf in self.subflows:
            best = _earlier(best, sf.next_timer())
        best = _earlier(best, self.fin_at)
        best = _earlier(best, self.persist_at)
        best = _earlier(best, self.retrans_at)
        return _earlier(best, self.pm.next_timer())   # an ADD_ADDR due

    def handle_timer(self, now: float) -> None:
        for sf in list(self.subflows):
            t = sf.next_timer()
            if t is not None and t <= now:
                sf.handle_timer(now)
        if self.fin_at is not None and now >= self.fin_at and not self.fin_acked:
            self.fin_backoff += 1
            self._send_data_fin(now)
        if self.retrans_at is not None and now >= self.retrans_at:
            self._retransmission_timeout(now)
        self.pm.handle_timer(now)                     # ADD_ADDRs due with no subflow usable
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self.persist_backoff += 1
            usable = self._usable()
            if usable:                                # Linux's tcp_xmit_probe_skb: an old
                probe = usable[0]                     # sequence number draws an ACK
                probe.send_probe(now, self.ack_options(probe))
                self.window_probes += 1
            if self.unsent:
                self._arm_persist(now)

    # ================================================================ subflows ending
    def subflow_reset(self, sf, now: float, seg) -> None:
        """An acceptable RST ended ``sf`` (with MP_TCPRST's reason when it carried one); one
        with MP_FASTCLOSE and our key ends the whole connection (RFC 8684 §3.5)."""
        reason = seg.first(opt.MpTcpRst)
        if seg.first(opt.MpFail) is not None:
            self.fb.mp_fail_seen()
        sf.record_peer_reset(None if reason is None else int(reason.reason))
        fastclose = seg.first(opt.MpFastclose)
        if fastclose is not None and not self.fb.reason:
            if self._fastclosed(fastclose, sf, now):
                return
        sf.close(now, CloseReason.RESET)

    def _on_fastclose(self, sf, option, seg, now: float) -> bool:
        return self._fastclosed(option, sf, now)    # Linux honours it on a plain ACK too

    def _on_mp_fail(self, sf, option, seg, now: float) -> bool:
        """MP_FAIL (RFC 8684 §3.7); after the fallback it may start, the segment's ACK is read
        as plain TCP's."""
        self.fb.on_fail(sf, option, now)
        if not self.fb.reason:
            return False
        self._fallback_ack(sf, seg, now)
        return True

    def _on_add_addr(self, sf, option, seg, now: float) -> bool:
        self.pm.on_add_addr(sf, option, now)        # pathmanager.py
        return False

    def _on_remove_addr(self, sf, option, seg, now: float) -> bool:
        self.pm.on_remove_addr(option, now)
        return False

    def _on_prio(self, sf, option, seg, now: float) -> bool:
        self.pm.on_prio(sf, option)
        return False

    def _on_join_ack(self, sf, option, seg, now: float) -> bool:
        sf.request_ack()                            # our fourth ACK was lost: send it again
        return False

    def _on_join_synack(self, sf, option, seg, now: float) -> bool:
        return False                                # a retransmitted SYN/ACK (TCP answers it)

    def _fastclosed(self, option, sf, now: float) -> bool:
        """MP_FASTCLOSE: with our key the peer ends everything now; otherwise it is a forgery,
        counted and ignored (RFC 8684 §3.5)."""
        if option.receiver_key != self.local_key:
            self.bad_fastclose += 1
            return False
        self._terminate(now, CloseReason.FASTCLOSE)
        for other in list(self.subflows):
            # Linux answers a fast close by resetting every subflow (MP_TCPRST, no reason)
            other.close(now, CloseReason.FASTCLOSE, reset=other is not sf,
                        mptcp=[opt.MpTcpRst(opt.ResetReason.UNSPECIFIED)])
        return True

    def subflow_stale(self, sf, now: float) -> None:
        """Its RTO fired ``stale_after`` times in a row: reinject what it holds elsewhere
        (Linux marks such a subflow stale and reinjects, RFC 8684 §3.3.6). After fallback
        there is nowhere else: TCP's own retransmission goes on (_queue_reinjection)."""
        self._queue_reinjection(sf)

    def _queue_reinjection(self, sf) -> None:
        if self.allocator is None or self.fb.reason:
            return                                    # RFC 8684 §3.7: plain TCP reinjects
                                                      # nothing (no mapping to place a copy)
        for dsn, length in self.allocator.to_reinject(sf):
            self.reinject.append((dsn, length))
        self.endpoint.touch(self)

    def subflow_fin(self, sf, now: float) -> None:
        """The peer closed this subflow: its data goes elsewhere and we close our half. After
        fallback the FIN is the peer's DATA_FIN, and our half stays open for our data."""
        if self.fb.reason and sf.join is None:
            fin_dsn = (self.remote_first_dsn + sf.rcv_nxt - 2) & MASK64
            try:
                self.queue.data_fin(fin_dsn)
            except MptcpError as exc:
                self.anomalies.append(receiver.Event(0, sf.sid, str(exc), None))
                self._bound_anomalies()
            self._check_eof()
            return
        if not self.terminated:
            self._queue_reinjection(sf)
        sf.send_fin(now)

    def subflow_closing(self, sf, now: float, reason: CloseReason) -> None:
        self._subflow_gone_event(sf, reason)

    def subflow_closed(self, sf, now: float, reason: CloseReason) -> None:
        self.fb.hold.drop(sf.sid)
        if sf in self.subflows:
            self.subflows.remove(sf)
        self.cc.remove_subflow(sf.window) if sf.window in self.cc.windows else None
        self.endpoint.unregister(sf)
        self._subflow_gone_event(sf, reason)
        if not self.terminated:
            self._queue_reinjection(sf)
            alive = [s for s in self.subflows if s.state not in (CLOSED, TIME_WAIT)]
            if not alive:
                self._terminate(now, CloseReason.RESET
                                if reason in (CloseReason.RESET, CloseReason.ABORTED) else reason)
        if not self.subflows:
            self.endpoint.forget(self)

    def path_answered(self, sf) -> None:
        self.pm.path_answered(sf)                     # the REMOVE_ADDR was stale or forged

    def path_silent(self, sf) -> None:
        self.pm.path_silent(sf)

    def reset_reply(self, seg) -> None:
        self.endpoint.reset_reply(seg)

    def _subflow_gone_event(self, sf, reason: CloseReason) -> None:
        if not sf.report_once():
            return
        self._event(_new_event(ev.SubflowClosed, self.id, sf.sid, reason, sf.reset_reason,
                               (_text(sf.local), sf.lport), (_text(sf.remote), sf.rport)))

    def _check_closed(self, now: float) -> None:
        """Both DATA_FINs acknowledged: the connection is closed; the subflows end with FINs."""
        if self.terminated or not self.fin_acked or self.queue is None \
                or not _queue_eof(self.queue):
            return
        self._terminate(now, CloseReason.CLOSED)
        for sf in list(self.subflows):
            if sf.state in (ESTABLISHED, SYN_RCVD, CLOSE_WAIT):
                sf.send_fin(now)

    def _terminate(self, now: float, reason: CloseReason) -> None:
        if self.terminated:
            return
        self.terminated = reason = CloseReason(reason)
        self._space_opened()                        # a writer waiting for space: it is over
        self._count_half_open(-1)
        self.fin_at = self.persist_at = self.retrans_at = None
        self.endpoint.tokens.remove(self.local_token)
        if reason is not CloseReason.CLOSED:
            self._check_eof()
        self._event(_new_event(ev.ConnectionTerminated, self.id, reason))


# The MPTCP options of an established segment other than the DSS, by type, as aioquic
# dispatches QUIC frames: handler(connection, subflow, option, segment, now), true when the
# segment's processing ends there (the connection ended or fell back). A type not listed is
# counted in ``ignored_options``.
_OPTION_HANDLERS: dict[type, Callable[..., object]] = {
    opt.MpCapable: Connection._on_mpc,              # the server's first data (RFC 8684 §3.1)
    opt.AddAddr: Connection._on_add_addr,           # RFC 8684 §3.4.1 (pathmanager.py)
    opt.AddAddrV0: Connection._on_add_addr,         # RFC 6824 §3.4.1
    opt.AddAddr2: Connection._on_add_addr,          # draft-ietf-mptcp-rfc6824bis-00
    opt.RemoveAddr: Connection._on_remove_addr,     # RFC 8684 §3.4.2
    opt.MpPrio: Connection._on_prio,                # RFC 8684 §3.3.8
    opt.MpFastclose: Connection._on_fastclose,      # RFC 8684 §3.5
    opt.MpFail: Connection._on_mp_fail,             # RFC 8684 §3.7 (fallback.py)
    opt.MpJoinAck: Connection._on_join_ack,         # RFC 8684 §3.2
    opt.MpJoinSynAck: Connection._on_join_synack,
}

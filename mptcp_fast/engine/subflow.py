"""One subflow: a whole TCP connection (RFC 9293) that carries part of an MPTCP connection.

The subflow owns what TCP owns: the three-way handshake with MSS, window scaling, timestamps
and SACK-permitted (RFC 7323, RFC 2018), sequence numbers, the retransmission queue with its
SACK scoreboard and loss recovery (RFC 6675, NewReno-style without SACK), the retransmission
timer (RFC 6298), delayed ACKs (RFC 9293 §3.8.6.3), FIN, RST and TIME-WAIT. What MPTCP adds
— the options on the handshake, DSS mappings, data ACKs, the shared receive window — is asked
of its connection through ``SubflowOwner``, one documented interface (``syn_options``,
``on_handshake``, ``on_options``, ``receive_data``, ``data_options``, ``ack_options``,
``subflow_*``, ...) that ``Connection`` implements. The other way, the connection never
writes a subflow's fields: it calls methods that say what happened (``restore_from_cookie``,
``take_join_synack``, ``join_acknowledged``, ``request_ack``, ``announce_backup``, ...).

Sequence numbers are kept relative to the initial ones (the SYN is 0, the first data byte 1,
as RFC 8684 §3.3.1 numbers subflow bytes in a mapping) and grow without wrapping; they are
turned into 32-bit wire values only when a segment is written or read.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import attrgetter

try:
    import cython
except ImportError:             # no Cython: the pure backend runs without it
    from .. import _cython_shim as cython

from ..wire import options as opt
from ..wire import packet as pk
from ..errors import option_error
from mptcp_fast.engine.cookies import SynCookies
from mptcp_fast.engine.events import CloseReason
from mptcp_fast._bytes import compact

if not cython.compiled:     # compiled: the C writers, cimported from _segment by subflow.pxd
    from mptcp_fast.wire._segment_py import (ack_packet, data_packet, data_packet_parts,
                                              segment_packet)

# Shared modules absolutely, the compiled siblings relatively: this source also builds
# mptcp_fast._cengine.subflow (docs/design.md, "Two backends, one API").
from .rtt import RttEstimator

__all__ = ["Subflow", "SubflowOwner", "Chunk", "STATE_NAMES"]

if not cython.compiled:     # compiled: pyx/mf_gc.pxd's C call, cimported by subflow.pxd
    def _untrack(obj) -> None:
        """Compiled, the collector stops tracking ``obj`` (numbers and bytes only: never in a
        reference cycle); the pure run has nothing to do."""

MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000                     # typed in the .pxd (a literal this large is an object)
_FIN, _SYN, _RST, _PSH, _ACK = pk.FIN, pk.SYN, pk.RST, pk.PSH, pk.ACK   # C constants when compiled
if not cython.compiled:     # compiled: subflow.pxd's C enum of the same names and values
    (CLOSED, LISTEN, SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT,
     CLOSE_WAIT, LAST_ACK) = range(11)
STATE_NAMES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
               "FIN-WAIT-2", "CLOSING", "TIME-WAIT", "CLOSE-WAIT", "LAST-ACK")
DUP_THRESH = 3                           # RFC 5681 §3.2, RFC 6675 §2
DATA_OPTIONS_SPACE = 28                  # a DSS with 64-bit ack and mapping and checksum (or NOPs)
MAX_OOO_BLOCKS = 256                     # out-of-order holes remembered per subflow
TIMESTAMP_SPACE = 12                     # NOP NOP + the 10-byte option (RFC 7323 Appendix A)
INVALID_ACK_INTERVAL = 0.5               # s between ACKs to invalid pure segments (RFC 5961 §7)
REMOVAL_PROBES = 3                       # keepalives a path gets to answer a REMOVE_ADDR
MIN_PEER_MSS = 88                        # Linux's TCP_MIN_MSS: the smallest MSS we send at
# The most payload one segment (or one DSS mapping) may carry: the 16-bit data-level length,
# and with offload one IP packet: 65,535 bytes less 20 of IPv4 header and 60 of TCP header
# (an IPv6 header lies outside its 16-bit payload length).
MAX_CHUNK = 0xFFFF - 80
# a data segment carrying at least this much goes out as (headers, a view of its payload), for
# the host's writev: an offloaded 64 KiB segment is then never copied in this process
# (Endpoint.packets_to_write); one of an MSS is built whole, as every other segment
VECTORED_PAYLOAD = 8192
_seq_of = attrgetter("seq")
# TCP options written as bytes (RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018 §2-3): kind and length
_NOP = b"\x01"
_MSS_KIND = b"\x02\x04"
_WSCALE_KIND = b"\x03\x03"
_SACK_PERMITTED = b"\x04\x02"


def _timestamps_option(tsval: int, tsecr: int) -> bytes:
    """The timestamps option aligned as on every segment but a handshake: two NOPs first."""
    return b"\x01\x01\x08\x0a" + tsval.to_bytes(4, "big") + tsecr.to_bytes(4, "big")


def _sack_option(blocks) -> bytes:
    """The SACK option (RFC 2018 §3) after two NOPs, of 1 to 4 (left, right) blocks."""
    if not 1 <= len(blocks) <= 4:
        raise option_error("SACK", "blocks", None, "1 to 4 blocks", len(blocks))
    out = b"\x01\x01\x05" + bytes((2 + 8 * len(blocks),))
    for left, right in blocks:
        out += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    return out


class Chunk:
    """Data-level bytes handed to one subflow as one DSS mapping (RFC 8684 §3.3.1): subflow
    bytes [seq, end) carry DSNs [dsn, dsn + end - seq). Every segment cut from it carries the
    whole mapping, as Linux does; ``mpc`` marks the first data of a connection that is not yet
    fully established, which carries MP_CAPABLE instead of a DSS (§3.1)."""
    __slots__ = ("seq", "end", "data", "dsn", "checksum", "mpc")

    def __init__(self, seq: int, data: bytes, dsn: int, checksum, mpc: bool = False):
        self.seq, self.end, self.data, self.dsn = seq, seq + len(data), data, dsn
        self.checksum, self.mpc = checksum, mpc
        if cython.compiled:                 # one per mapping sent: never tracked
            _untrack(self)


class _Sent:
    """One segment in the retransmission queue, and what the scoreboard knows of it."""
    __slots__ = ("seq", "end", "chunk", "sacked", "lost", "retransmitted", "fin")

    def __init__(self, seq: int, end: int, chunk, fin: bool = False):
        self.seq, self.end, self.chunk, self.fin = seq, end, chunk, fin
        self.sacked = self.lost = self.retransmitted = False
        if cython.compiled:                 # one per segment sent: never tracked
            _untrack(self)

    def in_pipe(self) -> bool:
        """RFC 6675 §4 "pipe": not SACKed, and not lost unless retransmitted."""
        return not self.sacked and (not self.lost or self.retransmitted)


def _new_chunk(seq: int, data: bytes, dsn: int, checksum, mpc: bool) -> Chunk:
    """``Chunk(seq, data, dsn, checksum, mpc)`` without the call of ``__init__`` (one per
    mapping sent: compiled, a C function, subflow.pxd)."""
    chunk = Chunk.__new__(Chunk)
    chunk.seq, chunk.end, chunk.data, chunk.dsn = seq, seq + len(data), data, dsn
    chunk.checksum, chunk.mpc = checksum, mpc
    if cython.compiled:                     # as __init__ does: never tracked
        _untrack(chunk)
    return chunk


def _new_sent(seq: int, end: int, chunk, fin: bool = False) -> _Sent:
    """``_Sent(seq, end, chunk, fin)`` without the call of ``__init__`` (one per segment sent:
    compiled, a C function, subflow.pxd)."""
    entry = _Sent.__new__(_Sent)
    entry.seq, entry.end, entry.chunk, entry.fin = seq, end, chunk, fin
    entry.sacked = entry.lost = entry.retransmitted = False
    if cython.compiled:                     # as __init__ does: never tracked
        _untrack(entry)
    return entry


class SubflowOwner:
    """Everything a subflow asks of its connection: the MPTCP half of each TCP event. A
    subflow knows nothing else of the connection (``Connection``, connection.py, implements
    this); what it needs besides comes in through its constructor: the Config, its congestion
    controller, and the endpoint's list of packets to send. A class of its own so that the
    compiled build declares these calls next to the subflow (pyx/mptcp_fast/_cengine/
    subflow.pxd) and makes the per-segment ones C calls."""

    # -- the handshake (RFC 8684 §3.1 MP_CAPABLE, §3.2 MP_JOIN)
    def syn_options(self, sf) -> list:
        """The MPTCP options of our SYN or SYN/ACK on ``sf``."""
        raise NotImplementedError

    def on_handshake(self, sf, seg, now: float) -> bool:
        """The SYN/ACK (client) or third ACK (server) arrived: check its MPTCP part; False
        when that closed the subflow."""
        raise NotImplementedError

    def subflow_established(self, sf, now: float) -> None:
        """The TCP handshake completed (and its MPTCP part was valid)."""
        raise NotImplementedError

    def syn_retransmitted(self, sf, now: float) -> None:
        """Our SYN went unanswered and goes again (without data: RFC 7413's SYN data and
        option are for the first transmission only)."""

    def on_duplicate_syn(self, sf, now: float) -> None:
        """The peer's SYN or SYN/ACK came again: our last handshake ACK may have been lost."""
        raise NotImplementedError

    def join_ack_options(self, sf) -> list:
        """The MP_JOIN third ACK's option (its HMAC), sent again until the fourth ACK."""
        raise NotImplementedError

    # -- every segment (RFC 8684 §3.3)
    def on_options(self, sf, seg, now: float) -> None:
        """The MPTCP options of an acceptable segment on an established subflow."""
        raise NotImplementedError

    def receive_data(self, sf, seq: int, payload, seg, now: float) -> bool:
        """In-window subflow bytes [seq, seq + len(payload)): False when none were taken
        (the subflow then does not acknowledge them)."""
        raise NotImplementedError

    def receive_window_left(self) -> int:
        """The window every subflow advertises (RFC 8684 §3.3.4: one, relative to the
        DATA_ACK)."""
        raise NotImplementedError

    def plain_data_ack(self):
        """The DATA_ACK of a pure ACK that carries nothing else, else None (see ack_options)."""
        raise NotImplementedError

    def ack_options(self, sf) -> list:
        """The MPTCP options of a pure ACK (or FIN, or probe) on ``sf``."""
        raise NotImplementedError

    def dss_data_ack(self):
        """The DATA_ACK a data segment carries in the usual DSS (the segment writer's fast
        layout), or None when its options must come from ``data_options``."""
        raise NotImplementedError

    def checksum_offload(self) -> bool:
        """Whether a large data segment's TCP checksum is left to the device
        (Endpoint.checksum_offload)."""
        raise NotImplementedError

    def data_options(self, sf, chunk) -> list:
        """The MPTCP options of a data segment cut from ``chunk``."""
        raise NotImplementedError

    def fell_back(self) -> bool:
        """The connection is plain TCP now (RFC 8684 §3.7): a FIN is its DATA_FIN."""
        raise NotImplementedError

    # -- the subflow's life
    def subflow_reset(self, sf, now: float, seg) -> None:
        """An acceptable RST (RFC 5961 §3.2) arrived on ``sf``."""
        raise NotImplementedError

    def subflow_fin(self, sf, now: float) -> None:
        """The peer's FIN arrived in order on ``sf``."""
        raise NotImplementedError

    def subflow_stale(self, sf, now: float) -> None:
        """``sf``'s RTO fired ``Config.stale_after`` times in a row."""
        raise NotImplementedError

    def subflow_closing(self, sf, now: float, reason: CloseReason) -> None:
        """``sf`` entered TIME-WAIT: it carries nothing more."""
        raise NotImplementedError

    def subflow_closed(self, sf, now: float, reason: CloseReason) -> None:
        """``sf`` is CLOSED (once)."""
        raise NotImplementedError

    def path_answered(self, sf) -> None:
        """The path of ``sf`` answered the probe after the peer's REMOVE_ADDR: it is kept."""
        raise NotImplementedError

    def path_silent(self, sf) -> None:
        """The path of ``sf`` never answered the REMOVE_ADDR probe: its address is gone."""
        raise NotImplementedError

    def reset_reply(self, seg) -> None:
        """Answer ``seg`` with the RST of RFC 9293 §3.10.7 (an unacceptable ACK in a
        handshake); no subflow state is involved."""
        raise NotImplementedError


if not cython.compiled:     # compiled: subflow.pxd's inline C function, the same test
    def _earlier(a, b):
        """The earlier of two timer deadlines, either of which may be None (no timer): the
        first one on a tie."""
        if a is None:
            return b
        if b is not None and b < a:
            return b
        return a


def _diff32(a: int, b: int) -> int:
    """Signed distance a - b on the 32-bit circle (mptcp_fast.wire.serial.seq32_diff, here so that
    the compiled build makes it C arithmetic)."""
    return ((a - b + _HALF32) & MASK32) - _HALF32


def _window_shift(window: int) -> int:
    """The smallest window scale that can advertise ``window`` (RFC 7323 §2.3, at most 14)."""
    shift = 0
    while shift < 14 and window >> shift > 0xFFFF:
        shift += 1
    return shift


class Subflow:
    """See the module text. ``sid`` is the connection's number for it; ``join`` holds the
    MP_JOIN state of an additional subflow (None for the initial one)."""

    def __init__(self, conn: SubflowOwner, sid: int, local: bytes, lport: int, remote: bytes,
                 rport: int, iss: int, *, config, cc, out: list, ts_offset: int,
                 local_address_id: int = 0, remote_address_id: int = 0, join=None,
                 backup: bool = False):
        self.conn, self.sid, self.join = conn, sid, join
        self.data_side = None                # the receive pipeline's side of it (Connection._side)
        self.local, self.lport, self.remote, self.rport = local, lport, remote, rport
        self.config = config
        self.cc = cc                         # the connection's controller (coupled: RFC 6356)
        self._out = out                      # where every segment goes: the endpoint's list
        self.state = CLOSED
        self.backup = backup                 # the scheduler's "use only when nothing else"
        self.prio_pending = False            # an MP_PRIO to send on this subflow
        self.local_address_id = local_address_id
        self.remote_address_id = remote_address_id
        self.closed_reason: CloseReason | None = None   # once it is CLOSED
        self.reset_reason: int | None = None   # the MP_TCPRST reason of a RST received
        self.reported = False                # SubflowClosed was queued
        # -- send side (RFC 9293 §3.3.1)
        self.iss = iss
        self.snd_una = self.snd_nxt = 0      # relative: the SYN is 0
        self.sent: list[_Sent] = []          # from index sent_head on
        self.sent_head = 0
        self.pipe = 0                        # RFC 6675 §4, bytes
        self.fin_sent = False
        self.peer_wscale = 0
        self.peer_wscale_offered = False
        self.peer_mss = 536                  # RFC 9293 §3.7.1 default
        self.max_snd_wnd = 0                 # the largest window the peer offered (RFC 5961 §5)
        self.sack_ok = self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_at = 0.0              # when ts_recent was taken (Linux's ts_recent_stamp)
        self.ts_offset = ts_offset           # the 4-tuple's TSval clock (RFC 7323 §7.1)
        self.rcv_rtt = 0.0                   # the round trip the receiver sees (0: not yet)
        self.rcv_rtt_echo = 0                # the timestamp echo it was last measured from
        # -- receive side
        self.irs = 0
        self.rcv_nxt = 0
        self.ooo: list[list[int]] = []       # [start, end] received above rcv_nxt, merged
        # the block holding the latest out-of-order data
        self.recent_block: tuple[int, int] | None = None
        self.rcv_wscale = _window_shift(config.receive_window)
        if cython.compiled:      # numbers and untracked entries only: never in a cycle
            _untrack(self.sent)
            _untrack(self.ooo)
        self.map_ssn = self.map_dsn = self.map_length = -1    # the mapping stored last
        # the per-segment Config values, read once (Config is frozen): C fields when compiled
        self.receive_window = config.receive_window
        self.delayed_ack = config.delayed_ack
        self.offload = config.offload
        self.keepalive = config.keepalive
        self.fin_received = False
        # -- ACK policy
        self.ack_pending = False             # an ACK is owed: the next segment or a pure ACK
        self.unacked_segments = 0            # full segments received since the last ACK sent
        self.delack_at: float | None = None
        # -- timers and recovery
        self.rtt = RttEstimator(config.min_rto, config.max_rto)
        self.rto_at: float | None = None
        self.timeouts = 0                    # RTOs in a row without progress
        self.stale = False
        self.timed_end = 0                   # the one segment being timed: its end (0: none)
        self.timed_at = 0.0                  # and when it was sent
        # congestion window validation (Linux's tcp_cwnd_validate, RFC 7661's aim): whether
        # the window was filled in the current round, else the most bytes outstanding in it
        self.cwnd_limited = False
        self.max_flight = 0
        self.cwnd_usage_end = 0              # the round ends when snd_una reaches this
        self.dupacks = 0
        self.in_recovery = False
        self.recovery_point = 0              # snd_nxt when the last loss episode began
        self.high_sacked = 0                 # highest SACKed sequence end seen
        self.loss_scan = 0                   # below this, unSACKed segments were examined
        self.syn_sent_count = 0
        self.syn_time: float | None = None
        self.timewait_at: float | None = None
        self.keepalive_at: float | None = None   # when to probe an idle one (Config.keepalive)
        self.keepalive_probes = 0
        self.removal_at: float | None = None   # a REMOVE_ADDR's probe awaits an answer until
        self.removal_probes = 0
        self.last_invalid_ack = -INVALID_ACK_INTERVAL   # when a throttled ACK last went out
        self.window = cc.add_subflow(self._payload_size_for(self.own_mss))
        self.stats_retransmits = 0
        self.bytes_sent = self.bytes_received = 0
        # TCP Fast Open (RFC 7413; engine/fastopen.py): bytes of the SYN's data the receiving
        # end took; the relative sequence numbers (ours as client, the peer's as server) start
        # after them, as the DSS mappings count (RFC 8684 App. B.2, Linux's ssn_offset)
        self.syn_data_taken = 0

    window_shift = staticmethod(_window_shift)

    # ---------------------------------------------------------------- small facts
    def __repr__(self):
        return (f"<Subflow {self.sid} {STATE_NAMES[self.state]} snd {self.snd_una}..{self.snd_nxt}"
                f" rcv {self.rcv_nxt} cwnd {self.window.cwnd:.0f} pipe {self.pipe}>")

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def srtt(self):
        return self.rtt.srtt

    @property
    def rttvar(self):
        return self.rtt.rttvar

    @property
    def usable(self) -> bool:
        """Can carry new data now (the scheduler's question)."""
        return self.can_carry()

    def can_carry(self) -> bool:
        """``usable`` as a method: a C call from the compiled connection."""
        return ((self.state == ESTABLISHED or self.state == CLOSE_WAIT) and not self.stale
                and not self.fin_sent and (self.join is None or self.join.established))

    def has_room(self, size: int = 0) -> bool:
        """Whether the congestion window takes ``size`` more bytes (one full segment at least)."""
        return self.window.can_send(self.pipe, max(size, self.window.mss))

    @property
    def own_mss(self) -> int:
        """The MSS this subflow offers: ``Config.mss`` is the MTU less 40 bytes (IPv4 and TCP
        headers); an IPv6 header is 20 bytes longer (RFC 8200 §5: the MTU less 60)."""
        return self.config.mss - 20 if len(self.local) == 16 else self.config.mss

    def _payload_size_for(self, mss: int) -> int:
        return max(64, mss - DATA_OPTIONS_SPACE - TIMESTAMP_SPACE)

    @property
    def payload_size(self) -> int:
        """Payload bytes of one data segment: the MSS less the options every data segment
        carries (RFC 6691: the MSS does not include options)."""
        return self.window.mss

    @property
    def outstanding(self) -> bool:
        return self.has_outstanding()

    def has_outstanding(self) -> bool:
        """``outstanding`` as a method: a C call from compiled code."""
        return self.snd_nxt > self.snd_una

    def _wire_seq(self, rel: int) -> int:
        return (self.iss + rel) & MASK32

    def rel_seq(self, wire: int) -> int:
        """A received 32-bit sequence number as a relative one (nearest ``rcv_nxt``)."""
        return self.rcv_nxt + _diff32(wire, (self.irs + self.rcv_nxt) & MASK32)

    def rel_ack(self, wire: int) -> int:
        """A received 32-bit ACK number as a relative one (nearest ``snd_una``)."""
        return self.snd_una + _diff32(wire, (self.iss + self.snd_una) & MASK32)

    def _tsval(self, now: float) -> int:
        # a 1 ms clock (RFC 7323 §5.4); the cast truncates as int() does, in C when compiled
        return (cython.cast(cython.longlong, now * 1000) + self.ts_offset) & MASK32

    # ---------------------------------------------------------------- what its connection decides
    # The connection never writes a subflow's fields: it tells the subflow what happened.
    def restore_from_cookie(self, seg, mss: int, now: float) -> None:
        """Server side, under SYN cookies (engine/cookies.py): the third ACK ``seg`` carried a
        valid cookie, so the state our SYN/ACK would have left is rebuilt from it: SYN-RECEIVED
        with the SYN/ACK sent once, the peer's ISN from its sequence number, the peer's window
        scale and SACK-permitted from its timestamp echo (Linux's cookie_timestamp_decode),
        the MSS the cookie promised. The subflow then takes ``seg`` as any third ACK."""
        self.irs, self.rcv_nxt, self.snd_nxt = (seg.seq - 1) & MASK32, 1, 1
        self.state, self.syn_sent_count = SYN_RCVD, 1
        if seg.tsval is not None and seg.tsecr is not None:
            wscale, sack = SynCookies.options_from(seg.tsecr)
            self.ts_ok, self.ts_recent, self.sack_ok = True, seg.tsval, sack
            self.ts_recent_at = now
            if wscale is not None:
                self.peer_wscale, self.peer_wscale_offered = wscale, True
            else:
                self.rcv_wscale = 0               # scaling only when both sides offer it
        else:
            self.rcv_wscale = 0
        self.peer_mss = mss
        self.max_snd_wnd = seg.window << self.peer_wscale
        self.window.mss = self._payload_size_for(min(mss, self.config.mss))
        self.window.cwnd = float(min(10 * self.window.mss, max(2 * self.window.mss, 14600)))

    def take_join_synack(self, synack) -> None:
        """Client side of MP_JOIN (RFC 8684 §3.2): the SYN/ACK's MP_JOIN, its HMAC verified,
        gives the server's nonce, its address id and its B flag (the server wants the subflow
        as a backup: it is one to our scheduler too)."""
        join = self.join
        join.remote_nonce = synack.nonce
        join.peer_backup = synack.backup
        if synack.backup:
            self.backup = True
        self.remote_address_id = synack.address_id

    def send_join_ack(self, now: float, mptcp) -> None:
        """Client side of MP_JOIN: the third ACK, with the HMAC in ``mptcp``; the RTO sends it
        again until the server's fourth ACK (RFC 8684 §3.2) says it arrived."""
        self.send_ack(now, mptcp)
        self.rto_at = now + self.rtt.rto

    def join_acknowledged(self) -> None:
        """Client: the server's fourth ACK came (RFC 8684 §3.2): the subflow may carry data,
        and the timer that resent the third ACK stops."""
        self.join.established = True
        if not self.has_outstanding():
            self.rto_at = None
        self.timeouts = 0

    def complete_join(self, now: float) -> None:
        """Server: the third ACK's HMAC was right: the subflow is established, and the fourth
        ACK tells the client so (RFC 8684 §3.2)."""
        self.join.established = True
        self.send_ack(now)

    def start_keepalive(self, now: float) -> None:
        """The handshake completed: probe the subflow once it is idle (Config.keepalive)."""
        if self.keepalive is not None:
            self.keepalive_at = now + self.keepalive

    def request_ack(self) -> None:
        """An ACK is owed: it goes with the next segment, else as a pure ACK at the next
        flush (the connection has a DATA_ACK, an echo or a window update to tell)."""
        self.ack_pending = True

    def last_mapping_is(self, ssn: int, dsn, length: int) -> bool:
        """Whether the connection stored this mapping last (every segment cut from one chunk
        carries the whole mapping: it is checked once)."""
        return self.map_length == length and self.map_ssn == ssn and self.map_dsn == dsn

    def remember_mapping(self, ssn: int, dsn, length: int) -> None:
        """The mapping the connection stored last (``last_mapping_is``)."""
        self.map_ssn, self.map_dsn, self.map_length = ssn, dsn, length

    def announce_backup(self, backup: bool) -> None:
        """Our user made this subflow a backup (or a regular one again): the scheduler uses it
        so at once, and the peer hears MP_PRIO on it with the next ACK (RFC 8684 §3.3.8)."""
        self.backup = backup
        self.prio_pending = True
        self.ack_pending = True

    def take_pending_prio(self) -> bool:
        """Whether an MP_PRIO is owed on this subflow; the caller sends it now."""
        if not self.prio_pending:
            return False
        self.prio_pending = False
        return True

    def set_backup_by_peer(self, backup: bool) -> None:
        """The peer's MP_PRIO (RFC 8684 §3.3.8): a backup (or not) to our scheduler too."""
        self.backup = backup

    def record_peer_reset(self, reset_reason) -> None:
        """The peer reset this subflow, with MP_TCPRST's reason (RFC 8684 §3.6) or None."""
        self.closed_reason = CloseReason.RESET
        self.reset_reason = reset_reason

    def report_once(self) -> bool:
        """True the first time only: the connection queues one SubflowClosed per subflow."""
        if self.reported:
            return False
        self.reported = True
        return True

    # ---------------------------------------------------------------- writing segments
    def _emit(self, now: float, flags: int, seq: int, payload=b"", mptcp=(), *, syn=False,
              sack=True) -> None:
        """Write one segment with the TCP options it needs and the MPTCP options ``mptcp``,
        laid out as the option codec lays them out (Linux's layout, byte for byte): written
        here as bytes, without an option object for the TCP options. A handshake's area is
        not aligned option by option but padded at its end (``_syn_area``); any other area
        aligns each option to 32 bits (timestamps and SACK after two NOPs, MPTCP options
        padded after), so its pieces are written one after the other."""
        if syn:
            area = self._syn_area(now, flags, mptcp)
        else:
            area = _timestamps_option(self._tsval(now), self.ts_recent) if self.ts_ok else b""
            if mptcp:
                area += opt.encode_tcp_options(mptcp)
            if sack and self.sack_ok and self.ooo and not flags & (_SYN | _RST):
                room = (opt.MAX_TCP_OPTIONS_LEN - len(area) - 2) // 8
                if room > 0:
                    area += _sack_option(self._sack_blocks(room))
        if len(area) > opt.MAX_TCP_OPTIONS_LEN:
            raise option_error("TCP options", "length", None, "at most 40 bytes", len(area))
        self._write(flags, seq, area, payload)

    def _syn_area(self, now: float, flags: int, mptcp) -> bytes:
        """The options area of our SYN or SYN/ACK, unaligned as Linux writes it and padded with
        NOPs at its end: MSS, SACK-permitted, timestamps, NOP + window scale, then the MPTCP
        option. A SYN/ACK offers only what the SYN did (RFC 7323 §1.3, §2.2; RFC 2018 §2),
        with one or two NOPs after the MSS when that keeps the area a multiple of 4 bytes."""
        mp = b"".join([o.encode() for o in mptcp])
        head = _MSS_KIND + self.own_mss.to_bytes(2, "big")
        if not flags & _ACK:
            rest = _SACK_PERMITTED + _timestamps_option(self._tsval(now), 0)[2:] + \
                _NOP + _WSCALE_KIND + bytes((self.rcv_wscale,))
        else:
            rest = _SACK_PERMITTED if self.sack_ok else b""
            if self.ts_ok:
                rest += _timestamps_option(self._tsval(now), self.ts_recent)[2:]
            if self.peer_wscale_offered:
                rest += _NOP + _WSCALE_KIND + bytes((self.rcv_wscale,))
            if (len(head) + len(rest) + len(mp)) % 4:
                head += _NOP
                if (len(head) + len(rest) + len(mp)) % 4:
                    head += _NOP
        area = head + rest + mp
        return area + _NOP * (-len(area) % 4)

    def _window_field(self) -> int:
        """The window to advertise, scaled (RFC 7323 §2.3)."""
        return min(self.conn.receive_window_left() >> self.rcv_wscale, 0xFFFF)

    def _acked(self) -> None:
        """An ACK went out: nothing is owed any more."""
        self.ack_pending = False
        self.unacked_segments = 0
        self.delack_at = None

    def _write(self, flags: int, seq: int, area: bytes, payload) -> None:
        if flags & _SYN:
            window = min(self.conn.receive_window_left(), 0xFFFF)   # never scaled on a SYN
        else:
            window = self._window_field()
        ack = (self.irs + self.rcv_nxt) & MASK32 if flags & _ACK else 0
        data = segment_packet(self.local, self.remote, self.lport, self.rport,
                              (self.iss + seq) & MASK32, ack, flags, window, area, payload)
        if flags & _ACK:
            self._acked()
        self._out.append(data)

    def _sack_blocks(self, room: int) -> list:
        """At most ``room`` blocks, the one holding the latest arrival first (RFC 2018 §4)."""
        blocks: list[tuple[int, ...]] = []
        if self.recent_block is not None:
            blocks.append(self.recent_block)
        for block in reversed(self.ooo):
            if len(blocks) >= room:
                break
            if tuple(block) != self.recent_block:
                blocks.append(tuple(block))
        return [((self.irs + a) & MASK32, (self.irs + b) & MASK32) for a, b in blocks[:room]]

    def send_syn(self, now: float, payload=b"") -> None:
        """Open (client side): SYN with our options and the connection's MPTCP option (and
        its TCP Fast Open option), carrying ``payload`` with TFO (RFC 7413 §4.2.2): the SYN
        then covers 1 + len(payload) sequence numbers, and its SYN/ACK may acknowledge any
        prefix of the payload. Only this first transmission carries it."""
        self.state = SYN_SENT
        self.snd_nxt = 1 + len(payload)
        self.syn_sent_count += 1
        self.syn_time = now
        self._emit(now, _SYN, 0, payload, mptcp=self.conn.syn_options(self), syn=True)
        self.rto_at = now + self.rtt.rto

    def send_syn_ack(self, now: float) -> None:
        self.syn_sent_count += 1
        self.syn_time = now
        self._emit(now, _SYN | _ACK, 0, mptcp=self.conn.syn_options(self), syn=True)
        self.rto_at = now + self.rtt.rto

    def send_ack(self, now: float, mptcp=None) -> None:
        """A pure ACK, with the connection's data ACK (or ``mptcp`` given)."""
        if mptcp is None:
            plain = self.conn.plain_data_ack()
            if plain is not None and self.ts_ok and not (self.sack_ok and self.ooo) \
                    and not self.prio_pending:
                self._out.append(ack_packet(
                    self.local, self.remote, self.lport, self.rport,
                    (self.iss + self.snd_nxt) & MASK32, (self.irs + self.rcv_nxt) & MASK32,
                    self._window_field(), self._tsval(now), self.ts_recent, plain))
                self._acked()
                return
            mptcp = self.conn.ack_options(self)
        self._emit(now, _ACK, self.snd_nxt, mptcp=mptcp)

    def send_probe(self, now: float, mptcp=()) -> None:
        """A segment with an old sequence number, which draws an ACK (RFC 9293 §3.8.4's
        keepalive; Linux's tcp_xmit_probe_skb): keepalives, REMOVE_ADDR's path probes and
        zero-window probes."""
        self._emit(now, _ACK, self.snd_una - 1, mptcp=mptcp)

    def send_rst(self, now: float, mptcp=()) -> None:
        self._emit(now, _RST | _ACK, self.snd_nxt, mptcp=mptcp, sack=False)

    def _transmit(self, entry: _Sent, now: float) -> None:
        chunk = entry.chunk
        if entry.fin:
            self._emit(now, _FIN | _ACK, entry.seq, mptcp=self.conn.ack_options(self))
            return
        flags = _ACK | (_PSH if entry.end == chunk.end else 0)
        # the usual layout (timestamps + DSS) is written directly, anything else through
        # the option codec (wire/segment.py)
        data_ack = self.conn.dss_data_ack() if self.ts_ok and not chunk.mpc else None
        if data_ack is not None:
            seq, ack = (self.iss + entry.seq) & MASK32, (self.irs + self.rcv_nxt) & MASK32
            window, tsval = self._window_field(), self._tsval(now)
            start, end = entry.seq - chunk.seq, entry.end - chunk.seq
            if end - start < VECTORED_PAYLOAD:
                self._out.append(data_packet(
                    self.local, self.remote, self.lport, self.rport, seq, ack, flags, window,
                    tsval, self.ts_recent, data_ack, chunk.dsn, chunk.seq & MASK32,
                    chunk.end - chunk.seq, chunk.checksum, chunk.data, start, end))
            else:
                self._out.append(data_packet_parts(
                    self.local, self.remote, self.lport, self.rport, seq, ack, flags, window,
                    tsval, self.ts_recent, data_ack, chunk.dsn, chunk.seq & MASK32,
                    chunk.end - chunk.seq, chunk.checksum, chunk.data, start, end,
                    self.conn.checksum_offload()))
            self._acked()
        else:
            payload = chunk.data[entry.seq - chunk.seq:entry.end - chunk.seq]
            self._emit(now, flags, entry.seq, payload, self.conn.data_options(self, chunk))
        self.bytes_sent += entry.end - entry.seq

    # ---------------------------------------------------------------- sending data
    def send_chunk(self, chunk: Chunk, now: float) -> None:
        """Send a chunk's bytes now, cut into segments (the caller checked the window); with
        ``Config.offload`` as one segment, as a stack hands a TSO-capable NIC 64 KiB."""
        size = self.window.mss if not self.offload or chunk.mpc \
            else max(self.window.mss, chunk.end - chunk.seq)
        pos = chunk.seq
        while pos < chunk.end:
            end = min(pos + size, chunk.end)
            entry = _new_sent(pos, end, chunk)
            self.sent.append(entry)
            self.pipe += end - pos
            self._transmit(entry, now)
            if not self.timed_end:
                self.timed_end, self.timed_at = end, now
            pos = end
        self.snd_nxt = chunk.end
        if self.rto_at is None:
            self.rto_at = now + self.rtt.rto
        self._cwnd_validate()

    def _cwnd_validate(self) -> None:
        """After a transmission: note whether the congestion window is now full, and the most
        bytes outstanding in this round (Linux's tcp_cwnd_validate, called by tcp_write_xmit
        with is_cwnd_limited = packets in flight >= cwnd). A new round starts once what was
        outstanding at the start of the last one is acknowledged."""
        limited = not self.window.can_send(self.pipe, self.window.mss)
        flight = self.snd_nxt - self.snd_una
        if self.snd_una >= self.cwnd_usage_end or limited or \
                (not self.cwnd_limited and flight > self.max_flight):
            self.cwnd_limited = limited
            self.max_flight = flight
            self.cwnd_usage_end = self.snd_nxt

    def is_cwnd_limited(self) -> bool:
        """Whether an ACK may grow the congestion window (Linux's tcp_is_cwnd_limited, which
        tcp_cong_avoid asks before any increase): the window was filled in this round, or,
        in slow start, it is below twice the most bytes outstanding. A sender that does not
        fill its window (application-limited: a proxy reading 256 KiB at a time) does not
        grow it on ACKs: a window it never used says nothing about the path (RFC 7661 §1,
        RFC 5681 §4.1), and left to grow it reaches hundreds of megabytes at a few hundred
        kilobytes in flight. Such a window wins every linger-time comparison (scheduler.py),
        and, coupled (LIA, RFC 6356 §3: the increase is divided by the total window), holds
        the other subflows at the window a loss left them for the rest of the connection."""
        if self.cwnd_limited:
            return True
        window = self.window
        return window.cwnd < window.ssthresh and window.cwnd < 2 * self.max_flight

    def room(self) -> int:
        """Bytes the congestion window lets out now, in whole segments."""
        free = cython.cast(cython.longlong, self.window.cwnd) - self.pipe    # int(): truncated
        size = self.window.mss                    # payload_size
        return max(0, free // size * size)

    def retransmit_lost(self, now: float, force: bool = False) -> None:
        """RFC 6675 §5 NextSeg rule 1: resend segments deemed lost while the window allows
        (``force``: one even when it does not, the fast retransmit of §5 step 4.2)."""
        sent = self.sent
        for i in range(self.sent_head, len(sent)):
            entry = sent[i]
            if entry.seq >= self.loss_scan and not entry.lost:
                break
            if not entry.lost or entry.retransmitted or entry.sacked:
                continue
            size = entry.end - entry.seq
            if not force and self.pipe + size > self.window.cwnd:
                break
            force = False
            entry.retransmitted = True
            self.pipe += size
            self.stats_retransmits += 1
            self.timed_end = 0                    # Karn: no sample across a retransmission
            self._transmit(entry, now)
        if self.rto_at is None and self.outstanding:
            self.rto_at = now + self.rtt.rto
        self._cwnd_validate()

    def has_lost(self) -> bool:
        sent = self.sent
        for i in range(self.sent_head, len(sent)):
            entry = sent[i]
            if entry.seq >= self.loss_scan and not entry.lost:
                return False
            if entry.lost and not entry.retransmitted and not entry.sacked:
                return True
        return False

    def send_fin(self, now: float) -> None:
        """Close our half (RFC 9293 §3.6): the FIN takes one sequence number."""
        if self.fin_sent or self.state not in (ESTABLISHED, CLOSE_WAIT, SYN_RCVD):
            return
        self.fin_sent = True
        entry = _Sent(self.snd_nxt, self.snd_nxt + 1, None, fin=True)
        self.sent.append(entry)
        self.pipe += 1
        self.snd_nxt += 1
        self.state = FIN_WAIT_1 if self.state in (ESTABLISHED, SYN_RCVD) else LAST_ACK
        self._transmit(entry, now)
        if self.rto_at is None:
            self.rto_at = now + self.rtt.rto

    # ---------------------------------------------------------------- receiving
    def receive(self, seg, now: float) -> None:
        state = self.state
        if state == SYN_SENT:
            self._receive_in_syn_sent(seg, now)
            return
        flags = seg.flags
        if state == SYN_RCVD and flags & _SYN and not flags & _ACK:
            if (seg.seq + self.syn_data_taken) & MASK32 == self.irs:
                self.send_syn_ack(now)            # our SYN/ACK was lost: the SYN came again
            return                                # (its data, if any, were taken once)
        if state in (CLOSED, LISTEN):
            return
        seq = self.rel_seq(seg.seq)
        payload = seg.payload
        length = len(payload) + (1 if flags & _FIN else 0)
        if not self._acceptable(seq, length):     # RFC 9293 §3.10.7.4, first check
            if not flags & _RST:
                if state == TIME_WAIT and flags & _FIN:
                    self.timewait_at = now + self.config.time_wait
                self._answer_invalid(length, flags, now)
                if flags & _SYN and seq == 0 and flags & _ACK and self.rel_ack(seg.ack) == 1:
                    # the peer's SYN/ACK again, exactly (it lies wholly below rcv_nxt): our
                    # third ACK was lost, so it goes again with its MP_CAPABLE / MP_JOIN
                    # (RFC 8684 §3.1, §3.2; Linux repeats the MP_CAPABLE ACK)
                    self.conn.on_duplicate_syn(self, now)
            return
        if flags & _RST:                          # RFC 5961 §3.2: only the exact RST is taken
            if seq == self.rcv_nxt:
                self.conn.subflow_reset(self, now, seg)
            else:
                self._answer_invalid(0, flags, now)    # the challenge ACK
            return
        if flags & _SYN:
            self._answer_invalid(0, flags, now)   # RFC 5961 §4: challenge ACK, and resend
            self.conn.on_duplicate_syn(self, now)  # the handshake's last ACK (MPC / MPJ)
            return
        if not flags & _ACK:
            return
        if state != SYN_RCVD and not self._ack_acceptable(seg):
            self._answer_invalid(0, flags, now)   # RFC 5961 §5.2: dropped, a challenge ACK;
            return                                # none of its options is read
        if self.keepalive is not None:            # the peer answers: it is alive
            self.keepalive_probes = 0
            self.keepalive_at = now + self.keepalive
        if self.removal_at is not None:           # the path answered after a REMOVE_ADDR
            self.removal_at = None                # (RFC 8684 §3.4.2): it is kept
            self.conn.path_answered(self)
        if state == SYN_RCVD:
            if self.rel_ack(seg.ack) != 1:       # RFC 9293 §3.10.7.4: <SEQ=SEG.ACK><RST>
                self.conn.reset_reply(seg)
                return
            if not self.conn.on_handshake(self, seg, now):
                return
            self.snd_una = 1
            self._handshake_rtt(now)
            self.state = ESTABLISHED
            self.conn.subflow_established(self, now)
            state = ESTABLISHED
        self._note_peer_window(seg)
        self.conn.on_options(self, seg, now)
        if self.state == CLOSED:                  # the options closed it (e.g. a bad HMAC)
            return
        self._process_ack(seg, now)
        if payload:
            self._receive_payload(seq, payload, seg, now)
        if flags & _FIN:
            self._receive_fin(seq + len(payload), now)
        self._ack_policy(now)

    def _answer_invalid(self, length: int, flags: int, now: float) -> None:
        """An ACK for a segment that was not taken: at once when it carried data or a FIN (the
        sender needs it), else at most one per INVALID_ACK_INTERVAL (RFC 5961 §7's throttle of
        challenge ACKs; Linux's tcp_oow_rate_limited, 500 ms by default): a flood of forged or
        looping pure ACKs, RSTs and SYNs draws a few ACKs, not one each."""
        if length > 0 and not flags & _SYN:
            self.ack_pending = True
        elif now - self.last_invalid_ack >= INVALID_ACK_INTERVAL:
            self.last_invalid_ack = now
            self.ack_pending = True

    def _ack_acceptable(self, seg) -> bool:
        """RFC 5961 §5.2: SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT. A blind sender who
        knows the 4-tuple must also guess the ACK within that range (about MAX.SND.WND in 2**32
        values); Linux drops such a segment the same way (tcp_ack: old or invalid ACK)."""
        ack = self.rel_ack(seg.ack)
        return self.snd_una - self.max_snd_wnd <= ack <= self.snd_nxt

    def _note_peer_window(self, seg) -> None:
        """MAX.SND.WND (RFC 5961 §5): the largest window the peer ever offered."""
        window = seg.window << self.peer_wscale
        if window > self.max_snd_wnd:
            self.max_snd_wnd = window

    def _acceptable(self, seq: int, length: int) -> bool:
        window = self.receive_window
        nxt = self.rcv_nxt
        if length == 0:
            return nxt <= seq < nxt + window or (seq == nxt)
        return nxt <= seq < nxt + window or nxt <= seq + length - 1 < nxt + window or \
            (seq < nxt < seq + length)

    def _receive_in_syn_sent(self, seg, now: float) -> None:
        flags = seg.flags
        # the SYN/ACK acknowledges our SYN and any prefix of the data it carried (snd_nxt is
        # 1 + those bytes: RFC 7413 §4.2.2), and nothing else
        if flags & _ACK and not 0 <= _diff32(seg.ack, self._wire_seq(1)) < self.snd_nxt:
            if not flags & _RST:                   # RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><RST>
                self.conn.reset_reply(seg)
            return
        if flags & _RST:
            if flags & _ACK:
                self.conn.subflow_reset(self, now, seg)
            return
        if not flags & _SYN or not flags & _ACK:
            return                                 # simultaneous open is not supported
        self.irs = seg.seq
        self.rcv_nxt = 1
        self._take_syn_options(seg, now)
        if self.snd_nxt > 1:                      # our SYN carried data (TFO)
            self._syn_data_acknowledged(seg)
        self.snd_una = 1
        self._handshake_rtt(now)
        if not self.conn.on_handshake(self, seg, now):
            return
        self.state = ESTABLISHED
        self.conn.subflow_established(self, now)

    def _syn_data_acknowledged(self, seg) -> None:
        """Client, TFO: the SYN/ACK took ``syn_data_taken`` bytes of our SYN's data (0 when
        the server dropped them: they go again after the handshake, mapped). Our relative
        sequence numbers start after them (RFC 8684 App. B.2): the next byte is 1 again."""
        taken = _diff32(seg.ack, self._wire_seq(1))
        self.syn_data_taken = taken
        self.iss = (self.iss + taken) & MASK32
        self.snd_nxt = 1

    def _handshake_rtt(self, now: float) -> None:
        """The handshake's round trip is the first RTT sample when the SYN (or SYN/ACK) went
        out once (Karn's rule, RFC 6298 §3)."""
        self.rto_at = None
        if self.syn_sent_count == 1 and self.syn_time is not None:
            self.rtt.sample(max(0.0, now - self.syn_time))
            self.window.srtt = self.rtt.srtt
        self.timeouts = 0

    def accept_syn(self, seg, now: float, syn_data: int = 0, timestamps: bool = True) -> None:
        """Server side: a SYN for us; remember its options and answer with a SYN/ACK. With
        TFO, ``syn_data`` bytes of its data were taken (the SYN/ACK acknowledges them; our
        relative numbering of the peer's bytes starts after them, RFC 8684 App. B.2), and
        ``timestamps`` is False when the SYN/ACK carries a cookie: the options would not fit
        with timestamps, which are then not used (RFC 8684 App. B.1; Linux clears tstamp_ok
        when it sends a cookie)."""
        self.irs = (seg.seq + syn_data) & MASK32
        self.syn_data_taken = syn_data
        self.rcv_nxt = 1
        self._take_syn_options(seg, now)
        if not timestamps:
            self.ts_ok = False
        self.state = SYN_RCVD
        self.snd_nxt = 1
        self.send_syn_ack(now)

    def _take_syn_options(self, seg, now: float) -> None:
        """RFC 7323 §2.2 and §3.2, RFC 2018 §2: an option is used only when both sides sent
        it; the MSS we send at is the peer's (RFC 9293 §3.7.1)."""
        if seg.mss is not None:                   # a peer's tiny MSS is raised to Linux's
            self.peer_mss = max(seg.mss, MIN_PEER_MSS)    # floor (TCP_MIN_MSS)
        if seg.wscale is not None:
            self.peer_wscale = min(seg.wscale, 14)
            self.peer_wscale_offered = True
        else:
            self.rcv_wscale = 0                   # scaling only when both sides offer it
        self.sack_ok = seg.sack_permitted
        self.max_snd_wnd = seg.window             # a SYN's window is never scaled
        if seg.tsval is not None:
            self.ts_ok = True
            self.ts_recent = seg.tsval
            self.ts_recent_at = now
        mss = min(self.peer_mss, self.own_mss)
        self.window.mss = self._payload_size_for(mss)
        self.window.cwnd = float(min(10 * self.window.mss, max(2 * self.window.mss, 14600)))

    # -- acknowledgments (RFC 9293 §3.10.7.4 fifth check; RFC 5681; RFC 6675)
    def _process_ack(self, seg, now: float) -> None:
        ack = self.rel_ack(seg.ack)
        if ack > self.snd_nxt:
            self.ack_pending = True               # acknowledges what we never sent
            return
        if seg.has_ts and self.ts_ok:
            self.ts_recent = seg.ts_val
            self.ts_recent_at = now
        if ack > self.snd_una:
            if self.window.cwnd < self.window.ssthresh and self.ts_ok:
                self._slow_start_delay(seg, ack, now)
            self._cumulative_ack(ack, now)
        elif (ack == self.snd_una and self.has_outstanding() and not seg.payload
              and not seg.flags & (_SYN | _FIN)):
            self.dupacks += 1
        if seg.sack and self.sack_ok and self.has_outstanding():
            self._take_sack(seg.sack)
        if self.has_outstanding() and not self.in_recovery and self.snd_una >= self.recovery_point:
            if self.dupacks >= DUP_THRESH and not self.has_lost():
                self._mark_lost_first()
            if self.has_lost():
                self._enter_recovery(now)

    def _slow_start_delay(self, seg, ack: int, now: float) -> None:
        """In slow start, the RTT the ACK's timestamp echo measures (RFC 7323 §4.1; 1 ms
        resolution) goes to the congestion controller's HyStart test (engine.cc)."""
        if not seg.has_ts or seg.ts_ecr == 0:
            return
        tsecr = seg.ts_ecr
        elapsed = (self._tsval(now) - tsecr) & MASK32
        if elapsed < 60000:                       # not a stale or forged echo
            self.cc.rtt_sample(self.window, elapsed / 1000.0, ack, self.snd_nxt)

    def _receiver_rtt(self, seg, now: float) -> None:
        """The round trip a receiver sees (as Linux's tcp_rcv_rtt_measure_ts): an in-order
        data segment echoes the TSval of the ACK that let the peer send it (RFC 7323 §4.1),
        so the time since then is a round trip, the peer's sending included (1 ms resolution,
        smoothed by 1/8). As Linux, once per echo and from full-sized segments only (the
        segments behind the first of a burst echo the same, older TSval). Receive-window
        autotuning runs once per it (Connection._autotune)."""
        tsecr = seg.ts_ecr
        if not self.ts_ok or not seg.has_ts or tsecr == 0 or tsecr == self.rcv_rtt_echo \
                or len(seg.payload) < self.window.mss:
            return
        self.rcv_rtt_echo = tsecr
        elapsed = (self._tsval(now) - tsecr) & MASK32
        if elapsed >= 60000:                      # a stale or forged echo
            return
        sample = max(elapsed, 1) / 1000.0
        if self.rcv_rtt == 0.0:
            self.rcv_rtt = sample
        else:
            self.rcv_rtt += (sample - self.rcv_rtt) / 8

    def _cumulative_ack(self, ack: int, now: float) -> None:
        acked = ack - self.snd_una
        # the bytes this ACK delivers that no SACK had reported (RFC 6937's DeliveredData
        # without its SACKed part): what slow start counts. After a timeout the cumulative
        # ACK may jump over a whole window the receiver had SACKed; those bytes were
        # delivered before and open no window now (Linux counts a segment once, when it is
        # first (s)acked; this engine counts SACKed segments never, the stricter choice).
        delivered = 0
        sent = self.sent
        head = self.sent_head
        while head < len(sent):
            entry = sent[head]           # (a typed local: its fields read in C)
            if entry.end > ack:
                if entry.seq < ack:      # a segment acked in part
                    if entry.in_pipe():
                        self.pipe -= ack - entry.seq
                    if not entry.sacked:
                        delivered += ack - entry.seq
                    entry.seq = ack
                break
            if entry.in_pipe():
                self.pipe -= entry.end - entry.seq
            if not entry.sacked:
                delivered += entry.end - entry.seq
            entry.chunk = None           # acked: its bytes go now, not when the list is cut
            head += 1
        if head > 256 and head * 2 > len(sent):
            del sent[:head]
            head = 0
        self.sent_head = head
        self.snd_una = ack
        if self.loss_scan < ack:
            self.loss_scan = ack
        self.dupacks = 0
        self.timeouts = 0
        self.stale = False                        # it delivers again: usable again
        if self.timed_end and ack >= self.timed_end:
            self.rtt.sample(max(0.0, now - self.timed_at))
            self.window.srtt = self.rtt.srtt
            self.timed_end = 0
        fin_acked = self.fin_sent and ack == self.snd_nxt
        if self.in_recovery:
            if ack >= self.recovery_point:
                self.in_recovery = False          # RFC 6675 §5 step (A): recovery ends
            elif not self.sack_ok:
                self._mark_lost_first()           # a partial ACK (RFC 6582 §3.2 step 3)
        else:
            data_acked = acked - (1 if fin_acked else 0)
            if data_acked > 0 and self.is_cwnd_limited():
                # slow start grows by one MSS per full-sized segment the ACK newly
                # delivered, one at least: Linux's tcp_slow_start takes a stretch ACK for N
                # segments as N ACKs for one (RFC 3465 caps N at L = 2; Linux does not). So
                # a delayed ACK, a receiver's coalescing NIC or an offloaded segment of ours
                # grows the window as the ACKs of each segment would
                self.cc.on_ack(self.window, data_acked, now,
                               delivered // self.window.mss or 1)
        self.rto_at = now + self.rtt.rto if self.has_outstanding() else None
        if fin_acked:
            self._our_fin_acked(now)              # last: it may close the subflow

    def _take_sack(self, blocks) -> None:
        """Mark SACKed segments (RFC 2018 §5) and, per RFC 6675 IsLost, every unSACKed one
        with DupThresh SACKed segments above it."""
        sent = self.sent
        lo = self.sent_head
        changed = False
        for left, right in blocks:
            start = self.rel_ack(left)
            end = start + ((right - left) & MASK32)
            if end <= self.snd_una or end > self.snd_nxt:
                continue                          # D-SACK or nonsense: ignored
            i = bisect_left(sent, start, lo, len(sent), key=_seq_of)
            while i < len(sent) and sent[i].end <= end:
                entry = sent[i]
                if not entry.sacked:
                    if entry.in_pipe():
                        self.pipe -= entry.end - entry.seq
                    entry.sacked = True
                    changed = True
                i += 1
            if end > self.high_sacked:
                self.high_sacked = end
        if not changed:
            return
        # walk down from the highest SACKed segment until DupThresh SACKed ones are passed
        i = bisect_right(sent, self.high_sacked - 1, lo, len(sent), key=_seq_of) - 1
        count = 0
        while i >= lo:
            if sent[i].sacked:
                count += 1
                if count >= DUP_THRESH:
                    break
            i -= 1
        if count < DUP_THRESH or i < lo:
            return
        limit = sent[i].seq
        j = bisect_left(sent, self.loss_scan, lo, len(sent), key=_seq_of)
        while j < len(sent) and sent[j].seq < limit:
            entry = sent[j]
            if not entry.sacked and not entry.lost:
                if entry.in_pipe():
                    self.pipe -= entry.end - entry.seq
                entry.lost = True
            j += 1
        if limit > self.loss_scan:
            self.loss_scan = limit

    def _mark_lost_first(self) -> None:
        """The first unacknowledged, unSACKed segment is lost (three duplicate ACKs, or a
        partial ACK: RFC 6582)."""
        sent = self.sent
        for i in range(self.sent_head, len(sent)):
            entry = sent[i]
            if entry.sacked:
                continue
            if entry.lost and entry.retransmitted and not self.sack_ok:
                entry.retransmitted = False       # NewReno: the retransmission was lost too
                self.pipe -= entry.end - entry.seq
            elif not entry.lost:
                if entry.in_pipe():
                    self.pipe -= entry.end - entry.seq
                entry.lost = True
            if entry.end > self.loss_scan:
                self.loss_scan = entry.end
            return

    def _enter_recovery(self, now: float) -> None:
        """RFC 6675 §5 steps 4.1-4.3: ssthresh and cwnd from the controller, then the first
        lost segment goes out at once."""
        self.in_recovery = True
        self.recovery_point = self.snd_nxt
        self.cc.on_loss(self.window, self.snd_nxt - self.snd_una, now)
        self.retransmit_lost(now, force=True)

    # -- data (the connection places it at the data level)
    def _receive_payload(self, seq: int, payload, seg, now: float) -> None:
        nxt = self.rcv_nxt
        end = seq + len(payload)
        if end <= nxt:
            self.ack_pending = True                # all duplicate: tell the sender at once
            return
        if seq < nxt:
            # (a received packet's view keeps no more than twice what is left of it)
            payload = compact(payload[nxt - seq:])
            seq = nxt
        if self.state not in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2):
            return                                 # after the peer's FIN: no more data
        if seq > nxt and len(self.ooo) >= MAX_OOO_BLOCKS and not self._touches_ooo(seq, end):
            self.ack_pending = True                # no room to remember one more hole: the
            return                                 # segment is dropped, never SACKed
        if not self.conn.receive_data(self, seq, payload, seg, now):
            self.ack_pending = True                # not taken (window, no mapping): re-ACK
            return
        self.bytes_received += end - seq
        if seq == nxt:
            self._receiver_rtt(seg, now)
            self.rcv_nxt = end
            filled = False
            while self.ooo and self.ooo[0][0] <= self.rcv_nxt:
                block = self.ooo.pop(0)
                self.rcv_nxt = max(self.rcv_nxt, block[1])
                filled = True
            if filled:
                self.recent_block = None
                self.ack_pending = True            # a hole was filled: ACK at once (§3.8.6.3)
            else:
                self.unacked_segments += 1
        else:
            self._add_ooo(seq, end)
            self.ack_pending = True                # out of order: an immediate duplicate ACK

    def _add_ooo(self, start: int, end: int) -> None:
        blocks = self.ooo
        i = 0
        while i < len(blocks) and blocks[i][1] < start:
            i += 1
        j = i
        while j < len(blocks) and blocks[j][0] <= end:
            start, end = min(start, blocks[j][0]), max(end, blocks[j][1])
            j += 1
        blocks[i:j] = [[start, end]]
        self.recent_block = (start, end)

    def _touches_ooo(self, start: int, end: int) -> bool:
        """Whether [start, end) overlaps or extends a block already held."""
        blocks = self.ooo
        i = bisect_left(blocks, [start, start])
        return any(a <= end and start <= b for a, b in blocks[max(0, i - 1):i + 1])

    def _receive_fin(self, fin_seq: int, now: float) -> None:
        if fin_seq != self.rcv_nxt or self.fin_received:
            return                                 # out of order: wait for it again
        self.fin_received = True
        self.rcv_nxt += 1
        self.ack_pending = True
        if self.state == ESTABLISHED:
            self.state = CLOSE_WAIT
        elif self.state == FIN_WAIT_1:
            self.state = CLOSING
        elif self.state == FIN_WAIT_2:
            self._enter_time_wait(now)
        self.conn.subflow_fin(self, now)

    def _our_fin_acked(self, now: float) -> None:
        if self.state == FIN_WAIT_1:
            self.state = FIN_WAIT_2
            # Linux's tcp_fin_timeout: a peer that never closes its half does not hold the
            # subflow for ever. Not after fallback: this FIN is our DATA_FIN, a half-close, and
            # the peer's data still comes here (Linux times out only orphaned sockets)
            if not self.conn.fell_back():
                self.timewait_at = now + self.config.time_wait
        elif self.state == CLOSING:
            self._enter_time_wait(now)
        elif self.state == LAST_ACK:
            self.close(now, CloseReason.FIN)

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self._release_queues()                    # all we sent was acknowledged, FIN and all
        self.rto_at = None
        self.timewait_at = now + self.config.time_wait
        self.conn.subflow_closing(self, now, CloseReason.FIN)

    def _ack_policy(self, now: float) -> None:
        """RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second full segment, and
        within the delayed-ACK time otherwise."""
        if self.unacked_segments >= 2:
            self.ack_pending = True
        elif self.unacked_segments and self.delack_at is None:
            self.delack_at = now + self.delayed_ack

    # ---------------------------------------------------------------- timers
    def next_timer(self):
        best = _earlier(self.rto_at, self.delack_at)
        best = _earlier(best, self.timewait_at)
        best = _earlier(best, self.keepalive_at)
        return _earlier(best, self.removal_at)

    def handle_timer(self, now: float) -> None:
        if self.timewait_at is not None and now >= self.timewait_at:
            self.timewait_at = None          # TIME-WAIT over, or FIN-WAIT-2 given up
            self.close(now, CloseReason.FIN)
            return
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.unacked_segments:
                self.ack_pending = True
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._retransmission_timeout(now)
        if self.keepalive_at is not None and now >= self.keepalive_at and self.state != CLOSED:
            self._keepalive(now)
        if self.removal_at is not None and now >= self.removal_at and self.state != CLOSED:
            self._probe_removal(now)

    def probe_removal(self, now: float) -> None:
        """The peer removed the address this subflow goes to (REMOVE_ADDR). RFC 8684 §3.4.2:
        probe the path with a keepalive first; a path that answers is kept (the option may be
        forged or stale), one that stays silent for REMOVAL_PROBES RTOs is reset."""
        if self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2):
            self.close(now, CloseReason.ADDRESS_REMOVED, reset=True)   # carries no data: at once
        elif self.removal_at is None:
            self.removal_probes = 0
            self._probe_removal(now)

    def _probe_removal(self, now: float) -> None:
        if self.removal_probes >= REMOVAL_PROBES:
            self.removal_at = None
            self.conn.path_silent(self)
            self.close(now, CloseReason.ADDRESS_REMOVED, reset=True)
            return
        self.removal_probes += 1
        self.send_probe(now)
        self.removal_at = now + self.rtt.rto

    def _keepalive(self, now: float) -> None:
        """RFC 9293 §3.8.4 / Linux's keepalive: an idle subflow is probed with an old sequence
        number (which draws an ACK); ``keepalive_probes`` unanswered probes give it up."""
        config = self.config
        if self.outstanding or self.state not in (ESTABLISHED, CLOSE_WAIT):
            self.keepalive_at = now + config.keepalive   # the RTO watches a busy subflow
            return
        if self.keepalive_probes >= config.keepalive_probes:
            self.keepalive_at = None
            self.close(now, CloseReason.TIMEOUT, reset=True)
            return
        self.keepalive_probes += 1
        self.send_probe(now, self.conn.ack_options(self))
        self.keepalive_at = now + config.keepalive_interval

    def _retransmission_timeout(self, now: float) -> None:
        self.rtt.back_off()
        self.timeouts += 1
        if self.state in (SYN_SENT, SYN_RCVD):
            if self.syn_sent_count > self.config.syn_retries:
                self.close(now, CloseReason.TIMEOUT)
                return
            if self.state == SYN_SENT:
                self.syn_sent_count += 1
                self.conn.syn_retransmitted(self, now)
                self._emit(now, _SYN, 0, mptcp=self.conn.syn_options(self), syn=True)
            else:
                self.send_syn_ack(now)
            self.rto_at = now + self.rtt.rto
            return
        if self.join is not None and not self.join.established and self.state == ESTABLISHED:
            if self.timeouts > self.config.syn_retries:  # the fourth ACK never came
                self.close(now, CloseReason.TIMEOUT, reset=True)
                return
            self.send_ack(now, self.conn.join_ack_options(self))
            self.rto_at = now + self.rtt.rto
            return
        if not self.outstanding:
            return
        if self.timeouts > self.config.max_retransmits:
            self.close(now, CloseReason.TIMEOUT, reset=True)
            return
        # RFC 6298 §5.4-5.6: start over from the first unacknowledged segment; RFC 2018 §8:
        # SACK information is ignored after a timeout (the receiver may have reneged)
        self.cc.on_timeout(self.window, self.snd_nxt - self.snd_una, now)
        self.in_recovery = False
        self.dupacks = 0
        self.recovery_point = self.snd_nxt
        sent = self.sent
        for i in range(self.sent_head, len(sent)):
            entry = sent[i]
            entry.sacked = False
            entry.lost = True
            entry.retransmitted = False
        self.pipe = 0
        self.high_sacked = self.snd_una
        self.loss_scan = self.snd_nxt
        self.timed_end = 0
        if self.timeouts >= self.config.stale_after and not self.stale:
            self.stale = True
            self.conn.subflow_stale(self, now)
        self.retransmit_lost(now, force=True)
        self.rto_at = now + self.rtt.rto

    # ---------------------------------------------------------------- ending
    def close(self, now: float, reason: CloseReason, reset: bool = False, mptcp=()) -> None:
        """The subflow is gone (RST sent when ``reset``) for ``reason`` (a CloseReason, or its
        value); the connection hears of it once."""
        if self.state == CLOSED:
            return
        reason = CloseReason(reason)
        if reset and self.state != TIME_WAIT and (self.state != SYN_SENT or self.rcv_nxt):
            self.send_rst(now, mptcp)
        self.state = CLOSED
        self.rto_at = self.delack_at = self.timewait_at = self.keepalive_at = None
        self.removal_at = None
        self.ack_pending = False
        self.closed_reason = self.closed_reason or reason
        self.conn.subflow_closed(self, now, reason)   # reinjects what was unacknowledged
        self._release_queues()

    def _release_queues(self) -> None:
        """A subflow that sends no more keeps no segments: in TIME_WAIT (RFC 9293 §3.6) it
        only answers a retransmitted FIN, for Config.time_wait seconds."""
        self.sent = []
        self.sent_head = 0
        self.ooo = []
        if cython.compiled:
            _untrack(self.sent)
            _untrack(self.ooo)

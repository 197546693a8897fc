# Types for the compiled build of mptcp_fast/engine/subflow.py (mptcp_fast._cengine.subflow):
# the subflow's TCP state as C fields, and its per-segment methods as C calls.
cimport cython

from mptcp_fast._cengine.buffers cimport Retained, Unsent
from mptcp_fast._cengine.cc cimport Controller, Window
from mptcp_fast._cengine.rtt cimport RttEstimator
from mptcp_fast.wire._segment_c cimport (Incoming, ack_packet, data_packet, data_packet_parts,
                                         segment_packet)
from mptcp_fast.wire._sender_c cimport DsnAllocator
from mf_gc cimport untrack as _untrack


cdef long long MASK32, _HALF32, VECTORED_PAYLOAD

cpdef enum:                           # the TCP states: subflow.py's names, its values
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RCVD = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSING = 7
    TIME_WAIT = 8
    CLOSE_WAIT = 9
    LAST_ACK = 10

cdef long _FIN, _SYN, _RST, _PSH, _ACK
cdef long long _diff32(long long a, long long b)


cdef inline object _earlier(object a, object b):
    # subflow.py's _earlier: the earlier of two deadlines (None: no timer), the first on a
    # tie; the times compared as C doubles, inline (a connection's next_timer asks a dozen)
    if a is None:
        return b
    if b is not None and <double>b < <double>a:
        return b
    return a


@cython.final
@cython.no_gc                         # leaves: bytes and numbers, never in a cycle (ignored
                                      # for a pure-mode class: its __init__ untracks it)
cdef class Chunk:
    cdef public long long seq, end
    cdef public object data, dsn, checksum
    cdef public bint mpc


@cython.final
@cython.no_gc
cdef class _Sent:
    cdef public long long seq, end
    cdef public Chunk chunk
    cdef public bint sacked, lost, retransmitted, fin
    cpdef bint in_pipe(self)


cdef class Subflow


@cython.locals(chunk=Chunk)
cdef Chunk _new_chunk(long long seq, object data, object dsn, object checksum, bint mpc)
@cython.locals(entry=_Sent)
cdef _Sent _new_sent(long long seq, long long end, Chunk chunk, bint fin=*)


cdef class SubflowOwner:
    # what a subflow asks of its connection (subflow.py's SubflowOwner, which Connection
    # implements): the per-segment calls are C calls; the connection's state is its own
    # (connection.pxd)
    cpdef on_options(self, Subflow sf, Incoming seg, double now)
    cpdef bint receive_data(self, Subflow sf, long long seq, object payload, Incoming seg,
                            double now)
    cpdef plain_data_ack(self)
    cpdef long long receive_window_left(self)
    cpdef object dss_data_ack(self)
    cpdef bint checksum_offload(self)


@cython.final
cdef class Subflow:
    cdef public SubflowOwner conn
    cdef public Controller cc
    cdef public object join, config, closed_reason, reset_reason
    cdef public list _out                # the endpoint's packets to send
    cdef public object data_side         # Connection._side's, kept
    cdef public long sid
    cdef public bytes local, remote
    cdef public long lport, rport
    cdef public long long receive_window     # Config values read per segment
    cdef public double delayed_ack
    cdef public bint offload
    cdef public object keepalive
    cdef public int state
    cdef public bint backup, prio_pending, reported
    cdef public long local_address_id, remote_address_id
    # send side
    cdef public long long iss, snd_una, snd_nxt, pipe
    cdef public list sent
    cdef public Py_ssize_t sent_head
    cdef public bint fin_sent, peer_wscale_offered, sack_ok, ts_ok
    cdef public long peer_wscale, peer_mss
    cdef public long long max_snd_wnd
    cdef public long long ts_recent, ts_offset
    cdef public double ts_recent_at
    # receive side
    cdef public long long irs, rcv_nxt
    cdef public long long map_ssn, map_length     # the mapping the connection stored last
    cdef public object map_dsn
    cdef public list ooo
    cdef public object recent_block
    cdef public long rcv_wscale
    cdef public bint fin_received
    # ACK policy, timers, recovery
    cdef public bint ack_pending, stale, in_recovery
    cdef public long unacked_segments, timeouts, dupacks, syn_sent_count, keepalive_probes
    cdef public object delack_at, rto_at, syn_time, timewait_at, keepalive_at
    cdef public long long timed_end
    cdef public double timed_at
    cdef public bint cwnd_limited                 # congestion window validation
    cdef public long long max_flight, cwnd_usage_end
    cdef public object removal_at
    cdef public long removal_probes
    cdef public double last_invalid_ack
    cdef public RttEstimator rtt
    cdef public double rcv_rtt
    cdef public long long rcv_rtt_echo
    cdef public long long recovery_point, high_sacked, loss_scan
    cdef public Window window
    cdef public long long stats_retransmits, bytes_sent, bytes_received
    cdef public long long syn_data_taken          # TFO: the SYN's data the other end took

    cpdef bint can_carry(self)
    cpdef request_ack(self)
    cpdef bint last_mapping_is(self, long long ssn, object dsn, long long length)
    cpdef remember_mapping(self, long long ssn, object dsn, long long length)
    cpdef bint has_outstanding(self)
    cpdef bint has_room(self, long long size=*)
    cpdef long long rel_seq(self, long long wire)
    cpdef long long rel_ack(self, long long wire)
    cpdef long long _tsval(self, double now)
    cpdef long _window_field(self)
    cpdef _acked(self)
    cpdef send_ack(self, double now, object mptcp=*)
    @cython.locals(seq=cython.longlong, ack=cython.longlong, window=cython.long,
                   tsval=cython.longlong, start=cython.longlong, end=cython.longlong)
    cpdef _transmit(self, _Sent entry, double now)
    @cython.locals(size=cython.longlong, pos=cython.longlong, end=cython.longlong, entry=_Sent)
    cpdef send_chunk(self, Chunk chunk, double now)
    @cython.locals(limited=bint, flight=cython.longlong)
    cpdef _cwnd_validate(self)
    @cython.locals(window=Window)
    cpdef bint is_cwnd_limited(self)
    @cython.locals(free=cython.longlong, size=cython.longlong)
    cpdef long long room(self)
    @cython.locals(entry=_Sent, i=Py_ssize_t)
    cpdef bint has_lost(self)
    @cython.locals(state=int, flags=long, seq=cython.longlong, length=cython.longlong)
    cpdef receive(self, Incoming seg, double now)
    @cython.locals(window=cython.longlong, nxt=cython.longlong)
    cpdef bint _acceptable(self, long long seq, long long length)
    cpdef _answer_invalid(self, long long length, long flags, double now)
    @cython.locals(ack=cython.longlong)
    cpdef bint _ack_acceptable(self, Incoming seg)
    @cython.locals(window=cython.longlong)
    cpdef _note_peer_window(self, Incoming seg)
    @cython.locals(ack=cython.longlong)
    cpdef _process_ack(self, Incoming seg, double now)
    @cython.locals(elapsed=cython.longlong, tsecr=cython.longlong)
    cpdef _slow_start_delay(self, Incoming seg, long long ack, double now)
    @cython.locals(entry=_Sent, sent=list, head=Py_ssize_t, acked=cython.longlong,
                   data_acked=cython.longlong, delivered=cython.longlong, fin_acked=bint)
    cpdef _cumulative_ack(self, long long ack, double now)
    @cython.locals(elapsed=cython.longlong, sample=double, tsecr=cython.longlong)
    cpdef _receiver_rtt(self, Incoming seg, double now)
    @cython.locals(nxt=cython.longlong, end=cython.longlong, filled=bint)
    cpdef _receive_payload(self, long long seq, object payload, Incoming seg, double now)
    cpdef _ack_policy(self, double now)
    cpdef object next_timer(self)

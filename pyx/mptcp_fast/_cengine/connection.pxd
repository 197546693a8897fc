# Types for the compiled build of mptcp_fast/engine/connection.py (mptcp_fast._cengine.connection):
# the connection's state as C fields; its subflows see only its base, subflow.pxd's SubflowOwner.
# Its two components are typed (pathmanager.pxd, fallback.pxd): the fields it reads of them per
# segment are C fields, their per-segment methods C calls.
cimport cython
from cpython.object cimport PyObject_GenericSetAttr as _set_field
from cpython.type cimport PyType_GenericAlloc

from mptcp_fast._cengine.buffers cimport Retained, Unsent
from mptcp_fast._cengine.cc cimport Controller
from mptcp_fast._cengine.fallback cimport Fallback
from mptcp_fast._cengine.pathmanager cimport PathManager
from mptcp_fast._cengine.scheduler cimport _shortest_linger
from mptcp_fast._cengine.subflow cimport (CLOSE_WAIT, CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT,
                                          TIME_WAIT, Chunk, Subflow, SubflowOwner, _diff32,
                                          _new_chunk,
                                          _earlier)
from mptcp_fast.wire._dss_c cimport (ReassemblyQueue, queue_data_ack as _queue_data_ack,
                                     queue_eof as _queue_eof,
                                     queue_window_left as _queue_window_left)
from mptcp_fast.wire._receiver_c cimport (DataReceiver as _CReceiver,
                                         SubflowReceiver as _CSubflowReceiver)
from mptcp_fast.wire._segment_c cimport Incoming
from mf_mapstore cimport ms_release
from mf_gc cimport untrack as _untrack
from mptcp_fast.wire._sender_c cimport DsnAllocator


cdef long long MASK32, _HALF32, SEND_BUFFER_FLOOR, MAX_CHUNK
cdef dict _OPTION_HANDLERS
cdef object _DATA, _EOF                 # the event queue's markers: C globals, read per segment


cdef inline object _new_object(object cls):
    # object.__new__(cls), as the C API does it: with _set_field, _data_received's two calls
    return PyType_GenericAlloc(cls, 0)


cdef inline unsigned long long _allocator_next_dsn(DsnAllocator a) except? 0:
    # a.next_dsn: the DSN the next new byte gets (None raises as the attribute would)
    if a is None:
        raise AttributeError("'NoneType' object has no attribute 'next_dsn'")
    return a._dsn_at(a._next)


cdef inline unsigned long long _allocator_data_ack(DsnAllocator a) except? 0:
    # a.data_ack: the highest DATA_ACK taken
    if a is None:
        raise AttributeError("'NoneType' object has no attribute 'data_ack'")
    return a._dsn_at(a._acked)


cdef inline int _receiver_deliver(object receiver, long long number, object side,
                                  long long rel, object payload) except -1:
    # receiver.deliver(number, side, rel, len(payload), payload): a C call when the receive
    # pipeline, the side and the payload are the compiled pipeline's own types
    if type(receiver) is _CReceiver and type(side) is _CSubflowReceiver \
            and type(payload) is bytes:
        (<_CReceiver>receiver).deliver_bytes(number, <_CSubflowReceiver>side, rel,
                                             <bytes>payload)
    else:
        receiver.deliver(number, side, rel, len(payload), payload)
    return 0


cdef inline int _receiver_declare(object receiver, long long number, object side,
                                  object dsn, long long start, long long length) except -1:
    # receiver.declare(number, side, dsn, start, length, False, None, False): a C call for the
    # compiled pipeline's types and the ranges its declare() accepts (else that call, which
    # says what is wrong)
    if type(receiver) is _CReceiver and type(side) is _CSubflowReceiver and type(dsn) is int \
            and 0 <= dsn <= 0xFFFFFFFFFFFFFFFF and 0 <= length <= 0xFFFF \
            and 0 <= start <= 0x7FFFFFFFFFFFFFFF - length:
        (<_CReceiver>receiver).declare_(number, <_CSubflowReceiver>side,
                                        <unsigned long long>dsn, start, length, False, -1,
                                        False)
    else:
        receiver.declare(number, side, dsn, start, length, False, None, False)
    return 0


cdef inline int _side_release(object side, long long upto) except -1:
    # side.release(upto): the mapping pieces ending at or before ``upto`` forgotten, in C
    if type(side) is _CSubflowReceiver:
        ms_release(&(<_CSubflowReceiver>side).maps, upto)
    else:
        side.release(upto)
    return 0


cdef object _data_received(long long connection, object data)
cdef bint _beyond(object ranges, object limit)
cdef bint _immutable_view(object data) except -1
cdef long long _diff64(unsigned long long a, unsigned long long b)
cdef unsigned long long _add64(unsigned long long a, unsigned long long b)


# not final: Cython refuses a final class that overrides its base's methods
cdef class Connection(SubflowOwner):
    cdef public object endpoint, config, scheduler
    cdef public Controller cc
    # the id as one int object, the key of every dictionary of connections (a C long would
    # make a new int per read, which a dictionary then compares by value, not identity)
    cdef public object id
    cdef public long version
    cdef public long long send_buffer, receive_window   # Config values read per segment
    cdef public bint is_client, redundant
    cdef public list subflows, all_subflows
    cdef public object local_key, local_token, remote_key, keys
    cdef public bint established, fully_established, half_open
    cdef public object terminated
    cdef public object local_first_dsn, remote_first_dsn, syn_key, local, remote
    cdef public PathManager pm               # joins, ADD_ADDR, REMOVE_ADDR, MP_PRIO
    cdef public Fallback fb                  # fallback, DSS checksums, MP_FAIL
    # sending
    cdef public DsnAllocator allocator
    cdef public Unsent unsent
    cdef public Retained retained
    cdef public object reinject
    cdef public unsigned long long peer_edge
    cdef public long long peer_window_max
    cdef public dict redundant_sent
    cdef public bint local_closed, fin_acked
    cdef public object fin_dsn, fin_at, persist_at
    cdef public long fin_backoff, persist_backoff
    cdef public object retrans_at            # the data-level retransmission timer
    cdef public double progress_at
    cdef public long retrans_backoff
    cdef public long long data_retransmits
    # receiving
    cdef public ReassemblyQueue queue
    cdef public object receiver
    cdef public list events
    cdef public list _with_events        # the endpoint's (_event appends to it)
    cdef public dict receiver_side
    cdef public list anomalies
    cdef public bint eof_reported, _queued, _space_queued, _touched
    cdef public long long advertised, segments, reinjected_bytes
    cdef public long long read_in_round
    cdef public double round_started
    cdef public long ignored_options, anomalies_dropped, bad_join, bad_fastclose
    cdef public long window_probes
    cdef public long long refused_mappings, refused_data_fins
    cdef public object fastopen              # TCP Fast Open (engine/fastopen.py), or None

    cpdef send(self, object data, object end_stream=*)   # a C call from the emulator's apps
    @cython.locals(events=list)
    cpdef next_event(self, long long max_data=*)
    cpdef _event(self, object event)
    cpdef _mark_data(self)
    @cython.locals(sf=Subflow, left=cython.longlong)
    cpdef _window_opened(self)
    @cython.locals(now=double, target=cython.longlong, round_trip=double, elapsed=double,
                   per_round_trip=double)
    cpdef _autotune(self, long long taken)
    @cython.locals(sf=Subflow, rtt=double, longest=double)
    cpdef double _round_trip(self)
    cpdef long long receive_window_left(self)
    cpdef long long _buffered(self)
    @cython.locals(limit=cython.longlong)
    cpdef long long _send_space(self)
    @cython.locals(usual_ack=cython.ulonglong, window_usable=bint)
    cpdef on_options(self, Subflow sf, Incoming seg, double now)
    cpdef unsigned long long _full_data_ack(self, unsigned long long ack, bint ack64) except? 0
    @cython.locals(before=cython.ulonglong)
    cpdef bint _on_data_ack(self, unsigned long long ack, double now) except -1
    cpdef _update_window(self, long long window, object data_ack)
    cpdef _move_edge(self, long long window, unsigned long long data_ack)
    cpdef _space_opened(self)
    cpdef _data_acked(self, double now)
    @cython.locals(payload_length=cython.longlong, start=cython.longlong)
    cpdef _on_mapping(self, Subflow sf, object dsn, bint dsn64, long long ssn, long long length,
                      object checksum, bint data_fin, Incoming seg)
    cpdef bint _dsn_acceptable(self, object dsn)
    cpdef bint _store_mapping(self, Subflow sf, Incoming seg, object dsn, long long start,
                              long long payload_length, long long data_len, object checksum)
    @cython.locals(rcv_nxt=cython.longlong, start=cython.longlong, first=cython.longlong)
    cpdef long long _mapped_start(self, Subflow sf, long long ssn32, Incoming seg,
                                  long long payload_length)
    cpdef _side(self, Subflow sf)
    cpdef bint receive_data(self, Subflow sf, long long seq, object payload, Incoming seg,
                            double now)
    cpdef _check_eof(self)
    cpdef plain_data_ack(self)
    cpdef object dss_data_ack(self)
    cpdef bint checksum_offload(self)
    @cython.locals(sf=Subflow)
    cpdef flush(self, double now)
    @cython.locals(sf=Subflow, size=cython.longlong, n=cython.longlong, room=cython.longlong,
                   burst=cython.longlong)
    cpdef _push(self, double now)
    cpdef _checksum(self, object dsn, long long seq, object data)
    cpdef bint _data_waiting(self)
    cpdef _arm_retransmission(self, double now)
    @cython.locals(sf=Subflow, longest=double)
    cpdef double _retransmission_interval(self)
    @cython.locals(due=double)
    cpdef _retransmission_timeout(self, double now)
    @cython.locals(sf=Subflow, size=cython.longlong, n=cython.longlong)
    cpdef bint _resend_oldest(self, double now)
    @cython.locals(sf=Subflow)
    cpdef _retransmission_subflow(self, object head)
    @cython.locals(sf=Subflow)
    cpdef next_timer(self)

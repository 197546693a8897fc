# Types for the compiled build of mptcp_fast/engine/endpoint.py (mptcp_fast._cengine.endpoint).
cimport cython
from mf_list cimport clear as _clear

from mptcp_fast._cengine.connection cimport Connection
from mptcp_fast._cengine.subflow cimport Subflow, TIME_WAIT
from mptcp_fast.wire._segment_c cimport Incoming, read as read_packet


@cython.final
cdef class Endpoint:
    cdef public object config, random, tokens, isn, cookies, counts, _read
    cdef public object fastopen              # TCP Fast Open (engine/fastopen.py), or None
    cdef public list addresses, _out, _timers
    cdef public set _own, listening
    cdef public dict _address_ids, connections, _subflows, _timer_of, _timed, _ports_taken
    cdef public list _dirty
    cdef public tuple _port_range
    cdef public long half_open
    cdef public double now
    cdef public long long _next_id, _order, _number, packets_received, packets_sent
    cdef public list _with_events, _with_space
    cdef Py_ssize_t _events_at
    cdef public bint watch_send_space, checksum_offload, receive_views
    cdef bytes _recent_flow, _other_flow       # receive_packet's two recent subflows' keys
    cdef Subflow _recent_sf, _other_sf

    @cython.locals(sf=Subflow, seg=Incoming, flow=bytes)
    cpdef receive_packet(self, object data, double now, bint verified=*)
    cpdef receive_packets(self, object packets, double now, object verified=*)
    @cython.locals(out=list, i=Py_ssize_t)
    cpdef list packets_to_send(self, double now)
    @cython.locals(conn=Connection, out=list, dirty=list)
    cpdef list packets_to_write(self, double now)
    @cython.locals(timers=list, conn=Connection)
    cpdef get_timer(self)
    @cython.locals(conn=Connection)
    cpdef handle_timer(self, double now)
    @cython.locals(conn=Connection, queue=list, at=Py_ssize_t)
    cpdef next_event(self)
    @cython.locals(queued=list, conn=Connection)
    cpdef list connections_with_events(self)
    cpdef output(self, object packet)
    cpdef touch(self, Connection conn)
    cpdef has_events(self, Connection conn)
    cpdef _rearm(self, Connection conn)
    cpdef _forget_recent(self)
    cpdef _arm(self, Connection conn, double when)

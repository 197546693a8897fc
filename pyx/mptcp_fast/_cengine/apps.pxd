# Types for the compiled build of mptcp_fast/sim/apps.py (mptcp_fast._cengine.apps).
cimport cython

from mptcp_fast._cengine.connection cimport Connection
from mptcp_fast._cengine.endpoint cimport Endpoint


@cython.final
cdef class Transfer:
    cdef public Connection conn
    cdef public object source, sent_hash, received_hash, terminated
    cdef public object established_at, eof_at
    cdef public long long to_send, sent, received, order, fed
    cdef public bint eof, ready
    cdef public list subflow_events, timeline


@cython.final
cdef class BulkApp:
    cdef dict __dict__                 # a test may wrap the host face netem calls on it
    cdef public Endpoint endpoint
    cdef public long long send_bytes, ended, _made
    cdef public object source
    cdef public bint hash_data, close_when_done, wait_for_peer, paused
    cdef public bint _fed_close, _fed_wait
    cdef public dict transfers
    cdef public list events

    cpdef receive_packet(self, object data, double now)
    cpdef receive_packets(self, object packets, double now, object verified=*)
    cpdef packets_to_send(self, double now)
    cpdef get_timer(self)
    cpdef handle_timer(self, double now)
    @cython.locals(t=Transfer, ready=list, conn=Connection)
    cpdef run(self, double now)
    cpdef bint peer_ended(self)
    cdef Transfer _transfer(self, Connection conn)
    @cython.locals(conn=Connection, n=cython.longlong, space=cython.longlong,
                   start=cython.longlong, size=cython.longlong, taken=cython.longlong)
    cpdef _feed(self, Transfer t)

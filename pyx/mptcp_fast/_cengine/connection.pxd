# Types for the compiled build of mptcp_fast/engine/connection.py (mptcp_fast._cengine.connection):
# the connection's state is declared on its base, subflow.pxd's _ConnectionState.
cimport cython
from cpython.object cimport PyObject_GenericSetAttr as _set_field
from cpython.type cimport PyType_GenericAlloc

from mptcp_fast._cengine.subflow cimport (CLOSE_WAIT, CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT,
                                          TIME_WAIT, Chunk, Subflow, _ConnectionState, _diff32)
from mptcp_fast._segment cimport Incoming


cdef long long MASK32, _HALF32


cdef inline object _new_object(object cls):
    # object.__new__(cls), as the C API does it: with _set_field, _data_received's two calls
    return PyType_GenericAlloc(cls, 0)


cdef object _data_received(long long connection, object data)
cdef long long _diff64(unsigned long long a, unsigned long long b)
cdef unsigned long long _add64(unsigned long long a, unsigned long long b)


# not final: Cython refuses a final class that overrides its base's methods
cdef class Connection(_ConnectionState):
    @cython.locals(events=list)
    cpdef next_event(self, long long max_data=*)
    cpdef _event(self, object event)
    cpdef _mark_data(self)
    @cython.locals(sf=Subflow)
    cpdef _window_opened(self)
    @cython.locals(now=double, target=cython.longlong, round_trip=double, elapsed=double,
                   per_round_trip=double)
    cpdef _autotune(self, long long taken)
    @cython.locals(sf=Subflow, rtt=double, longest=double)
    cpdef double _round_trip(self)
    cpdef long long receive_window_left(self)
    cpdef long long _buffered(self)
    @cython.locals(fields=tuple)
    cpdef on_options(self, Subflow sf, Incoming seg, double now)
    cpdef _on_data_ack(self, tuple dss_option, double now)
    cpdef _update_window(self, long long window, object data_ack)
    cpdef _space_opened(self)
    @cython.locals(length=cython.longlong, payload_length=cython.longlong,
                   start=cython.longlong)
    cpdef _on_mapping(self, Subflow sf, tuple o, Incoming seg)
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
    @cython.locals(sf=Subflow)
    cpdef flush(self, double now)
    @cython.locals(sf=Subflow, size=cython.longlong, n=cython.longlong, room=cython.longlong)
    cpdef _push(self, double now)
    cpdef _checksum(self, object dsn, long long seq, object data)
    @cython.locals(sf=Subflow)
    cpdef next_timer(self)

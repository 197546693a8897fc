# Types for the compiled build of mptcp_fast/sim/netem.py (mptcp_fast._cengine.netem): the event
# loop, the paths and their queues as C fields and calls.
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from libc.string cimport memcmp

from mptcp_fast._cengine.apps cimport BulkApp
from mf_gc cimport untrack as _untrack
from mf_list cimport clear as _clear


cdef extern from "Python.h":
    PyObject** _PyObject_GetDictPtr(object obj)
    Py_ssize_t PyDict_GET_SIZE(PyObject* d)


cdef inline bint _is_app(object host):
    return type(host) is BulkApp


cdef inline bint _has_no_attributes(object obj):
    # the instance dict of a class that has one (BulkApp's cdef dict __dict__): none made yet,
    # or empty
    cdef PyObject** d = _PyObject_GetDictPtr(obj)
    return d == NULL or d[0] == NULL or PyDict_GET_SIZE(d[0]) == 0


cdef inline object _route_key(bytes packet):
    # netem.py's _route_key: the source and destination addresses as one bytes object,
    # copied from the packet (a slice of it costs a slice object and the generic path)
    cdef Py_ssize_t size = len(packet)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(packet)
    if size >= 20 and p[0] >> 4 == 4:
        return PyBytes_FromStringAndSize(<const char*>p + 12, 8)
    if size >= 40 and p[0] >> 4 == 6:
        return PyBytes_FromStringAndSize(<const char*>p + 8, 32)
    return None


cdef inline bint _routed_by(bytes packet, object key):
    # netem.py's _routed_by: the packet's addresses compared with the key where they lie
    cdef Py_ssize_t size = len(packet)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(packet)
    if key is None:
        return False
    if size >= 20 and p[0] >> 4 == 4:
        return len(<bytes>key) == 8 and memcmp(p + 12, PyBytes_AS_STRING(key), 8) == 0
    if size >= 40 and p[0] >> 4 == 6:
        return len(<bytes>key) == 32 and memcmp(p + 8, PyBytes_AS_STRING(key), 32) == 0
    return False


cdef class Path
cdef class Network


@cython.final
cdef class _Host:
    cdef public object host
    cdef public double timer
    cdef public BulkApp app
    cdef public double coalesce
    cdef public list batch
    cdef public bint takes_batches
    cpdef bint direct(self)


@cython.final
@cython.no_gc                         # a number and bytes: never in a cycle (ignored for a
                                      # pure-mode class: _new_arrival untracks each one)
cdef class _Arrival:
    cdef public double when
    cdef public long long order
    cdef public object packet


@cython.final
@cython.no_gc
cdef class _OnWire:
    cdef public double done
    cdef public long long size


@cython.locals(arrival=_Arrival)
cdef _Arrival _new_arrival(double when, long long order, object packet)
@cython.locals(entry=_OnWire)
cdef _OnWire _new_on_wire(double done, long long size)


@cython.final
@cython.no_gc                         # its items are _Arrival or _OnWire: never in a cycle
cdef class _Fifo:
    cdef public list items
    cdef public Py_ssize_t head
    cpdef bint empty(self)
    cpdef push(self, object item)
    cpdef object first(self)
    cpdef object last(self)
    @cython.locals(items=list)
    cpdef object pop(self)
    cpdef clear(self)


@cython.final
cdef class _Direction:
    cdef public Path path
    cdef public bytes receiver
    cdef public _Fifo queued, in_flight
    cdef public double link_free_at
    cdef public long long queued_bytes, peak_queued_bytes
    cdef public bint bad_state
    cdef public long long sent, delivered, bytes_delivered, lost, queue_drops
    cdef public long long middlebox_drops, mtu_drops, reordered, duplicated
    cdef public _Host host_entry
    cdef public long long hosts_version
    @cython.locals(network=Network)
    cpdef arrive(self, object packet)
    @cython.locals(flight=_Fifo, arrival=_Arrival)
    cpdef arrive_first(self)


@cython.final
cdef class Network:
    cdef public double now
    cdef public object random, _pcap
    cdef public list _events, _entries, _busy
    cdef public long long _order, unroutable, hosts_version
    cdef public dict _hosts, _paths, _routes
    cdef public bint _owns_pcap
    cdef bytes _recent_key, _other_key          # _transmit's two recent routes
    cdef _Direction _recent_route, _other_route

    cpdef _schedule(self, double when, object callback, object args)
    @cython.locals(flight=_Fifo, order=cython.longlong, last=_Arrival)
    cpdef _in_flight(self, _Direction direction, double when, object packet)
    @cython.locals(events=list, busy=list, event=tuple, when=double, order=cython.longlong,
                   horizon=double, processed=cython.longlong, arriving=_Direction,
                   direction=_Direction, head=_Arrival)
    cpdef double run(self, object until=*, object stop=*, object max_events=*)
    cpdef _deliver(self, bytes address, object packet)
    cpdef _deliver_to(self, _Host entry, object packet)
    cpdef _deliver_batch(self, _Host entry)
    @cython.locals(app=BulkApp)
    cpdef _poll(self, _Host entry)
    cpdef _timer(self, _Host entry, double when)
    @cython.locals(direction=_Direction, key=bytes)
    cpdef _transmit(self, object packet)
    cpdef _join(self, bytes a, bytes b, Path path)


@cython.final
cdef class Path:
    cdef public Network network
    cdef public bytes a, b
    cdef public double rate, delay, jitter, loss, reorder, reorder_delay, duplicate
    cdef public object burst, middlebox
    cdef public long mtu
    cdef public long long queue
    cdef public bint is_up, offload
    cdef public dict _directions

    cpdef _send_on(self, _Direction direction, object packet, double now)
    cpdef bint _clean(self)
    cpdef bint _lost(self, _Direction direction)
    @cython.locals(size=cython.longlong, start=cython.double, done=cython.double,
                   arrival=cython.double, head=_OnWire, queued=_Fifo)
    cpdef _enter(self, _Direction direction, object packet, double now, object pieces=*)

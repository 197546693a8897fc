# Types for the compiled build of mptcp_fast/netem.py (mptcp_fast._cengine.netem): the event
# loop, the paths and their queues as C fields and calls.
cimport cython


@cython.final
cdef class _Direction:
    cdef public object stats, queued
    cdef public double link_free_at
    cdef public long long queued_bytes
    cdef public bint bad_state


@cython.final
cdef class Network:
    cdef dict __dict__
    cdef public double now
    cdef public object random, _pcap
    cdef public list _events
    cdef public long long _order, unroutable
    cdef public dict _hosts, _timers, _paths
    cdef public bint _owns_pcap

    cpdef _schedule(self, double when, object callback, tuple args)
    cpdef _deliver(self, bytes address, object packet)
    cpdef _poll(self, object host)
    cpdef _timer(self, object host, double when)
    cpdef _transmit(self, object packet)


@cython.final
cdef class Path:
    cdef dict __dict__
    cdef public Network network
    cdef public bytes a, b
    cdef public double rate, delay, jitter, loss, reorder, reorder_delay, duplicate
    cdef public object burst, middlebox
    cdef public long mtu
    cdef public long long queue
    cdef public bint is_up, offload
    cdef public dict _directions

    cpdef send(self, bytes sender, object packet, double now)
    cpdef bint _clean(self)
    cpdef bint _lost(self, _Direction direction)
    cpdef _enter(self, _Direction direction, object stats, bytes sender, object packet,
                 double now, object pieces=*)
    cpdef _arrive(self, _Direction direction, bytes receiver, object packet)

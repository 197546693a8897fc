# Types for the compiled build of mptcp_fast/engine/pathmanager.py (mptcp_fast._cengine.pathmanager):
# the path manager's state as C fields; the calls its connection makes per segment or per flush
# are C calls. It reaches its connection (an object: pathmanager.PathOwner) by Python calls,
# only for joins and signals, never per segment.
cimport cython

from mptcp_fast._cengine.subflow cimport CLOSED, ESTABLISHED, SYN_RCVD, SYN_SENT
from mf_gc cimport untrack as _untrack


@cython.final
cdef class PathManager:
    cdef public object owner, endpoint, config
    cdef public list subflows                # the connection's live subflows (read only)
    cdef public long id, version
    cdef public bint is_client, peer_denies_initial, joins_due
    cdef public dict remote_addresses, announcing
    cdef public list pending_echo, pending_remove
    cdef public set announced
    cdef public long add_addr_accepted, bad_add_addr
    cdef public long long removal_refuted

    cpdef bint signals_owed(self)
    cpdef ack_options(self, object sf, object data_ack)
    cpdef flush(self, double now)
    cpdef next_timer(self)
    cpdef handle_timer(self, double now)

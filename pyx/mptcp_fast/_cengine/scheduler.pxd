# Types for the compiled build of mptcp_fast/engine/scheduler.py (mptcp_fast._cengine.scheduler):
# the per-pick helpers read the subflows' C fields. The schedulers themselves stay Python
# classes (a user's own scheduler is any object with pick() and burst).
cimport cython

from mptcp_fast._cengine.cc cimport Window
from mptcp_fast._cengine.subflow cimport Subflow


cdef double PACING_SS_RATIO, PACING_CA_RATIO, UNMEASURED

@cython.locals(s=Subflow, usable=long, regular=long)
cpdef bint _backups_too(list subflows)
@cython.locals(s=Subflow, backups_too=bint, out=list)
cpdef list _candidates(list subflows)
@cython.locals(s=Subflow, best=Subflow, best_rtt=object)
cpdef object _lowest_rtt(list pool, bint with_room)
@cython.locals(measured=object, srtt=double, ratio=double, window=Window)
cpdef double linger_time(Subflow s)
@cython.locals(s=Subflow, best=Subflow, best_linger=double, best_rtt=double, linger=double,
               measured=object, rtt=double, backups_too=bint)
cpdef object _shortest_linger(list subflows)

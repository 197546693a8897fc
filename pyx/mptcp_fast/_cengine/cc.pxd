# Types for the compiled build of mptcp_fast/engine/cc.py (mptcp_fast._cengine.cc).
cimport cython
from mf_gc cimport untrack as _untrack

# module constants read per ACK: C values
cdef long HYSTART_SAMPLES, HYSTART_LOW_WINDOW
cdef double HYSTART_MIN_DELAY, HYSTART_MAX_DELAY, _INF


@cython.final
cdef class Window:
    cdef public long mss
    cdef public double cwnd, ssthresh, w_max, k, w_est, origin
    cdef public object srtt, epoch_start
    cdef public long long acked_before_loss, acked_since_loss, round_end
    cdef public double round_min, last_round_min
    cdef public long round_samples
    cdef public bint hystart_exit
    cpdef bint can_send(self, long long in_flight, long long size)


cdef class Controller:
    cdef public list windows
    cdef public bint hystart
    cpdef rtt_sample(self, Window w, double rtt, long long ack, long long snd_nxt)
    cpdef on_ack(self, Window w, long long acked, double now, long segments=*)
    cpdef _avoid(self, Window w, long long acked, double now)


cdef class Reno(Controller):
    pass


cdef class Lia(Controller):
    @cython.locals(x=Window, total=double, best=double, rate_sum=double, rtt=double,
                   measured=bint)
    cpdef double alpha(self)
    @cython.locals(x=Window, total=double, coupled=double, increase=double)
    cpdef _avoid(self, Window w, long long acked, double now)

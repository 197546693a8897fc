# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of mptcp_fast/analysis/_series_py.py: the time series' passes over a
connection's packets, each one C loop over the rows instead of numpy's dozen passes.

``data_packets`` counts each subflow direction's data packets and ACKs, then fills their
arrays in one more pass, carrying each direction's last mapping and highest subflow byte
along; ``rtt_samples`` walks a direction's data packets and the other side's ACKs together
(both sorted by time: each search starts where the one before ended); ``delivery`` walks a
direction's pieces in DSN order once. Same arrays, same
values, as the pure twin.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
import numpy as np

from mptcp_fast.analysis import _series_py


cdef int64_t MASK32 = 0xFFFFFFFF
cdef uint8_t ACK = 0x10
cdef uint8_t NO_DSS = 0xFF


cdef _column(dict p, str name, dtype):
    """A column as a contiguous array of ``dtype`` (no copy when it is one already)."""
    return np.ascontiguousarray(p[name], dtype=dtype)


def data_packets(dict p, int subflows, list isn, list first_dsn):
    """See the pure twin."""
    cdef Py_ssize_t n = len(p["time"]), r, k, at
    cdef int count = 2 * subflows
    cdef const int32_t[::1] sub = _column(p, "subflow", np.int32)
    cdef const uint8_t[::1] up = _column(p, "up", np.bool_).view(np.uint8)
    cdef const double[::1] time = _column(p, "time", np.float64)
    cdef const uint32_t[::1] seq = _column(p, "seq", np.uint32)
    cdef const uint32_t[::1] ack = _column(p, "ack", np.uint32)
    cdef const uint8_t[::1] flags = _column(p, "flags", np.uint8)
    cdef const uint32_t[::1] payload = _column(p, "payload_len", np.uint32)
    cdef const uint8_t[::1] dss_flags = _column(p, "dss_flags", np.uint8)
    cdef const uint64_t[::1] m_dsn = _column(p, "dsn", np.uint64)
    cdef const uint32_t[::1] m_ssn = _column(p, "dss_ssn", np.uint32)
    cdef const uint16_t[::1] m_len = _column(p, "dss_len", np.uint16)
    cdef const uint16_t[::1] subtypes = _column(p, "mptcp_subtypes", np.uint16)
    # per subflow direction: its ISN, where its rows go, its last mapping, its highest end
    known = np.array([v is not None for v in isn], np.uint8)
    cdef const uint8_t[::1] isn_known = known
    cdef int64_t[::1] isn_value = np.array([0 if v is None else v for v in isn], np.int64)
    cdef int64_t[::1] data_at = np.zeros(count + 1, np.int64)
    cdef int64_t[::1] ack_at = np.zeros(count + 1, np.int64)
    cdef int32_t[::1] key = np.empty(n, np.int32)
    cdef int32_t s
    for r in range(n):                          # each row's direction, and the counts
        s = sub[r]
        if s < 1 or s > subflows:
            key[r] = -1
            continue
        k = s - 1 + (0 if up[r] else subflows)
        key[r] = <int32_t>k
        if payload[r] > 0 and isn_known[k]:
            data_at[k + 1] += 1
        if flags[r] & ACK:
            ack_at[k + 1] += 1
    for k in range(count):
        data_at[k + 1] += data_at[k]
        ack_at[k + 1] += ack_at[k]
    starts, ack_starts = np.asarray(data_at).copy(), np.asarray(ack_at).copy()
    cdef const int64_t[::1] first_row = starts
    cdef Py_ssize_t rows = data_at[count], acks = ack_at[count]
    out_index = np.empty(rows, np.int64)
    out_time = np.empty(rows, np.float64)
    out_rel = np.empty(rows, np.int64)
    out_length = np.empty(rows, np.int64)
    out_end = np.empty(rows, np.int64)
    out_dsn = np.empty(rows, np.uint64)
    out_has = np.empty(rows, np.bool_)
    out_retransmitted = np.empty(rows, np.bool_)
    out_ack_time = np.empty(acks, np.float64)
    out_ack = np.empty(acks, np.uint32)
    cdef int64_t[::1] index = out_index, rel = out_rel, length = out_length, end = out_end
    cdef double[::1] when = out_time, ack_when = out_ack_time
    cdef uint64_t[::1] dsn = out_dsn
    cdef uint8_t[::1] has = out_has.view(np.uint8)
    cdef uint8_t[::1] retransmitted = out_retransmitted.view(np.uint8)
    cdef uint32_t[::1] ack_value = out_ack
    cdef uint8_t[::1] mapped = np.zeros(count, np.uint8)     # a mapping seen on the direction
    cdef uint64_t[::1] last_dsn = np.zeros(count, np.uint64)
    cdef int64_t[::1] last_ssn = np.zeros(count, np.int64)
    cdef int64_t[::1] last_len = np.zeros(count, np.int64)
    cdef int64_t[::1] highest = np.zeros(count, np.int64)    # the highest end so far
    cdef uint8_t[::1] first_known = np.array([v is not None for v in first_dsn], np.uint8)
    cdef uint64_t[::1] first_value = np.array([0 if v is None else v for v in first_dsn],
                                              np.uint64)
    cdef int64_t offset, position
    cdef uint8_t f, inside
    for r in range(n):
        k = key[r]
        if k < 0:
            continue
        if flags[r] & ACK:
            at = ack_at[k]
            ack_at[k] += 1
            ack_when[at] = time[r]
            ack_value[at] = ack[r]
        if payload[r] == 0 or not isn_known[k]:
            continue
        at = data_at[k]
        data_at[k] += 1
        index[at] = r
        when[at] = time[r]
        position = (<int64_t>seq[r] - isn_value[k]) & MASK32
        rel[at] = position
        length[at] = payload[r]
        end[at] = position + payload[r]
        f = dss_flags[r]
        if f != NO_DSS and (f & 12) == 12 and m_len[r] > 0:      # a mapping of its own
            mapped[k] = 1
            last_dsn[k], last_ssn[k], last_len[k] = m_dsn[r], m_ssn[r], m_len[r]
        inside = 0
        if mapped[k]:
            offset = position - last_ssn[k]
            inside = offset >= 0 and offset < last_len[k]
        if inside:
            dsn[at] = <uint64_t>offset + last_dsn[k]
            has[at] = 1
        elif position == 1 and subtypes[r] & 1 and first_known[k // subflows]:
            dsn[at] = first_value[k // subflows]                # data on the MP_CAPABLE ACK
            has[at] = 1
        else:
            dsn[at] = 0
            has[at] = 0
        retransmitted[at] = at > first_row[k] and end[at] <= highest[k]
        if at == first_row[k] or end[at] > highest[k]:
            highest[k] = end[at]
    return {"index": out_index, "time": out_time, "rel": out_rel, "length": out_length,
            "end": out_end, "dsn": out_dsn, "has_dsn": out_has,
            "retransmitted": out_retransmitted, "starts": starts, "ack_time": out_ack_time,
            "ack": out_ack, "ack_starts": ack_starts}


ctypedef fused _sorted_value:           # the arrays searched: times and ACK numbers
    double
    int64_t


cdef Py_ssize_t _first_at_least(const _sorted_value[::1] values, _sorted_value key,
                                Py_ssize_t low):
    """The first index from ``low`` whose (sorted) value is at least ``key``: a search that
    gallops from ``low`` (the answer for a smaller key), then halves."""
    cdef Py_ssize_t n = values.shape[0], step = 1, high
    while low + step < n and values[low + step - 1] < key:
        low += step
        step *= 2
    high = min(low + step, n)
    while low < high:
        step = (low + high) // 2
        if values[step] < key:
            low = step + 1
        else:
            high = step
    return low


def rtt_samples(ack_time, ack, isn, sent_time, sent_end, retransmitted):
    """See the pure twin."""
    cdef Py_ssize_t m = len(ack_time), n = len(sent_time), j
    if m == 0 or n == 0:
        return np.zeros(0)
    cdef const double[::1] replies = np.ascontiguousarray(ack_time, np.float64)
    for j in range(1, m):
        if replies[j] < replies[j - 1]:        # out of order in the file: numpy's search
            return _series_py.rtt_samples(ack_time, ack, isn, sent_time, sent_end,
                                          retransmitted)
    cdef const uint32_t[::1] acked = np.ascontiguousarray(ack, np.uint32)
    cdef int64_t base = isn
    highest = np.empty(m, np.int64)            # an ACK covers everything below it
    cdef int64_t[::1] covered = highest
    cdef int64_t top = 0, value
    for j in range(m):
        value = (<int64_t>acked[j] - base - 1) & MASK32
        if j == 0 or value > top:
            top = value
        covered[j] = top
    return _rtt_fill(np.empty(n, np.float64), replies,
                     np.ascontiguousarray(sent_time, np.float64),
                     np.ascontiguousarray(sent_end, np.int64),
                     np.ascontiguousarray(retransmitted, np.bool_).view(np.uint8), highest)


cdef _rtt_fill(out, const double[::1] replies, const double[::1] sent,
               const int64_t[::1] ends, const uint8_t[::1] again,
               const int64_t[::1] highest):
    """The samples: for each packet not retransmitted, the wait for the first ACK at or
    after it (by time) that covers it (by ACK number), when there is one."""
    cdef Py_ssize_t m = replies.shape[0], n = sent.shape[0], i, k, count = 0
    cdef Py_ssize_t after = 0, covering = 0
    cdef double previous_time = 0
    cdef int64_t previous_end = 0
    cdef bint searched = False
    cdef double[::1] samples = out
    for i in range(n):
        if again[i]:
            continue
        after = _first_at_least(
            replies, sent[i], after if searched and sent[i] >= previous_time else 0)
        covering = _first_at_least(
            highest, ends[i] - 1, covering if searched and ends[i] >= previous_end else 0)
        previous_time, previous_end, searched = sent[i], ends[i], True
        k = after if after > covering else covering
        if k < m:
            samples[count] = (replies[k] - sent[i]) * 1000
            count += 1
    return out[:count]


def delivery(dsn, time, length):
    """See the pure twin (which takes pieces out of DSN order, and none)."""
    cdef Py_ssize_t n = len(dsn), i, kept = 0
    if n == 0:
        return _series_py.delivery(dsn, time, length)
    cdef const uint64_t[::1] position = np.ascontiguousarray(dsn, np.uint64)
    for i in range(1, n):
        if position[i] < position[i - 1]:
            return _series_py.delivery(dsn, time, length)
    cdef const double[::1] arrival = np.ascontiguousarray(time, np.float64)
    cdef const int64_t[::1] size = np.ascontiguousarray(length, np.int64)
    out_delays, out_fresh = np.empty(n, np.float64), np.empty(n, np.int64)
    out_frontier, out_total = np.empty(n, np.float64), np.empty(n, np.int64)
    out_time = np.empty(n, np.float64)
    cdef double[::1] delays = out_delays, frontier = out_frontier, arrived = out_time
    cdef int64_t[::1] fresh = out_fresh, total = out_total
    cdef uint64_t first = position[0]
    cdef int64_t start, end, before = 0, delivered = 0
    cdef double latest = 0
    for i in range(n):
        start = <int64_t>(position[i] - first)     # relative: the difference fits an int64
        end = start + size[i]
        if i == 0:
            before = start
        if end <= before:                          # covered by earlier pieces (or empty)
            continue
        fresh[kept] = end - (start if start > before else before)
        delivered += fresh[kept]
        total[kept] = delivered
        if kept == 0 or arrival[i] > latest:
            latest = arrival[i]
        frontier[kept] = latest
        delays[kept] = (latest - arrival[i]) * 1000
        arrived[kept] = arrival[i]
        kept += 1
        before = end
    return (out_delays[:kept], out_fresh[:kept], (out_frontier[:kept], out_total[:kept]),
            out_time[:kept])

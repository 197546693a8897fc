"""Pure-Python twin of pyx/mptcp_fast/analysis/_series_c.pyx: the time series' passes over a
connection's packets (``timeseries``), in numpy.

``data_packets`` sorts a connection's rows by subflow direction (its data packets, placed at
the data level, and its ACKs); ``rtt_samples`` matches one subflow direction's data packets
with the other side's ACKs; ``delivery`` follows a direction's data-level pieces (in DSN
order) to their in-order delivery. A subflow direction's ``key`` is ``subflow - 1 + down *
subflows``: the directions first, so that each direction's rows are one block. Same arrays,
same values, as the compiled twin.
"""

from __future__ import annotations

import numpy as np

MASK32 = (1 << 32) - 1
ACK = 0x10
COLUMNS = ("time", "subflow", "up", "seq", "ack", "flags", "payload_len", "dss_flags", "dsn",
           "dss_ssn", "dss_len", "mptcp_subtypes")


def _keys(p, subflows: int) -> np.ndarray:
    """Each row's subflow direction (-1: no subflow of the connection)."""
    sub = p["subflow"]
    key = sub.astype(np.int32 if subflows < (1 << 30) else np.int64) - 1
    np.add(key, subflows, out=key, where=~p["up"])
    key[(sub < 1) | (sub > subflows)] = -1
    return key


def _groups(key, count: int) -> list:
    """The rows (ascending) of each key 0 .. ``count`` - 1; rows with other keys are in none."""
    if count <= 8:                       # a few subflow directions: one pass per key
        return [np.flatnonzero(key == g) for g in range(count)]
    key = np.where((key >= 0) & (key < count), key, count).astype(
        np.int16 if count < (1 << 15) else np.int64)      # 16 bits: a radix sort
    order = np.argsort(key, kind="stable")
    bounds = np.cumsum(np.bincount(key, minlength=count + 1))
    return np.split(order, bounds[:count])[:count]


def data_packets(p, subflows: int, isn: list, first_dsn: list) -> dict:
    """A connection's rows (``p``: the columns ``COLUMNS``, capture order) by subflow
    direction. ``isn[key]``: the ISN of each subflow direction (None: unknown, its data left
    out); ``first_dsn``: the DSN of the first data byte of each direction (up, down; None:
    unknown), for data on the MP_CAPABLE ACK.

    Returns arrays in key order (capture order within a key): of the data packets ``index``
    (the row), ``time``, ``rel`` (subflow byte of the first payload byte), ``length``,
    ``end``, ``dsn`` and ``has_dsn`` (its data-level position: its subflow direction's last
    mapping's DSN plus its offset in that mapping, when it falls inside it),
    ``retransmitted`` (no byte of it new on its subflow direction) and ``starts`` (key k's
    rows: ``starts[k]:starts[k + 1]``); of the ACKs ``ack_time``, ``ack`` and
    ``ack_starts``."""
    key = _keys(p, subflows)
    count = 2 * subflows
    rows = _groups(np.where(p["payload_len"] > 0, key, -1), count)
    rows = [r if isn[k] is not None else r[:0] for k, r in enumerate(rows)]
    starts = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    index = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    time, seq = p["time"][index], p["seq"][index]
    length = p["payload_len"][index].astype(np.int64)
    flags, m_len = p["dss_flags"][index], p["dss_len"][index]
    m_dsn, m_ssn = p["dsn"][index], p["dss_ssn"][index]
    rel = seq.astype(np.int64)
    for k in range(count):
        if starts[k + 1] > starts[k]:
            rel[starts[k]:starts[k + 1]] -= isn[k]
    rel &= MASK32
    mapped = (flags != 0xFF) & ((flags & 12) == 12) & (m_len > 0)
    if not mapped.all():
        # the last mapping seen on the row's subflow direction, carried forward: rows as
        # 2 * row + 1 where mapped, a direction's first row as 2 * row when not (a running
        # maximum then never carries a mapping past the start of the next direction)
        last = np.where(mapped, 2 * np.arange(len(index)) + 1, -1)
        for k in range(count):
            if starts[k + 1] > starts[k] and not mapped[starts[k]]:
                last[starts[k]] = 2 * starts[k]
        last = np.maximum.accumulate(last)
        ok = (last & 1) == 1
        source = last >> 1
        m_dsn, m_ssn, m_len = m_dsn[source], m_ssn[source], m_len[source]
        offset = rel - m_ssn                           # into the mapping (int64: exact)
        inside = ok & (offset >= 0) & (offset < m_len)
    else:                                # every row carries its own mapping
        offset = rel - m_ssn
        inside = (offset >= 0) & (offset < m_len)
    dsn = offset.view(np.uint64)                       # the offsets become the DSNs
    np.add(dsn, m_dsn, out=dsn)
    dsn[~inside] = 0
    has = inside
    maybe = np.flatnonzero(~has & (rel == 1))          # MP_CAPABLE with data: no DSS
    if len(maybe):
        mpc = maybe[(p["mptcp_subtypes"][index[maybe]] & 1) != 0]
        for down, first in enumerate(first_dsn):
            block = starts[down * subflows], starts[(down + 1) * subflows]
            if first is not None:
                here = mpc[(mpc >= block[0]) & (mpc < block[1])]
                dsn[here], has[here] = first, True
    end = rel + length
    # a segment no byte of which is new on its subflow direction: a retransmission
    retransmitted = np.zeros(len(end), bool)
    for k in range(count):
        part = slice(starts[k], starts[k + 1])
        before = np.maximum.accumulate(end[part])
        retransmitted[part.start + 1:part.stop] = end[part][1:] <= before[:-1]
    acks = _groups(np.where((p["flags"] & ACK) != 0, key, -1), count)
    ack_rows = np.concatenate(acks) if acks else np.zeros(0, np.int64)
    return {"index": index, "time": time, "rel": rel, "length": length, "end": end,
            "dsn": dsn, "has_dsn": has, "retransmitted": retransmitted, "starts": starts,
            "ack_time": p["time"][ack_rows], "ack": p["ack"][ack_rows],
            "ack_starts": np.concatenate(([0], np.cumsum([len(r) for r in acks]))).astype(
                np.int64)}


def rtt_samples(ack_time, ack, isn: int, sent_time, sent_end, retransmitted) -> np.ndarray:
    """Seq/ack RTT samples (ms) of one subflow direction, in the order of its data packets:
    from each data packet to the first ACK from the other side (``ack_time``, ``ack``:
    capture order) at or after it that covers it; retransmitted packets, and packets no ACK
    covers, have none (Karn)."""
    if not len(ack_time) or not len(sent_time):
        return np.zeros(0)
    ack_rel = (ack.astype(np.int64) - isn - 1) & MASK32
    highest = np.maximum.accumulate(ack_rel)            # an ACK covers everything below it
    after = np.searchsorted(ack_time, sent_time, side="left")
    covering = np.searchsorted(highest, sent_end - 1, side="left")
    k = np.maximum(after, covering, out=after)
    ok = k < len(ack_time)
    ok &= ~retransmitted
    if ok.all():
        return (ack_time[k] - sent_time) * 1000
    return (ack_time[k[ok]] - sent_time[ok]) * 1000


def delivery(dsn, time, length) -> tuple:
    """(delays in ms, bytes, (times, bytes delivered so far), arrival times) of one
    direction, from each data-level piece's first arrival (``dsn``, ``time``, ``length``):
    in DSN order, a piece is delivered once every piece before it arrived (the running
    maximum of the arrival times); pieces covered by earlier ones are left out."""
    if not len(dsn):
        return [], [], (np.zeros(0), np.zeros(0, np.int64)), []
    if len(dsn) > 1 and not np.all(dsn[1:] >= dsn[:-1]):
        order = np.argsort(dsn, kind="stable")
        dsn, time, length = dsn[order], time[order], length[order]
    # relative to the first: 64-bit DSNs do not fit a float, their differences fit an int64
    dsn = (dsn - dsn[0]).view(np.int64)
    end = dsn + length
    before = np.empty_like(end)
    before[0] = dsn[0]
    np.maximum.accumulate(end[:-1], out=before[1:])
    new = end > before                                  # pieces not covered by earlier ones
    if not new.all():
        dsn, time, end, before = dsn[new], time[new], end[new], before[new]
    fresh = end - np.maximum(dsn, before)
    frontier = np.maximum.accumulate(time)
    delays = (frontier - time) * 1000
    # (time, bytes) in order as they are: the frontier never decreases and every piece adds
    # bytes (fresh > 0), so sorting them would leave them where they are
    return delays, fresh, (frontier, np.cumsum(fresh, dtype=np.int64)), time

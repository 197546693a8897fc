"""What happened over time in each connection of an analysed capture: the numbers
behind the pictures, and the pictures.

    series = model_series(model)     # model: model.build_model(path, packets=True)
    series[k]["subflows"][i]["rtt_ms"], ["retransmitted_segments"], ...
    series["delivery_delay_ms"]["up"]      # {"p50", "p90", "p99", "max"}: head-of-line blocking
    plot_connection(series, directory)     # PNGs (matplotlib)

Per data packet the data-level position of its first byte is its mapping's DSN plus its
offset in the mapping (seq - ISN - SSN; RFC 8684 §3.3.1); packets whose DSS carries no
mapping are placed with the last mapping of their subflow direction when they fall inside it.

* Retransmissions (TCP level): a data segment whose subflow bytes were all seen before on
  that subflow direction. Reinjections (data level): a DSN range first seen on another
  subflow; the reinjection delay is the time between the two.
* RTT per subflow direction, from sequence and acknowledgement numbers: the time from a data
  segment to the first ACK from the other side that covers it, retransmitted segments left
  out (Karn). Measured where the capture was taken: on a client's capture the client's data
  gives path RTTs, the server's data the client's ACK delay.
* Delivery delay: from a byte's first arrival on any subflow to its in-order delivery at the
  data level, i.e. when every byte before it has arrived (the head-of-line blocking that
  multipath adds), per direction, weighted by bytes.
"""

from __future__ import annotations

import numpy as np

from ..wire import crypto
from .figures import PlotError

__all__ = ["model_series", "connection_series", "all_series", "plot_connection", "PlotError"]

MASK32 = (1 << 32) - 1


def _percentiles(values, weights=None) -> dict | None:
    if not len(values):
        return None
    values = np.asarray(values, dtype=float)
    quantiles = (0.5, 0.9, 0.99)
    if weights is None:
        # equal weights: the cumulative shares do not depend on the order, so each
        # percentile is one order statistic (np.partition: no full sort)
        cum = np.cumsum(np.ones(len(values))) / len(values)
        ks = [min(int(np.searchsorted(cum, q)), len(values) - 1) for q in quantiles]
        chosen = np.partition(values, ks)[ks]
        p50, p90, p99 = (float(x) for x in chosen)
        return {"min": float(values.min()), "p50": p50, "p90": p90, "p99": p99,
                "max": float(values.max())}
    v, w = _sorted_with_lowest_merged(values, np.asarray(weights, dtype=float))
    cum = np.cumsum(w) / w.sum()
    pick = lambda q: float(v[min(np.searchsorted(cum, q), len(v) - 1)])     # noqa: E731
    return {"min": float(v[0]), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": float(v[-1])}


def _sorted_with_lowest_merged(values, weights) -> tuple:
    """``values`` in order with their ``weights``, the lowest value once with the sum of its
    weights (most delivery delays are 0: only the others are sorted). The percentiles are
    those of the full sort: the cumulative weights at the end of each run of equal values
    are the same (sums of whole numbers of bytes, exact in a float)."""
    lowest = values.min()
    at_lowest = values == lowest
    others = np.flatnonzero(~at_lowest)
    others = others[np.argsort(values[others])]
    return (np.concatenate(([lowest], values[others])),
            np.concatenate(([weights[at_lowest].sum()], weights[others])))


DATA, RETRANSMISSION, REINJECTION = 0, 1, 2          # kinds of data segment


def _facts_of_report(conn) -> dict:
    """What the series need of a connection, from the report's text (hex keys)."""
    first_dsn = {}                       # RFC 8684 §3.1: the MP_CAPABLE data is at IDSN + 1
    for name, key in (("up", conn["client_key"]), ("down", conn["server_key"])):
        if key is not None:
            first_dsn[name] = (crypto.key_idsn(int(key, 16), conn["version"]) + 1) \
                & ((1 << 64) - 1)
    return {"first_dsn": first_dsn, "isn": [s["isn"] for s in conn["subflows"]],
            "endpoints": [(s["client"], s["server"]) for s in conn["subflows"]]}


def _facts_of_model(conn) -> dict:
    """The same from the analyzer's Connection (keys as integers, no text to parse)."""
    from .analyzer import DIRECTIONS, _endpoint
    first_dsn = {}
    for name, key in zip(DIRECTIONS, (conn.client_key, conn.server_key)):
        if key is not None:
            first_dsn[name] = (crypto.key_idsn(key, conn.version) + 1) & ((1 << 64) - 1)
    return {"first_dsn": first_dsn,
            "isn": [{d: s.isn.get(d) for d in DIRECTIONS} for s in conn.subflows],
            "endpoints": [(_endpoint(*s.client), _endpoint(*s.server)) for s in conn.subflows]}


def _up(packets):
    """The per-packet direction as booleans (True: from the client)."""
    if "up" in packets:
        return packets["up"]
    return packets["direction"] == "up"


def _rows_of(packets, number) -> dict:
    """The columns the series use, for connection ``number``'s rows only (capture order)."""
    rows = np.nonzero(packets["connection"] == number)[0]
    return _take(packets, rows)


_SERIES_COLUMNS = ("time", "subflow", "seq", "ack", "flags", "payload_len", "dss_flags", "dsn",
                   "dss_ssn", "dss_len", "mptcp_subtypes")


def _take(packets, rows) -> dict:
    out = {name: packets[name][rows] for name in _SERIES_COLUMNS}
    out["up"] = _up(packets)[rows]
    return out


def _data_packets(facts, p) -> dict:
    """The data packets of one connection (``p``: its rows) in capture order, as arrays: time,
    subflow, up (bool), rel (subflow byte of the first payload byte), length, dsn and
    has_dsn."""
    rows = np.nonzero(p["payload_len"] > 0)[0]
    sub = p["subflow"][rows].astype(np.int64)
    up = p["up"][rows]
    first_dsn = facts["first_dsn"]
    # the ISN of each subflow direction (2 * subflow + down; -1: not known, as is the last
    # entry, where subflows beyond the connection's would go), looked up
    by_direction = np.full(2 * len(facts["isn"]) + 3, -1, np.int64)
    for i, s in enumerate(facts["isn"], 1):
        for down, name in enumerate(("up", "down")):
            if s[name] is not None:
                by_direction[2 * i + down] = s[name]
    isn = by_direction[np.minimum(2 * sub + ~up, len(by_direction) - 1)] if len(sub) else \
        np.zeros(0, np.int64)
    keep = isn >= 0
    rows, sub, up, isn = rows[keep], sub[keep], up[keep], isn[keep]
    rel = (p["seq"][rows].astype(np.int64) - isn) & MASK32
    length = p["payload_len"][rows].astype(np.int64)
    flags = p["dss_flags"][rows]
    mapped = (flags != 0xFF) & ((flags & 12) == 12) & (p["dss_len"][rows] > 0)
    m_dsn = p["dsn"][rows]
    m_ssn = p["dss_ssn"][rows].astype(np.int64)
    m_len = p["dss_len"][rows].astype(np.int64)
    dsn = np.zeros(len(rows), np.uint64)
    has = np.zeros(len(rows), bool)
    group = sub * 2 + up                               # one subflow direction
    for g in np.flatnonzero(np.bincount(group)):
        at = np.nonzero(group == g)[0]
        # the last mapping seen on this subflow direction, carried forward (forward fill)
        last = np.where(mapped[at], np.arange(len(at)), -1)
        last = np.maximum.accumulate(last)
        ok = last >= 0
        src = at[np.where(ok, last, 0)]
        inside = ok & (m_ssn[src] <= rel[at]) & (rel[at] < m_ssn[src] + m_len[src])
        dsn[at[inside]] = m_dsn[src[inside]] + (rel[at[inside]] - m_ssn[src[inside]]).astype(
            np.uint64)
        has[at[inside]] = True
    subtypes = p["mptcp_subtypes"][rows]
    for name, mask in (("up", up), ("down", ~up)):     # MP_CAPABLE with data: no DSS
        if name in first_dsn:
            mpc = mask & ~has & (rel == 1) & ((subtypes & 1) != 0)
            dsn[mpc], has[mpc] = first_dsn[name], True
    return {"time": p["time"][rows], "sub": sub, "up": up, "rel": rel, "length": length,
            "dsn": dsn, "has_dsn": has}


def connection_series(report, packets, number: int) -> dict:
    """The time series and figures of connection ``number`` (see the module text), from the
    report and the per-packet columns (``tables.packet_arrays``, or a ``PacketTable``)."""
    conn = next(c for c in report["connections"] if c["connection"] == number)
    return _series(_facts_of_report(conn), _rows_of(packets, number), number)


def model_series(model, delivery_pairs: bool = True) -> list:
    """``connection_series`` of every connection of a model built with ``packets=True``
    (``model.build_model``): from its typed connections and its per-packet table. Without
    ``delivery_pairs``, each ``delivery`` is a (times, bytes) pair of arrays instead of a list
    of (time, bytes) (what the figures read, without a million tuples)."""
    return list(each_model_series(model, delivery_pairs))


def each_model_series(model, delivery_pairs: bool = True):
    """``model_series`` one connection at a time (a generator): what is made of a
    connection's series can start before the next one's are computed."""
    packets = model.packets
    connection = packets["connection"]
    order = np.argsort(connection, kind="stable")      # each connection's rows, in order
    numbers = [c.number for c in model.connections]
    bounds = np.searchsorted(connection[order], numbers + [max(numbers, default=0) + 1])
    for k, conn in enumerate(model.connections):
        if bounds[k + 1] - bounds[k] == len(order):
            rows = slice(None)                         # one connection: every row
        else:
            rows = order[bounds[k]:bounds[k + 1]]
        yield _series(_facts_of_model(conn), _take(packets, rows), conn.number,
                      delivery_pairs)


def _series(facts, p, number: int, delivery_pairs: bool = True) -> dict:
    """One connection's series; ``delivery`` as [(time, bytes)] lists, or (``delivery_pairs``
    false, for the figures of ``analyze``) as (times, bytes) arrays."""
    d = _data_packets(facts, p)
    t0 = float(p["time"].min()) if len(d["time"]) else 0.0
    n = len(d["time"])
    end = d["rel"] + d["length"]
    retransmitted = np.zeros(n, bool)
    group = d["sub"] * 2 + d["up"]
    for g in np.flatnonzero(np.bincount(group)):       # a segment no byte of which is new
        at = np.nonzero(group == g)[0]
        before = np.concatenate([[-1], np.maximum.accumulate(end[at])[:-1]])
        retransmitted[at] = end[at] <= before
    kind = np.where(retransmitted, RETRANSMISSION, DATA).astype(np.int8)
    reinjection_delays, delivery = {}, {}
    for name, mask in (("up", d["up"]), ("down", ~d["up"])):
        at = np.nonzero(mask & d["has_dsn"])[0]
        values, first, index = np.unique(d["dsn"][at], return_index=True,
                                         return_inverse=True)
        first_row = at[first]
        # a DSN carried again on another subflow, not a TCP retransmission: a reinjection
        origin = first_row[index.reshape(-1)]
        again = (origin != at) & (d["sub"][origin] != d["sub"][at]) & ~retransmitted[at]
        kind[at[again]] = REINJECTION
        reinjection_delays[name] = _percentiles((d["time"][at[again]] - d["time"][origin[again]])
                                                * 1000)
        delivery[name] = _delivery(values, d["time"][first_row], d["length"][first_row])
    subflows = []
    for i, (isn, (client, server)) in enumerate(zip(facts["isn"], facts["endpoints"]), 1):
        entry = {"subflow": i, "client": client, "server": server,
                 "retransmitted_segments": {}, "rtt_ms": {}, "samples": {}}
        for name, mask in (("up", d["up"]), ("down", ~d["up"])):
            at = np.nonzero(mask & (d["sub"] == i))[0]
            entry["retransmitted_segments"][name] = int(retransmitted[at].sum())
            entry["samples"][name] = {"time": d["time"][at] - t0, "dsn": d["dsn"][at],
                                      "has_dsn": d["has_dsn"][at], "length": d["length"][at],
                                      "kind": kind[at]}
            entry["rtt_ms"][name] = _rtt(p, i, name, isn[name],
                                         d["time"][at], end[at], retransmitted[at])
        subflows.append(entry)
    return {
        "connection": number, "start_time": t0, "subflows": subflows,
        "delivery_delay_ms": {k: _percentiles(v[0], v[1]) for k, v in delivery.items()},
        "reinjection_delay_ms": reinjection_delays,
        "delivery": {k: _pairs(v[2]) if delivery_pairs else v[2] for k, v in delivery.items()},
        "delay_points": {k: (np.asarray(v[3]) - t0, np.asarray(v[0]))
                         for k, v in delivery.items()},      # (arrival time, delay ms)
    }


def _rtt(p, subflow, name, isn, sent_time, sent_end, retransmitted):
    """Seq/ack RTT samples of one subflow direction: from each data segment to the first ACK
    from the other side at or after it that covers it (Karn: retransmitted ones skipped)."""
    if isn is None or not len(sent_time):
        return None
    from_other = ~p["up"] if name == "up" else p["up"]
    acks = (p["subflow"] == subflow) & from_other & ((p["flags"] & 0x10) != 0)
    ack_time = p["time"][acks]
    if not len(ack_time):
        return None
    ack_rel = (p["ack"][acks].astype(np.int64) - isn - 1) & MASK32
    highest = np.maximum.accumulate(ack_rel)            # an ACK covers everything below it
    after = np.searchsorted(ack_time, sent_time, side="left")
    covering = np.searchsorted(highest, sent_end - 1, side="left")
    k = np.maximum(after, covering)
    ok = ~retransmitted & (k < len(ack_time))
    return _percentiles((ack_time[k[ok]] - sent_time[ok]) * 1000)


def _delivery(dsn, time, length) -> tuple:
    """(delays in ms, bytes, (times, bytes delivered so far), arrival times) of one
    direction, from each data-level piece's first arrival: in DSN order, a piece is delivered
    once every piece before it arrived (the running maximum of the arrival times)."""
    if not len(dsn):
        return [], [], (np.zeros(0), np.zeros(0, np.int64)), []
    if len(dsn) > 1 and np.all(dsn[1:] >= dsn[:-1]):
        order = np.arange(len(dsn))      # already in order (np.unique's values): no sort
    else:
        order = np.argsort(dsn, kind="stable")
    # relative to the first: 64-bit DSNs do not fit a float, their differences fit an int64
    dsn = (dsn[order] - dsn[order][0]).astype(np.int64)
    time, length = time[order], length[order]
    end = dsn + length
    before = np.concatenate([[dsn[0]], np.maximum.accumulate(end)[:-1]])
    new = end > before                                  # pieces not covered by earlier ones
    dsn, time, end, before = dsn[new], time[new], end[new], before[new]
    fresh = end - np.maximum(dsn, before)
    frontier = np.maximum.accumulate(time)
    delays = (frontier - time) * 1000
    # (time, bytes) in order as they are: the frontier never decreases and every piece adds
    # bytes (fresh > 0), so sorting them would leave them where they are
    return delays, fresh, (frontier, np.cumsum(fresh).astype(np.int64)), time


def _delivery_delays(first_at) -> tuple:
    """(delays, bytes, delivered) of ``_delivery`` for a {dsn: (time, subflow, length)}."""
    items = sorted(first_at.items())
    delays, fresh, delivered, _ = _delivery(np.array([k for k, _ in items], np.uint64),
                                            np.array([v[0] for _, v in items], float),
                                            np.array([v[2] for _, v in items], np.int64))
    return delays, fresh, _pairs(delivered)


def _pairs(delivered) -> list:
    """[(time, bytes delivered so far)] from the arrays of ``_delivery``."""
    times, total = delivered
    return list(zip(times.tolist(), total.tolist()))


def all_series(report, capture_path) -> list:
    """``connection_series`` of every connection of ``report`` (the analysis of the file at
    ``capture_path``, analysed again here with its per-packet table: with a model at hand,
    ``model_series`` reads nothing)."""
    from .tables import packet_arrays
    packets = packet_arrays(report, capture_path)
    return [connection_series(report, packets, c["connection"]) for c in report["connections"]]


def summary(series) -> dict:
    """The numbers for the report (no samples)."""
    return {"connection": series["connection"],
            "subflows": [{"subflow": s["subflow"], "client": s["client"], "server": s["server"],
                          "rtt_ms": s["rtt_ms"],
                          "retransmitted_segments": s["retransmitted_segments"]}
                         for s in series["subflows"]],
            "delivery_delay_ms": series["delivery_delay_ms"],
            "reinjection_delay_ms": series["reinjection_delay_ms"]}


def plot_connection(series, directory) -> list:
    """Three PNGs for one connection into ``directory``: the sequence graph (data-level
    position against time per subflow, retransmissions and reinjections marked), throughput
    per subflow over time, and the delivery delay over time. Returns their paths. Each series
    is reduced to what the figure's pixels can show first (``figures.figure_data``)."""
    from . import figures
    return figures.draw(figures.figure_data(series), directory)

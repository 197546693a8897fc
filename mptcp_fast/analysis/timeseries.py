"""What happened over time in each connection of an analysed capture: the numbers
behind the pictures, and the pictures.

    series = model_series(model)     # model: model.build_model(path, packets=True)
    series[k]["subflows"][i]["rtt_ms"], ["retransmitted_segments"], ...
    series["delivery_delay_ms"]["up"]      # {"p50", "p90", "p99", "max"}: head-of-line blocking
    plot_connection(series, directory)     # PNGs (figures.draw)

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
* Gaps: bytes of a stream the capture never had (the analyzer's, ``series["gaps"]``: their
  count, the bytes missing and the first ones listed). The delivery goes on past them, as the
  rebuilt stream does: its last value is the report's rebuilt bytes. Linux's zero-window
  probes (one byte mapped at a DSN already acknowledged, carrying another byte: the analyzer
  names their packets) are no data there.

The passes over each packet (placing data packets, matching them with ACKs, following the
delivery) are the twins ``_series_py`` (numpy) and ``_series_c`` (C loops).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..wire import crypto
from .figures import PlotError

__all__ = ["model_series", "connection_series", "all_series", "plot_connection", "PlotError"]


def _percentiles(values, weights=None) -> dict | None:
    if not len(values):
        return None
    values = np.asarray(values, dtype=float)
    quantiles = (0.5, 0.9, 0.99)
    if weights is None:
        # equal weights: the cumulative shares do not depend on the order, so each
        # percentile is one order statistic (np.partition: no full sort)
        ks = [_rank(q, len(values)) for q in quantiles]
        chosen = np.partition(values, ks)[ks]
        p50, p90, p99 = (float(x) for x in chosen)
        return {"min": float(values.min()), "p50": p50, "p90": p90, "p99": p99,
                "max": float(values.max())}
    v, w = _sorted_with_lowest_merged(values, np.asarray(weights, dtype=float))
    cum = np.cumsum(w) / w.sum()
    pick = lambda q: float(v[min(np.searchsorted(cum, q), len(v) - 1)])     # noqa: E731
    return {"min": float(v[0]), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": float(v[-1])}


def _rank(q: float, n: int) -> int:
    """The order statistic of quantile ``q`` of ``n`` equally weighted values: the first
    i whose cumulative share (i + 1) / n, a float division, reaches ``q`` (the searchsorted
    of the cumulative shares, without making them); n - 1 when none does."""
    count = np.float64(n)
    for i in range(max(int(q * n) - 2, 0), n):
        if np.float64(i + 1) / count >= q:
            return i
    return n - 1


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
            "endpoints": [(s["client"], s["server"]) for s in conn["subflows"]],
            "gaps": {name: {"count": st["gap_count"], "missing_bytes": st["missing_bytes"],
                            "listed": st["gaps"]} for name, st in conn["streams"].items()},
            "probes": [n for st in conn["streams"].values()
                       for n in st["zero_window_probe_packets"]]}


def _facts_of_model(conn) -> dict:
    """The same from the analyzer's Connection (keys as integers, no text to parse)."""
    from .analyzer import DIRECTIONS, _endpoint
    first_dsn = {}
    for name, key in zip(DIRECTIONS, (conn.client_key, conn.server_key)):
        if key is not None:
            first_dsn[name] = (crypto.key_idsn(key, conn.version) + 1) & ((1 << 64) - 1)
    return {"first_dsn": first_dsn,
            "isn": [{d: s.isn.get(d) for d in DIRECTIONS} for s in conn.subflows],
            "endpoints": [(_endpoint(*s.client), _endpoint(*s.server)) for s in conn.subflows],
            "gaps": {name: {"count": d.gap_count, "missing_bytes": d.missing_bytes,
                            "listed": d.gaps} for name, d in conn.streams.items()},
            "probes": [n for d in conn.streams.values() for n in d.probe_packets]}


def _up(packets):
    """The per-packet direction as booleans (True: from the client)."""
    if "up" in packets:
        return packets["up"]
    return packets["direction"] == "up"


def _rows_of(packets, number, probes=()) -> dict:
    """The columns the series use, for connection ``number``'s rows only (capture order)."""
    rows = np.nonzero(packets["connection"] == number)[0]
    return _take(packets, rows, probes)


_SERIES_COLUMNS = ("time", "subflow", "seq", "ack", "flags", "payload_len", "dss_flags", "dsn",
                   "dss_ssn", "dss_len", "mptcp_subtypes")


def _take(packets, rows, probes=()) -> dict:
    """The series' columns of ``rows``; ``probe``: whether each is one of the zero-window
    probes the analyzer set aside (packet numbers ``probes``), when there are any."""
    out = {name: packets[name][rows] for name in _SERIES_COLUMNS}
    out["up"] = _up(packets)[rows]
    if len(probes):
        out["probe"] = np.isin(packets["number"][rows], np.asarray(probes, np.int64))
    return out


def _data_packets(facts, p) -> dict:
    """The data packets of one connection (``p``: its columns, capture order) whose subflow
    direction's ISN is known, and its ACKs, by subflow direction (``_series_*.data_packets``:
    directions first, capture order within each), with ``parts`` {(subflow, name): slice of
    the data arrays} and ``blocks`` {name: slice} (each direction's rows, one block)."""
    subflows = len(facts["isn"])
    names = ("up", "down")
    isn = [facts["isn"][i][name] for name in names for i in range(subflows)]
    d = _impl.data_packets(p, subflows, isn, [facts["first_dsn"].get(name) for name in names])
    starts, parts, blocks = d["starts"].tolist(), {}, {}
    for down, name in enumerate(names):
        for i in range(1, subflows + 1):
            key = down * subflows + i - 1
            if starts[key + 1] > starts[key]:
                parts[(i, name)] = slice(starts[key], starts[key + 1])
        blocks[name] = slice(starts[down * subflows], starts[(down + 1) * subflows])
    d["parts"], d["blocks"] = parts, blocks
    if "probe" in p:                       # a zero-window probe: no data at its DSN
        probe = p["probe"][d["index"]]
        d["has_dsn"][probe] = False
        d["dsn"][probe] = 0
    return d


def connection_series(report, packets, number: int) -> dict:
    """The time series and figures of connection ``number`` (see the module text), from the
    report and the per-packet columns (``tables.packet_arrays``, or a ``PacketTable``)."""
    conn = next(c for c in report["connections"] if c["connection"] == number)
    facts = _facts_of_report(conn)
    return _series(facts, _rows_of(packets, number, facts["probes"]), number)


def model_series(model, delivery_pairs: bool = True) -> list:
    """``connection_series`` of every connection of a model built with ``packets=True``
    (``model.build_model``): from its typed connections and its per-packet table. Without
    ``delivery_pairs``, each ``delivery`` is a (times, bytes) pair of arrays instead of a list
    of (time, bytes) (what the figures read, without a million tuples)."""
    return list(each_model_series(model, delivery_pairs))


def each_model_series(model, delivery_pairs: bool = True, ready=None):
    """``model_series`` one connection at a time (a generator): what is made of a
    connection's series can start before the next one's are computed. ``ready(figure,
    series)`` is called as each figure's part of a connection's series is made (the
    ``figures.FIGURES``, in the order "throughput", "sequence", "delivery"; ``series`` holds
    what ``figures.figure_data`` reads for it), before the rest is computed."""
    packets = model.packets
    connection = packets["connection"]
    order = np.argsort(connection, kind="stable")      # each connection's rows, in order
    numbers = [c.number for c in model.connections]
    bounds = np.searchsorted(connection[order], numbers + [max(numbers, default=0) + 1])
    for k, conn in enumerate(model.connections):
        if bounds[k + 1] - bounds[k] == len(order):
            rows: slice | np.ndarray = slice(None)     # one connection: every row
        else:
            rows = order[bounds[k]:bounds[k + 1]]
        facts = _facts_of_model(conn)
        yield _series(facts, _take(packets, rows, facts["probes"]), conn.number,
                      delivery_pairs, ready)


def _series(facts, p, number: int, delivery_pairs: bool = True, ready=None) -> dict:
    """One connection's series; ``delivery`` as [(time, bytes)] lists, or (``delivery_pairs``
    false, for the figures of ``analyze``) as (times, bytes) arrays. ``ready``: see
    ``each_model_series`` (the RTTs, which no figure shows, come last)."""
    d = _data_packets(facts, p)
    t0 = float(p["time"].min()) if len(d["time"]) else 0.0
    retransmitted = d["retransmitted"]
    kind = retransmitted.astype(np.int8)               # DATA (0) or RETRANSMISSION (1)
    subflows = []
    for i, (client, server) in enumerate(facts["endpoints"], 1):
        entry = {"subflow": i, "client": client, "server": server,
                 "retransmitted_segments": {}, "rtt_ms": {}, "samples": {}}
        for name in ("up", "down"):
            part = d["parts"].get((i, name), slice(0, 0))
            entry["retransmitted_segments"][name] = int(np.count_nonzero(retransmitted[part]))
            # views: the reinjections are marked in ``kind`` below
            entry["samples"][name] = {"time": d["time"][part] - t0, "dsn": d["dsn"][part],
                                      "has_dsn": d["has_dsn"][part],
                                      "length": d["length"][part], "kind": kind[part]}
        subflows.append(entry)
    series = {"connection": number, "start_time": t0, "subflows": subflows,
              "gaps": facts["gaps"]}
    if ready is not None:
        ready("throughput", series)
    reinjection_delays, delivery = {}, {}
    for name, block in d["blocks"].items():
        reinjection_delays[name], delivery[name] = _reinjections(d, block, retransmitted, kind)
    if ready is not None:
        ready("sequence", series)
    series["delivery_delay_ms"] = {k: _percentiles(v[0], v[1]) for k, v in delivery.items()}
    series["reinjection_delay_ms"] = reinjection_delays
    series["delivery"] = {k: _pairs(v[2]) if delivery_pairs else v[2]
                          for k, v in delivery.items()}
    series["delay_points"] = {k: (np.asarray(v[3]) - t0, np.asarray(v[0]))
                              for k, v in delivery.items()}      # (arrival time, delay ms)
    if ready is not None:
        ready("delivery", series)
    for i, (isn, entry) in enumerate(zip(facts["isn"], subflows), 1):
        for down, name in enumerate(("up", "down")):
            entry["rtt_ms"][name] = _rtt(d, i, down, isn[name], len(subflows))
    return series


def _reinjections(d, block, retransmitted, kind) -> tuple:
    """(reinjection delays, ``_delivery``) of one direction (``block`` of the data arrays);
    marks its reinjections in ``kind``. A DSN carried again on another subflow, not a TCP
    retransmission, is a reinjection of the first packet that carried it (in capture order);
    each DSN's first packet is its data-level piece's first arrival."""
    has = d["has_dsn"][block]
    if has.all():
        rows, dsn = None, d["dsn"][block]
    else:
        rows = np.flatnonzero(has) + block.start
        dsn = d["dsn"][rows]
    order = np.argsort(dsn, kind="stable")             # few runs: one per subflow
    ordered = dsn[order]
    by_row = order + block.start if rows is None else rows[order]    # data rows, DSN order
    new = np.empty(len(ordered), bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    if new.all():                                      # no DSN carried twice
        return None, _delivery(ordered, d["time"][by_row], d["length"][by_row])
    starts = np.flatnonzero(new)
    first = by_row[starts]
    # the packets of DSNs carried more than once (few): the rows are in capture order within
    # each subflow direction only, so each such DSN's first packet is the one earliest in the
    # capture (``index``: the packet's row in the connection, unique and in capture order)
    repeated = ~new                                    # positions in DSN order, by run:
    repeated[:-1] |= repeated[1:]                      # each repeat and the one before it
    members = np.flatnonzero(repeated)
    run = np.searchsorted(starts, members, side="right") - 1
    row = by_row[members]
    capture_row = d["index"][row]
    bounds = np.flatnonzero(new[members])
    earliest = np.minimum.reduceat(capture_row, bounds)
    sizes = np.diff(np.append(bounds, len(members)))
    runs = run[bounds]
    first[runs] = row[capture_row == np.repeat(earliest, sizes)]
    origin = first[run]
    subflow_of = _subflow_of(d["parts"])
    carried = (origin != row) & ~retransmitted[row]
    carried[carried] = subflow_of(origin[carried]) != subflow_of(row[carried])
    kind[row[carried]] = REINJECTION
    delays = (d["time"][row[carried]] - d["time"][origin[carried]]) * 1000
    return (_percentiles(delays),
            _delivery(ordered[new], d["time"][first], d["length"][first]))


def _subflow_of(parts):
    """A function: the subflow of rows of the data arrays."""
    ordered = sorted((part.start, i) for (i, _), part in parts.items())
    starts = np.array([s for s, _ in ordered], np.int64)
    numbers = np.array([i for _, i in ordered], np.int64)
    return lambda rows: numbers[np.searchsorted(starts, rows, side="right") - 1]


def _rtt(d, subflow: int, down: int, isn, subflows: int):
    """Seq/ack RTT percentiles of one subflow direction (``_series_*.rtt_samples``): from each
    data segment to the first ACK from the other side at or after it that covers it (Karn:
    retransmitted ones skipped); None without samples."""
    part = d["parts"].get((subflow, ("up", "down")[down]))
    if isn is None or part is None:
        return None
    acks = (subflow - 1) + (1 - down) * subflows         # from the other side
    replies = slice(d["ack_starts"][acks], d["ack_starts"][acks + 1])
    return _percentiles(_impl.rtt_samples(d["ack_time"][replies], d["ack"][replies], isn,
                                          d["time"][part], d["end"][part],
                                          d["retransmitted"][part]))


def _delivery(dsn, time, length) -> tuple:
    """(delays in ms, bytes, (times, bytes delivered so far), arrival times) of one
    direction, from each data-level piece's first arrival (``_series_*.delivery``)."""
    return _impl.delivery(dsn, time, length)


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


def plot_connection(series, directory, style: str = "builtin") -> list:
    """Three PNGs for one connection into ``directory``: the sequence graph (data-level
    position against time per subflow, retransmissions and reinjections marked), throughput
    per subflow over time, and the delivery delay over time. Returns their paths. Each series
    is reduced to what the figure's pixels can show first (``figures.figure_data``), then
    drawn in ``style`` ("builtin", or "matplotlib": ``figures.draw``)."""
    from . import figures
    return figures.draw(figures.figure_data(series), directory, style)


_impl: Any = None


def _bind(impl) -> None:
    global _impl
    _impl = impl


from .. import _backend as _backend_module  # noqa: E402

_backend_module.register(__name__, "_series", _bind)

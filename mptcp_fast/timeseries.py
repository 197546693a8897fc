"""What happened over time in each connection of an analysed capture (issue #14): the numbers
behind the pictures, and the pictures.

    series = connection_series(report, packets, number)     # packets: tables.packet_arrays
    series["subflows"][i]["rtt_ms"], ["retransmitted_segments"], ...
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

import os

import numpy as np

from . import crypto

__all__ = ["connection_series", "all_series", "plot_connection", "PlotError"]

MASK32 = (1 << 32) - 1


class PlotError(RuntimeError):
    """Plots were asked for without matplotlib."""


def _percentiles(values, weights=None) -> dict | None:
    if not len(values):
        return None
    values = np.asarray(values, dtype=float)
    if weights is None:
        weights = np.ones(len(values))
    order = np.argsort(values)
    v, w = values[order], np.asarray(weights, dtype=float)[order]
    cum = np.cumsum(w) / w.sum()
    pick = lambda q: float(v[min(np.searchsorted(cum, q), len(v) - 1)])     # noqa: E731
    return {"min": float(v[0]), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": float(v[-1])}


def _data_packets(report_conn, packets, number):
    """Per data packet of connection ``number``: (time, subflow, direction, seq rel, length,
    dsn of its first byte or None)."""
    isn = {(i, d): s["isn"][d] for i, s in enumerate(report_conn["subflows"], 1)
           for d in ("up", "down")}
    mine = (packets["connection"] == number) & (packets["payload_len"] > 0)
    rows = np.nonzero(mine)[0]
    first_dsn = {}                       # RFC 8684 §3.1: the MP_CAPABLE data is at IDSN + 1
    for direction, key in (("up", report_conn["client_key"]), ("down", report_conn["server_key"])):
        if key is not None:
            first_dsn[direction] = (crypto.key_idsn(int(key, 16), report_conn["version"]) + 1) \
                & ((1 << 64) - 1)
    last_mapping = {}
    out = []
    for r in rows:
        sub, direction = int(packets["subflow"][r]), packets["direction"][r]
        base = isn.get((sub, direction))
        if base is None:
            continue
        rel = (int(packets["seq"][r]) - base) & MASK32
        length = int(packets["payload_len"][r])
        flags = int(packets["dss_flags"][r])
        dsn = None
        if flags != 0xFF and flags & 4 and flags & 8 and packets["dss_len"][r]:
            mapping = (int(packets["dsn"][r]), int(packets["dss_ssn"][r]),
                       int(packets["dss_len"][r]))
            last_mapping[(sub, direction)] = mapping
        mapping = last_mapping.get((sub, direction))
        if mapping is not None and mapping[1] <= rel < mapping[1] + mapping[2]:
            dsn = mapping[0] + rel - mapping[1]
        elif rel == 1 and int(packets["mptcp_subtypes"][r]) & 1 and direction in first_dsn:
            dsn = first_dsn[direction]             # MP_CAPABLE with data, no DSS
        out.append((float(packets["time"][r]), sub, direction, rel, length, dsn))
    return out


def connection_series(report, packets, number: int) -> dict:
    """The time series and figures of connection ``number`` (see the module text)."""
    conn = next(c for c in report["connections"] if c["connection"] == number)
    data = _data_packets(conn, packets, number)
    t0 = float(packets["time"][packets["connection"] == number].min()) if len(data) else 0.0
    subflows = {}
    for i, s in enumerate(conn["subflows"], 1):
        subflows[i] = {"subflow": i, "client": s["client"], "server": s["server"],
                       "retransmitted_segments": {"up": 0, "down": 0},
                       "rtt_ms": {"up": None, "down": None},
                       "samples": {"up": [], "down": []}}     # (time, dsn, length, kind)
    seen = {}                           # (subflow, direction) -> highest subflow byte seen
    first_at = {"up": {}, "down": {}}   # dsn -> (time, subflow) of its first arrival
    reinjection_delays = {"up": [], "down": []}
    sent_at = {}                        # (subflow, direction) -> [(end rel, time, retransmitted)]
    for time, sub, direction, rel, length, dsn in data:
        key = (sub, direction)
        end = rel + length
        retransmitted = key in seen and end <= seen[key]
        if retransmitted:
            subflows[sub]["retransmitted_segments"][direction] += 1
        seen[key] = max(seen.get(key, 0), end)
        sent_at.setdefault(key, []).append((end, time, retransmitted))
        kind = "retransmission" if retransmitted else "data"
        if dsn is not None:
            first = first_at[direction].get(dsn)
            if first is None:
                first_at[direction][dsn] = (time, sub, length)
            elif first[1] != sub and not retransmitted:
                kind = "reinjection"
                reinjection_delays[direction].append(time - first[0])
        subflows[sub]["samples"][direction].append((time - t0, dsn, length, kind))
    _rtts(conn, packets, number, sent_at, subflows)
    delays = {d: _delivery_delays(first_at[d]) for d in ("up", "down")}
    return {
        "connection": number, "start_time": t0,
        "subflows": list(subflows.values()),
        "delivery_delay_ms": {d: _percentiles(delays[d][0], delays[d][1]) for d in ("up", "down")},
        "reinjection_delay_ms": {d: _percentiles(np.array(v) * 1000)
                                 for d, v in reinjection_delays.items()},
        "delivery": {d: delays[d][2] for d in ("up", "down")},
    }


def _rtts(conn, packets, number, sent_at, subflows) -> None:
    """Seq/ack RTT samples per subflow direction (Karn: retransmitted segments skipped)."""
    for i, s in enumerate(conn["subflows"], 1):
        for direction, other in (("up", "down"), ("down", "up")):
            sent = sent_at.get((i, direction))
            base = s["isn"].get(direction)
            if not sent or base is None:
                continue
            acks = (packets["connection"] == number) & (packets["subflow"] == i) & \
                (packets["direction"] == other) & ((packets["flags"] & 0x10) != 0)
            ack_time = packets["time"][acks]
            ack_rel = (packets["ack"][acks].astype(np.int64) - base - 1) & MASK32
            samples = []
            j = 0
            highest = np.maximum.accumulate(ack_rel) if len(ack_rel) else ack_rel
            for end, time, retransmitted in sent:
                while j < len(ack_time) and ack_time[j] < time:
                    j += 1
                if retransmitted or j >= len(ack_time):
                    continue
                k = j + int(np.searchsorted(highest[j:], end - 1, side="left"))
                if k < len(ack_time):
                    samples.append((ack_time[k] - time) * 1000)
            subflows[i]["rtt_ms"][direction] = _percentiles(samples)


def _delivery_delays(first_at) -> tuple:
    """(delays in ms, bytes, [(time, delivered bytes)]) of one direction: walk the arrivals
    in DSN order; a byte is delivered when every byte before it has arrived."""
    if not first_at:
        return [], [], []
    items = sorted(first_at.items())               # (dsn, (time, subflow, length))
    delays, weights, delivered = [], [], []
    frontier_time = items[0][1][0]
    position, total = items[0][0], 0
    for dsn, (time, _, length) in items:
        if dsn + length <= position:
            continue
        frontier_time = max(frontier_time, time)   # in order once everything before came
        delays.append((frontier_time - time) * 1000)
        weights.append(length)
        position = max(position, dsn + length)
        total += length
        delivered.append((frontier_time, total))
    delivered.sort()
    return delays, weights, delivered


def all_series(report, capture_path) -> list:
    """``connection_series`` of every connection of ``report`` (the analysis of the file)."""
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
    per subflow over time, and the delivery delay over time. Returns their paths."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'mptcp_fast[plot]'") from None
    os.makedirs(directory, exist_ok=True)
    number = series["connection"]
    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # 1. the sequence graph
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    for ax, direction, label in ((axes[0][0], "up", "client -> server"),
                                 (axes[0][1], "down", "server -> client")):
        base = None
        for s in series["subflows"]:
            pts = [p for p in s["samples"][direction] if p[1] is not None]
            if pts and (base is None or min(p[1] for p in pts) < base):
                base = min(p[1] for p in pts)
        for k, s in enumerate(series["subflows"]):
            color = colors[k % len(colors)]
            pts = [p for p in s["samples"][direction] if p[1] is not None]
            for kind, marker, size in (("data", ".", 4), ("retransmission", "x", 30),
                                       ("reinjection", "^", 30)):
                chosen = [p for p in pts if p[3] == kind]
                if chosen:
                    ax.scatter([p[0] for p in chosen], [(p[1] - base) / 1e3 for p in chosen],
                               s=size, marker=marker, color=color,
                               label=f"subflow {s['subflow']}" + ("" if kind == "data"
                                                                  else f" {kind}"))
        ax.set_title(f"connection {number}, {label}")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("data sequence (kB from the first byte seen)")
        if ax.has_data():
            ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(os.path.join(directory, f"connection{number}-sequence.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    # 2. throughput per subflow
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, s in enumerate(series["subflows"]):
        for direction, style in (("up", "-"), ("down", "--")):
            pts = s["samples"][direction]
            if not pts:
                continue
            times = np.array([p[0] for p in pts])
            sizes = np.array([p[2] for p in pts], dtype=float)
            span = max(times.max(), 1e-3)
            edges = np.linspace(0, span, min(50, max(2, len(pts) // 4)) + 1)
            sums, _ = np.histogram(times, bins=edges, weights=sizes)
            width = edges[1] - edges[0]
            ax.plot(edges[:-1], sums * 8 / width / 1e6, style, color=colors[k % len(colors)],
                    label=f"subflow {s['subflow']} {direction}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title(f"connection {number}: throughput per subflow")
    if ax.has_data():
        ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(os.path.join(directory, f"connection{number}-throughput.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    # 3. delivery (in-order bytes over time) and its delay
    fig, ax = plt.subplots(figsize=(9, 4))
    for direction, style in (("up", "-"), ("down", "--")):
        points = series["delivery"][direction]
        if points:
            ax.step([p[0] - series["start_time"] for p in points],
                    [p[1] / 1e3 for p in points], style, where="post",
                    label=f"{direction}: delivered in order")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kB delivered in order")
    delay = series["delivery_delay_ms"]
    ax.set_title(f"connection {number}: data-level delivery (delay p99 up "
                 f"{_ms(delay['up'])}, down {_ms(delay['down'])})")
    if ax.has_data():
        ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(os.path.join(directory, f"connection{number}-delivery.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _ms(stats) -> str:
    return "-" if stats is None else f"{stats['p99']:.1f} ms"

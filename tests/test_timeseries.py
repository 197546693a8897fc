"""The numbers and pictures over time: RTTs, retransmissions, delivery and
reinjection delays from an emulated transfer whose paths we chose, and the PNGs of
``analyze --plot``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from enginenet import C0, C1, PORT, S0
from test_raster import colour_of, read_png
from mptcp_fast import analysis
from mptcp_fast.analysis import timeseries
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE
from mptcp_fast.engine import Config, Endpoint
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network

MB = 1 << 20


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """2 MB up and 1 MB down over a 5 ms path with 1 % loss and a 30 ms path with 2 % (one
    way), captured as the emulator sends each packet."""
    path = str(tmp_path_factory.mktemp("ts") / "run.pcap")
    net = Network(seed=5, pcap=path)
    config = Config(time_wait=0.5)
    client = BulkApp(Endpoint([C0, C1], config), send_bytes=2 * MB, seed=1)
    server = BulkApp(Endpoint([S0], config), send_bytes=MB, seed=2)
    server.endpoint.listen(PORT)
    net.add_host(client, [C0, C1])
    net.add_host(server, [S0])
    net.add_path(C0, S0, rate=50e6, delay=0.005, loss=0.01)
    net.add_path(C1, S0, rate=50e6, delay=0.030, loss=0.02)
    conn = client.open((S0, PORT), 0.0)
    net.run(until=60.0, stop=lambda: server.transfers and all(
        t.done for app in (client, server) for t in app.transfers.values()))
    net.close()
    retransmits = {s["local"][0]: s["retransmits"] for s in conn.stats()["subflows"]}
    return path, retransmits


def test_rtts_retransmissions_and_delays_follow_the_paths(capture):
    capture, engine_retransmits = capture
    report = analysis.analyze(capture)
    (series,) = timeseries.all_series(report, capture)
    numbers = timeseries.summary(series)
    by_address = {s["client"].split(":")[0]: s for s in numbers["subflows"]}
    fast, slow = by_address[C0], by_address[C1]
    # captured at the sender: data to the peer's ACK is one way plus serialisation at
    # least, plus the queue a bulk transfer builds
    assert 5 <= fast["rtt_ms"]["up"]["min"] < 8 and 30 <= slow["rtt_ms"]["up"]["min"] < 34
    assert fast["rtt_ms"]["up"]["p50"] < slow["rtt_ms"]["up"]["p50"]
    # the client's retransmitted segments, counted from the capture, are what its engine
    # counted (random loss on both paths)
    assert fast["retransmitted_segments"]["up"] == engine_retransmits[C0] > 0
    assert slow["retransmitted_segments"]["up"] == engine_retransmits[C1] > 0
    # the emulator captures each packet as it is sent: in DSN order, no head-of-line wait
    assert numbers["delivery_delay_ms"]["up"]["max"] == 0
    assert series["delivery"]["up"][-1][1] == 2 * MB          # every byte delivered in order


def test_delivery_delay_is_the_wait_for_earlier_bytes():
    """Bytes 20-29 arrive at t=1 s but wait for bytes 10-19 (t=5 s): 4 s for those 10 bytes
    of 30; the in-order curve steps at 0 s (10 bytes) and 5 s (30)."""
    arrivals = {0: (0.0, 1, 10), 10: (5.0, 2, 10), 20: (1.0, 1, 10)}
    delays, weights, delivered = timeseries._delivery_delays(arrivals)
    assert sorted(zip(delays, weights)) == [(0.0, 10), (0.0, 10), (4000.0, 10)]
    assert delivered == [(0.0, 10), (5.0, 20), (5.0, 30)]
    stats = timeseries._percentiles(delays, weights)
    assert stats["p50"] == 0.0 and stats["p90"] == stats["max"] == 4000.0


def test_head_of_line_blocking_in_the_kernel_capture():
    """The shipped kernel capture was taken at the client: the server's data (reinjected
    over a second subflow while the first path was throttled) waits for earlier bytes there,
    the client's own data, captured as sent, never does."""
    report = analysis.analyze(SHIPPED_CAPTURE)
    (series,) = timeseries.all_series(report, SHIPPED_CAPTURE)
    delay = series["delivery_delay_ms"]
    assert delay["up"]["max"] == 0 and delay["down"]["p99"] > 50
    assert series["reinjection_delay_ms"]["down"]["min"] > 0


@pytest.mark.parametrize("style", ["builtin", "matplotlib"])
def test_plots_and_timing_from_the_command_line(tmp_path, capture, style):
    if style == "matplotlib":
        pytest.importorskip("matplotlib")
    capture, _ = capture
    done = subprocess.run([sys.executable, "-m", "mptcp_fast", "analyze", capture,
                           SHIPPED_CAPTURE, "--plot", str(tmp_path), "--json",
                           "--plot-style", style],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)["captures"]
    for report in reports:
        for conn in report["connections"]:
            timing = conn["timing"]
            assert [s["subflow"] for s in timing["subflows"]] == \
                list(range(1, len(conn["subflows"]) + 1))
            assert timing["delivery_delay_ms"]["up"] is not None
    for name in ("run.pcap", "kernel-mptcp.pcap"):
        for figure, size in (("sequence", (450, 1200)), ("throughput", (400, 900)),
                             ("delivery", (400, 1200))):
            png = tmp_path / name / f"connection1-{figure}.png"
            pixels = read_png(png.read_bytes()) if style == "builtin" else _decoded(png)
            assert pixels.shape == (*size, 3)
            # the first two subflows' colours (both captures have two subflows with data)
            for k in (0, 1):
                assert np.all(pixels == colour_of(k), axis=-1).sum() > 50, (name, figure, k)


def _decoded(path):
    image = pytest.importorskip("PIL.Image")
    with image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    """The built-in figures need no matplotlib; matplotlib's style says how to get it."""
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    report = analysis.analyze(SHIPPED_CAPTURE)
    (series,) = timeseries.all_series(report, SHIPPED_CAPTURE)
    assert len(timeseries.plot_connection(series, str(tmp_path))) == 3
    with pytest.raises(timeseries.PlotError, match=r"pip install 'mptcp_fast\[plot\]'"):
        timeseries.plot_connection(series, str(tmp_path), style="matplotlib")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_percentiles_are_those_of_the_full_sort(seed):
    """Most delivery delays are 0: the percentiles merge them before sorting the others,
    and come out as a sort of every value would give them."""
    rng = np.random.default_rng(seed)
    values = np.where(rng.random(5000) < 0.9, 0.0, rng.integers(1, 50, 5000) / 8)
    weights = rng.integers(1, 1500, 5000)
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(weights[order].astype(float)) / weights.sum()
    expected = {q: float(v[min(np.searchsorted(cum, q), len(v) - 1)]) for q in (0.5, 0.9, 0.99)}
    stats = timeseries._percentiles(values, weights)
    assert (stats["p50"], stats["p90"], stats["p99"]) == (expected[0.5], expected[0.9],
                                                          expected[0.99])
    assert (stats["min"], stats["max"]) == (values.min(), values.max())
    assert timeseries._percentiles(np.zeros(3), [1, 2, 3]) == dict.fromkeys(
        ("min", "p50", "p90", "p99", "max"), 0.0)

"""The figures' data reduced to what their pixels can show (``envelope``), the figure data of
a connection, and the process that draws them (``figures.FigureWorker``, in either style;
the built-in drawing's pixels: tests/test_raster.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mptcp_fast.analysis import envelope, figures, timeseries
from mptcp_fast.analysis.model import build_model
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE

GRID = (600, 400)


def _cells(x, y, xlim, ylim, grid):
    """The set of occupied (column, row) cells, computed point by point."""
    out = set()
    for a, b in zip(x.tolist(), y.tolist()):
        column = min(int((a - xlim[0]) * (grid[0] / (xlim[1] - xlim[0]))), grid[0] - 1)
        row = min(int((b - ylim[0]) * (grid[1] / (ylim[1] - ylim[0]))), grid[1] - 1)
        out.add((column, row))
    return out


def _walk(n, seed):
    """A noisy sequence-graph-like series: time in order, position mostly growing."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.exponential(1e-4, n))
    y = np.cumsum(rng.integers(0, 1500, n)).astype(float) - rng.integers(0, 2, n) * 5e4
    return x, y


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scatter_cells_keep_one_point_of_every_occupied_cell(seed):
    x, y = _walk(50_000, seed)
    rng = np.random.default_rng(seed)
    x, y = np.concatenate([x, rng.uniform(0, x.max(), 3000)]), \
        np.concatenate([y, rng.uniform(0, y.max(), 3000)])        # and scattered noise
    xlim, ylim = envelope.limits([x]), envelope.limits([y])
    keep = envelope.scatter_cells(x, y, xlim, ylim, GRID)
    assert np.all(np.diff(keep) > 0)                     # points of the data, in their order
    full = _cells(x, y, xlim, ylim, GRID)
    assert _cells(x[keep], y[keep], xlim, ylim, GRID) == full
    assert len(keep) == len(full) < len(x) // 5          # one point per cell, far fewer


def test_scatter_cells_keep_every_pixel_columns_lowest_and_highest_row():
    x, y = _walk(20_000, 7)
    xlim, ylim = envelope.limits([x]), envelope.limits([y])
    keep = envelope.scatter_cells(x, y, xlim, ylim, GRID)
    by_column = {}
    for column, row in _cells(x, y, xlim, ylim, GRID):
        low, high = by_column.get(column, (row, row))
        by_column[column] = (min(low, row), max(high, row))
    kept = {}
    for column, row in _cells(x[keep], y[keep], xlim, ylim, GRID):
        low, high = kept.get(column, (row, row))
        kept[column] = (min(low, row), max(high, row))
    assert kept == by_column


def test_line_envelope_keeps_each_columns_first_last_lowest_and_highest_point():
    rng = np.random.default_rng(4)
    x = np.sort(rng.uniform(0, 10, 40_000))
    y = np.cumsum(rng.normal(0, 1, len(x)))
    xlim = envelope.limits([x])
    keep = envelope.line_envelope(x, y, xlim, 300)
    assert np.all(np.diff(keep) > 0)
    column = np.minimum(((x - xlim[0]) * (300 / (xlim[1] - xlim[0]))).astype(int), 299)
    kept = set(keep.tolist())
    for c in np.unique(column):
        at = np.flatnonzero(column == c)
        assert {at[0], at[-1], at[np.argmin(y[at])], at[np.argmax(y[at])]} <= kept
    assert len(keep) <= 4 * 300


@pytest.mark.parametrize("seed", [1, 2])
def test_line_envelope_of_a_growing_line_is_the_general_one(seed, monkeypatch):
    """A line that never decreases (bytes delivered so far, with flat stretches) takes a
    shorter way to the same points."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, 30_000))
    y = np.cumsum(rng.integers(0, 3, len(x)) * (rng.random(len(x)) < 0.3)).astype(float)
    xlim = envelope.limits([x])
    fast = envelope.line_envelope(x, y, xlim, 300)
    monkeypatch.setattr(envelope, "_never_decreases", lambda values: False)   # the general way
    assert fast.tolist() == envelope.line_envelope(x, y, xlim, 300).tolist()


def test_envelopes_of_short_or_flat_series_keep_everything_they_must():
    one = np.array([1.0])
    assert envelope.scatter_cells(one, one, (1.0, 1.0), (1.0, 1.0), GRID).tolist() == [0]
    flat = np.zeros(10)
    assert envelope.scatter_cells(flat, flat, (0.0, 0.0), (0.0, 0.0), GRID).tolist() == [0]
    assert envelope.line_envelope(flat, flat, (0.0, 0.0), 10).tolist() == [0, 9]
    assert envelope.limits([np.zeros(0)]) == (0.0, 1.0)


@pytest.fixture(scope="module")
def shipped_series():
    model = build_model(SHIPPED_CAPTURE, packets=True)
    return timeseries.model_series(model), timeseries.model_series(model, delivery_pairs=False)


def test_delivery_arrays_are_the_delivery_pairs(shipped_series):
    pairs, arrays = shipped_series
    for a, b in zip(pairs, arrays):
        for direction in ("up", "down"):
            times, total = b["delivery"][direction]
            assert list(zip(times.tolist(), total.tolist())) == a["delivery"][direction]
        assert timeseries.summary(a) == timeseries.summary(b)


def test_figure_data_are_points_of_the_series_and_small(shipped_series):
    pairs, arrays = shipped_series
    (series,) = pairs
    data = figures.figure_data(series)
    assert [f["file"] for f in data] == [f"connection1-{n}.png" for n in
                                          ("sequence", "throughput", "delivery")]
    assert figures.figure_data(arrays[0])[2]["axes"][0]["artists"][0]["x"].tolist() == \
        data[2]["axes"][0]["artists"][0]["x"].tolist()            # both delivery layouts
    up = data[0]["axes"][0]["artists"]
    samples = series["subflows"][0]["samples"]["up"]
    assert set(up[0]["x"].tolist()) <= set(samples["time"].tolist())
    assert len(pickle.dumps(data)) < 2_000_000


@pytest.fixture
def no_matplotlib(monkeypatch):
    """matplotlib cannot be imported (in this process and the worker forked from it)."""
    import builtins
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", refuse)


def _png_size(path) -> tuple:
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("style", figures.STYLES)
def test_the_worker_draws_the_figures(tmp_path, shipped_series, style):
    if style == "matplotlib":
        pytest.importorskip("matplotlib")
    (series,) = shipped_series[1]
    worker = figures.FigureWorker(style)
    try:
        worker.submit(figures.figure_data(series), str(tmp_path / "a"))
        worker.submit(figures.figure_data(series), str(tmp_path / "b"))
        paths = worker.results()
    finally:
        worker.close()
    assert [p.split("/")[-2:] for p in paths] == [
        [d, f"connection1-{n}.png"] for d in "ab" for n in figures.FIGURES]
    # each the size of its figure: 100 pixels per inch
    for path, size in zip(paths, 2 * [figures.SEQUENCE_SIZE, figures.THROUGHPUT_SIZE,
                                       figures.DELIVERY_SIZE]):
        assert _png_size(path) == (int(size[0] * 100), int(size[1] * 100))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "connection1-sequence.png").mkdir()             # cannot be written
    worker = figures.FigureWorker(style)
    try:
        worker.submit(figures.figure_data(series), str(tmp_path / "c"))
        with pytest.raises(OSError):
            worker.results()
    finally:
        worker.close()


def test_the_builtin_figures_need_no_matplotlib(tmp_path, shipped_series, no_matplotlib):
    (series,) = shipped_series[1]
    worker = figures.FigureWorker()
    try:
        worker.submit(figures.figure_data(series), str(tmp_path))
        assert len(worker.results()) == 3
    finally:
        worker.close()
    worker = figures.FigureWorker("matplotlib")
    try:
        worker.submit(figures.figure_data(series), str(tmp_path))
        with pytest.raises(figures.PlotError, match=r"pip install 'mptcp_fast\[plot\]'"):
            worker.results()
    finally:
        worker.close()
    with pytest.raises(ValueError, match="style"):
        figures.FigureWorker("svg")


def test_figure_data_put_bytes_in_a_unit_of_a_few_digits():
    artists = [{"y": np.array([0.0, 2.5e6])}, {"y": np.array([1.2e9])}]
    scaled, unit = figures._in_byte_unit(artists)
    assert unit == "MB" and scaled[1]["y"].tolist() == [1200.0]
    assert figures._in_byte_unit([{"y": np.array([45_000.0])}])[1] == "kB"
    assert figures._in_byte_unit([{"y": np.array([4.5e10])}])[1] == "GB"
    assert figures._in_byte_unit([])[1] == "kB"


def test_the_worker_takes_many_connections_without_waiting(tmp_path, shipped_series):
    """Submitting returns at once, however many figures are waiting (their data are more
    than a pipe holds)."""
    import time
    (series,) = shipped_series[1]
    data = figures.figure_data(series)
    line = np.linspace(0.0, 1.0, 200_000)
    data[1]["axes"][0]["artists"].append({"kind": "plot", "x": line, "y": line, "style": "-",
                                          "color": 0, "label": "a long line"})
    assert len(pickle.dumps(data)) > 1 << 20
    worker = figures.FigureWorker()
    try:
        started = time.perf_counter()
        for k in range(4):
            worker.submit(data, str(tmp_path / str(k)))
        submitted = time.perf_counter() - started
        paths = worker.results()
        drawn = time.perf_counter() - started
    finally:
        worker.close()
    assert len(paths) == 12 and submitted < drawn / 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bin_sums_are_the_histograms(seed):
    """The throughput's bins: numpy's weighted histogram, with times in order (runs found by
    their edges) or not (numpy's own), values on the edges included."""
    rng = np.random.default_rng(seed)
    time = np.sort(rng.uniform(0, 7.3, 20_000))
    time[::97] = np.round(time[::97], 1)                     # some exactly on edges
    time.sort()
    length = rng.integers(0, 1500, len(time)).astype(np.int64)
    for times in (time, rng.permutation(time)):
        for span, bins in ((float(times.max()), 50), (7.3, 73), (1e-3, 2)):
            edges = np.linspace(0, span, bins + 1)
            expected, _ = np.histogram(times, bins=bins, range=(0, span),
                                       weights=length.astype(float))
            assert figures._bin_sums(times, length, edges).tolist() == expected.tolist()


def test_the_worker_makes_the_figure_data_of_series_itself(tmp_path, shipped_series):
    """submit_series: the figure data made on the worker's thread, drawn by its process, are
    the figures figure_data and draw make here; a series that cannot be read fails results."""
    (series,) = shipped_series[1]
    worker = figures.FigureWorker()
    try:
        for name in ("throughput", "sequence", "delivery"):
            worker.submit_series(series, (name,), str(tmp_path / "worker"))
        paths = worker.results()
        worker.submit_series({"connection": 1}, ("sequence",), str(tmp_path / "broken"))
        with pytest.raises(KeyError):
            worker.results()
    finally:
        worker.close()
    here = figures.draw(figures.figure_data(series), str(tmp_path / "here"))
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"connection1-{n}.png" for n in
                                                     ("throughput", "sequence", "delivery")]
    for path in paths:
        same = next(p for p in here if p.endswith(path.rsplit("/", 1)[1]))
        with open(path, "rb") as a, open(same, "rb") as b:
            assert a.read() == b.read()

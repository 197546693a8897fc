"""Series reduced to what a figure's pixels can show, before they are drawn (``raster``, or
matplotlib): a million points per series draw the same picture as the few thousand that
differ by at least a pixel, at a fraction of the cost.

* ``scatter_cells``: for markers, one point (the first) of every occupied cell of a grid at
  least as fine as the figure's pixels. Every pixel a marker covered is still covered.
* ``line_envelope``: for a line whose x only grows, per pixel column its first, last, lowest
  and highest point (the "M4" reduction): the line drawn through them covers the same
  pixels of every column as the line through all of them.

Both return indices into the series (ascending: the kept points in their original order),
so every kept point is a point of the data, at its exact position.
"""

from __future__ import annotations

import numpy as np

__all__ = ["limits", "scatter_cells", "line_envelope"]


def limits(arrays) -> tuple:
    """(low, high) over the values of several arrays (the data limits of one axis of an
    axes drawing all of them); (0.0, 1.0) when they are all empty."""
    lows = [float(a.min()) for a in arrays if len(a)]
    highs = [float(a.max()) for a in arrays if len(a)]
    return (min(lows), max(highs)) if lows else (0.0, 1.0)


def _bins(values, low: float, high: float, count: int):
    """The bin (0 .. count - 1) of each value in ``count`` equal bins over [low, high]."""
    span = high - low
    if not span > 0:                     # one value, or none: one bin
        return np.zeros(len(values), np.int64)
    scaled = np.subtract(values, low, dtype=float)
    scaled *= count / span
    bins = scaled.astype(np.int64)
    np.maximum(bins, 0, out=bins)        # np.clip's result, in place (clip is slower)
    np.minimum(bins, count - 1, out=bins)
    return bins


def scatter_cells(x, y, xlim: tuple[float, float], ylim: tuple[float, float],
                  shape) -> np.ndarray:
    """Indices of the first point of each occupied cell of a ``shape`` = (columns, rows) grid
    over ``xlim`` x ``ylim``. With at least as many columns and rows as the figure has pixels
    across and down, no two kept points share a pixel-sized cell and every occupied one is
    kept."""
    n = len(x)
    if n < 2:
        return np.arange(n)
    columns, rows = shape
    cell = _bins(x, *xlim, columns) * rows + _bins(y, *ylim, rows)
    # runs of points in one cell first (a series in time order mostly stays in its cell),
    # so that the sort sees few points
    starts = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
    return np.sort(starts[_first_of_each(cell[starts])])


def line_envelope(x, y, xlim: tuple[float, float], columns: int) -> np.ndarray:
    """Indices of the first, last, lowest and highest point of each of ``columns`` equal
    columns over ``xlim``, for a line whose ``x`` never decreases."""
    n = len(x)
    if n < 5:
        return np.arange(n)
    column = _bins(x, *xlim, columns)
    starts = np.flatnonzero(np.concatenate(([True], column[1:] != column[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    y = np.asarray(y)
    if _never_decreases(y):
        # y never decreases (bytes delivered so far): a column's lowest point is its first,
        # its highest the first point with its last value
        lowest = starts
        highest = np.maximum(np.searchsorted(y, y[ends], side="left"), starts)
    else:
        lowest = _position_in_run(y, starts, np.minimum.reduceat(y, starts))
        highest = _position_in_run(y, starts, np.maximum.reduceat(y, starts))
    keep = np.sort(np.concatenate((starts, ends, lowest, highest)))
    return keep[np.concatenate(([True], keep[1:] != keep[:-1]))]


def _never_decreases(values) -> bool:
    return bool(np.all(values[1:] >= values[:-1]))


def _first_of_each(values) -> np.ndarray:
    """The index of the first occurrence of each distinct value, in the values' order
    (``np.unique(values, return_index=True)[1]``, without np.unique: its first call in a
    process imports numpy.ma)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    return order[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _position_in_run(y, starts, extremes) -> np.ndarray:
    """The first index of each run (runs begin at ``starts``) where ``y`` equals the run's
    value in ``extremes``."""
    lengths = np.diff(np.concatenate((starts, [len(y)])))
    hit = np.flatnonzero(y == np.repeat(extremes, lengths))
    run = np.searchsorted(starts, hit, side="right") - 1
    first = np.concatenate(([True], run[1:] != run[:-1]))
    return hit[first]

"""The figures drawn straight into pixels, without matplotlib: ``draw(figures, directory)``
takes ``figures.figure_data``'s figures (each series already reduced to what its pixels can
show) and writes each as a PNG.

A figure is an array of palette indices (``PALETTE``: a grey ramp for text, the ten colours
of matplotlib's default cycle for the series, greys for the grid and the legend's frame).
Per axes: the data limits with matplotlib's 5 % margins, ticks at round steps labelled in
the data's units, the title and the axis labels above and beside it, and a frame; the
margins are what the labels need. In the plot area, a line is painted as one vertical run
of pixels per pixel column of each of its segments (a square brush of the line's width swept
along it; dashed lines in pieces of half a pixel), a marker as a stamp at the pixel of each
point, later artists over earlier ones, as matplotlib draws them. Text comes from a table of
glyphs rendered once (``glyphs``). The PNG: 8-bit palette, rows unfiltered, zlib.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zlib

import numpy as np

from . import glyphs

__all__ = ["DPI", "draw", "render", "png", "PALETTE", "COLORS"]

DPI = 100
ZLIB_LEVEL = 1                 # mostly white rows: level 6 took three times as long for files
#                               half the size (20-30 KB)

# palette: 0 .. 15 white to black (text coverage), then the series' colours (matplotlib's
# "tab10", in its order), the grid, the legend's frame, and the series' colours seen through
# the legend's box (80 % white over them, as matplotlib's legend covers what it hides)
GREYS = 16
WHITE, BLACK = 0, GREYS - 1
COLORS = ((0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e), (0x2c, 0xa0, 0x2c), (0xd6, 0x27, 0x28),
          (0x94, 0x67, 0xbd), (0x8c, 0x56, 0x4b), (0xe3, 0x77, 0xc2), (0x7f, 0x7f, 0x7f),
          (0xbc, 0xbd, 0x22), (0x17, 0xbe, 0xcf))
FIRST_COLOR = GREYS
GRID = FIRST_COLOR + len(COLORS)
FRAME = GRID + 1
FIRST_FADED = FRAME + 1
BOX_OPACITY = 0.8
PALETTE = tuple((255 - 17 * k,) * 3 for k in range(GREYS)) + COLORS + \
    ((0xeb, 0xeb, 0xeb), (0xcc, 0xcc, 0xcc)) + \
    tuple(tuple(round(BOX_OPACITY * 255 + (1 - BOX_OPACITY) * v) for v in rgb) for rgb in COLORS)
# what each palette index looks like under the legend's box: colours faded, the rest white
UNDER_BOX = np.zeros(256, np.uint8)
UNDER_BOX[FIRST_COLOR:FIRST_COLOR + len(COLORS)] = np.arange(len(COLORS)) + FIRST_FADED

# text sizes (glyphs.SIZES) and lengths in pixels at 100 dpi (matplotlib's defaults in points
# times 100 / 72)
TITLE, LABEL, SMALL = 17, 14, 12
EDGE = 8                       # between the figure's edge and any text
TICK = 5                       # tick length (3.5 pt), and the gap to its label
LABEL_PAD = 6                  # between tick labels and the axis label (4 pt)
TITLE_PAD = 8                  # between the title and the plot (6 pt)
GAP = 24                       # between two axes side by side, beyond their own text
LINE_WIDTH = 2.0               # 1.5 pt
DASH = (7.7, 3.3)              # on, off (matplotlib's dashes for a 1.5 pt line)
MARGIN = 0.05                  # of the data's span, on each side (matplotlib's margins)
X_TICK_SPACING = 60            # at least this many pixels between ticks (matplotlib's are
Y_TICK_SPACING = 45            # about as far apart)


def draw(figures, directory) -> list:
    """Draw ``figure_data``'s figures as PNGs into ``directory``; return their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for figure in figures:
        path = os.path.join(directory, figure["file"])
        with open(path, "wb") as f:
            f.write(png(render(figure)))
        paths.append(path)
    return paths


def render(figure) -> np.ndarray:
    """The figure as a (rows, columns) array of ``PALETTE`` indices."""
    canvas = np.zeros(_size(figure)[::-1], np.uint8)
    for spec, frame in zip(figure["axes"], layout(figure)):
        _draw_axes(canvas, spec, frame)
    return canvas


def _size(figure) -> tuple:
    """(columns, rows) of the figure."""
    return tuple(int(round(inches * DPI)) for inches in figure["size"])


# --- where each axes goes ------------------------------------------------------------------

class Axis:
    """One axis: its limits (data), ticks (data) and their labels (text)."""

    def __init__(self, low: float, high: float, length: int, spacing: int):
        self.low, self.high = _with_margins(low, high)
        self.ticks, self.labels = _ticks(self.low, self.high, max(2, length // spacing))


class Frame:
    """Where one axes is drawn: its cell of the figure, and the plot area (rows ``top`` to
    ``bottom`` - 1, columns ``left`` to ``right`` - 1) that its axes ``x`` and ``y`` span."""

    def __init__(self, cell: tuple, top: int, bottom: int, left: int, right: int,
                 x: Axis, y: Axis):
        self.cell = cell
        self.top, self.bottom, self.left, self.right = top, bottom, left, right
        self.x, self.y = x, y

    def columns(self, values) -> np.ndarray:
        """Positions (pixels from the plot's left edge, fractional) of x values."""
        scale = (self.right - self.left) / (self.x.high - self.x.low)
        return (np.asarray(values, float) - self.x.low) * scale

    def rows(self, values) -> np.ndarray:
        """Positions (pixels from the plot's top edge, fractional) of y values."""
        scale = (self.bottom - self.top) / (self.y.high - self.y.low)
        return (self.y.high - np.asarray(values, float)) * scale

    def pixel(self, x: float, y: float) -> tuple:
        """(row, column) of the figure's pixel holding the point (x, y)."""
        return (self.top + _pixel(float(self.rows([y])[0])),
                self.left + _pixel(float(self.columns([x])[0])))


def layout(figure) -> list:
    """The ``Frame`` of each of the figure's axes: its cell of the figure's grid (``layout``:
    rows, columns), and in it the plot area, inside margins for the title, the axis labels
    and the tick labels."""
    width, height = _size(figure)
    rows, columns = figure["layout"]
    frames = []
    for k, spec in enumerate(figure["axes"]):
        row, column = divmod(k, columns)
        cell = (column * (width // columns), (column + 1) * (width // columns),
                row * (height // rows), (row + 1) * (height // rows))
        frames.append(_frame_in(cell, spec, first=column == 0, last=column == columns - 1))
    return frames


def _frame_in(cell, spec, first: bool, last: bool) -> Frame:
    cell_left, cell_right, cell_top, cell_bottom = cell
    label, title = glyphs.face(LABEL), glyphs.face(TITLE)
    artists = spec["artists"]
    xlow, xhigh = _limits([a["x"] for a in artists])
    ylow, yhigh = _limits([a["y"] for a in artists])
    # the plot's height is known first: the y ticks, whose labels' width sets the left margin
    top = cell_top + EDGE + title.height + TITLE_PAD
    bottom = cell_bottom - EDGE - 2 * label.height - LABEL_PAD - 2 * TICK
    y = Axis(ylow, yhigh, bottom - top, Y_TICK_SPACING)
    tick_width = max(label.width(t) for t in y.labels)
    left = cell_left + (EDGE if first else GAP // 2) + label.height + LABEL_PAD + tick_width \
        + 2 * TICK
    right = cell_right - (EDGE + label.width("0") if last else GAP // 2)
    x = Axis(xlow, xhigh, right - left, X_TICK_SPACING)
    return Frame(cell, top, bottom, left, right, x, y)


def _with_margins(low: float, high: float) -> tuple:
    span = high - low
    if not span > 0:                     # one value: a span around it
        half = abs(low) * MARGIN if low else 0.5
        return low - half, high + half
    return low - MARGIN * span, high + MARGIN * span


def _ticks(low: float, high: float, at_most: int) -> tuple:
    """Tick values at the roundest step (1, 2, 2.5 or 5 times a power of ten) that puts at
    most ``at_most`` + 1 of them within [low, high], and their labels."""
    raw = (high - low) / at_most
    power = math.floor(math.log10(raw))
    multiple, power = next((m, power + (m == 10)) for m in (1, 2, 2.5, 5, 10)
                           if m * 10.0 ** power >= raw * (1 - 1e-9))
    multiple = 1 if multiple == 10 else multiple
    step = multiple * 10.0 ** power
    first = math.ceil(low / step - 1e-9)
    values = [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]
    decimals = max(0, -power + (multiple == 2.5))
    return values, [_number(v, decimals) for v in values]


def _number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text          # no "-0"


# --- one axes ---------------------------------------------------------------------------

def _draw_axes(canvas, spec, frame: Frame) -> None:
    """One axes (``spec`` of ``figure_data``) in its frame: grid, artists, frame and ticks,
    texts, legend."""
    label, title, small = glyphs.face(LABEL), glyphs.face(TITLE), glyphs.face(SMALL)
    plot = canvas[frame.top:frame.bottom, frame.left:frame.right]
    _grid(plot, frame)
    entries = _draw_artists(plot, spec["artists"], frame)
    _spines_and_ticks(canvas, frame)
    middle = (frame.left + frame.right) // 2
    cell_left, cell_right, cell_top, _ = frame.cell
    face = title if title.width(spec["title"]) <= cell_right - cell_left - 2 * EDGE else label
    half = face.width(spec["title"]) // 2          # centred on the plot, within the cell
    centre = min(max(middle, cell_left + EDGE + half), cell_right - EDGE - half)
    _text(canvas, spec["title"], face, centre, cell_top + EDGE, "center", "top")
    _text(canvas, spec["xlabel"], label, middle,
          frame.bottom + 2 * TICK + label.height + LABEL_PAD, "center", "top")
    tick_width = max(label.width(t) for t in frame.y.labels)
    _text(canvas, spec["ylabel"], label, frame.left - 2 * TICK - tick_width - LABEL_PAD,
          (frame.top + frame.bottom) // 2, "right", "center", rotated=True)
    if entries:
        _legend(plot, entries, spec["legend"], small)


def _draw_artists(plot, artists, frame: Frame) -> list:
    """Paint the artists in order (later ones over earlier ones); return the legend's
    entries: (label, (kind, how), colour)."""
    cycle = iter(range(len(COLORS)))         # colour None: the next of the cycle
    entries = []
    for a in artists:
        color = FIRST_COLOR + (next(cycle) if a["color"] is None else a["color"] % len(COLORS))
        px, py = frame.columns(a["x"]), frame.rows(a["y"])
        if a["kind"] == "scatter":
            stamp = _stamp(a["marker"], a["s"])
            _stamp_points(plot, px, py, stamp, color)
            entries.append((a["label"], ("marker", stamp), color))
        else:
            if a["kind"] == "step":
                px, py = _steps(px, py)
            _line(plot, px, py, a["style"], color)
            entries.append((a["label"], ("line", a["style"]), color))
    return entries


def _limits(arrays) -> tuple:
    lows = [float(np.min(a)) for a in arrays if len(a)]
    highs = [float(np.max(a)) for a in arrays if len(a)]
    return (min(lows), max(highs)) if lows else (0.0, 1.0)


def _grid(plot, frame: Frame) -> None:
    """Light lines across the plot at the ticks."""
    for column in _inside(frame.columns(frame.x.ticks), plot.shape[1]):
        plot[:, column] = GRID
    for row in _inside(frame.rows(frame.y.ticks), plot.shape[0]):
        plot[row, :] = GRID


def _inside(positions, length: int) -> list:
    """The pixels (0 .. length - 1) holding the positions that fall inside."""
    pixels = [_pixel(p) for p in positions]
    return [p for p in pixels if 0 <= p < length]


def _pixel(position: float) -> int:
    """The pixel holding a position (pixel k spans [k, k + 1))."""
    return int(math.floor(position))


def _spines_and_ticks(canvas, frame: Frame) -> None:
    """The frame around the plot, ticks outward, their labels."""
    face = glyphs.face(LABEL)
    top, bottom, left, right = frame.top, frame.bottom, frame.left, frame.right
    canvas[top - 1, left - 1:right + 1] = BLACK
    canvas[bottom, left - 1:right + 1] = BLACK
    canvas[top - 1:bottom + 1, left - 1] = BLACK
    canvas[top - 1:bottom + 1, right] = BLACK
    for value, text in zip(frame.x.ticks, frame.x.labels):
        column = _pixel(frame.columns([value])[0])
        if 0 <= column < right - left:
            canvas[bottom + 1:bottom + 1 + TICK, left + column] = BLACK
            _text(canvas, text, face, left + column, bottom + 1 + 2 * TICK, "center", "top")
    for value, text in zip(frame.y.ticks, frame.y.labels):
        row = _pixel(frame.rows([value])[0])
        if 0 <= row < bottom - top:
            canvas[top + row, left - 1 - TICK:left - 1] = BLACK
            _text(canvas, text, face, left - 1 - 2 * TICK, top + row, "right", "center")


# --- text ---------------------------------------------------------------------------------

def _text(canvas, text: str, face, x: int, y: int, horizontal: str, vertical: str,
          rotated: bool = False) -> None:
    """``text`` at (x, y) of the canvas, anchored there by its ``horizontal`` ("left",
    "center", "right") and ``vertical`` ("top", "center") side; ``rotated``: turned a
    quarter counter-clockwise (read upwards), anchored by its box as it is drawn."""
    levels = _levels(face, text, rotated)
    height, width = levels.shape
    column = x - {"left": 0, "center": width // 2, "right": width}[horizontal]
    row = y - {"top": 0, "center": height // 2}[vertical]
    _overlay(canvas, levels, row, column)


@functools.lru_cache(maxsize=1024)
def _levels(face, text: str, rotated: bool) -> np.ndarray:
    """The grey levels (``WHITE`` .. ``BLACK``) of a line of text: tick labels come again
    and again."""
    coverage = face.render(text)
    if rotated:
        coverage = np.rot90(coverage)
    levels = ((coverage.astype(np.uint16) * BLACK + 127) // 255).astype(np.uint8)
    levels.flags.writeable = False
    return levels


def _overlay(canvas, levels, row: int, column: int) -> None:
    """Grey ``levels`` onto the canvas, clipped, the darker winning."""
    height, width = levels.shape
    r0, c0 = max(row, 0), max(column, 0)
    r1, c1 = min(row + height, canvas.shape[0]), min(column + width, canvas.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    target = canvas[r0:r1, c0:c1]
    source = levels[r0 - row:r1 - row, c0 - column:c1 - column]
    on_grey = target < GREYS
    target[on_grey] = np.maximum(target, source)[on_grey]


# --- lines ----------------------------------------------------------------------------------

def _steps(px, py) -> tuple:
    """A step line (each value held until the next x) as a polyline."""
    if len(px) < 2:
        return px, py
    x = np.repeat(px, 2)[1:]
    y = np.repeat(py, 2)[:-1]
    return x, y


def _line(plot, px, py, style: str, color: int) -> None:
    """A polyline through the points, in pixels of ``plot``; "--" dashed."""
    ok = np.isfinite(px) & np.isfinite(py)
    px, py = px[ok], py[ok]
    if len(px) == 1:
        px, py = np.repeat(px, 2), np.repeat(py, 2)
    if len(px) < 2:
        return
    if style == "--":
        px, py = _dashes(px, py)
        if not len(px):
            return
        columns, low, high = _brush_points(px, py)
    else:
        columns, low, high = _brush_segments(px, py)
    plot[_runs(plot.shape, columns, low, high)] = color


def _brush_segments(px, py) -> tuple:
    """The run of rows each pixel column of each segment paints with a square brush of
    ``LINE_WIDTH``: (columns, first rows, last rows)."""
    half = LINE_WIDTH / 2
    x0, x1, y0, y1 = px[:-1], px[1:], py[:-1], py[1:]
    xa, xb = np.minimum(x0, x1), np.maximum(x0, x1)
    first = np.ceil(xa - half - 0.5).astype(np.int64)       # columns whose centre is within
    last = np.floor(xb + half - 0.5).astype(np.int64)       # half a width of the segment
    count = np.maximum(last - first + 1, 0)
    segment = np.repeat(np.arange(len(xa)), count)
    column = first[segment] + (np.arange(len(segment)) - np.repeat(np.cumsum(count) - count,
                                                                    count))
    # the part of the segment within half a width of the column's centre
    lo = np.maximum(xa[segment], column + 0.5 - half)
    hi = np.minimum(xb[segment], column + 0.5 + half)
    dx = (x1 - x0)[segment]
    flat = dx == 0
    slope = np.divide((y1 - y0)[segment], dx, out=np.zeros(len(segment)), where=~flat)
    ya = np.where(flat, y0[segment], y0[segment] + (lo - x0[segment]) * slope)
    yb = np.where(flat, y1[segment], y0[segment] + (hi - x0[segment]) * slope)
    low = np.ceil(np.minimum(ya, yb) - half - 0.5).astype(np.int64)
    high = np.floor(np.maximum(ya, yb) + half - 0.5).astype(np.int64)
    return column, low, high


def _dashes(px, py) -> tuple:
    """Points every half pixel along the polyline where the dash pattern is on."""
    length = np.hypot(np.diff(px), np.diff(py))
    start = np.concatenate(([0.0], np.cumsum(length)))
    at = np.arange(0.0, start[-1] + 0.25, 0.5)
    on, off = DASH
    at = at[np.mod(at, on + off) < on]
    segment = np.clip(np.searchsorted(start, at, side="right") - 1, 0, len(length) - 1)
    along = np.divide(at - start[segment], length[segment], out=np.zeros(len(at)),
                      where=length[segment] > 0)
    return (px[segment] + along * (px[segment + 1] - px[segment]),
            py[segment] + along * (py[segment + 1] - py[segment]))


def _brush_points(px, py) -> tuple:
    """The runs a square brush of ``LINE_WIDTH`` paints at each point."""
    half = LINE_WIDTH / 2
    first = np.ceil(px - half - 0.5).astype(np.int64)
    count = np.maximum(np.floor(px + half - 0.5).astype(np.int64) - first + 1, 0)
    point = np.repeat(np.arange(len(px)), count)
    column = first[point] + (np.arange(len(point)) - np.repeat(np.cumsum(count) - count, count))
    low = np.ceil(py[point] - half - 0.5).astype(np.int64)
    high = np.floor(py[point] + half - 0.5).astype(np.int64)
    return column, low, high


def _runs(shape, columns, low, high) -> tuple:
    """The pixels of vertical runs (rows ``low`` to ``high`` of each column), clipped to
    ``shape``: (rows, columns) index arrays, each run's rows one after another."""
    rows, width = shape
    low, high = np.maximum(low, 0), np.minimum(high, rows - 1)
    ok = (columns >= 0) & (columns < width) & (low <= high)
    columns, low, high = columns[ok], low[ok], high[ok]
    lengths = high - low + 1
    first = np.cumsum(lengths) - lengths              # where each run's pixels begin
    along = np.arange(int(lengths.sum())) - np.repeat(first, lengths)
    return np.repeat(low, lengths) + along, np.repeat(columns, lengths)


# --- markers ---------------------------------------------------------------------------

def _stamp(marker, size: float) -> tuple:
    """(row offsets, column offsets) of a marker of matplotlib's ``marker`` and area
    ``size`` (points squared): "." a small dot, "x" a cross, "^" a triangle, None a disc."""
    diameter = math.sqrt(size) * DPI / 72
    reach = max(int(diameter // 2), 1)
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    if marker == ".":
        shape = (dy >= 0) & (dy <= 1) & (dx >= 0) & (dx <= 1)
    elif marker == "x":                  # two diagonals, two pixels thick
        shape = np.abs(np.abs(dx) - np.abs(dy)) <= (np.maximum(np.abs(dx), np.abs(dy)) < reach)
    elif marker == "^":
        # apex at the top row, base on the bottom row
        shape = np.abs(dx) <= (dy + reach) / 2 + 0.5
    else:
        shape = dx ** 2 + dy ** 2 <= (diameter / 2) ** 2 + 0.5
    rows, columns = np.nonzero(shape)
    return rows - reach, columns - reach


def _stamp_points(plot, px, py, stamp, color: int) -> None:
    """The marker ``stamp`` at the pixel of each point, clipped to the plot."""
    rows, width = plot.shape
    reach = int(max(np.abs(stamp[0]).max(), np.abs(stamp[1]).max())) if len(stamp[0]) else 0
    ok = np.isfinite(px) & np.isfinite(py)
    row = np.floor(py[ok]).astype(np.int64) + reach
    column = np.floor(px[ok]).astype(np.int64) + reach
    inside = (row >= 0) & (row < rows + 2 * reach) & (column >= 0) & \
        (column < width + 2 * reach)
    # one stamp per pixel (points a pixel apart in the data's grid share the plot's pixels)
    span = width + 2 * reach
    pixel = np.sort(row[inside] * span + column[inside])
    pixel = pixel[np.concatenate(([True], pixel[1:] != pixel[:-1]))] if len(pixel) else pixel
    row, column = pixel // span - reach, pixel % span - reach
    r = (row[:, None] + stamp[0][None, :]).reshape(-1)     # every point's every offset
    c = (column[:, None] + stamp[1][None, :]).reshape(-1)
    keep = (r >= 0) & (r < rows) & (c >= 0) & (c < width)
    plot[r[keep], c[keep]] = color


# --- the legend -------------------------------------------------------------------------

LEGEND_PAD = 5                     # inside the frame (0.4 em)
LEGEND_OFFSET = 6                  # from the plot's edge (0.5 em)
LEGEND_HANDLE = 23                 # sample line length (2 em)
LEGEND_TEXT_PAD = 9                # between the sample and the label (0.8 em)
LEGEND_SPACING = 4                 # between entries


def _legend(plot, entries, where: str, face) -> None:
    """A framed box of (sample, label) rows in the plot, at ``where`` ("upper left",
    "upper right", or "best": the corner covering the fewest drawn pixels)."""
    row_height = face.height + LEGEND_SPACING
    width = 2 * LEGEND_PAD + LEGEND_HANDLE + LEGEND_TEXT_PAD + \
        max(face.width(label) for label, _, _ in entries)
    height = 2 * LEGEND_PAD + len(entries) * row_height - LEGEND_SPACING
    rows, columns = plot.shape
    if width + 2 * LEGEND_OFFSET > columns or height + 2 * LEGEND_OFFSET > rows:
        return                                       # no room
    places = {"upper right": (LEGEND_OFFSET, columns - LEGEND_OFFSET - width),
              "upper left": (LEGEND_OFFSET, LEGEND_OFFSET),
              "lower left": (rows - LEGEND_OFFSET - height, LEGEND_OFFSET),
              "lower right": (rows - LEGEND_OFFSET - height, columns - LEGEND_OFFSET - width)}
    if where == "best":
        drawn = plot >= FIRST_COLOR
        drawn &= plot != GRID
        where = min(places, key=lambda k: int(np.count_nonzero(
            drawn[places[k][0]:places[k][0] + height, places[k][1]:places[k][1] + width])))
    top, left = places[where]
    box = plot[top:top + height, left:left + width]
    box[:] = UNDER_BOX[box]                    # what it covers shows through, faded
    box[[0, -1], :] = FRAME
    box[:, [0, -1]] = FRAME
    for k, (label, (kind, how), color) in enumerate(entries):
        middle = LEGEND_PAD + k * row_height + face.height // 2
        sample = box[middle - 6:middle + 7, LEGEND_PAD:LEGEND_PAD + LEGEND_HANDLE]
        if kind == "line":
            centre = sample.shape[0] / 2
            _line(sample, np.array([0.0, LEGEND_HANDLE]), np.array([centre, centre]), how,
                  color)
        else:
            _stamp_points(sample, np.array([LEGEND_HANDLE / 2]),
                          np.array([sample.shape[0] / 2]), how, color)
        _text(box, label, face, LEGEND_PAD + LEGEND_HANDLE + LEGEND_TEXT_PAD, middle,
              "left", "center")


# --- PNG ----------------------------------------------------------------------------------

def png(pixels: np.ndarray, palette=PALETTE, level: int = ZLIB_LEVEL) -> bytes:
    """An 8-bit palette PNG of ``pixels`` (rows of palette indices): the signature, IHDR,
    PLTE, one IDAT of the rows (each with filter type 0, none) and IEND."""
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), np.uint8)
    rows[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    colors = bytes(value for rgb in palette for value in rgb)
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header), _chunk(b"PLTE", colors),
                     _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
                     _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data))

"""The figures drawn without matplotlib (``raster``): each series' pixels where its data are,
axes whose ticks sit at their values, the legend where it was asked for, text from the glyph
table, and PNG files that an independent decoder reads back as the pixels drawn."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from mptcp_fast.analysis import figures, glyphs, raster, timeseries
from mptcp_fast.analysis.model import build_model
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(data: bytes) -> np.ndarray:
    """The RGB pixels of an 8-bit palette PNG without interlace or filters (what ``raster``
    writes), read chunk by chunk, every CRC checked."""
    assert data[:8] == SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack_from(">I", data, at + 8 + length)
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + length
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 3, 0)
    palette = np.frombuffer(dict(chunks)[b"PLTE"], np.uint8).reshape(-1, 3)
    rows = np.frombuffer(zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT")),
                         np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()                      # filter type 0 on every row
    return palette[rows[:, 1:]]


def rgb(index: int) -> tuple:
    return raster.PALETTE[index]


def colour_of(k: int) -> tuple:
    return raster.COLORS[k]


def one_axes(artists, legend="upper left", size=(6, 4)) -> dict:
    return {"file": "test.png", "size": size, "layout": (1, 1),
            "axes": [{"title": "a title", "xlabel": "time (s)", "ylabel": "value",
                      "legend": legend, "artists": artists}]}


def scatter(x, y, color, marker="^", s=30, label="points") -> dict:
    return {"kind": "scatter", "x": np.asarray(x, float), "y": np.asarray(y, float),
            "s": s, "marker": marker, "color": color, "label": label}


def line(x, y, color, style="-", kind="plot", label="a line") -> dict:
    return {"kind": kind, "x": np.asarray(x, float), "y": np.asarray(y, float),
            "style": style, "color": color, "label": label}


def drawn(figure) -> tuple:
    """(RGB pixels read back from the PNG, the frame of each axes)."""
    pixels = read_png(raster.png(raster.render(figure)))
    return pixels, raster.layout(figure)


def legend_box(pixels, frame) -> tuple:
    """(top, bottom, left, right) of the legend's frame in the plot (its grey border)."""
    plot = pixels[frame.top:frame.bottom, frame.left:frame.right]
    rows, columns = np.nonzero(np.all(plot == rgb(raster.FRAME), axis=-1))
    return (frame.top + rows.min(), frame.top + rows.max() + 1,
            frame.left + columns.min(), frame.left + columns.max() + 1)


def painted(pixels, frame, color, without=None) -> set:
    """The (row, column) pixels of the plot area that have ``color``, those inside the box
    ``without`` left out."""
    plot = pixels[frame.top:frame.bottom, frame.left:frame.right]
    rows, columns = np.nonzero(np.all(plot == color, axis=-1))
    out = set(zip((rows + frame.top).tolist(), (columns + frame.left).tolist()))
    if without is not None:
        top, bottom, left, right = without
        out = {(r, c) for r, c in out if not (top <= r < bottom and left <= c < right)}
    return out


def test_the_png_reads_back_as_the_pixels_drawn():
    figure = one_axes([scatter([0, 1, 2], [3, 1, 2], 0), line([0, 2], [0, 3], 1)])
    canvas = raster.render(figure)
    data = raster.png(canvas)
    assert data[:8] == SIGNATURE
    pixels = read_png(data)
    assert pixels.shape == (400, 600, 3)
    assert np.array_equal(pixels, np.array(raster.PALETTE, np.uint8)[canvas])
    image = pytest.importorskip("PIL.Image")
    with image.open(io.BytesIO(data)) as decoded:       # a decoder of its own
        assert decoded.size == (600, 400)
        assert np.array_equal(np.asarray(decoded.convert("RGB")), pixels)


def test_markers_are_stamped_at_the_pixels_of_their_points():
    x, y = [0.0, 2.5, 10.0, 4.0], [0.0, 100.0, 50.0, 20.0]
    figure = one_axes([scatter(x, y, 2), scatter([1.0], [90.0], 3, marker=".", s=4)],
                      legend="upper right")
    pixels, (frame,) = drawn(figure)
    # the limits are the data's with 5 % margins
    assert (frame.x.low, frame.x.high) == pytest.approx((-0.5, 10.5))
    assert (frame.y.low, frame.y.high) == pytest.approx((-5.0, 105.0))
    box = legend_box(pixels, frame)
    centres = [frame.pixel(a, b) for a, b in zip(x, y)]
    triangles = painted(pixels, frame, colour_of(2), without=box)
    for row, column in centres:
        assert tuple(pixels[row, column]) == colour_of(2)
    # nothing of that colour beyond a marker's reach of a point (the legend aside)
    assert all(min(max(abs(r - a), abs(c - b)) for a, b in centres) <= 4 for r, c in triangles)
    # a triangle: wider at its base than at its apex
    row, column = centres[3]
    assert tuple(pixels[row + 3, column - 3]) == colour_of(2)
    assert tuple(pixels[row - 3, column - 3]) != colour_of(2)
    row, column = frame.pixel(1.0, 90.0)
    assert tuple(pixels[row, column]) == colour_of(3)
    assert len(painted(pixels, frame, colour_of(3), without=box)) == 4      # a 2 x 2 dot


def test_ticks_sit_at_round_values_and_are_labelled():
    figure = one_axes([scatter([0, 10], [0, 1200], 0)])
    pixels, (frame,) = drawn(figure)
    assert frame.x.ticks == [0, 2, 4, 6, 8, 10]
    assert frame.x.labels == ["0", "2", "4", "6", "8", "10"]
    assert frame.y.labels == ["0", "250", "500", "750", "1000", "1250"]   # within -60 .. 1260
    black = rgb(raster.BLACK)
    for value in frame.x.ticks:
        column = frame.left + int(np.floor(frame.columns([value])[0]))
        # the tick mark below the frame, and the label's ink below the mark
        assert all(tuple(p) == black for p in pixels[frame.bottom + 1:frame.bottom + 6, column])
        label = pixels[frame.bottom + 10:frame.bottom + 26, column - 8:column + 9]
        assert (label.sum(axis=-1) < 3 * 128).any()
    for value in frame.y.ticks:
        row = frame.top + int(np.floor(frame.rows([value])[0]))
        assert all(tuple(p) == black for p in pixels[row, frame.left - 6:frame.left - 1])
    # the frame: black lines around the plot area
    assert all(tuple(p) == black for p in pixels[frame.bottom, frame.left:frame.right])
    assert all(tuple(p) == black for p in pixels[frame.top:frame.bottom, frame.left - 1])


@pytest.mark.parametrize("low, high, at_most, labels", [
    (0.28, 0.75, 6, ["0.3", "0.4", "0.5", "0.6", "0.7"]),
    (-0.5, 10.5, 5, ["0.0", "2.5", "5.0", "7.5", "10.0"]),
    (-0.5, 10.5, 4, ["0", "5", "10"]),
    (28.2, 33.8, 9, ["29", "30", "31", "32", "33"]),
    (0.0, 3e-4, 3, ["0.0000", "0.0001", "0.0002", "0.0003"]),
    (-20.0, 20.0, 4, ["-20", "-10", "0", "10", "20"]),
])
def test_tick_steps_are_round_and_their_labels_exact(low, high, at_most, labels):
    assert raster._ticks(low, high, at_most)[1] == labels


def test_a_line_covers_the_pixels_between_its_points():
    # flat at 1 from x = 0 to 5, up to 3 at x = 5, flat to x = 10
    figure = one_axes([line([0, 5, 5, 10], [1, 1, 3, 3], 1)], legend="lower right")
    pixels, (frame,) = drawn(figure)
    box = legend_box(pixels, frame)
    ink = painted(pixels, frame, colour_of(1), without=box)
    low_row = frame.pixel(0, 1)[0]
    high_row = frame.pixel(0, 3)[0]
    for x in np.linspace(0.1, 4.9, 30):
        column = frame.pixel(x, 1)[1]
        rows = {r for r, c in ink if c == column}
        assert low_row in rows and max(rows) - min(rows) <= 2        # two pixels thick
    column = frame.pixel(5, 2)[1]
    rows = {r for r, c in ink if c == column}
    assert set(range(high_row, low_row + 1)) <= rows                 # the rise, every row
    for x in np.linspace(5.1, 9.9, 30):
        assert frame.pixel(x, 3) in ink and frame.pixel(x, 1) not in ink


def test_a_dashed_line_has_gaps_and_a_step_holds_its_value():
    figure = one_axes([line([0, 10], [0, 0], 0, style="--"),
                       line([0, 4, 8], [1, 2, 3], 2, kind="step")], legend="lower right")
    pixels, (frame,) = drawn(figure)
    box = legend_box(pixels, frame)
    row = frame.pixel(0, 0)[0]
    columns = sorted(c for r, c in painted(pixels, frame, colour_of(0), without=box)
                     if r == row)
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(runs) > 20
    assert all(6 <= len(run) <= 10 for run in runs[1:-1])             # dashes of ~8 px
    steps = painted(pixels, frame, colour_of(2), without=box)
    for x in (1.0, 3.0):
        assert frame.pixel(x, 1) in steps and frame.pixel(x, 2) not in steps
    for x in (5.0, 7.0):
        assert frame.pixel(x, 2) in steps and frame.pixel(x, 1) not in steps


@pytest.mark.parametrize("legend, where", [("upper left", ("top", "left")),
                                           ("upper right", ("top", "right")),
                                           ("best", ("bottom", "right"))])
def test_the_legend_goes_where_it_is_asked_or_where_the_data_are_not(legend, where):
    # data along the top and the left: "best" is the lower right corner
    artists = [line([0, 10], [10, 10], 0, label="top"), line([0, 0.2], [0, 10], 1, label="left")]
    pixels, (frame,) = drawn(one_axes(artists, legend=legend))
    top, bottom, left, right = legend_box(pixels, frame)
    middle_row, middle_column = (frame.top + frame.bottom) / 2, (frame.left + frame.right) / 2
    assert (bottom < middle_row) if where[0] == "top" else (top > middle_row)
    assert (right < middle_column) if where[1] == "left" else (left > middle_column)
    # a sample of each entry's colour inside the box
    inside = pixels[top:bottom, left:right]
    for k in (0, 1):
        assert np.all(inside == colour_of(k), axis=-1).any()
    # the lines it covers show through, faded: in the upper left corner both, in the upper
    # right the top one, in the lower right none
    faded = [rgb(raster.FIRST_FADED + k) for k in (0, 1)]
    covered = {"upper left": [True, True], "upper right": [True, False], "best": [False, False]}
    assert [bool(np.all(inside == f, axis=-1).any()) for f in faded] == covered[legend]
    assert all(v > c for f, k in zip(faded, (0, 1)) for v, c in zip(f, colour_of(k)) if c < 255)


def test_the_glyph_table_has_every_printable_character():
    for size in glyphs.SIZES:
        face = glyphs.face(size)
        for code in range(32, 127):
            coverage = face.render(chr(code))
            assert coverage.shape[0] == face.height
            assert (coverage.max() > 0) == (chr(code) != " ")
        assert face.width("") == 0 and face.width("ab") >= face.width("a") + 1
        assert np.array_equal(face.render("\u00e9"), face.render("?"))   # not in the table
    assert glyphs.face(17).height > glyphs.face(14).height > glyphs.face(12).height


def test_titles_and_labels_are_inked_where_they_belong():
    pixels, (frame,) = drawn(one_axes([scatter([0, 1], [0, 1], 0)]))
    dark = pixels.sum(axis=-1) < 3 * 100
    assert dark[:frame.top - 8, frame.left:frame.right].any()           # the title
    assert dark[frame.bottom + 28:, frame.left:frame.right].any()       # the x label
    assert dark[frame.top:frame.bottom, :18].any()                      # the y label, turned
    assert not dark[:, -5:].any() and not dark[-3:, :].any()            # margins stay white


@pytest.fixture(scope="module")
def shipped_figures():
    model = build_model(SHIPPED_CAPTURE, packets=True)
    (series,) = timeseries.model_series(model, delivery_pairs=False)
    return figures.figure_data(series)


def test_every_point_of_the_sequence_graph_is_drawn_in_its_subflows_colour(shipped_figures):
    """Each artist of the shipped capture's sequence graph, drawn alone: each of its points'
    pixel has its subflow's colour."""
    sequence = shipped_figures[0]
    checked = 0
    for spec in sequence["axes"]:
        for artist in spec["artists"]:
            alone = {**sequence, "layout": (1, 1), "size": (6, 4.5),
                     "axes": [{**spec, "artists": [artist], "legend": "lower right"}]}
            pixels, (frame,) = drawn(alone)
            for x, y in zip(artist["x"].tolist(), artist["y"].tolist()):
                row, column = frame.pixel(x, y)
                assert tuple(pixels[row, column]) == colour_of(artist["color"])
                checked += 1
    assert checked > 100


def test_the_shipped_figures_show_every_subflow_and_direction(shipped_figures, tmp_path):
    paths = figures.draw(shipped_figures, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"connection1-{n}.png" for n in
                                                     ("sequence", "throughput", "delivery")]
    for path, figure in zip(paths, shipped_figures):
        with open(path, "rb") as f:
            pixels = read_png(f.read())
        for spec, frame in zip(figure["axes"], raster.layout(figure)):
            plot = pixels[frame.top:frame.bottom, frame.left:frame.right]
            for artist in spec["artists"]:
                if artist["color"] is not None:
                    assert np.all(plot == colour_of(artist["color"]), axis=-1).any()

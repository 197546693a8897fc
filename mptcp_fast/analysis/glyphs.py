"""Text for the figures without a font engine: printable ASCII of DejaVu Sans, rendered once
(by FreeType, through matplotlib) at the few pixel sizes the figures use, kept as a table of
antialiased glyph bitmaps in ``mptcp_fast/data/glyphs-dejavu-sans.bin`` (the font's licence:
``mptcp_fast/data/LICENSE-DejaVu``).

    face = glyphs.face(SIZE)             # the glyphs of one size (pixels per em)
    width = face.width("time (s)")       # the advance of a line of text, in pixels
    alpha = face.render("time (s)")      # uint8 coverage (0 .. 255), ascent + descent rows

The table is made by ``python -m mptcp_fast.analysis.glyphs [OUT]`` (needs matplotlib);
characters outside it are drawn as "?".

The file: ``MAGIC``, then zlib of a little-endian u32 header length, the header (JSON:
{"font", "sizes": {size: {"ascent", "descent", "glyphs": {code: [advance in 1/64 px, left,
top, width, height, offset]}}}}) and every glyph's coverage, row by row, at its offset.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np

__all__ = ["Face", "face", "SIZES", "make_table"]

MAGIC = b"MFGLYPH1"
TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                     "glyphs-dejavu-sans.bin")
# the point sizes of the figures' text at 100 dpi: titles (12 pt), labels and ticks (10 pt),
# legends (matplotlib's "small": 10 pt / 1.2), by their names in the table (pixels, rounded)
POINTS = {17: 12.0, 14: 10.0, 12: 10.0 / 1.2}
SIZES = tuple(POINTS)
CHARACTERS = range(32, 127)


class Face:
    """The glyphs of one size: ``ascent`` and ``descent`` (pixels above and below the
    baseline that every glyph fits in), ``render`` a line of text."""

    def __init__(self, entry: dict, coverage: bytes):
        self.ascent, self.descent = entry["ascent"], entry["descent"]
        self.height = self.ascent + self.descent
        self._glyphs = {}
        for code, (advance, left, top, width, height, offset) in entry["glyphs"].items():
            bitmap = np.frombuffer(coverage, np.uint8, width * height, offset)
            self._glyphs[chr(int(code))] = (advance, left, top, bitmap.reshape(height, width))
        self._missing = self._glyphs["?"]

    def _glyph(self, character: str) -> tuple:
        return self._glyphs.get(character, self._missing)

    def width(self, text: str) -> int:
        """The line's advance in whole pixels."""
        return (sum(self._glyph(c)[0] for c in text) + 63) // 64

    def render(self, text: str) -> np.ndarray:
        """The line's coverage: ``height`` rows (the baseline ``ascent`` rows down) of
        ``width(text)`` columns, 0 (none) to 255 (full)."""
        out = np.zeros((self.height, max(self.width(text), 1)), np.uint8)
        pen = 0                                         # in 1/64 pixel
        for character in text:
            advance, left, top, bitmap = self._glyph(character)
            _paint(out, bitmap, (pen + 32) // 64 + left, self.ascent - top)
            pen += advance
        return out


def _paint(out, bitmap, column: int, row: int) -> None:
    """``bitmap`` onto ``out`` at (row, column), clipped, the higher coverage winning."""
    height, width = bitmap.shape
    r0, c0 = max(row, 0), max(column, 0)
    r1, c1 = min(row + height, out.shape[0]), min(column + width, out.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    target = out[r0:r1, c0:c1]
    np.maximum(target, bitmap[r0 - row:r1 - row, c0 - column:c1 - column], out=target)


_FACES: dict = {}


def face(size: int) -> Face:
    """The glyphs of ``size`` (one of ``SIZES``), read from the table on first use."""
    if not _FACES:
        header, coverage = _read(TABLE)
        for name, entry in header["sizes"].items():
            _FACES[int(name)] = Face(entry, coverage)
    return _FACES[size]


def _read(path) -> tuple:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a glyph table")
    body = zlib.decompress(data[len(MAGIC):])
    (length,) = struct.unpack_from("<I", body)
    return json.loads(body[4:4 + length]), body[4 + length:]


def make_table(path=TABLE) -> None:
    """Render the table with FreeType through matplotlib (its copy of DejaVu Sans, hinted
    as matplotlib hints it) and write it to ``path``."""
    from matplotlib import font_manager, ft2font
    font_file = font_manager.findfont("DejaVu Sans", fallback_to_default=False)
    sizes, coverage = {}, bytearray()
    for size, points in POINTS.items():
        font = ft2font.FT2Font(font_file)
        font.set_size(points, 100)
        glyphs, ascent, descent = {}, 0, 0
        for code in CHARACTERS:
            advance, left, top, bitmap = _render_glyph(font, chr(code))
            glyphs[str(code)] = [advance, left, top, bitmap.shape[1], bitmap.shape[0],
                                 len(coverage)]
            coverage += bitmap.tobytes()
            ascent, descent = max(ascent, top), max(descent, bitmap.shape[0] - top)
        sizes[str(size)] = {"ascent": ascent, "descent": descent, "glyphs": glyphs}
    header = json.dumps({"font": f"DejaVu Sans ({os.path.basename(font_file)}), rendered by "
                                 "FreeType at 100 dpi", "sizes": sizes},
                        separators=(",", ":")).encode()
    body = struct.pack("<I", len(header)) + header + bytes(coverage)
    with open(path, "wb") as f:
        f.write(MAGIC + zlib.compress(body, 9))


def _render_glyph(font, character: str) -> tuple:
    """(advance in 1/64 px, left bearing, rows above the baseline, coverage) of one glyph,
    hinted as matplotlib's Agg backend hints text; the advance is the unhinted one (whole
    pixels per glyph would space a line wider than matplotlib lays it out)."""
    from matplotlib import ft2font
    flags = ft2font.LoadFlags.FORCE_AUTOHINT
    glyph = font.load_char(ord(character), flags=flags)
    advance = round(glyph.linearHoriAdvance / 1024)      # unhinted: 16.16 to 1/64 pixel
    font.set_text(character, 0, flags=flags)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image())
    # the image: the text's ascent, then its descent (get_descent, 1/64 px), a pixel of
    # padding below; its first column is the glyph's left bearing (get_bitmap_offset) from
    # the pen
    baseline = image.shape[0] - 1 - font.get_descent() // 64     # the first row below it
    rows = np.flatnonzero(image.any(axis=1))
    columns = np.flatnonzero(image.any(axis=0))
    if not len(rows):                                  # a space
        return advance, 0, 0, np.zeros((0, 0), np.uint8)
    left = int(columns[0]) + round(font.get_bitmap_offset()[0] / 64)
    top = baseline - int(rows[0])
    inked = image[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    return advance, left, top, np.ascontiguousarray(inked)

if __name__ == "__main__":
    import sys
    make_table(sys.argv[1] if len(sys.argv) > 1 else TABLE)

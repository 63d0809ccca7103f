"""A line chart as a PNG, drawn in pure Python (no imaging dependency: the operator reports' SVGs are drawn the same
way, ``tooling.svg``). Pure: numbers in, PNG bytes out.

The chart: a white canvas, a frame, four horizontal grid lines and each series as a 2-pixel line scaled to the
common range of all series. Labels belong in the HTML report next to it; a PNG is for pasting the curve elsewhere.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence

Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)
GRID: Colour = (225, 228, 232)
FRAME: Colour = (87, 96, 106)
#: The series colours (``tooling.svg.COLOURS``' first ones).
LINE_COLOURS: tuple[Colour, ...] = ((9, 105, 218), (207, 34, 46), (26, 127, 55))
MARGIN = 10


class Canvas:
    """An RGB raster, (0, 0) at the top left."""

    def __init__(self, width: int, height: int, background: Colour = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, colour: Colour) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at : at + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: Colour, thick: int = 1) -> None:
        """Bresenham's line, ``thick`` pixels down from each point."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            for extra in range(thick):
                self.dot(x0, y0 + extra, colour)
            if x0 == x1 and y0 == y1:
                return
            double = 2 * error
            if double >= dy:
                error += dy
                x0 += sx
            if double <= dx:
                error += dx
                y0 += sy

    def png(self) -> bytes:
        rows = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows, 6))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def line_chart(series: Sequence[Sequence[float]], width: int = 900, height: int = 300) -> bytes:
    """The series (equally spaced points each) as one PNG chart."""
    canvas = Canvas(width, height)
    left, top, right, bottom = MARGIN, MARGIN, width - MARGIN - 1, height - MARGIN - 1
    for step in range(1, 4):
        y = top + (bottom - top) * step // 4
        canvas.line(left, y, right, y, GRID)
    for x0, y0, x1, y1 in ((left, top, right, top), (left, bottom, right, bottom), (left, top, left, bottom)):
        canvas.line(x0, y0, x1, y1, FRAME)
    canvas.line(right, top, right, bottom, FRAME)
    values = [v for points in series for v in points]
    if not values:
        return canvas.png()
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    for index, points in enumerate(series):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        count = max(len(points) - 1, 1)
        pixels = [
            (left + round(i * (right - left) / count), bottom - round((v - low) / span * (bottom - top)))
            for i, v in enumerate(points)
        ]
        for (x0, y0), (x1, y1) in itertools.pairwise(pixels):
            canvas.line(x0, y0, x1, y1, colour, thick=2)
    return canvas.png()

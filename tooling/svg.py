"""Small inline-SVG drawing helpers for the operator reports (no plotting dependency, as ``tooling.uat.plot``). Pure.

Numbers in, SVG text out: the chaos timeline and the bench history draw their panels with these.
"""

from __future__ import annotations

import html

#: Series colours, in the order series are drawn (the UAT plot's palette).
COLOURS = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0550ae", "#57606a")


class Axes:
    """Maps (x, value) to the pixels of one panel: ``left``..``right`` wide, ``top``..``top + height`` high."""

    def __init__(
        self,
        x_low: float,
        x_high: float,
        low: float,
        high: float,
        *,
        left: float,
        right: float,
        top: float,
        height: float,
    ) -> None:
        self.x_low, self.x_span = x_low, (x_high - x_low) or 1.0
        self.low, self.range = low, (high - low) or 1.0
        self.left, self.width = left, right - left
        self.top, self.height = top, height

    def x(self, value: float) -> float:
        return self.left + (value - self.x_low) / self.x_span * self.width

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.low) / self.range * self.height


def polyline(points: list[tuple[float, float]], colour: str, width: float = 1.5) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f"<polyline fill='none' stroke='{colour}' stroke-width='{width}' points='{path}'/>"


def text(x: float, y: float, content: str, size: int = 11, anchor: str = "start", colour: str = "#000") -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{colour}'>"
        f"{html.escape(content)}</text>"
    )


def svg(width: int, height: int, body: list[str], label: str) -> str:
    """The drawing as one ``<svg>`` element (standalone: it carries its namespace)."""
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"role='img' aria-label='{html.escape(label)}' font-family='sans-serif'>{''.join(body)}</svg>"
    )

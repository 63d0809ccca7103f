"""A plot of one session's day for the HTML report: an inline SVG (no plotting dependency). Pure functions.

Top panel: each symbol's price from its bars (one close per minute), as the percentage move from its first bar so
symbols of any price share one axis; signals are triangles on their symbol's line (up for buy, down for sell) and
fills are dots. Bottom panel: the account's P&L over time (``daily_pnl`` of ``account.v1``; the running sum of realized
P&L from the fills when the account has none within the bars' hours, as on ibsim's accelerated clock). The
queries come from the session's own warehouse (``DAY_QUERIES``).
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

from tooling.uat.model import Evidence, number

#: The session's warehouse queries behind the plot (tables unqualified: the session's database is the default).
DAY_QUERIES: list[tuple[str, str]] = [
    (
        "day_prices",
        "SELECT symbol, toStartOfMinute(start) AS minute, argMax(close, start) AS close FROM md_bars_5s_v1 FINAL "
        "GROUP BY symbol, minute ORDER BY minute",
    ),
    ("day_signals", "SELECT bar_start, symbol, toString(side) AS side FROM signals_v1 FINAL ORDER BY bar_start"),
    (
        "day_fills",
        "SELECT exec_time, symbol, toString(side) AS side, price, realized_pnl FROM executions_v1 FINAL "
        "ORDER BY exec_time",
    ),
    ("day_pnl", "SELECT time, daily_pnl FROM account_v1 FINAL WHERE daily_pnl IS NOT NULL ORDER BY time"),
]

_COLOURS = [
    "#0969da",
    "#cf222e",
    "#1a7f37",
    "#9a6700",
    "#8250df",
    "#bf3989",
    "#0550ae",
    "#57606a",
    "#fb8500",
    "#2a9d8f",
]
_WIDTH, _PRICE_HEIGHT, _PNL_HEIGHT, _PAD = 760, 220, 110, 40


@dataclass
class DayData:
    """What the plot shows, as plain values (times are UTC datetimes)."""

    prices: dict[str, list[tuple[dt.datetime, float]]] = field(default_factory=dict)
    signals: list[tuple[dt.datetime, str, str]] = field(default_factory=list)  # (time, symbol, side)
    fills: list[tuple[dt.datetime, str, str, float]] = field(default_factory=list)  # (time, symbol, side, price)
    pnl: list[tuple[dt.datetime, float]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.prices and not self.pnl


def _time(value: Any) -> dt.datetime:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def day_data(evidence: dict[str, Evidence]) -> DayData:
    """The plot's values from the ``DAY_QUERIES`` answers (a missing answer plots as nothing)."""

    def rows(name: str) -> list[list[Any]]:
        return evidence[name].rows if name in evidence else []

    data = DayData()
    for symbol, minute, close in rows("day_prices"):
        data.prices.setdefault(str(symbol), []).append((_time(minute), number(close)))
    data.signals = [(_time(t), str(symbol), str(side)) for t, symbol, side in rows("day_signals")]
    fills = rows("day_fills")
    data.fills = [(_time(t), str(symbol), str(side), number(price)) for t, symbol, side, price, _ in fills]
    data.pnl = [(_time(t), number(pnl)) for t, pnl in rows("day_pnl")]
    bar_times = [t for series in data.prices.values() for t, _ in series]
    if bar_times and not any(min(bar_times) <= t <= max(bar_times) for t, _ in data.pnl):
        # On ibsim the bars and fills are on the simulated market clock and account updates on the wall clock:
        # the two do not share an axis, so the P&L is read from the fills instead.
        data.pnl = []
    if not data.pnl and fills:
        running = 0.0
        for t, _, _, _, realized in fills:
            running += number(realized)
            data.pnl.append((_time(t), running))
    return data


def _price_at(series: list[tuple[dt.datetime, float]], at: dt.datetime) -> float | None:
    before = [price for t, price in series if t <= at]
    return before[-1] if before else (series[0][1] if series else None)


class _Axes:
    """Maps time and value to one panel's pixels."""

    def __init__(self, start: dt.datetime, end: dt.datetime, low: float, high: float, top: int, height: int) -> None:
        self.start, self.span = start, max((end - start).total_seconds(), 1.0)
        self.low, self.range = low, (high - low) or 1.0
        self.top, self.height = top, height

    def x(self, at: dt.datetime) -> float:
        return _PAD + (at - self.start).total_seconds() / self.span * (_WIDTH - 2 * _PAD)

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.low) / self.range * self.height


def _line(points: list[tuple[float, float]], colour: str) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{path}'/>"


def _price_panel(data: DayData, start: dt.datetime, end: dt.datetime) -> list[str]:
    moves = {
        symbol: [(t, (price / series[0][1] - 1) * 100 if series[0][1] else 0.0) for t, price in series]
        for symbol, series in data.prices.items()
    }
    values = [v for series in moves.values() for _, v in series] or [0.0]
    axes = _Axes(start, end, min(values), max(values), 20, _PRICE_HEIGHT)
    colour = {symbol: _COLOURS[i % len(_COLOURS)] for i, symbol in enumerate(sorted(moves))}
    parts = [f"<text x='{_PAD}' y='14' font-size='11'>price move % (from first bar), signals ▲▼, fills ●</text>"]
    for i, (symbol, series) in enumerate(sorted(moves.items())):
        parts.append(_line([(axes.x(t), axes.y(v)) for t, v in series], colour[symbol]))
        parts.append(
            f"<text x='{_WIDTH - _PAD + 4}' y='{30 + 12 * i}' font-size='10' fill='{colour[symbol]}'>"
            f"{html.escape(symbol)}</text>"
        )
    for at, symbol, side in data.signals:
        level = _price_at(moves.get(symbol, []), at)
        if level is not None:
            x, y = axes.x(at), axes.y(level)
            tip = y - 7 if side.upper().startswith("B") else y + 7
            parts.append(
                f"<polygon points='{x - 4:.1f},{y:.1f} {x + 4:.1f},{y:.1f} {x:.1f},{tip:.1f}' "
                f"fill='{colour.get(symbol, '#000')}'><title>{html.escape(f'{symbol} {side} signal')}</title>"
                "</polygon>"
            )
    for at, symbol, side, price in data.fills:
        first = data.prices.get(symbol)
        if first and first[0][1]:
            y = axes.y((price / first[0][1] - 1) * 100)
            parts.append(
                f"<circle cx='{axes.x(at):.1f}' cy='{y:.1f}' r='3.5' fill='none' stroke='#000'>"
                f"<title>{html.escape(f'{symbol} {side} fill at {price}')}</title></circle>"
            )
    return parts


def _pnl_panel(data: DayData, start: dt.datetime, end: dt.datetime) -> list[str]:
    top = _PRICE_HEIGHT + 50
    values = [v for _, v in data.pnl] or [0.0]
    low, high = min([*values, 0.0]), max([*values, 0.0])
    axes = _Axes(start, end, low, high, top, _PNL_HEIGHT)
    parts = [
        f"<text x='{_PAD}' y='{top - 6}' font-size='11'>P&amp;L {values[-1]:,.2f} (min {low:,.2f}, max {high:,.2f})"
        "</text>",
        f"<line x1='{_PAD}' x2='{_WIDTH - _PAD}' y1='{axes.y(0):.1f}' y2='{axes.y(0):.1f}' stroke='#ccc'/>",
    ]
    if data.pnl:
        parts.append(_line([(axes.x(t), axes.y(v)) for t, v in data.pnl], "#1a7f37"))
    return parts


def render_day_svg(title: str, data: DayData) -> str:
    """The day as one inline SVG; a short note instead when the session recorded no bars and no P&L."""
    if data.empty:
        return f"<p>{html.escape(title)}: no bars or P&amp;L recorded, nothing to plot</p>"
    times = [t for series in data.prices.values() for t, _ in series] + [t for t, _ in data.pnl]
    times += [t for t, *_ in data.signals] + [t for t, *_ in data.fills]
    start, end = min(times), max(times)
    height = _PRICE_HEIGHT + _PNL_HEIGHT + 80
    axis = (
        f"<text x='{_PAD}' y='{height - 8}' font-size='10'>{start:%Y-%m-%d %H:%M} UTC</text>"
        f"<text x='{_WIDTH - _PAD}' y='{height - 8}' font-size='10' text-anchor='end'>{end:%H:%M} UTC</text>"
    )
    body = "".join([*_price_panel(data, start, end), *_pnl_panel(data, start, end), axis])
    return (
        f"<figure><figcaption>{html.escape(title)}: {len(data.prices)} symbols, {len(data.signals)} signals, "
        f"{len(data.fills)} fills</figcaption><svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' "
        f"height='{height}' viewBox='0 0 {_WIDTH} {height}' role='img'>{body}</svg></figure>"
    )

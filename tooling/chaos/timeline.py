"""The campaign as a picture: throughput over time with every fault, its recovery, unexpected exits and routed orders
on the same time axis (an inline SVG in ``report.html``, next to the JSON report). Pure: report dict in, text out.

Times are seconds since the faulted window started (the campaign's ``t0``), as in the JSON report. Faults never
overlap: the campaign injects one, waits for recovery, then goes on. Throughput is the rate between consecutive
samples of the quotes' and bars' high watermarks (``throughput_samples``, a second apart at least), drawn at the end
of each interval.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from tooling.chaos.report import describe_targets
from tooling.svg import Axes, polyline, svg, text

_WIDTH, _LEFT, _RIGHT = 900, 60, 880
_QUOTES_TOP, _QUOTES_HEIGHT = 24, 150
_BARS_TOP, _BARS_HEIGHT = 206, 60
_LANE_TOP = 300  # the faults lane, then the orders lane
_HEIGHT = 380
_FAULT, _RECOVERING, _RECOVERED, _LOST = "#cf222e", "#d4a72c", "#1a7f37", "#6e7781"


@dataclass(frozen=True)
class FaultSpan:
    """One fault on the time axis: injected → restored (the fault's own duration) → recovered (data flows again)."""

    index: int
    kind: str
    injected: float
    restored: float | None
    recovered: float | None
    error: str | None = None

    @property
    def label(self) -> str:
        if self.recovered is None:
            return f"#{self.index} {self.kind}: NOT recovered" + (f" ({self.error})" if self.error else "")
        assert self.restored is not None
        return f"#{self.index} {self.kind}: recovered {self.recovered - self.restored:.1f}s after it ended"


@dataclass
class Timeline:
    """What the picture shows, as plain values."""

    duration: float
    faults: list[FaultSpan] = field(default_factory=list)
    rates: list[tuple[float, float, float]] = field(default_factory=list)  # (t, quotes/s, bars/s)
    exits: list[tuple[float, str]] = field(default_factory=list)  # (t, process) that exited on its own
    orders: list[float] = field(default_factory=list)  # t of each routed order


#: Samples closer than this are not a rate of their own (a few records in 10 ms would read as a spike): the interval
#: runs on to the next sample.
_MIN_INTERVAL = 1.0


def _rates(samples: list[list[float]]) -> list[tuple[float, float, float]]:
    rates: list[tuple[float, float, float]] = []
    if not samples:
        return rates
    t1, q1, b1 = samples[0]
    for t2, q2, b2 in samples[1:]:
        if t2 - t1 >= _MIN_INTERVAL:
            rates.append((t2, max(q2 - q1, 0) / (t2 - t1), max(b2 - b1, 0) / (t2 - t1)))
            t1, q1, b1 = t2, q2, b2
    return rates


def build_timeline(report: dict[str, Any]) -> Timeline:
    """The timeline's values from a campaign report (``Campaign.report``)."""
    faults = []
    for fault in report.get("faults", []):
        restored, recovery = fault.get("restored_at"), fault.get("recovery_seconds")
        recovered = None if restored is None or recovery is None else round(restored + recovery, 2)
        faults.append(
            FaultSpan(fault["index"], fault["kind"], fault["injected_at"], restored, recovered, fault.get("error"))
        )
    samples = [list(map(float, sample)) for sample in report.get("throughput_samples", [])]
    exits = [(float(e["t"]), str(e["process"])) for e in report.get("unexpected_exits", [])]
    orders = sorted(float(t) for t in report.get("orders_routed_at", []) if t >= 0)
    ends = [float(report.get("minutes") or 0) * 60.0]
    ends += [s[0] for s in samples] + [t for t, _ in exits]
    ends += [f.recovered or f.restored or f.injected for f in faults]
    return Timeline(max(ends), faults, _rates(samples), exits, [t for t in orders if t <= max(ends)])


def _bands(timeline: Timeline, axes: Axes, top: float, bottom: float) -> list[str]:
    """Each fault as shaded bands across the throughput panels: red while it lasts, amber until data flows again
    (grey to the end of the run when it never did)."""
    parts = []
    for fault in timeline.faults:
        restored = fault.restored if fault.restored is not None else fault.injected
        stages = [(fault.injected, restored, _FAULT)]
        stages.append((restored, fault.recovered if fault.recovered is not None else timeline.duration, _RECOVERING))
        if fault.recovered is None:
            stages[-1] = (restored, timeline.duration, _LOST)
        for start, end, colour in stages:
            x1, x2 = axes.x(start), axes.x(end)
            parts.append(
                f"<rect x='{x1:.1f}' y='{top:.1f}' width='{max(x2 - x1, 1.0):.1f}' height='{bottom - top:.1f}' "
                f"fill='{colour}' fill-opacity='0.18'><title>{html.escape(fault.label)}</title></rect>"
            )
    return parts


def _rate_panel(timeline: Timeline, column: int, top: float, height: float, name: str, colour: str) -> list[str]:
    values = [rate[column] for rate in timeline.rates] or [0.0]
    axes = Axes(0.0, timeline.duration, 0.0, max(values) * 1.1 or 1.0, left=_LEFT, right=_RIGHT, top=top, height=height)
    parts = [
        f"<rect x='{_LEFT}' y='{top}' width='{_RIGHT - _LEFT}' height='{height}' fill='none' stroke='#d0d7de'/>",
        text(_LEFT, top - 5, f"{name} (max {max(values):,.1f}, last {values[-1]:,.1f})", colour=colour),
        text(_LEFT - 4, top + 10, f"{max(values) * 1.1:,.0f}", size=9, anchor="end"),
        text(_LEFT - 4, top + height, "0", size=9, anchor="end"),
    ]
    if timeline.rates:
        parts.append(polyline([(axes.x(rate[0]), axes.y(rate[column])) for rate in timeline.rates], colour))
    return parts


def _lanes(timeline: Timeline, axes: Axes) -> list[str]:
    lane = _LANE_TOP
    parts = [text(_LEFT - 4, lane + 12, "faults", size=10, anchor="end")]
    for fault in timeline.faults:
        x = axes.x(fault.injected)
        colour = _RECOVERED if fault.recovered is not None else _FAULT
        end = axes.x(fault.recovered if fault.recovered is not None else timeline.duration)
        parts.append(
            f"<g><title>{html.escape(fault.label)}</title>"
            f"<rect x='{x:.1f}' y='{lane:.1f}' width='{max(end - x, 2.0):.1f}' height='16' fill='{colour}' "
            f"fill-opacity='0.35' stroke='{colour}'/>{text(x + 2, lane + 12, f'#{fault.index}', size=9)}</g>"
        )
    for at, process in timeline.exits:
        x = axes.x(at)
        parts.append(
            f"<g><title>{html.escape(f'{process} exited on its own at t+{at:.1f}s')}</title>"
            + polyline([(x - 4, lane - 8), (x + 4, lane)], "#000", 2)
            + polyline([(x - 4, lane), (x + 4, lane - 8)], "#000", 2)
            + "</g>"
        )
    orders = _LANE_TOP + 34
    parts.append(text(_LEFT - 4, orders + 10, "orders", size=10, anchor="end"))
    parts += [
        f"<line x1='{axes.x(t):.1f}' x2='{axes.x(t):.1f}' y1='{orders}' y2='{orders + 12}' stroke='#8250df'/>"
        for t in timeline.orders
    ]
    return parts


def render_timeline_svg(timeline: Timeline) -> str:
    axes = Axes(0.0, timeline.duration, 0.0, 1.0, left=_LEFT, right=_RIGHT, top=0, height=1)
    parts = _bands(timeline, axes, _QUOTES_TOP, _BARS_TOP + _BARS_HEIGHT)
    parts += _rate_panel(timeline, 1, _QUOTES_TOP, _QUOTES_HEIGHT, "quotes/s into Kafka", "#0969da")
    parts += _rate_panel(timeline, 2, _BARS_TOP, _BARS_HEIGHT, "5 s bars/s into Kafka", "#1a7f37")
    parts += _lanes(timeline, axes)
    for seconds in _ticks(timeline.duration):
        x = axes.x(seconds)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{_HEIGHT - 20}' y2='{_HEIGHT - 15}' stroke='#57606a'/>")
        parts.append(text(x, _HEIGHT - 4, f"t+{seconds:.0f}s", size=9, anchor="middle"))
    return svg(_WIDTH, _HEIGHT, parts, "chaos campaign timeline: throughput, faults, recoveries, routed orders")


def _ticks(duration: float) -> list[float]:
    step = next((s for s in (10, 30, 60, 120, 300, 600) if duration / s <= 12), 1200)
    return [float(t) for t in range(0, int(duration) + 1, step)]


def render_html(report: dict[str, Any], tables: str) -> str:
    """The campaign report page: the timeline, a legend, and the text report's tables as they were printed."""
    e = html.escape
    timeline = build_timeline(report)
    recovered = sum(1 for f in timeline.faults if f.recovered is not None)
    verdict = "PASS" if report.get("ok") else "FAIL"
    legend = (
        f"<span style='color:{_FAULT}'>■</span> fault lasting · <span style='color:{_RECOVERING}'>■</span> until data "
        f"flows end to end again · <span style='color:{_LOST}'>■</span> never recovered · "
        "<b>×</b> a deployable exited on its own · <span style='color:#8250df'>|</span> an order routed"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>chaos seed {e(str(report.get('seed')))}: {verdict}</title></head>"
        "<body style='font-family:sans-serif;margin:2em'>"
        f"<h1>chaos campaign (seed {e(str(report.get('seed')))}): {verdict}</h1>"
        f"<p>{len(timeline.faults)} faults, {recovered} recovered; {len(timeline.orders)} orders routed; "
        f"replay: <code>{e(str(report.get('replay', '')))}</code></p>"
        + "".join(f"<p class='target'>{e(line)}</p>" for line in describe_targets(report))
        + f"<figure>{render_timeline_svg(timeline)}<figcaption class='legend'>{legend}</figcaption></figure>"
        f"<h2>Tables</h2><pre>{e(tables)}</pre></body></html>"
    )

"""The backtest report: ``report.html`` (equity curve, drawdown, per-strategy scores, the trades), ``equity.png``
and ``figures.json`` (every figure of the report), in a directory of its own under the state directory
(``backtests/<UTC time>/``). ``figures`` and ``render_html`` are pure; ``write_report`` writes the files.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tooling.backtest.engine import BacktestResult, Trade
from tooling.backtest.scores import drawdown, signal_scores, summary, trade_scores
from tooling.png import line_chart
from tooling.svg import COLOURS, Axes, polyline, svg, text

#: Rows of the trades table in the HTML (the JSON has every trade).
HTML_TRADES = 500
#: Points drawn per curve (the JSON has every sample).
CURVE_POINTS = 2000
_WIDTH, _LEFT, _RIGHT, _TOP, _HEIGHT = 900, 70, 880, 20, 220


def _trade_row(trade: Trade, marks: dict[str, float]) -> dict[str, Any]:
    mark = marks.get(trade.symbol)
    return {
        "order_id": trade.order_id,
        "strategy": trade.strategy,
        "symbol": trade.symbol,
        "side": trade.side.value,
        "quantity": trade.quantity,
        "entry_time": trade.entry_time.isoformat() if trade.entry_time else None,
        "entry_price": round(trade.entry_price, 4) if trade.quantity else None,
        "exit_time": trade.exit_time.isoformat() if trade.exit_time else None,
        "exit_price": round(trade.exit_price, 4) if trade.exited else None,
        "exit": trade.exit_leg or ("open" if trade.quantity else "unfilled"),
        "commission": round(trade.commission, 2),
        "pnl": round(trade.pnl(mark), 2),
        "r_multiple": None if (r := trade.r_multiple(mark)) is None else round(r, 3),
    }


def figures(result: BacktestResult, meta: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the report, JSON-able."""
    return {
        "meta": meta,
        "summary": summary(result),
        "equity": [[at.isoformat(), value] for at, value in result.equity],
        "drawdown": [[at.isoformat(), round(below, 2), round(pct, 4)] for at, below, pct in drawdown(result.equity)],
        "strategies": {
            "signals": signal_scores(result.outcomes),
            "trades": trade_scores(result.trades.values(), result.marks),
        },
        "trades": [_trade_row(t, result.marks) for t in result.trades.values()],
        "signals": [
            {
                "signal_id": s.signal_id,
                "symbol": s.symbol,
                "strategy": s.strategy,
                "side": s.side.value,
                "confidence": s.confidence,
                "entry": s.entry,
                "stop": s.stop,
                "take_profit": s.take_profit,
                "bar_start": s.bar_start.isoformat(),
            }
            for s in result.signals
        ],
    }


def _thin(points: Sequence[Any], limit: int = CURVE_POINTS) -> list[Any]:
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


def curve_svg(points: Sequence[tuple[str, float]], label: str, colour: str) -> str:
    """One curve over time (ISO times, values) with its range and the first and last time."""
    points = _thin(points)
    if not points:
        return svg(_WIDTH, _HEIGHT + 40, [text(_LEFT, 40, "no data")], label)
    values = [value for _, value in points]
    low, high = min(values), max(values)
    axes = Axes(0, max(len(points) - 1, 1), low, high, left=_LEFT, right=_RIGHT, top=_TOP, height=_HEIGHT)
    body = [
        f"<rect x='{_LEFT}' y='{_TOP}' width='{_RIGHT - _LEFT}' height='{_HEIGHT}' fill='none' stroke='#d0d7de'/>",
        polyline([(axes.x(i), axes.y(v)) for i, v in enumerate(values)], colour),
        text(_LEFT - 4, _TOP + 10, f"{high:,.2f}", anchor="end"),
        text(_LEFT - 4, _TOP + _HEIGHT, f"{low:,.2f}", anchor="end"),
        text(_LEFT, _TOP + _HEIGHT + 16, points[0][0][:19]),
        text(_RIGHT, _TOP + _HEIGHT + 16, points[-1][0][:19], anchor="end"),
    ]
    return svg(_WIDTH, _HEIGHT + 40, body, label)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    return html.escape("" if value is None else str(value))


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _scores_rows(scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"strategy": name, **figures} for name, figures in scores.items()]


def render_html(report: dict[str, Any]) -> str:
    """The report page from ``figures``."""
    meta, head = report["meta"], report["summary"]
    e = html.escape
    trades = report["trades"]
    shown = trades[:HTML_TRADES]
    more = f"<p>{len(trades) - len(shown)} more in figures.json</p>" if len(trades) > len(shown) else ""
    drawdown_points = [(at, -below) for at, below, _ in report["drawdown"]]
    headline = {k: v for k, v in head.items() if not isinstance(v, dict | list)}
    return "".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>Backtest {e(meta['id'])}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #d0d7de;padding:2px 6px;"
            "text-align:right}th{background:#f6f8fa}</style></head><body>",
            f"<h1>Backtest {e(meta['id'])}</h1>",
            f"<p>{e(', '.join(meta['strategies']))} on {e(', '.join(head['symbols']))}, "
            f"{e(str(head['first_bar']))} → {e(str(head['last_bar']))} from {e(meta['source'])}; "
            f"approvals: {e(meta['approve'])}</p>",
            _table([headline]),
            "<h2>Equity (NetLiquidation)</h2>",
            curve_svg([(at, value) for at, value in report["equity"]], "equity curve", COLOURS[0]),
            "<h2>Drawdown</h2>",
            curve_svg(drawdown_points, "drawdown", COLOURS[1]),
            "<h2>Strategies: trades</h2>",
            _table(_scores_rows(report["strategies"]["trades"])),
            "<h2>Strategies: every signal scored</h2>",
            _table(_scores_rows(report["strategies"]["signals"])),
            "<h2>Runs</h2>",
            _table([{"run": k, "count": v} for k, v in head["runs"].items()]),
            "<h2>Risk rejections by check</h2>",
            _table([{"check": k, "count": v} for k, v in head["risk_rejections"].items()]),
            f"<h2>Trades ({len(trades)})</h2>",
            _table(shown),
            more,
            "</body></html>",
        ]
    )


def write_report(result: BacktestResult, meta: dict[str, Any], root: Path) -> Path:
    """Write the three files into ``root/backtests/<id>/``; returns that directory."""
    report = figures(result, meta)
    directory = root / "backtests" / str(meta["id"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "figures.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (directory / "report.html").write_text(render_html(report), encoding="utf-8")
    curve = [value for _, value in _thin(result.equity)]
    (directory / "equity.png").write_bytes(line_chart([curve]))
    return directory


def report_id(now: datetime | None = None) -> str:
    """A directory name that sorts by time: ``20261124T143000Z``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")

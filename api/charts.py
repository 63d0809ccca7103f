"""Chart data for the console: ``GET /v1/bars`` (5-second bars, or aggregated) and ``GET /v1/chart`` (bars with
signals, entries, stops, take-profits and fills marked, and the session's P&L marked to each bar's close).

Bars come from the ``bars_latest`` view: (symbol, start) identifies a bar across live, backfill and replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel

from api.models import SYMBOL_PATTERN
from api.queries.common import fetch_records, micros
from api.times import IsoTime
from ibstream.contracts import Execution, OrderIntent, Signal, executions, order_intents, signals
from ibstream.contracts.enums import Side
from ibstream.warehouse import Warehouse

MAX_BARS = 5000


class BarPoint(BaseModel):
    """One OHLCV bar starting at ``time``."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarSeries(BaseModel):
    """Bars of one symbol in time order (the newest ``limit`` in the window)."""

    symbol: str
    interval_seconds: int
    bars: list[BarPoint]


class ChartMarker(BaseModel):
    """Something to mark on the price chart, at the start of the bar it happened in."""

    time: datetime
    kind: Literal["signal", "entry", "stop", "take_profit", "fill"]
    side: Side
    price: float
    label: str
    ref_id: str


class PnlPoint(BaseModel):
    """Session P&L (realized + open position marked at the bar's close − commissions) at a bar's start."""

    time: datetime
    value: float


class ChartData(BaseModel):
    """Everything one symbol's chart shows."""

    symbol: str
    interval_seconds: int
    bars: list[BarPoint]
    markers: list[ChartMarker]
    pnl: list[PnlPoint]
    position: float
    realized_pnl: float


SymbolQuery = Annotated[str, Query(pattern=SYMBOL_PATTERN, description="the symbol")]
SinceQuery = Annotated[IsoTime | None, Query(description="bars starting at or after this time (ISO 8601, 1970–2200)")]
UntilQuery = Annotated[IsoTime | None, Query(description="bars starting before this time (ISO 8601, 1970–2200)")]
IntervalQuery = Annotated[
    int, Query(ge=5, le=3600, multiple_of=5, description="bar length in seconds (5 = the stored bars)")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_BARS, description="at most this many bars (the newest)")]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def bucket(time: datetime, interval_seconds: int) -> datetime:
    """The start of the ``interval_seconds`` bar holding ``time`` (epoch-aligned, as ClickHouse aligns them)."""
    aware = _utc(time)
    assert aware is not None
    seconds = int(aware.timestamp()) // interval_seconds * interval_seconds
    return datetime.fromtimestamp(seconds, UTC)


def list_bars(
    warehouse: Warehouse,
    symbol: str,
    *,
    since: datetime | None,
    until: datetime | None,
    interval_seconds: int,
    limit: int,
) -> BarSeries:
    """The newest ``limit`` bars of ``symbol`` in [since, until), aggregated to ``interval_seconds``, oldest first."""
    conditions = ["symbol = {symbol:String}"]
    parameters: dict[str, Any] = {"symbol": symbol, "limit": limit, "interval": interval_seconds}
    if since is not None:
        conditions.append("toUnixTimestamp64Micro(start) >= {since_us:Int64}")
        parameters["since_us"] = micros(since)
    if until is not None:
        conditions.append("toUnixTimestamp64Micro(start) < {until_us:Int64}")
        parameters["until_us"] = micros(until)
    sql = f"""
        SELECT * FROM (
            SELECT toStartOfInterval(start, toIntervalSecond({{interval:UInt32}})) AS time,
                   argMin(`open`, start) AS `open`, max(high) AS high, min(low) AS low,
                   argMax(`close`, start) AS `close`, sum(volume) AS volume
            FROM {warehouse.table("bars_latest")}
            WHERE {" AND ".join(conditions)}
            GROUP BY time ORDER BY time DESC LIMIT {{limit:UInt32}}
        ) ORDER BY time
    """
    rows = warehouse.query(sql, parameters).dicts()
    points = [BarPoint.model_validate({**row, "time": _utc(row["time"])}) for row in rows]
    return BarSeries(symbol=symbol, interval_seconds=interval_seconds, bars=points)


def _signal_marker(signal: Signal, interval_seconds: int) -> ChartMarker:
    return ChartMarker(
        time=bucket(signal.created_time, interval_seconds),
        kind="signal",
        side=signal.side,
        price=signal.entry,
        label=f"{signal.strategy} {signal.side} {signal.confidence:.2f}",
        ref_id=signal.signal_id,
    )


def _entry_marker(intent: OrderIntent, at: datetime) -> ChartMarker | None:
    price = intent.limit_price if intent.limit_price is not None else intent.stop_price
    if price is None:
        return None
    label = f"entry {intent.side} {intent.quantity:g} @ {price:g}"
    return ChartMarker(time=at, kind="entry", side=intent.side, price=price, label=label, ref_id=intent.order_id)


def _stop_marker(intent: OrderIntent, at: datetime) -> ChartMarker | None:
    if intent.stop_loss is None:
        return None
    label = f"stop {intent.stop_loss:g}"
    return ChartMarker(
        time=at, kind="stop", side=intent.side, price=intent.stop_loss, label=label, ref_id=intent.order_id
    )


def _take_profit_marker(intent: OrderIntent, at: datetime) -> ChartMarker | None:
    if intent.take_profit is None:
        return None
    label = f"target {intent.take_profit:g}"
    return ChartMarker(
        time=at, kind="take_profit", side=intent.side, price=intent.take_profit, label=label, ref_id=intent.order_id
    )


def _intent_markers(intent: OrderIntent, interval_seconds: int) -> list[ChartMarker]:
    """An intent's entry, stop and take-profit (those it has), all at the bar the intent was created in."""
    at = bucket(intent.created_time, interval_seconds)
    marks = (_entry_marker(intent, at), _stop_marker(intent, at), _take_profit_marker(intent, at))
    return [marker for marker in marks if marker is not None]


def _fill_marker(fill: Execution, interval_seconds: int) -> ChartMarker:
    return ChartMarker(
        time=bucket(fill.exec_time, interval_seconds),
        kind="fill",
        side=fill.side,
        price=fill.price,
        label=f"fill {fill.side} {fill.quantity:g} @ {fill.price:g}",
        ref_id=fill.exec_id,
    )


def chart_markers(
    signal_records: Iterable[Signal],
    intents: Iterable[OrderIntent],
    fills: Iterable[Execution],
    interval_seconds: int,
) -> list[ChartMarker]:
    """Markers for signals, entries (with their stop and take-profit) and fills, in time order."""
    markers = [_signal_marker(signal, interval_seconds) for signal in signal_records]
    for intent in intents:
        markers.extend(_intent_markers(intent, interval_seconds))
    markers.extend(_fill_marker(fill, interval_seconds) for fill in fills)
    return sorted(markers, key=lambda marker: marker.time)


@dataclass
class Book:
    """A position with average cost, realized P&L and commissions, updated fill by fill."""

    quantity: float = 0.0
    avg_cost: float = 0.0
    realized: float = 0.0
    commission: float = 0.0

    def apply(self, side: Side, quantity: float, price: float, commission: float) -> None:
        """Apply one fill: adding to a position averages its cost, reducing it realizes P&L against that cost."""
        signed = quantity if side == Side.BUY else -quantity
        self.commission += commission
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            total = self.quantity + signed
            self.avg_cost = (self.avg_cost * abs(self.quantity) + price * quantity) / abs(total)
            self.quantity = total
            return
        closing = min(abs(signed), abs(self.quantity))
        direction = 1.0 if self.quantity > 0 else -1.0
        self.realized += (price - self.avg_cost) * closing * direction
        remainder = abs(signed) - closing
        if remainder > 1e-12:  # the fill flipped the position: the rest opens at this price
            self.quantity = -direction * remainder
            self.avg_cost = price
        else:
            self.quantity += signed
            if abs(self.quantity) < 1e-12:
                self.quantity, self.avg_cost = 0.0, 0.0

    def value(self, mark: float) -> float:
        """Realized + open position at ``mark`` − commissions."""
        return self.realized + (mark - self.avg_cost) * self.quantity - self.commission


def pnl_series(
    bars: Sequence[BarPoint], fills: Sequence[Execution], interval_seconds: int
) -> tuple[list[PnlPoint], Book]:
    """The session P&L at each bar (fills up to the bar's end applied, marked at its close), and the final book."""
    book = Book()
    ordered = sorted(fills, key=lambda fill: fill.exec_time)
    points: list[PnlPoint] = []
    index = 0
    for bar in bars:
        end = bar.time + timedelta(seconds=interval_seconds)
        while index < len(ordered) and ordered[index].exec_time < end:
            fill = ordered[index]
            book.apply(fill.side, fill.quantity, fill.price, fill.commission or 0.0)
            index += 1
        points.append(PnlPoint(time=bar.time, value=round(book.value(bar.close), 6)))
    for fill in ordered[index:]:  # fills after the last bar still count in the book
        book.apply(fill.side, fill.quantity, fill.price, fill.commission or 0.0)
    return points, book


def chart_data(
    warehouse: Warehouse,
    symbol: str,
    *,
    since: datetime | None,
    until: datetime | None,
    interval_seconds: int,
    limit: int,
) -> ChartData:
    """Bars, markers and P&L for one symbol. The session is the bars' window (from the first bar's start)."""
    series = list_bars(warehouse, symbol, since=since, until=until, interval_seconds=interval_seconds, limit=limit)
    if not series.bars:
        return ChartData(
            symbol=symbol,
            interval_seconds=interval_seconds,
            bars=[],
            markers=[],
            pnl=[],
            position=0.0,
            realized_pnl=0.0,
        )
    start = series.bars[0].time
    end = series.bars[-1].time + timedelta(seconds=interval_seconds)
    window = {"symbol": symbol, "from_us": micros(start), "to_us": micros(end)}

    def where(column: str) -> str:
        return (
            f"symbol = {{symbol:String}} AND toUnixTimestamp64Micro({column}) >= {{from_us:Int64}} "
            f"AND toUnixTimestamp64Micro({column}) < {{to_us:Int64}}"
        )

    found_signals: list[Signal] = fetch_records(
        warehouse, signals.TOPIC, where("created_time"), window, "created_time", "signal_id"
    )
    intents: list[OrderIntent] = fetch_records(
        warehouse, order_intents.TOPIC, where("created_time"), window, "created_time", "order_id"
    )
    fills: list[Execution] = fetch_records(
        warehouse, executions.TOPIC, where("exec_time"), window, "exec_time", "exec_id"
    )
    pnl, book = pnl_series(series.bars, fills, interval_seconds)
    return ChartData(
        symbol=symbol,
        interval_seconds=interval_seconds,
        bars=series.bars,
        markers=chart_markers(found_signals, intents, fills, interval_seconds),
        pnl=pnl,
        position=book.quantity,
        realized_pnl=book.realized,
    )

"""5-second bars → session-aligned bars of every timeframe (1m, 5m, 15m, 1h, 1d), with corrections as revisions.

Pure: ``on_bar(state, bar, now, config)`` folds one 5-second bar into a symbol's state and returns the new state and
the aggregate bars to emit. The state is JSON-able (the agent keeps it in a Faust table, one entry per symbol).

Alignment. Buckets are cut from the regular session of the exchange calendar (``ibstream.market_hours``, XNYS:
holidays, 13:00 closes): a bucket of length L starts at ``open + k·L`` and ends at ``min(start + L, close)``, so
1h bars start 09:30, 10:30, … and the last bar of a session is cut at the close (15:30-16:00, or 12:30-13:00 on a
half day); 1d is the whole session. With ``trading_hours="24h"`` (simulators) the session is the UTC day.
Bars outside the regular session (the producer may publish extended-hours bars) are not aggregated: a 5-second bar
carries no tag saying it belongs to an extended session, and a 1d bar mixing pre-market prints with the session
would disagree with every published daily bar.

Identity and dedup. A bucket remembers which 5-second slots it holds (a bitmask): a 5-second bar whose
(symbol, start) it already holds (a replay, a redelivery after a crash, a backfill of a bar we had) changes nothing.

When a bucket is emitted:
* when its last 5-second slot arrives (the bar ending at the bucket's end), or
* when a bar at or past its end arrives while it holds unemitted data (the stream moved on; a missing last bar),
* a bucket emitted before that receives a late bar is emitted again, as the next ``revision``, once the hole it
  fills is closed (the late bar's successor slot is already held, or it is the last slot), so a backfilled run of
  bars revises each aggregate once, not once per bar; otherwise when the stream moves past it, as above.
Buckets are kept ``late_window`` behind the newest 5-second bar; a bar older than that is ignored (too late).

Source tag of an aggregate: the least direct source among its 5-second bars (live < sim < replay < backfill <
delayed), so a bar completed by a backfill says so, and delayed data is never passed off as live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ibstream.contracts import Bar
from ibstream.contracts.bars import AGGREGATE_SECONDS
from ibstream.contracts.enums import MarketDataSource
from ibstream.market_hours import EXCHANGE_TZ, TradingHours, session_on

BAR_SECONDS = 5
_BAR = timedelta(seconds=BAR_SECONDS)
#: Least direct last: an aggregate takes the highest rank among its constituents.
SOURCE_RANK: tuple[MarketDataSource, ...] = (
    MarketDataSource.LIVE,
    MarketDataSource.SIM,
    MarketDataSource.REPLAY,
    MarketDataSource.BACKFILL,
    MarketDataSource.DELAYED,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AggregationConfig:
    """Which hours make a session, and how late a 5-second bar may be to still correct its aggregates."""

    trading_hours: TradingHours = "rth"
    late_window: timedelta = timedelta(minutes=30)


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def session_bounds(at: datetime, hours: TradingHours) -> tuple[datetime, datetime] | None:
    """The regular session ``[open, close)`` containing ``at``, or None outside one (the UTC day for ``24h``)."""
    if hours == "24h":
        opening = datetime.combine(at.astimezone(UTC).date(), time.min, UTC)
        return opening, opening + timedelta(days=1)
    session = session_on(at.astimezone(EXCHANGE_TZ).date())
    if session is None or not session.contains(at):
        return None
    return session.open, session.close


def bucket_bounds(start: datetime, timeframe: str, hours: TradingHours) -> tuple[datetime, datetime] | None:
    """The ``[start, end)`` of the ``timeframe`` bar holding the 5-second bar starting at ``start``, or None when
    ``start`` is outside the session."""
    session = session_bounds(start, hours)
    if session is None:
        return None
    opening, closing = session
    if timeframe == "1d":
        return opening, closing
    length = timedelta(seconds=AGGREGATE_SECONDS[timeframe])
    first = opening + ((start - opening) // length) * length
    return first, min(first + length, closing)


@dataclass
class Bucket:
    """One aggregate bar being built: OHLCV so far, the 5-second slots it holds, and how often it was emitted."""

    start: int  # micros since the epoch, UTC
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float  # Σ wap·volume, for the aggregate's wap
    count: int
    source: str
    event_time: int
    first: int  # the earliest slot held (its open is the bucket's open) ...
    last: int  # ... and the latest (its close is the bucket's close)
    mask: int  # bit i: the 5-second bar starting at start + 5·i seconds is held
    emitted: int = 0  # emissions so far: the next emission's revision
    dirty: bool = False  # holds data not emitted yet

    def to_json(self) -> list[Any]:
        return [
            self.start,
            self.end,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.notional,
            self.count,
            self.source,
            self.event_time,
            self.first,
            self.last,
            format(self.mask, "x"),
            self.emitted,
            self.dirty,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Bucket:
        values = list(data)
        values[13] = int(values[13], 16)
        return cls(*values)

    def slot_of(self, bar: Bar) -> int:
        return (_us(bar.start) - self.start) // (BAR_SECONDS * 1_000_000)

    def holds(self, slot: int) -> bool:
        return slot >= 0 and bool(self.mask >> slot & 1)

    def merge(self, bar: Bar) -> bool:
        """Add one 5-second bar; False if the bucket already holds its slot (dedup by (symbol, start))."""
        slot = self.slot_of(bar)
        if self.holds(slot):
            return False
        self.mask |= 1 << slot
        self.high, self.low = max(self.high, bar.high), min(self.low, bar.low)
        if slot < self.first:
            self.first, self.open = slot, bar.open
        if slot > self.last:
            self.last, self.close = slot, bar.close
        self.volume += bar.volume
        self.notional += bar.wap * bar.volume
        self.count += bar.count
        self.source = _least_direct(self.source, bar.source.value)
        self.event_time = max(self.event_time, _us(bar.event_time))
        self.dirty = True
        return True

    def to_bar(self, symbol: str, now: datetime) -> Bar:
        """The aggregate as a bar record, with this emission's revision."""
        return Bar(
            symbol=symbol,
            start=_at(self.start),
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            wap=self.notional / self.volume if self.volume > 0 else self.close,
            count=self.count,
            event_time=_at(self.event_time),
            ingest_time=now,
            source=MarketDataSource(self.source),
            revision=self.emitted,
        )


def _least_direct(held: str, new: str) -> str:
    ranks = [source.value for source in SOURCE_RANK]
    return held if ranks.index(held) >= ranks.index(new) else new


def _new_bucket(bounds: tuple[datetime, datetime], bar: Bar) -> Bucket:
    start = _us(bounds[0])
    slot = (_us(bar.start) - start) // (BAR_SECONDS * 1_000_000)
    return Bucket(
        start=start,
        end=_us(bounds[1]),
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=0.0,
        notional=0.0,
        count=0,
        source=bar.source.value,
        event_time=_us(bar.event_time),
        first=slot,
        last=slot,
        mask=0,
    )


@dataclass(frozen=True)
class Emitted:
    """One aggregate to publish: its timeframe and the bar."""

    timeframe: str
    bar: Bar


def empty_state() -> dict[str, Any]:
    """A symbol's state before its first bar: the newest 5-second bar start seen, and each timeframe's buckets."""
    return {"head": None, "buckets": {timeframe: [] for timeframe in AGGREGATE_SECONDS}}


def on_bar(
    state: dict[str, Any] | None, bar: Bar, now: datetime, config: AggregationConfig
) -> tuple[dict[str, Any], list[Emitted]]:
    """Fold one 5-second bar into its symbol's state: the new state and the aggregates to emit, in timeframe order.

    A bar too late or already held adds nothing; a bar outside the session is not aggregated, but like any bar it
    emits the buckets it is past (an after-hours bar closes a session whose last 5-second bar never came).
    """
    state = state if state is not None else empty_state()
    head = _us(bar.start) if state["head"] is None else max(int(state["head"]), _us(bar.start))
    cutoff = head - config.late_window // timedelta(microseconds=1)
    out: list[Emitted] = []
    buckets = {
        timeframe: _fold_timeframe(timeframe, held, bar, now, config, cutoff, out)
        for timeframe, held in state["buckets"].items()
    }
    return {"head": head, "buckets": buckets}, out


#: Positions in a bucket's JSON list (``Bucket.to_json``) read without decoding the whole bucket.
_END, _DIRTY = 1, 15


def _fold_timeframe(
    timeframe: str,
    held: list[list[Any]],
    bar: Bar,
    now: datetime,
    config: AggregationConfig,
    cutoff: int,
    out: list[Emitted],
) -> list[list[Any]]:
    """One timeframe's buckets (as JSON lists) after ``bar``: emit what the bar closes, merge it, forget what is past
    the window. Only the buckets touched are decoded: a symbol holds dozens, and this runs for every 5-second bar."""
    bounds = bucket_bounds(bar.start, timeframe, config.trading_hours)
    bar_start = _us(bar.start)
    touched: dict[int, Bucket] = {}

    def emit(index: int) -> None:
        bucket = touched.get(index) or Bucket.from_json(held[index])
        out.append(Emitted(timeframe, bucket.to_bar(bar.symbol, now)))
        bucket.emitted += 1
        bucket.dirty = False
        touched[index] = bucket

    held = list(held)
    # The stream moved past these: emit what they hold but have not published.
    for index, item in enumerate(held):
        if item[_DIRTY] and item[_END] <= bar_start:
            emit(index)
    if bounds is not None and _us(bounds[1]) > cutoff:
        start = _us(bounds[0])
        found = next((i for i, item in enumerate(held) if item[0] == start), None)
        if found is None:
            held.append(_new_bucket(bounds, bar).to_json())
            held.sort(key=lambda item: int(item[0]))
            found = next(i for i, item in enumerate(held) if item[0] == start)
            # buckets decoded above after the new one moved one place on
            touched = {(i if i < found else i + 1): bucket for i, bucket in touched.items()}
        index = found
        target = touched.get(index) or Bucket.from_json(held[index])
        touched[index] = target
        slot = target.slot_of(bar)
        if target.merge(bar):
            last_slot = _us(bar.start + _BAR) >= target.end
            hole_closed = target.emitted > 0 and target.holds(slot + 1)
            if last_slot or hole_closed:
                emit(index)
    for index, bucket in touched.items():
        held[index] = bucket.to_json()
    kept = []
    for index, item in enumerate(held):
        if item[_END] > cutoff:
            kept.append(item)
        elif item[_DIRTY]:
            emit(index)  # leaving the window: publish what it holds before forgetting it
    return kept

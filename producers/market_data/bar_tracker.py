"""Per-symbol bar continuity: detects missing 5-second bars and tracks their backfill to a final state (pure).

Every interruption, whatever its cause (socket drop, IB's 1100, a stalled farm), shows up the same way: the next
live bar starts later than the slot after the last one. The bars in between that fall inside trading hours are
the gap; a backfill fills it from historical data. Bars are identified by (symbol, start), so a bar seen both live
and in a backfill is the same bar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ibstream.contracts import Gap
from ibstream.contracts.enums import GapState
from ibstream.market_hours import BAR_SECONDS, TradingCalendar

STEP = dt.timedelta(seconds=BAR_SECONDS)


@dataclass
class OpenGap:
    """A gap waiting for (or in) backfill."""

    gap_id: str
    symbol: str
    expected: list[dt.datetime]
    cause: str
    detected_time: dt.datetime
    recovered: set[dt.datetime] = field(default_factory=set)
    #: Backfill attempts IB answered (pacing rejections and lost connections do not count).
    attempts: int = 0
    #: Missing bars of the current attempt no historical request has asked for yet.
    unrequested: set[dt.datetime] = field(default_factory=set)
    #: Historical requests of the current attempt still out.
    requests: set[int] = field(default_factory=set)
    #: IB's last error answer to a request of this gap ("162: ..."), and whether IB said it has no data there.
    last_error: str | None = None
    no_data: bool = False

    @property
    def start(self) -> dt.datetime:
        return self.expected[0]

    @property
    def end(self) -> dt.datetime:
        return self.expected[-1]

    @property
    def missing(self) -> list[dt.datetime]:
        return [start for start in self.expected if start not in self.recovered]

    def record(self, state: GapState, now: dt.datetime, reason: str | None = None) -> Gap:
        return Gap(
            gap_id=self.gap_id,
            symbol=self.symbol,
            start=self.start,
            end=self.end,
            state=state,
            cause=self.cause,
            missing_bars=len(self.expected),
            recovered_bars=len(self.recovered),
            reason=reason,
            detected_time=self.detected_time,
            updated_time=now,
        )


class BarTracker:
    """Last live bar per symbol and the gaps found between live bars."""

    def __init__(self, calendar: TradingCalendar) -> None:
        self._calendar = calendar
        self._last: dict[str, dt.datetime] = {}
        self.gaps: dict[str, OpenGap] = {}
        self._cause: dict[str, str] = {}

    def last_start(self, symbol: str) -> dt.datetime | None:
        return self._last.get(symbol)

    def seed(self, symbol: str, start: dt.datetime, cause: str) -> None:
        """Start from a bar published before this process started (a restart), so the bars missed while the
        producer was down become a gap like any other interruption."""
        current = self._last.get(symbol)
        if current is None or start > current:
            self._last[symbol] = start
            self._cause.setdefault(symbol, cause)

    def restore(self, symbols: list[str], published_bars: dict[str, dt.datetime], open_gaps: list[Gap]) -> None:
        """Continue where a previous process stopped: from its newest published bar per symbol, with the gaps it
        left unfinished. Bars of such a gap it already recovered may be published again (same values)."""
        for symbol, start in published_bars.items():
            if symbol in symbols:
                self.seed(symbol, start, "producer_restart")
        for gap in open_gaps:
            if gap.symbol in symbols:
                expected = self._calendar.bar_starts(gap.start, gap.end)
                if expected:
                    self.resume(OpenGap(gap.gap_id, gap.symbol, expected, gap.cause, gap.detected_time))

    def note_interruption(self, cause: str, symbols: list[str] | None = None) -> None:
        """Remember why data may stop, so the gap found later says what caused it (first cause wins)."""
        for symbol in symbols if symbols is not None else list(self._last):
            self._cause.setdefault(symbol, cause)

    def on_live_bar(self, symbol: str, start: dt.datetime, now: dt.datetime) -> tuple[bool, OpenGap | None]:
        """Account for a live bar. Returns (publish it?, the gap it revealed if any).

        A bar at or before the last one is a repeat (e.g. after a resubscribe) and is not published again.
        """
        last = self._last.get(symbol)
        if last is not None and start <= last:
            return False, None
        self._last[symbol] = start
        cause = self._cause.pop(symbol, "stream_interrupted")
        if last is None:
            return True, None
        expected = self._calendar.bar_starts(last + STEP, start - STEP)
        if not expected:
            return True, None
        gap = OpenGap(f"{symbol}:{expected[0].isoformat()}", symbol, expected, cause, now)
        self.gaps[gap.gap_id] = gap
        return True, gap

    def resume(self, gap: OpenGap) -> None:
        """Take over a gap a previous process left unfinished; it is backfilled like one found here."""
        self.gaps.setdefault(gap.gap_id, gap)

    def close(self, gap_id: str) -> None:
        self.gaps.pop(gap_id, None)

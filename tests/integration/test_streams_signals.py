"""Signals on the real broker: bars in → signals and transitions out; a replay of the same bars adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import Bar, Signal, SignalTransition, bars, signal_transitions, signals, utc_now
from ibstream.contracts.enums import MarketDataSource, SignalStatus

from .streams_support import StreamsWorker, TopicReader, producer

pytestmark = pytest.mark.integration

CHANNEL = [99.0, 101.0] * 12


def bar(symbol: str, i: int, close: float, start: datetime, source: MarketDataSource) -> Bar:
    at = start + timedelta(seconds=5 * i)
    return Bar(
        symbol=symbol,
        start=at,
        open=close,
        high=close + 0.5,
        low=close - 0.5,
        close=close,
        volume=100,
        wap=close,
        count=10,
        event_time=at,
        ingest_time=utc_now(),
        source=source,
    )


def test_bars_in_signals_and_transitions_out_and_replay_adds_none(settings: Settings, tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    worker = StreamsWorker(settings, tmp_path, "signals").start()
    made = TopicReader(settings, signals.TOPIC)
    moved = TopicReader(settings, signal_transitions.TOPIC)
    out = producer(settings)
    try:
        for symbol in ("AAPL", "MSFT", "NVDA"):
            for i, close in enumerate([*CHANNEL, 103.0]):
                out.send(bars.TOPIC, bar(symbol, i, close, start, MarketDataSource.LIVE))
        out.flush()
        # Per symbol: a Donchian buy and a z-score sell on the breakout bar.
        found: list[Signal] = made.wait_for(6, 60)
        assert len(found) == 6, worker.log()[-3000:]
        assert {(s.symbol, s.strategy) for s in found} == {
            (symbol, strategy)
            for symbol in ("AAPL", "MSFT", "NVDA")
            for strategy in ("donchian_breakout", "zscore_reversion")
        }
        news: list[SignalTransition] = moved.wait_for(6, 10)
        assert {t.signal_id for t in news} == {s.signal_id for s in found}
        assert all(t.to_status is SignalStatus.NEW for t in news)

        # The same bars again as a replay/backfill: no second signal, no transition.
        for symbol in ("AAPL", "MSFT", "NVDA"):
            for i, close in enumerate([*CHANNEL, 103.0]):
                out.send(bars.TOPIC, bar(symbol, i, close, start, MarketDataSource.REPLAY))
        out.flush()
        made.poll_until(lambda _: False, 4.0)
        moved.poll_until(lambda _: False, 0.5)
        assert len(made.records) == 6
        assert len(moved.records) == 6
    finally:
        worker.stop()
        made.close()
        moved.close()

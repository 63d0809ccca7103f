"""Outcomes on the real broker: a signal and the bars after it in → one outcome per signal out; the open signals
survive a worker restart (the ``signal-scoring`` table recovers from its changelog)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import Bar, Signal, SignalOutcome, bars, signal_outcomes, signals, utc_now
from ibstream.contracts.enums import MarketDataSource, OutcomeKind, Side

from .streams_support import StreamsWorker, TopicReader, producer

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def a_signal(symbol: str, side: Side, signal_id: str) -> Signal:
    buy = side is Side.BUY
    return Signal(
        signal_id=signal_id,
        symbol=symbol,
        strategy="donchian_breakout",
        side=side,
        confidence=0.8,
        entry=100.0,
        stop=99.0 if buy else 101.0,
        take_profit=102.0 if buy else 98.0,
        bar_start=T0,
        created_time=T0 + timedelta(seconds=5),
        expiry_time=T0 + timedelta(seconds=305),
        features={},
    )


def a_bar(symbol: str, i: int, low: float, high: float) -> Bar:
    at = T0 + timedelta(seconds=5 * i)
    return Bar(
        symbol=symbol,
        start=at,
        open=(low + high) / 2,
        high=high,
        low=low,
        close=(low + high) / 2,
        volume=100,
        wap=(low + high) / 2,
        count=3,
        event_time=at,
        ingest_time=utc_now(),
        source=MarketDataSource.LIVE,
    )


def test_every_signal_is_scored_from_the_bars_after_it_across_a_worker_restart(
    settings: Settings, tmp_path: Path
) -> None:
    scored = TopicReader(settings, signal_outcomes.TOPIC)
    out = producer(settings)
    worker = StreamsWorker(settings, tmp_path, "outcomes", name="w1").start()
    try:
        out.send(signals.TOPIC, a_signal("AAPL", Side.BUY, "aapl-buy"))
        out.send(signals.TOPIC, a_signal("MSFT", Side.SELL, "msft-sell"))
        out.flush()
        for i in range(1, 4):  # neither touched yet
            out.send(bars.TOPIC, a_bar("AAPL", i, 99.5, 100.5))
            out.send(bars.TOPIC, a_bar("MSFT", i, 99.5, 100.5))
        out.send(bars.TOPIC, a_bar("MSFT", 4, 99.0, 101.2))  # MSFT's stop (and only it)
        out.flush()
        first: list[SignalOutcome] = scored.wait_for(1, 90)
        assert [(o.signal_id, o.outcome, o.bars_to_outcome) for o in first] == [
            ("msft-sell", OutcomeKind.HIT_STOP, 4)
        ], worker.log()[-3000:]
        assert first[0].r_multiple == pytest.approx(-1.0)
    finally:
        worker.stop()

    # A new worker picks the open AAPL signal up from the table's changelog: its three bars still count.
    worker = StreamsWorker(settings, tmp_path, "outcomes", name="w2").start()
    try:
        out.send(bars.TOPIC, a_bar("AAPL", 4, 99.8, 102.1))
        out.send(signals.TOPIC, a_signal("MSFT", Side.SELL, "msft-sell"))  # a replay: not scored again
        out.flush()
        found = scored.wait_for(2, 90)
        assert [(o.signal_id, o.outcome, o.bars_to_outcome) for o in found[1:]] == [
            ("aapl-buy", OutcomeKind.HIT_TARGET, 4)
        ], worker.log()[-3000:]
        aapl = found[1]
        assert aapl.r_multiple == pytest.approx(2.0)
        assert aapl.pnl == pytest.approx(2.0 * aapl.quantity)
        assert aapl.quantity > 0
        scored.poll_until(lambda _: False, 3.0)
        assert len(scored.records) == 2
    finally:
        worker.stop()
        scored.close()

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
from .test_streams_signals import bar

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
    stopped = worker
    worker = StreamsWorker(settings, tmp_path, "outcomes", name="w2").start()
    try:
        worker.wait_ready()
        out.send(bars.TOPIC, a_bar("AAPL", 4, 99.8, 102.1))
        out.send(signals.TOPIC, a_signal("MSFT", Side.SELL, "msft-sell"))  # a replay: not scored again
        out.flush()
        found = scored.wait_for(2, 90)
        assert [(o.signal_id, o.outcome, o.bars_to_outcome) for o in found[1:]] == [
            ("aapl-buy", OutcomeKind.HIT_TARGET, 4)
        ], worker.diagnosis() + "\n--- the first worker's end:\n" + stopped.log()[-2500:]
        aapl = found[1]
        assert aapl.r_multiple == pytest.approx(2.0)
        assert aapl.pnl == pytest.approx(2.0 * aapl.quantity)
        assert aapl.quantity > 0
        scored.poll_until(lambda _: False, 3.0)
        assert len(scored.records) == 2
    finally:
        worker.stop()
        scored.close()


def test_one_worker_aggregates_signals_and_scores_from_the_same_bars(settings: Settings, tmp_path: Path) -> None:
    """The bars, signals and outcomes agents side by side on md.bars.5s.v1 (as a default worker runs them)."""
    from tests.calendar_days import NORMAL_DAY, ny

    opening = ny(NORMAL_DAY, 9, 30).astimezone(UTC)
    closes = [99.0, 101.0] * 12 + [103.0] + [103.0 + 2 * i for i in range(1, 12)]  # a breakout, then a run up
    made = TopicReader(settings, signals.TOPIC)
    scored = TopicReader(settings, signal_outcomes.TOPIC)
    minutes = TopicReader(settings, bars.AGGREGATE_TOPICS["1m"])
    out = producer(settings)
    worker = StreamsWorker(settings, tmp_path, "bars,signals,outcomes").start()
    try:
        for i, close in enumerate(closes):
            out.send(bars.TOPIC, bar("AAPL", i, close, opening, MarketDataSource.LIVE))
        out.flush()
        found: list[Signal] = made.wait_for(2, 90)
        assert {s.strategy for s in found} == {"donchian_breakout", "zscore_reversion"}, worker.log()[-3000:]
        outcomes: list[SignalOutcome] = scored.wait_for(2, 60)
        by_strategy = {o.strategy: o for o in outcomes}
        assert {o.signal_id for o in outcomes} == {s.signal_id for s in found}
        # The run up takes the breakout buy to its target and the fade's stop.
        assert by_strategy["donchian_breakout"].outcome is OutcomeKind.HIT_TARGET
        assert by_strategy["zscore_reversion"].outcome is OutcomeKind.HIT_STOP
        assert [b.start for b in minutes.wait_for(2, 30)][:2] == [opening, opening + timedelta(minutes=1)]
    finally:
        worker.stop()
        for reader in (made, scored, minutes):
            reader.close()

"""The backtest over a recorded session: bars through Kafka, the live signals worker and the warehouse sink, then
``ibstream backtest`` from Kafka and from the warehouse. Live and backtest give the same signals, signal for signal,
and the backtest writes its report."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.warehouse_sink import SinkThread
from ibstream.config import Settings
from ibstream.contracts import Bar, Signal, bars, signals, utc_now
from ibstream.contracts.enums import MarketDataSource
from ibstream.warehouse import Warehouse
from tests.integration.streams_support import StreamsWorker, TopicReader, producer
from tests.integration.warehouse_helpers import count_final, wait_for, warehouse_settings
from tooling.backtest.run import BacktestOptions, run_backtest

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "NVDA")
BARS_PER_SYMBOL = 150


def session(start: datetime, seed: int = 23) -> list[Bar]:
    """A random walk per symbol, 5-second bars from ``start``, in start order."""
    rng = random.Random(seed)
    price = {symbol: 100.0 + 20 * n for n, symbol in enumerate(SYMBOLS)}
    recorded = []
    for i in range(BARS_PER_SYMBOL):
        at = start + timedelta(seconds=5 * i)
        for symbol in SYMBOLS:
            opened = price[symbol]
            close = round(opened * (1 + rng.gauss(0, 0.002)), 2)
            high = round(max(opened, close) + abs(rng.gauss(0, 0.05)), 2)
            low = round(min(opened, close) - abs(rng.gauss(0, 0.05)), 2)
            price[symbol] = close
            recorded.append(
                Bar(
                    symbol=symbol,
                    start=at,
                    open=opened,
                    high=high,
                    low=low,
                    close=close,
                    volume=100,
                    wap=close,
                    count=10,
                    event_time=at,
                    ingest_time=utc_now(),
                    source=MarketDataSource.LIVE,
                )
            )
    return recorded


def identity(signal: Signal) -> tuple[object, ...]:
    """What a signal says (its times of creation differ: the wall clock live, the bar's end in a backtest)."""
    return (
        signal.signal_id,
        signal.symbol,
        signal.strategy,
        signal.side,
        signal.confidence,
        signal.entry,
        signal.stop,
        signal.take_profit,
        signal.bar_start,
        signal.expiry_time,
        signal.features,
    )


def test_a_recorded_session_backtests_to_the_live_signals_from_kafka_and_the_warehouse(
    settings: Settings, tmp_path: Path
) -> None:
    wh_settings = warehouse_settings(settings, tmp_path / "wh", state_dir=tmp_path)
    # Kafka stamps the records now: the session ends in the future so its Kafka window holds them.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    end = start + timedelta(seconds=5 * BARS_PER_SYMBOL)
    recorded = session(start)
    worker = StreamsWorker(wh_settings, tmp_path, "signals").start()
    live = TopicReader(wh_settings, signals.TOPIC)
    out = producer(wh_settings)
    try:
        with Warehouse.open(wh_settings) as warehouse:
            sink = SinkThread(wh_settings, warehouse).start()
            try:
                for record in recorded:
                    out.send(bars.TOPIC, record)
                out.flush()
                wait_for(lambda: count_final(warehouse, "md_bars_5s_v1") == len(recorded), 90, "the bars stored")
            finally:
                sink.stop()
        # Nothing is approved: every signal holds its strategy's slot until it expires, as in the live signals
        # worker without orchestration (see tooling.backtest.engine on freeing slots).
        options = BacktestOptions(start=start, end=end, approve="none", report_root=tmp_path / "reports")
        from_kafka = run_backtest(wh_settings, replace(options, source="kafka"))
        from_warehouse = run_backtest(wh_settings, options)
        expected = sorted(identity(s) for s in from_kafka.result.signals)
        assert len(expected) >= 10, "the session should make signals of every strategy"
        assert {s.strategy for s in from_kafka.result.signals} == {
            "ma_crossover",
            "donchian_breakout",
            "zscore_reversion",
        }
        found: list[Signal] = live.wait_for(len(expected), 120)
        live.poll_until(lambda _: False, 3.0)  # and no more
        assert sorted(identity(s) for s in found) == expected, worker.log()[-3000:]
        assert sorted(identity(s) for s in from_warehouse.result.signals) == expected
        assert from_warehouse.result.bars == from_kafka.result.bars == len(recorded)
    finally:
        worker.stop()
        live.close()

    report = from_warehouse.directory
    assert report.parent == tmp_path / "reports" / "backtests"
    figures = json.loads((report / "figures.json").read_text())
    assert figures["summary"]["signals"] == len(expected) and figures["meta"]["source"] == "warehouse"
    assert "<svg" in (report / "report.html").read_text()
    assert (report / "equity.png").read_bytes().startswith(b"\x89PNG")

"""Replay recovers a window of bars exactly: from Kafka back into the warehouse, and from the warehouse into Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from consumers.warehouse_sink import SinkThread
from ibstream.config import Settings
from ibstream.contracts import Bar, bars
from ibstream.contracts.enums import MarketDataSource
from ibstream.kafka.clients import create_admin, producer_config
from ibstream.kafka.records import decode_message
from ibstream.kafka.topics import TopicLayout, delete_topics, ensure_topics
from ibstream.warehouse import Warehouse
from tests.integration.kafka_helpers import consume_all
from tests.integration.warehouse_helpers import CODEC, count_final, wait_for, warehouse_settings
from tooling.replay import replay

pytestmark = pytest.mark.integration

SYMBOLS = ("AAA", "BBB", "CCC")
PER_SYMBOL = 30
BAR_COLUMNS = "symbol, start, open, high, low, close, volume, wap, count, event_time, ingest_time, source"


@dataclass
class Scenario:
    settings: Settings
    warehouse: Warehouse
    sent: list[tuple[datetime, Bar]]  # (Kafka timestamp, bar) in send order
    window: tuple[datetime, datetime]

    def in_window(self) -> list[Bar]:
        start, end = self.window
        return [bar for ts, bar in self.sent if start <= ts < end]


@pytest.fixture
def scenario(settings: Settings, tmp_path: Path) -> Iterator[Scenario]:
    wh_settings = warehouse_settings(settings, tmp_path / "wh")
    topic = wh_settings.kafka.topic_prefix + bars.TOPIC.name
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    producer = Producer(producer_config(wh_settings))
    sent: list[tuple[datetime, Bar]] = []
    for i in range(PER_SYMBOL):
        for n, symbol in enumerate(SYMBOLS):
            start = base + timedelta(seconds=5 * i)
            price = 100.0 + n * 10 + i * 0.25
            bar = Bar(
                symbol=symbol,
                start=start,
                open=price,
                high=price + 0.5,
                low=price - 0.5,
                close=price + 0.1,
                volume=1000.0 + i,
                wap=price + 0.05,
                count=10 + i,
                event_time=start + timedelta(seconds=5),
                ingest_time=start + timedelta(seconds=5, milliseconds=40),
                source=MarketDataSource.LIVE,
            )
            # Kafka timestamps as a live producer would have stamped them: the bar's ingest time.
            kafka_ts = bar.ingest_time.replace(microsecond=bar.ingest_time.microsecond // 1000 * 1000)
            producer.produce(
                topic, CODEC.encode(topic, bar), symbol.encode(), timestamp=int(kafka_ts.timestamp() * 1000)
            )
            sent.append((kafka_ts, bar))
    assert producer.flush(30) == 0
    window = (base + timedelta(seconds=50), base + timedelta(seconds=100))  # bars 9..18 of each symbol
    with Warehouse.open(wh_settings) as warehouse:
        sink = SinkThread(wh_settings, warehouse).start()
        try:
            wait_for(lambda: count_final(warehouse, "md_bars_5s_v1") == len(sent), 60, "every bar in the warehouse")
            yield Scenario(wh_settings, warehouse, sent, window)
        finally:
            sink.stop()


def _latest_bars(warehouse: Warehouse) -> dict[tuple[str, datetime], tuple[object, ...]]:
    rows = warehouse.query(f"SELECT {BAR_COLUMNS} FROM bars_latest").rows
    assert len(rows) == len({(r[0], r[1]) for r in rows})  # one row per bar identity
    return {(r[0], r[1]): r[2:] for r in rows}


def _expected(bar: Bar, source: MarketDataSource) -> tuple[object, ...]:
    return (
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.wap,
        bar.count,
        bar.event_time,
        bar.ingest_time,
        source.value,
    )


def test_deleted_window_is_restored_from_kafka(scenario: Scenario) -> None:
    warehouse, (start, end) = scenario.warehouse, scenario.window
    warehouse.command(
        "ALTER TABLE md_bars_5s_v1 DELETE "
        "WHERE _kafka_ts >= {s:DateTime64(3, 'UTC')} AND _kafka_ts < {e:DateTime64(3, 'UTC')}",
        {"s": start, "e": end},
        settings={"mutations_sync": 2},
    )
    window = scenario.in_window()
    assert len(window) == 10 * len(SYMBOLS)
    assert len(_latest_bars(warehouse)) == len(scenario.sent) - len(window)

    report = replay(scenario.settings, bars.TOPIC.name, start, end, source="kafka")
    assert (report.read, report.emitted) == (len(window), len(window))

    wait_for(lambda: len(_latest_bars(warehouse)) == len(scenario.sent), 60, "the window back in the warehouse")
    restored = _latest_bars(warehouse)
    replayed = {(bar.symbol, bar.start) for bar in window}
    assert restored == {
        (bar.symbol, bar.start): _expected(
            bar, MarketDataSource.REPLAY if (bar.symbol, bar.start) in replayed else bar.source
        )
        for _, bar in scenario.sent
    }


def test_window_is_replayed_from_the_warehouse_into_kafka(scenario: Scenario) -> None:
    start, end = scenario.window
    settings = scenario.settings
    target = "replay.check.v1"
    admin = create_admin(settings)
    ensure_topics(
        admin, [TopicLayout(settings.kafka.topic_prefix + target, bars.TOPIC.partitions, 3_600_000, "delete")]
    )
    try:
        # Only two symbols, to check the filter too.
        report = replay(
            settings, bars.TOPIC.name, start, end, source="warehouse", target_topic=target, symbols=["AAA", "CCC"]
        )
        window = [bar for bar in scenario.in_window() if bar.symbol in ("AAA", "CCC")]
        assert report.emitted == len(window) == 20
        messages = consume_all(settings, settings.kafka.topic_prefix + target, len(window), timeout=30)
        received = [decode_message(CODEC, bars.TOPIC, message) for message in messages]
        assert all(message.key() == bar.symbol.encode() for message, bar in zip(messages, received, strict=True))
        for symbol in ("AAA", "CCC"):
            assert [bar for bar in received if bar.symbol == symbol] == [
                bar.model_copy(update={"source": MarketDataSource.REPLAY}) for bar in window if bar.symbol == symbol
            ]
        assert len(received) == len(window)
    finally:
        delete_topics(admin, [settings.kafka.topic_prefix + target])

"""Market data producer: IB quotes and 5-second bars → Kafka, with reconnect, gap backfill and stale alerts.

``ibstream run producer`` calls ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeVar

from ibstream.config import LOG_LEVELS, Settings, load_settings
from ibstream.contracts import Gap, Record, TopicSpec, bars, gaps
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import DecodeError, SchemaStore, SingleObjectCodec
from ibstream.health import HealthServer
from ibstream.ib.session import IbSession
from ibstream.kafka.clients import create_consumer, create_producer
from ibstream.kafka.records import RecordProducer, consume_to_end, decode_message
from ibstream.kafka.topics import check_cluster
from ibstream.telemetry import configure
from producers.market_data.bar_tracker import STEP
from producers.market_data.service import COMPONENT, MarketDataProducer

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    """Kafka reachable and the topics there, or a ConfigError naming the setting."""
    check_cluster(settings, timeout)


def _tail_records(settings: Settings, spec: TopicSpec[R], tail: int, timeout: float) -> Iterator[R]:
    """The last ``tail`` decodable records of every partition of ``spec``'s topic (a poison record is the DLQ's
    business, not a reason to fail a restart)."""
    codec = SingleObjectCodec(SchemaStore())
    records: list[R] = []
    consumer = create_consumer(
        settings,
        f"{settings.kafka.topic_prefix}ibstream-producer-tail-{uuid.uuid4().hex[:8]}",
        **{"enable.auto.commit": False, "enable.partition.eof": True},
    )

    def take(message: Any) -> None:
        with contextlib.suppress(DecodeError):
            records.append(decode_message(codec, spec, message))

    try:
        consume_to_end(
            consumer, {settings.kafka.topic_prefix + spec.name: spec.partitions}, take, timeout=timeout, tail=tail
        )
    finally:
        consumer.close()
    return iter(records)


def published_bar_starts(settings: Settings, tail: int = 500, timeout: float = 30.0) -> dict[str, datetime]:
    """The newest bar start per symbol already in Kafka, read from the tail of every partition: a restarted
    producer then treats the bars it missed while it was down as a gap and backfills them."""
    newest: dict[str, datetime] = {}
    for bar in _tail_records(settings, bars.TOPIC, tail, timeout):
        if bar.source is not MarketDataSource.REPLAY and bar.start > newest.get(bar.symbol, bar.start - STEP):
            newest[bar.symbol] = bar.start
    return newest


def unfinished_gaps(settings: Settings, tail: int = 2_000, timeout: float = 30.0) -> list[Gap]:
    """Gaps a previous producer process left open or backfilling (the latest record per gap_id, from the tail of
    ``md.gaps.v1``): a restarted producer finishes them instead of leaving their bars missing for good."""
    return gaps.unfinished(_tail_records(settings, gaps.TOPIC, tail, timeout))


def build(
    settings: Settings, published_bars: dict[str, datetime] | None = None, open_gaps: list[Gap] | None = None
) -> tuple[MarketDataProducer, RecordProducer]:
    session = IbSession(
        settings.ib.host,
        settings.ib.port,
        settings.feed.client_id,
        event_queue=queue.Queue(maxsize=settings.feed.queue_size),
    )
    sink = RecordProducer(
        create_producer(settings, "quotes", **{"queue.buffering.max.kbytes": 65536}),
        SingleObjectCodec(SchemaStore()),
        settings.kafka.topic_prefix,
    )
    return MarketDataProducer(settings, session, sink, published_bars=published_bars, open_gaps=open_gaps), sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ibstream run producer",
        description="Streams IB quotes and 5-second bars for IBSTREAM_SYMBOLS into Kafka; reconnects to IB, "
        "backfills the bars missed while disconnected and alerts on symbols that stop updating.",
    )
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv or [])
    settings = load_settings()
    configure(COMPONENT, args.log_level or settings.log_level)
    check_kafka(settings)
    producer, sink = build(settings, published_bars=published_bar_starts(settings), open_gaps=unfinished_gaps(settings))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    health = HealthServer("0.0.0.0", settings.feed.health_port, producer.readiness).start()
    log.info(
        "producer started",
        extra={"symbols": ",".join(settings.feed.symbols), "ib_port": settings.ib.port, "health_port": health.port},
    )
    try:
        producer.run(stop)
    finally:
        health.stop()
        remaining = sink.flush(30)
        log.info(
            "producer stopped", extra={"delivered": sink.delivered, "failed": sink.failed, "undelivered": remaining}
        )
    return 0

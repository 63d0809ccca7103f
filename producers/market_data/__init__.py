"""Market data producer: IB quotes and 5-second bars → Kafka, with reconnect, gap backfill and stale alerts.

``ibstream run producer`` calls ``main``.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import threading

from ibstream.config import Settings, load_settings
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.health import HealthServer
from ibstream.ib.session import IbSession
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.kafka.topics import check_cluster
from ibstream.telemetry import configure
from producers.market_data.service import COMPONENT, MarketDataProducer

log = logging.getLogger(__name__)


def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    """Kafka reachable and the topics there, or a ConfigError naming the setting."""
    check_cluster(settings, timeout)


def build(settings: Settings) -> tuple[MarketDataProducer, RecordProducer]:
    session = IbSession(
        settings.ib_host,
        settings.ib_port,
        settings.producer_client_id,
        event_queue=queue.Queue(maxsize=settings.producer_queue_size),
    )
    sink = RecordProducer(
        create_producer(settings, "quotes", **{"queue.buffering.max.kbytes": 65536}),
        SingleObjectCodec(SchemaStore()),
        settings.kafka_topic_prefix,
    )
    return MarketDataProducer(settings, session, sink), sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ibstream run producer", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv or [])
    configure(COMPONENT, args.log_level)
    settings = load_settings()
    check_kafka(settings)
    producer, sink = build(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    health = HealthServer("0.0.0.0", settings.producer_health_port, producer.readiness).start()
    log.info(
        "producer started",
        extra={"symbols": ",".join(settings.symbols), "ib_port": settings.ib_port, "health_port": health.port},
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

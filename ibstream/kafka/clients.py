"""Client factories with the settings our guarantees need (see ARCHITECTURE.md, Guarantees)."""

from __future__ import annotations

from typing import Any, Literal

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from ibstream.config import Settings

#: quotes: lowest latency; bulk: backfill, replay, sink-side DLQ writes, where batching pays.
ProducerProfile = Literal["quotes", "events", "bulk"]

_LINGER_MS: dict[ProducerProfile, int] = {"quotes": 1, "events": 5, "bulk": 50}


def base_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap plus the pass-through client settings (SASL_SSL, mTLS, …) every client shares."""
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, **settings.kafka_client_config}


def producer_config(settings: Settings, profile: ProducerProfile = "events", **overrides: Any) -> dict[str, Any]:
    """Producer settings for no loss and Java-compatible partitioning.

    librdkafka defaults idempotence to off and partitions with CRC32, while Java clients and Faust (aiokafka) use
    murmur2: without ``murmur2_random`` the same key would land on different partitions than Faust expects.
    """
    config: dict[str, Any] = {
        **base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": _LINGER_MS[profile],
        # Retry for as long as a broker restart can take; a delivery report still says if it gave up.
        "delivery.timeout.ms": 120_000,
        "compression.type": "lz4" if profile == "bulk" else "none",
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """At-least-once consumer: offsets are stored only after a record was handled (``store_offsets``)."""
    config: dict[str, Any] = {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    config.update(overrides)
    return config


def create_producer(settings: Settings, profile: ProducerProfile = "events", **overrides: Any) -> Producer:
    return Producer(producer_config(settings, profile, **overrides))


def create_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def create_admin(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**base_config(settings), **overrides})

"""`topics ensure`: creates the catalogue, is idempotent, reconciles configs, reports partition drift."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from ibstream.config import Settings
from ibstream.exceptions import ConfigError
from ibstream.kafka.clients import create_admin
from ibstream.kafka.topics import catalogue, check_cluster, delete_topics, ensure_topics

pytestmark = pytest.mark.integration


def test_ensure_creates_reconciles_and_reports_drift(settings_factory: Callable[..., Settings]) -> None:
    prefix = f"e{uuid.uuid4().hex[:8]}."
    admin = create_admin(settings_factory())
    layouts = catalogue(prefix)
    by_name = {layout.name: layout for layout in layouts}
    quotes = by_name[prefix + "md.quotes.v1"]
    control = by_name[prefix + "control.v1"]
    try:
        # A pre-existing quotes topic with the wrong partition count: must be reported, not silently kept.
        stale = NewTopic(quotes.name, num_partitions=2, replication_factor=1, config={"retention.ms": "60000"})
        admin.create_topics([stale])[quotes.name].result()

        first = ensure_topics(admin, layouts)
        assert set(first.created) == {layout.name for layout in layouts} - {quotes.name}
        assert quotes.name in first.drift and "2 partitions" in first.drift[quotes.name]
        assert first.reconciled == {quotes.name: {"retention.ms": ("60000", str(quotes.retention_ms))}}
        assert not first.ok

        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, control.name)])
        entries = next(iter(described.values())).result()
        assert entries["cleanup.policy"].value == "compact"

        second = ensure_topics(admin, layouts)
        assert second.created == [] and second.reconciled == {}
        assert set(second.drift) == {quotes.name}

        # Someone changes a retention by hand: the next ensure puts it back and says so.
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

        bars = by_name[prefix + "md.bars.5s.v1"]
        alter = ConfigResource(
            ResourceType.TOPIC,
            bars.name,
            incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
        )
        next(iter(admin.incremental_alter_configs([alter]).values())).result()
        third = ensure_topics(admin, layouts)
        assert third.reconciled == {bars.name: {"retention.ms": ("1000", str(bars.retention_ms))}}
    finally:
        delete_topics(admin, list(by_name))


def test_every_topic_has_a_dlq() -> None:
    names = {layout.name for layout in catalogue()}
    for layout in catalogue():
        if not layout.is_dlq:
            base, _, version = layout.name.rpartition(".")
            assert f"{base}.dlq.{version}" in names


def test_startup_check_waits_for_topics_being_created_and_names_the_setting_when_they_never_come(
    settings_factory: Callable[..., Settings],
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    settings = settings_factory(kafka_topic_prefix=prefix)
    admin = create_admin(settings)
    with pytest.raises(ConfigError) as refused:
        check_cluster(settings, settle_seconds=0.5)
    assert refused.value.setting == "IBSTREAM_KAFKA_TOPIC_PREFIX" and "topics ensure" in str(refused.value)

    # Topics that appear while the check waits (created right before a deployable starts) are found.
    creator = threading.Timer(1.0, lambda: ensure_topics(admin, catalogue(prefix)))
    creator.start()
    try:
        check_cluster(settings, settle_seconds=20.0)
    finally:
        creator.join()
        delete_topics(admin, [layout.name for layout in catalogue(prefix)])

"""The streams app creates its internal topics itself, before Faust starts, and rolls changelog segments."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from ibstream.config import Settings
from ibstream.kafka.clients import create_admin
from ibstream.kafka.topics import delete_topics
from streams import orchestration
from streams.app import CHANGELOG_CONFIGS, build_app

pytestmark = pytest.mark.integration


def test_internal_topics_are_listed_before_faust_starts_and_changelogs_roll_segments(
    settings: Settings, tmp_path: Path
) -> None:
    # Orchestration's Agent0 client needs the service token to be built at all.
    built = build_app(settings.with_overrides(agent0_token="service-token"), data_dir=tmp_path, with_feed=False)
    layouts = built.internal_topics()
    app_id = settings.kafka.topic_prefix + settings.streams.app_id
    tables = (
        "bar-aggregates",
        "signal-state",
        "signal-scoring",
        "risk-decided",
        "orchestration-runs",
        "orchestration-signals",
        "orchestration-orders",
    )
    changelogs = {f"{app_id}-{table}-changelog" for table in tables}
    commands = settings.kafka.topic_prefix + orchestration.COMMANDS_TOPIC
    assert {layout.name for layout in layouts} == changelogs | {commands}
    admin = create_admin(settings)
    # A changelog Faust created before this change (no segment settings): reconciled, not left as it was.
    old = f"{app_id}-signal-state-changelog"
    admin.create_topics([NewTopic(old, num_partitions=6, replication_factor=1, config={"cleanup.policy": "compact"})])[
        old
    ].result()
    try:
        built.prepare_internal_topics()
        # Listed the moment it returns: Faust's first group assignment will not skip any of them.
        listed = create_admin(settings).list_topics(timeout=10).topics
        for layout in layouts:
            assert layout.name in listed and len(listed[layout.name].partitions) == layout.partitions, layout.name
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in changelogs]
        for resource, future in admin.describe_configs(resources).items():
            entries = future.result()
            assert entries["cleanup.policy"].value == "compact", resource.name
            for key, value in CHANGELOG_CONFIGS.items():
                assert entries[key].value == value, (resource.name, key)
        described = next(iter(admin.describe_configs([ConfigResource(ResourceType.TOPIC, commands)]).values()))
        assert described.result()["cleanup.policy"].value == "delete"
    finally:
        delete_topics(admin, [layout.name for layout in layouts])

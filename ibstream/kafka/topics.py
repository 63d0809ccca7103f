"""The topic catalogue (every contract topic plus its DLQ) and `topics ensure`: create or reconcile, report drift."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from ibstream.config import Settings
from ibstream.contracts import TOPICS, dead_letters
from ibstream.exceptions import ConfigError, IbstreamError


@dataclass(frozen=True)
class TopicLayout:
    """What a topic must look like on the broker."""

    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str
    is_dlq: bool = False
    #: Further topic configs to create and reconcile, e.g. a changelog's segment rolling.
    extra_configs: tuple[tuple[str, str], ...] = ()

    def configs(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **dict(self.extra_configs),
        }


def catalogue(prefix: str = "") -> list[TopicLayout]:
    """Every topic of the pipeline and its DLQ. ``prefix`` isolates tests sharing one broker."""
    layouts: list[TopicLayout] = []
    for spec in TOPICS:
        layouts.append(TopicLayout(prefix + spec.name, spec.partitions, spec.retention_ms, spec.cleanup_policy))
        layouts.append(
            TopicLayout(
                prefix + spec.dlq_name,
                dead_letters.DLQ_PARTITIONS,
                dead_letters.DLQ_RETENTION_MS,
                "delete",
                is_dlq=True,
            )
        )
    return layouts


def min_insync_replicas(replication: int) -> int:
    """The ``min.insync.replicas`` that goes with a replication factor: 2 from three replicas on, so an ``acks=all``
    write survives the loss of any one broker and is refused (not silently under-replicated) when two are gone;
    1 below that, where requiring 2 would stop every write as soon as one broker is down."""
    return 2 if replication >= 3 else 1


def replicated(layouts: Iterable[TopicLayout], replication: int) -> list[TopicLayout]:
    """``layouts`` with the minimum in-sync replicas their replication factor calls for (unchanged at RF 1 and 2,
    where the broker's default of 1 already holds)."""
    min_insync = min_insync_replicas(replication)
    if min_insync == 1:
        return list(layouts)
    return [
        replace(layout, extra_configs=(*layout.extra_configs, ("min.insync.replicas", str(min_insync))))
        for layout in layouts
    ]


class TopicDriftError(IbstreamError):
    """A topic exists with a layout we must not change automatically (e.g. its partition count)."""


@dataclass
class EnsureReport:
    """What `ensure_topics` did, topic by topic."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    reconciled: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    drift: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.drift


def ensure_topics(
    admin: AdminClient, layouts: Iterable[TopicLayout], replication: int = 1, timeout: float = 30.0
) -> EnsureReport:
    """Create missing topics and reconcile configs of existing ones; never change a partition count.

    Partition counts are reported as drift instead of "fixed": adding partitions remaps keys to other
    partitions, which breaks per-symbol and per-order ordering, so an operator must decide. From replication 3 on,
    every topic also gets ``min.insync.replicas`` 2 (`min_insync_replicas`), reconciled like its other configs.
    """
    wanted = {layout.name: layout for layout in replicated(layouts, replication)}
    report = EnsureReport()
    existing = admin.list_topics(timeout=timeout).topics

    missing = [layout for name, layout in wanted.items() if name not in existing]
    if missing:
        existing = _create_topics(admin, missing, replication, timeout, report)

    present = [layout for name, layout in wanted.items() if name in existing and name not in report.created]
    if not present:
        return report
    for layout in present:
        actual_partitions = len(existing[layout.name].partitions)
        if actual_partitions != layout.partitions:
            report.drift[layout.name] = f"has {actual_partitions} partitions, catalogue says {layout.partitions}"
    _reconcile_configs(admin, present, timeout, report)
    return report


def _create_topics(
    admin: AdminClient, missing: list[TopicLayout], replication: int, timeout: float, report: EnsureReport
) -> dict[str, Any]:
    """Create ``missing`` (recorded in ``report.created``); the topic metadata once they are all visible."""
    futures = admin.create_topics(
        [
            NewTopic(m.name, num_partitions=m.partitions, replication_factor=replication, config=m.configs())
            for m in missing
        ],
        operation_timeout=timeout,
    )
    raced: set[str] = set()
    for name, future in futures.items():
        try:
            future.result()
            report.created.append(name)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            # It exists after all (created by another process, or not yet in the metadata we listed): check
            # its layout like any existing topic instead of assuming it is right.
            raced.add(name)
    # Created topics too: a client that subscribes before the broker lists a topic is assigned none of it
    # (Faust's first group assignment logs "Ignoring missing topic" and never consumes it).
    return _metadata_with(admin, raced | set(report.created), timeout)


def _reconcile_configs(admin: AdminClient, present: list[TopicLayout], timeout: float, report: EnsureReport) -> None:
    """Align the configs of existing topics with the catalogue (``report.reconciled``, else ``report.unchanged``
    unless the topic drifted)."""
    wanted = {layout.name: layout for layout in present}
    resources = [ConfigResource(ResourceType.TOPIC, layout.name) for layout in present]
    described = admin.describe_configs(resources, request_timeout=timeout)
    for resource, future in described.items():
        layout = wanted[resource.name]
        entries = future.result()
        changes: dict[str, tuple[str, str]] = {}
        for key, value in layout.configs().items():
            actual = entries[key].value if key in entries else None
            if actual != value:
                changes[key] = (str(actual), value)
        if not changes:
            if layout.name not in report.drift:
                report.unchanged.append(layout.name)
            continue
        alter = ConfigResource(
            ResourceType.TOPIC,
            layout.name,
            incremental_configs=[
                ConfigEntry(key, new, incremental_operation=AlterConfigOpType.SET) for key, (_, new) in changes.items()
            ],
        )
        for done in admin.incremental_alter_configs([alter]).values():
            done.result()
        _await_configs(admin, layout, timeout)
        report.reconciled[layout.name] = changes


def _await_configs(admin: AdminClient, layout: TopicLayout, timeout: float) -> None:
    # KRaft acknowledges an alter before every broker applied it; wait until it reads back, so the report (and
    # the next `ensure`) tells the truth.
    resource = ConfigResource(ResourceType.TOPIC, layout.name)
    deadline = time.monotonic() + timeout
    while True:
        entries = next(iter(admin.describe_configs([resource], request_timeout=timeout).values())).result()
        if all(key in entries and entries[key].value == value for key, value in layout.configs().items()):
            return
        if time.monotonic() > deadline:
            raise TopicDriftError(f"{layout.name}: config change not visible after {timeout:.0f}s")
        time.sleep(0.2)


def _metadata_with(admin: AdminClient, names: set[str], timeout: float) -> dict[str, Any]:
    """Topic metadata once every name in ``names`` is visible (metadata propagates after a create)."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if names <= set(topics) and all(topics[name].partitions for name in names):
            return dict(topics)
        if time.monotonic() > deadline:
            raise TopicDriftError(f"topics {sorted(names - set(topics))} exist but are not visible in the metadata")
        time.sleep(0.2)


def delete_topics(admin: AdminClient, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics (tests); missing ones are ignored."""
    futures = admin.delete_topics(list(names), operation_timeout=timeout)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def _hidden_by_acls(admin: Any, topic: str, timeout: float) -> bool:
    """Whether the broker refuses to describe ``topic`` to this principal: a cluster with ACLs lists only the
    topics a deployable may use (``ibstream.kafka.identities``), and the others are not its business."""
    found = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    return bool(found is not None and found.error is not None and found.error.name() == "TOPIC_AUTHORIZATION_FAILED")


def check_cluster(settings: Settings, timeout: float = 10.0, settle_seconds: float = 10.0) -> None:
    """Stop a deployable's startup with a message naming the setting when Kafka is unreachable or the catalogue's
    topics are missing (topics are created by `ibstream topics ensure`, never implicitly). Topics the cluster's ACLs
    hide from this deployable's principal are not its to check.

    Missing topics are asked for again for ``settle_seconds``: a broker learns of topics the controller just created
    a moment later, so a deployable started right after `topics ensure` (a Helm hook, the demo) may not see them yet.
    """
    from ibstream.kafka.clients import create_admin
    from ibstream.kafka.security import effective_security

    admin = create_admin(settings)
    # Only an authenticated principal has ACLs of its own to hide topics from it; plaintext is checked as before.
    authenticated = effective_security(settings.kafka).protocol != "PLAINTEXT"
    deadline = time.monotonic() + settle_seconds
    while True:
        try:
            metadata = admin.list_topics(timeout=timeout)
        except Exception as error:
            # Named with the principal: a refused login looks like a broker that does not answer.
            security = effective_security(settings.kafka).describe()
            raise ConfigError(
                "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"Kafka did not answer ({security}): {error}"
            ) from None
        if not metadata.brokers:
            raise ConfigError(
                "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"no Kafka broker answered at {settings.kafka.bootstrap_servers}"
            )
        missing = [t.name for t in catalogue(settings.kafka.topic_prefix) if t.name not in metadata.topics]
        if missing and authenticated:
            missing = [name for name in missing if not _hidden_by_acls(admin, name, timeout)]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise ConfigError(
                "IBSTREAM_KAFKA_TOPIC_PREFIX",
                f"topics missing ({', '.join(missing[:3])}…): run `ibstream topics ensure`",
            )
        time.sleep(0.5)

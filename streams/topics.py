"""The topics Faust would create itself (tables' changelogs, internal agent topics), created by us before it starts.

Left to Faust, a topic it creates may not be listed yet when its consumer joins the group: that assignment skips
the topic ("Ignoring missing topic") and no worker consumes it until the next rebalance. So the worker creates (or
reconciles) them with ``ensure_topics``, as Faust declares them, and waits until the broker lists them.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from ibstream.config import Settings
from ibstream.exceptions import ConfigError
from ibstream.kafka.clients import create_admin
from ibstream.kafka.topics import TopicDriftError, TopicLayout, ensure_topics

log = logging.getLogger(__name__)

#: Kafka's default retention, for a topic Faust declares without one (a compacted changelog ignores it): stated so
#: `ensure_topics` sees no drift.
_DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def layout_of(topic: Any) -> TopicLayout:
    """A Faust topic declaration as the layout ``ensure_topics`` creates: cleanup policy by Faust's own rule."""
    policy = ",".join(sorted(flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on))
    retention = topic.retention  # Faust keeps it as declared: a timedelta here, or seconds
    seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention or 0)
    retention_ms = int(seconds * 1000) if seconds else _DEFAULT_RETENTION_MS
    return TopicLayout(
        topic.get_topic_name(),
        topic.partitions,
        retention_ms,
        policy or "delete",
        extra_configs=tuple(sorted((topic.config or {}).items())),
    )


def prepare(settings: Settings, layouts: list[TopicLayout], timeout: float = 30.0) -> None:
    """Create (or reconcile) ``layouts`` and wait until the broker lists them; ConfigError if the broker does not
    answer within ``timeout``, TopicDriftError if a topic differs in a way that cannot be reconciled."""
    admin = create_admin(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = ensure_topics(admin, layouts, replication=settings.kafka.topic_replication, timeout=10.0)
            break
        except TopicDriftError:
            raise
        except Exception as error:  # the admin client's: a broker restarting answers again within the timeout
            if time.monotonic() > deadline:
                raise ConfigError(
                    "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS",
                    f"the streams' internal topics could not be prepared: {error}",
                ) from None
            time.sleep(1.0)
    if not report.ok:
        raise TopicDriftError(f"internal topics differ from what the streams app needs: {report.drift}")
    log.info(
        "internal topics ready",
        extra={"topics_created": report.created, "topics_reconciled": sorted(report.reconciled)},
    )

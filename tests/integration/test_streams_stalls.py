"""A record Faust fetched and then lost, on the real broker through a real risk worker: the stall watch finds the
partition stalled, says so with its offsets, reads it again from the committed offset, and the intent is decided."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import Settings
from ibstream.contracts import order_intents, risk_decisions
from streams.stalls import DROP_FIRST_ENV

from .streams_support import StreamsWorker, TopicReader, log_records, producer
from .test_streams_risk import intent
from .test_trading_states import send_intents

pytestmark = pytest.mark.integration


def _events(log: str, event: str) -> list[dict[str, Any]]:
    """The worker's JSON log records whose event starts with ``event``."""
    return [record for record in log_records(log) if str(record.get("event", "")).startswith(event)]


def test_a_record_lost_after_the_fetch_is_found_and_read_again(settings: Settings, tmp_path: Path) -> None:
    decisions = TopicReader(settings, risk_decisions.TOPIC)
    out = producer(settings)
    hook = {DROP_FIRST_ENV.removeprefix("IBSTREAM_").lower(): order_intents.TOPIC.name}
    worker = StreamsWorker(settings, tmp_path, "risk", streams_stall_seconds=3, **hook).start()
    try:
        worker.wait_ready()
        send_intents(out, intent("lost-once", "QQQ"))
        # Dropped after the fetch: decided only once the watch (every 5 s) saw no commit for 3 s and sought back.
        records = decisions.wait_for(1, 60)
        assert [d.order_id for d in records] == ["lost-once"], worker.diagnosis()
        log = worker.log()
        dropped = _events(log, "test hook: record dropped after the fetch")
        assert len(dropped) == 1 and dropped[0]["topic"] == settings.kafka.topic_prefix + order_intents.TOPIC.name
        stalled = _events(log, "stream partition stalled")
        assert len(stalled) == 1, log[-4000:]
        offset = dropped[0]["offset"]
        # The evidence: handed over (delivered) and never acknowledged, at the committed offset (None: this new group
        # never committed on that partition); read again from there.
        assert stalled[0]["committed"] in (None, offset) and stalled[0]["delivered"] == offset, stalled
        assert stalled[0]["read_again_from"] == offset
        assert stalled[0]["partition"].startswith(f"{settings.kafka.topic_prefix}{order_intents.TOPIC.name}[")
        # The next look (every 5 s) sees it committed again: readiness comes back.
        deadline = time.monotonic() + 20
        while not _events(worker.log(), "stream partition moving again") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _events(worker.log(), "stream partition moving again"), worker.log()[-4000:]
        # Read again, decided once: no second decision for it.
        assert len(decisions.poll_until(lambda _: False, 2.0)) == 1
    finally:
        worker.stop()
        decisions.close()

"""Start offsets chosen in assignment callbacks: an unanswered broker means reading from the beginning, never an
exception (raised in a callback, it comes out of poll and ends the reader's thread)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from ibstream.kafka.clients import offsets_at_times, tail_offset


class Broker:
    """A consumer's offset queries, answered (watermarks 5..120) or timing out."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def _check(self) -> None:
        if not self.answers:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        self._check()
        return 5, 120

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self._check()
        return [TopicPartition(p.topic, p.partition, 42) for p in partitions]


def test_tail_offset_is_the_last_records_or_the_beginning_when_unanswered() -> None:
    partition = TopicPartition("account.v1", 0)
    consumer: Any = Broker(answers=True)
    assert tail_offset(consumer, partition, 100) == 20
    assert tail_offset(consumer, partition, 1000) == 5  # not before the log start
    assert tail_offset(Broker(answers=False), partition, 100) == OFFSET_BEGINNING  # type: ignore[arg-type]


def test_offsets_at_times_or_the_beginning_when_unanswered() -> None:
    partitions = [TopicPartition("quotes", 0, 1_700_000_000_000), TopicPartition("quotes", 1, 1_700_000_000_000)]
    consumer: Any = Broker(answers=True)
    assert offsets_at_times(consumer, partitions) == {("quotes", 0): 42, ("quotes", 1): 42}
    unanswered: Any = Broker(answers=False)
    assert offsets_at_times(unanswered, partitions) == {
        ("quotes", 0): OFFSET_BEGINNING,
        ("quotes", 1): OFFSET_BEGINNING,
    }

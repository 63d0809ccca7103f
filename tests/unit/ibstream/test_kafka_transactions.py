"""Transactions.commit resumes a commit that timed out instead of leaving it for an abort that librdkafka refuses."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from ibstream.kafka.clients import TransactionError, Transactions


class ScriptedProducer:
    """A transactional producer whose commit_transaction answers from a script (None: success)."""

    def __init__(self, commits: list[KafkaError | None]) -> None:
        self.commits = commits
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        answer = self.commits.pop(0)
        if answer is not None:
            raise KafkaException(answer)

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


def timed_out() -> KafkaError:
    return KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True)


def transactions(producer: ScriptedProducer, deadline: float = 120.0, clock: Any = None) -> Transactions:
    return Transactions(producer, timeout=0.01, commit_deadline=deadline, **({"clock": clock} if clock else {}))  # type: ignore[arg-type]


def test_a_commit_that_timed_out_is_resumed_until_it_succeeds_and_never_aborted() -> None:
    producer = ScriptedProducer([timed_out(), timed_out(), None])
    tx = transactions(producer)
    tx.begin()
    tx.commit()
    assert producer.calls == ["begin", "commit", "commit", "commit"]
    assert not tx.open


def test_a_commit_asking_for_an_abort_is_raised_for_the_caller_to_abort_and_retry() -> None:
    abortable = KafkaError(KafkaError._STATE, "transaction must be aborted", txn_requires_abort=True)
    producer = ScriptedProducer([abortable])
    tx = transactions(producer)
    tx.begin()
    with pytest.raises(TransactionError) as raised:
        tx.commit()
    assert not raised.value.fatal and producer.calls == ["begin", "commit"]


def test_a_commit_still_timing_out_past_the_deadline_is_fatal() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 50.0
        return now[0]

    producer = ScriptedProducer([timed_out(), timed_out(), timed_out(), None])
    tx = transactions(producer, deadline=120.0, clock=clock)
    with pytest.raises(TransactionError) as raised:
        tx.commit()
    assert raised.value.fatal and not raised.value.fenced
    assert producer.calls == ["commit", "commit", "commit"]

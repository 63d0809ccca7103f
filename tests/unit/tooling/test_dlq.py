"""`ibstream dlq`'s pure parts: which dead letters a window selects, what the ledger says was sent back, what a
redrive sends, skips or refuses, and the headers a redriven record carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibstream.contracts import DeadLetter
from ibstream.contracts.dead_letters import DlqRedrive
from tooling.dlq import (
    DlqEntry,
    DlqError,
    dlq_spec,
    ledger_entry,
    plan_redrive,
    redrive_headers,
    redriven,
    render_list,
    render_plan,
    render_show,
    select,
)

T0 = datetime(2026, 12, 4, 14, 30, tzinfo=UTC)
DLQ = "p.md.quotes.dlq.v1"
ORIGINAL = "p.md.quotes.v1"


def _letter(offset: int, topic: str = ORIGINAL, headers: dict[str, bytes] | None = None) -> DeadLetter:
    return DeadLetter(
        original_topic=topic,
        partition=3,
        offset=offset,
        key=b"AAPL",
        value=b"\xc3\x01bytes",
        headers=headers if headers is not None else {"trace": b"abc"},
        error_kind="insert",
        error_message="constraint no_poison violated\nsecond line",
        component="warehouse_sink",
        failed_time=T0,
        original_timestamp=T0 - timedelta(seconds=1),
        consumer_group="ibstream.warehouse-sink",
        exception_class="ibstream.warehouse.exceptions.WarehouseError",
        stack_trace="Traceback (most recent call last):\n  ...\nWarehouseError: constraint",
    )


def _entry(dlq_offset: int, minutes: int = 0, letter: DeadLetter | None = None) -> DlqEntry:
    return DlqEntry(DLQ, 0, dlq_offset, T0 + timedelta(minutes=minutes), letter or _letter(100 + dlq_offset))


def _done(entry: DlqEntry) -> DlqRedrive:
    assert entry.letter is not None
    return ledger_entry(entry, entry.letter, "ops", T0 + timedelta(hours=1))


def test_a_topic_or_its_dlq_names_the_same_topic_and_an_unknown_one_is_refused() -> None:
    assert dlq_spec("md.quotes.v1") is dlq_spec("md.quotes.dlq.v1")
    assert dlq_spec("md.quotes.v1").name == "md.quotes.v1"
    with pytest.raises(DlqError, match=r"unknown topic 'md\.nothing\.v1'"):
        dlq_spec("md.nothing.v1")


def test_the_window_is_the_dlq_record_time_from_inclusive_to_exclusive() -> None:
    entries = [_entry(offset, minutes=offset) for offset in range(5)]
    picked = select(entries, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert [e.offset for e in picked] == [1, 2]
    assert [e.offset for e in select(entries, start=T0 + timedelta(minutes=3))] == [3, 4]
    assert [e.offset for e in select(entries, end=T0 + timedelta(minutes=1))] == [0]
    assert [e.offset for e in select(entries)] == [0, 1, 2, 3, 4]
    assert [e.offset for e in select(entries, offsets=[4, 2])] == [2, 4]
    assert select(entries, start=T0 + timedelta(minutes=2), offsets=[1]) == []


def test_a_redrive_sends_what_the_ledger_lacks_and_skips_what_it_holds() -> None:
    first, second, third = _entry(0), _entry(1), _entry(2)
    ledger = {second.key: _done(second)}
    plan = plan_redrive([first, second, third], ledger, ORIGINAL)
    assert plan.send == [first, third]
    assert plan.already == [(second, ledger[second.key])]
    assert plan.refused == []
    # Run again after the first redrive committed its ledger entries: nothing left to send.
    after = {entry.key: _done(entry) for entry in (first, second, third)}
    assert plan_redrive([first, second, third], after, ORIGINAL).send == []


def test_a_ledger_entry_for_another_record_at_the_same_dlq_offset_does_not_count() -> None:
    # The DLQ topic was deleted and created again: offset 0 now holds a different dead letter.
    old = _entry(0, letter=_letter(7))
    new = _entry(0, letter=_letter(8))
    ledger = {old.key: _done(old)}
    assert redriven(old, ledger) is not None and redriven(new, ledger) is None
    assert plan_redrive([new], ledger, ORIGINAL).send == [new]


def test_undecodable_letters_and_letters_from_another_topic_are_refused_with_the_reason() -> None:
    broken = DlqEntry(DLQ, 0, 5, T0, None, "unknown writer schema fingerprint")
    foreign = _entry(6, letter=_letter(1, topic="other.md.quotes.v1"))
    plan = plan_redrive([broken, foreign], {}, ORIGINAL)
    assert plan.send == [] and plan.already == []
    assert [(entry.offset, "fingerprint" in why) for entry, why in plan.refused] == [(5, True), (6, False)]
    assert "came from other.md.quotes.v1, not p.md.quotes.v1" in plan.refused[1][1]


def test_a_redriven_record_keeps_its_headers_and_says_which_dead_letter_it_came_from() -> None:
    now = T0 + timedelta(hours=2)
    entry = _entry(4, letter=_letter(104, headers={"trace": b"abc", "ibstream.redrive.dlq.offset": b"1"}))
    headers = redrive_headers(entry, now)
    assert headers == {
        "trace": b"abc",
        "ibstream.redrive.dlq.topic": DLQ.encode(),
        "ibstream.redrive.dlq.partition": b"0",
        "ibstream.redrive.dlq.offset": b"4",  # this redrive's, not the earlier one's
        "ibstream.redrive.time": now.isoformat().encode(),
    }


def test_the_ledger_entry_names_both_coordinates_and_who() -> None:
    entry = _entry(4)
    done = _done(entry)
    assert (done.dlq_topic, done.dlq_partition, done.dlq_offset) == (DLQ, 0, 4)
    assert (done.original_topic, done.original_partition, done.original_offset) == (ORIGINAL, 3, 104)
    assert done.ledger_key == entry.key == f"{DLQ}/0/4"
    assert done.redriven_by == "ops"


def test_list_and_show_say_what_failed_and_whether_it_was_sent_back() -> None:
    first, second = _entry(0), _entry(1)
    ledger = {second.key: _done(second)}
    listing = render_list([first, second], ledger).splitlines()
    assert "p.md.quotes.v1[3]@100" in listing[0] and "not redriven" in listing[0]
    assert "WarehouseError" in listing[0] and "second line" not in listing[0]
    assert "redriven 2026-12-04T15:30:00Z" in listing[1]
    assert listing[-1] == "2 dead letter(s)"
    shown = render_show(second, ledger)
    for fact in (
        "consumer group    ibstream.warehouse-sink",
        "exception class   ibstream.warehouse.exceptions.WarehouseError",
        "original time     2026-12-04T14:29:59+00:00",
        "redriven          2026-12-04T15:30:00+00:00 by ops",
        "  trace: b'abc' (3 bytes)",
        "  WarehouseError: constraint",
    ):
        assert fact in shown


def test_the_plan_report_says_would_on_a_dry_run() -> None:
    plan = plan_redrive([_entry(0), _entry(1)], {}, ORIGINAL)
    assert render_plan(plan, ORIGINAL, dry_run=True).splitlines()[-1] == (
        "would redrive 2 dead letter(s) to p.md.quotes.v1; 0 already redriven, 0 refused"
    )
    assert render_plan(plan, ORIGINAL, dry_run=False).splitlines()[0] == "redrove 0@0 → p.md.quotes.v1"

"""``ibstream history fetch``'s pure parts and its request loop over the fake IB session."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ibstream.backoff import Backoff
from ibstream.contracts.enums import MarketDataSource
from ibstream.ib import events
from ibstream.ib.codes import classify
from tests.fake_ib import FakeIbSession
from tooling.history import HistoryError, HistoryRequest, bar_records, fetch, history_offset, requests_for

T0 = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def _bar(req_id: int, at: datetime, close: float = 10.0) -> events.HistoricalBar:
    return events.HistoricalBar(req_id, str(int(at.timestamp())), close, close + 1, close - 1, close, 100.0, close, 5)


def _error(req_id: int, code: int, message: str) -> events.IbError:
    return events.IbError(req_id, code, message, classify(code, message))


def test_a_window_is_cut_into_requests_ib_takes_per_symbol() -> None:
    requests = requests_for(["AAPL", "MSFT"], T0, T0 + timedelta(minutes=150), "5 secs")
    assert [(r.symbol, r.start - T0, r.end - T0) for r in requests] == [
        ("AAPL", timedelta(0), timedelta(hours=1)),
        ("AAPL", timedelta(hours=1), timedelta(hours=2)),
        ("AAPL", timedelta(hours=2), timedelta(minutes=150)),
        ("MSFT", timedelta(0), timedelta(hours=1)),
        ("MSFT", timedelta(hours=1), timedelta(hours=2)),
        ("MSFT", timedelta(hours=2), timedelta(minutes=150)),
    ]
    assert (requests[0].end_text, requests[0].duration, requests[2].duration) == (
        "20261124-15:30:00",
        "3600 S",
        "1800 S",
    )
    assert HistoryRequest("A", T0, T0 + timedelta(seconds=20), "5 secs").duration == "60 S"  # IB refuses less
    assert HistoryRequest("A", T0, T0 + timedelta(days=3, hours=1), "1 hour").duration == "4 D"
    with pytest.raises(HistoryError, match="bar size '2 secs' is not one of 5 secs, 1 min"):
        requests_for(["AAPL"], T0, T0 + timedelta(hours=1), "2 secs")
    with pytest.raises(HistoryError, match="--to must be after --from"):
        requests_for(["AAPL"], T0, T0, "5 secs")


def test_answered_bars_outside_the_window_are_dropped_and_daily_dates_read() -> None:
    request = HistoryRequest("AAPL", T0, T0 + timedelta(seconds=10), "5 secs")
    answered = [
        _bar(1, T0 - timedelta(seconds=5)),
        _bar(1, T0),
        _bar(1, T0 + timedelta(seconds=5)),
        _bar(1, T0 + timedelta(seconds=10)),
    ]
    records = bar_records(request, answered)
    assert [r.start for r in records] == [T0, T0 + timedelta(seconds=5)]
    assert records[0].event_time == T0 + timedelta(seconds=5) and records[0].source is MarketDataSource.BACKFILL
    daily = HistoryRequest("AAPL", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "1 day")
    [day] = bar_records(daily, [events.HistoricalBar(1, "20261124", 1, 2, 0.5, 1.5, 10, 1.2, 3)])
    assert (day.start, day.event_time) == (datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))


def test_a_bars_stored_offset_is_stable_and_apart_from_other_bars() -> None:
    assert history_offset("AAPL", T0) == history_offset("AAPL", T0)
    offsets = {history_offset(s, T0 + timedelta(seconds=5 * i)) for s in ("AAPL", "MSFT") for i in range(1000)}
    assert len(offsets) == 2000 and all(0 <= o < 2**63 for o in offsets)


def test_a_pacing_violation_is_retried_after_a_backoff_and_no_data_is_an_empty_answer() -> None:
    session = FakeIbSession()
    requests = requests_for(["AAPL", "MSFT"], T0, T0 + timedelta(seconds=10), "5 secs")
    session.events.put(
        _error(1, 162, "Historical Market Data Service error message:Historical data request pacing violation")
    )
    for event in (_bar(2, T0), _bar(2, T0 + timedelta(seconds=5)), events.HistoricalEnd(2, "", "")):
        session.events.put(event)
    session.events.put(_error(3, 162, "Historical Market Data Service error message:HMDS query returned no data"))
    slept: list[float] = []
    answers = list(fetch(session, requests, backoff=Backoff(base=15.0, rng=random.Random(1)), sleep=slept.append))
    assert [(r.symbol, len(bars)) for r, bars in answers] == [("AAPL", 2), ("MSFT", 0)]
    assert [req_id for req_id, _, _ in session.historical] == [1, 2, 3]
    assert len(slept) == 1 and 7.5 <= slept[0] <= 15.0


def test_another_ib_error_or_a_lost_connection_stops_the_fetch_naming_it() -> None:
    session = FakeIbSession()
    session.events.put(_error(1, 200, "No security definition has been found for the request"))
    with pytest.raises(HistoryError, match="AAPL 20261124-14:30:10: IB 200: No security definition"):
        list(fetch(session, requests_for(["AAPL"], T0, T0 + timedelta(seconds=10), "5 secs")))
    session.connected = False
    with pytest.raises(HistoryError, match="connection is gone"):
        list(fetch(session, requests_for(["AAPL"], T0, T0 + timedelta(seconds=10), "5 secs")))
    with pytest.raises(HistoryError, match="no answer to historical request 1"):
        list(fetch(FakeIbSession(), requests_for(["AAPL"], T0, T0 + timedelta(seconds=10), "5 secs"), timeout=0.1))

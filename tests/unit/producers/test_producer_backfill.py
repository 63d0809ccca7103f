"""The producer's gap handling with a fake IB session and a fake Kafka sink: which requests go out, when a gap
gives up, and that a gap's record reaches Kafka before the bar that revealed it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ibstream.config import load_settings
from ibstream.contracts import Bar, Gap
from ibstream.contracts.enums import GapState
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.market_hours import EXCHANGE_TZ
from producers.market_data.service import ConnectionState, Instrument, MarketDataProducer
from tests.fake_ib import FakeIbSession

MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
PACING = "Historical Market Data Service error message:Historical data request pacing violation"


@dataclass
class FakeSink:
    sent: list[tuple[str, Any, Callable[..., None] | None]] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0

    def in_flight(self) -> int:
        return 0

    def topic(self, spec: Any) -> str:  # RecordProducer.topic: the name with the (here empty) prefix
        return str(spec.name)

    def send(self, spec: Any, record: Any, *, headers: Any = None, on_delivery: Any = None) -> None:
        self.sent.append((spec.name, record, on_delivery))

    def poll(self, _timeout: float = 0.0) -> int:
        return 0

    def flush(self, _timeout: float = 0.0) -> int:
        return 0

    def acknowledge_all(self) -> None:
        pending = [callback for _, _, callback in self.sent if callback is not None]
        self.sent = [(topic, record, None) for topic, record, _ in self.sent]
        for callback in pending:
            callback(None, None)

    def records(self, topic_part: str) -> list[Any]:
        return [record for topic, record, _ in self.sent if topic_part in topic]


class Wall:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _producer(**overrides: Any) -> tuple[MarketDataProducer, FakeIbSession, FakeSink, Wall]:
    settings = load_settings(symbols=["AAPL", "MSFT"], ib_historical_pacing_backoff_seconds=10.0, **overrides)
    session, sink, wall = FakeIbSession(), FakeSink(), Wall()
    producer = MarketDataProducer(settings, session, sink, wall=wall)  # type: ignore[arg-type]
    for bar_req, (symbol, con_id) in ((2, ("AAPL", 265598)), (4, ("MSFT", 272093))):
        producer.instruments[symbol] = Instrument(symbol, con_id, "NASDAQ", quote_req=bar_req - 1, bar_req=bar_req)
        producer.book.track(symbol, con_id)
        producer.subscriptions.bars[bar_req] = symbol
    producer.state = ConnectionState.CONNECTED
    return producer, session, sink, wall


def _bar(start: dt.datetime, req_id: int = 2) -> events.RealtimeBar:
    return events.RealtimeBar(req_id, int(start.timestamp()), 1.0, 1.0, 1.0, 1.0, 10.0, 1.0, 1)


def _deliver(producer: MarketDataProducer, session: FakeIbSession, *items: Any) -> None:
    for item in items:
        session.events.put(item)
    producer.step(0.0)


def _history(req_id: int, starts: list[dt.datetime]) -> list[Any]:
    bars = [events.HistoricalBar(req_id, str(int(s.timestamp())), 1.0, 1.0, 1.0, 1.0, 10.0, 1.0, 1) for s in starts]
    return [*bars, events.HistoricalEnd(req_id, "", "")]


def _at(n: int) -> dt.datetime:
    return MONDAY_10AM + dt.timedelta(seconds=5 * n)


def _gap_states(sink: FakeSink) -> list[tuple[str, GapState]]:
    records: list[Gap] = sink.records("gaps")
    return [(gap.gap_id, gap.state) for gap in records]


def test_the_bar_that_reveals_a_gap_waits_until_kafka_has_the_gap() -> None:
    producer, session, sink, _ = _producer()
    _deliver(producer, session, _bar(_at(0)))
    _deliver(producer, session, _bar(_at(5)))  # bars 1..4 missing
    assert _gap_states(sink)[0][1] is GapState.OPEN
    live: list[Bar] = sink.records("bars")
    assert [bar.start for bar in live] == [_at(0)], "the revealing bar went out before its gap was recorded"
    _deliver(producer, session, _bar(_at(6)))
    assert [bar.start for bar in sink.records("bars")] == [_at(0)]
    sink.acknowledge_all()
    producer.step(0.0)
    assert [bar.start for bar in sink.records("bars")] == [_at(0), _at(5), _at(6)]
    _deliver(producer, session, _bar(_at(7)))  # no gap open: straight out
    assert [bar.start for bar in sink.records("bars")][-1] == _at(7)


def test_a_failed_gap_record_is_sent_again_and_the_bars_keep_waiting() -> None:
    producer, session, sink, _ = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(3)))
    index = next(i for i, (topic, _, _) in enumerate(sink.sent) if "gaps" in topic)
    topic, first, callback = sink.sent[index]
    assert callback is not None
    sink.sent[index] = (topic, first, None)
    callback("broker gone", None)
    producer.step(0.0)
    assert len([r for r in sink.records("gaps") if r.gap_id == first.gap_id and r.state is GapState.OPEN]) == 2
    assert [bar.start for bar in sink.records("bars")] == [_at(0)]
    sink.acknowledge_all()
    producer.step(0.0)
    assert [bar.start for bar in sink.records("bars")] == [_at(0), _at(3)]


def test_pacing_violations_never_exhaust_a_gaps_attempts() -> None:
    producer, session, sink, wall = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(4)))
    missing = [_at(1), _at(2), _at(3)]
    for violation in range(5):
        assert len(session.historical) == violation + 1
        req_id = session.historical[-1][0]
        _deliver(producer, session, events.IbError(req_id, 162, PACING, CodeKind.PACING))
        assert producer.tracker.gaps, "a pacing rejection gave up on the gap"
        producer.step(0.0)
        assert len(session.historical) == violation + 1, "asked again without pausing"
        wall.now += 700.0  # past any backoff
        producer.step(0.0)
    req_id = session.historical[-1][0]
    _deliver(producer, session, *_history(req_id, missing))
    assert not producer.tracker.gaps
    assert _gap_states(sink)[-1][1] is GapState.BACKFILLED
    assert all(state is not GapState.UNRECOVERABLE for _, state in _gap_states(sink))


def test_answered_attempts_still_give_up_after_three() -> None:
    producer, session, sink, wall = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(4)))
    for attempt in range(3):
        wall.now += 20.0
        producer.step(0.0)
        assert len(session.historical) == attempt + 1
        _deliver(producer, session, *_history(session.historical[-1][0], [_at(1)]))  # IB keeps missing 2 and 3
    assert not producer.tracker.gaps
    final = sink.records("gaps")[-1]
    assert final.state is GapState.UNRECOVERABLE and "2 of 3 bars still missing after 3" in (final.reason or "")


def test_gaps_of_a_symbol_waiting_on_pacing_go_out_as_one_request() -> None:
    producer, session, sink, wall = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(3)))  # gap 1: bars 1, 2
    first = session.historical[-1][0]
    _deliver(producer, session, events.IbError(first, 162, PACING, CodeKind.PACING))
    _deliver(producer, session, _bar(_at(4)), _bar(_at(8)))  # gap 2: bars 5, 6, 7, found while paused
    assert len(session.historical) == 1
    wall.now += 700.0
    producer.step(0.0)
    assert len(session.historical) == 2, "the two gaps should share one request"
    req_id, end, _ = session.historical[-1]
    assert end == _at(8).strftime("%Y%m%d-%H:%M:%S")
    _deliver(producer, session, *_history(req_id, [_at(n) for n in range(0, 9)]))
    assert not producer.tracker.gaps
    assert sorted(state.value for _, state in _gap_states(sink) if state is GapState.BACKFILLED) == ["backfilled"] * 2
    backfilled = sorted(bar.start for bar in sink.records("bars") if bar.source.value == "backfill")
    assert backfilled == [_at(n) for n in (1, 2, 5, 6, 7)]


def test_a_lost_connection_asks_again_for_what_its_requests_asked() -> None:
    producer, session, _, _ = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(4)))
    assert len(session.historical) == 1
    producer.generation = 1
    _deliver(producer, session, events.Disconnected(1, "socket closed"))
    producer._on_connected(events.Connected(5, ("DU1",), 178, 2))
    assert len(session.historical) == 2
    (gap,) = producer.tracker.gaps.values()
    assert gap.attempts == 0, "a request lost with the connection is no attempt"


def test_requests_refused_together_pause_once_then_one_probes_the_window() -> None:
    producer, session, _, wall = _producer()
    _deliver(producer, session, _bar(_at(0)), _bar(_at(0), req_id=4), _bar(_at(4)), _bar(_at(4), req_id=4))
    assert len(session.historical) == 2  # one per symbol, out together
    _deliver(
        producer,
        session,
        *(events.IbError(req_id, 162, PACING, CodeKind.PACING) for req_id, _, _ in session.historical),
    )
    assert producer._historical_paused_until - wall.now <= 10.0, "two refusals of one burst doubled the pause"
    wall.now += 11.0
    producer.step(0.0)
    producer.step(0.0)
    assert len(session.historical) == 3, "after a violation only one request should probe IB's window"
    probe = session.historical[-1][0]
    _deliver(producer, session, *_history(probe, [_at(n) for n in range(4)]))
    assert len(session.historical) == 4, "an answered probe lets the rest out"
    _deliver(producer, session, *_history(session.historical[-1][0], [_at(n) for n in range(4)]))
    assert not producer.tracker.gaps


class _Recorded:
    def __init__(self) -> None:
        self.values: list[float] = []

    def record(self, value: float, _attributes: Any = None) -> None:
        self.values.append(value)


def test_ingest_lag_is_measured_on_ibs_clock_whatever_the_local_clock_says() -> None:
    # A simulated session hours ahead of the local clock (the demo at 600x early in a UTC day) and one years behind
    # it: both must record every bar, and a lag of IB's seconds, not the distance between the two clocks.
    for session_start in (dt.datetime.now(dt.UTC) + dt.timedelta(hours=9), MONDAY_10AM):
        producer, session, _, wall = _producer()
        lag = _Recorded()
        producer.metrics.m_ingest_lag = lag  # type: ignore[assignment]
        for n in range(3):
            wall.now += 5.0
            _deliver(producer, session, _bar(session_start + dt.timedelta(seconds=5 * n)))
        assert len(lag.values) == 3
        assert all(0.0 <= value < 1.0 for value in lag.values), lag.values

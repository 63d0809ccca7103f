"""``ibstream history fetch``: IB's historical bars into the warehouse, so a backtest needs no recorded session.

The window is cut into requests IB takes (``requests_for``: at most an hour of 5-second bars per request, longer
spans for longer bars), asked symbol by symbol through the core's IB session (``ibstream.ib.session.IbSession``),
whose pacing governor (``ibstream.ib.pacing``) holds every request until IB's historical pacing rules let it out:
the same governor the producer's backfill goes through. A pacing violation (162) is retried after a backoff; "no
data" (162 HMDS, e.g. a holiday) is an empty answer.

Bars are stored as the sink would store them (``md.bars.5s.v1``, or the timeframe's aggregate topic, with
``source=backfill``), but with history coordinates: partition ``HISTORY_PARTITION`` (never a Kafka partition) and
an offset derived from (symbol, start), so fetching a window again replaces its bars instead of adding copies, and
a Kafka timestamp equal to the bar's start (what selects records by time when the API reads the warehouse).
Pure: ``requests_for``, ``bar_records``, ``history_offset``; I/O: ``fetch`` and ``fetch_history``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ibstream.backoff import Backoff
from ibstream.config import Settings
from ibstream.contracts import Bar, utc_now
from ibstream.contracts.bars import timeframe_topic
from ibstream.contracts.enums import MarketDataSource
from ibstream.exceptions import IbstreamError
from ibstream.ib import events
from ibstream.ib.bar_records import bar_record
from ibstream.ib.codes import CodeKind
from ibstream.ib.protocol import Session
from ibstream.ib.session import stock_contract

log = logging.getLogger(__name__)

#: IB's bar sizes this command takes → (our timeframe, seconds one request may span, the bar's length).
BAR_SIZES: dict[str, tuple[str, int, int]] = {
    "5 secs": ("5s", 3_600, 5),
    "1 min": ("1m", 86_400, 60),
    "5 mins": ("5m", 7 * 86_400, 300),
    "15 mins": ("15m", 14 * 86_400, 900),
    "1 hour": ("1h", 30 * 86_400, 3_600),
    "1 day": ("1d", 365 * 86_400, 86_400),
}
#: The partition history rows are stored under (Kafka partitions are never negative).
HISTORY_PARTITION = -1
#: Attempts per request after pacing violations before giving up.
PACING_ATTEMPTS = 5
#: How long one request may take to be answered.
ANSWER_TIMEOUT_SECONDS = 60.0


class HistoryError(IbstreamError):
    """The history could not be fetched (no connection, no answer, IB refused)."""


@dataclass(frozen=True)
class HistoryRequest:
    """One reqHistoricalData: a symbol's bars in [start, end)."""

    symbol: str
    start: datetime
    end: datetime
    bar_size: str

    @property
    def end_text(self) -> str:
        """IB's end time in UTC (``yyyymmdd-hh:mm:ss``)."""
        return self.end.strftime("%Y%m%d-%H:%M:%S")

    @property
    def duration(self) -> str:
        """IB's duration: seconds up to a day (at least 60: shorter ones are refused), whole days beyond."""
        seconds = int((self.end - self.start).total_seconds())
        if seconds <= 86_400:
            return f"{max(seconds, 60)} S"
        return f"{-(-seconds // 86_400)} D"


def requests_for(symbols: Sequence[str], start: datetime, end: datetime, bar_size: str) -> list[HistoryRequest]:
    """The requests covering [start, end) for every symbol, oldest first per symbol."""
    if bar_size not in BAR_SIZES:
        raise HistoryError(f"bar size {bar_size!r} is not one of {', '.join(BAR_SIZES)}")
    if end <= start:
        raise HistoryError("--to must be after --from")
    span = timedelta(seconds=BAR_SIZES[bar_size][1])
    requests = []
    for symbol in symbols:
        at = start
        while at < end:
            requests.append(HistoryRequest(symbol, at, min(at + span, end), bar_size))
            at += span
    return requests


def _bar_start(date: str) -> datetime:
    """A historical bar's time with formatDate=2: epoch seconds; daily bars: ``yyyymmdd`` (taken as 00:00 UTC)."""
    if len(date) == 8:  # epoch seconds have ten digits since 2001
        return datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(date), UTC)


def bar_records(request: HistoryRequest, answered: Sequence[events.HistoricalBar]) -> list[Bar]:
    """The answered bars inside the request's window as bar records (``source=backfill``)."""
    length = timedelta(seconds=BAR_SIZES[request.bar_size][2])
    now = utc_now()
    records = []
    for bar in answered:
        start = _bar_start(bar.date)
        if request.start <= start < request.end:
            records.append(bar_record(request.symbol, start, bar, MarketDataSource.BACKFILL, length, now))
    return records


def history_offset(symbol: str, start: datetime) -> int:
    """The stored offset of a fetched bar: the same for the same bar, apart for any other (63 bits of a hash)."""
    digest = hashlib.sha256(f"{symbol}|{int(start.timestamp())}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _answer(session: Session, req_id: int, timeout: float) -> tuple[list[events.HistoricalBar], events.IbError | None]:
    """The bars of ``req_id`` until its end or an error about it (other events are not this command's)."""
    deadline = time.monotonic() + timeout
    bars: list[events.HistoricalBar] = []
    while True:
        try:
            event = session.events.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise HistoryError(f"no answer to historical request {req_id} in {timeout:.0f}s") from None
        if isinstance(event, events.HistoricalBar) and event.req_id == req_id:
            bars.append(event)
        elif isinstance(event, events.HistoricalEnd) and event.req_id == req_id:
            return bars, None
        elif isinstance(event, events.IbError) and event.req_id == req_id:
            return bars, event
        elif isinstance(event, events.Disconnected):
            raise HistoryError(f"the gateway disconnected: {event}")


def fetch(
    session: Session,
    requests: Sequence[HistoryRequest],
    *,
    use_rth: bool = False,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = ANSWER_TIMEOUT_SECONDS,
) -> Iterator[tuple[HistoryRequest, list[Bar]]]:
    """Each request's bars, asked one at a time (the session's governor paces them)."""
    backoff = backoff or Backoff(base=15.0, cap=120.0)
    req_ids = itertools.count(1)
    for request in requests:
        contract = stock_contract(request.symbol)
        for _ in range(PACING_ATTEMPTS):
            req_id = next(req_ids)
            if not session.req_historical_data(
                req_id, contract, request.end_text, request.duration, request.bar_size, use_rth=use_rth
            ):
                raise HistoryError("the gateway connection is gone")
            answered, error = _answer(session, req_id, timeout)
            if error is None or error.kind is CodeKind.NO_DATA:
                backoff.reset()
                yield request, bar_records(request, answered)
                break
            if error.kind is not CodeKind.PACING:
                raise HistoryError(f"{request.symbol} {request.end_text}: IB {error.code}: {error.message}")
            delay = backoff.next_delay()
            log.warning("historical pacing violation; retrying", extra={"symbol": request.symbol, "seconds": delay})
            sleep(delay)
        else:
            raise HistoryError(f"{request.symbol} {request.end_text}: still paced out after {PACING_ATTEMPTS} tries")


@dataclass(frozen=True)
class FetchReport:
    requests: int
    bars: int
    seconds: float
    table: str


def fetch_history(
    settings: Settings,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    bar_size: str = "5 secs",
    client_id: int = 41,
    progress: Callable[[int, int, int], None] | None = None,
) -> FetchReport:
    """Connect, fetch every request's bars and insert them into the warehouse as they arrive."""
    from ibstream.ib.session import IbSession
    from ibstream.warehouse import Warehouse

    requests = requests_for(symbols, start, end, bar_size)
    spec = timeframe_topic(BAR_SIZES[bar_size][0])
    topic = settings.kafka.topic_prefix + spec.name
    began = time.monotonic()
    session = IbSession(settings.ib.host, settings.ib.port, client_id)
    stored = 0
    with Warehouse.open(settings) as warehouse:
        table = warehouse.schema.for_topic(spec)
        session.connect(settings.ib.connect_timeout_seconds)
        try:
            for done, (_, records) in enumerate(fetch(session, requests, use_rth=False), start=1):
                rows = [(bar, HISTORY_PARTITION, history_offset(bar.symbol, bar.start), bar.start) for bar in records]
                warehouse.insert_records(table, topic, rows)
                stored += len(rows)
                if progress is not None:
                    progress(done, len(requests), stored)
        finally:
            session.disconnect()
    return FetchReport(len(requests), stored, time.monotonic() - began, table.name)

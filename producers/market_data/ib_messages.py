"""IB's messages (its error callback) and what the producer does about them.

A message naming a backfill request is that request's answer (``backfill``). Any other message the connection
reads first (``ibstream.ib.connection``): connectivity lost or restored, a data farm broken or back. Connectivity
restored (1101 data lost, and 1102 "data maintained" too, which users find is not always so) resubscribes every
symbol. A farm back after a break (2104/2106/2158) starts a grace period, after which the streams silent since the
break are resubscribed (the service's periodic work, ``liveness.FarmRecovery``). A competing live session (10197)
pauses market data: the requests are cancelled, one warning alert fires, and the service asks again every
``IBSTREAM_IB_COMPETING_SESSION_RETRY_SECONDS`` until data flows (``liveness.CompetingSession``). A message naming a
subscription's request concerns that symbol: delayed data marks its quotes delayed; no market data permission is a
warning alert. Every message is logged, a warning counted as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ibstream.contracts.enums import Severity
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.ib.connection import Connectivity, IbConnection
from ibstream.telemetry import log_context, record_error
from producers.market_data.alert_sink import AlertSink
from producers.market_data.backfill import COMPONENT, Backfiller
from producers.market_data.bar_tracker import BarTracker
from producers.market_data.liveness import CompetingSession, FarmRecovery
from producers.market_data.quote_book import QuoteBook
from producers.market_data.subscriptions import Subscriptions

log = logging.getLogger(__name__)

#: Message kinds logged at INFO; any other is a warning.
INFO_KINDS = (CodeKind.INFO, CodeKind.FARM_OK, CodeKind.FARM_INACTIVE)


class IbMessages:
    """Routes each IB message to the part of the producer it concerns."""

    def __init__(
        self,
        connection: IbConnection,
        subscriptions: Subscriptions,
        backfill: Backfiller,
        book: QuoteBook,
        tracker: BarTracker,
        alerts: AlertSink,
        farm: FarmRecovery,
        competing: CompetingSession,
        wall: Callable[[], float],
    ) -> None:
        self.farm = farm
        self.competing = competing
        self.wall = wall
        self.connection = connection
        self.subscriptions = subscriptions
        self.backfill = backfill
        self.book = book
        self.tracker = tracker
        self.alerts = alerts

    def on_error(self, error: events.IbError) -> None:
        if error.req_id in self.backfill.requests:
            self.backfill.done(error.req_id, error)
            return
        kind = error.kind
        symbol = self.subscriptions.symbol(error.req_id)
        meaning = self.connection.on_error(error)
        if meaning is not None:
            self._on_connectivity(error, meaning, symbol)
        elif kind is CodeKind.DELAYED_DATA and symbol is not None:
            self.book.mark_delayed(symbol, True)
        elif kind is CodeKind.NOT_SUBSCRIBED and symbol is not None:
            self._symbol_warning(error, symbol)
        level = logging.INFO if kind in INFO_KINDS else logging.WARNING
        if level == logging.WARNING and kind is not CodeKind.DELAYED_DATA:
            record_error(f"ib_{kind.value}", COMPONENT)
        with log_context(symbol=symbol):
            log.log(
                level,
                "IB message",
                extra={"code": error.code, "ib_message": error.message, "kind": kind.value, "req_id": error.req_id},
            )

    def _on_connectivity(self, error: events.IbError, meaning: Connectivity, symbol: str | None) -> None:
        """React to what the connection says an IB message means (``ibstream.ib.connection``)."""
        match meaning:
            case Connectivity.LOST:
                self.tracker.note_interruption(f"ib_{error.code}")
                self.alerts.fire(
                    "ib_disconnected",
                    COMPONENT,
                    Severity.CRITICAL,
                    f"IB connectivity lost ({error.code})",
                    details={"code": str(error.code)},
                )
            case Connectivity.RESTORED_DATA_LOST:
                self.alerts.resolve("ib_disconnected", COMPONENT, "IB connectivity restored, data lost: resubscribed")
                self.subscriptions.subscribe_all()
                self.backfill.resume()
            case Connectivity.RESTORED_DATA_MAINTAINED:
                # "Data maintained" is not always so (silently dead subscriptions): ask again all the same.
                self.alerts.resolve(
                    "ib_disconnected", COMPONENT, "IB connectivity restored, data maintained: resubscribed"
                )
                self.subscriptions.subscribe_all()
                self.backfill.resume()
            case Connectivity.FARM_BROKEN:
                self.tracker.note_interruption(f"farm_{error.code}")
                self.farm.on_broken(self.wall())
            case Connectivity.FARM_RESTORED:
                # Data may or may not come back by itself: streams still silent after a grace period are resubscribed.
                self.farm.on_restored(self.wall())
            case Connectivity.COMPETING_SESSION:
                self._on_competing_session(error)
            case _:
                pass

    def _on_competing_session(self, error: events.IbError) -> None:
        """10197: pause every request (IB ended them); the first one starts the pause and its alert."""
        self.subscriptions.cancel_all()
        if not self.competing.start(self.wall()):
            return
        self.tracker.note_interruption("competing_session")
        self.alerts.fire(
            "competing_session",
            COMPONENT,
            Severity.WARNING,
            f"IB: {error.message}; market data paused until the other live session ends",
            details={"code": str(error.code), "retry_seconds": f"{self.competing.retry_seconds:g}"},
        )
        log.warning(
            "competing live session: market data paused",
            extra={"code": error.code, "retry_in_seconds": self.competing.retry_seconds},
        )

    def _symbol_warning(self, error: events.IbError, symbol: str) -> None:
        self.alerts.fire(
            error.kind.value,
            symbol,
            Severity.WARNING,
            f"{symbol}: {error.message}",
            symbol=symbol,
            details={"code": str(error.code)},
        )

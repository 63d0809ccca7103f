"""IB's messages (its error callback) and what the producer does about them.

A message naming a backfill request is that request's answer (``backfill``). Any other message the connection
reads first (``ibstream.ib.connection``): connectivity lost or restored, a data farm broken or back. Restored with
data lost, or a farm back after a break, means subscriptions may be silently dead: every symbol is resubscribed.
A message naming a subscription's request concerns that symbol: delayed data marks its quotes delayed; no market
data permission, or a competing session, is a warning alert. Every message is logged, a warning counted as an error.
"""

from __future__ import annotations

import logging

from ibstream.contracts.enums import Severity
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.ib.connection import Connectivity, IbConnection
from ibstream.telemetry import log_context, record_error
from producers.market_data.alert_sink import AlertSink
from producers.market_data.backfill import COMPONENT, Backfiller
from producers.market_data.bar_tracker import BarTracker
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
    ) -> None:
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
                self.alerts.resolve("ib_disconnected", COMPONENT, "IB connectivity restored, data maintained")
                self.backfill.resume()
            case Connectivity.FARM_BROKEN:
                self.tracker.note_interruption(f"farm_{error.code}")
            case Connectivity.FARM_RESTORED:
                # A farm coming back after a break can leave subscriptions silently dead: resubscribe.
                self.subscriptions.subscribe_all()
            case Connectivity.COMPETING_SESSION if symbol is not None:
                self._symbol_warning(error, symbol)
            case _:
                pass

    def _symbol_warning(self, error: events.IbError, symbol: str) -> None:
        self.alerts.fire(
            error.kind.value,
            symbol,
            Severity.WARNING,
            f"{symbol}: {error.message}",
            symbol=symbol,
            details={"code": str(error.code)},
        )

"""The IB connection lifecycle, once for every deployable (after NautilusTrader's IB ``client/connection.py``).

State machine of one connection:

    CONNECTING ─handshake─▶ CONNECTED ─1100/2110/1300 (gateway lost IB)─▶ IB_LOST ─1101/1102─▶ CONNECTED
    CONNECTING ─no handshake─▶ DISCONNECTED ─after backoff with jitter─▶ CONNECTING
    CONNECTED, IB_LOST ─socket closed (gateway restart, 326 client id in use)─▶ DISCONNECTED
    any ─stop()─▶ STOPPED

``on_error`` says what an IB message means for the connection (``Connectivity``) and updates the state; the
deployable reacts (resubscribe, reconcile, alert). 1101 lost the subscriptions, 1102 kept them; a market data farm
coming back (2104/2106/2158) matters only after it broke (2103/2105/2157): subscriptions can then be silently
dead. 10197 (competing session) is surfaced, not acted on: the data stops, the socket stays. IB Gateway's daily
restart closes the socket at a configured time: ``in_daily_restart_window`` tells that expected disconnect apart.
Each reconnect gets a new session generation, so events of an old socket are told apart (``current``).

The paper-account check: orders only for a paper account (DU…, DF…) or the live account the settings name.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from zoneinfo import ZoneInfo

from ibstream.backoff import Backoff
from ibstream.ib import events
from ibstream.ib.codes import (
    CLIENT_ID_IN_USE_CODES,
    COMPETING_SESSION_CODES,
    CONNECTIVITY_LOST_CODES,
    FARM_BROKEN_CODES,
    FARM_RESTORED_CODES,
    CodeKind,
)
from ibstream.ib.protocol import Session
from ibstream.ib.session import IbConnectError

log = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    IB_LOST = "ib_lost"  # socket up, but the gateway lost IB's servers (1100)
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


class Connectivity(StrEnum):
    """What an IB message means for the connection."""

    LOST = "lost"  # 1100: the gateway lost IB's servers
    RESTORED_DATA_LOST = "restored_data_lost"  # 1101: resubscribe everything
    RESTORED_DATA_MAINTAINED = "restored_data_maintained"  # 1102: subscriptions survived
    FARM_BROKEN = "farm_broken"
    FARM_RESTORED = "farm_restored"  # a farm back after it broke: resubscribe
    COMPETING_SESSION = "competing_session"  # 10197
    CLIENT_ID_IN_USE = "client_id_in_use"  # 326: the gateway closes the socket next


_RESTORED = {
    CodeKind.RESTORED_DATA_LOST: Connectivity.RESTORED_DATA_LOST,
    CodeKind.RESTORED_DATA_MAINTAINED: Connectivity.RESTORED_DATA_MAINTAINED,
}


def in_daily_restart_window(at: dt.datetime, restart_time: str | None, timezone: str, window_seconds: float) -> bool:
    """Whether ``at`` falls in the gateway's daily restart: from a minute before the configured time ("HH:MM" in
    ``timezone``) to ``window_seconds`` after it. IB Gateway restarts itself then; a disconnect there is expected."""
    if restart_time is None:
        return False
    hour, minute = (int(part) for part in restart_time.split(":"))
    local = at.astimezone(ZoneInfo(timezone))
    for day in (local.date() - dt.timedelta(days=1), local.date()):
        restart = dt.datetime.combine(day, dt.time(hour, minute), local.tzinfo)
        if -60.0 <= (local - restart).total_seconds() <= window_seconds:
            return True
    return False


def is_paper_account(account: str) -> bool:
    """IB paper accounts start with DU (individual) or DF (advisor paper master)."""
    return account.upper().startswith(("DU", "DF"))


def may_trade(account: str, live_account: str | None) -> bool:
    """The paper interlock: a paper account, or exactly the live account the settings name."""
    return is_paper_account(account) or (live_account is not None and account == live_account)


def live_accounts(accounts: tuple[str, ...], live_account: str | None) -> list[str]:
    """The accounts no order may go to (``may_trade`` refuses them)."""
    return [account for account in accounts if not may_trade(account, live_account)]


class IbConnection:
    """Connects, reconnects with backoff and jitter, and tracks the connection's state and generation."""

    def __init__(
        self,
        session: Session,
        *,
        base_seconds: float,
        cap_seconds: float,
        timeout_seconds: float,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.timeout_seconds = timeout_seconds
        self.wall = wall
        self.backoff = Backoff(base_seconds, cap_seconds)
        self.state = ConnectionState.CONNECTING
        self.generation = 0
        self.next_connect_at = 0.0
        self.farm_broken = False

    @property
    def due(self) -> bool:
        """Not connected, and the backoff delay has passed."""
        return (
            self.state in (ConnectionState.CONNECTING, ConnectionState.DISCONNECTED)
            and self.wall() >= self.next_connect_at
        )

    def connect(self) -> events.Connected | None:
        """One attempt; None (and the next one scheduled after a backoff delay) if the gateway did not answer."""
        self.state = ConnectionState.CONNECTING
        try:
            connected = self.session.connect(self.timeout_seconds)
        except IbConnectError as error:
            delay = self._schedule_reconnect()
            log.warning("IB connect failed; retrying", extra={"error": str(error), "retry_in_seconds": round(delay, 2)})
            return None
        self.on_connected(connected)
        return connected

    def on_connected(self, connected: events.Connected) -> None:
        """The handshake completed: a new generation, and the backoff starts over."""
        self.generation = connected.generation
        self.state = ConnectionState.CONNECTED
        self.backoff.reset()

    def current(self, event: events.Disconnected) -> bool:
        """The event is about the current socket (not a late one of an earlier connection)."""
        return event.generation == self.generation

    def on_disconnected(self, event: events.Disconnected) -> float | None:
        """The socket closed: reconnect after a backoff delay (returned). None: an old socket's, or stopped."""
        if not self.current(event) or self.state is ConnectionState.STOPPED:
            return None
        return self._schedule_reconnect()

    def on_error(self, error: events.IbError) -> Connectivity | None:
        """What an IB message means for the connection (None: nothing), with the state updated."""
        up = self.state in (ConnectionState.CONNECTED, ConnectionState.IB_LOST)  # a closed socket stays closed
        if error.code in CONNECTIVITY_LOST_CODES:
            self.state = ConnectionState.IB_LOST if up else self.state
            return Connectivity.LOST
        if error.kind in _RESTORED:
            self.state = ConnectionState.CONNECTED if up else self.state
            return _RESTORED[error.kind]
        if error.code in FARM_BROKEN_CODES:
            self.farm_broken = True
            return Connectivity.FARM_BROKEN
        if error.code in FARM_RESTORED_CODES and self.farm_broken:
            self.farm_broken = False
            return Connectivity.FARM_RESTORED
        if error.code in COMPETING_SESSION_CODES:
            return Connectivity.COMPETING_SESSION
        if error.code in CLIENT_ID_IN_USE_CODES:
            return Connectivity.CLIENT_ID_IN_USE
        return None

    def stop(self) -> None:
        self.state = ConnectionState.STOPPED
        self.session.disconnect()

    def _schedule_reconnect(self) -> float:
        delay = self.backoff.next_delay()
        self.next_connect_at = self.wall() + delay
        self.state = ConnectionState.DISCONNECTED
        return delay

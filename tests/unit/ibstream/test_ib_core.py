"""Pure parts of the IB module: code classification, pacing governor, backoff, the connection lifecycle."""

from __future__ import annotations

import random

import pytest

from ibstream.backoff import Backoff
from ibstream.ib import events
from ibstream.ib.codes import CodeKind, classify
from ibstream.ib.connection import ConnectionState, Connectivity, IbConnection, live_accounts
from ibstream.ib.pacing import PacingGovernor, PacingLimits
from tests.fake_ib import FakeIbSession


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (1100, "Connectivity between IB and Trader Workstation has been lost.", CodeKind.CONNECTION_LOST),
        (1101, "Connectivity … restored - data lost.", CodeKind.RESTORED_DATA_LOST),
        (1102, "Connectivity … restored - data maintained.", CodeKind.RESTORED_DATA_MAINTAINED),
        (2104, "Market data farm connection is OK:usfarm", CodeKind.FARM_OK),
        (2103, "Market data farm connection is broken:usfarm", CodeKind.FARM_BROKEN),
        (2108, "Market data farm connection is inactive", CodeKind.FARM_INACTIVE),
        (162, "Historical Market Data Service error message:Historical data request pacing violation", CodeKind.PACING),
        (162, "Historical Market Data Service error message:HMDS query returned no data: X", CodeKind.NO_DATA),
        (162, "Historical Market Data Service error message:invalid step", CodeKind.ERROR),
        (10167, "Requested market data is not subscribed. Displaying delayed market data.", CodeKind.DELAYED_DATA),
        (201, "Order rejected - reason:", CodeKind.ORDER_REJECTED),
        (326, "Unable to connect as the client id is already in use.", CodeKind.DUPLICATE_CLIENT_ID),
        (2199, "some new notice", CodeKind.INFO),
        (9999, "unknown", CodeKind.ERROR),
    ],
)
def test_codes_classify_as_documented(code: int, message: str, kind: CodeKind) -> None:
    assert classify(code, message) is kind


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_message_rate_is_capped() -> None:
    clock = FakeClock()
    governor = PacingGovernor(PacingLimits(messages_per_second=10), clock=clock)
    waits = [governor.reserve() for _ in range(25)]
    assert waits[:10] == [0.0] * 10
    assert all(wait > 0 for wait in waits[10:])
    # Booked send times never put more than 10 messages in any 1-second window.
    booked = sorted(clock.now + wait for wait in waits)
    assert all(booked[i + 10] - booked[i] >= 1.0 - 1e-9 for i in range(len(booked) - 10))


def test_identical_historical_request_waits_15_seconds_plus_margin() -> None:
    clock = FakeClock()
    governor = PacingGovernor(PacingLimits(messages_per_second=1000), clock=clock)
    key = (("AAPL", 0, "TRADES"), ("AAPL", "end", "60 S"))
    assert governor.reserve(key) == 0.0
    clock.now += 5
    assert governor.reserve(key) == pytest.approx(10.25)


def test_sixth_request_same_contract_waits_for_the_window() -> None:
    clock = FakeClock()
    governor = PacingGovernor(PacingLimits(messages_per_second=1000), clock=clock)
    contract = ("QQQ", 0, "TRADES")
    waits = [governor.reserve((contract, ("QQQ", index))) for index in range(6)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(2.25)
    clock.now += 3
    other = governor.reserve((("SPY", 0, "TRADES"), ("SPY", 0)))
    assert other == 0.0  # once the queue drained, another contract has no window of its own to wait for


def test_sixty_per_ten_minutes() -> None:
    clock = FakeClock()
    governor = PacingGovernor(PacingLimits(messages_per_second=1000), clock=clock)
    for index in range(60):
        clock.now += 3  # far enough apart for the per-contract rule
        assert governor.reserve((("X", index % 7, "TRADES"), index)) == 0.0
    clock.now += 3
    wait = governor.reserve((("X", 99, "TRADES"), "next"))
    assert wait == pytest.approx(600.25 - 180)


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(8)]
    assert all(ceiling / 2 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.5


# --- the connection lifecycle ---------------------------------------------------------------------------------------


def _connection(session: FakeIbSession, clock: FakeClock) -> IbConnection:
    return IbConnection(session, base_seconds=1.0, cap_seconds=8.0, timeout_seconds=1.0, wall=clock)


def _error(code: int, message: str = "") -> events.IbError:
    return events.IbError(-1, code, message, classify(code, message))


def test_connection_retries_with_growing_jittered_backoff_and_starts_over_once_connected() -> None:
    session, clock = FakeIbSession(), FakeClock()
    connection = _connection(session, clock)
    session.refuse_connect = True
    delays = []
    for _ in range(4):
        assert connection.due and connection.connect() is None
        assert connection.state is ConnectionState.DISCONNECTED and not connection.due
        delays.append(connection.next_connect_at - clock.now)
        clock.now = connection.next_connect_at
    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[3] <= 8.0, delays
    session.refuse_connect = False
    connected = connection.connect()
    assert connected is not None and connection.state is ConnectionState.CONNECTED
    assert connection.generation == connected.generation and connection.backoff.attempt == 0


def test_connectivity_codes_move_the_connection_and_say_what_to_do() -> None:
    session, clock = FakeIbSession(), FakeClock()
    connection = _connection(session, clock)
    connection.connect()
    assert connection.on_error(_error(1100)) is Connectivity.LOST and connection.state is ConnectionState.IB_LOST
    assert connection.on_error(_error(1101)) is Connectivity.RESTORED_DATA_LOST
    assert connection.state is ConnectionState.CONNECTED
    assert connection.on_error(_error(1102)) is Connectivity.RESTORED_DATA_MAINTAINED
    assert connection.on_error(_error(2104, "Market data farm connection is OK:usfarm")) is None, "no break before"
    assert connection.on_error(_error(2103)) is Connectivity.FARM_BROKEN
    assert connection.on_error(_error(2158)) is Connectivity.FARM_RESTORED
    assert connection.on_error(_error(2106)) is None
    assert connection.on_error(_error(10197)) is Connectivity.COMPETING_SESSION
    assert connection.on_error(_error(326)) is Connectivity.CLIENT_ID_IN_USE
    assert connection.on_error(_error(200)) is None


def test_a_late_disconnect_of_an_old_socket_is_ignored() -> None:
    session, clock = FakeIbSession(), FakeClock()
    connection = _connection(session, clock)
    connection.connect()
    connection.connect()
    assert connection.on_disconnected(events.Disconnected(1, "old socket")) is None
    assert connection.state is ConnectionState.CONNECTED
    assert connection.on_disconnected(events.Disconnected(2, "closed")) is not None
    assert connection.state is ConnectionState.DISCONNECTED
    connection.stop()
    assert connection.on_disconnected(events.Disconnected(2, "closed")) is None


def test_only_paper_accounts_or_the_named_live_one_may_trade() -> None:
    assert live_accounts(("DU1", "DF2", "U3", "U4"), "U4") == ["U3"]


def test_a_restore_message_after_the_socket_closed_does_not_stop_the_reconnect() -> None:
    session, clock = FakeIbSession(), FakeClock()
    connection = _connection(session, clock)
    connection.connect()
    connection.on_disconnected(events.Disconnected(1, "closed"))
    assert connection.on_error(_error(1102)) is Connectivity.RESTORED_DATA_MAINTAINED
    assert connection.state is ConnectionState.DISCONNECTED
    clock.now = connection.next_connect_at
    assert connection.due

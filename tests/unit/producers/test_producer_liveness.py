"""Stream liveness, farm recovery and the competing-session pause (pure), and the gateway's daily restart window."""

from __future__ import annotations

import datetime as dt

from ibstream.ib.connection import in_daily_restart_window
from producers.market_data.liveness import CompetingSession, FarmRecovery, StreamLiveness

NY = "America/New_York"


def test_a_symbol_is_silent_when_its_quotes_or_its_bars_stopped() -> None:
    live = StreamLiveness()
    for symbol in ("AAPL", "MSFT", "SPY"):
        live.on_quote(symbol, 10.0)
        live.on_bar(symbol, 10.0)
    live.on_quote("AAPL", 20.0)
    live.on_bar("AAPL", 20.0)
    live.on_quote("MSFT", 20.0)  # quotes flow, bars died (an HMDS farm break)
    assert live.silent_since(["AAPL", "MSFT", "SPY", "QQQ"], 15.0) == ["MSFT", "SPY", "QQQ"]


def test_farm_recovery_checks_once_a_grace_period_after_the_farm_came_back() -> None:
    farm = FarmRecovery(grace_seconds=5.0)
    farm.on_restored(1.0)
    assert farm.due(100.0) is None, "a farm OK without a break before is the connect notice"
    farm.on_broken(10.0)
    farm.on_broken(11.0)  # a second farm breaking keeps the first break's time
    farm.on_restored(12.0)
    assert farm.due(16.9) is None
    assert farm.due(17.0) == 10.0
    assert farm.due(30.0) is None, "checked once"


def test_a_competing_session_starts_once_probes_on_schedule_and_ends_with_data() -> None:
    competing = CompetingSession(retry_seconds=30.0)
    assert competing.on_data() is False
    assert competing.start(100.0) is True
    assert competing.start(101.0) is False  # the same pause (another request's 10197, or a refused probe)
    assert competing.probe_due(130.0) is False
    assert competing.probe_due(131.0) is True
    assert competing.probe_due(140.0) is False
    assert competing.on_data() is True and competing.active is False
    assert competing.probe_due(1000.0) is False


def ny(day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2025, 1, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def test_the_daily_restart_window_runs_from_a_minute_before_to_the_window_after() -> None:
    assert in_daily_restart_window(ny(6, 23, 45), "23:45", NY, 600)
    assert in_daily_restart_window(ny(6, 23, 44), "23:45", NY, 600)
    assert not in_daily_restart_window(ny(6, 23, 43), "23:45", NY, 600)
    assert in_daily_restart_window(ny(6, 23, 55), "23:45", NY, 600)
    assert not in_daily_restart_window(ny(6, 23, 56), "23:45", NY, 600)
    # past midnight, the window of the evening before
    assert in_daily_restart_window(ny(7, 0, 5), "23:55", NY, 900)
    # the same instant seen from UTC, and a gateway configured in another zone
    assert in_daily_restart_window(ny(6, 23, 46).astimezone(dt.UTC), "23:45", NY, 600)
    assert in_daily_restart_window(ny(6, 17, 50), "23:45", "Europe/Zurich", 600)
    assert not in_daily_restart_window(ny(6, 23, 45), None, NY, 600)

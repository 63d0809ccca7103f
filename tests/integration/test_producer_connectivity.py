# ruff: noqa: F811  (the run_producer fixture imported from test_producer is redefined as an argument)
"""The producer through IB's connectivity signals, over real sockets: ibsim injects each one, a real Kafka broker
takes the records, and the checks read what the producer did (its requests as ibsim holds them) and published.

- a data farm back after a break (2104, 2106) resubscribes the streams that stayed silent, and only those;
- 1102 "data maintained" resubscribes too (the data may not have been);
- 10197 pauses market data with one alert until the competing session ends, then resumes and backfills;
- the gateway's daily restart at its configured time is an info alert, not a page, and everything recovers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import pytest

from ibsim.config import EXCHANGE_TZ
from ibstream.config import Settings
from ibstream.contracts import Alert, Bar, alerts, bars
from ibstream.contracts.enums import AlertState, MarketDataSource, Severity
from tests.integration.test_producer import (  # noqa: F401  (fixture)
    SYMBOLS,
    Running,
    read_all,
    run_producer,
    wait_until,
)

pytestmark = pytest.mark.integration


def subscriptions(running: Running) -> dict[str, list[int]]:
    return running.sim.subscriptions(running.producer.settings.feed.client_id)


def all_subscribed(running: Running) -> dict[str, list[int]] | None:
    held = subscriptions(running)
    return held if len(held["mkt"]) == len(held["rtb"]) == len(SYMBOLS) else None


def live_bars_after(running: Running, settings: Settings, after: float) -> set[str]:
    published: list[Bar] = read_all(settings, bars.TOPIC)
    return {b.symbol for b in published if b.source is MarketDataSource.LIVE and b.start.timestamp() > after}


def test_a_farm_back_after_a_break_resubscribes_only_streams_that_stayed_dead(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    running = run_producer()
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 30 and all_subscribed(running), what="first records")
    before = subscriptions(running)
    # a break that data survives: 2104 brings it back by itself, nothing is asked again
    sim.market_data_farm(ok=False)
    time.sleep(0.3)
    sim.market_data_farm(ok=True)
    time.sleep(3 * producer.settings.feed.stale_after_seconds)
    assert subscriptions(running) == before
    # a break that kills the subscriptions: after 2104 and the grace period, every symbol is asked again
    sim.market_data_farm(ok=False, drop_subscriptions=True)
    time.sleep(0.3)
    sim.market_data_farm(ok=True)
    restored_at = sim.now()
    after = wait_until(lambda: all_subscribed(running), timeout=10, what="resubscribed")
    assert set(after["mkt"]).isdisjoint(before["mkt"]) and set(after["rtb"]).isdisjoint(before["rtb"])
    wait_until(lambda: not producer.tracker.gaps, what="the break's gap backfilled")
    time.sleep(1.0)
    running.halt()
    assert live_bars_after(running, settings, restored_at) == set(SYMBOLS)


def test_an_hmds_farm_break_that_killed_the_bars_resubscribes_them(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    running = run_producer()
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 30 and all_subscribed(running), what="first records")
    before = subscriptions(running)
    sim.hmds_farm(ok=False)
    time.sleep(0.3)
    sim.hmds_farm(ok=True)
    restored_at = sim.now()
    # quotes kept flowing: only the bars were silent, yet the symbol is asked again as a whole
    after = wait_until(lambda: all_subscribed(running), timeout=10, what="bars resubscribed")
    assert set(after["rtb"]).isdisjoint(before["rtb"])
    wait_until(lambda: not producer.tracker.gaps, what="gap backfilled")
    time.sleep(1.0)
    running.halt()
    assert live_bars_after(running, settings, restored_at) == set(SYMBOLS)


def test_1102_data_maintained_resubscribes_all_the_same(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    running = run_producer()
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 30 and all_subscribed(running), what="first records")
    before = subscriptions(running)
    sim.connectivity_loss(0.3, restored_code=1102, keep_subscriptions=False)  # "maintained", but it was not
    after = wait_until(
        lambda: (held := all_subscribed(running)) and set(held["mkt"]).isdisjoint(before["mkt"]) and held,
        timeout=10,
        what="resubscribed after 1102",
    )
    restored_at = sim.now()
    assert set(after["rtb"]).isdisjoint(before["rtb"])
    wait_until(lambda: "ib_disconnected:producer" not in producer.alerts.firing, what="alert resolved")
    wait_until(lambda: not producer.tracker.gaps, what="gap backfilled")
    time.sleep(1.0)
    running.halt()
    assert live_bars_after(running, settings, restored_at) == set(SYMBOLS)


def test_a_competing_session_pauses_market_data_with_one_alert_until_it_ends(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    running = run_producer(ib_competing_session_retry_seconds=0.5)
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 30 and all_subscribed(running), what="first records")
    sim.competing_session(True)
    wait_until(lambda: "competing_session:producer" in producer.alerts.firing, timeout=5, what="competing alert")
    time.sleep(4 * producer.settings.feed.stale_after_seconds)  # long past the stale threshold, probes refused
    assert producer.alerts.firing == {"competing_session:producer"}, "a stale-feed alert per symbol would be noise"
    assert subscriptions(running) == {"mkt": [], "rtb": []}
    sim.competing_session(False)
    ended_at = sim.now()
    wait_until(lambda: not producer.alerts.firing, timeout=10, what="competing alert resolved by the next probe")
    wait_until(lambda: all_subscribed(running), what="resubscribed")
    wait_until(lambda: not producer.tracker.gaps, what="the pause's gap backfilled")
    time.sleep(1.0)
    running.halt()
    records: list[Alert] = read_all(settings, alerts.TOPIC)
    seen = [(a.alert_id, a.state, a.severity) for a in records]
    # From the pause on (a loaded machine may let a symbol go stale for a moment during startup, before it): the one
    # competing-session alert and its resolution, and no stale-feed alert in between.
    paused = seen.index(("competing_session:producer", AlertState.FIRING, Severity.WARNING))
    assert seen[paused:] == [
        ("competing_session:producer", AlertState.FIRING, Severity.WARNING),
        ("competing_session:producer", AlertState.RESOLVED, Severity.INFO),  # a resolution is always info
    ]
    assert live_bars_after(running, settings, ended_at) == set(SYMBOLS)
    published: list[Bar] = read_all(settings, bars.TOPIC)
    assert {b.symbol for b in published if b.source is MarketDataSource.BACKFILL} == set(SYMBOLS)


def test_the_daily_gateway_restart_is_expected_and_everything_recovers(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    start = dt.datetime(2025, 1, 6, 10, 0, 0, tzinfo=EXCHANGE_TZ)
    running = run_producer(
        {"start_time": start, "daily_restart_time": "10:01", "daily_restart_downtime": 0.5},
        ib_daily_restart_time="10:01",
        ib_daily_restart_timezone="America/New_York",
        ib_daily_restart_window_seconds=60,
    )
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.reconnect_count == 1 and producer.state.value == "connected", what="restart and back")
    assert sim.now() >= start.timestamp() + 60
    wait_until(lambda: all_subscribed(running), what="resubscribed after the restart")
    wait_until(lambda: not producer.alerts.firing, what="restart alert resolved")
    # outside the window (60 s = 1 s of wall time at 60x), a drop is a page again
    wait_until(lambda: sim.now() > start.timestamp() + 60 + 90, what="past the restart window")
    sim.drop_connections()
    wait_until(lambda: producer.reconnect_count == 2 and producer.state.value == "connected", what="reconnected")
    wait_until(lambda: not producer.tracker.gaps, what="gaps backfilled")
    time.sleep(1.0)
    running.halt()
    records: list[Alert] = read_all(settings, alerts.TOPIC)
    disconnects = [(a.state, a.severity) for a in records if a.alert_id == "ib_disconnected:producer"]
    assert disconnects == [
        (AlertState.FIRING, Severity.INFO),  # the daily restart: recorded, not paged
        (AlertState.RESOLVED, Severity.INFO),
        (AlertState.FIRING, Severity.CRITICAL),  # any other drop pages
        (AlertState.RESOLVED, Severity.INFO),
    ]
    assert live_bars_after(running, settings, start.timestamp() + 60) == set(SYMBOLS)

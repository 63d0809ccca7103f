"""``ibstream history fetch`` against ibsim over a real socket: IB's historical bars into the warehouse, paced by
the governor, fetched again without copies, and backtested from there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibsim import SimConfig, Simulator
from ibsim.config import EXCHANGE_TZ
from ibstream.config import Settings, load_settings
from ibstream.ib.pacing import PacingGovernor, PacingLimits
from ibstream.ib.session import IbSession
from ibstream.market_hours import session_on
from ibstream.warehouse import Warehouse
from tests.integration.warehouse_helpers import count_final
from tooling.backtest.run import BacktestOptions, run_backtest
from tooling.history import HISTORY_PARTITION, HistoryRequest, fetch, fetch_history

pytestmark = pytest.mark.integration


def _recent_trading_day() -> dt.date:
    """A full trading day of last week: fetched bars are kept by their time (365 days for 5-second bars), so an
    older day would be dropped by the table's retention as it is stored."""
    day = dt.datetime.now(EXCHANGE_TZ).date() - dt.timedelta(days=7)
    while (session := session_on(day)) is None or session.close.astimezone(EXCHANGE_TZ).hour != 16:
        day -= dt.timedelta(days=1)
    return day


DAY = _recent_trading_day()
AT_10AM = dt.datetime(DAY.year, DAY.month, DAY.day, 10, 0, tzinfo=EXCHANGE_TZ)
OPEN = dt.datetime(DAY.year, DAY.month, DAY.day, 9, 30, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(SimConfig(port=0, control_port=None, start_time=AT_10AM, speed=10.0)).start()
    yield simulator
    simulator.stop()


def _settings(tmp_path: Path, sim: Simulator) -> Settings:
    return load_settings(state_dir=tmp_path, warehouse_dir=tmp_path / "wh", ib_host="127.0.0.1", ib_port=sim.port)


def test_history_fills_the_warehouse_with_ibs_bars_once_and_a_backtest_reads_them(
    sim: Simulator, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, sim)
    start, end = OPEN, OPEN + dt.timedelta(minutes=20)
    progress: list[tuple[int, int, int]] = []
    report = fetch_history(settings, SYMBOLS, start, end, progress=lambda *p: progress.append(p))
    assert (report.requests, report.bars) == (2, 2 * 240)
    assert progress[-1] == (2, 2, 480)
    with Warehouse.open(settings) as warehouse:
        rows = warehouse.query(
            "SELECT symbol, toUnixTimestamp(start), open, high, low, close, _partition, source "
            f"FROM {warehouse.table('md_bars_5s_v1')} FINAL ORDER BY symbol, start"
        ).rows
    assert len(rows) == 480
    for symbol in SYMBOLS:
        truth = {bar.time: bar for bar in sim.ground_truth_bars(symbol, start.timestamp(), end.timestamp())}
        stored = [row for row in rows if row[0] == symbol]
        assert [row[1] for row in stored] == sorted(truth)
        for row in stored:
            bar = truth[row[1]]
            assert row[2:] == (bar.open, bar.high, bar.low, bar.close, HISTORY_PARTITION, "backfill")

    # The same window again replaces, never adds (another client id: ibsim may not have seen the first go yet).
    again = fetch_history(settings, SYMBOLS, start, end, client_id=42)
    assert again.bars == 480
    with Warehouse.open(settings) as warehouse:
        assert count_final(warehouse, "md_bars_5s_v1") == 480

    run = run_backtest(settings, BacktestOptions(start=start, end=end, report_root=tmp_path / "reports"))
    assert run.result.bars == 480 and run.result.symbols == set(SYMBOLS)
    assert (run.directory / "report.html").exists()


def test_fetch_goes_through_the_sessions_pacing_governor(sim: Simulator) -> None:
    # Tight limits keep this fast (IB's: 6 requests of one contract per 2 s): the 3rd request must wait.
    governor = PacingGovernor(PacingLimits(historical_same_contract=2, historical_same_contract_seconds=2.0))
    session = IbSession("127.0.0.1", sim.port, client_id=43, governor=governor)
    session.connect(timeout=5)
    try:
        requests = [
            HistoryRequest("QQQ", OPEN + dt.timedelta(minutes=m), OPEN + dt.timedelta(minutes=m + 1), "5 secs")
            for m in range(4)
        ]
        answers = list(fetch(session, requests))
    finally:
        session.disconnect()
    assert [len(bars) for _, bars in answers] == [12, 12, 12, 12]
    assert [bars[0].start for _, bars in answers] == [r.start for r in requests]
    assert governor.waited_seconds > 0

"""The backtest engine over plain bars: signals, runs, risk, bracket fills, the report's figures and files."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibstream.config import Settings, load_settings
from ibstream.contracts import Bar
from ibstream.contracts.enums import MarketDataSource, Side
from ibstream.strategies.builtin import DonchianBreakout, DonchianBreakoutParams
from ibstream.strategies.instances import StrategyInstance, default_instances
from tests.unit.streams.test_streams_signals import CHANNEL, T0, bar
from tooling.backtest.engine import Backtest, BacktestConfig, BacktestError, BacktestResult, Trade
from tooling.backtest.market import BarMarket, bar_path
from tooling.backtest.report import figures, render_html, write_report
from tooling.backtest.run import progress_text, select_instances
from tooling.backtest.scores import drawdown, signal_scores, trade_scores
from tooling.backtest.sources import csv_bars, ordered
from tooling.png import line_chart

BREAKOUT = StrategyInstance("breakout", DonchianBreakout(DonchianBreakoutParams()), frozenset(), True)


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(state_dir=tmp_path, **overrides)


def _ohlc(i: int, open_: float, high: float, low: float, close: float, symbol: str = "AAPL") -> Bar:
    start = T0 + timedelta(seconds=5 * i)
    return Bar(
        symbol=symbol,
        start=start,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=100,
        wap=close,
        count=1,
        event_time=start,
        ingest_time=start,
        source=MarketDataSource.REPLAY,
    )


def _run(tmp_path: Path, bars: list[Bar], **overrides: object) -> tuple[Backtest, BacktestResult]:
    backtest = Backtest([BREAKOUT], BacktestConfig.from_settings(_settings(tmp_path, **overrides)))
    return backtest, backtest.run(bars)


def test_a_bar_walks_open_then_the_near_extreme_then_the_far_one_then_close() -> None:
    assert bar_path(_ohlc(0, 100, 102, 99, 101)) == (100, 99, 102, 101, 101)  # closed up: the low came first
    assert bar_path(_ohlc(0, 100, 102, 99, 99.5)) == (100, 102, 99, 99.5, 99.5)  # closed down: the high first
    market = BarMarket()
    market.update(_ohlc(0, 100, 102, 99, 101))
    start = int(T0.timestamp())
    assert [market.quote("AAPL", start + s).last for s in range(5)] == [100, 99, 102, 101, 101]
    assert market.quote("AAPL", start + 60).last == 101  # no newer bar: the last close stands
    market.update(_ohlc(100, 101, 101, 101, 101))  # after a gap
    assert not market.in_session(start + 60) and market.in_session(start + 500)


def test_a_breakout_is_signalled_planned_approved_filled_and_closed_at_its_target(tmp_path: Path) -> None:
    closes = [*CHANNEL, 103.0, 103.0, 106.0, 110.0, 115.0, 115.0]
    _, result = _run(tmp_path, [bar(i, c) for i, c in enumerate(closes)])
    signal = result.signals[0]
    assert (signal.side, signal.confidence, signal.entry, signal.stop, signal.take_profit) == (
        Side.BUY,
        0.8,
        103.0,
        98.0,
        113.0,
    )
    first = result.trades[next(iter(result.trades))]
    # 0.5 % of 100,000 at risk over a 5.00 stop: 100 shares, bought at the signal's limit when its bar ended.
    assert (first.quantity, first.entry_price, first.entry_time) == (100.0, 103.0, bar(25, 0).start)
    # The bar that opened at 115 gapped through the 113 target: the limit fills at the better price, as at IB.
    assert (first.exit_leg, first.exit_price, first.commission) == ("take_profit", 115.0, 2.0)
    assert first.pnl() == pytest.approx(12.0 * 100 - 2.0)
    # each parent fill completed its run and freed the strategy's slot: every later breakout traded too
    assert result.runs == {"completed": len(result.signals)} and len(result.signals) == 4
    assert result.equity[0] == (bar(0, 0).start + timedelta(seconds=5), 100_000.0)


def test_a_stop_inside_a_bar_that_also_reached_higher_fills_at_the_low_side_first(tmp_path: Path) -> None:
    bars = [bar(i, c) for i, c in enumerate([*CHANNEL, 103.0])]
    bars.append(_ohlc(25, 103.0, 103.5, 102.5, 103.0))
    bars.append(_ohlc(26, 101.0, 101.5, 97.0, 97.5))  # closed down: up to 101.5 first, then through the 98 stop
    _, result = _run(tmp_path, bars)
    trade = result.trades[next(iter(result.trades))]
    assert (trade.exit_leg, trade.exit_price) == ("stop_loss", 97.0)  # a stop is a market order once touched
    assert trade.pnl() == pytest.approx(-6.0 * 100 - 2.0)
    assert trade.r_multiple() == pytest.approx((-600 - 2) / 500)


def test_a_risk_rejection_fails_the_run_places_nothing_and_frees_the_slot(tmp_path: Path) -> None:
    closes = [*CHANNEL, 103.0, 103.0, 106.0]
    _, result = _run(tmp_path, [bar(i, c) for i, c in enumerate(closes)], risk_max_gross_exposure=1_000.0)
    assert len(result.signals) == 2  # the second breakout came while the first signal would still be active
    assert result.runs == {"failed": 2}
    assert result.rejections == {"max_gross_exposure": 2}
    assert result.trades == {}
    assert {value for _, value in result.equity} == {100_000.0}


def test_the_same_bars_give_the_same_signals_orders_and_fills(tmp_path: Path) -> None:
    bars = [bar(i, c) for i, c in enumerate([*CHANNEL, 103.0, 103.0, 106.0, 110.0, 97.0, 97.0])]
    runs = [_run(tmp_path, bars)[1] for _ in range(2)]
    assert [s.signal_id for s in runs[0].signals] == [s.signal_id for s in runs[1].signals]
    assert [vars(t) for t in runs[0].trades.values()] == [vars(t) for t in runs[1].trades.values()]
    assert runs[0].equity == runs[1].equity


def test_bars_out_of_order_or_none_at_all_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BacktestError, match="out of order"):
        _run(tmp_path, [bar(1, 100.0), bar(0, 100.0)])
    with pytest.raises(BacktestError, match="no bars"):
        _run(tmp_path, [])


def test_an_instance_on_longer_bars_is_refused_by_name(tmp_path: Path) -> None:
    class Minutes(DonchianBreakout):
        timeframes = ("1m",)

    minutes = StrategyInstance("slow", Minutes(DonchianBreakoutParams()), frozenset(), True)
    with pytest.raises(BacktestError, match="slow"):
        Backtest([minutes], BacktestConfig.from_settings(_settings(tmp_path)))


def test_policy_approval_leaves_a_run_the_policy_declines_untraded(tmp_path: Path) -> None:
    # The default policy approves up to a notional of 10,000: the 100-share plan at 103 is above it.
    backtest = Backtest([BREAKOUT], BacktestConfig.from_settings(_settings(tmp_path), approve="policy"))
    result = backtest.run([bar(i, c) for i, c in enumerate([*CHANNEL, 103.0, 103.0])])
    assert result.runs == {"awaiting_approval": 1} and result.trades == {}


def test_approving_nothing_plans_every_run_and_holds_each_signal_until_it_expires(tmp_path: Path) -> None:
    backtest = Backtest([BREAKOUT], BacktestConfig.from_settings(_settings(tmp_path), approve="none"))
    result = backtest.run([bar(i, c) for i, c in enumerate([*CHANNEL, 103.0, 103.0, 106.0])])
    assert len(result.signals) == 1  # the 106 breakout came while the first signal held the slot
    assert result.runs == {"awaiting_approval": 1} and result.trades == {}


def test_trade_scores_count_pnl_after_commission_and_mark_open_trades() -> None:
    won = Trade("a", "s", "AAPL", Side.BUY, 9.0, 12.0, 100.0, 10.0, T0, 100.0, 12.0, T0, "take_profit", 2.0)
    lost = Trade("b", "s", "MSFT", Side.SELL, 21.0, 18.0, 50.0, 20.0, T0, 50.0, 22.0, T0, "stop_loss", 2.0)
    held = Trade("c", "s", "AAPL", Side.BUY, 9.0, 12.0, 10.0, 10.0, T0, commission=1.0)
    scores = trade_scores([won, lost, held], {"AAPL": 11.0})["s"]
    assert (won.pnl(), lost.pnl(), held.pnl(11.0)) == (198.0, -102.0, 9.0)
    assert scores["trades"] == 3 and scores["closed"] == 2 and scores["wins"] == 2
    assert scores["pnl"] == pytest.approx(105.0) and scores["profit_factor"] == pytest.approx(207 / 102)
    assert scores["expectancy_r"] == pytest.approx((198 / 100 - 102 / 50 + 9 / 10) / 3)


def test_drawdown_is_the_fall_below_the_running_peak() -> None:
    assert drawdown([(T0, 100.0), (T0, 110.0), (T0, 99.0), (T0, 120.0)]) == [
        (T0, 0.0, 0.0),
        (T0, 0.0, 0.0),
        (T0, 11.0, 10.0),
        (T0, 0.0, 0.0),
    ]


def test_report_figures_html_png_and_json(tmp_path: Path) -> None:
    closes = [*CHANNEL, 103.0, 103.0, 106.0, 110.0, 115.0, 115.0]
    _, result = _run(tmp_path, [bar(i, c) for i, c in enumerate(closes)])
    meta = {"id": "t1", "strategies": ["breakout"], "source": "test", "approve": "all"}
    report = figures(result, meta)
    assert report["summary"]["signals"] == 4 and report["summary"]["orders"] == 4
    assert report["strategies"]["trades"]["breakout"]["trades"] == 4
    assert report["strategies"]["trades"] == trade_scores(result.trades.values(), result.marks)
    assert report["strategies"]["signals"] == signal_scores(result.outcomes)
    assert [row["exit"] for row in report["trades"]] == ["take_profit", "open", "open", "open"]
    page = render_html(report)
    assert page.count("<svg") == 2 and "take_profit" in page and "breakout" in page
    directory = write_report(result, meta, tmp_path)
    assert json.loads((directory / "figures.json").read_text())["summary"] == json.loads(json.dumps(report["summary"]))
    png = (directory / "equity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (900, 300)


def test_the_png_line_chart_is_a_decodable_rgb_image_with_the_line_drawn() -> None:
    png = line_chart([[0.0, 1.0, 0.5]], width=40, height=20)
    length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    raw = zlib.decompress(png[41 : 41 + length])
    assert len(raw) == 20 * (1 + 40 * 3)
    assert bytes((9, 105, 218)) in raw  # the series colour is on the canvas
    assert bytes((9, 105, 218)) not in zlib.decompress(
        line_chart([], width=40, height=20)[41 : 41 + struct.unpack(">I", line_chart([], 40, 20)[33:37])[0]]
    )


def test_csv_bars_are_read_windowed_deduplicated_and_ordered(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "symbol,start,open,high,low,close,volume\n"
        "MSFT,2026-11-24T15:00:05Z,10,11,9,10.5,100\n"
        "AAPL,2026-11-24T15:00:05,20,21,19,20.5,100\n"
        "AAPL,1795532400,20,21,19,20,100\n"  # 15:00:00 UTC as epoch seconds
        "AAPL,2026-11-24T15:00:05Z,20,21,19,20.5,100\n"
        "AAPL,2026-11-24T15:00:10Z,20,21,19,20.5,100\n"
    )
    bars = ordered(csv_bars(path), T0, T0 + timedelta(seconds=10), [])
    assert [(b.symbol, b.start) for b in bars] == [
        ("AAPL", T0),
        ("AAPL", T0 + timedelta(seconds=5)),
        ("MSFT", T0 + timedelta(seconds=5)),
    ]
    assert ordered(csv_bars(path), T0, T0 + timedelta(seconds=10), ["MSFT"])[0].symbol == "MSFT"
    path.write_text("symbol,start,open,high,low,close\nAAPL,yesterday,1,1,1,1\n")
    with pytest.raises(BacktestError, match="line 2"):
        csv_bars(path)
    path.write_text("symbol,when,close\n")
    with pytest.raises(BacktestError, match="start, open, high, low"):
        csv_bars(path)


def test_instances_are_picked_by_instance_or_strategy_name() -> None:
    instances = default_instances()
    assert [i.name for i in select_instances(instances, [])] == [i.name for i in instances]
    assert [i.name for i in select_instances(instances, ["ma_crossover"])] == ["ma_crossover"]
    switched_off = [replace(i, enabled=False) for i in instances]
    with pytest.raises(BacktestError, match="no enabled strategy instance"):
        select_instances(switched_off, [])
    assert [i.enabled for i in select_instances(switched_off, ["zscore_reversion"])] == [True]
    with pytest.raises(BacktestError, match="no strategy instance or strategy named nope; known: "):
        select_instances(instances, ["nope"])


def test_the_progress_bar_shows_the_share_done_and_the_rate() -> None:
    assert progress_text(500, 1000, 2.0) == f"[{'#' * 15}{'.' * 15}]  50% 500/1,000 bars, 250 bars/s"
    assert progress_text(0, 0, 0.0).startswith(f"[{'#' * 30}] 100%")


def test_the_built_ins_run_over_many_symbols(tmp_path: Path) -> None:
    start = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
    bars = [
        _ohlc(i, 100 + (i % 7), 101 + (i % 7) + n, 99 + (i % 7), 100 + ((i + n) % 9), f"S{n}")
        for i in range(200)
        for n in range(3)
    ]
    assert bars[0].start == start + timedelta(minutes=30)
    backtest = Backtest(default_instances(), BacktestConfig.from_settings(_settings(tmp_path)))
    result = backtest.run(bars)
    assert result.bars == 600 and result.symbols == {"S0", "S1", "S2"}
    assert {s.strategy for s in result.signals} <= {"ma_crossover", "donchian_breakout", "zscore_reversion"}
    assert result.signals and result.failed_instances == []


def test_the_command_reads_a_csv_source_and_refuses_a_source_without_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ibstream import cli
    from tooling import cli as tooling_cli

    path = tmp_path / "bars.csv"
    rows = [f"AAPL,{b.start.isoformat()},{b.open},{b.high},{b.low},{b.close},100" for b in _breakout_bars()]
    path.write_text("symbol,start,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(tooling_cli, "get_settings", lambda: _settings(tmp_path))
    window = ["--from", T0.isoformat(), "--to", (T0 + timedelta(hours=1)).isoformat()]
    args = cli.build_parser().parse_args(["backtest", *window, "--strategies", "donchian_breakout", "--source", "csv"])
    assert tooling_cli.backtest(args) == 2
    assert "csv FILE" in capsys.readouterr().err
    args = cli.build_parser().parse_args(
        ["backtest", *window, "--strategies", "donchian_breakout", "--source", "csv", str(path)]
    )
    assert tooling_cli.backtest(args) == 0
    printed = capsys.readouterr().out
    assert "27 bars, 2 signals, 2 orders" in printed
    [report] = (tmp_path / "backtests").iterdir()
    assert f"report: {report / 'report.html'}" in printed


def _breakout_bars() -> list[Bar]:
    return [bar(i, c) for i, c in enumerate([*CHANNEL, 103.0, 103.0, 106.0])]

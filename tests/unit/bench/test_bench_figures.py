"""The benchmark harness's figures: ratios to the Faust ceiling and the headline figures lifted from a benchmark's
``json:`` line (pure; the benchmarks themselves need a broker and run by hand)."""

from __future__ import annotations

from bench.__main__ import figures_of, headlines
from bench.streams import ceiling_ratios


def test_each_phase_is_divided_by_the_bare_faust_agent_of_the_same_run() -> None:
    results = {"faust": {"per_second": 3200.0}, "risk": {"per_second": 2880.0}, "signals": {"per_second": 3520.0}}
    assert ceiling_ratios(results) == {"risk_to_faust_ceiling": 0.9, "signals_to_faust_ceiling": 1.1}
    assert ceiling_ratios({"risk": {"per_second": 2880.0}}) == {}  # no ceiling measured: no ratio


def test_headlines_come_from_the_last_json_line_of_each_benchmark() -> None:
    streams_output = [
        "faust: per_second=3,200.0",
        'json: {"risk_to_faust_ceiling": 0.5}',
        'json: {"risk_to_faust_ceiling": 0.93}',
    ]
    pipeline_output = ['json: {"routed_to_ack_ms": {"count": 40, "p50": 3.1, "p95": 9.0, "p99": 14.2, "max": 20.0}}']
    results = {
        "streams": {"figures": figures_of(streams_output)},
        "pipeline": {"figures": figures_of(pipeline_output)},
        "serde": {"skipped": "not built"},
    }
    assert headlines(results) == {
        "risk_to_faust_ceiling": 0.93,
        "routed_to_ack_ms": {"p50": 3.1, "p95": 9.0, "p99": 14.2, "count": 40},
    }
    assert figures_of(["no figures here"]) == {}


def test_the_backtest_bench_measures_the_engine_and_its_ceiling_on_the_same_bars() -> None:
    from bench import backtest

    bars = backtest.session_bars(60, 3)
    assert len(bars) == 180 and [b.symbol for b in bars[:3]] == ["S00", "S01", "S02"]
    assert bars == backtest.session_bars(60, 3)  # seeded: every run measures the same bars
    assert backtest.backtest_rate(bars) > 0 and backtest.strategy_loop_rate(bars) > 0

"""The issue's figures lifted from one run's results under the issue's names (pure; the benchmarks need a broker)."""

from __future__ import annotations

from bench.__main__ import figures_of
from bench.history import split_output
from bench.report import tracked_figures

PIPELINE_LINE = (
    'json: {"quote_ingest_to_consumer_ms": {"count": 900, "p50": 2.0, "p95": 6.5, "p99": 9.1, "max": 30.0}, '
    '"intent_to_decision_ms": {"count": 40, "p50": 4.0, "p95": 9.0, "p99": 13.0, "max": 20.0}, '
    '"routed_to_ack_ms": {"count": 40, "p50": 3.1, "p95": 9.0, "p99": 14.2, "max": 20.0}, '
    '"peak_rss_mb": {"execution": 140.2, "producer": 120.5, "streams": 210.0, "ibsim": 90.1}}'
)
SINK_LINES = [
    "sink end to end (Kafka → decode → chDB):      61,000 rows/s",
    'bench-figures: {"sink_rows_per_s": 61000.0, "sink_to_chdb_ceiling": 0.4, '
    '"replay_kafka_records_per_s": 52000.0, "replay_warehouse_records_per_s": 48000.0}',
]


def _sink_entry(exit_code: int = 0) -> dict[str, object]:
    figures, output = split_output(SINK_LINES)
    return {"exit_code": exit_code, "figures": figures_of(output) or figures}


def test_every_tracked_figure_comes_from_its_benchmark_under_the_issue_name() -> None:
    results = {
        "producer_path_records_per_s": {
            "median": 90_000.0,
            "producer_to_python_ceiling": 0.93,
            "producer_to_python_ceiling_cpu": 0.95,
        },
        "pipeline": {"exit_code": 0, "figures": figures_of([PIPELINE_LINE])},
        "sink": _sink_entry(),
        "streams": {"exit_code": 0, "figures": figures_of(['json: {"risk_to_faust_ceiling": 0.91}'])},
        "backtest": {"exit_code": 0, "figures": {"backtest_bars_per_s": 250_000.0}},
    }
    assert tracked_figures(results) == {
        "producer_to_python_ceiling": 0.93,
        "producer_to_python_ceiling_cpu": 0.95,
        "risk_to_faust_ceiling": 0.91,
        "routed_to_ack_ms": {"p50": 3.1, "p95": 9.0, "p99": 14.2},
        "intent_to_decision_ms": {"p50": 4.0, "p95": 9.0, "p99": 13.0},
        "quote_to_consumer_ms": {"p50": 2.0, "p95": 6.5, "p99": 9.1},
        "sink_rows_per_s": 61000.0,
        "sink_to_chdb_ceiling": 0.4,
        "replay_rows_per_s": {"kafka": 52000.0, "warehouse": 48000.0},
        "backtest_bars_per_s": 250_000.0,
        "peak_rss_mb": {"execution": 140.2, "producer": 120.5, "streams": 210.0, "ibsim": 90.1},
    }


def test_a_benchmark_that_did_not_run_or_failed_reports_nothing() -> None:
    assert tracked_figures({}) == {}
    assert tracked_figures({"sink": _sink_entry(exit_code=1), "serde": {"skipped": "not built"}}) == {}

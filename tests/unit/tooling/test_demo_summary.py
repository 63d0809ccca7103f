"""The demo's closing summary: every number says what it is."""

from __future__ import annotations

from tooling.demo import summary_rows


def test_every_figure_of_a_row_is_labelled() -> None:
    rows = dict(
        summary_rows(
            {
                "fills": [(186, 13980.0, 186.0)],
                "bars_by_source": [("backfill", 96), ("live", 18_720)],
                "quotes": [(52_000,)],
                "intent_to_decision_ms_p50_p99": [(3.2, 41.0)],
                "approved_by_demo": 12,
                "risk_rejections_by_check": [],
            }
        )
    )
    assert rows["fills"] == "fills 186 · shares 13,980.00 · commissions $ 186.00"
    assert rows["bars by source"] == "backfill: 96; live: 18,720"
    assert rows["quotes"] == "quotes 52,000"
    assert rows["intent to decision ms p50 p99"] == "p50 ms 3.20 · p99 ms 41.00"
    assert rows["approved by demo"] == "12"
    assert rows["risk rejections by check"] == "none"


def test_a_failed_query_reads_as_an_error() -> None:
    rows = dict(summary_rows({"realized_pnl": [("error", "Table demo.executions_v1 does not exist")]}))
    assert rows["realized pnl"] == "error: Table demo.executions_v1 does not exist"

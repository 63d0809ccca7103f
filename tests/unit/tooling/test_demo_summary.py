"""The demo's closing summary: every number says what it is."""

from __future__ import annotations

import re
from pathlib import Path

from tooling.demo import console_chart_urls, summary_rows

#: The console's static files (read as text: tooling imports no deployable).
STATIC_DIR = Path(__file__).resolve().parents[3] / "api" / "console" / "static"


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


def test_the_summary_links_each_symbols_chart_and_every_link_is_a_console_route() -> None:
    links = console_chart_urls("http://127.0.0.1:8123", ("AAPL", "BRK B"))
    assert links[:2] == [
        ("AAPL chart", "http://127.0.0.1:8123/console/#/charts?symbol=AAPL&interval=60"),
        ("BRK B chart", "http://127.0.0.1:8123/console/#/charts?symbol=BRK%20B&interval=60"),
    ]
    assert [what for what, _ in links[2:]] == ["positions", "orders"]
    # Every link opens a page the console routes (its hash routes in app.js), with the query the chart page reads.
    app = (STATIC_DIR / "js" / "app.js").read_text()
    patterns = [re.compile(p) for p in re.findall(r"\[/(\^[^/]*(?:\\/[^/]*)*\$)/, \w+, ", app)]
    assert len(patterns) >= 8
    for _, url in links:
        path = url.split("#", 1)[1].split("?")[0]
        assert url.startswith("http://127.0.0.1:8123/console/#/") and any(p.match(path) for p in patterns), url
    charts = (STATIC_DIR / "js" / "pages" / "charts.js").read_text()
    assert 'ctx.params.get("symbol")' in charts and 'ctx.params.get("interval")' in charts
    assert '[60, "1 min"]' in charts  # the interval the links ask for is one the page offers

"""The figures issue #24 tracks, gathered from one ``python -m bench`` run's results (pure, no I/O).

Each benchmark reports under its own names (``bench.pipeline``'s ``quote_ingest_to_consumer_ms``, ``bench.sink``'s
flat ``replay_kafka_records_per_s``, …); ``tracked_figures`` lifts them to the names the issue uses, at the top of
the ``--json`` document. A figure whose benchmark did not run (``--only``) or failed is left out, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PERCENTILES = ("p50", "p95", "p99")

#: Issue name ← (benchmark, the benchmark's own name, keys to keep; empty: the value as it is).
LIFTED: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("risk_to_faust_ceiling", "streams", "risk_to_faust_ceiling", ()),
    ("signals_to_faust_ceiling", "streams", "signals_to_faust_ceiling", ()),
    ("routed_to_ack_ms", "pipeline", "routed_to_ack_ms", PERCENTILES),
    ("intent_to_decision_ms", "pipeline", "intent_to_decision_ms", PERCENTILES),
    ("quote_to_consumer_ms", "pipeline", "quote_ingest_to_consumer_ms", PERCENTILES),
    ("sink_rows_per_s", "sink", "sink_rows_per_s", ()),
    ("sink_to_chdb_ceiling", "sink", "sink_to_chdb_ceiling", ()),
)


def _figures(results: Mapping[str, Any], bench: str) -> Mapping[str, Any]:
    entry = results.get(bench)
    if not isinstance(entry, Mapping) or entry.get("exit_code", 0) != 0:
        return {}
    figures = entry.get("figures", {})
    return figures if isinstance(figures, Mapping) else {}


def _kept(value: Any, keys: tuple[str, ...]) -> Any:
    if not keys or not isinstance(value, Mapping):
        return value
    return {key: value[key] for key in keys if key in value}


def tracked_figures(results: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's figures from a run's ``results`` (what ``bench.__main__`` collects)."""
    tracked: dict[str, Any] = {}
    producer = results.get("producer_path_records_per_s")
    if isinstance(producer, Mapping):
        for name in ("producer_to_python_ceiling", "producer_to_python_ceiling_cpu"):
            if name in producer:
                tracked[name] = producer[name]
    for name, bench, own_name, keys in LIFTED:
        value = _figures(results, bench).get(own_name)
        if value is not None:
            tracked[name] = _kept(value, keys)
    sink = _figures(results, "sink")
    replay = {
        source: sink[f"replay_{source}_records_per_s"]
        for source in ("kafka", "warehouse")
        if f"replay_{source}_records_per_s" in sink
    }
    if replay:
        tracked["replay_rows_per_s"] = replay
    # The backtest's own benchmark (another module) reports it under this name: lifted from whichever ran it.
    for bench in results:
        bars = _figures(results, bench).get("backtest_bars_per_s")
        if bars is not None:
            tracked["backtest_bars_per_s"] = bars
    rss = _figures(results, "pipeline").get("peak_rss_mb")
    if isinstance(rss, Mapping) and rss:
        tracked["peak_rss_mb"] = dict(rss)
    return tracked

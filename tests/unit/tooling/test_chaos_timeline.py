"""The chaos report's timeline: faults, recoveries, exits, routed orders and throughput on one time axis. No I/O."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tooling.chaos.report import render
from tooling.chaos.timeline import FaultSpan, build_timeline, render_html, render_timeline_svg


def _fault(index: int, kind: str, injected: float, restored: float | None, recovery: float | None) -> dict[str, Any]:
    return {
        "index": index,
        "at": injected,
        "kind": kind,
        "params": {},
        "injected_at": injected,
        "restored_at": restored,
        "recovered_at": None if recovery is None or restored is None else restored + recovery,
        "recovery_seconds": recovery,
        "error": None,
        "notes": [],
    }


def _report() -> dict[str, Any]:
    return {
        "ok": False,
        "error": None,
        "seed": 14,
        "minutes": 1.5,
        "rate_target": 400.0,
        "replay": "ibstream chaos --minutes 1.5 --rate 400 --seed 14",
        "faults": [
            _fault(0, "kill_execution", 12.0, 14.5, 3.5),
            _fault(1, "broker_restart", 30.0, 36.0, None),
        ],
        # Quotes and bars high watermarks every 10 s: 400 quotes/s, then nothing while the broker is down.
        # (A sample 10 ms after another is no interval of its own: 30 quotes in 10 ms is no 3,000/s.)
        "throughput_samples": [
            [0.0, 0, 0],
            [10.0, 4000, 20],
            [20.0, 8000, 40],
            [20.01, 8030, 40],
            [30.0, 12000, 60],
            [40.0, 12000, 60],
        ],
        "unexpected_exits": [{"t": 33.0, "process": "streams", "exit_code": 1}],
        "orders_routed_at": [-3.0, 5.0, 21.5, 200.0],
        "recovery_seconds": {"p50": 3.5, "max": 3.5, "by_kind": {"kill_execution": {"p50": 3.5, "max": 3.5}}},
        "throughput": {
            "quotes_per_second_avg": 300.0,
            "quotes_per_second_p50": 400.0,
            "quotes_per_second_min": 0.0,
            "bars_per_second_avg": 1.5,
        },
        "invariants": [{"name": "recovers_after_every_fault", "checked": 2, "violations": 1, "ok": False}],
        "violations": [],
        "records_total": 12345,
    }


def test_the_timeline_places_each_fault_its_recovery_and_the_throughput_between_samples() -> None:
    timeline = build_timeline(_report())
    assert timeline.faults == [
        FaultSpan(0, "kill_execution", 12.0, 14.5, 18.0),
        FaultSpan(1, "broker_restart", 30.0, 36.0, None),
    ]
    assert timeline.rates == [(10.0, 400.0, 2.0), (20.0, 400.0, 2.0), (30.0, 400.0, 2.0), (40.0, 0.0, 0.0)]
    assert timeline.exits == [(33.0, "streams")]
    # The run lasted 90 s; orders routed before t0 (start-up) or after the end are not on the axis.
    assert timeline.duration == 90.0 and timeline.orders == [5.0, 21.5]
    assert timeline.faults[0].label == "#0 kill_execution: recovered 3.5s after it ended"
    assert timeline.faults[1].label == "#1 broker_restart: NOT recovered"


def test_a_report_without_samples_or_faults_still_draws_an_empty_axis() -> None:
    timeline = build_timeline({"minutes": 2.0, "faults": []})
    assert timeline.duration == 120.0 and timeline.rates == [] and timeline.faults == []
    assert render_timeline_svg(timeline).startswith("<svg")


def test_the_drawing_shades_faults_marks_exits_and_orders_and_plots_both_rates() -> None:
    drawing = render_timeline_svg(build_timeline(_report()))
    # Fault 0: red while it lasted, amber until it recovered; fault 1: red, then grey to the end (never recovered).
    titled = re.findall(r"<rect [^>]*fill='(#[0-9a-f]+)' fill-opacity='0.18'><title>([^<]+)</title>", drawing)
    assert [colour for colour, _ in titled] == ["#cf222e", "#d4a72c", "#cf222e", "#6e7781"]
    assert "#1 broker_restart: NOT recovered" in titled[-1][1]
    assert "streams exited on its own at t+33.0s" in drawing
    assert drawing.count("stroke='#8250df'") == 2  # the two routed orders inside the window
    # Two rate lines of four points each, the last point of quotes/s at zero (the panel's bottom edge).
    lines = re.findall(r"<polyline fill='none' stroke='(#[0-9a-f]+)' stroke-width='1.5' points='([^']+)'", drawing)
    assert [colour for colour, _ in lines] == ["#0969da", "#1a7f37"]
    quotes = [tuple(map(float, p.split(","))) for p in lines[0][1].split()]
    assert len(quotes) == 4 and quotes[-1][1] == 24 + 150
    # x is proportional to time: t=40 s of 90 s across the 820 px of the panel, from x=60.
    assert quotes[-1][0] == round(60 + 40 / 90 * 820, 1)
    assert "t+0s" in drawing and "t+90s" in drawing


def test_the_report_page_has_the_timeline_and_keeps_the_text_tables() -> None:
    report = _report()
    page = render_html(report, render(report))
    assert "<svg" in page and "chaos campaign (seed 14): FAIL" in page
    assert "2 faults, 1 recovered; 2 orders routed" in page
    assert "faults injected (seed 14" in page and "invariants" in page and "recovers_after_every_fault" in page


def test_a_campaign_writes_its_timeline_next_to_its_json_report(tmp_path: Path) -> None:
    from tooling.chaos.campaign import Campaign, ChaosConfig, FaultOutcome
    from tooling.chaos.schedule import Fault

    campaign = Campaign(ChaosConfig(minutes=1.0, directory=tmp_path / "run", json_path=tmp_path / "out" / "chaos.json"))
    outcome = FaultOutcome(Fault(0, 10.0, "kill_api", {"down_seconds": 1.0}), injected_at=10.2, restored_at=11.5)
    outcome.recovered_at = 14.0
    campaign.outcomes = [outcome]
    campaign.timeline_samples = [(0.0, 0, 0), (2.0, 800, 4), (4.0, 1600, 8)]
    campaign.orders_routed_at = [3.0]
    report = campaign.report([], {}, "an error")
    campaign.write_timeline(report)
    assert report["faults"][0]["recovered_at"] == 14.0 and report["throughput_samples"][1] == [2.0, 800, 4]
    page = (tmp_path / "out" / "chaos.html").read_text()
    assert report["html"] == str(tmp_path / "out" / "chaos.html")
    assert "#0 kill_api: recovered 2.5s after it ended" in page and "1 orders routed" in page


def test_kill_streams_recoveries_are_reported_against_their_5_second_target() -> None:
    from tooling.chaos.report import describe_targets, recovery_against_targets

    by_kind = {"kill_streams": [2.4, 6.1, 1.8], "kill_execution": [9.0]}
    figures = recovery_against_targets(by_kind)
    # Only kinds with a target; the slowest recovery decides.
    assert figures == {"kill_streams": {"target": 5.0, "faults": 3, "min": 1.8, "max": 6.1, "met": False}}
    assert recovery_against_targets({"kill_streams": [1.8, 4.9]})["kill_streams"]["met"] is True
    assert recovery_against_targets({"kill_execution": [1.0]}) == {}
    assert describe_targets({"recovery_targets": figures}) == [
        "kill_streams recovered in 1.8–6.1 s (3 faults): target ≤ 5 s MISSED"
    ]


def test_the_text_report_and_the_page_show_the_kill_streams_figure() -> None:
    from tooling.chaos.campaign import Campaign, ChaosConfig, FaultOutcome
    from tooling.chaos.schedule import Fault

    campaign = Campaign(ChaosConfig(minutes=1.0))
    for index, (restored, recovered) in enumerate([(20.0, 22.5), (40.0, 41.2)]):
        outcome = FaultOutcome(Fault(index, restored - 1, "kill_streams", {"down_seconds": 1.0}), restored - 1)
        outcome.restored_at, outcome.recovered_at = restored, recovered
        campaign.outcomes.append(outcome)
    report = campaign.report([], {}, None)
    assert report["recovery_targets"]["kill_streams"] == {
        "target": 5.0,
        "faults": 2,
        "min": 1.2,
        "max": 2.5,
        "met": True,
    }
    line = "kill_streams recovered in 1.2–2.5 s (2 faults): target ≤ 5 s met"
    text = render(report | {"invariants": [], "violations": [], "records_total": 0})
    assert f"│ recovery target               │ {line} │" in text
    assert line in render_html(report, text)

"""Strategy performance over HTTP and the strategy-scores audit, against chDB holding scored signals written
through the sink's insert path; both by the same definitions, expected values worked out from the records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role
from ibstream.contracts import SignalOutcome, signal_outcomes
from ibstream.contracts.enums import OutcomeKind, Side
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import run_audit
from tests.integration.api_support import Loader, RecordingCommands, Scenario, api_settings, bearer, token

pytestmark = pytest.mark.integration

D1 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
D2 = D1 + timedelta(days=1)


def outcome(n: int, strategy: str, symbol: str, at: datetime, kind: OutcomeKind, r: float, pnl: float) -> SignalOutcome:
    return SignalOutcome(
        signal_id=f"sig-{n}",
        symbol=symbol,
        strategy=strategy,
        side=Side.BUY,
        confidence=0.7,
        outcome=kind,
        entry=100.0,
        stop=99.0,
        take_profit=102.0,
        exit_price=100.0 + r,
        mfe=max(r, 0.0),
        mae=max(-r, 0.0),
        r_multiple=r,
        quantity=100.0,
        pnl=pnl,
        bars_to_outcome=10,
        ambiguous=False,
        signal_time=at,
        bar_start=at - timedelta(seconds=5),
        outcome_time=at + timedelta(minutes=1),
        scored_time=at + timedelta(minutes=1),
    )


RECORDS = [
    outcome(1, "breakout", "AAPL", D1, OutcomeKind.HIT_TARGET, 2.0, 200.0),
    outcome(2, "breakout", "AAPL", D1 + timedelta(hours=1), OutcomeKind.HIT_STOP, -1.0, -100.0),
    outcome(3, "breakout", "MSFT", D2, OutcomeKind.EXPIRED, 0.5, 50.0),
    outcome(4, "meanrev", "AAPL", D2, OutcomeKind.HIT_STOP, -1.0, -100.0),
]


@dataclass
class Api:
    client: TestClient
    warehouse: Warehouse
    headers: dict[str, str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = api_settings(tmp_path_factory.mktemp("perf") / "wh")
    with Warehouse.open(settings) as warehouse:
        load = Loader(warehouse, Scenario())
        load.add(signal_outcomes.TOPIC, *RECORDS)
        load.add(signal_outcomes.TOPIC, RECORDS[0], remember=False)  # an at-least-once redelivery: counted once
        app = create_app(settings, warehouse, RecordingCommands())
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, warehouse, bearer(token(settings, Role.VIEWER, "vera")))


def test_performance_overall_by_symbol_and_by_day(api: Api) -> None:
    response = api.client.get("/v1/strategies/breakout/performance", headers=api.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    overall = body["overall"]
    # breakout: +2R/+200, -1R/-100, +0.5R/+50 → two wins of three, one target
    assert (overall["scored"], overall["wins"], overall["hit_target"], overall["hit_stop"], overall["expired"]) == (
        3,
        2,
        1,
        1,
        1,
    )
    assert overall["hit_rate"] == pytest.approx(2 / 3)
    assert overall["target_rate"] == pytest.approx(1 / 3)
    assert overall["expectancy_r"] == pytest.approx(1.5 / 3)
    assert overall["expectancy_pnl"] == pytest.approx(150 / 3)
    assert overall["profit_factor"] == pytest.approx(250 / 100)
    assert [(row["symbol"], row["scores"]["scored"]) for row in body["by_symbol"]] == [("AAPL", 2), ("MSFT", 1)]
    assert [(row["period_start"], row["scores"]["scored"]) for row in body["by_period"]] == [
        (str(D1.date()), 2),
        (str(D2.date()), 1),
    ]
    aapl = api.client.get("/v1/strategies/breakout/performance?symbol=AAPL&period=week", headers=api.headers).json()
    assert aapl["overall"]["scored"] == 2
    assert aapl["by_period"] == [{"period_start": "2026-11-23", "scores": aapl["overall"]}]


def test_a_strategy_or_a_window_without_scored_signals_has_empty_scores(api: Api) -> None:
    for path in (
        "/v1/strategies/nothing_yet/performance",
        "/v1/strategies/breakout/performance?since=2026-11-25T00:00:00Z&until=2026-11-24T00:00:00Z",
    ):
        body = api.client.get(path, headers=api.headers).json()
        assert body["overall"]["scored"] == 0
        assert body["overall"]["hit_rate"] is None
        assert body["by_symbol"] == body["by_period"] == []
    d2_only = api.client.get("/v1/strategies/breakout/performance?since=2026-11-24T00:00:00Z", headers=api.headers)
    assert d2_only.json()["overall"]["scored"] == 1


@pytest.mark.parametrize("query", ["period=year", "symbol=aapl", "since=tomorrow", "colour=red"])
def test_bad_queries_are_refused_with_a_reason(api: Api, query: str) -> None:
    response = api.client.get(f"/v1/strategies/breakout/performance?{query}", headers=api.headers)
    assert response.status_code == 422
    assert response.json()["message"]


def test_performance_needs_a_viewer_token(api: Api) -> None:
    assert api.client.get("/v1/strategies/breakout/performance").status_code == 401


def test_the_strategy_scores_audit_agrees_with_the_api(api: Api) -> None:
    rows = run_audit(api.warehouse, "strategy-scores").dicts()
    totals = {row["strategy"]: row for row in rows if row["symbol"] is None and row["day"] is None}
    assert set(totals) == {"breakout", "meanrev"}
    api_overall = api.client.get("/v1/strategies/breakout/performance", headers=api.headers).json()["overall"]
    for name in ("scored", "wins", "hit_rate", "target_rate", "expectancy_r", "expectancy_pnl", "profit_factor"):
        assert totals["breakout"][name] == pytest.approx(api_overall[name]), name
    assert totals["meanrev"]["profit_factor"] == 0.0  # a loss, no profit
    msft = next(row for row in rows if row["strategy"] == "breakout" and row["symbol"] == "MSFT" and row["day"] is None)
    assert msft["profit_factor"] is None  # no loss
    per_day = [
        (row["symbol"], row["day"], row["scored"])
        for row in rows
        if row["strategy"] == "breakout" and row["day"] is not None
    ]
    assert per_day == [("AAPL", D1.date(), 2), ("MSFT", D2.date(), 1)]
    only_d2 = run_audit(api.warehouse, "strategy-scores", day=date(2026, 11, 24)).dicts()
    assert {(row["strategy"], row["symbol"], row["scored"]) for row in only_d2 if row["day"] is not None} == {
        ("breakout", "MSFT", 1),
        ("meanrev", "AAPL", 1),
    }


STRATEGIES_FILE = """
[[instances]]
name = "breakout"
strategy = "donchian_breakout"

[[instances]]
name = "meanrev"
strategy = "zscore_reversion"

[[instances]]
name = "quiet"
strategy = "ma_crossover"
"""


def test_the_strategy_list_shows_each_instances_headline_scores(api: Api, tmp_path: Path) -> None:
    """GET /v1/strategies carries each instance's headline figures, the same as its performance route's."""
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(STRATEGIES_FILE)
    settings = api_settings(tmp_path / "unused", strategies_file=strategies)
    with TestClient(create_app(settings, api.warehouse, RecordingCommands())) as client:
        listed = client.get("/v1/strategies", headers=api.headers)
    assert listed.status_code == 200, listed.text
    scores = {item["name"]: item["scores"] for item in listed.json()["items"]}
    overall = api.client.get("/v1/strategies/breakout/performance", headers=api.headers).json()["overall"]
    assert scores["breakout"] == {
        "scored": 3,
        "hit_rate": pytest.approx(overall["hit_rate"]),
        "expectancy_r": pytest.approx(overall["expectancy_r"]),
        "profit_factor": pytest.approx(overall["profit_factor"]),
    }
    assert overall["scored"] == 3
    # meanrev: one stop → no win, a loss without profit; quiet has no outcome yet.
    assert scores["meanrev"] == {"scored": 1, "hit_rate": 0.0, "expectancy_r": -1.0, "profit_factor": 0.0}
    assert scores["quiet"] is None

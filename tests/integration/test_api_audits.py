"""The API's warehouse reads over HTTP (in-process ASGI) against chDB filled with the scripted scenario:
``GET /v1/audits/{name}`` gives the audit's own rows as JSON or CSV, refuses bad input with 4xx and a reason, and
``GET /v1/topics/{topic}/records`` pages through exactly the records a direct warehouse read streams."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role
from ibstream.contracts import Bar, bars
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import AUDITS, AuditFilters, execute_audit, jsonable, render
from tests.integration.api_support import T0, RecordingCommands, Scenario, api_settings, bearer, load_scenario, token

pytestmark = pytest.mark.integration

PREFIX = "t-audits."
CODEC = SingleObjectCodec(SchemaStore())
BARS_PER_SYMBOL = 12


@dataclass
class Api:
    client: TestClient
    warehouse: Warehouse
    scenario: Scenario
    tokens: dict[str, str]
    window: tuple[datetime, datetime]

    def get(self, path: str, role: str = "viewer", **kwargs: Any) -> Any:
        headers = {**bearer(self.tokens[role]), **kwargs.pop("headers", {})}
        return self.client.get(path, headers=headers, **kwargs)


def _bars(warehouse: Warehouse) -> tuple[datetime, datetime]:
    """Bars of three symbols stored under the prefixed topic on two partitions; returns the Kafka-time window."""
    base = T0.replace(microsecond=0)
    table = warehouse.schema.for_topic(bars.TOPIC)
    by_partition: dict[int, list[tuple[Bar, int, int, datetime]]] = {0: [], 1: []}
    for i in range(BARS_PER_SYMBOL):
        for n, symbol in enumerate(("AAA", "BBB", "CCC")):
            start = base + timedelta(seconds=5 * i)
            price = 100.0 + n + i * 0.125
            bar = Bar(
                symbol=symbol,
                start=start,
                open=price,
                high=price + 0.5,
                low=price - 0.25,
                close=price + 0.1,
                volume=1000.0 + i,
                wap=price + 0.05,
                count=10 + i,
                event_time=start + timedelta(seconds=5),
                ingest_time=start + timedelta(seconds=5, microseconds=40_123),
                source=MarketDataSource.LIVE,
            )
            partition = 0 if symbol == "BBB" else 1
            rows = by_partition[partition]
            rows.append((bar, partition, len(rows), start + timedelta(seconds=5)))
    for rows in by_partition.values():
        warehouse.insert_records(table, PREFIX + bars.TOPIC.name, rows)
    return base + timedelta(seconds=20), base + timedelta(seconds=45)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = api_settings(tmp_path_factory.mktemp("api-audits") / "wh", kafka_topic_prefix=PREFIX)
    with Warehouse.open(settings) as warehouse:
        scenario = load_scenario(warehouse)
        window = _bars(warehouse)
        app = create_app(settings, warehouse, RecordingCommands())
        tokens = {role.value: token(settings, role) for role in (Role.VIEWER, Role.TRADER, Role.ADMIN)}
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, warehouse, scenario, tokens, window)


def _filters_for(name: str, scenario: Scenario) -> tuple[dict[str, str], AuditFilters]:
    if name == "order-trail":
        return {"order_id": scenario.ids["order"]}, AuditFilters(order_id=scenario.ids["order"])
    return {}, AuditFilters()


@pytest.mark.parametrize("name", sorted(AUDITS))
def test_every_audit_answers_its_own_rows_as_json_and_csv(api: Api, name: str) -> None:
    params, filters = _filters_for(name, api.scenario)
    direct = execute_audit(api.warehouse, name, filters)
    answer = api.get(f"/v1/audits/{name}", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["audit"] == name and body["columns"] == direct.columns
    assert body["rows"] == jsonable(direct).dicts()
    as_csv = api.get(f"/v1/audits/{name}", params={**params, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text == render(direct, "csv")
    by_header = api.get(f"/v1/audits/{name}", params=params, headers={"Accept": "text/csv"})
    assert by_header.text == as_csv.text


def test_the_scenario_gives_the_audits_rows_to_compare(api: Api) -> None:
    # The comparisons above mean something only if the audits have rows here.
    for name in ("order-trail", "signal-outcomes", "risk-rejections", "trade-reviews", "feed-gaps"):
        params, _ = _filters_for(name, api.scenario)
        assert api.get(f"/v1/audits/{name}", params=params).json()["rows"], name


def test_filters_reach_the_sql(api: Api) -> None:
    outcomes = api.get("/v1/audits/signal-outcomes", params={"strategy": "meanrev"}).json()["rows"]
    assert [row["strategy"] for row in outcomes] == ["meanrev"]
    assert (
        outcomes == jsonable(execute_audit(api.warehouse, "signal-outcomes", AuditFilters(strategy="meanrev"))).dicts()
    )
    window = {"from": (T0 + timedelta(minutes=2)).isoformat(), "to": (T0 + timedelta(minutes=4)).isoformat()}
    in_window = api.get("/v1/audits/signal-outcomes", params=window).json()["rows"]
    want = execute_audit(
        api.warehouse,
        "signal-outcomes",
        AuditFilters(start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4)),
    )
    assert in_window == jsonable(want).dicts() and sum(row["signals"] for row in in_window) == 2
    reviews = api.get("/v1/audits/trade-reviews", params={"symbol": "AAPL", "day": T0.date().isoformat()}).json()
    assert [row["order_id"] for row in reviews["rows"]] == [api.scenario.ids["order"]]
    assert api.get("/v1/audits/trade-reviews", params={"symbol": "MSFT"}).json()["rows"] == []


def test_audits_are_listed_with_the_filters_each_takes(api: Api) -> None:
    listed = {item["name"]: item for item in api.get("/v1/audits").json()["audits"]}
    assert set(listed) == set(AUDITS)
    assert listed["trade-reviews"]["filters"] == ["day", "from", "to", "symbol", "strategy"]
    assert listed["order-trail"]["required"] == ["order_id"]


@pytest.mark.parametrize(
    ("path", "params", "headers", "status", "code", "named"),
    [
        ("/v1/audits/nonesuch", {}, {}, 404, "audit_not_found", "trade-reviews"),
        ("/v1/audits/feed-gaps", {"strategy": "breakout"}, {}, 422, "invalid_filter", "strategy"),
        ("/v1/audits/dlq-contents", {"symbol": "AAPL"}, {}, 422, "invalid_filter", "symbol"),
        ("/v1/audits/order-trail", {}, {}, 422, "invalid_filter", "order_id"),
        (
            "/v1/audits/feed-gaps",
            {"day": "2026-03-02", "from": "2026-03-02T10:00:00Z"},
            {},
            422,
            "invalid_filter",
            "day",
        ),
        (
            "/v1/audits/feed-gaps",
            {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T09:00:00Z"},
            {},
            422,
            "invalid_filter",
            "to",
        ),
        ("/v1/audits/feed-gaps", {"day": "9999-12-31"}, {}, 422, "invalid_filter", "day"),
        ("/v1/audits/feed-gaps", {"day": "yesterday"}, {}, 422, "validation_error", "day"),
        ("/v1/audits/feed-gaps", {"from": "3000-01-01T00:00:00Z"}, {}, 422, "validation_error", "from"),
        ("/v1/audits/feed-gaps", {"format": "xml"}, {}, 422, "validation_error", "format"),
        ("/v1/audits/feed-gaps", {"symbl": "AAPL"}, {}, 422, "validation_error", "symbl"),
        ("/v1/audits/feed-gaps", {}, {"Accept": "text/html"}, 406, "not_acceptable", "text/csv"),
    ],
)
def test_bad_audit_requests_are_4xx_with_the_reason(
    api: Api, path: str, params: dict[str, str], headers: dict[str, str], status: int, code: str, named: str
) -> None:
    answer = api.get(path, params=params, headers=headers)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code
    assert named in body["message"] or any(named in detail["loc"] for detail in body.get("details", []))


def test_audits_need_a_token(api: Api) -> None:
    assert api.client.get("/v1/audits/feed-gaps").status_code == 401
    assert api.get("/v1/audits/feed-gaps", role="viewer").status_code == 200


def _decode(page: dict[str, Any]) -> list[tuple[int, int, Bar]]:
    return [
        (item["partition"], item["offset"], CODEC.decode(page["topic"], Bar, base64.b64decode(item["value"]), 0, 0))
        for item in page["items"]
    ]


def test_stored_records_page_through_exactly_what_a_direct_read_streams(api: Api) -> None:
    start, end = api.window
    table = api.warehouse.schema.for_topic(bars.TOPIC)
    direct = list(api.warehouse.stream_records(table, PREFIX + bars.TOPIC.name, start, end))
    assert len(direct) == 5 * 3  # five 5-second slots of three symbols, across both partitions
    params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "limit": 4}
    got: list[tuple[int, int, Bar]] = []
    first = api.get(f"/v1/topics/{bars.TOPIC.name}/records", role="admin", params=params).json()
    assert first["topic"] == PREFIX + bars.TOPIC.name and first["total"] == len(direct)
    page, pages = first, 1
    while True:
        got += _decode(page)
        if page["next_cursor"] is None:
            break
        page = api.get(
            f"/v1/topics/{bars.TOPIC.name}/records", role="admin", params={**params, "cursor": page["next_cursor"]}
        ).json()
        pages += 1
        assert page["total"] is None
    assert pages == 4
    assert got == [(s.partition, s.offset, s.record) for s in direct]
    only = api.get(
        f"/v1/topics/{bars.TOPIC.name}/records", role="admin", params={**params, "symbol": ["AAA", "CCC"], "limit": 100}
    ).json()
    assert [bar for _, _, bar in _decode(only)] == [s.record for s in direct if s.record.symbol in ("AAA", "CCC")]


def test_stored_records_are_for_admins_and_market_data_and_refuse_bad_input(api: Api) -> None:
    start, end = api.window
    path = f"/v1/topics/{bars.TOPIC.name}/records"
    params = {"from": start.isoformat(), "to": end.isoformat()}
    assert api.get(path, role="viewer", params=params).status_code == 403
    assert api.get(path, role="trader", params=params).status_code == 403
    cases = [
        ("/v1/topics/orders.intents.v1/records", params, 422, "topic_not_readable"),
        ("/v1/topics/md.nonesuch.v1/records", params, 404, "topic_not_found"),
        (path, {"from": end.isoformat(), "to": start.isoformat()}, 422, "invalid_window"),
        (path, {"from": start.isoformat()}, 422, "validation_error"),
        (path, {**params, "cursor": "garbage"}, 400, "bad_cursor"),
        ("/v1/topics/md.heartbeats.v1/records", {**params, "symbol": "AAA"}, 422, "invalid_filter"),
    ]
    for where, query, status, code in cases:
        answer = api.get(where, role="admin", params=query)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (where, query, answer.text)


def test_csv_of_an_audit_reads_back_as_its_rows(api: Api) -> None:
    text = api.get("/v1/audits/risk-rejections", params={"format": "csv"}).text
    rows = list(csv.reader(io.StringIO(text)))
    direct = jsonable(execute_audit(api.warehouse, "risk-rejections", AuditFilters()))
    assert rows[0] == direct.columns and len(rows) - 1 == len(direct.rows) > 0

"""Audit filters → SQL parameters (pure), the JSON normalisation both read paths share, and the CLI's input checks
and the API-fallback errors that need no warehouse."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from ibstream.cli import build_parser
from ibstream.config import load_settings
from ibstream.warehouse import AuditParameterError, QueryResult, UnknownAuditError, WarehouseLockedError
from ibstream.warehouse.audits import (
    AUDITS,
    FILTERS,
    AuditFilters,
    audit_parameters,
    find_audit,
    jsonable,
    jsonable_value,
    render,
)
from ibstream.warehouse.exceptions import ApiReadError
from ibstream.warehouse.remote import ApiWarehouseReader, audit_query, retry_after, through_api

#: One value per filter, to ask every audit for every filter.
ONE_OF_EACH = {
    "day": AuditFilters(day=date(2026, 3, 2)),
    "from": AuditFilters(start=datetime(2026, 3, 2, 14, tzinfo=UTC)),
    "to": AuditFilters(end=datetime(2026, 3, 2, 15, tzinfo=UTC)),
    "symbol": AuditFilters(symbol="AAPL"),
    "strategy": AuditFilters(strategy="breakout"),
    "order_id": AuditFilters(order_id="o-1"),
}


def _placeholders(sql: str) -> set[str]:
    return set(re.findall(r"\{([a-z_]+):", sql))


@pytest.mark.parametrize("name", sorted(AUDITS))
def test_each_audit_binds_exactly_the_placeholders_of_its_sql(name: str) -> None:
    audit = AUDITS[name]
    required = AuditFilters(order_id="o-1") if "order_id" in audit.required else AuditFilters()
    assert set(audit_parameters(audit, required)) == _placeholders(audit.sql())


@pytest.mark.parametrize("name", sorted(AUDITS))
def test_a_filter_an_audit_does_not_take_is_refused_naming_it(name: str) -> None:
    audit = AUDITS[name]
    for filter_name in FILTERS:
        filters = ONE_OF_EACH[filter_name]
        if "order_id" in audit.required and filter_name != "order_id":
            filters = AuditFilters(**{**filters.__dict__, "order_id": "o-1"})
        if filter_name in audit.filters:
            audit_parameters(audit, filters)  # accepted
            continue
        with pytest.raises(AuditParameterError, match=f"does not take the {filter_name} filter") as refused:
            audit_parameters(audit, filters)
        assert refused.value.parameter == filter_name


def test_a_day_is_its_utc_window_and_from_to_are_half_open_in_utc() -> None:
    audit = AUDITS["signal-outcomes"]
    by_day = audit_parameters(audit, AuditFilters(day=date(2026, 3, 2), symbol="AAPL", strategy="breakout"))
    assert by_day == {
        "start": datetime(2026, 3, 2, tzinfo=UTC),
        "end": datetime(2026, 3, 3, tzinfo=UTC),
        "symbol": "AAPL",
        "strategy": "breakout",
    }
    new_york = timezone(timedelta(hours=-5))
    ranged = audit_parameters(
        audit, AuditFilters(start=datetime(2026, 3, 2, 9, 30, tzinfo=new_york), end=datetime(2026, 3, 2, 16))
    )
    assert (ranged["start"], ranged["end"]) == (
        datetime(2026, 3, 2, 14, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 16, tzinfo=UTC),
    )
    assert ranged["start"].tzinfo == UTC and ranged["end"].tzinfo == UTC
    open_ended = audit_parameters(audit, AuditFilters(start=datetime(2026, 3, 2, tzinfo=UTC)))
    assert open_ended["end"] is None and open_ended["symbol"] is None and open_ended["strategy"] is None


def test_contradicting_or_missing_filters_are_refused_naming_the_filter() -> None:
    feed = AUDITS["feed-gaps"]
    t = datetime(2026, 3, 2, 14, tzinfo=UTC)
    with pytest.raises(AuditParameterError, match="either day or from/to") as both:
        audit_parameters(feed, AuditFilters(day=t.date(), start=t))
    assert both.value.parameter == "day"
    with pytest.raises(AuditParameterError, match="must be after from") as empty:
        audit_parameters(feed, AuditFilters(start=t, end=t))
    assert empty.value.parameter == "to"
    with pytest.raises(AuditParameterError, match="needs the order_id filter") as missing:
        audit_parameters(AUDITS["order-trail"], AuditFilters())
    assert missing.value.parameter == "order_id"
    with pytest.raises(UnknownAuditError, match="known: " + ", ".join(sorted(AUDITS))):
        find_audit("trade-review")


SAMPLE = QueryResult(
    ["day", "time", "symbol", "pnl", "ratio", "symbols", "missing"],
    [
        (
            date(2026, 3, 2),
            datetime(2026, 3, 2, 14, 30, 0, 123456, tzinfo=UTC),
            "AAPL",
            12.3456789,
            float("nan"),
            ["A", "B"],
            None,
        ),
        (date(2026, 3, 3), datetime(2026, 3, 3, 15, tzinfo=UTC), "MSFT", -1.0, float("inf"), (), 7),
    ],
)


def test_rows_become_json_values_once_and_for_all() -> None:
    values = jsonable(SAMPLE)
    assert values.rows[0] == (
        "2026-03-02",
        "2026-03-02T14:30:00.123456+00:00",
        "AAPL",
        12.3456789,
        None,
        ["A", "B"],
        None,
    )
    assert values.rows[1][4] is None and values.rows[1][5] == []
    assert jsonable(values) == values  # idempotent: the API's values come back unchanged
    assert jsonable_value({"k": (1, 2.5)}) == {"k": [1, 2.5]}


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_rendering_the_json_values_prints_what_rendering_the_rows_prints(output: str) -> None:
    # The API sends jsonable rows through JSON; the CLI renders them: the text must be the direct path's.
    over_the_wire = json.loads(json.dumps({"columns": SAMPLE.columns, "rows": jsonable(SAMPLE).dicts()}))
    received = QueryResult(
        over_the_wire["columns"], [tuple(r[c] for c in SAMPLE.columns) for r in over_the_wire["rows"]]
    )
    assert render(received, output) == render(SAMPLE, output)  # type: ignore[arg-type]
    assert "2026-03-02T14:30:00.123456+00:00" in render(SAMPLE, output)  # type: ignore[arg-type]


def test_the_cli_parses_every_filter_and_lists_trade_reviews() -> None:
    args = build_parser().parse_args(
        [
            "audit",
            "trade-reviews",
            "--from",
            "2026-03-02T09:30:00-05:00",
            "--to",
            "2026-03-02T21:00:00",
            "--symbol",
            "AAPL",
            "--strategy",
            "breakout",
            "--format",
            "csv",
        ]
    )
    assert (args.name, args.symbol, args.strategy, args.format) == ("trade-reviews", "AAPL", "breakout", "csv")
    assert (args.start, args.end) == (datetime(2026, 3, 2, 14, 30, tzinfo=UTC), datetime(2026, 3, 2, 21, tzinfo=UTC))


def test_api_query_carries_only_the_given_filters_as_iso_text() -> None:
    filters = AuditFilters(day=date(2026, 3, 2), symbol="AAPL")
    assert audit_query(filters) == {"day": "2026-03-02", "symbol": "AAPL"}
    t = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert audit_query(AuditFilters(start=t, order_id="o")) == {"from": t.isoformat(), "order_id": "o"}


def test_cli_refuses_a_filter_before_opening_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ibstream import cli

    assert cli.main(["audit", "dlq-contents", "--symbol", "AAPL"]) == 1
    assert "audit dlq-contents does not take the symbol filter" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_without_a_token_the_lock_error_says_how_to_go_through_the_api(tmp_path: Path) -> None:
    locked = WarehouseLockedError(str(tmp_path), "pid 42")
    with pytest.raises(ApiReadError) as error:
        through_api(load_settings(warehouse_dir=tmp_path), locked)
    message = str(error.value)
    assert "held by another process (pid 42)" in message and "IBSTREAM_API_TOKEN" in message


def test_an_api_that_does_not_answer_is_named_by_its_setting(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    settings = load_settings(warehouse_dir=tmp_path, api_url=url, api_token="t")
    reader = through_api(settings, WarehouseLockedError(str(tmp_path), "pid 42"))
    try:
        with pytest.raises(ApiReadError, match=f"the API at {url} \\(IBSTREAM_API_URL\\) does not answer"):
            reader.audit("dlq-contents", AuditFilters())
    finally:
        reader.close()


def test_the_api_url_defaults_to_the_api_sections_address() -> None:
    assert load_settings().api.client_url == "http://127.0.0.1:8080"
    assert load_settings(api_host="0.0.0.0", api_port=9000).api.client_url == "http://127.0.0.1:9000"
    assert load_settings(api_url="https://api.example/").api.client_url == "https://api.example"


def _reader_answering(tmp_path: Path, answers: list[httpx.Response], seen: list[httpx.Request]) -> ApiWarehouseReader:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    settings = load_settings(warehouse_dir=tmp_path, api_url="http://api.test", api_token="the-token")
    return ApiWarehouseReader(settings, "the-token", transport=httpx.MockTransport(handle))


def test_a_rate_limited_read_waits_and_goes_again_with_the_token_and_filters(tmp_path: Path) -> None:
    body = {"audit": "dlq-contents", "columns": ["a", "b"], "rows": [{"a": 1, "b": "x"}, {"b": "y", "a": 2}]}
    limited = httpx.Response(429, headers={"Retry-After": "0"}, json={"code": "rate_limited", "message": "slow"})
    seen: list[httpx.Request] = []
    reader = _reader_answering(tmp_path, [limited, limited, httpx.Response(200, json=body)], seen)
    result = reader.audit("dlq-contents", AuditFilters(day=date(2026, 3, 2)))
    assert result == QueryResult(["a", "b"], [(1, "x"), (2, "y")])
    assert len(seen) == 3
    assert seen[-1].headers["Authorization"] == "Bearer the-token"
    assert dict(seen[-1].url.params) == {"day": "2026-03-02", "format": "json"}
    assert (retry_after("2.5"), retry_after(None), retry_after("soon"), retry_after("3600")) == (2.5, 1.0, 1.0, 30.0)


def test_the_apis_refusals_become_errors_naming_what_to_fix(tmp_path: Path) -> None:
    def refusal(status: int, code: str) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "message": f"{code} says the API"})

    seen: list[httpx.Request] = []
    reader = _reader_answering(
        tmp_path,
        [
            refusal(401, "token_expired"),
            refusal(403, "forbidden"),
            refusal(404, "audit_not_found"),
            refusal(422, "invalid_filter"),
            refusal(503, "warehouse_unavailable"),
        ],
        seen,
    )
    expected: list[tuple[type[Exception], str]] = [
        (ApiReadError, "refused IBSTREAM_API_TOKEN: token_expired"),
        (ApiReadError, "IBSTREAM_API_TOKEN may not do this"),
        (UnknownAuditError, "audit_not_found says the API"),
        (AuditParameterError, "invalid_filter says the API"),
        (ApiReadError, "answered 503"),
    ]
    for kind, message in expected:
        with pytest.raises(kind, match=re.escape(message)):
            reader.audit("feed-gaps", AuditFilters())

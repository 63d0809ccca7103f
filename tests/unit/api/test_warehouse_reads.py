"""The pure parts of the audit and stored-record routes: output negotiation, filter checks as 404/422, the
(partition, offset) cursor, which topics are served raw, and the JSON body the CLI turns back into rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from api.errors import ApiError
from api.warehouse_reads import (
    audit_json,
    checked_audit,
    day_problem,
    decode_offset_cursor,
    encode_offset_cursor,
    negotiate,
    readable_topic,
    records_window_problem,
)
from ibstream.contracts import bars, heartbeats, order_intents
from ibstream.warehouse import QueryResult
from ibstream.warehouse.audits import AUDITS, AuditFilters, render
from ibstream.warehouse.remote import result_from_body


@pytest.mark.parametrize(
    ("format_", "accept", "chosen"),
    [
        (None, None, "json"),
        (None, "*/*", "json"),
        (None, "text/csv", "csv"),
        (None, "text/*", "csv"),
        (None, "application/json", "json"),
        (None, "text/csv;q=0.5, application/json", "json"),
        (None, "application/json;q=0.4, text/csv", "csv"),
        (None, "text/csv, */*;q=0.1", "csv"),
        (None, "application/json;q=0, */*", "csv"),
        ("csv", "application/json", "csv"),  # format= wins over the header
        ("json", "text/csv", "json"),
    ],
)
def test_format_is_the_parameter_else_the_accept_headers_preference(
    format_: str | None, accept: str | None, chosen: str
) -> None:
    assert negotiate(format_, accept) == chosen  # type: ignore[arg-type]


def test_an_accept_header_wanting_neither_json_nor_csv_is_406() -> None:
    for accept in ("text/html", "application/xml, text/plain", "application/json;q=0, text/csv;q=0"):
        with pytest.raises(ApiError) as refused:
            negotiate(None, accept)
        assert (refused.value.status, refused.value.code) == (406, "not_acceptable")


def test_unknown_audit_is_404_naming_the_known_ones_and_a_foreign_filter_is_422_naming_it() -> None:
    with pytest.raises(ApiError) as unknown:
        checked_audit("nonesuch", AuditFilters())
    assert (unknown.value.status, unknown.value.code) == (404, "audit_not_found")
    assert all(name in unknown.value.message for name in AUDITS)
    with pytest.raises(ApiError) as foreign:
        checked_audit("feed-gaps", AuditFilters(strategy="breakout"))
    assert (foreign.value.status, foreign.value.code) == (422, "invalid_filter")
    assert "strategy" in foreign.value.message
    assert checked_audit("trade-reviews", AuditFilters(strategy="breakout")).name == "trade-reviews"
    assert day_problem(date(2026, 3, 2)) is None
    assert day_problem(date(9999, 12, 31)) is not None and day_problem(date(1969, 12, 31)) is not None


def test_the_json_body_turns_back_into_the_rows_the_cli_renders() -> None:
    result = QueryResult(
        ["day", "check_name", "rejections", "symbols"],
        [(date(2026, 3, 2), "kill_switch", 2, ["AAPL", "MSFT"]), (date(2026, 3, 3), "stale_quote", 1, [])],
    )

    received = result_from_body(json.loads(audit_json("risk-rejections", result)))
    assert received.columns == result.columns
    for output in ("table", "csv", "json"):
        assert render(received, output) == render(result, output)  # type: ignore[arg-type]
    assert json.loads(audit_json("x", QueryResult(["v"], [(float("nan"),)])))["rows"] == [{"v": None}]


def test_offset_cursor_continues_after_its_record_and_only_for_its_filters() -> None:
    filters = {"topic": "md.bars.5s.v1", "from": datetime(2026, 3, 2, tzinfo=UTC), "symbols": "AAPL"}
    cursor = encode_offset_cursor(3, 1_234_567, filters)
    assert decode_offset_cursor(cursor, filters) == (3, 1_234_567)
    for bad in ("", "not-a-cursor", cursor[:-3], encode_offset_cursor(-1, 0, filters)):
        with pytest.raises(ApiError) as refused:
            decode_offset_cursor(bad, filters)
        assert refused.value.code == "bad_cursor"
    with pytest.raises(ApiError, match="different filters"):
        decode_offset_cursor(cursor, {**filters, "symbols": "MSFT"})


def test_only_market_data_topics_are_served_raw() -> None:
    assert readable_topic(bars.TOPIC.name) is bars.TOPIC
    with pytest.raises(ApiError) as trading:
        readable_topic(order_intents.TOPIC.name)
    assert (trading.value.status, trading.value.code) == (422, "topic_not_readable")
    with pytest.raises(ApiError) as unknown:
        readable_topic("md.nonesuch.v1")
    assert (unknown.value.status, unknown.value.code) == (404, "topic_not_found")
    assert bars.TOPIC.name in unknown.value.message


def test_an_empty_window_or_symbols_on_a_topic_without_them_is_422() -> None:
    t = datetime(2026, 3, 2, 14, tzinfo=UTC)
    assert records_window_problem(bars.TOPIC, t, t + timedelta(hours=1), ["AAPL"]) is None
    empty = records_window_problem(bars.TOPIC, t, t, [])
    assert empty is not None and (empty.status, empty.code) == (422, "invalid_window")
    assert "symbol" not in heartbeats.TOPIC.record.model_fields
    no_symbol = records_window_problem(heartbeats.TOPIC, t, t + timedelta(hours=1), ["AAPL"])
    assert no_symbol is not None and no_symbol.code == "invalid_filter"

"""Schemathesis against the served OpenAPI documents, in-process (ASGI): the API over the scripted chDB scenario, and
Agent0 (its runs asked of that scenario, as Agent0 asks the API).

Every operation is called with generated valid (positive) and invalid (negative) inputs as an admin, so the
authorization layer does not hide the handlers; schemathesis's default checks apply: no 5xx, documented status
codes, content types, headers and bodies, invalid input rejected, auth not ignored. Bounded by ``max_examples`` to
stay well under a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api.agent0 import PlanLimits, PlanStore, SignalIn, make_plan
from api.agent0 import create_app as create_agent0
from api.app import create_app
from api.auth import Role
from api.errors import ApiError
from api.queries import runs as run_queries
from api.times import out_of_range
from api.warehouse_reads import checked_audit, day_problem, negotiate, readable_topic, records_window_problem
from ibstream.config import Settings
from ibstream.sizing import SizingError
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import AuditFilters
from tests.integration.api_support import RecordingCommands, api_settings, bearer, load_scenario, token

pytestmark = pytest.mark.integration

EXAMPLES = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 30}
#: Operations without any input: nothing about them can be made invalid.
NO_INPUT = {"/health", "/ready", "/metrics"}


def _query_is_ambiguous_on_the_wire(case: Any) -> bool:
    """Whether the case's query holds a value whose invalidity the URL cannot carry: a query string has only
    text, so ``true``, ``5`` or ``[x]`` for a string parameter arrive as valid text, and an empty name or an
    object value is dropped by the client. Accepting such a request is right; ``negative_data_rejection`` is
    skipped for it (other checks still run). Invalid text values, unknown parameters, paths and bodies stay
    covered."""
    if not case.query:
        return False
    return any(key == "" or not isinstance(value, str) for key, value in case.query.items())


def _scope_outside_universe(case: Any, symbols: list[str]) -> bool:
    """Whether the case's body names a scope that fits the symbol pattern but is neither the account nor a configured
    symbol: 422 ``unknown_scope`` is the right answer (the universe is configuration, which a static schema cannot
    enumerate), so ``positive_data_acceptance`` is skipped for it."""
    if not isinstance(case.body, dict) or not isinstance(case.body.get("scope"), str):
        return False
    return case.body["scope"] != "account" and case.body["scope"] not in symbols


def _time_out_of_range(case: Any) -> bool:
    """Whether a ``since``/``until`` (or ``from``/``to``) of the case is a date-time the API refuses for lying
    outside 1970–2200 (422 with the reason, tested in test_api_hardening): JSON Schema cannot bound a date-time, so
    such values fit the document's schema without being valid."""
    for name in ("since", "until", "from", "to"):
        value = (case.query or {}).get(name)
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        if out_of_range(parsed) is not None:
            return True
    return False


def _refused_by_the_warehouse_read_rules(case: Any) -> bool:
    """Whether the case asks an audit or stored-record read for something the API refuses by rules a static schema
    cannot state (tested in test_api_audits): an unknown audit or topic (404), a filter the audit does not take, a
    window that is empty or given twice, a day outside 1970–2200, an Accept header wanting neither JSON nor CSV, a
    topic outside market data, symbols on a topic without them (422/406). Decided by the routes' own pure checks."""
    if not case.path.startswith(("/v1/audits/", "/v1/topics/")):
        return False
    query = case.query or {}
    try:
        if case.path.startswith("/v1/audits/"):
            day = date.fromisoformat(query["day"]) if isinstance(query.get("day"), str) else None
            times = {k: _aware(query.get(k)) for k in ("from", "to")}
            if day_problem(day) is not None:
                return True
            filters = AuditFilters(
                day=day,
                start=times["from"],
                end=times["to"],
                symbol=query.get("symbol"),
                strategy=query.get("strategy"),
                order_id=query.get("order_id"),
            )
            checked_audit(case.path_parameters["name"], filters)
            if query.get("format") is None:
                negotiate(None, (case.headers or {}).get("accept") or (case.headers or {}).get("Accept"))
        else:
            spec = readable_topic(case.path_parameters["topic"])
            start, end = _aware(query.get("from")), _aware(query.get("to"))
            symbols = query.get("symbol") or []
            if (
                start
                and end
                and records_window_problem(spec, start, end, [symbols] if isinstance(symbols, str) else symbols)
            ):
                return True
    except (ApiError, ValueError, TypeError):
        return True
    return False


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Warehouse]]:
    """The scripted warehouse, shared by the API and Agent0 (chDB opens one directory per process)."""
    api = api_settings(tmp_path_factory.mktemp("schemathesis") / "wh")
    with Warehouse.open(api) as warehouse:
        load_scenario(warehouse)
        yield api, warehouse


@pytest.fixture(scope="module")
def served(scenario: tuple[Settings, Warehouse]) -> tuple[Any, dict[str, str]]:
    api, warehouse = scenario
    app = create_app(api, warehouse, RecordingCommands())
    return schemathesis.openapi.from_asgi("/openapi.json", app), bearer(token(api, Role.ADMIN, "schemathesis"))


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_api_conforms_to_its_openapi_document(
    served: tuple[Any, dict[str, str]], scenario: tuple[Settings, Warehouse], mode: GenerationMode
) -> None:
    schema, headers = served
    symbols = scenario[0].feed.symbols
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 32  # every operation of the document (31 paths; /v1/runs has GET and POST)
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path in NO_INPUT:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            # A cursor is opaque: any string fits its schema, but only ones the API issued are valid (400
            # bad_cursor otherwise, tested in test_api_http). Only that check is skipped, only for such cases.
            opaque = bool(case.query and case.query.get("cursor") is not None)
            unknown_scope = _scope_outside_universe(case, symbols)
            refused = unknown_scope or _refused_by_the_warehouse_read_rules(case)
            excluded = [positive_data_acceptance] if opaque or _time_out_of_range(case) or refused else []
            if _query_is_ambiguous_on_the_wire(case):
                excluded.append(negative_data_rejection)
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        call()


@pytest.fixture(scope="module")
def agent0(
    scenario: tuple[Settings, Warehouse], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, str], Settings]:
    api, warehouse = scenario

    def runs(run_id: str, _token: str) -> Any:
        try:
            return run_queries.get_run(warehouse, run_id)
        except ApiError:  # 404 run_not_found
            return None

    store = PlanStore(tmp_path_factory.mktemp("schemathesis-agent0") / "agent0.sqlite")
    app = create_agent0(api, store, runs)
    return schemathesis.openapi.from_asgi("/openapi.json", app), bearer(token(api, Role.ADMIN, "schemathesis")), api


def _unplannable(case: Any, settings: Settings) -> bool:
    """A plan request whose prices fit the schema but not each other (a stop on the wrong side, a budget below one
    share): 422 ``unplannable`` is the right answer, so ``positive_data_acceptance`` is skipped for it. Decided by
    the planning function itself, with the settings Agent0 plans by."""
    if case.path != "/v1/plan" or not isinstance(case.body, dict):
        return False
    equity = case.body.get("equity") or settings.risk.account_equity
    if not isinstance(equity, int | float) or isinstance(equity, bool):
        return False  # negative data (a list, a string): Agent0 answers 422 before planning, and the check stays on
    try:
        signal = SignalIn.model_validate(case.body["signal"])
    except (ValidationError, KeyError, TypeError):
        return False  # not a valid signal: the request is negative data, and the check stays on
    try:
        make_plan(
            signal,
            case.body.get("entry_type", "LMT"),
            equity,
            settings.risk.per_trade_pct,
            PlanLimits.from_settings(settings),
        )
    except SizingError:
        return True
    return False


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_agent0_conforms_to_its_openapi_document(
    agent0: tuple[Any, dict[str, str], Settings], mode: GenerationMode
) -> None:
    schema, headers, agent0_settings = agent0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.path for operation in operations) == ["/health", "/v1/execute", "/v1/plan"]
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path in NO_INPUT:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            excluded = [positive_data_acceptance] if _unplannable(case, agent0_settings) else []
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        call()

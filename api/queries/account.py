"""Account reads: the newest ``account.v1`` record (the account's values and P&L from IB) and its age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.models import AccountView
from api.queries.common import equals, topic_table, where_clause
from ibstream.contracts import AccountState, account_states
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident


def account_view(state: AccountState, now: datetime) -> AccountView:
    """The state with its age at ``now`` (never negative: a clock a little behind IB's reads as fresh)."""
    return AccountView(state=state, age_seconds=max((now - state.time).total_seconds(), 0.0))


def latest_account_state(warehouse: Warehouse, account: str | None) -> AccountState:
    """The newest record (of ``account``, or of any account); 404 ``account_not_found`` before the first one."""
    table = warehouse.schema.for_topic(account_states.TOPIC)
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    equals(conditions, parameters, "account", account)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    sql = (
        f"SELECT {names} FROM {topic_table(warehouse, account_states.TOPIC)} WHERE {where_clause(conditions)} "
        "ORDER BY time DESC, _kafka_ts DESC, _offset DESC LIMIT 1"
    )
    rows = warehouse.query(sql, parameters, column_formats=table.column_formats()).rows
    if not rows:
        which = f"account {account}" if account else "any account"
        raise ApiError(
            404,
            "account_not_found",
            f"no account state recorded for {which}: execution publishes account.v1 once it is connected to IB",
        )
    state: AccountState = table.from_row(rows[0])  # type: ignore[assignment]  # from_row builds spec.record
    return state

"""The account's values and P&L as IB reports them, keyed by account (the newest per account is in force)."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime


class PositionPnL(Record):
    """reqPnLSingle for one held contract."""

    schema_name: ClassVar[str] = "account_state.PositionPnL"

    symbol: str
    con_id: int
    position: float
    daily_pnl: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    market_value: float | None = None


class AccountState(Record):
    """The account's values and P&L as IB reports them."""

    schema_name: ClassVar[str] = "account_state"

    account: str
    base_currency: str
    net_liquidation: float
    buying_power: float
    available_funds: float
    excess_liquidity: float
    gross_position_value: float
    daily_pnl: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    # Pydantic copies a mutable default per instance; the Avro default is [] and the parity test compares them.
    positions: list[PositionPnL] = []
    time: UtcDatetime


TOPIC = TopicSpec(
    name="account.v1",
    record=AccountState,
    key=lambda account_state: account_state.account,
    partitions=1,
    retention_ms=365 * DAY_MS,
    doc="The account's values and P&L from IB, after every change IB reports.",
)

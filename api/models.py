"""Request and response bodies. Contract records (Plan, OrderIntent, RiskDecision, …) are reused as they are, so
the API shows exactly what the topics carry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ibstream.contracts import AccountState, Execution, OrderEvent, OrderIntent, Plan, RiskDecision, RoutedOrder
from ibstream.contracts.enums import (
    ApprovalMode,
    ControlCommandKind,
    OrderLeg,
    OrderStatus,
    OrderType,
    RunState,
    Side,
    SignalStatus,
    TradingState,
)

#: Ids are uuids in practice; the pattern only keeps control characters and SQL-looking junk out of logs.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
SYMBOL_PATTERN = r"^[A-Z0-9 .-]{1,12}$"
#: A control target: inner spaces as IB spells some symbols ("BRK B"), never surrounding ones (every reader must
#: read the same target: risk once kept " AAPL" as given while execution stripped it).
CONTROL_SYMBOL_PATTERN = r"[A-Z0-9.-](?:[A-Z0-9 .-]{0,10}[A-Z0-9.-])?"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ---


class TriggerRunRequest(_Body):
    """Ask orchestration to open a run for a signal (a ``trigger_run`` command)."""

    signal_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(default="manual trigger", min_length=1, max_length=500)


class DecisionRequest(_Body):
    """Approve or reject a run; the reason is recorded on the command."""

    reason: str = Field(min_length=1, max_length=500)


class KillSwitchRequest(_Body):
    """Turn the kill switch on or off, globally or for one symbol."""

    state: Literal["on", "off"]
    reason: str = Field(min_length=1, max_length=500)
    target: str = Field(
        default="global", description='"global" or one symbol', pattern=rf"^(global|{CONTROL_SYMBOL_PATTERN})$"
    )


class StrategySwitchRequest(_Body):
    """Switch a strategy instance on or off; why is required (it is the audit record)."""

    reason: str = Field(min_length=1, max_length=500)


class TradingStateRequest(_Body):
    """Set the trading state of the account or one symbol (a ``trading_state`` command)."""

    scope: str = Field(
        description='"account" or one symbol of the configured universe',
        pattern=rf"^(account|{CONTROL_SYMBOL_PATTERN})$",
    )
    state: TradingState = Field(description="active; reducing (only position-reducing intents); halted (none)")
    reason: str = Field(min_length=1, max_length=500)


# --- responses ---


class CommandAccepted(BaseModel):
    """A command Kafka acknowledged: it is durably on ``control.v1``."""

    command_id: str
    command: ControlCommandKind
    target: str
    actor: str
    reason: str
    issued_time: datetime
    topic: str
    partition: int
    offset: int


class SignalSummary(BaseModel):
    """A signal and its current lifecycle status (the latest transition; ``new`` before any)."""

    signal_id: str
    symbol: str
    strategy: str
    side: Side
    confidence: float
    entry: float
    stop: float
    take_profit: float
    bar_start: datetime
    created_time: datetime
    expiry_time: datetime
    status: SignalStatus


class SignalPage(BaseModel):
    """One page of signals, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[SignalSummary]
    next_cursor: str | None


class Transition(BaseModel):
    """One lifecycle change of a signal."""

    transition_id: str
    from_status: SignalStatus | None
    to_status: SignalStatus
    reason: str
    run_id: str | None
    order_id: str | None
    time: datetime


class Fill(BaseModel):
    """One execution, reduced to what an outcome needs."""

    order_id: str
    side: Side
    quantity: float
    price: float
    commission: float | None


class SignalOutcome(BaseModel):
    """What came of a signal, by the signal-outcomes audit's definitions (entries on the signal's side, exits on
    the other; pnl and r only once closed)."""

    order_ids: list[str]
    traded: bool
    closed: bool
    entry_quantity: float
    entry_price: float | None
    exit_quantity: float
    exit_price: float | None
    commission: float
    pnl: float | None
    r: float | None


class TradeReview(BaseModel):
    """Post-trade review of one closed trade (one bracket order), from the warehouse view ``trade_reviews``; every
    figure is defined in ``ibstream/warehouse/sql/trade_reviews.sql`` (slippage > 0 means worse than the plan)."""

    order_id: str
    symbol: str
    side: Side
    planned_quantity: float
    planned_entry: float | None
    planned_stop: float | None
    planned_target: float | None
    planned_r: float | None
    entry_quantity: float
    entry_price: float
    entry_time: datetime
    exit_quantity: float
    exit_price: float
    exit_time: datetime
    exit_reason: str
    entry_slippage: float | None
    entry_slippage_bps: float | None
    exit_slippage: float | None
    exit_slippage_bps: float | None
    gross_pnl: float
    commission: float
    net_pnl: float
    r_multiple: float | None
    net_r_multiple: float | None
    holding_seconds: float
    outcome: str


class SignalDetail(SignalSummary):
    """A signal with its features, lifecycle transitions, runs, outcome and the post-trade review of each closed
    trade it led to."""

    features: dict[str, float]
    transitions: list[Transition]
    run_ids: list[str]
    outcome: SignalOutcome
    review: list[TradeReview] = []


class RunSummary(BaseModel):
    """An orchestration run in its latest state."""

    run_id: str
    signal_id: str
    symbol: str
    state: RunState
    approval_mode: ApprovalMode | None
    attempt: int
    actor: str
    started_time: datetime
    updated_time: datetime


class RunPage(BaseModel):
    """One page of runs, most recently started first."""

    items: list[RunSummary]
    next_cursor: str | None


class RunStateChange(BaseModel):
    """One recorded state change of a run."""

    state: RunState
    previous_state: RunState | None
    reason: str | None
    actor: str
    attempt: int
    time: datetime


class RunDetail(RunSummary):
    """A run with its state history, latest plan, failures and the orders it produced."""

    history: list[RunStateChange]
    plan: Plan | None
    failures: list[RunStateChange]
    order_ids: list[str]


class OrderSummary(BaseModel):
    """An order intent with its risk verdict and latest broker status (parent leg)."""

    order_id: str
    run_id: str | None
    signal_id: str | None
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    limit_price: float | None
    created_time: datetime
    risk: Literal["approved", "rejected", "pending"]
    status: OrderStatus | None
    filled_quantity: float
    avg_fill_price: float | None


class OrderPage(BaseModel):
    """One page of orders, newest first."""

    items: list[OrderSummary]
    next_cursor: str | None


class TrailStep(BaseModel):
    """One row of the order-trail audit (``ibstream audit order-trail``), unchanged."""

    time: datetime
    stage: str
    id: str
    status: str
    detail: str


class Reconciliation(BaseModel):
    """Reconciliation state: the broker's latest parent-leg status flag and the unreconciled-orders audit's
    issues for this order (empty when it reconciles)."""

    status: str | None
    issues: list[str]


class OrderDetail(BaseModel):
    """Everything recorded about one order: intent, risk decision with each check, routing, broker events, fills,
    reconciliation and the audit trail."""

    order: OrderSummary
    intent: OrderIntent
    risk_decision: RiskDecision | None
    routed: RoutedOrder | None
    events: list[OrderEvent]
    fills: list[Execution]
    reconciliation: Reconciliation
    trail: list[TrailStep]


class Health(BaseModel):
    """Liveness (``/health``) or readiness (``/ready``) with per-dependency checks."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, bool]


class AccountView(BaseModel):
    """The account's newest values and P&L from IB (``account.v1``), and how old they are: execution republishes
    at least every ``execution.account_heartbeat_seconds`` while connected, so an age well past that means stale."""

    state: AccountState
    age_seconds: float = Field(description="seconds between the state's time (when IB's values were read) and now")


class ProtectiveOrder(BaseModel):
    """A working stop-loss or take-profit leg of an entry that has filled."""

    order_id: str
    leg: OrderLeg
    status: OrderStatus
    ib_order_id: int | None
    price: float | None = Field(description="the leg's trigger or limit price from the order's terms")
    remaining_quantity: float | None


class PositionView(BaseModel):
    """One symbol's position (newest ``positions.v1`` record) with its mark, P&L and protective orders."""

    account: str
    symbol: str
    quantity: float
    avg_cost: float
    position_time: datetime
    market_price: float | None = Field(
        description="IB's (reqPnLSingle market value ÷ position) when the newest account.v1 holds the same position, "
        "else the newest quote's last (mid without one); null without either"
    )
    mark_time: datetime | None
    mark_source: Literal["ib", "quotes"] | None
    market_value: float | None
    unrealized_pnl: float | None = Field(
        description="market value less the position's cost (IB's own when marked by IB)"
    )
    daily_pnl: float | None = Field(
        description="IB's P&L of the position today (reqPnLSingle); null unless marked by IB"
    )
    realized_pnl: float | None = Field(description="IB's realized P&L summed over the symbol's recorded executions")
    protective_orders: list[ProtectiveOrder]


class PositionList(BaseModel):
    """Every open position (with ``include_flat``: flat ones too), by account and symbol."""

    items: list[PositionView]


# --- strategies ---


class SignalCounts(BaseModel):
    """How many signals an instance emitted (distinct ids), and its newest."""

    total: int = 0
    buy: int = 0
    sell: int = 0
    last_signal_time: datetime | None = None


class StrategyView(BaseModel):
    """One configured strategy instance."""

    name: str = Field(description="the instance name signals carry as their strategy")
    strategy: str = Field(description="the strategy (entry-point name)")
    version: str
    description: str
    params: dict[str, Any]
    timeframes: list[str]
    warmup: int
    symbols: list[str] = Field(description="the symbols it trades; empty: every symbol")
    configured_enabled: bool = Field(description="enabled in the strategies file")
    enabled: bool = Field(description="switched on: the newest enable/disable command, else the file")
    failure: str | None = Field(description="why a signals worker disabled it (a firing strategy_failed alert)")
    switched_by: str | None = None
    switch_reason: str | None = None
    switched_time: datetime | None = None
    signals: SignalCounts
    scores: dict[str, float] | None = Field(
        default=None,
        description="headline scores of its signals on signals.outcomes.v1 (scored, hit_rate, expectancy_r, "
        "profit_factor; a figure it has none of is left out); null before its first outcome",
    )


class StrategyList(BaseModel):
    items: list[StrategyView]

"""The backtest loop: recorded bars through the pipeline's own logic, in one process, in bar time.

Per bar start (every symbol's bar of that start together):

1. the bars become the market (``market.BarMarket``) and the engine matches the working orders over the bar's five
   seconds (``broker.SimBroker``); each fill reaches the risk view and the trade's book, each parent fill completes
   its run (``ibstream.orchestration.lifecycle.on_order_event``), which frees the strategy's signal slot;
2. each bar is scored against the open signals (``ibstream.strategies.scoring.fold_bar``: the outcomes agent's
   fold) and folded into its symbol's signal state (``ibstream.strategies.lifecycle.fold_bar`` with the strategy
   runtime's evaluators: the signals agent's fold), which yields the bar's signals. Both states are held here and
   changed in place (the window as ``BarPoint``, no JSON round trip or copy per bar): the agents' pure folds copy
   their Faust-table state and run the same code;
3. a signal that opens a run (``opens_automatically``) is planned in-process (``ibstream.planning.plan_signal``,
   Agent0's rule, sized by the account's NetLiquidation), approved by the policy (``after_planning``), and its
   intent judged by the risk checks (``ibstream.risk.checks.decide``) against a ``RiskView`` fed with the engine's
   quotes, account, positions and executions; an approved order is placed at the bar's end.

Time is the bars' time throughout (a signal's ``created_time`` is its bar's end), so a backtest is repeatable:
the same bars and settings give the same signals, orders and fills. What differs from the live pipeline, by
design: approvals are the policy's (``--approve all`` approves every planned run, as an operator approving
everything would), and the signal slot is freed the moment the run ends rather than when the transition comes
back through Kafka.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from ibstream.alerting import AlertBook
from ibstream.config import Settings
from ibstream.contracts import AccountState, Bar, OrderIntent, Quote, Signal, SignalOutcome
from ibstream.contracts.enums import ApprovalMode, MarketDataSource, OrderLeg, RunState, Side
from ibstream.exceptions import IbstreamError
from ibstream.orchestration.lifecycle import (
    OrchestrationConfig,
    RunEntry,
    Step,
    after_planning,
    on_decision,
    on_order_event,
    opens_automatically,
)
from ibstream.orchestration.machine import ApprovalPolicy, conclude_planning, start_planning, trigger
from ibstream.planning import PlanLimits, plan_signal
from ibstream.risk.checks import decide, route
from ibstream.risk.view import RiskLimits, RiskView
from ibstream.sizing import SizingError
from ibstream.strategies import lifecycle, scoring
from ibstream.strategies.instances import StrategyInstance
from ibstream.strategies.runtime import StrategyRuntime
from tooling.backtest.broker import BrokerRecord, Fill, SimBroker
from tooling.backtest.market import BAR_SECONDS, BarMarket

Approve = Literal["all", "policy", "none"]
#: Equity is sampled at most this often (market seconds), and after every fill.
EQUITY_EVERY_SECONDS = 60


class BacktestError(IbstreamError):
    """A backtest could not run as asked (no bars, an instance on bars the backtest does not build)."""


@dataclass(frozen=True)
class BacktestConfig:
    """The settings the pipeline's deployables read, gathered for one process."""

    expiry_seconds: int
    orchestration: OrchestrationConfig
    entry_type: str
    risk_pct: float
    plan_limits: PlanLimits
    risk_limits: RiskLimits
    sizing: scoring.Sizing
    initial_cash: float

    @classmethod
    def from_settings(cls, settings: Settings, approve: Approve = "all", cash: float | None = None) -> BacktestConfig:
        """``approve``: ``all`` approves every planned run; ``policy`` only what the approval policy approves (a
        run it declines would wait for an operator: in a backtest it is not traded); ``none`` approves nothing
        (manual approval with nobody approving: signals and plans only, each signal holding its slot until it
        expires, as in a pipeline where no run is approved)."""
        orchestration = OrchestrationConfig.from_settings(settings)
        policy = ApprovalPolicy(0.0, math.inf) if approve == "all" else orchestration.policy
        mode = ApprovalMode.MANUAL if approve == "none" else ApprovalMode.POLICY
        orchestration = replace(orchestration, approval_mode=mode, policy=policy)
        equity = cash if cash is not None else settings.risk.account_equity
        return cls(
            expiry_seconds=settings.orchestration.signal_expiry_seconds,
            orchestration=orchestration,
            entry_type="LMT",  # what orchestration asks Agent0 for (the /v1/plan default)
            risk_pct=settings.risk.per_trade_pct,
            plan_limits=PlanLimits.from_settings(settings),
            risk_limits=RiskLimits.from_settings(settings),
            sizing=replace(scoring.Sizing.from_settings(settings), equity=equity),
            initial_cash=equity,
        )


@dataclass
class Trade:
    """One run's order: its entry fills and the exit fills of its bracket legs."""

    order_id: str
    strategy: str
    symbol: str
    side: Side
    stop_loss: float | None
    take_profit: float | None
    quantity: float = 0.0
    entry_price: float = 0.0
    entry_time: datetime | None = None
    exited: float = 0.0
    exit_price: float = 0.0
    exit_time: datetime | None = None
    exit_leg: str | None = None
    commission: float = 0.0

    def on_fill(self, fill: Fill) -> None:
        execution = fill.execution
        self.commission += execution.commission or 0.0
        if fill.leg is OrderLeg.PARENT:
            total = self.quantity + execution.quantity
            self.entry_price = (self.entry_price * self.quantity + execution.price * execution.quantity) / total
            self.quantity = total
            self.entry_time = self.entry_time or execution.exec_time
        else:
            total = self.exited + execution.quantity
            self.exit_price = (self.exit_price * self.exited + execution.price * execution.quantity) / total
            self.exited = total
            self.exit_time = execution.exec_time
            self.exit_leg = fill.leg.value

    @property
    def closed(self) -> bool:
        return self.quantity > 0 and self.exited >= self.quantity

    def pnl(self, mark: float | None = None) -> float:
        """Realized on the exited shares plus, with ``mark``, unrealized on the rest; after commissions."""
        direction = 1.0 if self.side is Side.BUY else -1.0
        realized = direction * (self.exit_price - self.entry_price) * self.exited
        held = self.quantity - self.exited
        unrealized = direction * (mark - self.entry_price) * held if mark is not None and held > 0 else 0.0
        return realized + unrealized - self.commission

    def r_multiple(self, mark: float | None = None) -> float | None:
        """P&L in units of the planned risk (entry to stop, times the shares)."""
        if self.stop_loss is None or self.quantity <= 0:
            return None
        risk = abs(self.entry_price - self.stop_loss) * self.quantity
        return self.pnl(mark) / risk if risk > 0 else None


@dataclass
class BacktestResult:
    """Everything the report shows."""

    bars: int = 0
    symbols: set[str] = field(default_factory=set)
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    signals: list[Signal] = field(default_factory=list)
    outcomes: list[SignalOutcome] = field(default_factory=list)
    trades: dict[str, Trade] = field(default_factory=dict)
    #: (time, NetLiquidation)
    equity: list[tuple[datetime, float]] = field(default_factory=list)
    #: How runs ended (or where they stopped), and why risk refused intents (check name → count).
    runs: dict[str, int] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    failed_instances: list[str] = field(default_factory=list)


def _count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


class Backtest:
    """One backtest: feed it bars in time order (``run``), read ``result``."""

    def __init__(self, instances: Sequence[StrategyInstance], config: BacktestConfig) -> None:
        other = sorted({i.name for i in instances if set(i.strategy.timeframes) != {lifecycle.BASE_TIMEFRAME}})
        if other:
            raise BacktestError(
                f"instances {', '.join(other)} read bars other than 5-second ones; the backtest replays 5-second "
                "bars only"
            )
        self.config = config
        self.runtime = StrategyRuntime(instances, AlertBook("backtest"))
        self.market = BarMarket()
        self.broker = SimBroker(self.market, self.market.last, config.initial_cash)
        self.view = RiskView()
        self.result = BacktestResult()
        self._window = self.runtime.window(lifecycle.BASE_TIMEFRAME)
        self._signal_states: dict[str, lifecycle.HeldState] = {}
        self._outcome_states: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, RunEntry] = {}  # order_id → the run
        self._evaluators: dict[str, dict[str, lifecycle.Strategy]] = {}
        self._fault_generation = self.runtime.fault_generation
        self._next_sample = 0.0

    def run(self, bars: Iterable[Bar], progress: Callable[[int], None] | None = None) -> BacktestResult:
        """Every bar, grouped by start (the bars must come in start order); ``progress`` gets the bars done."""
        group: list[Bar] = []
        for bar in bars:
            if group and bar.start != group[0].start:
                if bar.start < group[0].start:
                    raise BacktestError(f"bars out of order: {bar.symbol} {bar.start} after {group[0].start}")
                self.step(group)
                if progress is not None:
                    progress(self.result.bars)
                group = []
            group.append(bar)
        if group:
            self.step(group)
        if self.result.bars == 0:
            raise BacktestError("no bars in the window for these symbols")
        self._finish()
        return self.result

    def step(self, group: list[Bar]) -> None:
        """One bar start: match, then signals, then runs (see the module docstring)."""
        start = group[0].start
        end = start + timedelta(seconds=BAR_SECONDS)
        for bar in group:
            self.market.update(bar)
        self._apply(self.broker.advance(start.timestamp() + BAR_SECONDS - 1), end)
        for bar in group:
            self._on_bar(bar, end)
        result = self.result
        result.bars += len(group)
        result.first_bar = result.first_bar or start
        result.last_bar = start
        if end.timestamp() >= self._next_sample:
            self._sample(end)

    def _sample(self, at: datetime) -> None:
        self.result.equity.append((at, self.broker.net_liquidation()))
        self._next_sample = at.timestamp() + EQUITY_EVERY_SECONDS

    def _strategies(self, symbol: str) -> dict[str, lifecycle.Strategy]:
        """The runtime's evaluators for the symbol, rebuilt only when an instance failed (they do not change
        otherwise: a backtest has no control commands)."""
        if self.runtime.fault_generation != self._fault_generation:
            self._fault_generation, self._evaluators = self.runtime.fault_generation, {}
        evaluators = self._evaluators.get(symbol)
        if evaluators is None:
            evaluators = dict(self.runtime.evaluators(symbol, lifecycle.BASE_TIMEFRAME))
            self._evaluators[symbol] = evaluators
        return evaluators

    def _on_bar(self, bar: Bar, now: datetime) -> None:
        """Score the bar and fold it into the symbol's signal state, both held here and changed in place (the
        streams agents' folds without their copies: nothing else reads these states)."""
        symbol = bar.symbol
        outcome_state = self._outcome_states.get(symbol)
        if outcome_state is None:
            outcome_state = self._outcome_states[symbol] = scoring.held_state()
        held = self._signal_states.get(symbol)
        if held is None:
            held = self._signal_states[symbol] = lifecycle.HeldState(self._window)
        self.result.outcomes += scoring.fold_bar(outcome_state, bar, now)
        signals, _ = lifecycle.fold_bar(
            held, bar, now, self.config.expiry_seconds, self._strategies(symbol), with_transitions=False
        )
        for signal in signals:
            self.result.signals.append(signal)
            self.result.outcomes += scoring.fold_signal(outcome_state, signal, self.config.sizing, now)
            self._open_run(signal, now)

    def _open_run(self, signal: Signal, now: datetime) -> None:
        opens, _ = opens_automatically(signal, self.config.orchestration, now)
        if not opens:
            _count(self.result.runs, "not opened (confidence below the orchestration minimum)")
            return
        planning = start_planning(trigger(signal, reason="backtest"))
        # The account as risk will see it: nothing fills between planning and the decision, so one read serves both.
        account = self.broker.account_state(now)
        outcome: Any
        try:
            outcome = plan_signal(
                signal,
                self.config.entry_type,
                account.net_liquidation,
                self.config.risk_pct,
                self.config.plan_limits,
            )
        except SizingError as error:
            outcome = error
        step = after_planning(conclude_planning(planning, signal, outcome), signal, self.config.orchestration, now)
        self._apply_step(step)
        if step.intent is not None and step.entry is not None:
            self._decide(step.intent, step.entry, account, now)

    def _apply_step(self, step: Step) -> None:
        """Store the run, and give its transitions to the symbol's signal state (frees a slot when it ends)."""
        if step.entry is None:
            return
        self._runs[step.entry.order_id] = step.entry
        for record in step.transitions:
            held = self._signal_states.get(record.symbol)
            changed = None if held is None else lifecycle.on_transition({"active": held.active}, record)
            if held is not None and changed is not None:
                held.active = changed["active"]
        run = step.entry.run
        if run.state is not RunState.SUBMITTED:
            _count(self.result.runs, run.state.value)

    def _decide(self, intent: OrderIntent, entry: RunEntry, account: AccountState, now: datetime) -> None:
        symbol = intent.symbol
        mark = self.market.last(symbol)
        self.view.apply_quote(
            Quote(
                symbol=symbol,
                con_id=0,
                bid=mark,
                ask=mark,
                last=mark,
                event_time=now,
                ingest_time=now,
                source=MarketDataSource.REPLAY,
            )
        )
        self.view.apply_account_state(account)
        decision = decide(intent, self.view, self.config.risk_limits, now)
        self.view.apply_decision(decision, now)
        self._apply_step(on_decision(entry, decision, now))
        routed = route(intent, decision)
        if routed is None:
            for check in decision.checks:
                if not check.passed:
                    _count(self.result.rejections, check.name)
            return
        self.view.apply_approved_intent(intent)
        self.result.trades[intent.order_id] = Trade(
            intent.order_id, entry.signal.strategy, symbol, intent.side, intent.stop_loss, intent.take_profit
        )
        self._apply(self.broker.place(routed, now.timestamp()), now)

    def _apply(self, records: list[BrokerRecord], now: datetime) -> None:
        for record in records:
            if isinstance(record, Fill):
                self.view.apply_execution(record.execution)
                self.view.apply_position(record.position)
                trade = self.result.trades.get(record.execution.order_id)
                if trade is not None:
                    trade.on_fill(record)
                self._next_sample = 0.0  # equity after every fill
                continue
            self.view.apply_order_event(record)
            entry = self._runs.get(record.order_id)
            if entry is not None:
                self._apply_step(on_order_event(entry, record, now))

    def _finish(self) -> None:
        result = self.result
        if result.last_bar is not None:
            self._sample(result.last_bar + timedelta(seconds=BAR_SECONDS))
        result.symbols = set(self._signal_states)
        result.marks = {symbol: self.market.last(symbol) for symbol in result.symbols}
        result.failed_instances = sorted(self.runtime.faulted())

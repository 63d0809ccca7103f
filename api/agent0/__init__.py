"""Agent0: turns a signal into a sized, bracketed plan (``POST /v1/plan``) and an approved plan into an order
intent on Kafka (``POST /v1/execute``, at most once per plan).

Deterministic: the same signal and sizing policy give the same ``plan_id`` and plan; the intent's ``order_id`` is
``uuid5(run_id)`` with ``run_id = uuid5(signal_id)``, the ids orchestration uses, so the two paths to an order
cannot make two orders. Plans and executions live in SQLite (``agent0_db``): a restart keeps "at most once".

Run: ``ibstream run agent0`` (host/port from settings).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ibstream import ids
from ibstream.config import LOG_LEVELS, Settings, load_settings
from ibstream.contracts import OrderIntent, Plan, order_intents, utc_now
from ibstream.contracts.enums import OrderType, Side
from ibstream.exceptions import IbstreamError
from ibstream.sizing import SizingError, size_by_risk
from ibstream.telemetry import consume_span, meter, prometheus_exposition

_plans = meter("api.agent0").create_counter(
    "ibstream_agent0_plans", description="Plan requests Agent0 answered, by outcome"
)

log = logging.getLogger(__name__)

API_VERSION = "v1"


class SignalIn(BaseModel):
    """The signal to plan (the fields of ``signals.v1`` a plan needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    signal_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    strategy: str
    side: Side
    confidence: float = Field(ge=0, le=1)
    entry: float = Field(gt=0)
    stop: float = Field(gt=0)
    take_profit: float = Field(gt=0)
    expiry_time: datetime | None = None


class PlanRequestV1(BaseModel):
    """``POST /v1/plan``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: SignalIn
    entry_type: Literal["LMT", "MKT"] = "LMT"


class PlanResponseV1(BaseModel):
    """A plan for one signal; ``plan`` mirrors the ``Plan`` contract."""

    version: Literal["v1"] = "v1"
    plan_id: str
    run_id: str
    signal_id: str
    symbol: str
    plan: Plan


class ExecuteRequestV1(BaseModel):
    """``POST /v1/execute``: the approval of one plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = Field(min_length=1)
    approved: bool
    approved_by: str = Field(min_length=1)


class ExecuteResponseV1(BaseModel):
    version: Literal["v1"] = "v1"
    plan_id: str
    order_id: str
    intent: OrderIntent


class ErrorV1(BaseModel):
    """Every error body: a machine-readable code and a message."""

    version: Literal["v1"] = "v1"
    code: Literal["bad_request", "unknown_plan", "already_executed", "not_approved", "dependency_down"]
    message: str


@dataclass(frozen=True)
class PlanLimits:
    """Hard risk limits the plan is made to respect, so a sound signal is not planned into a certain rejection."""

    min_stop_pct: float | None = None
    max_order_notional: float | None = None
    max_position: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanLimits:
        return cls(settings.risk.min_stop_pct, settings.risk.max_order_notional, settings.risk.max_position)


def make_plan(
    signal: SignalIn, entry_type: str, equity: float, risk_pct: float, limits: PlanLimits | None = None
) -> PlanResponseV1:
    """The plan for a signal: side from the signal, quantity sized by account risk, bracket from its stop/target.

    With ``limits``, a stop closer than the minimum stop distance is widened to it (keeping the signal's
    reward/risk ratio for the take-profit), and the size is capped by the order-notional and position limits.
    """
    buy = signal.side is Side.BUY
    if (signal.stop >= signal.entry) if buy else (signal.stop <= signal.entry):
        raise SizingError(f"stop {signal.stop} is on the wrong side of entry {signal.entry} for a {signal.side}")
    if (signal.take_profit <= signal.entry) if buy else (signal.take_profit >= signal.entry):
        raise SizingError(f"take profit {signal.take_profit} is on the wrong side of entry {signal.entry}")
    limits = limits or PlanLimits()
    stop, take_profit = signal.stop, signal.take_profit
    if limits.min_stop_pct is not None:
        floor_distance = signal.entry * limits.min_stop_pct / 100 * 1.05  # 5 % margin over the limit
        distance = abs(signal.entry - stop)
        if distance < floor_distance:
            ratio = abs(take_profit - signal.entry) / distance
            direction = 1 if buy else -1
            stop = round(signal.entry - direction * floor_distance, 2)
            take_profit = round(signal.entry + direction * floor_distance * ratio, 2)
    quantity = size_by_risk(signal.entry, stop, equity, risk_pct, max_notional=limits.max_order_notional)
    if limits.max_position is not None:
        quantity = min(quantity, int(limits.max_position))
    signal = signal.model_copy(update={"stop": stop, "take_profit": take_profit})
    plan_id = ids.plan_id(signal.signal_id, equity, risk_pct)
    order_type = OrderType.LMT if entry_type == "LMT" else OrderType.MKT
    risk = quantity * abs(signal.entry - signal.stop)
    reward = quantity * abs(signal.take_profit - signal.entry)
    plan = Plan(
        plan_id=plan_id,
        side=signal.side,
        quantity=float(quantity),
        order_type=order_type,
        limit_price=signal.entry if order_type is OrderType.LMT else None,
        stop_loss=signal.stop,
        take_profit=signal.take_profit,
        rationale=(
            f"{signal.strategy} {signal.side.value} {signal.symbol} at confidence {signal.confidence:.2f}: "
            f"{quantity} shares risk {risk:.2f} ({risk_pct:g}% of {equity:,.0f}) for {reward:.2f} "
            f"(reward/risk {reward / risk:.2f})"
        ),
    )
    return PlanResponseV1(
        plan_id=plan_id,
        run_id=ids.run_id(signal.signal_id),
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        plan=plan,
    )


class PlanStore:
    """Plans and executions in SQLite. ``claim`` is atomic (primary key), so concurrent executes of one plan
    cannot both win."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS plans (plan_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS executions (plan_id TEXT PRIMARY KEY, order_id TEXT)")

    def save(self, response: PlanResponseV1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO plans VALUES (?, ?)", (response.plan_id, response.model_dump_json())
            )

    def get(self, plan_id: str) -> PlanResponseV1 | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
        return None if row is None else PlanResponseV1.model_validate_json(row[0])

    def claim(self, plan_id: str, order_id: str) -> bool:
        """True if this call is the plan's one execution."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO executions VALUES (?, ?)", (plan_id, order_id))
            except sqlite3.IntegrityError:
                return False
        return True

    def release(self, plan_id: str) -> None:
        """Undo a claim whose intent could not be published, so the plan can be executed again."""
        with self._lock:
            self._db.execute("DELETE FROM executions WHERE plan_id = ?", (plan_id,))


#: Publishes an intent and returns once the broker acknowledged it; raises on failure.
Publisher = Callable[[OrderIntent], None]


class DependencyDownError(IbstreamError):
    """Kafka (or another dependency) did not take the intent."""


def kafka_publisher(settings: Settings, timeout: float = 10.0) -> Publisher:
    """Publish intents with the core's producer, waiting for the acknowledgement."""
    from ibstream.contracts.serde import Codec, ConfluentCodec, SchemaStore, SingleObjectCodec
    from ibstream.kafka.clients import create_producer
    from ibstream.kafka.records import RecordProducer

    codec: Codec
    if settings.registry.url is None:
        codec = SingleObjectCodec(SchemaStore())
    else:
        from ibstream.registry import SchemaRegistry

        codec = ConfluentCodec(SchemaStore(), SchemaRegistry.from_settings(settings))
    producer = RecordProducer(create_producer(settings), codec, settings.kafka.topic_prefix)

    def publish(intent: OrderIntent) -> None:
        failed_before = producer.failed
        producer.send(order_intents.TOPIC, intent)
        if producer.flush(timeout) > 0 or producer.failed > failed_before:
            raise DependencyDownError(f"Kafka did not acknowledge the intent: {producer.last_error or 'timeout'}")

    return publish


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"version": "v1", "code": code, "message": message})


def create_app(settings: Settings, store: PlanStore, publish: Publisher) -> FastAPI:
    """The Agent0 HTTP app."""
    app = FastAPI(title="ibstream Agent0", version="1", responses={400: {"model": ErrorV1}, 503: {"model": ErrorV1}})

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, "bad_request", str(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code, message = error.detail if isinstance(error.detail, tuple) else ("bad_request", str(error.detail))
        return _error(error.status_code, code, message)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = prometheus_exposition()
        return Response(content=body, media_type=content_type)

    @app.post("/v1/plan", response_model=PlanResponseV1)
    def plan(request: PlanRequestV1, http: Request) -> PlanResponseV1:
        # Continues the caller's trace (orchestration sends W3C trace context), so a run's trace shows its plan.
        with consume_span("agent0.plan", list(http.headers.items()), signal_id=request.signal.signal_id):
            try:
                response = make_plan(
                    request.signal,
                    request.entry_type,
                    settings.risk.account_equity,
                    settings.risk.per_trade_pct,
                    PlanLimits.from_settings(settings),
                )
            except SizingError as error:
                _plans.add(1, {"outcome": "bad_request"})
                raise HTTPException(400, ("bad_request", str(error))) from None
            store.save(response)
            _plans.add(1, {"outcome": "planned"})
        log.info(
            "plan",
            extra={
                "signal_id": response.signal_id,
                "run_id": response.run_id,
                "symbol": response.symbol,
                "plan_id": response.plan_id,
            },
        )
        return response

    @app.post(
        "/v1/execute", response_model=ExecuteResponseV1, responses={404: {"model": ErrorV1}, 409: {"model": ErrorV1}}
    )
    def execute(request: ExecuteRequestV1) -> ExecuteResponseV1:
        planned = store.get(request.plan_id)
        if planned is None:
            raise HTTPException(404, ("unknown_plan", f"no plan {request.plan_id}"))
        if not request.approved:
            raise HTTPException(400, ("not_approved", "execute needs approved=true"))
        order_id = ids.order_id(planned.run_id)
        if not store.claim(request.plan_id, order_id):
            raise HTTPException(409, ("already_executed", f"plan {request.plan_id} already executed as {order_id}"))
        p = planned.plan
        intent = OrderIntent(
            order_id=order_id,
            run_id=planned.run_id,
            signal_id=planned.signal_id,
            symbol=planned.symbol,
            side=p.side,
            quantity=p.quantity,
            order_type=p.order_type,
            limit_price=p.limit_price,
            stop_price=p.stop_price,
            stop_loss=p.stop_loss,
            take_profit=p.take_profit,
            requested_by=f"agent0:{request.approved_by}",
            created_time=utc_now(),
        )
        try:
            publish(intent)
        except Exception as error:
            store.release(request.plan_id)  # nothing left: the plan may be executed again (same order_id)
            raise HTTPException(503, ("dependency_down", str(error))) from None
        log.info(
            "plan executed",
            extra={
                "order_id": order_id,
                "run_id": planned.run_id,
                "symbol": planned.symbol,
                "signal_id": planned.signal_id,
            },
        )
        return ExecuteResponseV1(plan_id=request.plan_id, order_id=order_id, intent=intent)

    return app


def main(argv: list[str]) -> int:
    """Load settings, build the app (SQLite store, Kafka publisher), serve with uvicorn until stopped."""
    import uvicorn

    from ibstream.telemetry import configure

    parser = argparse.ArgumentParser(
        prog="ibstream run agent0",
        description="Turns a signal into a sized order plan (entry, stop, target, quantity from the risk budget) "
        "and sends an approved plan on as an order, at most once.",
    )
    parser.add_argument("--host", default=None, help="bind address (IBSTREAM_AGENT0_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (IBSTREAM_AGENT0_PORT)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure("agent0", args.log_level or settings.log_level)
    store = PlanStore(settings.agent0_db_path)
    app = create_app(settings, store, kafka_publisher(settings))
    uvicorn.run(app, host=args.host or settings.agent0.host, port=args.port or settings.agent0.port, log_config=None)
    return 0

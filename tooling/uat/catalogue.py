"""The UAT scenario catalogue: every scenario, the session that runs it, and its pass criteria in words.

Sessions group scenarios that can share one running pipeline:
* ``main``  — manual approval at 600x from 09:15 (ibsim open around the clock so bars flow before the open):
  the full path to the post-trade review, market open, an IB disconnect and a gateway restart with backfill.
* ``close`` — policy approval on a delayed-only feed (market data type 3) across the 16:00 close.
* ``desk``  — tight risk limits on a dedicated Kafka broker at 30x; the harness places crafted orders like a
  desk would (no run approvals), each breaching one limit, plus fills, partial fills, a broker reject, a stale
  feed, the kill switch engaged and released, a halted trading state, and finally a Kafka broker restart.
"""

from __future__ import annotations

from tooling.uat.model import Scenario

#: Every risk check of the gate (``ibstream.risk.CHECKS``), each breached once in the desk session.
RISK_CHECKS = (
    "kill_switch",
    "trading_state",
    "stale_quote",
    "price_band",
    "max_position",
    "max_gross_exposure",
    "max_order_notional",
    "stop_distance",
    "risk_per_trade",
    "order_rate",
    "daily_loss",
    "conflicting_position",
    "buying_power",
)
#: Checks of the gate the desk session does not breach, and why.
RISK_CHECKS_NOT_DRILLED = {
    "account_state": "needs execution's account.v1 records to stop while the pipeline runs (stopping execution); "
    "drilled by tests/integration/test_risk_account.py instead",
}

_RISK_BREACH = {
    "kill_switch": "an order placed while the kill switch is on",
    "trading_state": "an order for a symbol whose trading state is halted",
    "stale_quote": "an order for a symbol whose feed is stalled",
    "price_band": "a limit order 5% away from the quote (band 1%)",
    "max_position": "an order taking the position past 50 shares",
    "max_gross_exposure": "an order taking gross exposure past 16,000 with 5,700 already held",
    "max_order_notional": "an order of more than 12,000 notional",
    "stop_distance": "an order with a stop 0.05% from entry (minimum 0.2%)",
    "risk_per_trade": "an order risking more than 0.01% of equity (ibsim's 1,000,000) at its stop",
    "order_rate": "six orders within a market minute (limit 5)",
    "daily_loss": "an order after a loss past the 1 000 daily limit (2 000 booked at ibsim, read from IB's P&L)",
    "buying_power": "an order after a withdrawal at ibsim leaves no buying power (IB's BuyingPower from account.v1)",
    "conflicting_position": "a sell of 35 shares against 30 held (reduce_opposite lets reductions through, no flip)",
}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "flow.manual",
        "main",
        "ingest → signal → orchestrate → manual approval → order → fill → review",
        (
            "live quotes and bars in the warehouse; signals recorded",
            "≥ 1 run approved manually by the UAT trader (approval_mode=manual, actor=demo-trader)",
            "every manually approved run that reached risk has a risk decision; ≥ 1 order of them filled",
            "≥ 1 closed trade of a manual run in the trade_reviews view",
        ),
    ),
    Scenario(
        "review.post_trade",
        "main",
        "post-trade review agrees with the broker and the API",
        (
            "each reviewed trade's entry/exit quantity and VWAP equal ibsim's own executions for that order",
            "every review has entry_time ≤ exit_time, an exit reason and an R multiple when a plan stop exists",
            "GET /v1/signals/{id} returns a non-empty `review` for a signal with a closed trade",
        ),
    ),
    Scenario(
        "market.open",
        "main",
        "no signals or orders before the 09:30 open",
        (
            "live bars exist before 09:30 (the feed ran, so the gate was exercised)",
            "no signal for a bar before 09:30, no fill before 09:30; signals after the open",
        ),
    ),
    Scenario(
        "ib.disconnect",
        "main",
        "IB connection dropped mid-session: reconnect, resubscribe, backfill",
        (
            "≥ 1 gap per symbol detected after the 10:00 drop, every one backfilled (none unrecoverable)",
            "backfill bars recorded; an ib_disconnected alert raised",
        ),
    ),
    Scenario(
        "gateway.restart",
        "main",
        "gateway restart with nextValidId rolled back, mid-session",
        (
            "≥ 1 gap per symbol after the 10:45 restart, every one backfilled",
            "no duplicate IB order id at ibsim and no duplicate-id rejection (code 103)",
            "every order IB acknowledged is at ibsim as one bracket, ibsim holds none we did not record; "
            "≥ 1 new order after the restart",
        ),
    ),
    Scenario(
        "flow.policy",
        "close",
        "ingest → signal → orchestrate → policy approval → order → fill",
        (
            "≥ 1 run approved by the policy (approval_mode=policy)",
            "≥ 1 order of a policy-approved run filled",
        ),
        places_orders=True,
    ),
    Scenario(
        "data.delayed",
        "close",
        "delayed data (market_data_type=3, no live entitlement)",
        (
            "quotes and bars recorded with source=delayed, none with source=live",
            "figure only: the quote ages the risk gate measured on the delayed feed",
        ),
        places_orders=False,
    ),
    Scenario(
        "market.close",
        "close",
        "no signals or new orders after the 16:00 close",
        (
            "ibsim's market kept producing bars after 16:00 (ground truth), so the gate was exercised",
            "no bar recorded after 16:00 (the producer asks IB for regular-hours bars only)",
            "no signal for a bar at or after 16:00; every order at ibsim belongs to a signal before the close",
        ),
        places_orders=False,
    ),
    Scenario(
        "order.fill",
        "desk",
        "an order fills completely",
        ("the resume order after the kill switch: risk-approved, one execution, final status filled",),
    ),
    Scenario(
        "order.partial_fill",
        "desk",
        "an order fills in parts (ibsim --partial-fill 10)",
        ("the 30-share order: ≥ 3 executions, a partially_filled event before filled, 30 shares in total",),
    ),
    Scenario(
        "order.broker_reject",
        "desk",
        "the broker rejects an order risk approved",
        ("risk approved it; the parent's final status is rejected with IB's code 201",),
    ),
    Scenario(
        "feed.stale",
        "desk",
        "a stalled symbol raises a stale-feed alert and blocks orders",
        (
            "a stale_feed alert for the stalled symbol (and it resolves after the stall ends)",
            "an order for it is rejected by the stale_quote check",
        ),
    ),
    *(
        Scenario(
            f"risk.{check}",
            "desk",
            f"risk limit {check} rejects a breach",
            (
                f"{_RISK_BREACH[check]} is rejected and `{check}` is among its failed checks",
                f"the risk-rejections audit lists `{check}`",
            ),
        )
        for check in RISK_CHECKS
    ),
    Scenario(
        "control.kill_switch",
        "desk",
        "kill switch engaged and released (rollback)",
        (
            "engaged: a new order is rejected by kill_switch and the resting order is cancelled at ibsim",
            "released: the next order is approved and filled",
        ),
    ),
    Scenario(
        "control.flatten",
        "desk",
        "flatten closes a position at market through risk and execution",
        (
            "POST /v1/control/flatten for QQQ (5 bought for the drill; the day's loss limit already hit): risk "
            "approves the flatten order and it fills",
            "ibsim's QQQ position is 0 and no QQQ order is working (the bracket's stop and target are cancelled)",
        ),
    ),
    Scenario(
        "risk.working_orders_count",
        "desk",
        "working orders count toward max position",
        (
            "an AAPL buy resting under the market is approved and works at ibsim (held + working = 45 of 50)",
            "a 10-share AAPL buy is then rejected by max_position (it would pass on the held position alone)",
        ),
    ),
    Scenario(
        "control.cancel_order",
        "desk",
        "a trader cancels one working order through the API",
        (
            "POST /v1/orders/{id}/cancel for the resting AAPL buy: the order ends cancelled in the order trail",
            "ibsim shows every leg of it Cancelled (the untriggered bracket goes with its parent)",
        ),
    ),
    Scenario(
        "control.reducing",
        "desk",
        "a symbol set to reducing takes only orders that reduce its position",
        (
            "with AAPL reducing, a buy adding to the position is rejected by trading_state",
            "a sell of 5 against the 30 held is approved (refused by trading_state if AAPL's stop closed it first)",
        ),
    ),
    Scenario(
        "kafka.broker_restart",
        "desk",
        "the Kafka broker restarts under the running pipeline",
        (
            "every deployable survives; bars produced after the restart reach the warehouse for every symbol",
            "an order placed after the restart gets a risk decision; no dead letters",
        ),
    ),
)

BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
SESSIONS = ("main", "close", "desk")

#: Against a real paper gateway (``--gateway``): no simulator, no faults, market time is the wall clock.
GATEWAY_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "gateway.readonly",
        "gateway",
        "a real paper gateway: market data in, nothing out unless allowed",
        (
            "quotes and bars recorded for every symbol (source live or delayed)",
            "without --allow-orders: no order routed to the gateway",
        ),
        places_orders=False,
        needs_sim=False,
    ),
    Scenario(
        "gateway.orders",
        "gateway",
        "a real paper gateway with --allow-orders: approved runs become orders",
        ("every manually approved run that reached risk has a decision; routed orders got broker events",),
        places_orders=True,
        needs_sim=False,
    ),
)

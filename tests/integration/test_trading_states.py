"""Trading states on the real broker, through a real risk worker: halted rejects new intents, reducing passes only
reducing ones, the states survive a restart of the worker, a replayed old kill_switch_off does not lift the kill
switch, and an undecodable control record halts its scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import (
    Alert,
    ControlCommand,
    Position,
    RiskDecision,
    alerts,
    control,
    order_intents,
    positions,
    quotes,
    risk_decisions,
    utc_now,
)
from ibstream.contracts.enums import ControlCommandKind, ExecutionSource, Side, TradingState
from ibstream.kafka.records import RecordProducer
from ibstream.trading_states import micros

from .streams_support import StreamsWorker, TopicReader, producer
from .test_streams_risk import fresh_quote, intent

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")


def command(
    kind: ControlCommandKind, target: str, sequence: int, state: TradingState | None = None, name: str = ""
) -> ControlCommand:
    return ControlCommand(
        command_id=name or f"{kind.value}-{target}-{sequence}",
        command=kind,
        target=target,
        reason="integration test",
        actor="ops",
        parameters={},
        issued_time=utc_now(),
        sequence=sequence,
        state=state,
    )


def long_position(symbol: str, quantity: float) -> Position:
    return Position(
        account="DU1",
        symbol=symbol,
        con_id=1,
        quantity=quantity,
        avg_cost=100.0,
        market_price=100.0,
        source=ExecutionSource.LIVE,
        time=utc_now(),
    )


def sell(order_id: str, symbol: str = "AAPL") -> object:
    return intent(order_id, symbol, side=Side.SELL, stop_loss=102.0, take_profit=96.0)


def failed(decision: RiskDecision) -> list[str]:
    return [check.name for check in decision.checks if not check.passed]


def send_intents(out: RecordProducer, *intents: object) -> None:
    for symbol in SYMBOLS:
        out.send(quotes.TOPIC, fresh_quote(symbol))
    for item in intents:
        out.send(order_intents.TOPIC, item)  # type: ignore[arg-type]  # OrderIntent
    out.flush()


def verdicts(
    decisions: TopicReader, expected: int, worker: StreamsWorker, timeout: float = 60.0
) -> dict[str, list[str]]:
    records = decisions.wait_for(expected, timeout)
    assert len(records) >= expected, worker.log()[-3000:]
    return {d.order_id: failed(d) for d in records}


def test_trading_states_hold_across_a_restart_stale_commands_and_unreadable_records(
    settings: Settings, tmp_path: Path
) -> None:
    decisions = TopicReader(settings, risk_decisions.TOPIC)
    alert_reader = TopicReader(settings, alerts.TOPIC)
    out = producer(settings)
    base = micros(utc_now())
    out.send(positions.TOPIC, long_position("AAPL", 100))
    out.send(control.TOPIC, command(ControlCommandKind.TRADING_STATE, "AAPL", base + 1, TradingState.REDUCING))
    out.send(control.TOPIC, command(ControlCommandKind.TRADING_STATE, "MSFT", base + 2, TradingState.HALTED))
    out.flush()
    # Netting refuses an intent against a position another strategy holds unless reduce_opposite lets a pure
    # reduction through: this test drills the trading states, whose reducing state is for exactly such reductions.
    env = {"risk_max_orders_per_minute": 1000, "risk_reduce_opposite": True}
    first = StreamsWorker(settings, tmp_path, "risk", name="first", **env).start()
    try:
        # The adding buy goes first: once the sell is approved it is in flight, and a buy after it would also be
        # refused as conflicting_position (opposite to a working entry), which is netting's job, not this test's.
        send_intents(out, intent("aapl-buy"), sell("aapl-sell"), intent("msft-buy", "MSFT"), intent("spy-buy", "SPY"))
        seen = verdicts(decisions, 4, first)
        assert seen["aapl-sell"] == [], seen  # reduces the long: passes while reducing
        assert seen["aapl-buy"] == ["trading_state"], seen  # adds: refused
        assert seen["msft-buy"] == ["trading_state"], seen  # halted
        assert seen["spy-buy"] == [], seen  # active
        fired = alert_reader.poll_until(lambda records: len(records) >= 2, 20)
        assert {(a.alert_id, a.severity.value) for a in fired if isinstance(a, Alert)} >= {
            ("trading_state:AAPL", "warning"),
            ("trading_state:MSFT", "critical"),
        }
    finally:
        first.stop()

    # The states are on the compacted control topic: a new worker reads them back before deciding.
    # Its next intents wait until it is ready: what carries over is this test's subject (see StreamsWorker.wait_ready).
    second = StreamsWorker(settings, tmp_path, "risk", name="second", **env).start()
    try:
        second.wait_ready()
        send_intents(out, intent("aapl-buy-2"), sell("aapl-sell-2"), intent("msft-buy-2", "MSFT"))
        seen = verdicts(decisions, 7, second)
        # The first worker's approved aapl-sell is still in flight (no execution acknowledges it here) and the new
        # worker has read it back: the adding buy is refused by its state and, opposite that sell, by netting.
        assert seen["aapl-buy-2"] == ["trading_state", "conflicting_position"] and seen["aapl-sell-2"] == [], seen
        assert seen["msft-buy-2"] == ["trading_state"], seen

        # An unreadable control record (a newer writer's command, corruption) halts the scope its key names.
        out.send_raw(settings.kafka.topic_prefix + control.TOPIC.name, b"trading_state:SPY", b"\x00not avro")
        out.flush()
        send_intents(out, intent("spy-buy-2", "SPY"), intent("qqq-buy", "QQQ"))
        seen = verdicts(decisions, 9, second)
        assert seen["spy-buy-2"] == ["trading_state"] and seen["qqq-buy"] == [], seen
        assert "undecodable control record halts trading" in second.log()

        # The kill switch, then an old kill_switch_off written after it (as a replay of an old window would):
        # the off is stale and ignored, everything stays halted.
        out.send(control.TOPIC, command(ControlCommandKind.KILL_SWITCH_ON, "global", base + 10))
        out.send(control.TOPIC, command(ControlCommandKind.KILL_SWITCH_OFF, "global", base + 3, name="old-off"))
        out.flush()
        send_intents(out, intent("qqq-after-replay", "QQQ"))
        seen = verdicts(decisions, 10, second)
        assert seen["qqq-after-replay"] == ["kill_switch"], seen
    finally:
        second.stop()

    # After a restart the stale off stays ignored (the compacted topic keeps it as the latest kill_switch record).
    third = StreamsWorker(settings, tmp_path, "risk", name="third", **env).start()
    try:
        third.wait_ready()
        out.send(control.TOPIC, command(ControlCommandKind.TRADING_STATE, "SPY", base + 20, TradingState.ACTIVE))
        out.flush()
        send_intents(out, intent("qqq-after-restart", "QQQ"))
        # A restarted worker rejoins its group and recovers its tables before deciding: once over 60 s in CI.
        seen = verdicts(decisions, 11, third, timeout=180.0)
        assert seen["qqq-after-restart"] == ["kill_switch"], seen
        # A newer release lifts it; the SPY halt was lifted by the newer SPY command.
        out.send(control.TOPIC, command(ControlCommandKind.KILL_SWITCH_OFF, "global", base + 30))
        out.flush()
        decisions.poll_until(lambda _: False, 1.0)
        send_intents(out, intent("spy-buy-3", "SPY"))
        seen = verdicts(decisions, 12, third)
        assert seen["spy-buy-3"] == [], seen
    finally:
        third.stop()
        decisions.close()
        alert_reader.close()

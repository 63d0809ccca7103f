"""Strategy switches from control.v1: trading_state commands on ``strategy:<instance>``, newest wins, fail closed."""

from __future__ import annotations

from ibstream.contracts import ControlCommand, control
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.strategies.switches import StrategySwitches, instance_of_key, instance_of_target, target_of
from ibstream.trading_states import TradingStates
from tests.unit.ibstream.test_trading_states import T0, command

ON, OFF = TradingState.ACTIVE, TradingState.HALTED


def switch(instance: str, sequence: int, state: TradingState | None) -> ControlCommand:
    return command(ControlCommandKind.TRADING_STATE, target_of(instance), sequence, state)


def test_newest_command_per_instance_wins_in_any_arrival_order() -> None:
    switches = StrategySwitches()
    assert switches.enabled("ma", configured=True) and not switches.enabled("ma", configured=False)
    assert switches.apply(switch("ma", 10, OFF)) is not None
    assert not switches.enabled("ma", configured=True)
    assert switches.apply(switch("ma", 5, ON)) is None  # older, read late: stale
    assert switches.stale == 1 and not switches.enabled("ma", True)
    on = switches.apply(switch("ma", 11, ON))
    assert on is not None and on.enabled and on.actor == "ops" and switches.enabled("ma", configured=False)
    assert switches.enabled("other", configured=True)  # one instance's switch is not another's


def test_reducing_or_no_state_disables_and_other_commands_are_ignored() -> None:
    switches = StrategySwitches()
    switches.apply(switch("a", 1, TradingState.REDUCING))
    switches.apply(switch("b", 1, None))
    assert not switches.enabled("a", True) and not switches.enabled("b", True)
    assert switches.apply(command(ControlCommandKind.TRADING_STATE, "AAPL", 2, ON)) is None
    assert switches.apply(command(ControlCommandKind.KILL_SWITCH_ON, target_of("c"), 2)) is None
    assert switches.enabled("c", True)


def test_an_unreadable_record_keyed_to_an_instance_disables_it_until_a_newer_command() -> None:
    switches = StrategySwitches()
    switches.apply(switch("ma", 10, ON))
    key = control.TOPIC.key(switch("ma", 0, ON)).encode()
    assert key == b"trading_state:strategy:ma" and instance_of_key(key) == "ma"
    off = switches.apply_undecodable(key, "bad bytes", T0)
    assert off is not None and not off.enabled and not switches.enabled("ma", True)
    assert switches.apply(switch("ma", 10, ON)) is None  # the command in force before it does not lift it
    assert switches.apply(switch("ma", 11, ON)) is not None
    assert switches.enabled("ma", False)
    assert switches.apply_undecodable(b"kill_switch:AAPL", "bad", T0) is None
    assert instance_of_target("strategy:") is None and instance_of_target("AAPL") is None


def test_trading_states_leave_strategy_switches_out_of_the_trading_scopes() -> None:
    states = TradingStates()
    assert states.apply(switch("ma", 10, OFF)) is None
    assert states.scopes == {} and states.for_symbol("AAPL") is None
    assert states.apply(command(ControlCommandKind.TRADING_STATE, "AAPL", 11, OFF)) is not None

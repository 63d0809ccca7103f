"""The trading-state fold: scopes, per-target sequences (stale commands ignored), fail-closed unreadable records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibstream.contracts import ControlCommand
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.trading_states import (
    ACCOUNT,
    UNDECODABLE,
    TradingStates,
    next_sequence,
    reduces_position,
    scope_of,
    scope_of_key,
    sequence_of,
)

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def command(
    kind: ControlCommandKind,
    target: str,
    sequence: int,
    state: TradingState | None = None,
    command_id: str | None = None,
) -> ControlCommand:
    return ControlCommand(
        command_id=command_id or f"c-{kind.value}-{target}-{sequence}",
        command=kind,
        target=target,
        reason="test",
        actor="ops",
        parameters={},
        issued_time=T0,
        sequence=sequence,
        state=state,
    )


def trading(target: str, state: TradingState, sequence: int) -> ControlCommand:
    return command(ControlCommandKind.TRADING_STATE, target, sequence, state)


@pytest.mark.parametrize(
    ("target", "scope"),
    [("account", ACCOUNT), ("global", ACCOUNT), ("*", ACCOUNT), ("ALL", ACCOUNT), ("DU123", ACCOUNT), ("AAPL", "AAPL")],
)
def test_targets_name_the_account_or_one_symbol(target: str, scope: str) -> None:
    assert scope_of(target, account="DU123") == scope


def test_a_target_with_surrounding_spaces_is_the_same_scope_for_every_reader() -> None:
    assert scope_of(" AAPL ") == "AAPL"
    assert scope_of(" global") == ACCOUNT


def test_the_latest_sequence_wins_whatever_order_records_arrive_in() -> None:
    halted, active = trading("AAPL", TradingState.HALTED, 20), trading("AAPL", TradingState.ACTIVE, 10)
    for order in ((halted, active), (active, halted)):
        states = TradingStates()
        for record in order:
            states.apply(record)
        resolved = states.for_symbol("AAPL")
        assert resolved is not None and resolved.state is TradingState.HALTED


def test_a_replayed_old_kill_switch_off_does_not_lift_a_newer_kill_switch() -> None:
    states = TradingStates()
    old_off = command(ControlCommandKind.KILL_SWITCH_OFF, "global", 5)
    states.apply(command(ControlCommandKind.KILL_SWITCH_ON, "global", 10))
    assert states.apply(old_off) is None
    assert states.stale == 1
    resolved = states.for_symbol("MSFT")
    assert resolved is not None and resolved.state is TradingState.HALTED and resolved.kill_switch


def test_a_newer_kill_switch_off_lifts_it() -> None:
    states = TradingStates()
    states.apply(command(ControlCommandKind.KILL_SWITCH_ON, "global", 10))
    changed = states.apply(command(ControlCommandKind.KILL_SWITCH_OFF, "global", 11))
    assert changed is not None and changed.state is TradingState.ACTIVE
    assert states.restricted() == {}


def test_the_same_command_twice_is_a_repeat_not_stale() -> None:
    states = TradingStates()
    record = trading("AAPL", TradingState.REDUCING, 10)
    assert states.apply(record) is not None
    assert states.apply(record) is None
    assert states.stale == 0


def test_kill_switch_and_trading_state_of_one_scope_resolve_together() -> None:
    states = TradingStates()
    states.apply(trading("account", TradingState.REDUCING, 10))
    states.apply(command(ControlCommandKind.KILL_SWITCH_ON, "global", 20))
    assert states.scopes[ACCOUNT].state is TradingState.HALTED
    states.apply(trading("account", TradingState.REDUCING, 30))
    assert states.scopes[ACCOUNT].state is TradingState.REDUCING


def test_a_symbol_trades_under_the_stricter_of_its_state_and_the_accounts() -> None:
    states = TradingStates()
    states.apply(trading("account", TradingState.REDUCING, 10))
    states.apply(trading("AAPL", TradingState.HALTED, 10))
    aapl, msft = states.for_symbol("AAPL"), states.for_symbol("MSFT")
    assert aapl is not None and aapl.state is TradingState.HALTED
    assert msft is not None and msft.state is TradingState.REDUCING
    assert states.for_symbol("SPY") is not None  # the account's reducing


def test_nothing_set_is_active() -> None:
    assert TradingStates().for_symbol("AAPL") is None


def test_records_without_a_sequence_are_ordered_by_issued_time() -> None:
    old = command(ControlCommandKind.KILL_SWITCH_ON, "global", 0)
    newer = old.model_copy(update={"issued_time": T0 + timedelta(seconds=1), "command_id": "later"})
    assert sequence_of(newer) > sequence_of(old)
    assert sequence_of(command(ControlCommandKind.KILL_SWITCH_ON, "global", 7)) == 7


def test_next_sequence_is_monotonic_even_when_the_clock_is_behind() -> None:
    ahead = next_sequence(T0 + timedelta(seconds=5), 0)
    assert next_sequence(T0, ahead) == ahead + 1
    assert next_sequence(T0 + timedelta(seconds=10), ahead) > ahead


def test_other_commands_do_not_touch_trading_states() -> None:
    states = TradingStates()
    assert states.apply(command(ControlCommandKind.APPROVE_RUN, "run-1", 10)) is None
    assert states.scopes == {}


def test_a_trading_state_command_without_a_state_halts() -> None:
    states = TradingStates()
    states.apply(trading("AAPL", None, 10))  # type: ignore[arg-type]  # a writer that left the state out
    assert states.scopes["AAPL"].state is TradingState.HALTED


@pytest.mark.parametrize(
    ("key", "scope"),
    [
        (b"kill_switch:AAPL", "AAPL"),
        (b"trading_state:account", ACCOUNT),
        (b"trading_state:DU1", ACCOUNT),
        (b"approve_run:r1", ACCOUNT),
        (b"garbage", ACCOUNT),
        (None, ACCOUNT),
        (b"kill_switch:", ACCOUNT),
    ],
)
def test_an_unreadable_record_halts_its_scope_or_the_whole_account(key: bytes | None, scope: str) -> None:
    assert scope_of_key(key, account="DU1") == scope


def test_an_unreadable_record_halts_until_a_newer_command_for_its_scope() -> None:
    states = TradingStates()
    states.apply(trading("AAPL", TradingState.ACTIVE, 10))
    halt = states.apply_undecodable(b"trading_state:AAPL", "unknown enum symbol", T0)
    assert halt.state is TradingState.HALTED and halt.source == UNDECODABLE
    # The command that was in force, read again (a replay), does not lift it; an older one neither.
    assert states.apply(trading("AAPL", TradingState.ACTIVE, 10)) is None
    assert states.apply(trading("AAPL", TradingState.ACTIVE, 9)) is None
    resolved = states.for_symbol("AAPL")
    assert resolved is not None and resolved.state is TradingState.HALTED
    lifted = states.apply(trading("AAPL", TradingState.ACTIVE, 11))
    assert lifted is not None and lifted.state is TradingState.ACTIVE


def test_an_unreadable_record_with_no_scope_halts_every_symbol() -> None:
    states = TradingStates()
    states.apply_undecodable(None, "bad magic byte", T0)
    for symbol in ("AAPL", "MSFT"):
        resolved = states.for_symbol(symbol)
        assert resolved is not None and resolved.state is TradingState.HALTED


@pytest.mark.parametrize(
    ("quantity", "position", "reduces"),
    [
        (-50, 100, True),
        (-100, 100, True),
        (-150, 100, False),  # flips the position
        (50, 100, False),  # adds
        (10, -20, True),
        (-10, -20, False),
        (10, 0, False),  # no position to reduce
    ],
)
def test_only_orders_against_the_position_and_no_larger_reduce_it(
    quantity: float, position: float, reduces: bool
) -> None:
    assert reduces_position(quantity, position) is reduces

"""The risk view feed's decoding step: an unreadable control record halts its scope (fail closed), an unreadable
record of another topic is only skipped, a tombstone commands nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ibstream.config import load_settings
from ibstream.contracts import control, quotes, risk_decisions, routed_orders
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.risk import RiskView
from streams.risk.feed import ViewFeed
from tests.unit.ibstream.test_risk import NOW, approved_decision, kill, routed
from tests.unit.streams.test_streams_agents import CODEC

SETTINGS = load_settings(kafka_topic_prefix="unit.")


@dataclass
class Message:
    """The part of a confluent_kafka.Message the feed reads."""

    _topic: str
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


CONTROL = "unit." + control.TOPIC.name


def feed() -> tuple[ViewFeed, RiskView]:
    view = RiskView()
    return ViewFeed(SETTINGS, CODEC, view), view


def test_an_unreadable_control_record_halts_the_scope_its_key_names() -> None:
    reader, view = feed()
    reader._apply(Message(CONTROL, b"kill_switch:AAPL", b"\x00not avro"))
    halted = view.trading_state_for("AAPL")
    assert halted is not None and halted.state is TradingState.HALTED
    assert view.trading_state_for("MSFT") is None
    assert reader.undecodable == 1


def test_an_unreadable_control_record_without_a_scope_halts_everything() -> None:
    reader, view = feed()
    reader._apply(Message(CONTROL, None, b"junk"))
    halted = view.trading_state_for("MSFT")
    assert halted is not None and halted.state is TradingState.HALTED


def test_a_readable_command_is_applied_and_a_tombstone_or_bad_quote_changes_nothing() -> None:
    reader, view = feed()
    command = kill(ControlCommandKind.KILL_SWITCH_ON, "AAPL")
    reader._apply(Message(CONTROL, b"kill_switch:AAPL", CODEC.encode(CONTROL, command)))
    assert view.kill_switch_for("AAPL") == command
    reader._apply(Message(CONTROL, b"kill_switch:MSFT", None))
    reader._apply(Message("unit." + quotes.TOPIC.name, b"MSFT", b"junk"))
    assert view.trading_state_for("MSFT") is None
    assert (reader.applied, reader.undecodable) == (1, 1)


def test_a_stale_command_is_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    reader, view = feed()
    on = kill(ControlCommandKind.KILL_SWITCH_ON, "global")
    old_off = kill(ControlCommandKind.KILL_SWITCH_OFF, "global").model_copy(
        update={"issued_time": on.issued_time - timedelta(minutes=5)}
    )
    reader._apply(Message(CONTROL, b"kill_switch:global", CODEC.encode(CONTROL, on)))
    with caplog.at_level(logging.WARNING, logger="streams.risk.feed"):
        reader._apply(Message(CONTROL, b"kill_switch:global", CODEC.encode(CONTROL, old_off)))
    assert view.kill_switch_for("AAPL") == on
    assert "stale control command ignored" in caplog.text


DECISIONS = "unit." + risk_decisions.TOPIC.name
ROUTED = "unit." + routed_orders.TOPIC.name


def test_a_decision_or_routed_order_the_view_holds_is_not_decoded_and_a_new_one_is_applied() -> None:
    reader, view = feed()
    mine = approved_decision(1, NOW)
    view.apply_decision(mine, market_time=NOW)
    view.apply_routed(routed("o-held"))
    # Known keys: the records are skipped before decoding (junk bytes would otherwise count as undecodable).
    reader._apply(Message(DECISIONS, mine.order_id.encode(), b"junk"))
    reader._apply(Message(ROUTED, b"o-held", b"junk"))
    assert (reader.known, reader.undecodable, reader.applied) == (2, 0, 0)
    # Another worker's decision and routed order are new to the view: decoded and applied.
    theirs = approved_decision(2, NOW)
    reader._apply(Message(DECISIONS, theirs.order_id.encode(), CODEC.encode(DECISIONS, theirs)))
    reader._apply(Message(ROUTED, b"o-new", CODEC.encode(ROUTED, routed("o-new"))))
    assert reader.applied == 2 and view.has_decision(theirs.order_id) and view.holds_order("o-new")
    assert view.recent_approvals(NOW + timedelta(seconds=1)) == 2


@dataclass
class Eof:
    def name(self) -> str:
        return "_PARTITION_EOF"


@dataclass
class EofMessage(Message):
    def error(self) -> Eof:
        return Eof()


@dataclass
class Record(Message):
    def error(self) -> None:
        return None


class PollingConsumer:
    """poll() hands the waiting records one by one; stops the feed when drained."""

    def __init__(self, reader: ViewFeed, waiting: list[Message]) -> None:
        self.reader, self.waiting = reader, waiting

    def poll(self, timeout: float) -> Message | None:
        if not self.waiting:
            self.reader._stop.set()
            return None
        return self.waiting.pop(0)

    def close(self) -> None:
        pass


def test_the_feed_applies_what_it_polls_and_is_ready_at_the_ends() -> None:
    reader, view = feed()
    reader._assigned, reader._pending_eof = True, {(CONTROL, 0)}
    commands = [kill(ControlCommandKind.KILL_SWITCH_ON, symbol) for symbol in ("AAPL", "MSFT", "NVDA")]
    waiting: list[Message] = [
        Record(CONTROL, f"kill_switch:{c.target}".encode(), CODEC.encode(CONTROL, c)) for c in commands
    ]
    reader._run(PollingConsumer(reader, [*waiting, EofMessage(CONTROL, None, None)]))
    assert reader.applied == 3 and view.ready.is_set()
    assert set(view.kill_switches_on()) == {"AAPL", "MSFT", "NVDA"}

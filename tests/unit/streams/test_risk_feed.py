"""The risk view feed's decoding step: an unreadable control record halts its scope (fail closed), an unreadable
record of another topic is only skipped, a tombstone commands nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ibstream.config import load_settings
from ibstream.contracts import control, quotes
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.risk import RiskView
from streams.risk.feed import ViewFeed
from tests.unit.ibstream.test_risk import kill
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

"""librdkafka's log lines in our logging: a broker that is briefly unreachable is DEBUG, a lasting outage a WARNING
a minute, anything else at librdkafka's own level."""

from __future__ import annotations

import logging

import pytest

from ibstream.kafka.clients import (
    UNREACHABLE_GRACE_SECONDS,
    UNREACHABLE_REPEAT_SECONDS,
    LibrdkafkaLog,
    bootstrap_listening,
)

REFUSED = (
    "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT)"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    return caplog


def test_connection_refused_while_a_broker_starts_is_debug_only(records: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = LibrdkafkaLog(clock=clock)
    for _ in range(20):  # librdkafka retries several times a second while the broker starts
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", REFUSED)
        clock.now += 0.5
    assert [record.levelno for record in records.records] == [logging.DEBUG] * 20
    # Structured: the text is the event, the client and facility are fields of the JSON line.
    assert records.records[0].getMessage() == REFUSED
    assert records.records[0].__dict__["kafka_client"] == "rdkafka#producer-1"
    assert records.records[0].__dict__["facility"] == "FAIL"


def test_a_lasting_outage_warns_once_a_minute() -> None:
    clock = FakeClock()
    log = LibrdkafkaLog(clock=clock)
    levels = []
    for _ in range(int((UNREACHABLE_GRACE_SECONDS + 2 * UNREACHABLE_REPEAT_SECONDS) / 5) + 1):
        levels.append(log.level_for(logging.ERROR, "FAIL", REFUSED))
        clock.now += 5
    warnings = [index * 5 for index, level in enumerate(levels) if level == logging.WARNING]
    assert warnings == [
        UNREACHABLE_GRACE_SECONDS,
        UNREACHABLE_GRACE_SECONDS + UNREACHABLE_REPEAT_SECONDS,
        UNREACHABLE_GRACE_SECONDS + 2 * UNREACHABLE_REPEAT_SECONDS,
    ]


def test_a_quiet_spell_ends_an_outage_so_a_later_blip_is_debug_again() -> None:
    clock = FakeClock()
    log = LibrdkafkaLog(clock=clock)
    for _ in range(8):
        log.level_for(logging.ERROR, "FAIL", REFUSED)
        clock.now += 5  # 35 s of failures: warned once
    clock.now += 120  # connected again: no failure for two minutes
    assert log.level_for(logging.ERROR, "FAIL", REFUSED) == logging.DEBUG


def test_other_brokers_and_other_trouble_keep_their_own_level() -> None:
    clock = FakeClock()
    log = LibrdkafkaLog(clock=clock)
    for _ in range(10):
        log.level_for(logging.ERROR, "FAIL", REFUSED)
        clock.now += 5
    other = REFUSED.replace("19092", "19093")
    assert log.level_for(logging.ERROR, "FAIL", other) == logging.DEBUG  # its own outage has just begun
    ssl = "127.0.0.1:9093/bootstrap: SSL handshake failed: certificate verify failed"
    assert log.level_for(logging.ERROR, "FAIL", ssl) == logging.ERROR
    assert log.level_for(logging.WARNING, "CONFWARN", "Configuration property x is ignored") == logging.WARNING


def test_a_closed_port_is_seen_without_a_kafka_client() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not bootstrap_listening(f"127.0.0.1:{port}")  # bound, not listening
        sock.listen()
        assert bootstrap_listening(f"localhost:1,127.0.0.1:{port}")
    assert not bootstrap_listening("not a host list")

"""The API against the real broker: commands land on control.v1 with actor and reason, a dead cluster is a 503,
and ``--with-sink`` mode (the warehouse sink on a thread of the API process) makes fresh records readable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.auth import Role
from api.commands import KafkaCommandSink
from api.embedded import start_sink
from ibstream.config import Settings
from ibstream.contracts import ControlCommand, control, signals
from ibstream.contracts.enums import ControlCommandKind
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer, codec_from_settings, decode_message
from ibstream.warehouse import Warehouse
from tests.integration.api_support import SECRET, bearer, load_scenario, signal, token
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def _api_settings(settings: Settings, directory: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "warehouse_dir": directory,
        "api_jwt_secret": SecretStr(SECRET),
        "warehouse_batch_rows": 100,
        "warehouse_batch_seconds": 0.2,
    }
    values.update(overrides)
    return settings.with_overrides(**values)


@pytest.fixture
def warehouse_settings(settings: Settings, tmp_path: Path) -> Settings:
    return _api_settings(settings, tmp_path / "wh")


@pytest.fixture
def commands(warehouse_settings: Settings) -> Iterator[KafkaCommandSink]:
    sink = KafkaCommandSink(warehouse_settings)
    yield sink
    sink.close()


def test_commands_reach_control_topic_with_actor_and_reason(
    warehouse_settings: Settings, commands: KafkaCommandSink
) -> None:
    settings = warehouse_settings
    with Warehouse.open(settings) as warehouse:
        ids = load_scenario(warehouse).ids
        client = TestClient(create_app(settings, warehouse, commands))
        admin = bearer(token(settings, Role.ADMIN, "alice"))
        trader = bearer(token(settings, Role.TRADER, "tom"))
        responses = [
            client.post("/v1/control/kill-switch", json={"state": "on", "reason": "broker outage"}, headers=admin),
            client.post(f"/v1/runs/{ids['awaiting_run']}/approve", json={"reason": "fits plan"}, headers=trader),
            client.post(f"/v1/runs/{ids['awaiting_run']}/reject", json={"reason": "changed mind"}, headers=trader),
            client.post("/v1/runs", json={"signal_id": ids["awaiting_signal"]}, headers=trader),
        ]
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    messages = consume_all(settings, settings.kafka.topic_prefix + control.TOPIC.name, expected=4)
    codec = codec_from_settings(settings)
    received: list[ControlCommand] = [decode_message(codec, control.TOPIC, m) for m in messages]
    assert [(c.command, c.target, c.actor, c.reason) for c in received] == [
        (ControlCommandKind.KILL_SWITCH_ON, "global", "alice", "broker outage"),
        (ControlCommandKind.APPROVE_RUN, ids["awaiting_run"], "tom", "fits plan"),
        (ControlCommandKind.REJECT_RUN, ids["awaiting_run"], "tom", "changed mind"),
        (ControlCommandKind.TRIGGER_RUN, ids["awaiting_signal"], "tom", "manual trigger"),
    ]
    # The 202 names the record Kafka stored: same id, partition and offset as the consumed message.
    for response, message, command in zip(responses, messages, received, strict=True):
        body = response.json()
        assert body["command_id"] == command.command_id
        assert (body["partition"], body["offset"]) == (message.partition(), message.offset())
        assert message.key().decode() == control.TOPIC.key_of(command)


def test_kafka_unreachable_is_a_503(tmp_path: Path, settings_factory: object) -> None:
    settings = _api_settings(
        settings_factory(),  # type: ignore[operator]
        tmp_path / "wh",
        kafka_bootstrap_servers="127.0.0.1:1",  # nothing listens on port 1
        api_command_timeout_seconds=1.0,
    )
    sink = KafkaCommandSink(settings)
    try:
        with Warehouse.open(settings) as warehouse:
            client = TestClient(create_app(settings, warehouse, sink))
            started = time.monotonic()
            response = client.post(
                "/v1/control/kill-switch",
                json={"state": "on", "reason": "x"},
                headers=bearer(token(settings, Role.ADMIN)),
            )
            elapsed = time.monotonic() - started
            ready = client.get("/ready")
    finally:
        sink.close()
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "kafka_unavailable" and response.headers["retry-after"]
    assert elapsed < 5.0
    assert ready.status_code == 503 and ready.json()["checks"] == {"warehouse": True, "kafka": False, "sink": True}


def test_with_sink_mode_serves_records_the_embedded_sink_writes(warehouse_settings: Settings) -> None:
    settings = warehouse_settings
    fresh = signal(42, "SPY", "breakout", entry=501.0)
    producer = RecordProducer(create_producer(settings), codec_from_settings(settings), settings.kafka.topic_prefix)
    with Warehouse.open(settings) as warehouse:
        sink = start_sink(settings, warehouse)
        commands = KafkaCommandSink(settings)
        try:
            client = TestClient(create_app(settings, warehouse, commands, sink=sink))
            viewer = bearer(token(settings, Role.VIEWER))
            assert client.get("/health").json() == {"status": "ok", "checks": {"sink": True}}
            producer.send(signals.TOPIC, fresh)
            assert producer.flush(10) == 0
            deadline = time.monotonic() + 30
            found = None
            while time.monotonic() < deadline:
                response = client.get(f"/v1/signals/{fresh.signal_id}", headers=viewer)
                if response.status_code == 200:
                    found = response.json()
                    break
                time.sleep(0.2)
            assert found is not None, "the embedded sink did not make the signal readable within 30 s"
            assert (found["symbol"], found["entry"], found["status"]) == ("SPY", 501.0, "new")
            assert client.get("/ready").json()["checks"] == {"warehouse": True, "kafka": True, "sink": True}
        finally:
            sink.stop()
            commands.close()
    assert not sink.alive


def test_a_row_the_warehouse_refuses_does_not_take_the_embedded_sink_or_health_down(
    warehouse_settings: Settings,
) -> None:
    """A poison row (refused by a table constraint) among good ones: the good rows become readable, the bad one is
    in the dead letters, and /health stays 200 because the embedded sink thread keeps running."""
    settings = warehouse_settings
    producer = RecordProducer(create_producer(settings), codec_from_settings(settings), settings.kafka.topic_prefix)
    good = [signal(n, "SPY", "breakout", entry=500.0 + n) for n in range(1, 6)]
    poison = signal(9, "SPY", "breakout", entry=666.0)
    with Warehouse.open(settings) as warehouse:
        table = warehouse.table(warehouse.schema.for_topic(signals.TOPIC).name)
        warehouse.command(f"ALTER TABLE {table} ADD CONSTRAINT no_poison CHECK entry != 666")
        for record in [*good[:2], poison, *good[2:]]:
            producer.send(signals.TOPIC, record)
        assert producer.flush(10) == 0
        sink = start_sink(settings, warehouse)
        commands = KafkaCommandSink(settings)
        try:
            client = TestClient(create_app(settings, warehouse, commands, sink=sink))
            viewer = bearer(token(settings, Role.VIEWER))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                letters = warehouse.query("SELECT count() FROM dead_letters FINAL").rows[0][0]
                readable = [client.get(f"/v1/signals/{s.signal_id}", headers=viewer).status_code for s in good]
                if letters == 1 and readable == [200] * len(good):
                    break
                time.sleep(0.3)
            else:
                raise AssertionError("the good signals and the dead letter did not both land within 60 s")
            assert client.get(f"/v1/signals/{poison.signal_id}", headers=viewer).status_code == 404
            assert client.get("/health").json() == {"status": "ok", "checks": {"sink": True}}
        finally:
            sink.stop()
            commands.close()

"""Audits and replay while the pipeline runs: the API process (``ibstream run api --with-sink``, real socket, real
broker) holds the embedded warehouse directory, and ``ibstream audit`` and ``ibstream replay --source warehouse``
still work — through the API, transparently — printing the same text and re-emitting the same records as when they
opened the directory themselves. Without a usable token or API, the CLI says which setting to fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import Role
from ibstream import cli
from ibstream.config import Settings, get_settings
from ibstream.contracts import Bar, bars
from ibstream.contracts.enums import MarketDataSource
from ibstream.kafka.clients import create_admin
from ibstream.kafka.topics import TopicLayout, delete_topics, ensure_topics
from ibstream.warehouse import Warehouse, lock_holder
from tests.integration.api_support import SECRET, T0, load_scenario, token
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration

SYMBOLS = ("AAA", "BBB", "CCC")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _store_bars(warehouse: Warehouse, topic: str) -> tuple[datetime, datetime, int]:
    """Bars stored as the sink would have stored them from ``topic``; the Kafka-time window to replay and how many
    bars lie in it."""
    base = T0.replace(microsecond=0)
    table = warehouse.schema.for_topic(bars.TOPIC)
    rows: dict[int, list[tuple[Bar, int, int, datetime]]] = defaultdict(list)
    for i in range(20):
        for n, symbol in enumerate(SYMBOLS):
            start = base + timedelta(seconds=5 * i)
            price = 50.0 + 10 * n + i * 0.37
            bar = Bar(
                symbol=symbol,
                start=start,
                open=price,
                high=price + 0.41,
                low=price - 0.29,
                close=price + 0.13,
                volume=900.0 + 7 * i,
                wap=price + 0.07,
                count=5 + i,
                event_time=start + timedelta(seconds=5),
                ingest_time=start + timedelta(seconds=5, microseconds=31_337),
                source=MarketDataSource.LIVE,
            )
            partition = n % 2
            rows[partition].append((bar, partition, len(rows[partition]), start + timedelta(seconds=5)))
    for partition_rows in rows.values():
        warehouse.insert_records(table, topic, partition_rows)
    start, end = base + timedelta(seconds=30), base + timedelta(seconds=80)
    inside = sum(1 for rs in rows.values() for _, _, _, ts in rs if start <= ts < end)
    return start, end, inside


def _cases(order_id: str) -> list[list[str]]:
    cases = [["order-trail", "--order-id", order_id]]
    cases += [[name] for name in ("feed-gaps", "signal-outcomes", "risk-rejections", "unreconciled-orders")]
    cases += [["dlq-contents"], ["trade-reviews"]]
    cases += [
        [
            "signal-outcomes",
            "--strategy",
            "meanrev",
            "--from",
            (T0 + timedelta(minutes=1)).isoformat(),
            "--to",
            (T0 + timedelta(minutes=4)).isoformat(),
        ],
        ["trade-reviews", "--symbol", "AAPL", "--day", T0.date().isoformat()],
        ["feed-gaps", "--symbol", "BBB"],
        ["risk-rejections", "--day", T0.date().isoformat()],
    ]
    return [["audit", *case, "--format", output] for case in cases for output in ("table", "csv", "json")]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    get_settings.cache_clear()
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _api_process(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "ibstream.cli",
        "run",
        "api",
        "--with-sink",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API exited: {log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the API did not answer /health within 90 s: {log.read_text()[-3000:]}")


def _by_partition(settings: Settings, topic: str, expected: int) -> dict[int, list[tuple[Any, ...]]]:
    messages = consume_all(settings, topic, expected, timeout=60)
    grouped: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for message in messages:
        grouped[message.partition() or 0].append((message.key(), message.value(), message.headers()))
    return dict(grouped)


def test_audit_and_replay_work_through_the_running_api_and_match_the_direct_path(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "wh"
    prefix = settings.kafka.topic_prefix
    env = {
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": prefix,
        "IBSTREAM_WAREHOUSE_DIR": str(directory),
        "IBSTREAM_API_JWT_SECRET": SECRET,
        "IBSTREAM_STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("IBSTREAM_API_URL", "IBSTREAM_API_TOKEN", "IBSTREAM_CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    api_settings = settings.with_overrides(warehouse_dir=directory, api_jwt_secret=SECRET)
    with Warehouse.open(api_settings) as warehouse:
        scenario = load_scenario(warehouse)
        start, end, in_window = _store_bars(warehouse, prefix + bars.TOPIC.name)
    assert in_window == 10 * len(SYMBOLS)
    admin = create_admin(api_settings)
    targets = {"direct": "replay.direct.v1", "api": "replay.through-api.v1"}
    ensure_topics(
        admin, [TopicLayout(prefix + t, bars.TOPIC.partitions, 3_600_000, "delete") for t in targets.values()]
    )
    replay = [
        "replay",
        "--topic",
        bars.TOPIC.name,
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "--source",
        "warehouse",
    ]

    # --- direct: nothing holds the directory ------------------------------------------------------------------------
    direct: dict[str, str] = {}
    for argv in _cases(scenario.ids["order"]):
        code, out, err = _run(argv, capsys)
        assert code == 0, (argv, err)
        direct[" ".join(argv)] = out
    assert "(0 rows)" not in direct[f"audit order-trail --order-id {scenario.ids['order']} --format table"]
    assert "(0 rows)" not in direct[f"audit trade-reviews --symbol AAPL --day {T0.date().isoformat()} --format table"]
    code, out, err = _run([*replay, "--target-topic", targets["direct"]], capsys)
    assert code == 0, err
    assert f"replayed {in_window} of {in_window} records from warehouse" in out

    # --- the API holds the directory ------------------------------------------------------------------------------
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    process = _api_process(env, port, log)
    try:
        _wait_healthy(url, process, log)
        assert lock_holder(directory) == f"pid {process.pid}"

        # Without a token: the lock's own error, and which settings lead through the API.
        code, _, err = _run(["audit", "feed-gaps"], capsys)
        assert code == 1 and f"held by another process (pid {process.pid})" in err and "IBSTREAM_API_TOKEN" in err

        monkeypatch.setenv("IBSTREAM_API_URL", url)
        monkeypatch.setenv("IBSTREAM_API_TOKEN", token(api_settings, Role.ADMIN, "operator"))
        for argv in _cases(scenario.ids["order"]):
            code, out, err = _run(argv, capsys)
            assert code == 0, (argv, err)
            assert out == direct[" ".join(argv)], argv
        code, out, err = _run([*replay, "--target-topic", targets["api"]], capsys)
        assert code == 0, err
        assert f"replayed {in_window} of {in_window} records from warehouse" in out

        # A bad filter is refused before the API is asked; a viewer may audit but not read raw records.
        code, _, err = _run(["audit", "dlq-contents", "--strategy", "x"], capsys)
        assert code == 1 and "does not take the strategy filter" in err
        monkeypatch.setenv("IBSTREAM_API_TOKEN", token(api_settings, Role.VIEWER, "vera"))
        assert (
            _run(["audit", "unreconciled-orders", "--format", "json"], capsys)[1]
            == direct["audit unreconciled-orders --format json"]
        )
        code, _, err = _run([*replay, "--target-topic", targets["api"]], capsys)
        assert code == 1 and "IBSTREAM_API_TOKEN may not do this" in err and "admin" in err
        monkeypatch.setenv("IBSTREAM_API_URL", f"http://127.0.0.1:{_free_port()}")
        code, _, err = _run(["audit", "feed-gaps"], capsys)
        assert code == 1 and "(IBSTREAM_API_URL) does not answer" in err
    finally:
        process.terminate()
        process.wait(60)

    try:
        replayed = {name: _by_partition(api_settings, prefix + topic, in_window) for name, topic in targets.items()}
        assert replayed["api"] == replayed["direct"]  # same keys, same bytes, same headers, same per-partition order
        assert sum(len(messages) for messages in replayed["api"].values()) == in_window
    finally:
        delete_topics(admin, [prefix + topic for topic in targets.values()])

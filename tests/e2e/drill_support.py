"""What the triage drill needs around the demo's pipeline: a real Prometheus that scrapes every deployable and loads
ops/alerts, the deployables' JSON log lines, the drill plan of ops/runbooks/drill.yaml, and the fault injectors that
ibsim's control API does not cover (Kafka records, an order from another IB client).

The operator's tools are Prometheus (alerts and queries) and the logs; the injectors are the only part that reaches
into the pipeline, and nothing here reads the warehouse.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from confluent_kafka import Producer

from ibstream.contracts import Gap, gaps, utc_now
from ibstream.contracts.enums import GapState
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from tooling.demo import Demo, get_json
from tooling.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "alerts" / "ibstream.rules.yaml"
DRILL_PLAN = ROOT / "ops" / "runbooks" / "drill.yaml"
PROMETHEUS = shutil.which("prometheus")
NO_PROMETHEUS = "prometheus is not installed (ops/dev install adds Debian's prometheus package, which ships it)"
#: The deployables Prometheus scrapes, by job name (the alert rules' {{ $labels.job }}).
JOBS = ("producer", "streams", "agent0", "execution", "api")

Series = list[dict[str, Any]]
T = TypeVar("T")


@dataclass(frozen=True)
class Drill:
    """One runbook's drill (ops/runbooks/drill.yaml)."""

    runbook: str
    fault: str
    alert: str
    metrics: tuple[str, ...]
    logs: tuple[str, ...]
    cause: str


def drill_plan() -> dict[str, Drill]:
    """The drills by runbook file name."""
    entries = yaml.safe_load(DRILL_PLAN.read_text())["drills"]
    return {
        entry["runbook"]: Drill(
            entry["runbook"],
            entry["fault"],
            entry["alert"],
            tuple(entry["metrics"]),
            tuple(entry["logs"]),
            entry["cause"],
        )
        for entry in entries
    }


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something other than None (or falsy), failing with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(interval)


class Prometheus:
    """A Prometheus server scraping the demo's deployables every second and evaluating ops/alerts every second."""

    def __init__(self, demo: Demo, directory: Path) -> None:
        self.demo = demo
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{self.demo.ports[job]}"]}]}
                for job in JOBS
            ],
        }

    def start(self) -> None:
        assert PROMETHEUS is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.demo.group.start("prometheus", argv, health_url=f"{self.url}/-/ready")
        self.demo.group.wait_healthy("prometheus", 30)

    def query(self, expression: str) -> Series:
        """An instant query's vector: each item has ``metric`` (labels) and ``value`` ([time, "text"])."""
        answer = get_json(f"{self.url}/api/v1/query?query={urllib.parse.quote(expression)}", timeout=5)
        assert answer["status"] == "success", answer
        result: Series = answer["data"]["result"]
        return result

    def values(self, expression: str) -> list[tuple[dict[str, str], float]]:
        return [(item["metric"], float(item["value"][1])) for item in self.query(expression)]

    def alerts(self, name: str) -> Series:
        """The alert's active instances (pending — its condition holds, waiting out its ``for`` — or firing)."""
        answer = get_json(f"{self.url}/api/v1/alerts", timeout=5)
        found: Series = [alert for alert in answer["data"]["alerts"] if alert["labels"]["alertname"] == name]
        return found

    def all_targets_up(self) -> bool:
        return {labels["job"] for labels, value in self.values("up") if value == 1} >= set(JOBS)


def log_records(demo: Demo) -> Iterator[tuple[str, dict[str, Any]]]:
    """(process, record) for every JSON log line every process wrote so far (other lines are skipped)."""
    for name, managed in demo.group.processes.items():
        try:
            text = managed.log_file.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                yield name, record


def find_logs(demo: Demo, event: str, **fields: Any) -> list[tuple[str, dict[str, Any]]]:
    """Log records whose event is ``event`` (or starts with it, when it ends with a space) and whose fields equal
    ``fields``: what `jq -c 'select(.event=="…")'` on the deployables' output returns."""

    def matches(record: dict[str, Any]) -> bool:
        text = str(record["event"])
        same = text.startswith(event) if event.endswith(" ") else text == event
        return same and all(record.get(key) == value for key, value in fields.items())

    return [(name, record) for name, record in log_records(demo) if matches(record)]


def produce_raw(bootstrap: str, topic: str, values: list[bytes], key: bytes) -> None:
    """Write ``values`` to ``topic`` as they are (one key, so one partition)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "log_level": 2})
    errors: list[str] = []
    for value in values:
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, on_delivery=lambda e, _m: errors.append(str(e)) if e else None
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0 and not errors, errors[:3]


def gap_burst(bootstrap: str, prefix: str, count: int) -> None:
    """``count`` valid md.gaps.v1 records for one made-up symbol: load on one partition that only the sink reads."""
    now = utc_now()
    gap = Gap(
        gap_id="drill-burst",
        symbol="ZDRILL",
        start=now,
        end=now,
        state=GapState.BACKFILLED,
        cause="drill",
        missing_bars=0,
        recovered_bars=0,
        detected_time=now,
        updated_time=now,
    )
    topic = prefix + gaps.TOPIC.name
    value = SingleObjectCodec(SchemaStore()).encode(topic, gap)
    produce_raw(bootstrap, topic, [value] * count, b"ZDRILL")


def place_foreign_order(port: int, client_id: int) -> dict[str, Any]:
    """A limit order placed at the gateway by another API client (as a person in TWS would): far below the market
    so it stays open. Returns what the gateway answered about it."""
    from ib_async import IB, LimitOrder, Stock

    async def place() -> dict[str, Any]:
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10)
        try:
            [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            ticker = ib.reqMktData(contract)
            for _ in range(100):
                if ticker.bid == ticker.bid and ticker.bid > 0:
                    break
                await asyncio.sleep(0.05)
            trade = ib.placeOrder(contract, LimitOrder("BUY", 1, round(ticker.bid * 0.9, 2)))
            for _ in range(100):
                if trade.orderStatus.status in ("Submitted", "PreSubmitted", "Inactive", "Cancelled"):
                    break
                await asyncio.sleep(0.05)
            return {"order_id": trade.order.orderId, "status": trade.orderStatus.status}
        finally:
            ib.disconnect()

    return asyncio.run(place())


def environment_ready() -> str | None:
    """Why the drill cannot run here, or None."""
    if PROMETHEUS is None:
        return NO_PROMETHEUS
    if not os.access(PROMETHEUS, os.X_OK):
        return f"{PROMETHEUS} is not executable"
    return None

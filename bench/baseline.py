"""The broker's own ceiling on this machine: Kafka's ProducerPerformance (Java, from the kafka-tools jar the stack
already resolves) at our quote record size, acks=all, idempotence on.
Run: .venv/bin/python -m bench.baseline [--records 500000] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import uuid

from ibstream.config import get_settings, load_settings
from ibstream.kafka.clients import create_admin
from ibstream.kafka.topics import TopicLayout, delete_topics, ensure_topics
from tooling.stack import KAFKA_LOG4J, resolve_classpath

_RATE = re.compile(r"([\d.]+) records/sec")


def measure(records: int, runs: int, record_size: int) -> dict[str, float]:
    settings = load_settings()
    classpath = resolve_classpath(get_settings().state_dir / "maven")
    topic = f"bench.baseline.{uuid.uuid4().hex[:6]}"
    admin = create_admin(settings)
    ensure_topics(admin, [TopicLayout(topic, 6, 3_600_000, "delete")])
    rates = []
    try:
        for _ in range(runs):
            command = [
                "java",
                "-Xmx512m",
                f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
                "-cp",
                classpath,
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic",
                topic,
                "--num-records",
                str(records),
                "--record-size",
                str(record_size),
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={settings.kafka.bootstrap_servers}",
                "acks=all",
                "enable.idempotence=true",
                "linger.ms=1",
            ]
            output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
            # The last line is the summary: "N records sent, R records/sec (…), … ms avg latency, …".
            rates.append(float(_RATE.findall(output)[-1]))
    finally:
        delete_topics(admin, [topic])
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record-size", type=int, default=88)
    args = parser.parse_args(argv)
    figures = measure(args.records, args.runs, args.record_size)
    print(
        f"broker baseline (Java ProducerPerformance, {args.record_size} B, acks=all, idempotent): median "
        f"{figures['median']:,.0f} records/s (min {figures['min']:,.0f}, max {figures['max']:,.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

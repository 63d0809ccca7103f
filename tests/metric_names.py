"""The metric names the code really emits, found by reading the instrument declarations (no process needed).

OpenTelemetry's Prometheus exporter adds `_total` to counters and the unit (`_seconds`) to names that lack it;
histograms are exposed as `_bucket`, `_sum` and `_count` series. Alert rules and dashboards are checked against
this set, so a renamed metric breaks the test instead of silently breaking a panel or an alert.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ibstream", "producers", "streams", "consumers", "api")
_DECLARATION = re.compile(
    r"create_(counter|up_down_counter|histogram|observable_gauge|observable_counter|observable_up_down_counter|gauge)"
    r"\(\s*\"(ibstream_[a-z0-9_]+)\"(?P<rest>[^)]*)",
    re.DOTALL,
)
_UNIT = re.compile(r"unit=\"([^\"]*)\"")
_UNIT_SUFFIX = {"s": "_seconds", "ms": "_milliseconds", "By": "_bytes"}
#: Series the OpenTelemetry instrumentations we install expose under semantic-convention names instead of ours, so no
#: declaration of ours names them: the FastAPI instrumentation's ``http.server.duration`` (milliseconds, the HTTP
#: conventions it reports by default) on the API's and Agent0's /metrics (``api.metrics.instrument``).
#: ``tests/integration/test_api_telemetry.py`` checks that the running API really exposes each of them.
INSTRUMENTATION_METRICS = frozenset(
    {
        "http_server_duration_milliseconds_bucket",
        "http_server_duration_milliseconds_sum",
        "http_server_duration_milliseconds_count",
    }
)
METRIC = re.compile(r"\b(?:ibstream_[a-z0-9_]+|http_server_[a-z0-9_]+)")


def emitted_metric_names() -> set[str]:
    names: set[str] = set(INSTRUMENTATION_METRICS)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for match in _DECLARATION.finditer(path.read_text()):
                kind, name = match.group(1), match.group(2)
                unit_match = _UNIT.search(match.group("rest"))
                suffix = _UNIT_SUFFIX.get(unit_match.group(1), "") if unit_match else ""
                if suffix and not name.endswith(suffix):
                    name += suffix
                if kind in ("counter", "observable_counter") and not name.endswith("_total"):
                    name += "_total"
                if kind == "histogram":
                    names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
                else:
                    names.add(name)
    return names


def referenced_metrics(expression: str) -> set[str]:
    return set(METRIC.findall(expression))

"""The README's metric table is the code's instrument declarations, so it cannot drift.

Every ``create_*("ibstream_…", unit=…, description=…)`` call in the deployables is one row: its Prometheus name
(the exporter's ``_total``/``_seconds`` suffixes applied, as in ``tests.metric_names``), its type, its description
as the meaning, and the deployables that emit it. Labels are not declared in OpenTelemetry, so that column is
written by hand and checked against real samples by ``tests/e2e/test_observability.py``.

Regenerate the table after adding a metric (labels are kept from the README where a row exists)::

    .venv/bin/python -m tests.unit.ibstream.test_metrics_table
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from tests.metric_names import PACKAGES, ROOT, emitted_metric_names, referenced_metrics

README = ROOT / "README.md"
START, END = "<!-- metrics-table:start -->", "<!-- metrics-table:end -->"
HEADER = ("| Metric | Type | Labels | Meaning | Emitted by |", "|---|---|---|---|---|")

_TYPES = {
    "counter": "counter",
    "histogram": "histogram",
    "gauge": "gauge",
    "observable_gauge": "gauge",
    "up_down_counter": "gauge",
    "observable_up_down_counter": "gauge",
    "observable_counter": "counter",
}
_UNIT_SUFFIX = {"s": "_seconds", "ms": "_milliseconds", "By": "_bytes"}

#: Who emits a metric declared in the core: the deployables that use that part of it.
_CORE_EMITTERS = {
    "ibstream/alerting.py": ("producer", "streams", "execution"),
    "ibstream/kafka/records.py": ("streams", "execution", "sink"),
    "ibstream/telemetry.py": ("producer", "streams", "execution"),
    "ibstream/warehouse/metrics.py": ("sink",),
}


#: Where each deployable's code lives (first match wins: Agent0 is under api/ but its own deployable).
_DEPLOYABLES = (
    ("producers/", "producer"),
    ("streams/", "streams"),
    ("consumers/execution/", "execution"),
    ("consumers/warehouse_sink/", "sink"),
    ("api/agent0/", "agent0"),
    ("api/", "api"),
)


def _emitter(path: str) -> tuple[str, ...]:
    if path in _CORE_EMITTERS:
        return _CORE_EMITTERS[path]
    for prefix, name in _DEPLOYABLES:
        if path.startswith(prefix):
            return (name,)
    raise AssertionError(f"{path} declares a metric but no deployable is known to emit it: add it to _CORE_EMITTERS")


@dataclass
class Declared:
    name: str
    kind: str
    meaning: str
    emitted_by: tuple[str, ...]


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def declared_metrics() -> dict[str, Declared]:
    """Prometheus name → declaration, from every instrument created in the deployables' code."""
    found: dict[str, Declared] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr.startswith("create_")
                    and node.args
                ):
                    continue
                name = _literal(node.args[0])
                kind = node.func.attr.removeprefix("create_")
                if name is None or not name.startswith("ibstream_") or kind not in _TYPES:
                    continue
                keywords = {keyword.arg: _literal(keyword.value) for keyword in node.keywords}
                suffix = _UNIT_SUFFIX.get(keywords.get("unit") or "", "")
                if suffix and not name.endswith(suffix):
                    name += suffix
                if _TYPES[kind] == "counter" and not name.endswith("_total"):
                    name += "_total"
                meaning = " ".join((keywords.get("description") or "").split())
                if name in found:
                    previous = found[name]
                    emitters = tuple(sorted(set(previous.emitted_by) | set(_emitter(relative))))
                    found[name] = Declared(name, previous.kind, previous.meaning, emitters)
                else:
                    found[name] = Declared(name, _TYPES[kind], meaning, _emitter(relative))
    return found


def readme_rows() -> dict[str, list[str]]:
    """Metric name → the README row's cells."""
    text = README.read_text()
    assert START in text and END in text, f"README.md needs the metric table between {START} and {END}"
    block = text[text.index(START) + len(START) : text.index(END)].strip().splitlines()
    assert tuple(block[:2]) == HEADER, f"the metric table's header must be:\n{HEADER[0]}\n{HEADER[1]}"
    rows: dict[str, list[str]] = {}
    for line in block[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"a metric table row needs 5 cells: {line}"
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is listed twice"
        rows[name] = cells
    return rows


def documented_labels() -> dict[str, set[str]]:
    """Metric name → the labels its README row documents (the e2e test checks real samples against them)."""
    return {
        name: {label.strip().strip("`") for label in cells[2].split(",") if label.strip() not in ("", "—")}
        for name, cells in readme_rows().items()
    }


def render(labels: dict[str, str] | None = None) -> str:
    """The table as the code declares it; ``labels`` keeps the hand-written label cells."""
    labels = labels or {}
    lines = list(HEADER)
    for item in sorted(declared_metrics().values(), key=lambda item: item.name):
        lines.append(
            f"| `{item.name}` | {item.kind} | {labels.get(item.name, '—')} | {item.meaning} | "
            f"{', '.join(item.emitted_by)} |"
        )
    return "\n".join(lines)


def test_every_declared_metric_has_a_row_and_every_row_a_declaration() -> None:
    declared, rows = declared_metrics(), readme_rows()
    missing, stale = sorted(set(declared) - set(rows)), sorted(set(rows) - set(declared))
    expected = render({name: cells[2] for name, cells in rows.items()})
    assert not missing and not stale, (
        f"README metric table out of date (missing {missing}, no longer emitted {stale}); regenerate with "
        f"`.venv/bin/python -m tests.unit.ibstream.test_metrics_table` or paste:\n{expected}"
    )


def test_rows_match_the_declarations() -> None:
    declared, rows = declared_metrics(), readme_rows()
    for name, item in declared.items():
        cells = rows[name]
        assert cells[1] == item.kind, f"{name}: README says {cells[1]}, the code declares a {item.kind}"
        assert cells[3] == item.meaning, f"{name}: README meaning differs from the declaration's description"
        assert cells[4] == ", ".join(item.emitted_by), f"{name}: emitted by {', '.join(item.emitted_by)}"
        assert cells[2], f"{name}: the labels cell is empty (write — for none)"


def test_the_table_agrees_with_the_metric_names_the_alerts_and_dashboards_are_checked_against() -> None:
    # Two readings of the same declarations: the AST here, the regular expression in tests.metric_names.
    exposed = {name for name in emitted_metric_names() if not name.endswith(("_bucket", "_sum", "_count"))}
    histograms = {name for name, item in declared_metrics().items() if item.kind == "histogram"}
    assert exposed | histograms == set(declared_metrics())
    assert {f"{name}_bucket" for name in histograms} <= emitted_metric_names()


def test_runbooks_and_the_readme_name_only_metrics_the_code_emits() -> None:
    # A runbook that tells the on-call to look at a metric nobody emits wastes the minutes that matter.
    names = set(declared_metrics()) | emitted_metric_names()
    for path in [README, *sorted((ROOT / "ops" / "runbooks").glob("*.md"))]:
        unknown = sorted(referenced_metrics(path.read_text()) - names)
        assert not unknown, f"{path.relative_to(ROOT)} names metrics no code emits: {unknown}"


def _regenerate() -> None:
    text = README.read_text()
    rows = readme_rows()
    table = render({name: cells[2] for name, cells in rows.items()})
    README.write_text(text[: text.index(START) + len(START)] + "\n" + table + "\n" + text[text.index(END) :])


if __name__ == "__main__":
    _regenerate()

"""What a UAT run produces: scenarios, their evidence and results, the session record. Pure data, no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Scenario:
    """One entry of the catalogue: which session runs it and what must hold for it to pass."""

    id: str
    session: str
    title: str
    criteria: tuple[str, ...]
    # Scenarios that place orders or inject faults cannot run against a real gateway without --allow-orders.
    places_orders: bool = True
    needs_sim: bool = True


@dataclass
class Evidence:
    """A query (warehouse SQL or a simulator/API call) and what it returned."""

    name: str
    source: str  # "warehouse", "ibsim", "api", "harness"
    query: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


@dataclass
class ScenarioResult:
    """A scenario's verdict with the figures and evidence it was judged on."""

    id: str
    title: str
    session: str
    status: str  # "pass", "fail", "skip"
    criteria: list[str]
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge:
    """Collects one scenario's checks: each ``expect`` records a figure and, when false, a failure."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.failures: list[str] = []
        self.figures: dict[str, Any] = {}
        self.evidence: list[Evidence] = []

    def figure(self, name: str, value: Any) -> Any:
        self.figures[name] = value
        return value

    def expect(self, condition: bool, failure: str) -> bool:
        if not condition:
            self.failures.append(failure)
        return condition

    def attach(self, *evidence: Evidence) -> None:
        self.evidence.extend(evidence)

    def result(self, note: str = "") -> ScenarioResult:
        return ScenarioResult(
            id=self.scenario.id,
            title=self.scenario.title,
            session=self.scenario.session,
            status="pass" if not self.failures else "fail",
            criteria=list(self.scenario.criteria),
            failures=list(self.failures),
            figures=dict(self.figures),
            evidence=list(self.evidence),
            note=note,
        )


def skipped(scenario: Scenario, why: str) -> ScenarioResult:
    return ScenarioResult(
        id=scenario.id,
        title=scenario.title,
        session=scenario.session,
        status="skip",
        criteria=list(scenario.criteria),
        note=why,
    )


def failed(scenario: Scenario, why: str) -> ScenarioResult:
    """A scenario whose session could not run to the end (the reason is its only failure)."""
    return ScenarioResult(
        id=scenario.id,
        title=scenario.title,
        session=scenario.session,
        status="fail",
        criteria=list(scenario.criteria),
        failures=[why],
    )


def number(value: Any, default: float = 0.0) -> float:
    """A query cell as a float (None and NaN become ``default``)."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(result) else result


def first(evidence: Evidence, default: Any = 0) -> Any:
    """The first cell of the first row."""
    return evidence.rows[0][0] if evidence.rows and evidence.rows[0] else default


def column(evidence: Evidence, name: str) -> list[Any]:
    index = evidence.columns.index(name)
    return [row[index] for row in evidence.rows]


def by_key(evidence: Evidence, key: str = "", value: str = "") -> dict[Any, Any]:
    """Two-column evidence (or the named columns) as a dict."""
    k = evidence.columns.index(key) if key else 0
    v = evidence.columns.index(value) if value else 1
    return {row[k]: row[v] for row in evidence.rows}


Check = Callable[[Judge], None]


def summarise(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    """Counts and the ids that failed: the inputs of the go/no-go verdict."""
    return {
        "total": len(results),
        "passed": sum(1 for r in results if r.status == "pass"),
        "failed": [r.id for r in results if r.status == "fail"],
        "skipped": [r.id for r in results if r.status == "skip"],
    }

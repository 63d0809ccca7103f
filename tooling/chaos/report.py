"""The campaign report as text tables (rich): faults, invariants, violations, throughput, recovery."""

from __future__ import annotations

from typing import Any


def render(report: dict[str, Any]) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    # Recorded into a string (not the terminal): the caller decides where the text goes.
    console = Console(width=140, record=True, force_terminal=False, file=io.StringIO())
    faults = Table(title=f"faults injected (seed {report['seed']}; replay: {report['replay']})")
    for column in ("#", "t+s", "kind", "params", "recovery s", "notes"):
        faults.add_column(column)
    for fault in report["faults"]:
        params = " ".join(f"{k}={v}" for k, v in sorted(fault["params"].items()))
        recovery = fault["recovery_seconds"]
        notes = "; ".join(([fault["error"]] if fault["error"] else []) + fault["notes"])
        faults.add_row(
            str(fault["index"]),
            f"{fault['injected_at']:.1f}",
            fault["kind"],
            params,
            "–" if recovery is None else f"{recovery:.2f}",
            notes[:80],
        )
    console.print(faults)

    invariants = Table(title="invariants")
    for column in ("invariant", "checked", "violations", "ok"):
        invariants.add_column(column)
    for item in report["invariants"]:
        invariants.add_row(item["name"], f"{item['checked']:,}", str(item["violations"]), "yes" if item["ok"] else "NO")
    console.print(invariants)

    if report["violations"]:
        violations = Table(title=f"violations ({len(report['violations'])}, first 40)")
        for column in ("invariant", "id", "detail"):
            violations.add_column(column)
        for item in report["violations"][:40]:
            violations.add_row(item["invariant"], item["id"], item["detail"][:200])
        console.print(violations)

    figures = Table(title="figures")
    figures.add_column("figure")
    figures.add_column("value")
    recovery = report["recovery_seconds"]
    throughput = report["throughput"]
    figures.add_row("recovery p50 / max (s)", f"{recovery['p50']} / {recovery['max']}")
    for kind, values in recovery["by_kind"].items():
        figures.add_row(f"  {kind}", f"{values['p50']} / {values['max']}")
    figures.add_row("quotes/s target", f"{report['rate_target']:g}")
    figures.add_row(
        "quotes/s avg / p50 / min",
        f"{throughput['quotes_per_second_avg']} / "
        f"{throughput['quotes_per_second_p50']} / {throughput['quotes_per_second_min']}",
    )
    figures.add_row("bars/s avg", str(throughput["bars_per_second_avg"]))
    cpu = report.get("cpu_cores") or {}
    if cpu:
        figures.add_row(
            f"CPU cores used (machine has {report.get('machine_cores')})",
            f"{sum(cpu.values()):.2f}: " + ", ".join(f"{name} {cores}" for name, cores in cpu.items()),
        )
    figures.add_row("records in Kafka (all topics)", f"{report['records_total']:,}")
    figures.add_row("result", "PASS" if report["ok"] else f"FAIL {report['error'] or ''}")
    console.print(figures)
    return console.export_text()

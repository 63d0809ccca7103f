"""The UAT report (Markdown and HTML) and the go/no-go verdict over recorded sessions. Pure functions."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tooling.uat.model import Evidence, ScenarioResult, summarise

_MAX_ROWS = 25


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in rows[:_MAX_ROWS]]
    if len(rows) > _MAX_ROWS:
        lines.append(f"… {len(rows) - _MAX_ROWS} more rows")
    return lines


def _md_evidence(evidence: Evidence) -> list[str]:
    lines = [
        f"<details><summary>{evidence.name} ({evidence.source}, {len(evidence.rows)} rows)</summary>",
        "",
        "```sql" if evidence.source == "warehouse" else "```",
        evidence.query.strip(),
        "```",
        "",
    ]
    if evidence.columns:
        lines += _md_table(evidence.columns, evidence.rows)
    return [*lines, "", "</details>", ""]


def render_markdown(meta: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    counts = summarise(results)
    verdict = "PASS" if not counts["failed"] else "FAIL"
    lines = [
        f"# UAT session {meta['session_id']}: {verdict}",
        "",
        f"- target: {meta['target']}",
        f"- started {meta['started_at']}, finished {meta['finished_at']} ({meta['seconds']:.0f} s)",
        f"- scenarios: {counts['passed']} passed, {len(counts['failed'])} failed, {len(counts['skipped'])} skipped "
        f"of {counts['total']}",
    ]
    if counts["failed"]:
        lines.append(f"- failed: {', '.join(counts['failed'])}")
    lines += ["", "## Scenarios", ""]
    lines += _md_table(
        ["scenario", "session", "result", "title", "why"],
        [[r.id, r.session, r.status.upper(), r.title, "; ".join(r.failures) or r.note] for r in results],
    )
    for result in results:
        lines += ["", f"## {result.id} — {result.status.upper()}", "", result.title, "", "Criteria:"]
        lines += [f"- {criterion}" for criterion in result.criteria]
        if result.failures:
            lines += ["", "Failures:"] + [f"- {failure}" for failure in result.failures]
        if result.note:
            lines += ["", f"Note: {result.note}"]
        if result.figures:
            lines += ["", "Figures:", "", *_md_table(["figure", "value"], [[k, v] for k, v in result.figures.items()])]
        if result.evidence:
            lines += ["", "Evidence:", ""]
            for evidence in result.evidence:
                lines += _md_evidence(evidence)
    if meta.get("log"):
        lines += ["", "## Session log", "", "```", *meta["log"], "```"]
    return "\n".join(lines) + "\n"


def render_html(meta: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    counts = summarise(results)
    e = html.escape
    colour = {"pass": "#1a7f37", "fail": "#cf222e", "skip": "#9a6700"}

    def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        head = "".join(f"<th>{e(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in row) + "</tr>" for row in rows[:_MAX_ROWS])
        more = f"<p>… {len(rows) - _MAX_ROWS} more rows</p>" if len(rows) > _MAX_ROWS else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>UAT {e(meta['session_id'])}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;"
        "text-align:left}pre{background:#f6f8fa;padding:.5em;white-space:pre-wrap}</style></head><body>",
        f"<h1>UAT session {e(meta['session_id'])}: "
        f"<span style='color:{colour['fail' if counts['failed'] else 'pass']}'>"
        f"{'FAIL' if counts['failed'] else 'PASS'}</span></h1>",
        f"<p>target {e(meta['target'])}; {e(meta['started_at'])} → {e(meta['finished_at'])} ({meta['seconds']:.0f} s);"
        f" {counts['passed']} passed, {len(counts['failed'])} failed, {len(counts['skipped'])} skipped</p>",
        table(
            ["scenario", "session", "result", "why"],
            [[r.id, r.session, r.status.upper(), "; ".join(r.failures) or r.note] for r in results],
        ),
    ]
    for result in results:
        parts.append(
            f"<h2 id='{e(result.id)}'>{e(result.id)} — "
            f"<span style='color:{colour[result.status]}'>{result.status.upper()}</span></h2>"
            f"<p>{e(result.title)}</p><ul>{''.join(f'<li>{e(c)}</li>' for c in result.criteria)}</ul>"
        )
        if result.failures:
            parts.append("<p><b>Failures</b></p><ul>" + "".join(f"<li>{e(f)}</li>" for f in result.failures) + "</ul>")
        if result.note:
            parts.append(f"<p>Note: {e(result.note)}</p>")
        if result.figures:
            parts.append(table(["figure", "value"], [[k, v] for k, v in result.figures.items()]))
        for evidence in result.evidence:
            parts.append(
                f"<details><summary>{e(evidence.name)} ({e(evidence.source)}, {len(evidence.rows)} rows)"
                f"</summary><pre>{e(evidence.query.strip())}</pre>"
                f"{table(evidence.columns, evidence.rows) if evidence.columns else ''}</details>"
            )
    if meta.get("log"):
        parts.append("<h2>Session log</h2><pre>" + e("\n".join(meta["log"])) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


@dataclass(frozen=True)
class Verdict:
    """Go only after ``required`` consecutive passing sessions (the most recent ones)."""

    go: bool
    required: int
    consecutive_passes: int
    sessions: int
    failing: list[tuple[str, list[str]]]  # (session_id, failed scenario ids) of the failing sessions that count

    def render(self) -> str:
        head = "GO" if self.go else "NO-GO"
        lines = [
            f"{head}: {self.consecutive_passes} consecutive passing UAT sessions (required {self.required}, "
            f"{self.sessions} recorded)"
        ]
        if not self.go:
            if self.failing:
                session_id, scenarios = self.failing[0]
                lines.append(f"latest failing session {session_id}: {', '.join(scenarios) or 'session error'}")
                lines += [
                    f"  earlier failing session {s}: {', '.join(f) or 'session error'}" for s, f in self.failing[1:5]
                ]
            else:
                lines.append(f"needs {self.required - self.consecutive_passes} more passing session(s)")
        return "\n".join(lines)


def verdict(sessions: Sequence[tuple[str, bool, list[str]]], required: int) -> Verdict:
    """``sessions``: (session_id, passed, failed scenario ids), newest first."""
    streak = 0
    for _, passed, _ in sessions:
        if not passed:
            break
        streak += 1
    failing = [(session_id, list(failed)) for session_id, passed, failed in sessions if not passed]
    return Verdict(
        go=streak >= required,
        required=required,
        consecutive_passes=streak,
        sessions=len(sessions),
        failing=failing if streak < required else [],
    )

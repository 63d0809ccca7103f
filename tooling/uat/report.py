"""The UAT report of a session (Markdown and HTML, with a plot of the day per session) and of a sign-off. Pure."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from tooling.uat.model import Evidence, ScenarioResult, summarise
from tooling.uat.verdict import SignOff, Verdict

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
    if meta.get("kind"):
        lines.append(
            f"- {meta['kind']}: market date {meta.get('market_date') or '-'}, {meta.get('coverage') or '-'}"
            + (" (a rehearsal: never counted for go)" if meta["kind"] != "gateway" else "")
        )
    if counts["failed"]:
        lines.append(f"- failed: {', '.join(counts['failed'])}")
    if meta.get("plots"):
        lines.append(f"- plots of the day ({', '.join(meta['plots'])}): in report.html")
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
        f"<p>{e(str(meta.get('kind', '')))}: market date {e(str(meta.get('market_date') or '-'))}, "
        f"{e(str(meta.get('coverage') or '-'))}"
        f"{' (a rehearsal: never counted for go)' if meta.get('kind') != 'gateway' else ''}</p>",
        table(
            ["scenario", "session", "result", "why"],
            [[r.id, r.session, r.status.upper(), "; ".join(r.failures) or r.note] for r in results],
        ),
    ]
    if meta.get("plots"):
        parts.append("<h2>The day</h2>")
        parts += [str(svg) for svg in meta["plots"].values()]
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


def render_signoff_markdown(decision: Verdict, signoff: SignOff, reports: dict[str, str]) -> str:
    """The sign-off report: who signed what, when, and the trading days and sessions it rests on."""
    lines = [
        f"# UAT sign-off {signoff.signoff_id}: {signoff.verdict}",
        "",
        f"- signed by {signoff.signed_by} at {signoff.signed_at.isoformat(timespec='seconds')}",
        f"- note: {signoff.note}",
        f"- required {decision.required} consecutive trading days on a paper gateway; run: "
        + ", ".join(d.isoformat() for d in decision.run_days),
        "",
        "## Sessions it rests on",
        "",
    ]
    lines += _md_table(["session", "report"], [[s, reports.get(s, "")] for s in signoff.session_ids])
    return "\n".join([*lines, "", "## Verdict at sign-off", "", "```", decision.render(), "```"]) + "\n"


def render_signoff_html(decision: Verdict, signoff: SignOff, reports: dict[str, str]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s)}</td><td><a href='{e(reports.get(s, ''))}'>{e(reports.get(s, ''))}</a></td></tr>"
        for s in signoff.session_ids
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>UAT sign-off {e(signoff.signoff_id)}</title>"
        "</head><body style='font-family:sans-serif;margin:2em'>"
        f"<h1>UAT sign-off {e(signoff.signoff_id)}: {e(signoff.verdict)}</h1>"
        f"<p>signed by {e(signoff.signed_by)} at {e(signoff.signed_at.isoformat(timespec='seconds'))}</p>"
        f"<p>note: {e(signoff.note)}</p><table border='1'><tr><th>session</th><th>report</th></tr>{rows}</table>"
        f"<h2>Verdict at sign-off</h2><pre>{e(decision.render())}</pre></body></html>"
    )

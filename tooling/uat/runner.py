"""`ibstream uat`: run the scenario catalogue, write the report, record the session, and the go/no-go verdict.

Against ibsim (the default) three sessions run: ``desk`` (its own Kafka broker, mostly waiting on crafted orders)
runs alongside ``main`` and then ``close`` (CPU-heavy at 600x), which keeps a CI run under three minutes on two
cores. Against a real paper gateway (``--gateway HOST:PORT``) one wall-clock session runs the read-only scenario,
and places orders only with ``--allow-orders``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibstream.config import Settings
from tooling.progress import current as progress
from tooling.uat.catalogue import GATEWAY_SCENARIOS, SCENARIOS, SESSIONS
from tooling.uat.harness import Session, SessionPlan, UatError
from tooling.uat.model import Evidence, Judge, ScenarioResult, by_key, first, number, skipped, summarise
from tooling.uat.plot import DAY_QUERIES, day_data, render_day_svg
from tooling.uat.report import render_html, render_markdown, render_signoff_html, render_signoff_markdown
from tooling.uat.sessions import CLOSE_PLAN, DESK_PLAN, MAIN_PLAN, run_close, run_desk, run_main
from tooling.uat.verdict import (
    GATEWAY,
    REHEARSAL,
    SessionRecord,
    SignOff,
    Verdict,
    coverage,
    market_date,
    refuse_sign_off,
    verdict,
)


@dataclass
class UatOptions:
    """What to run and where the report goes."""

    reports_dir: Path
    sessions: tuple[str, ...] = SESSIONS
    gateway: str | None = None
    allow_orders: bool = False
    gateway_minutes: float = 5.0
    # Run the desk session (mostly waiting, 30x) alongside the 600x sessions. Off by default: on two cores the
    # 600x sessions then fall behind their fast clock (signals expire, orders are cut off at the stop).
    parallel: bool = False
    # Extra settings per session (environment variables), e.g. a deliberately broken risk limit in a test.
    env_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    record: bool = True


@dataclass
class UatRun:
    session_id: str
    results: list[ScenarioResult]
    meta: dict[str, Any]
    markdown: Path
    html: Path
    json: Path

    @property
    def passed(self) -> bool:
        return not summarise(self.results)["failed"]


_PLANS: dict[str, SessionPlan] = {"main": MAIN_PLAN, "close": CLOSE_PLAN, "desk": DESK_PLAN}
_RUNNERS: dict[str, Callable[..., list[ScenarioResult]]] = {"main": run_main, "close": run_close, "desk": run_desk}


def _plan(name: str, overrides: Mapping[str, Mapping[str, str]]) -> SessionPlan:
    plan = _PLANS[name]
    extra = overrides.get(name)
    return dataclasses.replace(plan, env={**plan.env, **extra}) if extra else plan


def run_uat(settings: Settings, options: UatOptions) -> UatRun:
    """Run the campaign once and write its report; record it in the warehouse unless told not to."""
    session_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(2)
    directory = options.reports_dir / session_id
    directory.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    log: list[str] = []
    if options.gateway:
        results = _run_gateway(settings, options, directory, session_id, log)
        target = f"paper gateway {options.gateway}" + (" (orders allowed)" if options.allow_orders else " (read-only)")
    else:
        results = _run_sim(settings, options, directory, session_id)
        target = "ibsim"
    finished = dt.datetime.now(dt.UTC)
    names = ["gateway"] if options.gateway else [n for n in SESSIONS if n in options.sessions]
    progress().phase("plotting each session's day", f"the warehouses of {', '.join(names)}")
    meta = {
        "session_id": session_id,
        "target": target,
        "kind": GATEWAY if options.gateway else REHEARSAL,
        # A rehearsal's market is ibsim's simulated day; the date and coverage recorded are the wall clock's.
        "market_date": market_date(started).isoformat(),
        "coverage": coverage(started, finished),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "seconds": time.monotonic() - clock,
        "sessions": list(options.sessions),
        "plots": {name: _day_plot(directory / name, f"{session_id} {name}") for name in names},
        "log": log,
    }
    run = UatRun(
        session_id, results, meta, directory / "report.md", directory / "report.html", directory / "results.json"
    )
    progress().phase("writing the report", "")
    run.markdown.write_text(render_markdown(meta, results))
    run.html.write_text(render_html(meta, results))
    run.json.write_text(json.dumps({"meta": meta, "results": [r.to_dict() for r in results]}, default=str, indent=1))
    if options.record:
        progress().phase("recording the session", "the campaign's warehouse")
        record_session(settings, run)
    return run


def _run_sim(settings: Settings, options: UatOptions, directory: Path, session_id: str) -> list[ScenarioResult]:
    results: dict[str, list[ScenarioResult]] = {}

    def run(name: str) -> None:
        scenarios = [s for s in SCENARIOS if s.session == name]
        progress().phase(f"session {name} started ({len(scenarios)} scenarios are judged from it)")
        try:
            results[name] = _RUNNERS[name](settings, directory / name, session_id, _plan(name, options.env_overrides))
        except Exception as error:  # a harness bug must fail the session's scenarios, not lose the report
            where = traceback.format_exc(limit=-3)
            results[name] = [_crashed(s.id, f"session {name} crashed: {error!r}\n{where}") for s in scenarios]
        counts = summarise(results[name])
        progress().phase(
            f"session {name} done: {counts['passed']} passed, {len(counts['failed'])} failed"
            + (f" ({', '.join(counts['failed'])})" if counts["failed"] else "")
        )

    wanted = [name for name in SESSIONS if name in options.sessions]
    background = None
    if options.parallel and "desk" in wanted:
        # The desk session mostly waits on its own orders at 30x: it overlaps the two 600x sessions.
        background = threading.Thread(target=run, args=("desk",), name="uat-desk", daemon=True)
        background.start()
        wanted.remove("desk")
    for name in wanted:
        run(name)
    if background is not None:
        background.join()
    ordered: list[ScenarioResult] = []
    for scenario in SCENARIOS:
        found = [r for r in results.get(scenario.session, []) if r.id == scenario.id]
        ordered.append(found[0] if found else skipped(scenario, f"session {scenario.session} not run"))
    return ordered


def _crashed(scenario_id: str, why: str) -> ScenarioResult:
    from tooling.uat.catalogue import BY_ID
    from tooling.uat.model import failed

    return failed(BY_ID[scenario_id], why)


def _run_gateway(
    settings: Settings, options: UatOptions, directory: Path, session_id: str, log: list[str]
) -> list[ScenarioResult]:
    assert options.gateway is not None
    plan = SessionPlan(
        "gateway",
        speed=1.0,
        start=dt.time(9, 30),
        minutes=options.gateway_minutes,
        approve="manual" if options.allow_orders else "none",
        gateway=options.gateway,
        env={"IBSTREAM_MARKET_CLOCK": "wall"},
    )
    readonly, orders = GATEWAY_SCENARIOS
    session = Session(plan, settings, directory / "gateway", session_id)
    try:
        session.start()
        session.run_until(
            dt.datetime.now(dt.UTC) + dt.timedelta(minutes=options.gateway_minutes),
            wall_timeout=options.gateway_minutes * 60 + 60,
        )
    except Exception as error:
        session.finish()
        return [_gateway_failed(readonly, f"gateway session did not complete: {error}")]
    finally:
        log.extend(session.log)
    session.finish()
    try:
        ev = session.warehouse_evidence(
            [
                ("quotes_by_symbol", "SELECT symbol, source, count() FROM md_quotes_v1 FINAL GROUP BY symbol, source"),
                ("bars_by_symbol", "SELECT symbol, count() FROM md_bars_5s_v1 FINAL GROUP BY symbol"),
                ("routed", "SELECT count() FROM orders_routed_v1 FINAL"),
                ("decisions", "SELECT approved, count() FROM risk_decisions_v1 FINAL GROUP BY approved"),
                ("events", "SELECT status, count() FROM orders_events_v1 FINAL GROUP BY status"),
            ]
        )
    except UatError as error:
        return [_gateway_failed(readonly, str(error))]
    j = Judge(readonly)
    quoted = {row[0] for row in ev["quotes_by_symbol"].rows}
    bars = by_key(ev["bars_by_symbol"])
    routed = int(number(first(ev["routed"])))
    j.figure("symbols_quoted", sorted(quoted))
    j.figure("bars_by_symbol", bars)
    j.figure("orders_routed", routed)
    j.expect(set(plan.symbols) <= quoted, f"no quotes for {sorted(set(plan.symbols) - quoted)}")
    j.expect(options.allow_orders or routed == 0, f"{routed} orders routed without --allow-orders")
    j.attach(ev["quotes_by_symbol"], ev["bars_by_symbol"], ev["routed"])
    results = [j.result()]
    if options.allow_orders:
        k = Judge(orders)
        k.figure("decisions", by_key(ev["decisions"]))
        k.figure("order_events", by_key(ev["events"]))
        k.expect(routed == 0 or bool(ev["events"].rows), "routed orders without broker events")
        k.attach(ev["decisions"], ev["events"])
        results.append(k.result(note="no approved run during the session" if routed == 0 else ""))
    else:
        results.append(skipped(orders, "read-only: pass --allow-orders to place paper orders"))
    return results + [skipped(s, "needs ibsim (fault injection, accelerated clock)") for s in SCENARIOS]


def _gateway_failed(scenario: Any, why: str) -> ScenarioResult:
    from tooling.uat.model import failed

    return failed(scenario, why)


def _day_plot(state_dir: Path, title: str) -> str:
    """The session's day as an inline SVG, from its own warehouse (queried in a child: chDB, one process per
    directory). A session whose warehouse cannot be read gets a note instead of a plot, not a failed report."""
    if not (state_dir / "warehouse").exists():
        return render_day_svg(title, day_data({}))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tooling.uat.evidence", "--state-dir", str(state_dir)],
            input=json.dumps([[name, sql] for name, sql in DAY_QUERIES]),
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
        if result.returncode != 0:
            raise UatError(result.stderr[-300:])
        answers: dict[str, dict[str, Any]] = json.loads(result.stdout)
    except (UatError, subprocess.TimeoutExpired, ValueError) as error:
        return f"<p>{html.escape(title)}: plot unavailable (warehouse query failed: {html.escape(str(error))})</p>"
    evidence = {
        name: Evidence(name, "warehouse", sql, answers[name]["columns"], answers[name]["rows"])
        for name, sql in DAY_QUERIES
        if answers[name]["columns"] != ["error"]
    }
    return render_day_svg(title, day_data(evidence))


# --- the campaign record and the verdict -----------------------------------------------------------------------


def record_session(settings: Settings, run: UatRun) -> None:
    """One row in ``uat_sessions`` (the warehouse named by the settings)."""
    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.migrations import UAT_SESSIONS_TABLE

    counts = summarise(run.results)
    with Warehouse.open(settings) as warehouse:
        warehouse.client.insert(
            f"{warehouse.database}.{UAT_SESSIONS_TABLE}",
            [
                [
                    run.session_id,
                    dt.datetime.fromisoformat(run.meta["started_at"]),
                    dt.datetime.fromisoformat(run.meta["finished_at"]),
                    run.meta["target"],
                    run.passed,
                    counts["total"],
                    counts["passed"],
                    len(counts["skipped"]),
                    counts["failed"],
                    json.dumps(
                        [
                            {"id": r.id, "status": r.status, "failures": r.failures, "figures": r.figures}
                            for r in run.results
                        ],
                        default=str,
                    ),
                    str(run.markdown),
                    run.meta["kind"],
                    dt.date.fromisoformat(run.meta["market_date"]),
                    run.meta["coverage"],
                ]
            ],
            column_names=[
                "session_id",
                "started_at",
                "finished_at",
                "target",
                "passed",
                "scenarios_total",
                "scenarios_passed",
                "scenarios_skipped",
                "failed_scenarios",
                "results",
                "report_path",
                "kind",
                "market_date",
                "coverage",
            ],
        )


def _record(row: list[Any]) -> SessionRecord:
    session_id, started_at, finished_at, target, passed, failed, kind, day, covered = row
    started = _utc(started_at)
    finished = _utc(finished_at)
    # Rows recorded before the verdict counted trading days have no kind, date or coverage: read them from the
    # target and the times (a gateway target always began "paper gateway").
    kind = kind or (GATEWAY if str(target).startswith("paper gateway") else REHEARSAL)
    return SessionRecord(
        session_id=str(session_id),
        kind=kind,
        market_date=_date(day) if day else market_date(started),
        coverage=covered or coverage(started, finished),
        passed=bool(passed),
        failed_scenarios=tuple(failed),
        finished_at=finished,
    )


def _utc(value: Any) -> dt.datetime:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else _utc(value).date()


def load_verdict(settings: Settings, required: int | None = None) -> Verdict:
    """Go/no-go from every recorded session, with the sign-offs recorded so far (newest first)."""
    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.migrations import UAT_SESSIONS_TABLE, UAT_SIGNOFFS_TABLE

    with Warehouse.open(settings) as warehouse:
        rows = warehouse.query(
            "SELECT session_id, started_at, finished_at, target, passed, failed_scenarios, kind, market_date, "
            f"coverage FROM {warehouse.table(UAT_SESSIONS_TABLE)} FINAL"
        ).rows
        signed = warehouse.query(
            "SELECT signoff_id, signed_by, signed_at, note, verdict, trading_days, session_ids "
            f"FROM {warehouse.table(UAT_SIGNOFFS_TABLE)} ORDER BY signed_at DESC, signoff_id DESC"
        ).rows
    signoffs = [
        SignOff(str(i), str(by), _utc(at), str(note), str(v), tuple(_date(d) for d in days), tuple(ids))
        for i, by, at, note, v, days, ids in signed
    ]
    return verdict([_record(list(r)) for r in rows], required or settings.uat.required_sessions, signoffs)


def session_reports(settings: Settings, session_ids: tuple[str, ...]) -> dict[str, str]:
    """Where each session's report was written."""
    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.migrations import UAT_SESSIONS_TABLE

    if not session_ids:
        return {}
    with Warehouse.open(settings) as warehouse:
        rows = warehouse.query(
            f"SELECT session_id, report_path FROM {warehouse.table(UAT_SESSIONS_TABLE)} FINAL "
            "WHERE has({ids:Array(String)}, session_id)",
            {"ids": list(session_ids)},
        ).rows
    return {str(r[0]): str(r[1]) for r in rows}


@dataclass
class SignOffResult:
    """What ``sign_off`` did: the verdict it judged, the sign-off it recorded (or why it refused), its report."""

    decision: Verdict
    signoff: SignOff | None
    refused: str | None
    report: Path | None = None


def sign_off(settings: Settings, by: str, note: str, reports_dir: Path, required: int | None = None) -> SignOffResult:
    """Record a sign-off of the current verdict. A NO-GO is refused with its reason and nothing is recorded: a
    sign-off is an acceptance, and the sessions behind a no-go are already in ``uat_sessions`` for anyone to read."""
    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.migrations import UAT_SIGNOFFS_TABLE

    if not by.strip() or not note.strip():
        return SignOffResult(load_verdict(settings, required), None, "refused: --by and --note must not be empty")
    decision = load_verdict(settings, required)
    refused = refuse_sign_off(decision)
    if refused:
        return SignOffResult(decision, None, refused)
    now = dt.datetime.now(dt.UTC)
    signoff = SignOff(
        signoff_id=now.strftime("signoff-%Y%m%dT%H%M%S") + secrets.token_hex(2),
        signed_by=by.strip(),
        signed_at=now,
        note=note.strip(),
        verdict="GO",
        trading_days=decision.signed_days,
        session_ids=decision.counted_sessions,
    )
    with Warehouse.open(settings) as warehouse:
        warehouse.client.insert(
            f"{warehouse.database}.{UAT_SIGNOFFS_TABLE}",
            [
                [
                    signoff.signoff_id,
                    now,
                    signoff.signed_by,
                    signoff.note,
                    signoff.verdict,
                    decision.required,
                    list(signoff.trading_days),
                    list(signoff.session_ids),
                ]
            ],
            column_names=[
                "signoff_id",
                "signed_at",
                "signed_by",
                "note",
                "verdict",
                "required",
                "trading_days",
                "session_ids",
            ],
        )
    reports = session_reports(settings, signoff.session_ids)
    reports_dir.mkdir(parents=True, exist_ok=True)
    report = reports_dir / f"{signoff.signoff_id}.md"
    report.write_text(render_signoff_markdown(decision, signoff, reports))
    report.with_suffix(".html").write_text(render_signoff_html(decision, signoff, reports))
    return SignOffResult(decision, signoff, None, report)

"""The go/no-go verdict over recorded UAT sessions, as the seed defines it. Pure functions over plain values.

GO needs ``required`` (default 5) consecutive *trading days* of the exchange calendar, each with a session against a
real paper gateway that passed. The rules, in the order they apply:

* Only gateway sessions count. Simulator (ibsim) runs are *rehearsals*: reported separately, never counted.
* A gateway session counts for the trading day it ran on (its market date: the New York date of its start, when that
  date is a trading day of the calendar) and only when it overlapped that day's regular session, in full or in a
  configured window. A session on a weekend, a holiday or wholly outside the session hours is listed as not counted.
* Several sessions on one trading day count once; the day passes only when *every* gateway session of the day passed
  (fail closed: a failure is not erased by a rerun the same day).
* The run is read backwards from the newest trading day with a counted session: each earlier trading day of the
  calendar must have passed too. A failed day ends the run, and so does a trading day *without* any gateway session
  between recorded days: that day was not tested, and the seed asks for consecutive trading days. Trading days after
  the newest recorded session do not break the run (signing off on a weekend or the following week is fine).
* A sign-off rests on the sessions of the ``required`` newest days of the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ibstream.market_hours import EXCHANGE_TZ, latest_session, session_on

GATEWAY = "gateway"
REHEARSAL = "rehearsal"
#: Coverage of a session that did not overlap any regular session (weekend, holiday, evening).
OUTSIDE = "outside the session"
FULL = "full session"


@dataclass(frozen=True)
class SessionRecord:
    """One recorded UAT session, as the verdict sees it."""

    session_id: str
    kind: str  # GATEWAY or REHEARSAL
    market_date: dt.date | None
    coverage: str  # FULL, "window HH:MM-HH:MM" (New York) or OUTSIDE
    passed: bool
    failed_scenarios: tuple[str, ...] = ()
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class SignOff:
    """A recorded sign-off: who, when, the verdict at that moment and what it rests on."""

    signoff_id: str
    signed_by: str
    signed_at: dt.datetime
    note: str
    verdict: str
    trading_days: tuple[dt.date, ...]
    session_ids: tuple[str, ...]

    def render(self) -> str:
        days = ", ".join(d.isoformat() for d in self.trading_days)
        return (
            f"signed off {self.verdict} by {self.signed_by} at {self.signed_at.isoformat(timespec='seconds')} "
            f"({self.signoff_id}): trading days {days}; sessions {', '.join(self.session_ids)}; note: {self.note}"
        )


@dataclass(frozen=True)
class Rehearsals:
    """Simulator runs: reported, never counted."""

    total: int = 0
    passed: int = 0
    latest: SessionRecord | None = None


@dataclass(frozen=True)
class Verdict:
    go: bool
    required: int
    run_days: tuple[dt.date, ...]  # the consecutive passing trading days, newest first
    counted_sessions: tuple[str, ...]  # the sessions of the newest ``required`` run days (what a sign-off rests on)
    broken_by: str  # why the run stops where it does ("" when it reaches back past every recorded day)
    gateway_sessions: int
    not_counted: tuple[SessionRecord, ...]  # gateway sessions off the calendar or outside the session hours
    rehearsals: Rehearsals = field(default_factory=Rehearsals)
    signoffs: tuple[SignOff, ...] = ()

    @property
    def consecutive_days(self) -> int:
        return len(self.run_days)

    @property
    def signed_days(self) -> tuple[dt.date, ...]:
        return self.run_days[: self.required]

    def render(self) -> str:
        head = "GO" if self.go else "NO-GO"
        lines = [
            f"{head}: {self.consecutive_days} consecutive passing trading day(s) on a paper gateway "
            f"(required {self.required}; {self.gateway_sessions} gateway session(s) recorded)"
        ]
        if self.run_days:
            lines.append(f"  run: {', '.join(d.isoformat() for d in self.run_days)}")
        if self.broken_by:
            lines.append(f"  run ends: {self.broken_by}")
        if not self.go and self.consecutive_days < self.required:
            lines.append(f"  needs {self.required - self.consecutive_days} more passing trading day(s)")
        if self.go:
            lines.append(f"  rests on sessions {', '.join(self.counted_sessions)}")
        for record in self.not_counted[:5]:
            lines.append(
                f"  not counted: gateway session {record.session_id} ({record.market_date}, {record.coverage})"
            )
        lines.append(_render_rehearsals(self.rehearsals))
        lines += [f"  {signoff.render()}" for signoff in self.signoffs[:3]]
        return "\n".join(lines)


def _render_rehearsals(rehearsals: Rehearsals) -> str:
    line = f"rehearsals on ibsim (never counted): {rehearsals.passed} of {rehearsals.total} passed"
    latest = rehearsals.latest
    if latest is not None:
        result = "PASS" if latest.passed else f"FAIL: {', '.join(latest.failed_scenarios) or 'session error'}"
        line += f"; latest {latest.session_id} {result}"
    return line


def market_date(started_at: dt.datetime) -> dt.date:
    """The exchange calendar's date of a session: the New York date it started on."""
    return started_at.astimezone(EXCHANGE_TZ).date()


def coverage(started_at: dt.datetime, finished_at: dt.datetime) -> str:
    """How much of its trading day's regular session a wall-clock session covered."""
    session = session_on(market_date(started_at))
    if session is None or finished_at <= session.open or started_at >= session.close:
        return OUTSIDE
    if started_at <= session.open and finished_at >= session.close:
        return FULL
    start, end = max(started_at, session.open), min(finished_at, session.close)
    return f"window {start.astimezone(EXCHANGE_TZ):%H:%M}-{end.astimezone(EXCHANGE_TZ):%H:%M}"


def minutes_to_close(now: dt.datetime) -> float | None:
    """Wall minutes from ``now`` to the close of today's session (``None`` after the close or on a day without one):
    a gateway session started before the open and run this long covers the full session."""
    session = session_on(market_date(now))
    if session is None or now >= session.close:
        return None
    return (session.close - now).total_seconds() / 60


def previous_trading_day(day: dt.date) -> dt.date:
    return latest_session(day - dt.timedelta(days=1)).day


def _counts(record: SessionRecord, is_trading_day: Callable[[dt.date], bool]) -> bool:
    return (
        record.kind == GATEWAY
        and record.market_date is not None
        and is_trading_day(record.market_date)
        and record.coverage != OUTSIDE
    )


def _run(
    by_day: dict[dt.date, list[SessionRecord]], previous: Callable[[dt.date], dt.date]
) -> tuple[list[dt.date], str]:
    """The consecutive passing trading days, newest first, and why the run ends."""
    days = sorted(by_day, reverse=True)
    if not days:
        return [], "no gateway session on a trading day yet"
    run: list[dt.date] = []
    expected = days[0]
    for day in days:
        if day != expected:
            return run, f"no gateway session on trading day {expected.isoformat()}"
        failing = [r for r in by_day[day] if not r.passed]
        if failing:
            what = "; ".join(f"{r.session_id}: {', '.join(r.failed_scenarios) or 'session error'}" for r in failing)
            return run, f"trading day {day.isoformat()} failed ({what})"
        run.append(day)
        expected = previous(day)
    return run, ""


def verdict(
    records: Sequence[SessionRecord],
    required: int,
    signoffs: Sequence[SignOff] = (),
    *,
    is_trading_day: Callable[[dt.date], bool] = lambda day: session_on(day) is not None,
    previous: Callable[[dt.date], dt.date] = previous_trading_day,
) -> Verdict:
    """GO or NO-GO over every recorded session (any order); ``signoffs`` newest first, shown with the verdict."""
    counted = [r for r in records if _counts(r, is_trading_day)]
    by_day: dict[dt.date, list[SessionRecord]] = {}
    for record in counted:
        assert record.market_date is not None
        by_day.setdefault(record.market_date, []).append(record)
    run, broken_by = _run(by_day, previous)
    signed = run[:required]
    rehearsal_records = sorted(
        (r for r in records if r.kind != GATEWAY),
        key=lambda r: (r.finished_at or dt.datetime.min.replace(tzinfo=dt.UTC), r.session_id),
    )
    return Verdict(
        go=len(run) >= required,
        required=required,
        run_days=tuple(run),
        counted_sessions=tuple(sorted(r.session_id for day in signed for r in by_day[day])),
        broken_by=broken_by,
        gateway_sessions=sum(1 for r in records if r.kind == GATEWAY),
        not_counted=tuple(r for r in records if r.kind == GATEWAY and r not in counted),
        rehearsals=Rehearsals(
            total=len(rehearsal_records),
            passed=sum(1 for r in rehearsal_records if r.passed),
            latest=rehearsal_records[-1] if rehearsal_records else None,
        ),
        signoffs=tuple(signoffs),
    )


def refuse_sign_off(decision: Verdict) -> str | None:
    """Why a sign-off must be refused now (``None``: it may be recorded). Only a GO can be signed off."""
    if decision.go:
        return None
    return f"refused: the verdict is NO-GO ({decision.consecutive_days} of {decision.required} trading days)" + (
        f"; {decision.broken_by}" if decision.broken_by else ""
    )

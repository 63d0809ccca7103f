"""The UAT harness reports its phases: a session's market day says what it waits for (the market time it runs to,
the next scheduled action) and each event; no process is started (the market clock is a plain function)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.market_hours import EXCHANGE_TZ
from tooling.progress import Progress, use
from tooling.uat.harness import Session, SessionPlan


def test_a_sessions_day_reports_what_it_waits_for_and_each_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = SessionPlan("main", speed=600.0, start=dt.time(9, 0), minutes=120, approve="none")
    session = Session(plan, load_settings(state_dir=tmp_path), tmp_path / "main", "s1")
    clock = [session.at("09:40")]

    def market_time() -> dt.datetime:  # ten market minutes per reading
        clock[0] += dt.timedelta(minutes=10)
        return clock[0]

    def drop() -> None:
        session.note("gateway dropped every connection")

    monkeypatch.setattr(session, "market_time", market_time)
    monkeypatch.setattr(session, "alive_check", lambda: None)
    monkeypatch.setattr("tooling.uat.harness.time.sleep", lambda seconds: None)
    out = io.StringIO()
    with use(Progress("uat", out, interactive=False)):
        session.run_until(session.at("10:30"), [("10:00", drop)])
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "session main: running the market day — waiting for market time 10:30 NY (next: drop at 10:00 NY)",
        "session main at 10:10:00 NY: gateway dropped every connection",
        "session main: running the market day — waiting for market time 10:30 NY",
    ]
    assert session.log == ["10:10:00 NY  gateway dropped every connection"]
    assert clock[0].astimezone(EXCHANGE_TZ).time() >= dt.time(10, 30)

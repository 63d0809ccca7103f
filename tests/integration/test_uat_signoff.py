"""UAT sessions and sign-offs in a real warehouse (chDB embedded), through `ibstream uat --verdict / --sign-off`.

Sessions are recorded the way `ibstream uat` records them (``record_session``), on chosen market dates, so the
verdict over trading days can be driven without a paper gateway: rehearsals never count, a sign-off of a no-go is
refused (exit 1, nothing recorded), a go is signed off (exit 0) and the row, the report and the verdict show it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ibstream.cli import main
from ibstream.config import Settings, load_settings
from ibstream.market_hours import session_on
from ibstream.warehouse import Warehouse
from ibstream.warehouse.migrations import UAT_SESSIONS_TABLE, UAT_SIGNOFFS_TABLE
from tooling.uat import UatRun, load_verdict
from tooling.uat.catalogue import BY_ID
from tooling.uat.model import Judge, skipped
from tooling.uat.runner import record_session
from tooling.uat.verdict import FULL, GATEWAY, REHEARSAL

pytestmark = pytest.mark.integration

# Wed 14 … Fri 16 Jan 2026, then the weekend and Martin Luther King day (Mon 19): Tue 20 and Wed 21 follow Fri 16.
DAYS = ["2026-01-14", "2026-01-15", "2026-01-16", "2026-01-20", "2026-01-21"]


def _record(settings: Settings, tmp_path: Path, session_id: str, day: str, *, kind: str, passed: bool = True) -> None:
    session = session_on(dt.date.fromisoformat(day))
    assert session is not None
    judge = Judge(BY_ID["flow.manual"])
    judge.expect(passed, "no fills")
    results = [judge.result(), skipped(BY_ID["market.open"], "read-only")]
    meta = {
        "session_id": session_id,
        "target": "paper gateway 127.0.0.1:4002 (read-only)" if kind == GATEWAY else "ibsim",
        "kind": kind,
        "market_date": day,
        "coverage": FULL,
        "started_at": session.open.isoformat(),
        "finished_at": session.close.isoformat(),
    }
    report = tmp_path / session_id / "report.md"
    record_session(settings, UatRun(session_id, results, meta, report, report.with_suffix(".html"), report))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("IBSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IBSTREAM_UAT_REQUIRED_SESSIONS", "5")
    return load_settings()


def _signoffs(settings: Settings) -> list[tuple[Any, ...]]:
    with Warehouse.open(settings) as warehouse:
        return warehouse.query(
            f"SELECT signed_by, note, verdict, required, trading_days, session_ids FROM "
            f"{warehouse.table(UAT_SIGNOFFS_TABLE)}"
        ).rows


def test_sign_off_is_refused_on_no_go_and_recorded_on_go(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = str(tmp_path / "reports")
    # Five passing rehearsals and four passing gateway days: no-go, and the rehearsals are reported, not counted.
    for i, day in enumerate(DAYS):
        _record(settings, tmp_path, f"rehearsal{i}", day, kind=REHEARSAL)
    for i, day in enumerate(DAYS[1:]):
        _record(settings, tmp_path, f"gw{i}", day, kind=GATEWAY)
    assert main(["uat", "--verdict"]) == 1
    out = capsys.readouterr().out
    assert "NO-GO: 4 consecutive passing trading day(s)" in out and "5 of 5 passed" in out
    assert main(["uat", "--sign-off", "--by", "alice", "--note", "looks fine", "--reports-dir", reports]) == 1
    assert "refused: the verdict is NO-GO (4 of 5" in capsys.readouterr().err
    assert _signoffs(settings) == []
    assert main(["uat", "--sign-off", "--by", "alice"]) == 2  # --note missing

    # The fifth trading day passes (twice: counted once); the sign-off is recorded with what it rests on.
    _record(settings, tmp_path, "gw-first", DAYS[0], kind=GATEWAY)
    _record(settings, tmp_path, "gw-first-again", DAYS[0], kind=GATEWAY)
    assert main(["uat", "--sign-off", "--by", "alice", "--note", "five days clean", "--reports-dir", reports]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GO: 5 consecutive passing trading day(s)") and "recorded: signed off GO by alice" in out
    [(by, note, verdict, required, days, session_ids)] = _signoffs(settings)
    assert (by, note, verdict, required) == ("alice", "five days clean", "GO", 5)
    assert [d.isoformat() for d in days] == sorted(DAYS, reverse=True)
    assert sorted(session_ids) == sorted(["gw-first", "gw-first-again", "gw0", "gw1", "gw2", "gw3"])
    report = next(Path(reports).glob("signoff-*.md")).read_text()
    assert "signed by alice" in report and "gw-first-again" in report and "five days clean" in report
    assert next(Path(reports).glob("signoff-*.html")).exists()

    # The verdict shows the sign-off; a failing gateway session on the newest day turns it into a no-go.
    assert main(["uat", "--verdict"]) == 0
    assert "signed off GO by alice" in capsys.readouterr().out
    _record(settings, tmp_path, "gw-bad", DAYS[-1], kind=GATEWAY, passed=False)
    decision = load_verdict(settings)
    assert not decision.go and "2026-01-21 failed (gw-bad: flow.manual)" in decision.broken_by
    assert decision.signoffs[0].signed_by == "alice"


def test_a_session_recorded_before_trading_days_is_read_from_its_target_and_start(settings: Settings) -> None:
    # A row written by the earlier `uat` (no kind, date or coverage): the verdict infers them.
    session = session_on(dt.date(2026, 1, 16))
    assert session is not None
    with Warehouse.open(settings) as warehouse:
        warehouse.client.insert(
            f"{warehouse.database}.{UAT_SESSIONS_TABLE}",
            [
                ["old-gw", session.open, session.close, "paper gateway h:4002 (read-only)", True, 1, 1, 0, [], "", ""],
                ["old-sim", session.open, session.close, "ibsim", True, 1, 1, 0, [], "", ""],
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
            ],
        )
    decision = load_verdict(settings, required=1)
    assert decision.go and decision.run_days == (dt.date(2026, 1, 16),) and decision.counted_sessions == ("old-gw",)
    assert decision.rehearsals.total == 1

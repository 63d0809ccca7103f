"""The live progress reporter of uat and chaos: phase lines, the terminal's status line, quiet pipes and CI."""

from __future__ import annotations

import io
import sys

import pytest

from tooling import progress as progress_module
from tooling.progress import Progress, current, elapsed_text, is_interactive, use


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reporter reads CI from the environment: these tests say when they want it (the CI run sets CI=true)."""
    monkeypatch.delenv("CI", raising=False)


def test_elapsed_reads_in_seconds_minutes_and_hours() -> None:
    assert [elapsed_text(s) for s in (0, 7.9, 65, 3725)] == ["+0s", "+7s", "+1m05s", "+1h02m"]


def test_a_pipe_gets_one_line_per_phase_and_a_heartbeat_at_most_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = Progress("uat", out, interactive=False, heartbeat=30.0, clock=clock)
    reporter.phase("session main: starting", awaiting="api, agent0, streams healthy")
    for _ in range(100):  # polled every 0.3 s for 29.7 s: no line
        clock.now += 0.3
        reporter.status("market 09:31:00 NY")
    reporter.phase("session main: starting", awaiting="api, agent0, streams healthy")  # the same phase: no line
    clock.now += 1.0
    reporter.status("market 09:42:10 NY")  # 30.7 s after the phase line: one heartbeat
    reporter.status("market 09:42:11 NY")
    clock.now += 5.0
    reporter.phase("session main: running the day", awaiting="market time 11:00 NY")
    lines = out.getvalue().splitlines()
    assert lines == [
        "[uat +0s] session main: starting — waiting for api, agent0, streams healthy",
        "[uat +30s] … still session main: starting — waiting for api, agent0, streams healthy (market 09:42:10 NY)",
        "[uat +35s] session main: running the day — waiting for market time 11:00 NY",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_terminal_gets_an_updating_status_line_redrawn_at_most_every_interval() -> None:
    out, clock = FakeTerminal(), Clock()
    reporter = Progress("chaos", out, redraw=0.5, clock=clock, width=200)
    assert reporter.interactive
    reporter.phase("fault #02 broker_restart injected", awaiting="recovery")
    for _ in range(16):  # every 0.125 s for 2 s: redrawn 4 times, not 16
        clock.now += 0.125
        reporter.status(f"{clock.now - 100:.2f}s into the fault")
    text = out.getvalue()
    assert text.startswith("[chaos +0s] fault #02 broker_restart injected — waiting for recovery\n")
    # The phase line, its first status, then four redraws: each status starts by clearing the line.
    assert text.count("\r\x1b[K[chaos") == 1 + 4
    assert "(2.00s into the fault)" in text.rsplit("\r", 1)[-1]
    reporter.phase("fault #02 recovered in 3.1s")
    # A new phase clears the status line before its own line; close() leaves the terminal clean.
    assert out.getvalue().endswith(
        "\r\x1b[K[chaos +2s] fault #02 recovered in 3.1s\n\r\x1b[K[chaos +2s] fault #02 recovered in 3.1s"
    )
    reporter.close()
    assert out.getvalue().endswith("\r\x1b[K")


def test_a_status_line_is_cut_to_the_terminal_width() -> None:
    out = FakeTerminal()
    reporter = Progress("uat", out, width=40, clock=Clock())
    reporter.phase("session desk: " + "x" * 80)
    last = out.getvalue().rsplit("\r\x1b[K", 1)[-1]
    assert len(last) <= 40 and last.endswith("…")


@pytest.mark.parametrize(("ci", "interactive"), [("true", False), ("1", False), ("", True), ("false", True)])
def test_ci_means_plain_lines_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch, ci: str, interactive: bool) -> None:
    monkeypatch.setenv("CI", ci)
    assert is_interactive(FakeTerminal()) is interactive
    assert not is_interactive(io.StringIO())


def test_the_current_reporter_is_silent_outside_a_run_and_restored_after_it() -> None:
    before = current()
    assert before.stream is None
    before.phase("nothing to see")  # silent: no stream, no error
    out = io.StringIO()
    with use(Progress("uat", out, interactive=False)) as reporter:
        assert current() is reporter
        current().phase("session close: starting")
    assert current() is before
    assert out.getvalue().endswith("session close: starting\n")
    assert progress_module.current() is before


def test_a_broken_stream_silences_the_reporter_instead_of_stopping_the_run() -> None:
    out = io.StringIO()
    reporter = Progress("uat", out, interactive=False)
    out.close()
    reporter.phase("session main: starting")
    reporter.status("still")
    assert reporter.stream is None


def test_a_line_printed_while_the_status_shows_clears_it_first(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal, stdout = FakeTerminal(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    with use(Progress("uat", terminal, interactive=True, clock=Clock(), width=200)):
        current().phase("session main: starting")
        assert terminal.getvalue().endswith("[uat +0s] session main: starting")  # the status line is up
        print("using the Kafka broker at 127.0.0.1:9092")
        assert terminal.getvalue().endswith("\r\x1b[K")  # cleared before the line was printed
    assert sys.stdout is stdout and stdout.getvalue() == "using the Kafka broker at 127.0.0.1:9092\n"
    with use(Progress("uat", io.StringIO(), interactive=False)):
        assert sys.stdout is stdout  # no status line, nothing to clear: stdout is left alone

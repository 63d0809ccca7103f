"""Live progress of the long operator runs (``ibstream uat``, ``ibstream chaos``) on stderr.

Two kinds of output, both on stderr so stdout keeps carrying only the report:

* a **phase line** whenever the phase changes (a session, scenario or fault starts, or what is awaited changes):
  ``[uat +1m05s] session main: running the day — waiting for market time 11:00 NY``;
* a **status** (the volatile detail: market time, seconds into a fault): on a terminal an updating line redrawn at
  most every ``redraw`` seconds; without one (a pipe, CI) never redrawn, only repeated as a plain ``… still`` line at
  most every ``heartbeat`` seconds, so a CI log shows the run is alive without a line per poll.

The run's code reports through :func:`current` (set by :func:`use`), so the phase points of the UAT harness and the
chaos campaign need no reporter passed through every call; the default reporter is silent. Thread-safe: the UAT desk
session may run in a thread of its own. While a terminal shows the status line, whatever the run prints on stdout
first clears it (:func:`use` wraps ``sys.stdout``), so a printed line never lands on the end of the status.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def elapsed_text(seconds: float) -> str:
    """``+7s``, ``+1m05s``, ``+1h02m``: short enough for a status line."""
    whole = int(max(seconds, 0.0))
    if whole < 60:
        return f"+{whole}s"
    if whole < 3600:
        return f"+{whole // 60}m{whole % 60:02d}s"
    return f"+{whole // 3600}h{whole % 3600 // 60:02d}m"


def is_interactive(stream: TextIO) -> bool:
    """A terminal a person watches: a TTY, and not under CI (CI=true often runs with a pseudo-terminal)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not ci


class Progress:
    """Reports phases and a status line; see the module docstring. ``stream=None`` reports nothing."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None,
        *,
        interactive: bool | None = None,
        redraw: float = 0.5,
        heartbeat: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.label = label
        self.stream = stream
        self.interactive = is_interactive(stream) if interactive is None and stream is not None else bool(interactive)
        self.redraw, self.heartbeat, self.clock = redraw, heartbeat, clock
        self.width = width
        self.started = clock()
        self.current_phase = ""
        self.awaited = ""
        self.detail = ""
        self._last_drawn = float("-inf")
        self._last_line = self.started
        self._status_shown = False
        self._lock = threading.Lock()

    @classmethod
    def to_stderr(cls, label: str) -> Progress:
        return cls(label, sys.stderr)

    @classmethod
    def silent(cls) -> Progress:
        return cls("", None)

    def _prefix(self) -> str:
        return f"[{self.label} {elapsed_text(self.clock() - self.started)}]"

    def _text(self, detail: bool) -> str:
        text = f"{self._prefix()} {self.current_phase}"
        if self.awaited:
            text += f" — waiting for {self.awaited}"
        if detail and self.detail:
            text += f" ({self.detail})"
        return text

    def phase(self, text: str, awaiting: str = "") -> None:
        """A new phase (and what it waits for): one line, whatever the stream."""
        with self._lock:
            if self.stream is None or (text, awaiting) == (self.current_phase, self.awaited):
                return
            self.current_phase, self.awaited, self.detail = text, awaiting, ""
            self._clear_status()
            self._write(self._text(detail=False) + "\n")
            self._last_line = self.clock()
            if self.interactive:
                self._draw_status()

    def status(self, detail: str) -> None:
        """The phase's volatile detail: redrawn on a terminal (rate-limited), a heartbeat line otherwise."""
        with self._lock:
            if self.stream is None:
                return
            self.detail = detail
            now = self.clock()
            if self.interactive:
                if now - self._last_drawn >= self.redraw:
                    self._draw_status()
            elif now - self._last_line >= self.heartbeat:
                self._write(self._text(detail=True).replace("] ", "] … still ", 1) + "\n")
                self._last_line = now

    def close(self) -> None:
        """Clear the status line (call before the report is printed)."""
        with self._lock:
            if self.stream is not None:
                self._clear_status()

    # --- the terminal's status line ---

    def _draw_status(self) -> None:
        columns = self.width or shutil.get_terminal_size((100, 20)).columns
        text = self._text(detail=True)
        if len(text) >= columns:
            text = text[: max(columns - 2, 1)] + "…"
        self._write("\r\x1b[K" + text)
        self._status_shown = True
        self._last_drawn = self.clock()

    def _clear_status(self) -> None:
        if self._status_shown:
            self._write("\r\x1b[K")
            self._status_shown = False

    def _write(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must never stop the run it reports on
            self.stream = None


class _ClearsStatus:
    """``sys.stdout`` while a status line is shown: each write clears the status line first."""

    def __init__(self, wrapped: TextIO, progress: Progress) -> None:
        self._wrapped, self._progress = wrapped, progress

    def write(self, text: str) -> int:
        self._progress.close()
        return self._wrapped.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


_current = Progress.silent()
_current_lock = threading.Lock()


def current() -> Progress:
    """The reporter of the run in progress (silent outside :func:`use`)."""
    return _current


@contextmanager
def use(progress: Progress) -> Iterator[Progress]:
    """Make ``progress`` the current reporter for the block (and clear its status line at the end)."""
    global _current
    with _current_lock:
        previous, _current = _current, progress
    stdout = sys.stdout
    if progress.interactive:
        sys.stdout = _ClearsStatus(stdout, progress)  # a TextIO by delegation (__getattr__)
    try:
        yield progress
    finally:
        progress.close()
        sys.stdout = stdout
        with _current_lock:
            _current = previous

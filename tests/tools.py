"""Tests that need a tool from outside Python (helm, promtool, Chromium): skipped with the reason on a developer's
machine that lacks it, failed under CI (``CI`` set), where ``ops/dev install`` must have installed it.

A skip in CI would hide a missing install step: the suite would stay green while a whole area went untested.
"""

from __future__ import annotations

import os

import pytest


def require_tool(missing_reason: str | None) -> None:
    """Go on when ``missing_reason`` is None; otherwise skip (or fail, in CI) this test, saying why."""
    if missing_reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {missing_reason}", pytrace=False)
    pytest.skip(missing_reason)

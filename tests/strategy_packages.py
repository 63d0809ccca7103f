"""A strategy package written the way a user writes one (see the README's "Write your own strategy"), built into a
wheel and pip-installed into a directory, so tests find it exactly as an installed package is found: through its
``entry_points.txt`` on ``sys.path``. The wheel is assembled directly (a wheel is a zip with a dist-info) because
the test environment has no ``wheel`` package to build one with, and builds must not fetch from the network."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

DISTRIBUTION = "acme_strategies"
VERSION = "0.3.1"

#: The package's code: a level breakout (the strategy under test) and one that always raises (isolation).
LEVEL_MODULE = textwrap.dedent(
    '''
    """A level breakout: buy when the close crosses above a configured price."""

    from pydantic import Field

    from ibstream.strategies import Bars, Proposal, Side, Strategy, StrategyParams


    class LevelParams(StrategyParams):
        level: float = Field(gt=0, description="the price whose upward cross is a buy")
        stop_distance: float = Field(default=1.0, gt=0, description="stop below the entry; the target twice that")


    class LevelBreak(Strategy):
        name = "level_break"
        version = "0.3.1"
        params_model = LevelParams
        timeframes = ("5s",)
        description = "Buy the close that crosses above a level."

        @property
        def warmup(self) -> int:
            return 2

        def on_bar(self, bars: Bars) -> Proposal | None:
            previous, last = bars[-2].close, bars[-1].close
            if not previous <= self.params.level < last:
                return None
            distance = self.params.stop_distance
            return Proposal(
                side=Side.BUY,
                confidence=0.9,
                entry=last,
                stop=last - distance,
                take_profit=last + 2 * distance,
                features={"level": self.params.level},
                rationale=f"close {last} crossed above {self.params.level}",
            )


    class Faulty(Strategy):
        name = "faulty"
        version = "0.0.1"

        @property
        def warmup(self) -> int:
            return 1

        def on_bar(self, bars: Bars) -> Proposal | None:
            raise ValueError("a bug in the user's strategy")
    '''
)
ENTRY_POINTS = {"level_break": "acme_strategies.level:LevelBreak", "faulty": "acme_strategies.level:Faulty"}


def _hash(content: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()


def build_wheel(directory: Path) -> Path:
    """The package as a wheel in ``directory``."""
    info = f"{DISTRIBUTION}-{VERSION}.dist-info"
    points = "[ibstream.strategies]\n" + "".join(f"{name} = {value}\n" for name, value in ENTRY_POINTS.items())
    files = {
        f"{DISTRIBUTION}/__init__.py": "",
        f"{DISTRIBUTION}/level.py": LEVEL_MODULE,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: acme-strategies\nVersion: {VERSION}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: ibstream-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": points,
    }
    record = [f"{name},{_hash(text.encode())},{len(text.encode())}" for name, text in files.items()]
    wheel = directory / f"{DISTRIBUTION}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return wheel


def pip_install(directory: Path) -> Path:
    """Build the wheel and ``pip install --target`` it (no index, no dependencies); the directory to put on
    ``sys.path`` / ``PYTHONPATH``."""
    target = directory / "site"
    wheel = build_wheel(directory)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    return target

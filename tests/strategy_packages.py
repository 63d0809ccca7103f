"""The strategy package of the README's "Write your own strategy" (its pyproject and module, read from the README),
plus one strategy that always raises, built into a wheel and pip-installed into a directory, so tests find it
exactly as an installed package is found: through its ``entry_points.txt`` on ``sys.path``. The wheel is assembled
directly (a wheel is a zip with a dist-info) because the test environment has no ``wheel`` package to build one
with, and builds must not fetch from the network."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from ibstream.config import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def readme_example() -> tuple[dict[str, Any], str]:
    """The README's "Write your own strategy" package: its pyproject (parsed) and its module's code, so the test
    runs exactly what the README shows."""
    text = README.read_text()
    section = text[text.index("## Write your own strategy") :]
    pyproject = section[section.index("```toml\n") + 8 :]
    pyproject = pyproject[: pyproject.index("```")]
    module = section[section.index("```python\n") + 10 :]
    return tomllib.loads(pyproject), module[: module.index("```")]


_PROJECT, _MODULE = readme_example()
DISTRIBUTION = _PROJECT["project"]["name"].replace("-", "_")
VERSION: str = _PROJECT["project"]["version"]
#: Two more strategies beside the README's: one always raises (isolation); one buys after a run of rising closes
#: with a percentage bracket, which fires often on ibsim's random walk (the end-to-end trade).
FAULTY = textwrap.dedent(
    """

    class RisingParams(StrategyParams):
        count: int = Field(default=3, ge=1)
        stop_pct: float = Field(default=0.5, gt=0)


    class RisingCloses(Strategy):
        name = "rising_closes"
        version = "1.2.0"
        params_model = RisingParams

        @property
        def warmup(self) -> int:
            return self.params.count + 1

        def on_bar(self, bars: Bars) -> Proposal | None:
            closes = [bar.close for bar in bars[-(self.params.count + 1):]]
            if not all(a < b for a, b in zip(closes, closes[1:])):
                return None
            entry = closes[-1]
            distance = entry * self.params.stop_pct / 100
            return Proposal(Side.BUY, 0.95, entry, entry - distance, entry + 2 * distance,
                            rationale=f"{self.params.count} rising closes")

    class Faulty(Strategy):
        name = "faulty"
        version = "0.0.1"

        @property
        def warmup(self) -> int:
            return 1

        def on_bar(self, bars: Bars) -> Proposal | None:
            raise ValueError("a bug in the user's strategy")
    """
)
LEVEL_MODULE = _MODULE + FAULTY
ENTRY_POINTS = {
    **_PROJECT["project"]["entry-points"]["ibstream.strategies"],
    "faulty": f"{DISTRIBUTION}.level:Faulty",
    "rising_closes": f"{DISTRIBUTION}.level:RisingCloses",
}


def _hash(content: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()


def build_wheel(directory: Path) -> Path:
    """The package as a wheel in ``directory``."""
    info = f"{DISTRIBUTION}-{VERSION}.dist-info"
    points = "[ibstream.strategies]\n" + "".join(f"{name} = {value}\n" for name, value in ENTRY_POINTS.items())
    files = {
        f"{DISTRIBUTION}/__init__.py": "",
        f"{DISTRIBUTION}/level.py": LEVEL_MODULE,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {_PROJECT['project']['name']}\nVersion: {VERSION}\n",
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

"""A backtest's outputs pinned on a seeded input: every signal, outcome, broker record (order events and fills),
trade, run count, rejection and equity sample of the built-ins over the benchmark's random walk must stay exactly
what the engine produced before it was made faster (``data/backtest_pinned.json``).

Only a deliberate change of the backtest's behaviour may change the file; regenerate it then with
``python -m tests.unit.tooling.test_backtest_pinned`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.backtest import session_bars
from ibstream.config import load_settings
from ibstream.contracts import RoutedOrder
from ibstream.strategies.instances import default_instances
from tooling.backtest.broker import BrokerRecord, Fill, SimBroker
from tooling.backtest.engine import Backtest, BacktestConfig
from tooling.backtest.market import BarMarket

PINNED = Path(__file__).parent / "data" / "backtest_pinned.json"
#: Bars per symbol and symbols: enough for every strategy to signal, trades to fill and exits to hit.
BARS, SYMBOLS = 240, 4


def _record(record: BrokerRecord) -> dict[str, Any]:
    if isinstance(record, Fill):
        return {
            "leg": record.leg.value,
            "execution": record.execution.model_dump(mode="json"),
            "position": record.position.model_dump(mode="json"),
        }
    return {"event": record.model_dump(mode="json")}


class RecordingBroker(SimBroker):
    """The backtest's broker, keeping every record it hands the engine, in order."""

    def __init__(self, market: BarMarket, cash: float) -> None:
        super().__init__(market, market.last, cash)
        self.records: list[BrokerRecord] = []

    def place(self, order: RoutedOrder, now: float) -> list[BrokerRecord]:
        made = super().place(order, now)
        self.records += made
        return made

    def advance(self, now: float) -> list[BrokerRecord]:
        made = super().advance(now)
        self.records += made
        return made


def backtest_outputs(state_dir: Path) -> dict[str, Any]:
    """The seeded backtest's outputs as JSON values (every broker record the engine saw, in order)."""
    config = BacktestConfig.from_settings(load_settings(state_dir=state_dir))
    backtest = Backtest(default_instances(), config)
    broker = backtest.broker = RecordingBroker(backtest.market, config.initial_cash)
    result = backtest.run(session_bars(BARS, SYMBOLS))
    outputs: dict[str, Any] = json.loads(
        json.dumps(
            {
                "signals": [signal.model_dump(mode="json") for signal in result.signals],
                "outcomes": [outcome.model_dump(mode="json") for outcome in result.outcomes],
                "broker_records": [_record(record) for record in broker.records],
                "trades": {order_id: vars(trade) for order_id, trade in result.trades.items()},
                "runs": result.runs,
                "rejections": result.rejections,
                "equity": result.equity,
                "marks": result.marks,
                "bars": result.bars,
            },
            default=str,
            sort_keys=True,
        )
    )
    return outputs


def test_a_seeded_backtest_gives_exactly_its_pinned_signals_outcomes_orders_and_fills(tmp_path: Path) -> None:
    pinned = json.loads(PINNED.read_text())
    outputs = backtest_outputs(tmp_path)
    assert len(outputs["signals"]) > 20 and len(outputs["broker_records"]) > 20  # the input exercises the engine
    for part in ("signals", "outcomes", "broker_records", "trades", "runs", "rejections", "equity", "marks", "bars"):
        assert outputs[part] == pinned[part], part


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        PINNED.write_text(json.dumps(backtest_outputs(Path(state)), separators=(",", ":"), sort_keys=True) + "\n")

"""Deterministic ids: each kind is exactly ``uuid.uuid5(NAMESPACE, "kind|parts")`` (the ids live and replayed
records already carry), whatever the text."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from ibstream import ids


def _reference(kind: str, *parts: str) -> str:
    return str(uuid.uuid5(ids.NAMESPACE, "|".join((kind, *parts))))


def test_every_id_kind_is_the_uuid5_of_its_kind_and_parts() -> None:
    rng = random.Random(7)
    alphabet = "AZaz09|-_ .:éü€漢\U0001f600"
    for _ in range(300):
        a, b = ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2))
        at = datetime.fromtimestamp(rng.randint(0, 2_000_000_000), UTC)
        assert ids.signal_id(a, b, at) == _reference("signal", a, b, at.isoformat())
        assert ids.run_id(a) == _reference("run", a)
        assert ids.order_id(a) == _reference("order", a)
        assert ids.flatten_order_id(a, b) == _reference("flatten", a, b)
        assert ids.decision_id(a) == _reference("decision", a)
        assert ids.transition_id(a, b) == _reference("transition", a, b, "")
        assert ids.plan_id(a, 1234.5, 0.5) == _reference("plan", a, "1234.50", "0.5000")

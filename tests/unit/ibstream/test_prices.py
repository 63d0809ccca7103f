"""Prices on the tick grid IB accepts (error 110 otherwise)."""

from __future__ import annotations

import pytest

from ibstream.contracts.enums import Side
from ibstream.prices import bracket_on_ticks, min_tick, on_tick, to_tick


def test_the_tick_is_a_cent_from_one_dollar_and_a_hundredth_of_a_cent_below() -> None:
    assert (min_tick(190.0), min_tick(1.0), min_tick(0.9999)) == (0.01, 0.01, 0.0001)
    assert (to_tick(190.1234), to_tick(190.125001), to_tick(0.123456)) == (190.12, 190.13, 0.1235)
    assert on_tick(190.12) and on_tick(0.1235) and not on_tick(190.123) and not on_tick(0.12345)


@pytest.mark.parametrize(
    ("side", "raw", "expected"),
    [
        (Side.BUY, (190.004, 188.3333, 193.6667), (190.0, 188.33, 193.67)),
        (Side.SELL, (190.004, 191.6667, 186.3333), (190.0, 191.67, 186.33)),
        # a stop and a target within half a tick of the entry stay a tick away on their own side
        (Side.BUY, (190.0, 189.999, 190.001), (190.0, 189.99, 190.01)),
        (Side.SELL, (190.0, 190.001, 189.999), (190.0, 190.01, 189.99)),
    ],
)
def test_a_bracket_lands_on_ticks_with_its_stop_and_target_on_their_sides(
    side: Side, raw: tuple[float, float, float], expected: tuple[float, float, float]
) -> None:
    assert bracket_on_ticks(side, *raw) == expected

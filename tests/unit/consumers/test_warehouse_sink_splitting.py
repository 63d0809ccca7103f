"""Bisecting a refused insert: every good row lands, each refused row is found alone, in few inserts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from consumers.warehouse_sink.splitting import insert_bisecting
from ibstream.warehouse import WarehouseError


class RefusingTable:
    """A table that refuses any insert containing one of the ``poison`` values, as ClickHouse refuses a block."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.stored: list[int] = []
        self.inserts = 0

    def insert(self, rows: Sequence[int]) -> None:
        self.inserts += 1
        bad = sorted(self.poison.intersection(rows))
        if bad:
            raise WarehouseError(f"row {bad[0]} violates a constraint")
        self.stored.extend(rows)


@pytest.mark.parametrize(
    ("size", "poison"),
    [(1, {0}), (2, {1}), (10, {3}), (1000, {999}), (1000, {0, 500, 999}), (7, {0, 1, 2, 3, 4, 5, 6})],
)
def test_every_good_row_lands_and_each_refused_row_is_reported_alone(size: int, poison: set[int]) -> None:
    table = RefusingTable(poison)
    rows = list(range(size))
    failed = insert_bisecting(rows, table.insert, WarehouseError("the whole batch was refused"))
    assert [index for index, _ in failed] == sorted(poison)
    assert sorted(table.stored) == [row for row in rows if row not in poison]
    for index, error in failed:
        assert str(error) == f"row {index} violates a constraint" or size == 1


def test_one_poison_row_among_a_thousand_costs_about_two_log2_inserts() -> None:
    table = RefusingTable({617})
    insert_bisecting(list(range(1000)), table.insert, WarehouseError("refused"))
    assert table.inserts <= 2 * 10


def test_an_error_other_than_a_refusal_stops_the_split() -> None:
    def unreachable(rows: Sequence[int]) -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        insert_bisecting([1, 2, 3], unreachable, WarehouseError("refused"))

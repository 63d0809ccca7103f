"""Quantities at the IB boundary (pure): IB's 10.x client speaks ``decimal.Decimal``, our contracts carry doubles.

IB's API 10.x gives every size as a ``Decimal`` (positions, order and filled quantities, execution shares, bar
volumes, tick sizes) because fractional shares exist; it takes an order's quantity as a ``Decimal`` too and writes it
with ``str()``. Our Avro contracts carry quantities as ``double``, which holds every quantity IB can have (fractional
shares go to a few decimal places, far inside a double's 15 significant digits), so no contract changes.

The two directions are exact where it matters:

- in: ``float(Decimal)`` is exact for whole numbers and the nearest double otherwise, whose shortest ``repr`` is the
  decimal IB sent (``Decimal("0.3")`` -> ``0.3``);
- out: the ``Decimal`` of a double's shortest ``repr``, never ``Decimal(float)`` (which would spell out the binary
  value: ``Decimal(0.1)`` is 0.1000000000000000055...), and a whole number without a fraction, so a 100-share order
  goes out as ``100``, never ``100.0`` nor ``99.99999``.
"""

from __future__ import annotations

from decimal import Decimal

#: ibapi 10.x's "no value" for a Decimal field (``ibapi.const.UNSET_DECIMAL``), what it decodes an empty size into.
UNSET_DECIMAL = Decimal(2**127 - 1)


def quantity_from_ib(value: Decimal | float | int) -> float:
    """A size IB gave (a ``Decimal`` from 10.x, a number from older clients) as the double our contracts carry; IB's
    unset marker reads as 0, as 9.81 decoded an empty size. Bars' WAP, a Decimal in 10.x too, reads the same way."""
    if isinstance(value, Decimal) and value == UNSET_DECIMAL:
        return 0.0
    return float(value)


def quantity_to_ib(quantity: float) -> Decimal:
    """The ``Decimal`` IB's client sends for an order quantity: the double's shortest decimal, whole numbers without a
    fraction (``100.0`` -> ``Decimal("100")``, ``0.25`` -> ``Decimal("0.25")``)."""
    exact = Decimal(repr(float(quantity)))
    if exact == exact.to_integral_value():
        return exact.quantize(Decimal(1))
    return exact.normalize()

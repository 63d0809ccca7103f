"""Order terms: the fields an order intent and a routed order share, declared once.

The terms are declared in ``avro/include/order_terms.avsc`` and ``OrderIntent`` and ``RoutedOrder`` include them
(``{"include": "order_terms"}`` in their field lists, expanded by ``ibstream.contracts.serde.read_schema``). Here
``OrderTerms`` mirrors that include field by field (the parity test checks it as it checks every record) and both
models inherit it; ``ibstream.risk`` and ``api.queries`` take their field lists from ``TERM_FIELDS``.

Why an include and not a nested Avro record (``"terms": OrderTerms``, a named type the two schemas share):

* Nesting changes the wire format. A reader with a nested ``terms`` field cannot resolve the flat ``symbol``,
  ``side``, … that every record already on ``orders.intents.v1`` and ``orders.routed.v1`` was written with: those
  fields would be dropped and ``terms`` would need a default, so the change is either refused by
  BACKWARD_TRANSITIVE (registry and ``SchemaStore``) or silently loses the terms of old orders. Honest nesting means
  new ``.v2`` topics and a migration of retained data; that buys nothing here.
* Nesting changes the warehouse: ``ibstream.warehouse.schema`` maps a nested record to one ``Tuple(...)`` column,
  so ``limit_price`` and friends would leave the order tables, and the audits, API queries and trade reviews that
  read them as columns would break, with old rows in the old shape.
* The include is a property of how the schema files are written, not of the schemas: the expanded schema is
  exactly the flat one it replaced (same JSON text, same CRC-64-AVRO fingerprint, same registry subject version),
  so retained records, the registry and the warehouse see no change, and evolution stays what it was: adding a
  term (with a default) is one edit of the include; the expanded previous versions of ``order_intent`` and
  ``routed_order`` go to ``avro/history/<name>/`` as for any schema change. History entries may not include.

``order_id`` is not a term: it is each record's key and is documented per record, so it stays in each schema,
first, and comes from ``OrderKeyed`` (inherited after ``OrderTerms`` so pydantic puts it first, as on the wire).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

from pydantic import Field

from ibstream.contracts.base import Record
from ibstream.contracts.enums import AdaptivePriority, OrderType, Side, TimeInForce


class OrderTerms(Record):
    """What to trade and how: mirrors ``avro/include/order_terms.avsc`` (never a record on a topic by itself)."""

    schema_name: ClassVar[str] = "include/order_terms"

    run_id: str | None = None
    signal_id: str | None = None
    symbol: str
    side: Side
    quantity: float = Field(gt=0)
    order_type: OrderType
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    #: The flatten command this order carries out (see the schema); None for every other order.
    flatten_id: str | None = None
    #: The stop-loss child trails the market by this amount (IB TRAIL); ``stop_loss`` is its initial stop.
    stop_loss_trail_amount: float | None = None
    #: As ``stop_loss_trail_amount``, in percent of the price (IB trailingPercent).
    stop_loss_trail_percent: float | None = None
    #: The entry goes through IB's Adaptive algo with this priority; None for a plain order.
    adaptive_priority: AdaptivePriority | None = None
    #: One-cancels-all group of the entry (IB ocaGroup, ocaType 1); None for no group.
    oca_group: str | None = None

    def terms(self) -> dict[str, Any]:
        """Just the order terms of this record, by name (e.g. to route an intent: ``RoutedOrder(**intent.terms())``)."""
        return {name: getattr(self, name) for name in TERM_FIELDS}


class OrderKeyed(Record):
    """A record keyed by ``order_id`` (the record key and IB orderRef)."""

    order_id: str


#: The order-term field names, in schema order.
TERM_FIELDS: tuple[str, ...] = tuple(OrderTerms.model_fields)


#: Prefix of a digest from ``terms_digest``: names the algorithm and the canonical form, so a later form can coexist.
TERMS_DIGEST_PREFIX = "terms-v1:sha256:"


def canonical_terms(terms: Mapping[str, Any]) -> str:
    """The canonical text of order terms: the terms of ``TERM_FIELDS`` that have a value, in schema order, by name;
    enums by value, numbers as floats (the terms' type on the wire, so 10 and 10.0 are the same quantity), as compact
    JSON. A null term is left out, as a missing one: a term added later with a null default then leaves the digest
    of every order that does not use it unchanged, whichever side knows the term yet. Any other key is ignored."""
    values = []
    for name in TERM_FIELDS:
        value = terms.get(name)
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        values.append([name, value])
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def terms_digest(terms: OrderTerms | Mapping[str, Any]) -> str:
    """The digest of an order's terms: risk stamps it on its decision, execution compares a routed order with it
    (a record with terms, e.g. an ``OrderIntent`` or ``RoutedOrder``, or the terms by name)."""
    values = terms.terms() if isinstance(terms, OrderTerms) else terms
    return TERMS_DIGEST_PREFIX + hashlib.sha256(canonical_terms(values).encode()).hexdigest()

"""What a gateway refuses before it looks anything up (pure): a contract it cannot even search for, and order
fields it will not accept.

A contract is searched for only when it names something: a contract id, or a symbol (or local symbol) of a security
type IB knows. An order needs more than a search: the contract must say its security type and where to route it,
and the order its side, a time in force IB knows and, when given, an account this login manages. Each refusal is
``(code, reason)`` where the code is the one a gateway uses for that case: 321 (the request failed validation) for
everything here; a contract that is well formed but matches nothing is 200, decided by the lookup
(:meth:`ibsim.gateway.Gateway.resolve`), not here.
"""

from __future__ import annotations

from ibsim.messages.requests import ContractSpec, PlaceOrder

#: Security types of the TWS API (``Contract.secType``); anything else is refused before any search.
KNOWN_SEC_TYPES = frozenset(
    {"STK", "OPT", "FUT", "CONTFUT", "IND", "FOP", "CASH", "BAG", "WAR", "IOPT", "BOND", "CMDTY", "NEWS", "FUND"}
    | {"CFD", "CRYPTO"}
)

#: Times in force of the TWS API (``Order.tif``).
KNOWN_TIFS = frozenset({"DAY", "GTC", "IOC", "GTD", "OPG", "FOK", "DTC"})

#: An order's side.
ACTIONS = frozenset({"BUY", "SELL"})

Refusal = tuple[int, str]


def contract_refusal(c: ContractSpec, *, for_order: bool) -> Refusal | None:
    """Why a gateway refuses to look ``c`` up at all (321), or None to search for it.

    A contract id alone is enough to search. Requests for data accept a partial contract (reqContractDetails lists
    every match); an order must name the security type and the exchange to route to.
    """
    sec_type = c.sec_type.strip().upper()
    if sec_type and sec_type not in KNOWN_SEC_TYPES:
        return 321, f"Invalid security type {c.sec_type!r}"
    if c.con_id:
        return None
    if not (c.symbol.strip() or c.local_symbol.strip()):
        return 321, "Missing symbol: a contract needs a symbol, a local symbol or a contract id"
    if for_order and not sec_type:
        return 321, "Missing security type"
    if for_order and not c.exchange.strip():
        return 321, "Missing order exchange"
    return None


def order_refusal(req: PlaceOrder, accounts: tuple[str, ...]) -> Refusal | None:
    """Why a gateway refuses an order's own fields (321), or None. Prices, sizes and order types are the matching
    engine's to judge (110, 201, 434: :func:`ibstream.sim.matching._invalid`)."""
    if req.action not in ACTIONS:
        return 321, f"Invalid action {req.action!r}"
    if req.account and req.account not in accounts:
        return 321, f"Invalid account {req.account}"
    if req.tif and req.tif.upper() not in KNOWN_TIFS:
        return 321, f"Invalid time in force {req.tif!r}"
    return None

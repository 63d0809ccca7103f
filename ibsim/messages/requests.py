"""Requests (client -> server) at the negotiated server version (pure): the 157 layout and what later versions change.

Inbound parsers mirror the official ``client.py`` (9.81 and 10.x) field by field and decode each message into an
immutable value; they are plain functions so they can be tested against the real ibapi encoder without sockets. A
message id without a parser decodes to :class:`UnknownRequest` (the server answers 321); a malformed one raises
:class:`ProtocolError` (the server answers 320).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibsim.config import EXCHANGE_TZ
from ibsim.messages import versions as v
from ibsim.messages.codes import MAP_DURATION_UNIT, Out
from ibsim.wire import FieldReader, ProtocolError


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """Contract fields as sent in requests (the 12-field block ibapi writes)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


@dataclass(frozen=True, slots=True)
class StartApi:
    client_id: int
    optional_capabilities: str


@dataclass(frozen=True, slots=True)
class SimpleRequest:
    """A request identified by its message id alone (plus at most one int argument)."""

    msg_id: int
    arg: int = 0


@dataclass(frozen=True, slots=True)
class ReqContractDetails:
    req_id: int
    contract: ContractSpec


@dataclass(frozen=True, slots=True)
class ReqMktData:
    req_id: int
    contract: ContractSpec
    generic_ticks: str
    snapshot: bool
    regulatory_snapshot: bool


@dataclass(frozen=True, slots=True)
class ReqRealTimeBars:
    req_id: int
    contract: ContractSpec
    bar_size: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True, slots=True)
class ReqHistoricalData:
    req_id: int
    contract: ContractSpec
    end_date_time: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True, slots=True)
class ReqHeadTimestamp:
    req_id: int
    contract: ContractSpec
    use_rth: bool
    what_to_show: str
    format_date: int


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    order_id: int
    contract: ContractSpec
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    account: str
    order_ref: str
    transmit: bool
    parent_id: int
    outside_rth: bool
    #: A what-if order: IB answers with the margin and commission it would cost, and never places it.
    what_if: bool = False
    #: The advanced fields ibsim acts on, read from the message's tail (``PlaceOrderTail``).
    tail: PlaceOrderTail = field(default_factory=lambda: PlaceOrderTail())


@dataclass(frozen=True, slots=True)
class PlaceOrderTail:
    """placeOrder's fields after ``hidden`` that ibsim acts on (the rest are walked over)."""

    #: 1 cancel the others of the OCA group on a fill, 2 reduce them with block, 3 reduce them without; 0 unset.
    oca_type: int = 0
    #: A TRAIL order's initial stop (trailStopPrice); None to start from the market.
    trail_stop_price: float | None = None
    #: A TRAIL order's trail in percent (trailingPercent); None when auxPrice gives it as an amount.
    trailing_percent: float | None = None
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    what_if: bool = False
    #: A TRAIL LIMIT order's limit offset from its stop (lmtPriceOffset); None when unset or behind conditions.
    lmt_price_offset: float | None = None


@dataclass(frozen=True, slots=True)
class ReqExecutions:
    req_id: int
    client_id: int
    account: str
    time: str
    symbol: str
    sec_type: str
    exchange: str
    side: str


@dataclass(frozen=True, slots=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: str


@dataclass(frozen=True, slots=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(frozen=True, slots=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str


@dataclass(frozen=True, slots=True)
class ReqPnL:
    """reqPnL (``con_id`` 0) or reqPnLSingle: no version field, unlike most requests."""

    req_id: int
    account: str
    model_code: str
    con_id: int = 0


@dataclass(frozen=True, slots=True)
class UnknownRequest:
    msg_id: int


Request = (
    StartApi
    | SimpleRequest
    | ReqContractDetails
    | ReqMktData
    | ReqRealTimeBars
    | ReqHistoricalData
    | ReqHeadTimestamp
    | PlaceOrder
    | ReqExecutions
    | ReqAccountSummary
    | ReqAccountUpdates
    | ReqAccountUpdatesMulti
    | ReqPnL
    | UnknownRequest
)


def _contract(r: FieldReader) -> ContractSpec:
    con_id = r.integer()
    symbol = r.text()
    sec_type = r.text()
    r.skip(4)  # lastTradeDateOrContractMonth, strike, right, multiplier
    exchange = r.text()
    primary = r.text()
    currency = r.text()
    local_symbol = r.text()
    trading_class = r.text()
    return ContractSpec(con_id, symbol, sec_type, exchange, primary, currency, local_symbol, trading_class)


def _skip_bag_legs(r: FieldReader, c: ContractSpec, per_leg: int) -> None:
    if c.sec_type == "BAG":
        r.skip(r.integer() * per_leg)


def _p_start_api(r: FieldReader) -> Request:
    r.skip()  # version
    return StartApi(r.integer(), r.text())


def _p_mkt_data(r: FieldReader) -> Request:
    r.skip()
    req_id = r.integer()
    c = _contract(r)
    _skip_bag_legs(r, c, 4)
    if r.flag():  # delta-neutral contract present
        r.skip(3)
    return ReqMktData(req_id, c, r.text(), r.flag(), r.flag())


def _p_contract_details(r: FieldReader) -> Request:
    r.skip()
    return ReqContractDetails(r.integer(), _contract(r))


def _p_rt_bars(r: FieldReader) -> Request:
    r.skip()
    req_id = r.integer()
    c = _contract(r)
    return ReqRealTimeBars(req_id, c, r.integer(), r.text(), r.flag())


def _p_historical(r: FieldReader) -> Request:
    # Server >= 124 (SYNT_REALTIME_BARS): no version field.
    req_id = r.integer()
    c = _contract(r)
    r.skip()  # includeExpired
    end, bar_size, duration, use_rth, what, fmt = r.text(), r.text(), r.text(), r.flag(), r.text(), r.integer(1)
    _skip_bag_legs(r, c, 4)
    return ReqHistoricalData(req_id, c, end, bar_size, duration, use_rth, what, fmt, r.flag())


def _p_head_timestamp(r: FieldReader) -> Request:
    req_id = r.integer()
    c = _contract(r)
    r.skip()  # includeExpired
    return ReqHeadTimestamp(req_id, c, r.flag(), r.text(), r.integer(1))


def _p_place_order(r: FieldReader) -> Request:
    # Server >= 145 (ORDER_CONTAINER): no version field. Only the head of the message matters to
    # ibsim; the ~100 trailing fields are tolerated whatever they hold.
    order_id = r.integer()
    c = _contract(r)
    r.skip(2)  # secIdType, secId
    action = r.text()
    qty = r.number() or 0.0
    order_type = r.text().upper()
    lmt, aux = r.number(), r.number()
    tif, oca, account = r.text(), r.text(), r.text()
    r.skip(2)  # openClose, origin
    order_ref = r.text()
    transmit = r.flag()
    parent_id = r.integer()
    r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = r.flag()
    tail = _place_order_tail(r, c, order_type)
    return PlaceOrder(
        order_id,
        c,
        action.upper(),
        qty,
        order_type,
        lmt,
        aux,
        tif,
        oca,
        account,
        order_ref,
        transmit,
        parent_id,
        outside_rth,
        tail.what_if,
        tail,
    )


def _place_order_tail(r: FieldReader, c: ContractSpec, order_type: str) -> PlaceOrderTail:
    """Walk placeOrder from ``hidden`` to ``whatIf`` (server 157, as ibapi's EClient.placeOrder writes it), keeping
    the OCA type, the trail and the algo.

    The walk must be exact: a what-if order read as a normal one would be executed. Optional groups are present
    only when their leading field says so (combo legs, delta-neutral, scale, hedge, algo parameters).
    """
    r.skip()  # hidden
    if c.sec_type == "BAG":
        _skip_bag_legs(
            r, c, 8
        )  # conId, ratio, action, exchange, openClose, shortSaleSlot, designatedLocation, exemptCode
        r.skip(r.integer())  # orderComboLegs' prices
        r.skip(2 * r.integer())  # smartComboRoutingParams (tag, value)
    # sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, faGroup, faMethod, faPercentage, and before 177
    # (FA_PROFILE_DESUPPORT) faProfile
    r.skip(7 if r.version >= v.FA_PROFILE_DESUPPORT else 8)
    r.skip(4)  # modelCode, shortSaleSlot, designatedLocation, exemptCode
    oca_type = r.integer(0)
    r.skip(17)  # rule80A, settlingFirm, allOrNone, minQty, percentOffset, eTradeOnly, firmQuoteOnly, nbboPriceCap,
    # auctionStrategy, startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper,
    # overridePercentageConstraints, volatility, volatilityType
    if r.text():  # deltaNeutralOrderType
        r.skip(9)  # deltaNeutralAuxPrice, conId, settlingFirm, clearingAccount, clearingIntent, openClose, shortSale,
        # shortSaleSlot, designatedLocation
    else:
        r.skip()  # deltaNeutralAuxPrice
    r.skip(2)  # continuousUpdate, referencePriceType
    trail_stop_price, trailing_percent = r.number(), r.number()
    r.skip(2)  # scaleInitLevelSize, scaleSubsLevelSize
    scale_increment = r.number()
    if scale_increment is not None and scale_increment > 0:
        r.skip(7)  # scalePriceAdjustValue … scaleRandomPercent
    r.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if r.text():  # hedgeType
        r.skip()  # hedgeParam
    r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.flag():  # deltaNeutralContract
        r.skip(3)  # conId, delta, price
    algo_strategy = r.text()
    algo_params: tuple[tuple[str, str], ...] = ()
    if algo_strategy:
        algo_params = tuple((r.text(), r.text()) for _ in range(r.integer()))
    r.skip()  # algoId
    what_if = r.flag()
    offset = _place_order_lmt_price_offset(r) if order_type == "TRAIL LIMIT" else None
    return PlaceOrderTail(oca_type, trail_stop_price, trailing_percent, algo_strategy, algo_params, what_if, offset)


def _place_order_lmt_price_offset(r: FieldReader) -> float | None:
    """Walk from miscOptions to lmtPriceOffset (server 157). Conditions have per-type layouts ibsim does not read:
    with any, the offset stays unknown (None), and the order is refused for want of it."""
    r.skip(4)  # miscOptions, solicited, randomizeSize, randomizePrice
    if r.integer():  # conditions count (PEG BENCH fields never precede it: ibsim refuses PEG BENCH)
        return None
    r.skip(2)  # adjustedOrderType, triggerPrice
    return r.number()


def _p_executions(r: FieldReader) -> Request:
    r.skip()
    return ReqExecutions(r.integer(), r.integer(), r.text(), r.text(), r.text(), r.text(), r.text(), r.text())


def _p_account_summary(r: FieldReader) -> Request:
    r.skip()
    return ReqAccountSummary(r.integer(), r.text(), r.text())


def _p_account_updates(r: FieldReader) -> Request:
    r.skip()
    return ReqAccountUpdates(r.flag(), r.text())


def _p_account_updates_multi(r: FieldReader) -> Request:
    r.skip()
    return ReqAccountUpdatesMulti(r.integer(), r.text(), r.text())


def _p_pnl(r: FieldReader) -> Request:
    return ReqPnL(r.integer(), r.text(), r.text())


def _p_pnl_single(r: FieldReader) -> Request:
    return ReqPnL(r.integer(), r.text(), r.text(), r.integer())


def _simple(with_version: bool, with_arg: bool) -> Callable[[FieldReader], Request]:
    def parse(r: FieldReader) -> Request:
        msg_id = int(r.fields[0])
        if with_version:
            r.skip()
        return SimpleRequest(msg_id, r.integer() if with_arg else 0)

    return parse


#: Message id -> parser. Everything else is answered as an unknown message.
MAP_REQUEST_PARSER: dict[int, Callable[[FieldReader], Request]] = {
    Out.START_API: _p_start_api,
    Out.REQ_MKT_DATA: _p_mkt_data,
    Out.CANCEL_MKT_DATA: _simple(True, True),
    Out.PLACE_ORDER: _p_place_order,
    Out.CANCEL_ORDER: _simple(True, True),
    Out.REQ_OPEN_ORDERS: _simple(True, False),
    Out.REQ_ACCT_DATA: _p_account_updates,
    Out.REQ_EXECUTIONS: _p_executions,
    Out.REQ_IDS: _simple(True, True),
    Out.REQ_CONTRACT_DATA: _p_contract_details,
    Out.SET_SERVER_LOGLEVEL: _simple(True, True),
    Out.REQ_AUTO_OPEN_ORDERS: _simple(True, True),
    Out.REQ_ALL_OPEN_ORDERS: _simple(True, False),
    Out.REQ_MANAGED_ACCTS: _simple(True, False),
    Out.REQ_HISTORICAL_DATA: _p_historical,
    Out.CANCEL_HISTORICAL_DATA: _simple(True, True),
    Out.REQ_CURRENT_TIME: _simple(True, False),
    Out.REQ_REAL_TIME_BARS: _p_rt_bars,
    Out.CANCEL_REAL_TIME_BARS: _simple(True, True),
    Out.REQ_GLOBAL_CANCEL: _simple(True, False),
    Out.REQ_MARKET_DATA_TYPE: _simple(True, True),
    Out.REQ_POSITIONS: _simple(True, False),
    Out.REQ_ACCOUNT_SUMMARY: _p_account_summary,
    Out.CANCEL_ACCOUNT_SUMMARY: _simple(True, True),
    Out.CANCEL_POSITIONS: _simple(True, False),
    Out.REQ_ACCOUNT_UPDATES_MULTI: _p_account_updates_multi,
    Out.CANCEL_ACCOUNT_UPDATES_MULTI: _simple(True, True),
    Out.REQ_HEAD_TIMESTAMP: _p_head_timestamp,
    Out.CANCEL_HEAD_TIMESTAMP: _simple(False, True),
    Out.REQ_COMPLETED_ORDERS: _simple(False, True),
    Out.REQ_PNL: _p_pnl,
    Out.CANCEL_PNL: _simple(False, True),
    Out.REQ_PNL_SINGLE: _p_pnl_single,
    Out.CANCEL_PNL_SINGLE: _simple(False, True),
}


def parse_request(fields: list[str], *, version: int) -> Request:
    """Decode one inbound message of a session at server ``version``. Raises :class:`ProtocolError` on malformed
    content. Up to :data:`~ibsim.messages.versions.MAX_SERVER_VERSION` the requests ibsim reads change only in
    placeOrder's faProfile; what later versions append (duration, postToAts, cancelOrder's manualOrderCancelTime, a
    contract's issuerId, ...) comes after the fields ibsim reads."""
    if not fields:
        raise ProtocolError("empty message")
    try:
        msg_id = int(fields[0])
    except ValueError as exc:
        raise ProtocolError(f"message id {fields[0]!r} is not a number") from exc
    parser = MAP_REQUEST_PARSER.get(msg_id)
    if parser is None:
        return UnknownRequest(msg_id)
    r = FieldReader(fields, 1, version)
    return parser(r)


#: Where each client request carries its own request (or order) id: message id -> field index, as ibapi 9.81's
#: EClient writes them for server 157 (read off its encoding). An error about a request goes to that id, so the
#: caller's request fails at once instead of waiting for an answer that never comes. Requests absent here have no id
#: of their own (reqIds, reqAccountUpdates, reqFamilyCodes, ...).
REQUEST_ID_FIELD: dict[int, int] = {
    # no version field: the id comes first (placeOrder, reqHistoricalData, reqScannerSubscription, reqSecDefOptParams,
    # reqSoftDollarTiers, reqMatchingSymbols, reqSmartComponents, news, head timestamp, histogram, PnL, ticks)
    **dict.fromkeys((3, 20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 89, 90, 92, 93, 94, 95, 96, 97, 98), 1),
    # after a version field: market data and depth, cancels, contract details, executions, fundamentals, option
    # calculations, account summary, display groups, positions/account updates multi
    **dict.fromkeys((1, 2, 4, 7, 9, 10, 11, 21, 23, 25, 50, 51, 52, 53, 54, 55, 56, 57, 62, 63), 2),
    **dict.fromkeys((67, 68, 69, 70, 74, 75, 76, 77), 2),
    19: 4,  # replaceFA: version, faDataType, cxml, then the id
}


def request_id_of(fields: list[str]) -> int:
    """The request/order id a message carries (for an error reply), or -1 if it has none or it is unreadable."""
    try:
        index = REQUEST_ID_FIELD.get(int(fields[0]))
        return int(fields[index]) if index is not None else -1
    except (ValueError, IndexError):
        return -1


_TZ_ALIASES = {"EST": "America/New_York", "EDT": "America/New_York", "GMT": "UTC", "Z": "UTC"}


def parse_ib_datetime(text: str, now: float) -> float:
    """Epoch seconds of an IB request time: ``""`` (now), ``yyyymmdd hh:mm:ss [tz]`` (TWS local
    when no zone), ``yyyymmdd-hh:mm:ss`` (UTC) or ``yyyymmdd`` (start of day, TWS local)."""
    s = text.strip()
    if not s:
        return now
    tz: dt.tzinfo = EXCHANGE_TZ
    if "-" in s[:9] and len(s) >= 17 and s[8] == "-":
        tz, body = dt.UTC, s[:8] + " " + s[9:17]
    else:
        parts = s.split()
        body = " ".join(parts[:2])
        if len(parts) >= 3:
            try:
                tz = ZoneInfo(_TZ_ALIASES.get(parts[2], parts[2]))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ProtocolError(f"unknown time zone in {text!r}") from exc
    try:
        fmt = "%Y%m%d" if len(body) == 8 else "%Y%m%d %H:%M:%S"
        return dt.datetime.strptime(body, fmt).replace(tzinfo=tz).timestamp()
    except ValueError as exc:
        raise ProtocolError(f"bad date/time {text!r}") from exc


def duration_seconds(text: str) -> tuple[int, str]:
    """``"3600 S"`` -> ``(3600, "S")``; raises :class:`ProtocolError` on anything else."""
    parts = text.strip().split()
    if len(parts) != 2 or parts[1].upper() not in MAP_DURATION_UNIT or not parts[0].isdigit():
        raise ProtocolError(f"bad duration {text!r}")
    n, unit = int(parts[0]), parts[1].upper()
    if n <= 0:
        raise ProtocolError(f"bad duration {text!r}")
    return n, unit

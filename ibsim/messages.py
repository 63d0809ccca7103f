"""TWS message mapping at server version 157 (pure).

Outgoing encoders mirror ibapi 9.81's ``decoder.py``/``orderdecoder.py`` field by field; inbound
parsers mirror ``client.py``. Both sides are plain functions over immutable values so they can be
tested against the real ibapi decoder without sockets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibsim.config import EXCHANGE_TZ, Instrument
from ibsim.market import Bar
from ibsim.matching import Execution, OrderSnapshot
from ibsim.wire import Field, FieldReader, ProtocolError

#: How TWS writes "no value" for doubles in messages that ibapi decodes without SHOW_UNSET.
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"


class In(IntEnum):
    """Server -> client message ids (ibapi ``message.IN``)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    HEAD_TIMESTAMP = 88
    HISTORICAL_DATA_UPDATE = 90
    COMPLETED_ORDERS_END = 102


class Out(IntEnum):
    """Client -> server message ids (ibapi ``message.OUT``) that ibsim understands."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    SET_SERVER_LOGLEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_COMPLETED_ORDERS = 99


class Tick(IntEnum):
    """Tick types ibsim emits (ibapi ``TickTypeEnum``)."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    OPEN = 14
    LAST_TIMESTAMP = 45
    DELAYED_BID = 66
    DELAYED_ASK = 67
    DELAYED_LAST = 68
    DELAYED_VOLUME = 74
    DELAYED_CLOSE = 75
    DELAYED_LAST_TIMESTAMP = 88


#: Live tick type -> the type IB uses when the same data is delayed.
MAP_DELAYED_TICK: dict[Tick, Tick] = {
    Tick.BID: Tick.DELAYED_BID,
    Tick.ASK: Tick.DELAYED_ASK,
    Tick.LAST: Tick.DELAYED_LAST,
    Tick.VOLUME: Tick.DELAYED_VOLUME,
    Tick.CLOSE: Tick.DELAYED_CLOSE,
    Tick.LAST_TIMESTAMP: Tick.DELAYED_LAST_TIMESTAMP,
}

#: IB error/info texts as TWS sends them (message_codes.html).
ERROR_TEXT: dict[int, str] = {
    103: "Duplicate order id",
    162: "Historical Market Data Service error message:",
    200: "No security definition has been found for the request",
    201: "Order rejected - reason:",
    202: "Order Canceled - reason:",
    320: "Server error when reading an API client request.",
    321: "Server error when validating an API client request.",
    322: "Server error when processing an API client request.",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed.",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
}

#: Bar-size setting -> seconds (IB's accepted spellings).
MAP_BAR_SIZE: dict[str, int] = {
    "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30,
    "1 min": 60, "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600, "15 mins": 900,
    "20 mins": 1200, "30 mins": 1800, "1 hour": 3600, "2 hours": 7200, "3 hours": 10800,
    "4 hours": 14400, "8 hours": 28800, "1 day": 86400,
}

#: Duration unit -> seconds ("1 D" is a trading day for IB; a calendar day is close enough).
MAP_DURATION_UNIT: dict[str, int] = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 31 * 86_400, "Y": 365 * 86_400}

_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,DAY,GAT,GTC,GTD,LIT,LMT,MIT,MKT,MTL,"
    "NGCOMB,NONALGO,OCA,REL,SCALE,STP,STPLMT,TRAIL,WHATIF"
)
_VALID_EXCHANGES = (
    "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,DRCTEDGE,BEX,BATS,EDGEA,CSFBALGO,JEFFALGO,BYX,IEX,"
    "EDGX,FOXRIVER,PEARL,NYSENAT,LTSE,MEMX,PSX"
)


# ------------------------------------------------------------------------------------------------
# Requests (client -> server), immutable


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
class UnknownRequest:
    msg_id: int


Request = (
    StartApi | SimpleRequest | ReqContractDetails | ReqMktData | ReqRealTimeBars | ReqHistoricalData
    | ReqHeadTimestamp | PlaceOrder | ReqExecutions | ReqAccountSummary | ReqAccountUpdates
    | ReqAccountUpdatesMulti | UnknownRequest
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
    return PlaceOrder(order_id, c, action.upper(), qty, order_type, lmt, aux, tif, oca, account,
                      order_ref, transmit, parent_id, outside_rth)


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
}


def parse_request(fields: list[str]) -> Request:
    """Decode one inbound message. Raises :class:`ProtocolError` on malformed content."""
    if not fields:
        raise ProtocolError("empty message")
    try:
        msg_id = int(fields[0])
    except ValueError as exc:
        raise ProtocolError(f"message id {fields[0]!r} is not a number") from exc
    parser = MAP_REQUEST_PARSER.get(msg_id)
    if parser is None:
        return UnknownRequest(msg_id)
    r = FieldReader(fields, 1)
    return parser(r)


def request_id_of(fields: list[str]) -> int:
    """Best-effort request/order id of a message that failed to parse (for the error reply)."""
    try:
        msg_id = int(fields[0])
        if msg_id in (Out.REQ_HISTORICAL_DATA, Out.PLACE_ORDER, Out.REQ_HEAD_TIMESTAMP):
            return int(fields[1])
        return int(fields[2]) if len(fields) > 2 else -1
    except (ValueError, IndexError):
        return -1


# ------------------------------------------------------------------------------------------------
# Responses (server -> client)


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


def tws_time(t: float, fmt: str = "%Y%m%d  %H:%M:%S") -> str:
    """TWS local-time text (New York); the double space is what TWS 9.8x writes."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime(fmt)


def conn_time_text(t: float) -> str:
    """Handshake connection time, e.g. ``20250106 09:30:00 EST``."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime("%Y%m%d %H:%M:%S %Z")


def server_hello(version: int, t: float) -> list[Field]:
    """First server frame: exactly two fields, which ends the client's handshake loop."""
    return [version, conn_time_text(t)]


def error(req_id: int, code: int, text: str | None = None) -> list[Field]:
    """``error`` at version 2: reqId, code, text (no advancedOrderRejectJson before 166)."""
    return [In.ERR_MSG, 2, req_id, code, ERROR_TEXT.get(code, "") if text is None else text]


def next_valid_id(order_id: int) -> list[Field]:
    return [In.NEXT_VALID_ID, 1, order_id]


def managed_accounts(accounts: tuple[str, ...]) -> list[Field]:
    return [In.MANAGED_ACCTS, 1, ",".join(accounts)]


def current_time(t: float) -> list[Field]:
    return [In.CURRENT_TIME, 1, int(t)]


def tick_price(req_id: int, tick: Tick, price: float, size: int, attr_mask: int = 0) -> list[Field]:
    """Version 6; ibapi also fires a synthetic tickSize for bid/ask/last from ``size``."""
    return [In.TICK_PRICE, 6, req_id, int(tick), price, size, attr_mask]


def tick_size(req_id: int, tick: Tick, size: int) -> list[Field]:
    return [In.TICK_SIZE, 6, req_id, int(tick), size]


def tick_string(req_id: int, tick: Tick, value: str) -> list[Field]:
    return [In.TICK_STRING, 6, req_id, int(tick), value]


def market_data_type(req_id: int, kind: int) -> list[Field]:
    return [In.MARKET_DATA_TYPE, 1, req_id, kind]


def _trading_hours(days: list[dt.date]) -> str:
    return ";".join(f"{d:%Y%m%d}:0930-{d:%Y%m%d}:1600" for d in days)


def contract_data(req_id: int, inst: Instrument, days: list[dt.date]) -> list[Field]:
    """``contractDetails`` at message version 8 / server 157 (stock layout)."""
    hours = _trading_hours(days)
    return [
        In.CONTRACT_DATA, 8, req_id,
        inst.symbol, inst.sec_type, "", 0.0, "", "SMART", inst.currency, inst.symbol,
        "NMS", "NMS", inst.con_id, inst.min_tick,
        100,  # mdSizeMultiplier: sizes are reported in round lots
        "", _ORDER_TYPES, _VALID_EXCHANGES, 1, 0, inst.long_name or inst.symbol,
        inst.primary_exchange, "", "Technology" if not inst.is_etf else "Funds",
        "Computers" if not inst.is_etf else "Equity Fund", "", "US/Eastern", hours, hours,
        "", "",  # evRule, evMultiplier
        0,  # secIdList count
        1, "", "", "26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26",
        "", inst.stock_type,
    ]


def contract_data_end(req_id: int) -> list[Field]:
    return [In.CONTRACT_DATA_END, 1, req_id]


def realtime_bar(req_id: int, bar: Bar) -> list[Field]:
    return [In.REAL_TIME_BARS, 3, req_id, bar.time, bar.open, bar.high, bar.low, bar.close,
            bar.volume, bar.wap, bar.count]


def bar_date_text(t: int, bar_seconds: int, format_date: int) -> str:
    """A bar's ``date`` as IB writes it: daily bars as ``yyyymmdd``; intraday per ``formatDate``."""
    if bar_seconds >= 86_400:
        return tws_time(t, "%Y%m%d")
    if format_date == 2:
        return str(t)
    return tws_time(t)


def historical_data(req_id: int, start: float, end: float, bars: list[Bar], bar_seconds: int,
                    format_date: int) -> list[Field]:
    """``historicalData`` for server >= 124: no version, then all bars in one message."""
    out: list[Field] = [In.HISTORICAL_DATA, req_id, tws_time(start), tws_time(end), len(bars)]
    for b in bars:
        out += [bar_date_text(b.time, bar_seconds, format_date), b.open, b.high, b.low, b.close,
                b.volume, b.wap, b.count]
    return out


def historical_data_update(req_id: int, bar: Bar, bar_seconds: int, format_date: int) -> list[Field]:
    """keepUpToDate update; note IB's open, close, high, low order."""
    return [In.HISTORICAL_DATA_UPDATE, req_id, bar.count, bar_date_text(bar.time, bar_seconds, format_date),
            bar.open, bar.close, bar.high, bar.low, bar.wap, bar.volume]


def head_timestamp(req_id: int, t: int, format_date: int) -> list[Field]:
    return [88, req_id, str(t) if format_date == 2 else tws_time(t)]


def order_status(o: OrderSnapshot) -> list[Field]:
    """``orderStatus`` for server >= 131 (MARKET_CAP_PRICE): no version field."""
    return [In.ORDER_STATUS, o.order_id, o.status, float(o.filled), float(o.remaining),
            o.avg_fill_price, o.perm_id, o.request.parent_id, o.last_fill_price, o.client_id,
            o.why_held, 0.0]


def open_order(o: OrderSnapshot, inst: Instrument, account: str) -> list[Field]:
    """``openOrder`` for server 157 (>= ORDER_CONTAINER: no version), mirroring orderdecoder.py."""
    req = o.request
    unset = UNSET_DOUBLE_TEXT
    return [
        In.OPEN_ORDER, req.order_id,
        # contract (version >= 32 layout)
        inst.con_id, inst.symbol, inst.sec_type, "", 0.0, "", "", "SMART", inst.currency,
        inst.symbol, "NMS",
        req.action, float(req.quantity), req.order_type, req.lmt_price, req.aux_price, req.tif,
        req.oca_group, req.account or account, "", 0, req.order_ref, req.client_id, o.perm_id,
        req.outside_rth, False,  # outsideRth, hidden
        0.0, "",  # discretionaryAmt, goodAfterTime
        "",  # deprecated sharesAllocation
        "", "", "", "",  # faGroup, faMethod, faPercentage, faProfile
        "",  # modelCode
        "",  # goodTillDate
        "", None, "",  # rule80A, percentOffset, settlingFirm
        0, "", -1,  # shortSaleSlot, designatedLocation, exemptCode
        0,  # auctionStrategy
        None, None, None,  # startingPrice, stockRefPrice, delta
        None, None,  # stockRangeLower, stockRangeUpper
        0, False, False, False,  # displaySize, blockOrder, sweepToFill, allOrNone
        None, 0, False, False, None,  # minQty, ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
        req.parent_id, 0,  # parentId, triggerMethod
        None, None, "", None,  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
        False, None,  # continuousUpdate, referencePriceType
        None, None,  # trailStopPrice, trailingPercent
        None, None,  # basisPoints, basisPointsType
        "", 0, 0,  # comboLegsDescrip, comboLegs count, orderComboLegs count
        0,  # smartComboRoutingParams count
        None, None, None,  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        False,  # optOutSmartRouting
        "", "",  # clearingAccount, clearingIntent
        False,  # notHeld
        False,  # deltaNeutralContract present
        "",  # algoStrategy
        False,  # solicited
        False, o.status,  # whatIf, orderState.status
        "", "", "", "", "", "",  # margin before/change (server >= 142)
        "", "", "",  # margin after
        None, None, None, "", "",  # commission, min, max, commissionCurrency, warningText
        False, False,  # randomizeSize, randomizePrice
        0,  # conditions count
        "", unset, unset, unset, unset, unset, unset, 0,  # adjusted order params
        "", "", "",  # softDollarTier name, value, displayName
        unset,  # cashQty
        # dontUseAutoPriceForHedge, isOmsContainer, discretionaryUpToLimitPrice, usePriceMgmtAlgo
        False, False, False, False,
    ]


def open_order_end() -> list[Field]:
    return [In.OPEN_ORDER_END, 1]


def exec_details(req_id: int, ex: Execution, inst: Instrument) -> list[Field]:
    """``execDetails`` for server >= 136 (LAST_LIQUIDITY): no version field."""
    return [
        In.EXECUTION_DATA, req_id, ex.order_id,
        inst.con_id, inst.symbol, inst.sec_type, "", 0.0, "", "", "SMART", inst.currency,
        inst.symbol, "NMS",
        ex.exec_id, tws_time(ex.time), ex.account, ex.exchange, ex.side, float(ex.shares), ex.price,
        ex.perm_id, ex.client_id, 0, float(ex.cum_qty), ex.avg_price, ex.order_ref,
        "", "",  # evRule, evMultiplier
        "",  # modelCode
        2,  # lastLiquidity: 2 = removed liquidity (marketable fills)
    ]


def exec_details_end(req_id: int) -> list[Field]:
    return [In.EXECUTION_DATA_END, 1, req_id]


def commission_report(ex: Execution, currency: str = "USD") -> list[Field]:
    realized = UNSET_DOUBLE_TEXT if ex.realized_pnl is None else repr(float(ex.realized_pnl))
    return [In.COMMISSION_REPORT, 1, ex.exec_id, ex.commission, currency, realized, UNSET_DOUBLE_TEXT, ""]


def position(account: str, inst: Instrument, qty: float, avg_cost: float) -> list[Field]:
    return [In.POSITION_DATA, 3, account, inst.con_id, inst.symbol, inst.sec_type, "", 0.0, "", "",
            inst.primary_exchange, inst.currency, inst.symbol, "NMS", float(qty), avg_cost]


def position_end() -> list[Field]:
    return [In.POSITION_END, 1]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[Field]:
    return [In.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[Field]:
    return [In.ACCOUNT_SUMMARY_END, 1, req_id]


def account_value(key: str, value: str, currency: str, account: str) -> list[Field]:
    return [In.ACCT_VALUE, 2, key, value, currency, account]


def portfolio_value(inst: Instrument, qty: float, price: float, avg_cost: float, realized: float,
                    account: str) -> list[Field]:
    """``updatePortfolio`` at message version 8."""
    value = qty * price
    return [In.PORTFOLIO_VALUE, 8, inst.con_id, inst.symbol, inst.sec_type, "", 0.0, "", "",
            inst.primary_exchange, inst.currency, inst.symbol, "NMS", float(qty), price,
            round(value, 2), avg_cost, round(value - qty * avg_cost, 2), round(realized, 2), account]


def account_update_time(t: float) -> list[Field]:
    return [In.ACCT_UPDATE_TIME, 1, tws_time(t, "%H:%M")]


def account_download_end(account: str) -> list[Field]:
    return [In.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, model: str, key: str, value: str,
                         currency: str) -> list[Field]:
    return [In.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model, key, value, currency]


def account_update_multi_end(req_id: int) -> list[Field]:
    return [In.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def completed_orders_end() -> list[Field]:
    return [In.COMPLETED_ORDERS_END]

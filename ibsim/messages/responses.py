"""Responses (server -> client) at the negotiated server version (pure).

Outgoing encoders mirror the official client's ``decoder.py``/``orderdecoder.py`` field by field: each returns the
fields of one message, which :func:`ibsim.wire.encode_message` frames. The layouts are server 157's (ibapi 9.81's);
the builders whose message changes up to :data:`~ibsim.messages.versions.MAX_SERVER_VERSION` take the session's
``version`` (error, contractDetails, execDetails; openOrder and completedOrder in :mod:`.order_responses`). Plain
functions over immutable values, so they can be tested against the real decoders (10.x and 9.81) without sockets.
"""

from __future__ import annotations

import datetime as dt

from ibsim.config import EXCHANGE_TZ, Instrument
from ibsim.market import Bar
from ibsim.messages import versions as v
from ibsim.messages.codes import ERROR_TEXT, In, Tick
from ibsim.wire import Field
from ibstream.sim.order_values import Execution, OrderSnapshot

#: How TWS writes "no value" for doubles in messages that ibapi decodes without SHOW_UNSET.
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"

_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,DAY,GAT,GTC,GTD,LIT,LMT,MIT,MKT,MTL,"
    "NGCOMB,NONALGO,OCA,REL,SCALE,STP,STPLMT,TRAIL,WHATIF"
)
_VALID_EXCHANGES = (
    "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,DRCTEDGE,BEX,BATS,EDGEA,CSFBALGO,JEFFALGO,BYX,IEX,"
    "EDGX,FOXRIVER,PEARL,NYSENAT,LTSE,MEMX,PSX"
)


def tws_time(t: float, fmt: str = "%Y%m%d  %H:%M:%S") -> str:
    """TWS local-time text (New York); the double space is what TWS 9.8x writes."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime(fmt)


def conn_time_text(t: float) -> str:
    """Handshake connection time, e.g. ``20250106 09:30:00 EST``."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime("%Y%m%d %H:%M:%S %Z")


def server_hello(version: int, t: float) -> list[Field]:
    """First server frame: exactly two fields, which ends the client's handshake loop."""
    return [version, conn_time_text(t)]


def error(req_id: int, code: int, text: str | None = None, *, version: int) -> list[Field]:
    """``error`` at message version 2: reqId, code, text, and from server 166 advancedOrderRejectJson (empty: ibsim
    rejects without IB's JSON detail)."""
    fields: list[Field] = [In.ERR_MSG, 2, req_id, code, ERROR_TEXT.get(code, "") if text is None else text]
    if version >= v.ADVANCED_ORDER_REJECT:
        fields.append("")
    return fields


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


def contract_data(req_id: int, inst: Instrument, days: list[dt.date], *, version: int) -> list[Field]:
    """``contractDetails`` at message version 8 (stock layout): from server 164 (SIZE_RULES) without the message
    version and mdSizeMultiplier, and with the size rules at the end (163 alone: sizeMinTick there)."""
    head = _contract_data_head(req_id, inst)
    size_fields: list[Field]
    if version >= v.SIZE_RULES:
        head.pop(1)  # the message version
        size_fields = ["1", "1", "100"]  # minSize, sizeIncrement, suggestedSizeIncrement: whole shares
    else:
        size_fields = ["1"] if version >= v.FRACTIONAL_SIZE_SUPPORT else []  # sizeMinTick
    md_size_multiplier: list[Field] = [] if version >= v.SIZE_RULES else [100]  # sizes in round lots
    return [*head, *md_size_multiplier, *_contract_data_tail(inst, days), *size_fields]


def _contract_data_head(req_id: int, inst: Instrument) -> list[Field]:
    """contractDetails from the message id to minTick."""
    return [
        In.CONTRACT_DATA,
        8,
        req_id,
        inst.symbol,
        inst.sec_type,
        "",
        0.0,
        "",
        "SMART",
        inst.currency,
        inst.symbol,
        "NMS",
        "NMS",
        inst.con_id,
        inst.min_tick,
    ]


def _contract_data_tail(inst: Instrument, days: list[dt.date]) -> list[Field]:
    """contractDetails from multiplier to stockType."""
    hours = _trading_hours(days)
    return [
        "",
        _ORDER_TYPES,
        _VALID_EXCHANGES,
        1,
        0,
        inst.long_name or inst.symbol,
        inst.primary_exchange,
        "",
        "Technology" if not inst.is_etf else "Funds",
        "Computers" if not inst.is_etf else "Equity Fund",
        "",
        "US/Eastern",
        hours,
        hours,
        "",
        "",  # evRule, evMultiplier
        0,  # secIdList count
        1,
        "",
        "",
        "26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26,26",
        "",
        inst.stock_type,
    ]


def contract_data_end(req_id: int) -> list[Field]:
    return [In.CONTRACT_DATA_END, 1, req_id]


def realtime_bar(req_id: int, bar: Bar) -> list[Field]:
    return [
        In.REAL_TIME_BARS,
        3,
        req_id,
        bar.time,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.wap,
        bar.count,
    ]


def bar_date_text(t: int, bar_seconds: int, format_date: int) -> str:
    """A bar's ``date`` as IB writes it: daily bars as ``yyyymmdd``; intraday per ``formatDate``."""
    if bar_seconds >= 86_400:
        return tws_time(t, "%Y%m%d")
    if format_date == 2:
        return str(t)
    return tws_time(t)


def historical_data(
    req_id: int, start: float, end: float, bars: list[Bar], bar_seconds: int, format_date: int
) -> list[Field]:
    """``historicalData`` for server >= 124: no version, then all bars in one message."""
    out: list[Field] = [In.HISTORICAL_DATA, req_id, tws_time(start), tws_time(end), len(bars)]
    for b in bars:
        out += [
            bar_date_text(b.time, bar_seconds, format_date),
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.wap,
            b.count,
        ]
    return out


def historical_data_update(req_id: int, bar: Bar, bar_seconds: int, format_date: int) -> list[Field]:
    """keepUpToDate update; note IB's open, close, high, low order."""
    return [
        In.HISTORICAL_DATA_UPDATE,
        req_id,
        bar.count,
        bar_date_text(bar.time, bar_seconds, format_date),
        bar.open,
        bar.close,
        bar.high,
        bar.low,
        bar.wap,
        bar.volume,
    ]


def head_timestamp(req_id: int, t: int, format_date: int) -> list[Field]:
    return [88, req_id, str(t) if format_date == 2 else tws_time(t)]


def order_status(o: OrderSnapshot) -> list[Field]:
    """``orderStatus`` for server >= 131 (MARKET_CAP_PRICE): no version field."""
    return [
        In.ORDER_STATUS,
        o.order_id,
        o.status,
        float(o.filled),
        float(o.remaining),
        o.avg_fill_price,
        o.perm_id,
        o.request.parent_id,
        o.last_fill_price,
        o.client_id,
        o.why_held,
        0.0,
    ]


def open_order_end() -> list[Field]:
    return [In.OPEN_ORDER_END, 1]


def exec_details(req_id: int, ex: Execution, inst: Instrument, *, version: int) -> list[Field]:
    """``execDetails`` for server >= 136 (LAST_LIQUIDITY): no version field; from 178 pendingPriceRevision last."""
    pending_price_revision: list[Field] = [False] if version >= v.PENDING_PRICE_REVISION else []
    return [
        In.EXECUTION_DATA,
        req_id,
        ex.order_id,
        inst.con_id,
        inst.symbol,
        inst.sec_type,
        "",
        0.0,
        "",
        "",
        "SMART",
        inst.currency,
        inst.symbol,
        "NMS",
        ex.exec_id,
        tws_time(ex.time),
        ex.account,
        ex.exchange,
        ex.side,
        float(ex.shares),
        ex.price,
        ex.perm_id,
        ex.client_id,
        0,
        float(ex.cum_qty),
        ex.avg_price,
        ex.order_ref,
        "",
        "",  # evRule, evMultiplier
        "",  # modelCode
        2,  # lastLiquidity: 2 = removed liquidity (marketable fills)
        *pending_price_revision,
    ]


def exec_details_end(req_id: int) -> list[Field]:
    return [In.EXECUTION_DATA_END, 1, req_id]


def commission_report(ex: Execution, currency: str = "USD") -> list[Field]:
    realized = UNSET_DOUBLE_TEXT if ex.realized_pnl is None else repr(float(ex.realized_pnl))
    return [In.COMMISSION_REPORT, 1, ex.exec_id, ex.commission, currency, realized, UNSET_DOUBLE_TEXT, ""]


def position(account: str, inst: Instrument, qty: float, avg_cost: float) -> list[Field]:
    return [
        In.POSITION_DATA,
        3,
        account,
        inst.con_id,
        inst.symbol,
        inst.sec_type,
        "",
        0.0,
        "",
        "",
        inst.primary_exchange,
        inst.currency,
        inst.symbol,
        "NMS",
        float(qty),
        avg_cost,
    ]


def position_end() -> list[Field]:
    return [In.POSITION_END, 1]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[Field]:
    return [In.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[Field]:
    return [In.ACCOUNT_SUMMARY_END, 1, req_id]


def account_value(key: str, value: str, currency: str, account: str) -> list[Field]:
    return [In.ACCT_VALUE, 2, key, value, currency, account]


def portfolio_value(
    inst: Instrument, qty: float, price: float, avg_cost: float, realized: float, account: str
) -> list[Field]:
    """``updatePortfolio`` at message version 8."""
    value = qty * price
    return [
        In.PORTFOLIO_VALUE,
        8,
        inst.con_id,
        inst.symbol,
        inst.sec_type,
        "",
        0.0,
        "",
        "",
        inst.primary_exchange,
        inst.currency,
        inst.symbol,
        "NMS",
        float(qty),
        price,
        round(value, 2),
        avg_cost,
        round(value - qty * avg_cost, 2),
        round(realized, 2),
        account,
    ]


def account_update_time(t: float) -> list[Field]:
    return [In.ACCT_UPDATE_TIME, 1, tws_time(t, "%H:%M")]


def account_download_end(account: str) -> list[Field]:
    return [In.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, model: str, key: str, value: str, currency: str) -> list[Field]:
    return [In.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model, key, value, currency]


def account_update_multi_end(req_id: int) -> list[Field]:
    return [In.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def completed_orders_end() -> list[Field]:
    return [In.COMPLETED_ORDERS_END]


def pnl(req_id: int, daily: float, unrealized: float, realized: float) -> list[Field]:
    """``pnl``: no version field (ibapi ``processPnLMsg``)."""
    return [In.PNL, req_id, daily, unrealized, realized]


def pnl_single(
    req_id: int, position: float, daily: float, unrealized: float, realized: float, value: float
) -> list[Field]:
    """``pnlSingle``: the position as a whole number, as ibapi 9.81 decodes it (``processPnLSingleMsg``)."""
    return [In.PNL_SINGLE, req_id, round(position), daily, unrealized, realized, value]

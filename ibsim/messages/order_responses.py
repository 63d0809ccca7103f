"""``openOrder`` and ``completedOrder`` (server -> client) at the negotiated server version (pure), one helper per
field group in wire order.

It mirrors the official client's ``orderdecoder.py`` field by field, like the other encoders in
:mod:`ibsim.messages.responses`: the server-157 layout (ibapi 9.81's), and what :mod:`ibsim.messages.versions` adds
or drops up to its maximum (IB's 10.x decoder: faProfile gone at 177, duration/postToAts/autoCancelParent and the
PEG BEST/MID attributes appended).
"""

from __future__ import annotations

import datetime as dt

from ibsim.config import EXCHANGE_TZ, Instrument
from ibsim.messages import versions as v
from ibsim.messages.codes import In
from ibsim.messages.responses import UNSET_DOUBLE_TEXT
from ibsim.what_if import WhatIfState
from ibsim.wire import Field
from ibstream.sim.order_values import OrderRequest, OrderSnapshot


def open_order(
    o: OrderSnapshot, inst: Instrument, account: str, what_if: WhatIfState | None = None, *, version: int
) -> list[Field]:
    """``openOrder`` (>= ORDER_CONTAINER: no version), mirroring orderdecoder.py; with ``what_if``, the answer to a
    what-if order (whatIf set, the order state's margins and commission filled in)."""
    return [
        In.OPEN_ORDER,
        o.request.order_id,
        *_open_order_contract(inst),
        *_open_order_terms(o, account, version),
        *_open_order_extras(o),
        *(_open_order_state(o) if what_if is None else _what_if_state(o, what_if)),
        *_open_order_tail(o),
        *_open_order_since_158(version),
        *_peg_best_peg_mid(version),
    ]


def _open_order_since_158(version: int) -> list[Field]:
    """duration (158) and postToAts (160), both unset, and autoCancelParent (162), after usePriceMgmtAlgo."""
    fields: list[Field] = []
    if version >= v.DURATION:
        fields.append(None)
    if version >= v.POST_TO_ATS:
        fields.append(None)
    if version >= v.AUTO_CANCEL_PARENT:
        fields.append(False)
    return fields


def _peg_best_peg_mid(version: int) -> list[Field]:
    """From 170 (PEGBEST_PEGMID_OFFSETS) both order messages carry minTradeQty, minCompeteSize,
    competeAgainstBestOffset, midOffsetAtWhole and midOffsetAtHalf, all unset for ibsim's order types."""
    return [None] * 5 if version >= v.PEGBEST_PEGMID_OFFSETS else []


def _fa_params(version: int) -> list[Field]:
    """faGroup, faMethod, faPercentage, and before 177 (FA_PROFILE_DESUPPORT) the deprecated faProfile."""
    return ["", "", ""] if version >= v.FA_PROFILE_DESUPPORT else ["", "", "", ""]


def _open_order_contract(inst: Instrument) -> list[Field]:
    """openOrder's contract (version >= 32 layout): conId through tradingClass."""
    return [
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
    ]


def _open_order_terms(o: OrderSnapshot, account: str, version: int) -> list[Field]:
    """openOrder's order terms: action through goodTillDate."""
    req = o.request
    return [
        req.action,
        float(req.quantity),
        req.order_type,
        req.lmt_price,
        req.aux_price,
        req.tif,
        req.oca_group,
        req.account or account,
        "",
        0,
        req.order_ref,
        req.client_id,
        o.perm_id,
        req.outside_rth,
        False,  # outsideRth, hidden
        0.0,
        "",  # discretionaryAmt, goodAfterTime
        "",  # deprecated sharesAllocation
        *_fa_params(version),
        "",  # modelCode
        "",  # goodTillDate
    ]


def _open_order_extras(o: OrderSnapshot) -> list[Field]:
    """openOrder's advanced order fields ibsim leaves unset (but parentId): rule80A through solicited."""
    req = o.request
    return [
        "",
        None,
        "",  # rule80A, percentOffset, settlingFirm
        0,
        "",
        -1,  # shortSaleSlot, designatedLocation, exemptCode
        0,  # auctionStrategy
        None,
        None,
        None,  # startingPrice, stockRefPrice, delta
        None,
        None,  # stockRangeLower, stockRangeUpper
        0,
        False,
        False,
        False,  # displaySize, blockOrder, sweepToFill, allOrNone
        None,
        req.oca_type,
        False,
        False,
        None,  # minQty, ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
        req.parent_id,
        0,  # parentId, triggerMethod
        None,
        None,
        "",
        None,  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
        False,
        None,  # continuousUpdate, referencePriceType
        _trail_stop(o),
        req.trailing_percent,  # trailStopPrice (a working trailing stop's current stop), trailingPercent
        None,
        None,  # basisPoints, basisPointsType
        "",
        0,
        0,  # comboLegsDescrip, comboLegs count, orderComboLegs count
        0,  # smartComboRoutingParams count
        None,
        None,
        None,  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        False,  # optOutSmartRouting
        "",
        "",  # clearingAccount, clearingIntent
        False,  # notHeld
        False,  # deltaNeutralContract present
        *_algo(req),  # algoStrategy, and when set its parameters
        False,  # solicited
    ]


def _algo(req: OrderRequest) -> list[Field]:
    """openOrder's algoStrategy, followed when set by the count of its algoParams and each (tag, value)."""
    if not req.algo_strategy:
        return [""]
    return [req.algo_strategy, len(req.algo_params), *(part for pair in req.algo_params for part in pair)]


def _open_order_state(o: OrderSnapshot) -> list[Field]:
    """openOrder's whatIf and order state: status, margins, commission, warningText."""
    return [
        False,
        o.status,  # whatIf, orderState.status
        "",
        "",
        "",
        "",
        "",
        "",  # margin before/change (server >= 142)
        "",
        "",
        "",  # margin after
        None,
        None,
        None,
        "",
        "",  # commission, min, max, commissionCurrency, warningText
    ]


def _what_if_state(o: OrderSnapshot, w: WhatIfState) -> list[Field]:
    """_open_order_state for a what-if answer: margins before/change/after as text, as TWS sends them."""
    return [
        True,
        o.status,  # whatIf, orderState.status
        f"{w.init_margin_before:.2f}",
        f"{w.maint_margin_before:.2f}",
        f"{w.equity_with_loan_before:.2f}",
        f"{w.init_margin_change:.2f}",
        f"{w.maint_margin_change:.2f}",
        f"{w.equity_with_loan_change:.2f}",
        f"{w.init_margin_after:.2f}",
        f"{w.maint_margin_after:.2f}",
        f"{w.equity_with_loan_after:.2f}",
        w.commission,
        w.commission,
        w.commission,  # commission, min, max: fixed pricing knows it exactly
        w.currency,
        "",  # warningText
    ]


def _trail_stop(o: OrderSnapshot) -> float | None:
    """A trailing stop's stop as openOrder reports it (trailStopPrice): the current one once working, else the
    initial one the order gave."""
    return o.trail_stop if o.trail_stop is not None else o.request.trail_stop_price


def _open_order_tail(o: OrderSnapshot) -> list[Field]:
    """openOrder's last fields: randomizeSize through usePriceMgmtAlgo. ibapi reads trailStopPrice a second time
    here (with lmtPriceOffset) and keeps this one, so the trailing stop goes here too."""
    unset = UNSET_DOUBLE_TEXT
    trail_stop = _trail_stop(o)
    return [
        False,
        False,  # randomizeSize, randomizePrice
        0,  # conditions count
        "",
        unset,  # adjustedOrderType, triggerPrice
        unset if trail_stop is None else trail_stop,
        unset if o.request.lmt_price_offset is None else o.request.lmt_price_offset,  # trailStopPrice, lmtPriceOffset
        unset,
        unset,
        unset,
        0,  # adjusted order params
        "",
        "",
        "",  # softDollarTier name, value, displayName
        unset,  # cashQty
        # dontUseAutoPriceForHedge, isOmsContainer, discretionaryUpToLimitPrice, usePriceMgmtAlgo
        False,
        False,
        False,
        False,
    ]


def completed_order(o: OrderSnapshot, inst: Instrument, account: str, *, version: int) -> list[Field]:
    """``completedOrder``, mirroring the client's ``processCompletedOrderMsg`` (which decodes with version
    UNSET_INTEGER, so every versioned field is present): no order id and no client id, the order state is the status
    alone, and it ends with the filled quantity, the completion time and the completion status (then from 170 the
    PEG BEST/MID attributes)."""
    return [
        In.COMPLETED_ORDER,
        *_open_order_contract(inst),
        *_completed_order_terms(o, account, version),
        *_completed_order_extras(),
        o.status,  # orderState.status
        False,
        False,  # randomizeSize, randomizePrice
        0,  # conditions count
        UNSET_DOUBLE_TEXT,
        UNSET_DOUBLE_TEXT,
        UNSET_DOUBLE_TEXT,  # trailStopPrice, lmtPriceOffset, cashQty
        False,
        False,  # dontUseAutoPriceForHedge, isOmsContainer
        "",  # autoCancelDate
        o.filled,  # filledQuantity
        0,
        False,  # refFuturesConId, autoCancelParent
        "",
        False,
        False,  # shareholder, imbalanceOnly, routeMarketableToBbo
        0,  # parentPermId
        completed_time_text(o.updated_at),
        completed_status_text(o),
        *_peg_best_peg_mid(version),
    ]


def completed_time_text(t: float) -> str:
    """When the order ended, as TWS writes it: exchange-local time with its zone (``20250106 15:59:58 EST``)."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime("%Y%m%d %H:%M:%S %Z")


def completed_status_text(o: OrderSnapshot) -> str:
    """The completion status: what ended the order (TWS writes ``Cancelled by Trader`` for a client's cancel)."""
    if o.status == "Filled":
        return "Filled"
    if o.status == "Inactive":
        return f"Rejected{f' ({o.reject_code})' if o.reject_code else ''}"
    return "Cancelled by Trader"


def _completed_order_terms(o: OrderSnapshot, account: str, version: int) -> list[Field]:
    """completedOrder's order terms: action through goodTillDate (openOrder's without clientId and sharesAllocation)."""
    req = o.request
    return [
        req.action,
        float(req.quantity),
        req.order_type,
        req.lmt_price,
        req.aux_price,
        req.tif,
        req.oca_group,
        req.account or account,
        "",  # openClose
        0,  # origin
        req.order_ref,
        o.perm_id,
        req.outside_rth,
        False,  # hidden
        0.0,
        "",  # discretionaryAmt, goodAfterTime
        *_fa_params(version),
        "",  # modelCode
        "",  # goodTillDate
    ]


def _completed_order_extras() -> list[Field]:
    """completedOrder's advanced order fields, all unset: rule80A through solicited (no parentId, blockOrder,
    auctionStrategy, eTradeOnly, firmQuoteOnly, nbboPriceCap, basisPoints or optOutSmartRouting, unlike openOrder)."""
    return [
        "",
        None,
        "",  # rule80A, percentOffset, settlingFirm
        0,
        "",
        -1,  # shortSaleSlot, designatedLocation, exemptCode
        None,
        None,
        None,  # startingPrice, stockRefPrice, delta
        None,
        None,  # stockRangeLower, stockRangeUpper
        0,
        False,
        False,  # displaySize, sweepToFill, allOrNone
        None,
        0,  # minQty, ocaType
        0,  # triggerMethod
        None,
        None,
        "",
        None,  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
        False,
        None,  # continuousUpdate, referencePriceType
        None,
        None,  # trailStopPrice, trailingPercent
        "",
        0,
        0,  # comboLegsDescrip, comboLegs count, orderComboLegs count
        0,  # smartComboRoutingParams count
        None,
        None,
        None,  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        "",  # hedgeType
        "",
        "",  # clearingAccount, clearingIntent
        False,  # notHeld
        False,  # deltaNeutralContract present
        "",  # algoStrategy
        False,  # solicited
    ]

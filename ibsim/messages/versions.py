"""The TWS server versions whose message layouts ibsim implements (pure), named as IB's ``server_versions.py`` names
them.

A client asks for a version range (``v100..157`` from ibapi 9.81, ``v157..178`` from ib_async 2.1, ``v100..225``
from IB's 10.46 client); ibsim answers the highest version both sides speak, at most :data:`MAX_SERVER_VERSION`, and
every message of the session then follows that version: a client decodes fields by the version it was told, so one
field too many or too few shifts everything after it.

Every version up to :data:`MAX_SERVER_VERSION` changes something below only if it changes a message ibsim sends or
reads; the others (WSH calendars, user info, IPO prices, bond issuer ids, ...) touch requests ibsim does not serve or
only fields a client appends after the ones ibsim reads. Above 178, IB's own client starts to need fields ibsim does
not model yet (customer account 183, ineligibility reasons 186, error time 194, protobuf from 201).
"""

from __future__ import annotations

#: TWS answered sizes in lots (round lots of 100 shares for US stocks) before this version; from it, in shares.
MARKET_DATA_IN_SHARES = 159
#: ibapi 9.81's maximum, and the layout every builder in this package started from.
REPLACE_FA_END = 157
#: openOrder gains duration, postToAts and autoCancelParent after usePriceMgmtAlgo.
DURATION = 158
POST_TO_ATS = 160
AUTO_CANCEL_PARENT = 162
#: contractDetails gains sizeMinTick after stockType (until SIZE_RULES replaces it).
FRACTIONAL_SIZE_SUPPORT = 163
#: contractDetails loses its version field and mdSizeMultiplier, and carries minSize, sizeIncrement and
#: suggestedSizeIncrement after stockType.
SIZE_RULES = 164
#: error carries advancedOrderRejectJson after the text.
ADVANCED_ORDER_REJECT = 166
#: openOrder and completedOrder gain the PEG BEST/PEG MID attributes (minTradeQty … midOffsetAtHalf).
PEGBEST_PEGMID_OFFSETS = 170
#: Historical bars' volume in shares instead of lots. ibsim's bars have always carried shares (the layout does not
#: change), so this only marks that from here on that is also what TWS does.
HMDS_MARKET_DATA_IN_SHARES = 175
#: openOrder, completedOrder and placeOrder drop the deprecated faProfile field.
FA_PROFILE_DESUPPORT = 177
#: execDetails carries pendingPriceRevision after lastLiquidity.
PENDING_PRICE_REVISION = 178

#: The highest version ibsim speaks: ib_async 2.1's maximum, and what IB's 10.x client gets from ibsim.
MAX_SERVER_VERSION = PENDING_PRICE_REVISION

#: Shares in one round lot of a US stock: the unit of market-data sizes before MARKET_DATA_IN_SHARES.
ROUND_LOT = 100


def quote_size(lots: int, version: int) -> int:
    """A bid, ask or last size (ibsim's market keeps them in round lots) in the unit the version reports."""
    return lots * ROUND_LOT if version >= MARKET_DATA_IN_SHARES else lots


def volume_size(shares: int, version: int) -> int:
    """The session volume (ibsim's market keeps shares) in the unit the version reports."""
    return shares if version >= MARKET_DATA_IN_SHARES else shares // ROUND_LOT

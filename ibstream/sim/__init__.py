"""The simulated broker's pure core: order matching, order types, commissions and the account ledger.

ibsim serves it over the TWS socket protocol; ``ibstream backtest`` drives it in one process over recorded bars.
One copy of the logic for both, so a backtest fills, charges and brackets orders exactly as ibsim does.
"""

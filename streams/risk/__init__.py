"""Risk in the streams app: every order intent gets a recorded decision before any approved order is routed.

* ``feed``: each worker's replica of the account and market (a ``RiskView``, fed from a background consumer).
* ``decisions``: a batch of intents judged by the pure checks of ``ibstream.risk``, emitted in commit order.
* ``agents``: the thin Faust agent ``risk`` and the ``risk-alerts`` timer.
"""

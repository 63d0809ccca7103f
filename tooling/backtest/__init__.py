"""``ibstream backtest``: recorded bars through the live pipeline's own logic in one process, and a report.

One bar at a time (all symbols' bars of one start together): the core matching engine (``ibstream.sim``) fills the
working orders inside the bar; the signals lifecycle and strategy runtime (``ibstream.strategies``) turn the bar into
signals; orchestration's policy (``ibstream.orchestration``) opens, plans (``ibstream.planning``, Agent0's rule) and
approves runs; the risk checks (``ibstream.risk``) judge each intent against the account the engine keeps; approved
orders become the execution consumer's bracket tickets (``ibstream.ib.brackets``) placed in the engine. Nothing is
copied from the deployables: every decision is the code the pipeline runs.

* ``market``: the recorded bars as the engine's market (a quote per second inside each bar);
* ``broker``: the engine as the backtest's IB: routed orders in, order events, executions and positions out;
* ``engine``: the loop and the bookkeeping (signals, runs, trades, equity);
* ``scores``: trades and equity → per-strategy scores, drawdown;
* ``sources``: bars from the warehouse, Kafka or a CSV file;
* ``report``: HTML, PNG and JSON under the state directory;
* ``run``: the command (sources → engine → report, with a progress line).
"""

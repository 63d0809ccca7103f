"""Orchestration's pure policy: the run state machine, the approval policy and one step per input.

The streams worker (``streams.orchestration``) drives it from Kafka; ``ibstream backtest`` drives the same
decisions in one process over recorded bars.
"""

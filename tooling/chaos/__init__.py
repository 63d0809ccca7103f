"""Soak and chaos campaigns (`ibstream chaos`): the pipeline as processes under a seeded fault schedule, checked
at the end by an independent checker against Kafka, the warehouse and ibsim's ground truth.

The tooling never imports deployables: everything runs as processes (see `tooling.processes`).
"""

from __future__ import annotations

from tooling.chaos.schedule import FAULT_KINDS, Fault, build_schedule

__all__ = ["FAULT_KINDS", "Fault", "build_schedule"]

"""Operator tooling: the demo, UAT, chaos campaigns, the local Kafka stack, replay, and running deployables as
processes for them.

Nothing in the core (``ibstream``) or a deployable imports this package (import-linter enforces it): the
``ibstream`` CLI reaches these commands by module name (``tooling.cli``), and the tooling itself runs deployables as
processes rather than importing them.
"""

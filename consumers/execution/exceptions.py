"""Errors of the execution consumer (all under the one root, IbstreamError)."""

from __future__ import annotations

from ibstream.exceptions import IbstreamError


class ExecutionError(IbstreamError):
    """Root of the execution consumer's errors."""


class ExecutorLockedError(ExecutionError):
    """Another executor with the same IB client id runs on this host."""


class FencedError(ExecutionError):
    """Another executor took over this account's transactional.id: this one must stop placing at once."""


class UnapprovedOrderError(ExecutionError):
    """A routed order without an approved risk decision with the same terms: dead-lettered, never placed."""

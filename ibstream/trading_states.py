"""Trading states from ``control.v1``: one pure fold that risk, execution and the API views all use, so they agree.

A *scope* is the account (targets ``account``, ``global``, ``all``, ``*`` or the account id) or one symbol. Its state
is ``active``, ``reducing`` (only intents that reduce an existing position) or ``halted`` (no new intents; cancels
go). Three commands set it: ``trading_state`` (the state it names), ``kill_switch_on`` (halted; execution also
cancels working entries) and ``kill_switch_off`` (active). A symbol trades under the stricter of its own state and
the account's.

Ordering: every such command carries a per-target ``sequence``; the one in force in a scope is the command with the
highest ``(sequence, command_id)``, whatever order the records arrive in. A command at or below it is *stale* and
ignored: a ``kill_switch_off`` replayed onto the topic from an old window cannot lift a newer kill switch, and a
compacted topic (which keeps one record per kind and target) resolves the same way after every restart. The API
issues sequences from a hybrid clock (``next_sequence``): at least the wall time in microseconds, above every
sequence it issued and the highest it can see recorded (the warehouse's copy of the topic, best effort). Several API
replicas need no coordination: each issues sequences from its own clock, so commands issued further apart than the
replicas' clock skew (milliseconds under NTP, far below how fast an operator clicks) are ordered as issued; two
issued within the skew are ordered deterministically (by sequence, then command id) and every reader picks the same
winner. Counting from "the last sequence read" instead would let two replicas hand out the same number. Old records
without a sequence (0) are ordered by their ``issued_time``.

Failing closed: a control record that does not decode (corrupt, or a command kind or state this reader does not
know) halts its scope, read from the record key (``kill_switch:AAPL``), or the whole account when the key names no
trading scope. The halt holds until a newer command for that scope (a sequence above the one in force before it)
is read after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ibstream.contracts import ControlCommand
from ibstream.contracts.enums import ControlCommandKind, TradingState

#: The scope name of the whole account.
ACCOUNT = "account"
#: Targets that mean the whole account (besides the account id itself).
ACCOUNT_TARGETS = frozenset({"*", "all", "global", ACCOUNT})
#: Command kinds that set a trading state; the record-key families they are written under.
TRADING_KINDS = frozenset(
    {ControlCommandKind.TRADING_STATE, ControlCommandKind.KILL_SWITCH_ON, ControlCommandKind.KILL_SWITCH_OFF}
)
TRADING_FAMILIES = frozenset({"trading_state", "kill_switch"})

#: Strictness, for combining the account's state with a symbol's.
_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

#: Sources of a scope's state besides the command kinds: a control record that could not be read.
UNDECODABLE = "undecodable"
#: Targets of ``trading_state`` commands that switch a strategy instance on or off (``ibstream.strategies.switches``),
#: not a trading scope: no symbol is named like this, and the fold leaves them out.
STRATEGY_TARGET_PREFIX = "strategy:"


def scope_of(target: str, account: str | None = None) -> str:
    """The scope a command target names: ``account`` for the account-wide targets, else the symbol."""
    cleaned = target.strip()
    if cleaned.lower() in ACCOUNT_TARGETS or (account is not None and cleaned == account):
        return ACCOUNT
    return cleaned


def micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def sequence_of(command: ControlCommand) -> int:
    """The command's place in its target's order; records from before sequences existed use their issued time."""
    return command.sequence if command.sequence > 0 else micros(command.issued_time)


def next_sequence(now: datetime, seen: int) -> int:
    """A hybrid-clock sequence: the wall time in microseconds, or one above ``seen`` if that is later."""
    return max(micros(now), seen + 1)


def state_set_by(command: ControlCommand) -> TradingState | None:
    """The state a command sets, None if it is not a trading control. A trading_state without one halts."""
    if command.command is ControlCommandKind.KILL_SWITCH_ON:
        return TradingState.HALTED
    if command.command is ControlCommandKind.KILL_SWITCH_OFF:
        return TradingState.ACTIVE
    if command.command is ControlCommandKind.TRADING_STATE:
        return command.state or TradingState.HALTED
    return None


def scope_of_key(key: bytes | str | None, account: str | None = None) -> str:
    """The scope an (undecodable) record's key names; the account when it names no trading scope."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if not text or ":" not in text:
        return ACCOUNT
    family, _, target = text.partition(":")
    if family not in TRADING_FAMILIES or not target.strip():
        return ACCOUNT
    return scope_of(target, account)


@dataclass(frozen=True)
class ScopeState:
    """The state in force in one scope and the command (who, when, why) that set it."""

    scope: str
    state: TradingState
    sequence: int
    command_id: str
    source: str  # the command kind, or UNDECODABLE
    actor: str
    reason: str
    since: datetime

    @property
    def kill_switch(self) -> bool:
        """Halted by the kill switch (execution cancels working entries in its scope)."""
        return self.source == ControlCommandKind.KILL_SWITCH_ON.value

    def describe(self) -> str:
        return f"{self.state.value} for {self.scope} by {self.actor}: {self.reason}"


@dataclass
class TradingStates:
    """Every scope's state, folded from control records in any order. Not thread-safe: callers hold their lock."""

    account: str | None = None
    scopes: dict[str, ScopeState] = field(default_factory=dict)
    stale: int = 0

    def apply(self, command: ControlCommand) -> ScopeState | None:
        """Fold in a command; the new state of its scope if it changed what is in force, None if ignored (not a
        trading control, stale, or a repeat)."""
        state = state_set_by(command)
        if state is None or command.target.strip().startswith(STRATEGY_TARGET_PREFIX):
            return None
        scope = scope_of(command.target, self.account)
        sequence = sequence_of(command)
        current = self.scopes.get(scope)
        if current is not None and not _newer(sequence, command.command_id, current):
            if command.command_id != current.command_id:
                self.stale += 1
            return None
        new = ScopeState(
            scope=scope,
            state=state,
            sequence=sequence,
            command_id=command.command_id,
            source=command.command.value,
            actor=command.actor,
            reason=command.reason,
            since=command.issued_time,
        )
        self.scopes[scope] = new
        return new

    def apply_undecodable(self, key: bytes | str | None, error: str, at: datetime) -> ScopeState:
        """Halt the scope an unreadable record names; only a newer command for that scope lifts it."""
        scope = scope_of_key(key, self.account)
        current = self.scopes.get(scope)
        halt = ScopeState(
            scope=scope,
            state=TradingState.HALTED,
            # Keeps the sequence in force: a command newer than it (read after this record) lifts the halt, an
            # older one (a replay) does not.
            sequence=current.sequence if current is not None else 0,
            command_id="",
            source=UNDECODABLE,
            actor="ibstream",
            reason=f"an unreadable control record halts {scope} until a newer command for it: {error}",
            since=at,
        )
        self.scopes[scope] = halt
        return halt

    def for_symbol(self, symbol: str) -> ScopeState | None:
        """The stricter of the account's and the symbol's state (None: active, nothing set)."""
        candidates = [s for s in (self.scopes.get(ACCOUNT), self.scopes.get(symbol)) if s is not None]
        if not candidates:
            return None
        return max(candidates, key=lambda s: _RANK[s.state])

    def restricted(self) -> dict[str, ScopeState]:
        """Every scope that is not active."""
        return {scope: s for scope, s in self.scopes.items() if s.state is not TradingState.ACTIVE}


def _newer(sequence: int, command_id: str, current: ScopeState) -> bool:
    if current.source == UNDECODABLE:
        # Only a command issued after the one in force before the unreadable record lifts its halt.
        return sequence > current.sequence
    return (sequence, command_id) > (current.sequence, current.command_id)


def reduces_position(quantity: float, position: float) -> bool:
    """Whether an order of signed ``quantity`` only reduces the signed ``position`` (never opens or flips it)."""
    return position != 0 and quantity != 0 and (quantity > 0) != (position > 0) and abs(quantity) <= abs(position)

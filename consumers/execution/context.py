"""What every part of the executor shares: settings, the IB session, the journal, the book, and which account and
IB connection (generation) it is bound to. Owned by the service's one thread; nothing here is locked."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consumers.execution.journal import Journal
from consumers.execution.state import Book
from ibstream.config import Settings
from ibstream.ib.protocol import Session


@dataclass
class Context:
    settings: Settings
    session: Session
    journal: Journal
    wall: Callable[[], float] = time.monotonic
    book: Book = field(default_factory=Book)
    #: The account the executor is bound to (the first connection decides it).
    account: str | None = None
    #: The IB connection (session generation) events are accepted from.
    generation: int = 0
    #: IB's nextValidId, the floor for new IB order ids (with the journal's high-water mark and the book's ids).
    next_valid_id: int = 0
    #: Flatten orders placed and not yet ended: order_id → symbol (``consumers.execution.flatten``).
    flatten_orders: dict[str, str] = field(default_factory=dict)

    @property
    def client_id(self) -> int:
        return self.session.client_id

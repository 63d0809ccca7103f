"""Table changelog writes delivered before the source offsets that caused them are committed.

A table write (``table[key] = value``) is synchronous, so Faust queues its changelog record in the producer's
``ProducerBuffer`` and a background task hands it to aiokafka. Before each commit Faust flushes that buffer, but
faust-streaming 0.15's flush gives up after waiting 0.1 s for one record to go out and returns as if done; the
record the task is handing over right then is not counted at all; and a send that fails is only logged. So under
load (a first send to a changelog waits for topic metadata, slow on a broker with many topics) the source offset is
committed while its changelog record still sits in the buffer. On SIGTERM the producer stops aiokafka before its
buffer, the queued records are dropped, and the restarted worker recovers a table without them: the outcomes and
signals tables came back empty after a restart on CI's long-running broker (Faust's recovery read highwater -1).

``DeliveredProducerBuffer`` keeps every queued record until the broker acknowledged it; its ``flush`` (which Faust
awaits before every commit) returns only when all of them are acknowledged and raises ``ProducerSendError`` if one
failed, so a commit never covers a table write that is not in the changelog (at-least-once: a worker that dies
before the commit reprocesses those events and writes them again).

Commit points: ``Consumer._commit_offsets`` → ``Producer.flush`` → ``DeliveredProducerBuffer.flush`` → commit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.exceptions import ProducerSendError
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage

log = logging.getLogger(__name__)

#: How often a waiting flush checks that the buffer's sending task is still running.
_FLUSH_POLL_SECONDS = 1.0


class DeliveredProducerBuffer(ProducerBuffer):
    """Faust's producer buffer whose flush waits until every queued record is acknowledged (see the module)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        #: Records queued and not yet acknowledged (or failed), oldest first.
        self.undelivered: dict[FutureMessage, None] = {}
        self.failures: list[BaseException] = []

    def put(self, fut: FutureMessage) -> None:
        self.undelivered[fut] = None
        fut.add_done_callback(self._settled)
        super().put(fut)

    def _settled(self, fut: asyncio.Future[Any]) -> None:
        self.undelivered.pop(fut, None)  # type: ignore[call-overload]  # the key is the FutureMessage itself
        if not fut.cancelled() and fut.exception() is not None:
            self.failures.append(fut.exception())  # type: ignore[arg-type]  # not None: checked above

    async def flush(self) -> None:
        """Return once every record queued before this call is acknowledged by the broker; ``ProducerSendError``
        when one failed (the commit that called us must not go ahead) or when the buffer stopped sending.

        Only those: the offsets being committed were taken before, and their events wrote the table before they were
        acknowledged. Records queued meanwhile belong to the next commit; waiting for them too would never end while
        the agents keep writing."""
        waiting = set(self.undelivered)
        while waiting:
            if self.should_stop:
                raise ProducerSendError(f"{len(waiting)} changelog record(s) not sent: the producer stopped")
            _, waiting = await asyncio.wait(waiting, timeout=_FLUSH_POLL_SECONDS)
        if self.failures:
            failures, self.failures = self.failures, []
            raise ProducerSendError(f"{len(failures)} changelog record(s) failed: {failures[0]!r}")

    async def on_stop(self) -> None:
        # The producer stopped aiokafka before its buffer (mode stops children last): nothing more can be sent.
        # Records still here belong to events whose offsets were not committed (every commit flushed first), so a
        # restarted worker reprocesses those events and writes them again.
        if self.undelivered:
            log.warning("changelog records unsent at stop", extra={"records": len(self.undelivered)})


class StreamsFaustApp(faust.App):
    """``faust.App`` whose producer buffers table changelog writes in a ``DeliveredProducerBuffer``."""

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        buffer = DeliveredProducerBuffer(loop=producer.loop, beacon=producer.beacon)
        buffer.app = self
        producer.buffer = buffer
        return producer

"""A gap's OPEN record reaches Kafka before any live bar after it (the commit point of gap detection).

A restarted producer resumes from the newest bar in Kafka. Were the bar that revealed the gap in Kafka without the
gap record (both are sent asynchronously, to different topics), a crash in between would leave the gap's bars
missing for good; held back, the restart finds the gap again itself. So the symbol's live bars wait until Kafka
acknowledged every gap record of the symbol; a record Kafka refused is sent again and the bars keep waiting.
"""

from __future__ import annotations

import collections

from ibstream.contracts import Bar, Gap, bars, gaps, utc_now
from ibstream.contracts.enums import GapState
from ibstream.kafka.records import RecordProducer
from producers.market_data.bar_tracker import OpenGap


class GapRecords:
    """Live bars held per symbol until Kafka has the symbol's newest gap record."""

    def __init__(self, sink: RecordProducer) -> None:
        self.sink = sink
        self.held_bars: dict[str, list[Bar]] = {}
        self.unacknowledged: dict[str, int] = {}
        self._outcomes: collections.deque[tuple[Gap, bool]] = collections.deque()

    def record_open(self, gap: OpenGap) -> None:
        """Send the gap's OPEN record and hold the symbol's live bars until Kafka has it."""
        symbol = gap.symbol
        self.held_bars.setdefault(symbol, [])
        self.unacknowledged[symbol] = self.unacknowledged.get(symbol, 0) + 1
        self._send(gap.record(GapState.OPEN, utc_now()))

    def send_bar(self, record: Bar) -> None:
        """A live bar: held while its symbol waits for a gap record, else sent."""
        held = self.held_bars.get(record.symbol)
        if held is not None:
            held.append(record)
        else:
            self.sink.send(bars.TOPIC, record)

    def release(self) -> None:
        """Act on Kafka's answers: send held bars once their gap records are in, send refused records again."""
        while self._outcomes:
            record, delivered = self._outcomes.popleft()
            if not delivered:
                self._send(record)  # the bars wait on
                continue
            symbol = record.symbol
            self.unacknowledged[symbol] -= 1
            if self.unacknowledged[symbol] == 0:
                del self.unacknowledged[symbol]
                for bar in self.held_bars.pop(symbol, []):
                    self.sink.send(bars.TOPIC, bar)

    def _send(self, record: Gap) -> None:
        def recorded(error: object, _message: object) -> None:
            # Runs inside librdkafka's poll, where producing again would re-enter it: the loop acts on it.
            self._outcomes.append((record, error is None))

        self.sink.send(gaps.TOPIC, record, on_delivery=recorded)

"""The sink's rows without models, against chDB itself: rows from decoded fields and rows from models land in one
insert and read back as the records they came from, and the warehouse reads them back as fields that encode to
the very bytes the records encode to (what replay from the warehouse re-emits)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import Quote, quotes
from ibstream.warehouse import Warehouse
from tests.integration.warehouse_helpers import ALL_TIME, CODEC, warehouse_settings

pytestmark = pytest.mark.integration

#: Now: an old Kafka timestamp would let the table's retention TTL drop the rows at the next merge.
KAFKA_MS = int(time.time() * 1000)


def test_rows_from_fields_and_from_models_share_one_insert_and_read_back_alike(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    sent = [
        quote_sample.model_copy(
            update={"con_id": i, "bid": None if i % 3 == 0 else 100.0 + i, "ingest_time": quote_sample.ingest_time}
            | {"event_time": quote_sample.event_time + timedelta(microseconds=7 * i)}
        )
        for i in range(20)
    ]
    topic = "t." + quotes.TOPIC.name
    with Warehouse.open(warehouse_settings(settings, tmp_path / "wh")) as warehouse:
        table = warehouse.schema.for_topic(quotes.TOPIC)
        rows = []
        for offset, quote in enumerate(sent):
            encoded = CODEC.encode(topic, quote)
            if offset % 2:  # as the sink builds a record's row when the model is needed (an older writer, …)
                row = table.tick_row(CODEC.decode(topic, Quote, encoded, 0, offset), topic, 0, offset, KAFKA_MS, 1)
            else:
                fields = CODEC.decode_fields(topic, Quote, encoded, 0, offset)
                assert fields is not None
                row = table.fields_row(fields, topic, 0, offset, KAFKA_MS, 1)
            rows.append(row)
        warehouse.insert(table, rows)

        stored = list(warehouse.stream_records(table, topic, *ALL_TIME))
        assert [s.record for s in stored] == sent
        assert {int(s.kafka_ts.timestamp() * 1000) for s in stored} == {KAFKA_MS}
        as_fields = list(warehouse.stream_fields(table, topic, *ALL_TIME))
        assert [CODEC.encode_fields(topic, Quote, fields) for fields in as_fields] == [
            CODEC.encode(topic, quote) for quote in sent
        ]

"""The ClickHouse sink's batches on the embedded engine, committing to the real broker: rows,
dead letters, and the offsets committed with them. The batches are records as the sink reads
them (topic, partition, offset, key, value), made here so that each lands where the test says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from driftway.consumers.sink import ClickHouseSink
from driftway.io.clickhouse import connect, ensure_schema, run_query
from driftway.io.kafka import ensure_topics
from driftway.logic.registry import next_deployment
from driftway.schemas.events import Label, Metric, Prediction, PublishRequest, TrainingExample
from driftway.settings import Settings

TS = datetime(2026, 1, 1, tzinfo=UTC)
DEEP = b'{"event_id": "x", "label": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
FAR = b'{"event_id": "y", "label": true, "ts": 1e300}'  # epoch ms far outside any calendar


class Message:
    """What the sink reads of a confluent_kafka.Message."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        self._coordinates = (topic, partition, offset)
        self._value = value

    def topic(self) -> str:
        return self._coordinates[0]

    def partition(self) -> int:
        return self._coordinates[1]

    def offset(self) -> int:
        return self._coordinates[2]

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> None:
        return None


pytestmark = pytest.mark.integration


@pytest.fixture
def sink(stack_settings: Settings, embedded_settings: Settings) -> Iterator[ClickHouseSink]:
    """A sink on this test's topics of the session broker and on the engine this process owns."""
    settings = stack_settings.model_copy(update={
        "state_dir": embedded_settings.state_dir,
        "clickhouse_database": f"sink_{uuid.uuid4().hex[:8]}"})
    ensure_topics(settings)
    client = connect(settings)
    ensure_schema(client, settings.clickhouse_database)
    sink = ClickHouseSink(settings, client)
    yield sink
    sink._consumer.close()
    client.close()


def committed(settings: Settings,
              offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """What the sink's group has committed on Kafka for these partitions."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"{settings.app_id}-sink", "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in offsets], timeout=30)
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
    finally:
        consumer.close()


def prediction(event_id: str) -> bytes:
    return Prediction(event_id=event_id, entity_id="u", ts=TS, model="m", version="v1",
                      prediction=True, score=0.9, latency_ms=1.0, received_at=0.0,
                      predicted_at=0.0).to_bytes()


def example(event_id: str) -> bytes:
    return TrainingExample(event_id=event_id, model="m", version="v1", features={"x": 1.0},
                           label=True, served=True).to_bytes()


def batch(sink: ClickHouseSink) -> list[Message]:
    """Good records of five topics with a poison record of each kind between them."""
    def at(key: str, partition: int, offset: int, value: bytes) -> Message:
        return Message(sink.settings.topic(key), partition, offset, value)

    return [
        at("predictions", 0, 0, prediction("p0")),
        at("predictions", 0, 1, b'{"event_id": "p1", '),  # bad JSON
        at("predictions", 0, 2, prediction("p2")),
        at("labels", 0, 0, Label(event_id="p0", label=True).to_bytes()),
        at("labels", 0, 1, DEEP),
        at("labels", 0, 2, Label(event_id="p2", label=False, ts=TS).to_bytes()),
        at("labels", 1, 7, FAR),
        at("training", 0, 0, example("p0")),
        at("training", 0, 1, PublishRequest(model="m", ts=TS).to_bytes()),  # an order: no row
        at("training", 0, 2, example("p2")),
        at("metrics", 0, 0, Metric(ts=TS, model="m", version="v1", metric="accuracy",
                                   value=0.5, window=10, examples=10).to_bytes()),
        at("deployments", 0, 0, next_deployment(None, "m", "init", "v1").to_bytes()),
    ]


def offsets_by_table(rows: dict[str, list[list[Any]]]) -> dict[str, list[tuple[str, int, int]]]:
    return {table: [tuple(r[-3:]) for r in table_rows] for table, table_rows in rows.items()}


def test_decode_gives_rows_per_table_and_one_dead_letter_per_poison(sink: ClickHouseSink) -> None:
    t = sink.settings.topic
    rows = offsets_by_table(sink.decode(batch(sink)))
    assert rows == {
        "predictions": [(t("predictions"), 0, 0), (t("predictions"), 0, 2)],
        "labels": [(t("labels"), 0, 0), (t("labels"), 0, 2)],
        "training": [(t("training"), 0, 0), (t("training"), 0, 2)],
        "metrics": [(t("metrics"), 0, 0)],
        "deployments": [(t("deployments"), 0, 0)],
        "dead_letters": [(t("predictions"), 0, 1), (t("labels"), 0, 1), (t("labels"), 1, 7)],
    }


def test_write_stores_the_rows_and_commits_after_each_batch(sink: ClickHouseSink) -> None:
    messages = batch(sink)
    sink.write(messages)
    db, t = sink.settings.clickhouse_database, sink.settings.topic
    events = run_query(sink.client, "SELECT event_id FROM predictions ORDER BY event_id", db)
    assert events.rows == [["p0"], ["p2"]]
    labels = run_query(sink.client, "SELECT event_id, label FROM labels ORDER BY event_id", db)
    assert labels.rows == [["p0", "true"], ["p2", "false"]]
    letters = run_query(sink.client, "SELECT source_topic, source_partition, source_offset, "
                                     "processor, error, payload FROM dead_letters "
                                     "ORDER BY source_topic, source_offset", db).rows
    assert [tuple(r[:4]) for r in letters] == [
        (t("labels"), 0, 1, "sink"), (t("labels"), 1, 7, "sink"), (t("predictions"), 0, 1, "sink")]
    assert "recursion limit" in letters[0][4] and "outside the years" in letters[1][4]
    assert [r[5].encode() for r in letters] == [DEEP, FAR, b'{"event_id": "p1", ']  # as sent
    assert sink.rows_written == 8 + 3  # rows and dead letters
    # The skipped publish request and every poison record are committed with their batch.
    expected = {(t("predictions"), 0): 3, (t("labels"), 0): 3, (t("labels"), 1): 8,
                (t("training"), 0): 3, (t("metrics"), 0): 1, (t("deployments"), 0): 1}
    assert committed(sink.settings, expected) == expected
    # On reassignment the sink resumes after what ClickHouse holds, dead letters included.
    assert sink.stored_offsets()[(t("labels"), 1)] == 7


def test_a_value_out_of_its_column_range_costs_one_dead_letter(sink: ClickHouseSink) -> None:
    metric = Metric(ts=TS, model="m", version="v1", metric="accuracy", value=0.5, window=10,
                    examples=10)
    topic = sink.settings.topic("metrics")
    sink.write([Message(topic, 0, 0, metric.to_bytes()),
                Message(topic, 0, 1, metric.model_copy(update={"window": -1}).to_bytes())])
    db = sink.settings.clickhouse_database
    assert run_query(sink.client, "SELECT count() FROM metrics", db).rows == [[1]]
    assert run_query(sink.client, "SELECT count() FROM dead_letters", db).rows == [[1]]

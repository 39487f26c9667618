"""The ClickHouse sink on the processor runtime, on the embedded engine and the real broker:
rows, dead letters, and the offsets committed after them. Its rows are first checked on records
as the runtime hands them over (driftway.io.runtime.Incoming), then on the topics themselves."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from driftway.consumers.sink import ClickHouseSink
from driftway.io.clickhouse import connect, ensure_schema, run_query
from driftway.io.kafka import ensure_topics, make_producer
from driftway.io.runtime import Incoming, Runtime
from driftway.logic.registry import next_deployment
from driftway.schemas.events import Label, Metric, Prediction, PublishRequest, TrainingExample
from driftway.settings import Settings
from tests.integration.helpers import wait_for

TS = datetime(2026, 1, 1, tzinfo=UTC)
DEEP = b'{"event_id": "x", "label": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
FAR = b'{"event_id": "y", "label": true, "ts": 1e300}'  # epoch ms far outside any calendar


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
    client.close()


def committed(settings: Settings,
              offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """What the sink's group has committed on Kafka for these partitions."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"{settings.app_id}-sink", "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in offsets], timeout=30)
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
    except KafkaException as exc:  # a fresh broker's coordinator still loading: ask again
        if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_COORDINATOR:
            raise
        return {}
    finally:
        consumer.close()


def prediction(event_id: str) -> bytes:
    return Prediction(event_id=event_id, entity_id="u", ts=TS, model="m", version="v1",
                      prediction=True, score=0.9, latency_ms=1.0, received_at=0.0,
                      predicted_at=0.0).to_bytes()


def example(event_id: str) -> bytes:
    return TrainingExample(event_id=event_id, model="m", version="v1", features={"x": 1.0},
                           label=True, served=True).to_bytes()


def batch() -> list[tuple[str, int, bytes]]:
    """Good records of five topics with a poison record of each kind between them:
    (topic key, partition, value), offsets in the order given per partition."""
    return [
        ("predictions", 0, prediction("p0")),
        ("predictions", 0, b'{"event_id": "p1", '),  # bad JSON
        ("predictions", 0, prediction("p2")),
        ("labels", 0, Label(event_id="p0", label=True).to_bytes()),
        ("labels", 0, DEEP),
        ("labels", 0, Label(event_id="p2", label=False, ts=TS).to_bytes()),
        ("labels", 1, FAR),
        ("training", 0, example("p0")),
        ("training", 0, PublishRequest(model="m", ts=TS).to_bytes()),  # an order: no row
        ("training", 0, example("p2")),
        ("metrics", 0, Metric(ts=TS, model="m", version="v1", metric="accuracy",
                              value=0.5, window=10, examples=10).to_bytes()),
        ("deployments", 0, next_deployment(None, "m", "init", "v1").to_bytes()),
    ]


def incoming(records: list[tuple[str, int, bytes]]) -> list[Incoming]:
    """The records as the runtime hands them over, each partition's offsets from 0."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for key, partition, value in records:
        offset = offsets.get((key, partition), 0)
        offsets[(key, partition)] = offset + 1
        out.append(Incoming(key, partition, offset, b"k", value, 0.0))
    return out


def offsets_by_table(rows: dict[str, list[list[Any]]]) -> dict[str, list[tuple[str, int, int]]]:
    return {table: [tuple(r[-3:]) for r in table_rows] for table, table_rows in rows.items()}


def test_rows_per_table_and_one_dead_letter_per_poison(sink: ClickHouseSink) -> None:
    t = sink.settings.topic
    rows = offsets_by_table(sink.rows(incoming(batch())))
    assert rows == {
        "predictions": [(t("predictions"), 0, 0), (t("predictions"), 0, 2)],
        "labels": [(t("labels"), 0, 0), (t("labels"), 0, 2)],
        "training": [(t("training"), 0, 0), (t("training"), 0, 2)],
        "metrics": [(t("metrics"), 0, 0)],
        "deployments": [(t("deployments"), 0, 0)],
        # The labels' poison is feedback's dead letter (topology checked_by): one each.
        "dead_letters": [(t("predictions"), 0, 1)],
    }


def test_the_sink_stores_the_rows_then_commits_their_offsets(sink: ClickHouseSink) -> None:
    settings, t = sink.settings, sink.settings.topic
    producer = make_producer(settings)
    for key, partition, value in batch():
        producer.produce(t(key), key=b"k", value=value, partition=partition)
    assert producer.flush(30) == 0
    runtime = Runtime(settings, sink)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    expected = {(t("predictions"), 0): 3, (t("labels"), 0): 3, (t("labels"), 1): 1,
                (t("training"), 0): 3, (t("metrics"), 0): 1, (t("deployments"), 0): 1}
    try:
        wait_for(lambda: committed(settings, expected), lambda c: c == expected, 60,
                 "the sink to commit every record")
    finally:
        runtime.stop()
        thread.join(30)
    db = settings.clickhouse_database
    events = run_query(sink.client, "SELECT event_id FROM predictions ORDER BY event_id", db)
    assert events.rows == [["p0"], ["p2"]]
    labels = run_query(sink.client, "SELECT event_id, label FROM labels ORDER BY event_id", db)
    assert labels.rows == [["p0", "true"], ["p2", "false"]]
    letters = run_query(sink.client, "SELECT source_topic, source_partition, source_offset, "
                                     "processor, error, payload FROM dead_letters "
                                     "ORDER BY source_topic, source_partition, source_offset",
                        db).rows
    # The labels' poison is feedback's dead letter (topology checked_by): the sink passes it
    # over; the predictions' is the sink's own, with its bytes as sent.
    assert [tuple(r[:4]) for r in letters] == [(t("predictions"), 0, 1, "sink")]
    assert [r[5].encode() for r in letters] == [b'{"event_id": "p1", ']
    assert sink.rows_written == 8 + 1  # rows and dead letters
    # The skipped publish request and every poison record were committed with the rows. On
    # reassignment the sink reads from the committed offsets and learns what each table holds
    # (a partition holding only a passed-over record holds nothing): a record read again
    # whose row or dead letter is stored is passed over.
    assert ("labels", t("labels"), 1) not in sink.stored_offsets()
    assert sink.resume_at([("labels", 0), ("labels", 1), ("predictions", 0),
                           ("feedback", 0)]) == {}
    assert sink.stored == {(t("predictions"), 0): {"predictions": 2, "dead_letters": 1},
                           (t("labels"), 0): {"labels": 2}}
    again = incoming([(key, partition, value) for key, partition, value in batch()
                      if key in ("predictions", "labels")])
    assert sink.rows(again) == {}


def test_a_value_out_of_its_column_range_costs_one_dead_letter(sink: ClickHouseSink) -> None:
    metric = Metric(ts=TS, model="m", version="v1", metric="accuracy", value=0.5, window=10,
                    examples=10)
    bad = metric.model_copy(update={"window": -1}).to_bytes()
    sink.rows([])  # nothing kept before
    for record in incoming([("metrics", 0, metric.to_bytes()), ("metrics", 0, bad)]):
        sink.handle(record)
    assert sink.flush() == []
    db = sink.settings.clickhouse_database
    assert run_query(sink.client, "SELECT count() FROM metrics", db).rows == [[1]]
    letters = run_query(sink.client, "SELECT source_offset, error, payload FROM dead_letters",
                        db).rows
    assert len(letters) == 1 and letters[0][0] == 1 and "metrics refused the row" in letters[0][1]
    assert letters[0][2].encode() == bad  # the record as it came, replayable

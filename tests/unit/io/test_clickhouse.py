"""The ClickHouse layer on the real embedded engine (chDB), without Kafka."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from driftway.io.clickhouse import (
    OFFSET_COLUMNS,
    SINK_TABLES,
    TableSpec,
    connect,
    ensure_schema,
    prediction_row,
    run_query,
    split_sql,
)
from driftway.schemas.events import (
    Contribution,
    Deployment,
    FeedbackOutcome,
    InvalidRecord,
    Metric,
    ModelVersion,
    Output,
    Prediction,
    PublishRequest,
    Record,
    TrainingExample,
    TrainingOffsets,
)
from driftway.settings import Settings

TS = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def prediction(event_id: str) -> Prediction:
    now = time.time()
    return Prediction(event_id=event_id, entity_id="u", ts=datetime(2026, 1, 1, tzinfo=UTC),
                      model="m", version="v1", prediction=True, score=0.9,
                      explanation=[Contribution(feature="x", value=1.0, contribution=0.5)],
                      latency_ms=1.5, received_at=now, predicted_at=now)


@pytest.fixture(scope="module")
def client(embedded_settings: Settings):  # type: ignore[no-untyped-def]
    c = connect(embedded_settings)
    ensure_schema(c, "driftway")
    ensure_schema(c, "driftway")  # idempotent
    yield c
    c.close()


def test_rows_fit_their_tables_and_duplicates_count_once(client) -> None:  # type: ignore[no-untyped-def]
    spec = next(s for s in SINK_TABLES if s.table == "predictions")
    columns = list(spec.columns) + list(OFFSET_COLUMNS)
    rows = [prediction_row(prediction(f"e{i}")) + ["unit", 0, i] for i in range(3)]
    client.insert("driftway.predictions", rows, column_names=columns)
    client.insert("driftway.predictions", rows[:1], column_names=columns)  # redelivered
    result = run_query(client, "SELECT count(), uniqExact(event_id), any(prediction), "
                               "any(explanation) FROM predictions WHERE _topic = 'unit'",
                        "driftway")
    assert result.rows[0][:3] == [3, 3, "true"]
    assert json.loads(result.rows[0][3])[0]["feature"] == "x"


@pytest.fixture(scope="module")
def reader(client, embedded_settings: Settings):  # type: ignore[no-untyped-def]
    """A second connection for queries, as the sink has (a refused write leaves it read-only)."""
    c = connect(embedded_settings)
    yield c
    c.close()


@pytest.mark.parametrize("sql", [
    "INSERT INTO predictions (event_id) VALUES ('x')",
    "DROP TABLE predictions",
    "CREATE TABLE z (a Int8) ENGINE = Memory",
    "SELECT 1 SETTINGS readonly = 0",
])
def test_queries_are_read_only(client, reader, sql: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="readonly"):
        run_query(reader, sql, "driftway")
    # The writing connection is untouched.
    client.insert("driftway.labels", [["ro", "x", datetime.now(UTC), "unit", 0, 0]],
                  column_names=["event_id", "label", "ts", *OFFSET_COLUMNS])


def test_every_sink_table_exists_with_offset_columns(client) -> None:  # type: ignore[no-untyped-def]
    for spec in SINK_TABLES:
        cols = {r[0] for r in client.query(f"DESCRIBE TABLE driftway.{spec.table}").result_rows}
        assert set(spec.columns) | set(OFFSET_COLUMNS) <= cols, spec.table


def test_a_second_process_gets_a_clear_busy_error(client, embedded_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = ("from driftway.settings import Settings; from driftway.io.clickhouse import connect;"
            f"connect(Settings(state_dir={str(embedded_settings.state_dir)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "in use by another process" in done.stderr


def spec_of(table: str) -> TableSpec:
    return next(s for s in SINK_TABLES if s.table == table)


def insert_one(client: Any, spec: TableSpec, record: Record, offset: int) -> dict[str, Any]:
    """Insert the record's row as the sink would, and read the stored row back."""
    row = spec.to_row(record)
    assert row is not None
    client.insert(f"driftway.{spec.table}", [row + ["unit", 0, offset]],
                  column_names=[*spec.columns, *OFFSET_COLUMNS])
    result = run_query(client, f"SELECT * FROM {spec.table} WHERE _topic = 'unit' "
                               f"AND _offset = {offset}", "driftway")
    [stored] = result.records()
    return stored


def test_model_version_row_keeps_lineage_offsets_and_provenance(client) -> None:  # type: ignore[no-untyped-def]
    v = ModelVersion(model="m", version="b" * 64, parent="a" * 64, created_at=TS, reason="1000",
                     training_offsets=TrainingOffsets(topic="t.training", start=10, end=1010),
                     examples_seen=1010, hyperparameters={"lr": 0.1}, metrics={"accuracy": 0.9},
                     libraries={"river": "0.22"}, artifact_size=4321, signature="s" * 64)
    stored = insert_one(client, spec_of("model_versions"), v, 1)
    assert {k: stored[k] for k in ("version", "parent", "reason", "training_topic",
                                   "training_start", "training_end", "examples_seen",
                                   "artifact_size", "signature")} == {
        "version": "b" * 64, "parent": "a" * 64, "reason": "1000", "training_topic": "t.training",
        "training_start": 10, "training_end": 1010, "examples_seen": 1010, "artifact_size": 4321,
        "signature": "s" * 64}
    assert json.loads(stored["metrics"]) == {"accuracy": 0.9}
    assert json.loads(stored["libraries"]) == {"river": "0.22"}
    assert json.loads(stored["hyperparameters"]) == {"lr": 0.1}
    first = insert_one(client, spec_of("model_versions"),
                       v.model_copy(update={"version": "c" * 64, "parent": None,
                                            "training_offsets": None, "signature": None}), 2)
    assert (first["parent"], first["training_start"], first["signature"]) == (None, None, "")


def test_deployment_metric_and_feedback_rows(client) -> None:  # type: ignore[no-untyped-def]
    d = Deployment(model="m", champion="a", shadows=["b", "c"], action="shadow", version="c",
                   previous="a", reason="try it", by="cli", ts=TS)
    stored = insert_one(client, spec_of("deployments"), d, 3)
    assert (stored["ts"], stored["shadows"], stored["action"], stored["previous"], stored["by"]) \
        == ("2026-01-01T12:00:00.123000", ["b", "c"], "shadow", "a", "cli")
    m = Metric(ts=TS, model="m", version="a", metric="accuracy", value=0.75, window=1000,
               examples=5000)
    stored = insert_one(client, spec_of("metrics"), m, 4)
    assert (stored["metric"], stored["value"], stored["window"], stored["examples"]) == (
        "accuracy", 0.75, 1000, 5000)
    f = FeedbackOutcome(ts=TS, event_id="e-1", outcome="orphan_label", waited_s=600.0)
    stored = insert_one(client, spec_of("feedback"), f, 5)
    assert (stored["event_id"], stored["outcome"], stored["model"], stored["waited_s"]) == (
        "e-1", "orphan_label", None, 600.0)


def test_a_replayed_metric_counts_once(client) -> None:  # type: ignore[no-untyped-def]
    m = Metric(ts=TS, model="replay", version="a", metric="accuracy", value=0.5, window=10,
               examples=100)
    insert_one(client, spec_of("metrics"), m, 6)
    insert_one(client, spec_of("metrics"), m.model_copy(update={"ts": datetime.now(UTC)}), 7)
    result = run_query(client, "SELECT count() FROM metrics WHERE model = 'replay'", "driftway")
    assert result.rows == [[1]]


def test_training_topic_decodes_examples_and_skips_publish_requests(client) -> None:  # type: ignore[no-untyped-def]
    spec = spec_of("training")
    example = TrainingExample(event_id="e-1", model="m", version="a", features={"x": 1.0},
                              label=True, served=True, score=0.8,
                              outputs={"a": Output(prediction=True, score=0.8,
                                                   proba={"true": 0.8, "false": 0.2}),
                                       "b": Output(prediction=False, score=0.6)})
    decoded = spec.decode(example.to_bytes())
    assert decoded == example
    stored = insert_one(client, spec, decoded, 8)
    assert (stored["label"], stored["served"], stored["score"]) == ("true", "true", 0.8)
    assert json.loads(stored["outputs"]) == {
        "a": {"prediction": True, "score": 0.8, "proba": {"true": 0.8, "false": 0.2}},
        "b": {"prediction": False, "score": 0.6, "proba": None}}

    request = spec.decode(PublishRequest(model="m", ts=TS).to_bytes())
    assert isinstance(request, PublishRequest) and spec.to_row(request) is None
    with pytest.raises(InvalidRecord, match="invalid TrainingRecord: Invalid value 'retrain'"):
        spec.decode(b'{"type": "retrain", "model": "m"}')


def test_sink_tables_leave_internal_topics_alone() -> None:
    keys = {s.topic_key for s in SINK_TABLES}
    assert {"deployments", "metrics", "feedback", "training"} <= keys
    assert not keys & {"served", "model-artifacts", "raw"}


#: The two tables as the first DDL created them, before lineage and outputs were recorded.
OLD_TABLES = """
CREATE DATABASE IF NOT EXISTS {db};
CREATE TABLE {db}.model_versions (model LowCardinality(String), version String,
    parent Nullable(String), created_at DateTime64(3, 'UTC'), examples_seen UInt64,
    feature_set LowCardinality(String), hyperparameters String, _topic LowCardinality(String),
    _partition UInt32, _offset UInt64, inserted_at DateTime64(3, 'UTC') DEFAULT now64(3))
ENGINE = ReplacingMergeTree ORDER BY (model, version);
CREATE TABLE {db}.training (event_id String, model LowCardinality(String),
    version LowCardinality(String), label String, served String, score Nullable(Float64),
    _topic LowCardinality(String), _partition UInt32, _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3))
ENGINE = ReplacingMergeTree ORDER BY (_partition, _offset);
INSERT INTO {db}.model_versions (model, version, parent, created_at, examples_seen,
    feature_set, hyperparameters, _topic, _partition, _offset)
    VALUES ('m', 'old', NULL, now64(3), 7, 'fs1', '{{}}', 'x', 0, 0);
"""


def test_ddl_upgrades_a_database_made_by_the_first_version_in_place(client) -> None:  # type: ignore[no-untyped-def]
    for statement in split_sql(OLD_TABLES.format(db="driftway_v0")):
        client.command(statement)
    ensure_schema(client, "driftway_v0")
    ensure_schema(client, "driftway_v0")  # idempotent
    for spec in SINK_TABLES:
        cols = {r[0] for r in client.query(f"DESCRIBE TABLE driftway_v0.{spec.table}").result_rows}
        assert set(spec.columns) | set(OFFSET_COLUMNS) <= cols, spec.table
    old = run_query(client, "SELECT version, examples_seen, reason, training_start, metrics, "
                            "artifact_size FROM model_versions", "driftway_v0")
    assert old.rows == [["old", 7, "", None, "{}", 0]]

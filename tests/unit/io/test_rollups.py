"""Per-minute rollups, the evaluations view and TTLs, on the embedded engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from driftway.io.clickhouse import (
    OFFSET_COLUMNS,
    SINK_TABLES,
    connect,
    ensure_schema,
    prediction_row,
    run_query,
    training_row,
)
from driftway.schemas.events import Output, Prediction, TrainingExample
from driftway.settings import Settings

DB = "driftway_rollups"
MINUTE = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def client(embedded_settings: Settings):  # type: ignore[no-untyped-def]
    c = connect(embedded_settings)
    ensure_schema(c, DB)
    yield c
    c.close()


def insert(client, table: str, rows: list[list]) -> None:  # type: ignore[no-untyped-def]
    spec = next(s for s in SINK_TABLES if s.table == table)
    coordinates = [[f"t.{table}", 0, i] for i in range(len(rows))]
    client.insert(f"{DB}.{table}", [r + c for r, c in zip(rows, coordinates, strict=True)],
                  column_names=[*spec.columns, *OFFSET_COLUMNS])


def test_rollups_summarise_serving_and_quality_per_minute_and_version(client) -> None:  # type: ignore[no-untyped-def]
    predictions, examples = [], []
    for i in range(100):
        at = MINUTE + (i % 2) * 60 + 1  # two minutes
        version = "v1" if i < 60 else "v2"
        p = Prediction(event_id=f"e{i}", entity_id="u", ts=datetime.fromtimestamp(at, UTC),
                       model="m", version=version, prediction=True, score=0.5 + i / 400,
                       latency_ms=float(i), received_at=at, predicted_at=at)
        predictions.append(prediction_row(p))
        label = i % 4 != 0  # the champion always says True: 75 % right
        proba = {"true": 0.8, "false": 0.2}
        examples.append(training_row(TrainingExample(
            event_id=f"e{i}", model="m", version=version, features={}, label=label,
            served=True, score=0.8, predicted_at=at, labelled_at=at + 5,
            outputs={version: Output(prediction=True, score=0.8, proba=proba),
                     "shadow": Output(prediction=label, score=0.9,
                                      proba={"true": 0.9 if label else 0.1,
                                             "false": 0.1 if label else 0.9})})))
    insert(client, "predictions", predictions)
    insert(client, "training", examples)

    rows = run_query(client, "SELECT version, sum(events), sum(labelled), "
                             "round(sum(accuracy * labelled) / sum(labelled), 3), "
                             "max(latency_p99_ms) FROM rollup_minute GROUP BY version "
                             "ORDER BY version", DB).rows
    assert [r[:4] for r in rows] == [["v1", 60, 60, 0.75], ["v2", 40, 40, 0.75]]
    assert 58 <= rows[0][4] <= 59.5  # p99 of latencies 0..59 (quantiles are approximate)
    minutes = run_query(client, "SELECT count(DISTINCT minute) FROM rollup_minute", DB).rows
    assert minutes == [[2]]
    loss = run_query(client, "SELECT round(avg(log_loss), 4) FROM rollup_minute", DB).rows[0][0]
    assert loss == pytest.approx(0.75 * 0.2231 + 0.25 * 1.6094, abs=1e-3)

    # Every version's answer, one row each: the shadow was right every time.
    by_version = run_query(client, "SELECT version, champion, count(), avg(correct) "
                                   "FROM evaluations GROUP BY version, champion "
                                   "ORDER BY version", DB).rows
    assert by_version == [["shadow", False, 100, 1.0], ["v1", True, 60, 0.75],
                          ["v2", True, 40, 0.75]]


def test_ttls_follow_the_settings_and_go_when_set_to_zero(client) -> None:  # type: ignore[no-untyped-def]
    ensure_schema(client, DB, ttl_days=30, rollup_ttl_days=365)
    ddl = client.command(f"SHOW CREATE TABLE {DB}.predictions")
    assert "TTL toDateTime(inserted_at) + toIntervalDay(30)" in ddl
    assert "toIntervalDay(365)" in client.command(f"SHOW CREATE TABLE {DB}.quality_minute")
    assert "TTL" not in client.command(f"SHOW CREATE TABLE {DB}.model_versions")
    ensure_schema(client, DB)
    assert "TTL" not in client.command(f"SHOW CREATE TABLE {DB}.predictions")

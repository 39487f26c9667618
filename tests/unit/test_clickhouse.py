"""The ClickHouse layer on the real embedded engine (chDB), without Kafka."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from consumers.clickhouse import (
    OFFSET_COLUMNS,
    SINK_TABLES,
    connect,
    ensure_schema,
    prediction_row,
    run_query,
)
from driftway.settings import Settings
from schemas.events import Contribution, Prediction


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
    assert '"feature": "x"' in result.rows[0][3]


@pytest.mark.parametrize("sql", [
    "INSERT INTO predictions (event_id) VALUES ('x')",
    "DROP TABLE predictions",
    "CREATE TABLE z (a Int8) ENGINE = Memory",
    "SELECT 1 SETTINGS readonly = 0",
])
def test_queries_are_read_only(client, sql: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="readonly"):
        run_query(client, sql, "driftway")


def test_every_sink_table_exists_with_offset_columns(client) -> None:  # type: ignore[no-untyped-def]
    for spec in SINK_TABLES:
        cols = {r[0] for r in client.query(f"DESCRIBE TABLE driftway.{spec.table}").result_rows}
        assert set(spec.columns) | set(OFFSET_COLUMNS) <= cols, spec.table


def test_a_second_process_gets_a_clear_busy_error(client, embedded_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = ("from driftway.settings import Settings; from consumers.clickhouse import connect;"
            f"connect(Settings(state_dir={str(embedded_settings.state_dir)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "in use by another process" in done.stderr

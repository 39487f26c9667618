"""ClickHouse access through clickhouse-connect: embedded chDB or a server, same code.

Holds the DDL loader, the read-only query path, and how each topic's records become table rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import clickhouse_connect
import msgspec
from clickhouse_connect.driver.client import Client

from driftway.logic.query_policy import deduplicating, refusal
from driftway.schemas.events import (
    DeadLetter,
    Deployment,
    DriftEvent,
    ExperimentResult,
    FeedbackOutcome,
    Label,
    Metric,
    ModelVersion,
    Prediction,
    PublishRequest,
    TrainingExample,
    decode_training,
    label_text,
)
from driftway.schemas.topology import TOPICS
from driftway.settings import QuerySettings, Settings

#: What the Grafana data source sends with its queries: read-only (a write or DDL is refused by
#: ClickHouse itself), and FINAL on every table, so a record the sink stored twice is counted once.
#: `driftway query` is stricter (`query_settings`). On chDB a refused write leaves its connection
#: read-only, so user queries get a connection of their own (see the sink).
READ_ONLY = {"readonly": 2, "final": 1}


class QueryRefused(ValueError):
    """A user query reads, or could read, outside the monitoring database; the message says
    what and why."""


def query_settings(limits: QuerySettings, final: bool = True) -> dict[str, Any]:
    """The ClickHouse settings of one user query: readonly=1 (no writes, no DDL, no changed
    settings, no table function but pure generators), FINAL (unless `final` is False: rows as
    stored), and `limits`."""
    return {"readonly": 1, "final": int(final),
            "max_execution_time": limits.max_seconds, "timeout_overflow_mode": "throw",
            "max_memory_usage": limits.max_memory_bytes,
            "max_result_rows": limits.max_rows, "result_overflow_mode": "throw"}


class EngineBusy(RuntimeError):
    """The embedded engine's directory is owned by another process."""


def connect(settings: Settings) -> Client:
    """A client for the configured ClickHouse: chDB on disk, or an HTTP(S) server."""
    dsn = settings.clickhouse_dsn_resolved
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        if settings.embedded_clickhouse and "already initialized with path" in str(exc):
            raise EngineBusy(
                f"this process already opened another embedded ClickHouse directory ({exc}); "
                "chDB allows one per process"
            ) from exc
        if settings.embedded_clickhouse and "EmbeddedServer" in str(exc):
            raise EngineBusy(
                f"the embedded ClickHouse under {settings.state_dir / 'clickhouse'} is in use by "
                "another process (a running `driftway up` or `demo`?); query through it with "
                "`driftway query`, or stop it first"
            ) from exc
        raise


#: DDL scripts, applied in order at start-up (each statement idempotent).
SCHEMA_FILES = ("sql/001_tables.sql", "sql/002_rollups.sql", "sql/003_experiments.sql")

#: Tables whose rows expire after sink.ttl_days, and rollups after sink.rollup_ttl_days.
TTL_TABLES = ("predictions", "labels", "dead_letters", "training", "metrics", "feedback",
              "drift_events", "deployments")
ROLLUP_TABLES = ("predictions_minute", "quality_minute")


def ensure_schema(client: Client, database: str, ttl_days: int = 0,
                  rollup_ttl_days: int = 0) -> None:
    """Create the database, tables and rollups if missing, and set their TTLs (idempotent).

    A TTL of 0 keeps rows forever (and removes a TTL set before). Model versions are never
    expired: they are the lineage of what serves.
    """
    for name in SCHEMA_FILES:
        ddl = resources.files("driftway.schemas").joinpath(name).read_text()
        for statement in split_sql(ddl.replace("{db}", database)):
            client.command(statement)
    for tables, days, column in ((TTL_TABLES, ttl_days, "toDateTime(inserted_at)"),
                                 (ROLLUP_TABLES, rollup_ttl_days, "minute")):
        for table in tables:
            if days:
                client.command(f"ALTER TABLE {database}.{table} MODIFY TTL "
                               f"{column} + INTERVAL {days} DAY")
            elif "TTL " in client.command(f"SHOW CREATE TABLE {database}.{table}"):
                client.command(f"ALTER TABLE {database}.{table} REMOVE TTL")


def split_sql(script: str) -> list[str]:
    """Statements of a DDL script ('--' comments dropped).

    >>> split_sql("-- hi\\nCREATE DATABASE a;\\n\\nSELECT 1; -- x\\n")
    ['CREATE DATABASE a', 'SELECT 1']
    """
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query with their column names and ClickHouse types."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts, values made JSON-friendly."""
        return [dict(zip(self.columns, map(jsonable, row), strict=True)) for row in self.rows]

    def records_rows(self) -> list[list[Any]]:
        """Rows with values made JSON-friendly."""
        return [[jsonable(v) for v in row] for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "types": self.types, "rows": self.records_rows()}


def jsonable(value: Any) -> Any:
    """A query value as JSON can carry it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def checked_query(client: Client, sql: str, database: str) -> tuple[str, bool]:
    """`sql` as ClickHouse writes it back (``formatQuery``: one statement, comments gone), if
    it reads only tables of `database`, and whether it reads deduplicated (FINAL, unless it
    ends in ``SETTINGS final = 0``, the one setting a query may choose); QueryRefused says why
    not (driftway.logic.query_policy).

    What runs is this text, the one that was checked: nothing in `sql` (an unclosed comment, a
    second statement) can reach the settings the client appends to it.
    """
    canonical = str(client.query("SELECT formatQuery(%(sql)s)",
                                 parameters={"sql": sql}).result_rows[0][0])
    canonical, final = deduplicating(canonical)
    explained = [str(row[0]) for row in client.query(f"EXPLAIN AST {canonical}").result_rows]
    reason = refusal(explained, database, canonical)
    if reason is not None:
        raise QueryRefused(reason)
    return canonical, final


def run_query(client: Client, sql: str, database: str,
              limits: QuerySettings | None = None) -> QueryResult:
    """Run one user query, read-only and within `limits` (default: QuerySettings()), with
    `database` as the default database; QueryRefused if it reads outside it."""
    client.database = database
    canonical, final = checked_query(client, sql, database)
    result = client.query(canonical, settings=query_settings(limits or QuerySettings(), final))
    return QueryResult(
        columns=list(result.column_names),
        types=[t.name for t in result.column_types],
        rows=[list(r) for r in result.result_rows],
    )


_json = msgspec.json.Encoder().encode


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def prediction_row(p: Prediction) -> list[Any]:
    return [p.event_id, p.entity_id, p.ts, p.model, p.version, label_text(p.prediction), p.score,
            p.shadow_scores, _json(p.explanation).decode(), p.latency_ms,
            _ts(p.received_at), _ts(p.predicted_at), p.state_version or p.version,
            p.trained_from or 0, p.trained_through or 0, p.features]


def label_row(label: Label) -> list[Any]:
    return [label.event_id, label_text(label.label), label.ts or datetime.now(UTC)]


def dead_letter_row(d: DeadLetter) -> list[Any]:
    return [d.ts, d.processor, d.source_topic, d.source_partition, d.source_offset, d.key,
            d.error, base64.b64decode(d.payload_b64)]


def model_version_row(v: ModelVersion) -> list[Any]:
    offsets = v.training_offsets
    return [v.model, v.version, v.parent, v.created_at, v.reason,
            offsets.topic if offsets else "", offsets.start if offsets else None,
            offsets.end if offsets else None, v.examples_seen, v.feature_set,
            json.dumps(v.hyperparameters, default=str), json.dumps(v.metrics),
            json.dumps(v.libraries), v.artifact_size, v.signature or ""]


def training_row(t: TrainingExample | PublishRequest) -> list[Any] | None:
    """A training example's row; None for a publish request, which is an order, not data."""
    if isinstance(t, PublishRequest):
        return None
    return [t.event_id, t.model, t.version, label_text(t.label), label_text(t.served), t.score,
            _json(t.outputs).decode(), None if t.predicted_at is None else _ts(t.predicted_at),
            None if t.labelled_at is None else _ts(t.labelled_at), t.features]


def deployment_row(d: Deployment) -> list[Any]:
    return [d.ts, d.model, d.version, d.champion, d.shadows, d.action, d.previous, d.reason,
            d.by]


def metric_row(m: Metric) -> list[Any]:
    return [m.ts, m.model, m.version, m.metric, m.value, m.window, m.examples]


def feedback_row(f: FeedbackOutcome) -> list[Any]:
    return [f.ts, f.event_id, f.outcome, f.model, f.version, f.waited_s]


def experiment_row(e: ExperimentResult) -> list[Any]:
    m = e.metrics
    return [e.ts, e.experiment, e.model, e.candidate, e.role, e.examples, e.first_served,
            e.last_served, e.source, m.get("accuracy"), m.get("log_loss"), m.get("roc_auc"),
            m.get("mae"), m.get("rmse"), e.examples_per_s, e.best, e.shadow or ""]


def drift_row(d: DriftEvent) -> list[Any]:
    return [d.ts, d.kind, d.detector, d.model, d.version, d.feature, d.statistic, d.threshold,
            d.p_value, d.event_id, d.source, d.partition, d.offset, d.change_point, d.detail,
            d.direction, d.before_mean, d.before_sd, d.after_mean, d.after_sd, d.shares_before,
            d.shares_after, d.moved_features, d.moved_shifts]


@dataclass(frozen=True)
class TableSpec:
    """How one topic's records land in one table (which topic: the topology says).

    `record` is what the topic carries: a record class, or a discriminated union of them, named
    by `union_name` in dead letters; `to_row` returns None for a record that has no row (skipped,
    not an error).
    """

    table: str
    record: Any
    to_row: Callable[[Any], list[Any] | None]
    columns: tuple[str, ...]
    topic_key: str = ""
    #: What makes the record of its bytes (raises): the record's own ``from_bytes`` unless set.
    decoder: Callable[[bytes], Any] | None = None

    def decode(self, data: bytes) -> Any:
        """The record in `data` (raises pydantic's ValidationError or InvalidRecord)."""
        return (self.decoder or self.record.from_bytes)(data)


OFFSET_COLUMNS = ("_topic", "_partition", "_offset")

#: How each table's rows are made from its topic's records.
ROWS: dict[str, TableSpec] = {spec.table: spec for spec in (
    TableSpec("predictions", Prediction, prediction_row,
              ("event_id", "entity_id", "ts", "model", "version", "prediction", "score",
               "shadow_scores", "explanation", "latency_ms", "received_at", "predicted_at",
               "state_version", "trained_from", "trained_through", "features")),
    TableSpec("labels", Label, label_row, ("event_id", "label", "ts")),
    TableSpec("dead_letters", DeadLetter, dead_letter_row,
              ("ts", "processor", "source_topic", "source_partition", "source_offset", "key",
               "error", "payload")),
    TableSpec("model_versions", ModelVersion, model_version_row,
              ("model", "version", "parent", "created_at", "reason", "training_topic",
               "training_start", "training_end", "examples_seen", "feature_set",
               "hyperparameters", "metrics", "libraries", "artifact_size", "signature")),
    TableSpec("training", TrainingExample, training_row,
              ("event_id", "model", "version", "label", "served", "score", "outputs",
               "predicted_at", "labelled_at", "features"), decoder=decode_training),
    TableSpec("deployments", Deployment, deployment_row,
              ("ts", "model", "version", "champion", "shadows", "action", "previous", "reason",
               "by")),
    TableSpec("metrics", Metric, metric_row,
              ("ts", "model", "version", "metric", "value", "window", "examples")),
    TableSpec("feedback", FeedbackOutcome, feedback_row,
              ("ts", "event_id", "outcome", "model", "version", "waited_s")),
    TableSpec("drift_events", DriftEvent, drift_row,
              ("ts", "kind", "detector", "model", "version", "feature", "statistic", "threshold",
               "p_value", "event_id", "source", "source_partition", "source_offset",
               "change_point", "detail", "direction", "before_mean", "before_sd", "after_mean",
               "after_sd", "shares_before", "shares_after", "moved_features", "moved_shifts")),
    TableSpec("experiments", ExperimentResult, experiment_row,
              ("ts", "experiment", "model", "candidate", "role", "examples", "first_served",
               "last_served", "source", "accuracy", "log_loss", "roc_auc", "mae", "rmse",
               "examples_per_s", "best", "shadow")),
)}

#: Every topic the topology lands in a table, with its table, in the topology's order.
SINK_TABLES: tuple[TableSpec, ...] = tuple(
    replace(ROWS[t.table], topic_key=t.key) for t in TOPICS if t.table is not None)

"""The HTML report, built from monitoring tables filled here, on the real embedded engine."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from driftway.app import report
from driftway.app.cli import cli
from driftway.app.query import query
from driftway.io.clickhouse import OFFSET_COLUMNS, SINK_TABLES, connect, ensure_schema
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
    Record,
)
from driftway.settings import Settings

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
V1, V2 = "a1" * 32, "b2" * 32
CHART_TITLES = ("Model quality over time", "Throughput", "Serving latency",
                "Which features drifted when", "Experiments on the history")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample_records() -> dict[str, Sequence[Record]]:
    """A minute of a small pipeline: V1 serves, drifts, V2 is shadowed then promoted."""
    predictions, labels = [], []
    for i in range(600):
        version = V1 if i < 380 else V2
        t = at(i / 10).timestamp()
        predictions.append(Prediction(
            event_id=f"r-{i}", entity_id=f"u{i % 7}", ts=at(i / 10), model="default",
            version=version, prediction=i % 3 != 0, score=0.8, latency_ms=2.0 + i % 50,
            received_at=t - 0.01, predicted_at=t))
        labels.append(Label(event_id=f"r-{i}", label=(i % 3 != 0) if i < 250 else i % 2 == 0,
                            ts=at(i / 10 + 2)))
    metrics = [Metric(ts=at(s), model="default", version=v, metric=m, value=value, window=100,
                      examples=int(s) * 10)
               for s, v in ((10, V1), (20, V1), (30, V1), (45, V2), (55, V2))
               for m, value in (("accuracy", 0.9 if s < 25 else 0.55), ("log_loss", 0.3))]
    drift = [
        DriftEvent(ts=at(25), kind="data", detector="ks", version=V1, feature="amount",
                   statistic=0.31, threshold=0.09, p_value=1e-9, detail="change near r-200"),
        DriftEvent(ts=at(28), kind="prediction", detector="ks", version=V1, feature="score",
                   statistic=0.2, threshold=0.08, p_value=1e-5),
        DriftEvent(ts=at(30), kind="concept", detector="adwin", version=V1, statistic=0.17,
                   threshold=0.002, detail="champion error stream"),
        DriftEvent(ts=at(35), kind="data", detector="ks", version=V1, feature="country=NO",
                   statistic=0.12, threshold=0.09, p_value=1e-3),
    ]
    deployments = [
        Deployment(ts=at(0), model="default", champion=V1, action="init", version=V1,
                   previous=None, reason="first version", by="learner"),
        Deployment(ts=at(31), model="default", champion=V1, shadows=[V2], action="shadow",
                   version=V2, previous=None, reason="challenger after adwin drift",
                   by="policy"),
        Deployment(ts=at(38), model="default", champion=V2, action="promote", version=V2,
                   previous=V1, reason="challenger better: unit test", by="policy"),
    ]
    versions = [ModelVersion(model="default", version=v, parent=p, created_at=at(s))
                for v, p, s in ((V1, None, 0), (V2, V1, 30))]
    dead = [DeadLetter.of(processor, "raw", 0, i, None, b"x", "invalid RawEvent")
            for i, processor in enumerate(("features", "features", "sink"))]
    outcomes: list[Literal["unlabelled", "late_label"]] = [
        "unlabelled", "unlabelled", "unlabelled", "late_label"]
    feedback = [FeedbackOutcome(ts=at(50), event_id=f"f{i}", outcome=outcome, model="default")
                for i, outcome in enumerate(outcomes)]
    experiments = [
        ExperimentResult(ts=at(58), experiment="e1", model="default", candidate=candidate,
                         role=role, examples=600, source="table", best=candidate == "tree",
                         metrics={"accuracy": accuracy, "log_loss": 0.5})
        for candidate, role, accuracy in (("served", "served", 0.61), ("logreg", "candidate",
                                          0.64), ("tree", "candidate", 0.731))]
    return {"predictions": predictions, "labels": labels, "metrics": metrics,
            "drift_events": drift, "deployments": deployments, "model_versions": versions,
            "dead_letters": dead, "feedback": feedback, "experiments": experiments}


def fill_monitoring_tables(settings: Settings) -> None:
    """Store sample_records() in settings' database as the sink would (same row mappers)."""
    specs = {spec.table: spec for spec in SINK_TABLES}
    client = connect(settings)
    try:
        ensure_schema(client, settings.clickhouse_database)
        for table, records in sample_records().items():
            spec = specs[table]
            rows = [[*spec.to_row(r), "report-test", 0, i]  # type: ignore[misc]
                    for i, r in enumerate(records)]
            client.insert(f"{settings.clickhouse_database}.{table}", rows,
                          column_names=[*spec.columns, *OFFSET_COLUMNS])
    finally:
        client.close()


def own_database(settings: Settings) -> Settings:
    """The session's embedded engine, with a database of this test's own."""
    return settings.model_copy(update={"clickhouse_database": f"report_{uuid.uuid4().hex[:8]}"})


@pytest.fixture(scope="module")
def filled(embedded_settings: Settings) -> Settings:
    settings = own_database(embedded_settings)
    fill_monitoring_tables(settings)
    return settings


@pytest.fixture(scope="module")
def page(filled: Settings) -> str:
    return report.build_report(filled)


def test_every_chart_is_drawn_with_plotly_inlined_once(page: str) -> None:
    for title in CHART_TITLES:
        assert f"<h2>{title}</h2>" in page
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1
    assert page.count("Plotly.newPlot(") == 5
    for chart in ("quality", "throughput", "latency", "features", "experiments"):
        assert f'id="chart-{chart}"' in page
    assert "No data yet" not in page


def test_experiments_show_each_contender_beside_the_served_figures(page: str) -> None:
    assert "served (champion)" in page and "tree \\u2605" in page and "logreg" in page
    assert "tree: accuracy 0.7310" in page  # the stored figure, on hover
    assert "e1 (default, 600 examples)" in page


def test_the_page_is_self_contained(page: str) -> None:
    assert re.search(r"<script[^>]*\bsrc\s*=", page) is None
    assert re.search(r"<link[^>]*\bhref\s*=", page) is None


def test_drift_and_deployments_are_marked_with_their_details(page: str) -> None:
    for label in ("concept drift", "data drift", "prediction drift", "deployment: init",
                  "deployment: shadow", "deployment: promote"):
        assert f'"name":"{label}"' in page, label
    assert "challenger better: unit test" in page  # the promotion's reason, on hover
    assert "adwin" in page and "champion error stream" in page
    for feature in ("amount", "country=NO", "prediction: score"):
        assert f'"{feature}"' in page, feature


def test_versions_are_shown_by_12_characters(page: str) -> None:
    assert V1[:12] in page and V2[:12] in page
    assert V1 not in page and V2 not in page


def test_header_has_the_totals_and_the_champion(page: str) -> None:
    header = page.split("<section", 1)[0]
    assert '<div class="value">600</div>' in header  # predictions, and labels
    assert "features 2, sink 1" in header
    assert "unlabelled 3, late_label 1" in header
    assert f"<code>{V2[:12]}</code>" in header
    assert "2 published" in header
    assert "concept 1" in header and "promote 1" in header


def test_metric_series_and_percentiles_are_the_stored_ones(filled: Settings) -> None:
    data = report.gather(filled)
    assert data.bucket_s == 1  # a minute of predictions
    assert data.totals["predictions"] == 600 and data.totals["labelled"] == 600
    assert {(r["version"], r["metric"]) for r in data.metrics} == {
        (v, m) for v in (V1, V2) for m in ("accuracy", "log_loss")}
    assert sum(r["n"] for r in data.throughput) == 600
    assert all(r["p50"] <= r["p95"] <= r["p99"] for r in data.latency)
    assert "600 predictions (600 labelled" in data.summary()
    assert data.summary().endswith(f"champion default {V2[:12]}")


def test_since_keeps_what_happened_after_it(filled: Settings) -> None:
    data = report.gather(filled, since=at(40).replace(tzinfo=None))  # naive: read as UTC
    assert data.totals["predictions"] == 200
    assert [d["action"] for d in data.deployments] == []
    assert {r["version"] for r in data.metrics} == {V2}
    assert "since 2026-03-01 10:00:40 UTC" in report.render(data)


def test_rows_through_the_sinks_endpoint_render_the_same(
        filled: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """While `driftway up` runs, rows come back as JSON: times are ISO text."""
    def as_json(settings: Settings, sql: str) -> Any:
        result = query(settings, sql)
        body = result.to_json()
        return type(result)(body["columns"], body["types"], body["rows"])

    monkeypatch.setattr(report, "query", as_json)
    data = report.gather(filled)
    assert isinstance(data.metrics[0]["ts"], str)
    assert report.render(data).count("Plotly.newPlot(") == 5


def test_an_empty_database_gives_no_data_panels(embedded_settings: Settings) -> None:
    page = report.build_report(own_database(embedded_settings))
    assert page.count('class="no-data"') == 5
    assert "plotly.js v" not in page
    assert "no predictions yet" in page and "none yet" in page


def test_cli_writes_the_file_and_prints_a_summary(filled: Settings, tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.html"
    env = {"DRIFTWAY_CLICKHOUSE_DATABASE": filled.clickhouse_database}
    args = ["--state-dir", str(filled.state_dir), "report", "--out", str(out)]
    done = CliRunner().invoke(cli, args + ["--since", "2026-03-01T10:00:40Z"], env=env)
    assert done.exit_code == 0, done.output
    assert str(out) in done.output and "200 predictions" in done.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    bad = CliRunner().invoke(cli, args + ["--since", "yesterday"], env=env)
    assert bad.exit_code == 2 and "not an ISO time" in bad.output


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-03-01T10:00:00+00:00", datetime(2026, 3, 1, 10)),
    ("2026-03-01T11:00:00+01:00", datetime(2026, 3, 1, 10)),
    ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10)),
    (datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 10)),
])
def test_times_are_read_as_utc(value: Any, expected: datetime) -> None:
    assert report.utc(value) == expected

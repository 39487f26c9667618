"""`driftway experiment`'s reading and running, on the real embedded engine: the stored examples
come back in training order, once each, inside the asked time range, and parallel candidates score
exactly what one process does."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import click
import pytest

from driftway.app.experiment import HistoryRows, Instant, Window, results, run_all, table_history
from driftway.io.clickhouse import OFFSET_COLUMNS, SINK_TABLES, connect, ensure_schema
from driftway.logic.experiment import best, served_outcome
from driftway.logic.models import make_model
from driftway.schemas.events import Output, TrainingExample
from driftway.settings import Settings

T0 = 1_780_000_000.0
N = 600


def example(i: int) -> TrainingExample:
    rng = random.Random(i)
    x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
    y = x["a"] + 0.5 * x["b"] > 0
    served = rng.random() < 0.8
    return TrainingExample(
        event_id=f"e{i}", model="default", version="v1", features=x, label=y,
        served=y if served else not y, score=0.7, outputs={"v1": Output(prediction=y)},
        predicted_at=T0 + i, labelled_at=T0 + i + rng.choice([0.5, 3.0, 12.0]))


@pytest.fixture(scope="module")
def stored(embedded_settings: Settings) -> Settings:
    """N examples in the training table, each stored twice (a sink's replay after a crash),
    with another model's and another topic's rows mixed in."""
    settings = embedded_settings.model_copy(
        update={"clickhouse_database": f"experiment_{uuid.uuid4().hex[:8]}"})
    spec = next(s for s in SINK_TABLES if s.table == "training")
    topic = settings.topic("training")
    rows = []
    for i in range(N):
        rows.append([*spec.to_row(example(i)), topic, 0, 2 * i])
        other = TrainingExample(event_id=f"o{i}", model="other", version="v9",
                                features={"a": 1.0}, label=True, served=True)
        rows.append([*spec.to_row(other), topic, 0, 2 * i + 1])
    rows.append([*spec.to_row(example(0)), "elsewhere", 0, 5])
    client = connect(settings)
    try:
        ensure_schema(client, settings.clickhouse_database)
        random.Random(3).shuffle(rows)
        for half in (rows, rows[: len(rows) // 2]):  # the second insert: duplicates
            client.insert(f"{settings.clickhouse_database}.training", half,
                          column_names=[*spec.columns, *OFFSET_COLUMNS])
    finally:
        client.close()
    return settings


def rows_for(spec: str = "logistic_regression") -> HistoryRows:
    return HistoryRows(make_model(spec), classifier=True)


def test_the_table_gives_each_example_once_in_training_order(stored: Settings,
                                                             monkeypatch) -> None:
    monkeypatch.setattr("driftway.app.experiment.PAGE", 250)  # several pages
    history = table_history(stored, Window("default"), rows_for())
    assert history.offsets == [2 * i for i in range(N)]
    first = example(0)
    assert history.xs[0] == first.features and history.ys[0] is first.label
    assert history.times[0] == pytest.approx((first.predicted_at, first.labelled_at), abs=1e-6)
    # The champion's P(positive): its score when it said True, else one minus it.
    assert history.served[0] == pytest.approx(0.7 if first.served else 0.3)


def test_from_and_to_keep_the_examples_served_in_that_range(stored: Settings) -> None:
    history = table_history(stored, Window("default", T0 + 100, T0 + 200), rows_for())
    assert history.offsets == [2 * i for i in range(100, 200)]


def test_candidates_in_parallel_score_what_one_process_does(stored: Settings) -> None:
    history = table_history(stored, Window("default"), rows_for())
    specs = ["logistic_regression", "hoeffding_tree"]
    alone = run_all(specs, history, label_delay=0, jobs=1)
    side_by_side = run_all(specs, history, label_delay=0, jobs=2)
    assert [o.metrics for o in alone] == [o.metrics for o in side_by_side]
    assert alone[0].metrics["accuracy"] > 0.8  # the concept is linear: it is learned
    served = served_outcome(history, classifier=True)
    assert served is not None and served.examples == N
    assert served.metrics["accuracy"] == pytest.approx(
        sum(example(i).served == example(i).label for i in range(N)) / N)


def test_the_records_put_the_served_figures_first_and_mark_the_best(stored: Settings) -> None:
    history = table_history(stored, Window("default"), rows_for())
    outcomes = run_all(["logistic_regression", "hoeffding_tree"], history, 0, jobs=1)
    winner = best(outcomes, "log_loss")
    records = results("x1", "default", "table", history, served_outcome(history, True),
                      outcomes, winner, "v" * 64)
    assert [r.role for r in records] == ["served", "candidate", "candidate"]
    assert [r.best for r in records].count(True) == 1
    chosen = next(r for r in records if r.best)
    assert chosen.candidate == winner.candidate and chosen.shadow == "v" * 64
    assert records[0].first_served == datetime.fromtimestamp(T0, UTC)
    assert all(r.examples == N for r in records)


def test_times_are_iso_8601_in_utc_or_epoch_seconds() -> None:
    instant = Instant()
    assert instant.convert("2026-12-01T10:00", None, None) == datetime(
        2026, 12, 1, 10, tzinfo=UTC).timestamp()
    assert instant.convert("2026-12-01T10:00+01:00", None, None) == datetime(
        2026, 12, 1, 9, tzinfo=UTC).timestamp()
    assert instant.convert("1780000000.5", None, None) == 1_780_000_000.5
    with pytest.raises(click.BadParameter, match="ISO 8601"):
        instant.convert("yesterday", None, None)

"""`driftway explain` without a broker: rows through the embedded engine, a registry held in
memory, the training table standing in for the topic, and the command's exit codes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from driftway.app import explain as explain_app
from driftway.app.cli import cli
from driftway.app.explain import CannotRebuild, explain_event, find_prediction, table_records
from driftway.io.clickhouse import (
    OFFSET_COLUMNS,
    ROWS,
    connect,
    ensure_schema,
    prediction_row,
    training_row,
)
from driftway.logic import artifacts
from driftway.logic.explain import Comparison, Report, StoredPrediction
from driftway.logic.models import Explained, make_model, predict_explained
from driftway.logic.registry import RegistryState, publish_version, tombstones
from driftway.schemas.events import Prediction, TrainingExample, TrainingOffsets, decode_training
from driftway.settings import Settings

DB = "driftway_explain"
TRAINING = 40  # training records on the topic: examples of "m", every fifth of another model


def example(offset: int) -> TrainingExample:
    x = {"b": (offset * 7 % 11) / 3 - 1.5, "a": (offset * 5 % 13) / 4 - 1.5}
    return TrainingExample(event_id=f"t{offset}", model="other" if offset % 5 == 4 else "m",
                           version="v", features=x, label=x["a"] > 0.2 * x["b"], served=None)


def insert(settings: Settings, table: str, rows: list[list[Any]], topic: str) -> None:
    client = connect(settings)
    try:
        client.insert(f"{DB}.{table}", [r + [topic, 0, i] for i, r in enumerate(rows)],
                      column_names=[*ROWS[table].columns, *OFFSET_COLUMNS])
    finally:
        client.close()


@pytest.fixture(scope="module")
def settings(embedded_settings: Settings) -> Settings:
    """The session's engine with a database of this module's own; a key to sign with."""
    own = embedded_settings.model_copy(update={"clickhouse_database": DB,
                                               "signing_key": SecretStr("k" * 64)})
    client = connect(own)
    try:
        ensure_schema(client, DB)
    finally:
        client.close()
    rows = [training_row(example(offset)) for offset in range(TRAINING)]
    insert(own, "training", [r for r in rows if r is not None], own.topic("training"))
    return own


@pytest.fixture(scope="module")
def version0(settings: Settings) -> tuple[Any, bytes]:
    """A version trained on 30 examples: its metadata and artifact."""
    model = make_model("logistic_regression")
    for offset in range(30):
        model.learn_one(example(offset + 1000).features, offset % 3 == 0)
    return artifacts.build_version(
        "m", model, settings.signing_key_bytes, None, reason="initial",
        training_offsets=TrainingOffsets(topic=settings.topic("training"), start=0, end=0),
        hyperparameters={"spec": "logistic_regression"})


def store_prediction(settings: Settings, p: Prediction) -> None:
    insert(settings, "predictions", [prediction_row(p)], settings.topic("predictions"))


def served(settings: Settings, version0: tuple[Any, bytes], event_id: str,
           trained_through: int, model_name: str = "m") -> Prediction:
    """What a line of version zero, having learned [0, trained_through), served."""
    meta, artifact = version0
    model = pickle.loads(artifact)
    for offset in range(trained_through):
        if example(offset).model == "m":
            model.learn_one(example(offset).features, example(offset).label)
    x = {"b": 0.3, "a": -0.7}
    out = predict_explained(model, x, settings.processing.explain_top)
    return Prediction(event_id=event_id, entity_id="u", ts=datetime.now(UTC), model=model_name,
                      version=meta.version, prediction=out.prediction, score=out.score,
                      explanation=out.explanation, latency_ms=1.0, received_at=1.0,
                      predicted_at=2.0, state_version=meta.version, trained_from=0,
                      trained_through=trained_through, features=x)


def test_a_prediction_comes_back_exactly_whatever_its_event_id(
        settings: Settings, version0: tuple[Any, bytes]) -> None:
    p = served(settings, version0, "it's \\ odd", 17)
    store_prediction(settings, p)
    stored = find_prediction(settings, "it's \\ odd", None)
    assert stored.score == p.score and list(stored.explanation) == p.explanation
    assert list(stored.features.items()) == list(p.features.items())  # order too
    assert (stored.trained_from, stored.trained_through) == (0, 17)
    with pytest.raises(CannotRebuild, match="no prediction of event 'nope'"):
        find_prediction(settings, "nope", None)
    store_prediction(settings, served(settings, version0, "it's \\ odd", 3, model_name="n"))
    with pytest.raises(CannotRebuild, match="models m, n: choose one with --model"):
        find_prediction(settings, "it's \\ odd", None)
    assert find_prediction(settings, "it's \\ odd", "n").trained_through == 3


def test_the_training_table_stands_in_for_the_topic(settings: Settings) -> None:
    records = table_records(settings, "m", 3, 23)
    expected = [o for o in range(3, 23) if example(o).model == "m"]
    assert [o for o, _ in records] == expected
    decoded = [decode_training(v or b"") for _, v in records]
    assert [(d.features, d.label) for d in decoded if isinstance(d, TrainingExample)] == [
        (example(o).features, example(o).label) for o in expected]
    with pytest.raises(CannotRebuild, match="wait for the sink to catch up"):
        table_records(settings, "m", 3, TRAINING + 5)


@contextmanager
def registry_of(settings: Settings, versions: list[tuple[Any, bytes]],
                pruned: bool = False) -> Iterator[Any]:
    """A registry read from these versions' records (their artifacts tombstoned if `pruned`)."""
    state = RegistryState(settings)
    kinds = {settings.topic(k): k for k in ("model-versions", "model-artifacts", "deployments")}
    for meta, artifact in versions:
        publish_version(lambda topic, key, value: state.apply(kinds[topic], topic, 0, 0, None,
                                                              value), settings, meta, artifact)
        if pruned:
            for kind, key in tombstones(meta):
                state.apply(kind, settings.topic(kind), 0, 0, key.encode(), None)
    yield state


def test_explain_rebuilds_from_the_version_and_the_log(
        settings: Settings, version0: tuple[Any, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for event_id, through in (("live", 33), ("release", 0)):
        store_prediction(settings, served(settings, version0, event_id, through))
    monkeypatch.setattr("driftway.app.models_cli.open_registry",
                        lambda s: registry_of(s, [version0]))
    monkeypatch.setattr(explain_app, "topic_records", lambda *a: None)  # gone: retention
    live = explain_event(settings, "live", None)
    assert live.matches, live.comparison
    assert live.source == "table" and live.learned == sum(
        example(o).model == "m" for o in range(33))
    assert [s.version for s in live.lineage] == [version0[0].version] and not live.notes
    release = explain_event(settings, "release", None)
    assert release.matches and release.learned == 0 and release.source == ""

    # A state that learned one example more than its row says: the score is not the same.
    tampered = served(settings, version0, "tampered", 33)
    store_prediction(settings, msgspec.structs.replace(tampered, trained_through=34))
    report = explain_event(settings, "tampered", None)
    assert not report.matches and "score" in [d.what for d in report.comparison.differences]

    monkeypatch.setattr("driftway.app.models_cli.open_registry", lambda s: registry_of(s, []))
    gone = explain_event(settings, "live", None)
    assert not gone.matches and "no longer in the registry" in (gone.problem or "")
    assert gone.notes == (f"version {version0[0].version[:12]} is in no lineage record",)

    # The retention rule tombstoned the artifact: the lineage stays, the state cannot be had.
    monkeypatch.setattr("driftway.app.models_cli.open_registry",
                        lambda s: registry_of(s, [version0], pruned=True))
    pruned = explain_event(settings, "live", None)
    assert "was pruned by the registry's retention rule" in (pruned.problem or "")
    assert pruned.verdict.startswith("cannot be rebuilt") and len(pruned.lineage) == 1


def fixed(report: Report) -> Any:
    return lambda *_args: report


def test_the_command_exits_0_only_on_an_exact_match(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stored = StoredPrediction(event_id="e[1]", model="m", version="v", prediction="true",
                              score=0.75, explanation=(), state_version="v", trained_from=0,
                              trained_through=0, features={"[bold]x": 1.0})
    answer = Explained(True, 0.75, None, [])
    runner = CliRunner()
    args = ["--state-dir", str(tmp_path), "explain", "e[1]"]

    monkeypatch.setattr(explain_app, "explain_event",
                        fixed(Report(stored, [], answer, Comparison(()), 0)))
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "matches exactly" in done.output and "[bold]x" in done.output

    monkeypatch.setattr(explain_app, "explain_event", fixed(Report(stored, [], problem="gone")))
    done = runner.invoke(cli, [*args, "--format", "json"])
    assert done.exit_code == 1 and '"verdict": "cannot be rebuilt: gone"' in done.output

    def missing(*_args: Any) -> Report:
        raise CannotRebuild("no prediction of event 'e[1]'")

    monkeypatch.setattr(explain_app, "explain_event", missing)
    done = runner.invoke(cli, args)
    assert done.exit_code == 1 and "Error: no prediction of event 'e[1]'" in done.output

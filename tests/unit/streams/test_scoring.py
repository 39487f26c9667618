from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from driftway.io.state import Store
from driftway.logic.models import make_model
from driftway.logic.registry import next_deployment
from driftway.schemas.events import FeatureVector, failure_reason
from driftway.streams.scoring import ServedModel, ServingSet, featurize_raw, score_event


def vector(event_id: str, x: float) -> FeatureVector:
    return FeatureVector(event_id=event_id, entity_id="u", ts=datetime.now(UTC),
                         features={"x": x, "noise": 0.1}, received_at=time.time())


def trained(flip: bool) -> object:
    model = make_model("logistic_regression")
    for i in range(200):
        x = 1.0 if i % 2 else -1.0
        model.learn_one({"x": x, "noise": 0.1}, (x > 0) != flip)
    return model


def test_champion_answers_and_shadows_are_scored_beside_it() -> None:
    champion, shadow = trained(flip=False), trained(flip=True)
    deployment = next_deployment(next_deployment(None, "loans", "init", "v1"), "loans",
                                 "shadow", "v2")
    serving = ServingSet(deployment, ServedModel("v1", champion, "v0", 10, 12),
                         (ServedModel("v2", shadow, "v2", 11, 12),))
    prediction, served = score_event(serving, vector("e1", 1.0), explain_top=2,
                                     started=time.time())
    # The champion's answer is the prediction; the shadow's only rides along.
    assert (prediction.model, prediction.version, prediction.prediction) == ("loans", "v1", True)
    assert set(prediction.shadow_scores) == {"v2"}
    assert served.outputs["v2"].prediction is False
    assert served.outputs["v1"].proba is not None and served.champion == "v1"
    assert [c.feature for c in prediction.explanation][0] == "x"
    assert served.features == {"x": 1.0, "noise": 0.1} and prediction.latency_ms >= 0.0
    # It names the exact state that answered, and what it answered from.
    assert (prediction.state_version, prediction.trained_from, prediction.trained_through) == (
        "v0", 10, 12)
    assert prediction.features == served.features


def test_without_shadows_nothing_extra_is_computed() -> None:
    serving = ServingSet(next_deployment(None, "m", "init", "v1"),
                         ServedModel("v1", trained(False), "v1", 0, 0), ())
    prediction, served = score_event(serving, vector("e1", -1.0), 0, time.time())
    assert prediction.shadow_scores == {} and prediction.explanation == []
    assert list(served.outputs) == ["v1"] and prediction.prediction is False


def test_a_deployment_that_comes_before_its_versions_waits_for_them() -> None:
    from driftway.logic.artifacts import build_version
    from driftway.logic.registry import RegistryState
    from driftway.settings import Settings
    from driftway.streams.scoring import DeploymentWatcher

    settings = Settings(signing_key="a-test-signing-key-0123")
    registry = RegistryState(settings)
    meta, artifact = build_version("default", trained(False), settings.signing_key_bytes, None)
    d = next_deployment(None, "default", "init", meta.version)
    registry.apply("deployments", "d", 0, 0, b"default", d.to_bytes())
    watcher = DeploymentWatcher(settings, "default")
    watcher._consider(registry)  # type: ignore[arg-type]  # the deployment alone: nothing yet
    assert watcher.current is None
    registry.apply("model-versions", "v", 0, 0, None, meta.to_bytes())
    watcher._consider(registry)  # type: ignore[arg-type]  # metadata, no artifact: still waits
    assert watcher.current is None
    from driftway.logic.artifacts import chunk_key, chunks
    for chunk in chunks(meta, artifact):
        registry.apply("model-artifacts", "a", 0, 0, chunk_key(chunk).encode(), chunk.to_bytes())
    watcher._consider(registry)  # type: ignore[arg-type]
    assert watcher.current is not None and watcher.current.champion.slot == meta.version
    assert watcher.current.champion.trained_through == 0  # a release, as published


def test_a_raw_record_is_featurised_with_its_entity_state_or_refused_with_a_reason() -> None:
    store = Store(0)
    first = featurize_raw(b'{"event_id": "e1", "entity_id": "u", "ts": 1000, "data": {"x": 2}}',
                          store, 1.0)
    second = featurize_raw(b'{"event_id": "e2", "entity_id": "u", "ts": 4000, "data": {"x": 3}}',
                           store, 2.0)
    assert (first.features["x"], first.features["entity.events"]) == (2.0, 1.0)
    assert (second.features["entity.events"], second.features["entity.seconds_since_last"]) \
        == (2.0, 3.0)
    with pytest.raises(ValueError, match="null value"):
        featurize_raw(None, store, 3.0)
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the reason is what matters
        featurize_raw(b'{"event_id": "e", "ts": 1, "data": {}}', store, 3.0)
    assert failure_reason(refused.value) == "invalid RawEvent: entity_id: Field required"
    assert store.get("u")["n"] == 2  # the refused records changed no state

"""Serving follows learning between releases, on the real broker: the learner streams each
line's state, scoring serves it, and every prediction names a state it can be rebuilt from."""

from __future__ import annotations

import time
from typing import Any

import pytest

from driftway.app.supervisor import Stack
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.logic.models import make_model, predict_explained
from driftway.logic.replay import rebuild
from driftway.schemas.events import Prediction, label_text
from driftway.sdk import EventProducer
from driftway.settings import DriftSettings, PolicySettings, ProcessingSettings, Settings
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration


def event(i: int) -> dict[str, Any]:
    return {"event_id": f"lv-{i}", "entity_id": f"u{i % 7}", "ts": 1_767_225_600_000 + i,
            "data": {"amount": float(i % 100), "kind": "abc"[i % 3]}}


def label(i: int) -> bool:
    return i % 100 > 50


def stream(settings: Settings, n: int, delay: int) -> list[Prediction]:
    """n events, each labelled `delay` events later, at ~500 events/s; the predictions."""
    with Stack(settings) as stack:
        stack.wait_until_serving()
        sdk = EventProducer(settings)
        for i in range(n):
            sdk.send_event(event(i))
            if i >= delay:
                sdk.send_label({"event_id": f"lv-{i - delay}", "label": label(i - delay)})
            if i % 50 == 49:
                sdk.flush()
                time.sleep(0.1)
        sdk.flush()
        records = read_topic(settings, "predictions", n)
        stack.check()
    return [Prediction.from_bytes(v) for _, _, v in sorted(records)]


def no_releases(stack_settings: Settings, **processing: Any) -> Settings:
    """No version but version zero (no count, no drift alarm, no policy publishes one): what is
    served can only move by live updates."""
    settings = with_signing_key(stack_settings.model_copy(update={
        "processing": ProcessingSettings(publish_every=1_000_000, **processing),
        "drift": DriftSettings(concept_warmup=1_000_000),
        "policy": PolicySettings(enabled=False)}))
    return settings


def test_scoring_serves_what_the_learner_learned_and_each_prediction_can_be_rebuilt(
    stack_settings: Settings,
) -> None:
    settings = no_releases(stack_settings)
    n = 1500
    predictions = stream(settings, n, delay=20)
    assert sorted(p.event_id for p in predictions) == sorted(f"lv-{i}" for i in range(n))

    registry = ModelRegistry(settings, name="test")
    try:
        registry.catch_up()
        # Live updates add no release: version zero is the only one, and still deployed.
        assert len(registry.versions) == 1
        (v0,) = registry.versions
        assert {(p.version, p.state_version) for p in predictions} == {(v0, v0)}
        # The served state moved on many times while the stream ran, never back (one
        # scoring process: in the order it served).
        served = [p.trained_through for p in sorted(predictions, key=lambda p: p.predicted_at)]
        assert {p.trained_from for p in predictions} == {0} and served == sorted(served)
        throughs = set(served)
        assert len(throughs) > 10 and max(throughs) > (n - 20) // 2

        # Every sampled prediction is the one its named state makes, bit for bit.
        training = [(offset, value) for _, offset, value in read_topic(settings, "training")]
        template = make_model(settings.processing.model)
        sample = predictions[::50] + [p for p in predictions if p.trained_through][-5:]
        for p in sample:
            model = registry.load(p.state_version or p.version)
            rebuild(model, training, settings.processing.model_name, template,
                    p.trained_from or 0, p.trained_through or 0)
            again = predict_explained(model, p.features, settings.processing.explain_top)
            assert (label_text(again.prediction), again.score, again.explanation) == (
                label_text(p.prediction), p.score, p.explanation), p.event_id
    finally:
        registry.close()


def test_without_live_updates_only_releases_are_served(stack_settings: Settings) -> None:
    settings = no_releases(stack_settings, live_updates=False)
    predictions = stream(settings, 400, delay=20)
    assert len(predictions) == 400
    assert {(p.trained_from, p.trained_through) for p in predictions} == {(0, 0)}

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest

from driftway.models import coerce_label, make_model, predict_explained
from schemas.events import FeatureVector, Label
from streams.feedback import FeedbackJoin
from streams.scoring import Scorer, version_id


def vector(event_id: str, x: float) -> FeatureVector:
    return FeatureVector(event_id=event_id, entity_id="u", ts=datetime.now(UTC),
                         features={"x": x, "noise": 0.1}, received_at=time.time())


def test_every_prediction_names_model_version_latency_and_explanation() -> None:
    scorer = Scorer("logistic_regression", "loans", explain_top=2, publish_every=10, window=100)
    p = scorer.score(vector("e1", 1.0), started=time.time())
    assert p.model == "loans" and p.version == scorer.version and len(p.version) == 64
    assert p.latency_ms >= 0.0
    assert p.prediction in (True, False) and 0.0 <= p.score <= 1.0


def test_learning_from_feedback_publishes_new_content_named_versions() -> None:
    scorer = Scorer("logistic_regression", "m", explain_top=1, publish_every=20, window=1000)
    first = scorer.version
    versions = []
    for i in range(60):
        scorer.score(vector(f"e{i}", 1.0 if i % 2 else -1.0), started=time.time())
        learned = scorer.feedback(Label(event_id=f"e{i}", label=bool(i % 2)))
        assert learned is not None
        if learned[1] is not None:
            versions.append(learned[1])
    assert [v.examples_seen for v in versions] == [20, 40, 60]
    assert versions[0].parent == first
    assert [v.parent for v in versions[1:]] == [v.version for v in versions[:-1]]
    assert versions[-1].version == version_id(scorer.served)
    assert scorer.score(vector("probe", 1.0), time.time()).prediction is True


def test_contributions_explain_the_logit() -> None:
    model = make_model("logistic_regression")
    for i in range(200):
        model.learn_one({"a": float(i % 7), "b": float(i % 3)}, i % 7 > 3)
    x = {"a": 5.0, "b": 1.0}
    pred, score, why = predict_explained(model, x, top=2)
    lr = model["LogisticRegression"]
    logit = sum(c.contribution for c in why) + lr.intercept
    assert 1 / (1 + math.exp(-logit)) == pytest.approx(model.predict_proba_one(x)[True])
    assert pred == (score > 0.5 if pred else score >= 0.5)
    assert [c.feature for c in why][0] == "a"


def test_binary_labels_are_coerced() -> None:
    model = make_model("logistic_regression")
    assert [coerce_label(model, v) for v in (1, 0, "yes", "false", True)] == [
        True, False, True, False, True]
    with pytest.raises(ValueError, match="not binary"):
        coerce_label(model, "maybe")


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ValueError, match="logistic_regression"):
        make_model("gpt")


def test_feedback_join_counts_what_expires() -> None:
    join: FeedbackJoin[str, bool] = FeedbackJoin(window=3)
    for i in range(5):
        join.add_prediction(f"p{i}", "served")
    for i in range(4):
        join.add_label(f"l{i}", True)
    assert join.expired_predictions == 2 and join.expired_labels == 1
    assert join.pending == (3, 3)
    assert join.add_label("p4", False) == ("served", False)
    assert join.add_label("p0", False) is None  # expired: its prediction is gone

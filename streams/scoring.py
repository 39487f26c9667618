"""scoring: feature vectors → predictions, with labels fed back into an online model.

The served model is a frozen copy named by the SHA-256 of its pickled form; a live copy learns from
labelled feedback and becomes the next served version every `publish_every` examples. Every
prediction names model and version, and carries its serving latency and an explanation.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import pickle
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from driftway.models import coerce_label, make_model, predict_explained
from driftway.settings import Settings
from schemas.events import (
    FeatureVector,
    Label,
    LabelValue,
    ModelVersion,
    Prediction,
    TrainingExample,
)
from streams.app import Emitter, batches, dead_letter, make_app, raw_topic, run_worker
from streams.features import validation_reason
from streams.feedback import FeedbackJoin

log = logging.getLogger(__name__)


def version_id(model: Any) -> str:
    """A model version's name: the SHA-256 of its pickled form."""
    return hashlib.sha256(pickle.dumps(model, protocol=5)).hexdigest()


class Served(NamedTuple):
    """What was served for one event, kept until its label comes."""

    features: dict[str, float]
    prediction: LabelValue | None
    score: float | None
    version: str


class Scorer:
    """Serves one model, learns from feedback, and publishes versions. No Kafka in here.

    >>> from datetime import datetime, UTC
    >>> s = Scorer("logistic_regression", "loans", explain_top=2, publish_every=2, window=10)
    >>> fv = FeatureVector(event_id="e1", entity_id="u", ts=datetime.now(UTC),
    ...                    features={"x": 1.0}, received_at=0.0)
    >>> p = s.score(fv, started=time.time())
    >>> p.version == s.version, p.model
    (True, 'loans')
    >>> example, new_version = s.feedback(Label(event_id="e1", label=True))
    >>> example.label, new_version is None
    (True, True)
    >>> s.feedback(Label(event_id="e2", label=False)) is None  # label before its prediction
    True
    >>> fv2 = fv.model_copy(update={"event_id": "e2"})
    >>> _ = s.score(fv2, started=time.time())
    >>> s.late_join[0].label, s.late_join[1].parent == p.version  # 2nd example: new version
    (False, True)
    """

    def __init__(
        self, model: str, model_name: str, explain_top: int, publish_every: int, window: int
    ) -> None:
        self.model_name = model_name
        self.explain_top = explain_top
        self.publish_every = publish_every
        self.live = make_model(model)
        self.hyperparameters = {"factory": model, "repr": repr(self.live)}
        self.join: FeedbackJoin[Served, LabelValue] = FeedbackJoin(window)
        self.examples_seen = 0
        self.version = ""
        self.served: Any = None
        self.late_join: tuple[TrainingExample, ModelVersion | None] | None = None
        self.first_version = self._snapshot(parent=None)

    def _snapshot(self, parent: str | None) -> ModelVersion:
        self.served = copy.deepcopy(self.live)
        self.version = version_id(self.served)
        return ModelVersion(
            model=self.model_name,
            version=self.version,
            parent=parent,
            created_at=datetime.now(UTC),
            examples_seen=self.examples_seen,
            hyperparameters=self.hyperparameters,
        )

    def score(self, vector: FeatureVector, started: float) -> Prediction:
        """The served model's prediction for one feature vector, remembered for feedback.

        If the label came first, `late_join` now holds what learning from it produced.
        """
        pred, score, why = predict_explained(self.served, vector.features, self.explain_top)
        now = time.time()
        served = Served(vector.features, pred, score, self.version)
        pair = self.join.add_prediction(vector.event_id, served)
        self.late_join = self._learn(vector.event_id, *pair) if pair is not None else None
        return Prediction(
            event_id=vector.event_id,
            entity_id=vector.entity_id,
            ts=vector.ts,
            model=self.model_name,
            version=self.version,
            prediction=pred,
            score=score,
            explanation=why,
            latency_ms=(now - started) * 1000.0,
            received_at=vector.received_at,
            predicted_at=now,
        )

    def feedback(self, label: Label) -> tuple[TrainingExample, ModelVersion | None] | None:
        """Join a label to what was served; learn from the pair; maybe publish a new version.

        Raises ValueError when the label does not fit the model (e.g. "maybe" for a binary one).
        """
        y = coerce_label(self.live, label.label)
        pair = self.join.add_label(label.event_id, y)
        return self._learn(label.event_id, *pair) if pair is not None else None

    def _learn(
        self, event_id: str, served: Served, y: LabelValue
    ) -> tuple[TrainingExample, ModelVersion | None]:
        self.live.learn_one(served.features, y)
        self.examples_seen += 1
        example = TrainingExample(
            event_id=event_id,
            model=self.model_name,
            version=served.version,
            features=served.features,
            label=y,
            served=served.prediction,
            score=served.score,
        )
        new_version = None
        if self.examples_seen % self.publish_every == 0:
            new_version = self._snapshot(parent=self.version)
        return example, new_version


def build(settings: Settings) -> Any:
    """The scoring faust app: an agent on features, and one on labels feeding the model."""
    app = make_app(settings, "scoring")
    p = settings.processing
    scorer = Scorer(p.model, p.model_name, p.explain_top, p.publish_every, p.feedback_window)
    emitter = Emitter(settings)
    topics = {k: settings.topic(k) for k in ("predictions", "training", "model-versions",
                                              "dead-letters")}

    def emit_learned(learned: tuple[TrainingExample, ModelVersion | None] | None) -> None:
        if learned is None:
            return
        example, version = learned
        emitter.emit(topics["training"], None, example.to_bytes())
        if version is not None:
            emitter.emit(topics["model-versions"], f"{version.model}@{version.version}",
                         version.to_bytes())

    @app.task
    async def publish_first_version() -> None:
        v = scorer.first_version
        emitter.emit(topics["model-versions"], f"{v.model}@{v.version}", v.to_bytes())
        await emitter.flush()

    @app.agent(raw_topic(app, settings.topic("features")))
    async def scoring(stream: Any) -> None:
        async for events in batches(stream, settings):
            started = time.time()
            for event in events:
                try:
                    vector = FeatureVector.model_validate_json(event.message.value or b"")
                except ValidationError as exc:
                    dl = dead_letter("scoring", event, validation_reason(exc))
                    emitter.emit(topics["dead-letters"], dl.source_topic, dl.to_bytes())
                    continue
                prediction = scorer.score(vector, started)
                emitter.emit(topics["predictions"], vector.entity_id, prediction.to_bytes())
                emit_learned(scorer.late_join)
            await emitter.flush()

    @app.agent(raw_topic(app, settings.topic("labels")))
    async def feedback(stream: Any) -> None:
        async for events in batches(stream, settings):
            for event in events:
                try:
                    label = Label.model_validate_json(event.message.value or b"")
                    emit_learned(scorer.feedback(label))
                except (ValidationError, ValueError) as exc:
                    dl = dead_letter("feedback", event, validation_reason(exc))
                    emitter.emit(topics["dead-letters"], dl.source_topic, dl.to_bytes())
            await emitter.flush()

    return app


def main(settings: Settings) -> None:
    """Run the scoring processor in the foreground."""
    run_worker(build(settings), settings)

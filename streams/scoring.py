"""scoring: feature vectors → predictions, from the deployed champion and every shadow.

Scoring learns nothing itself; it serves what the deployments topic names. A watcher thread
follows the registry (versions, signed artifacts, deployments), verifies and loads the deployed
versions off the processing thread, and hands it a ready ``ServingSet``. The processor (on the
runtime, ``driftway.io.runtime``) picks up the current set at the start of each batch, so a swap
happens between two events, and every
prediction names the version that made it. An artifact that fails verification is reported as a
dead letter and the running set stays.

For each event, scoring writes the prediction (keyed by entity, for subscribers) and what was
served — features, and every version's output — keyed by event id, for the feedback join.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

from driftway.io.kafka import make_producer, produce
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Incoming, Out, run_processor
from driftway.logic.artifacts import ArtifactRefused
from driftway.logic.models import predict_explained
from driftway.logic.registry import RegistryError
from driftway.schemas.events import (
    DeadLetter,
    Deployment,
    FeatureVector,
    Output,
    Prediction,
    Served,
)
from driftway.settings import Settings

log = logging.getLogger(__name__)


class ServingSet(NamedTuple):
    """The loaded models of one deployment: what scoring serves until the next swap."""

    deployment: Deployment
    champion: tuple[str, Any]
    shadows: tuple[tuple[str, Any], ...]


def score_event(
    serving: ServingSet, vector: FeatureVector, explain_top: int, started: float
) -> tuple[Prediction, Served]:
    """The champion's prediction (explained) and what was served, shadows included."""
    version, model = serving.champion
    answer = predict_explained(model, vector.features, explain_top)
    outputs = {version: Output(prediction=answer.prediction, score=answer.score,
                               proba=answer.proba)}
    for shadow_version, shadow in serving.shadows:
        s = predict_explained(shadow, vector.features, 0)
        outputs[shadow_version] = Output(prediction=s.prediction, score=s.score, proba=s.proba)
    now = time.time()
    model_name = serving.deployment.model
    prediction = Prediction(
        event_id=vector.event_id,
        entity_id=vector.entity_id,
        ts=vector.ts,
        model=model_name,
        version=version,
        prediction=answer.prediction,
        score=answer.score,
        shadow_scores={v: o.score for v, o in outputs.items()
                       if v != version and o.score is not None},
        explanation=answer.explanation,
        latency_ms=(now - started) * 1000.0,
        received_at=vector.received_at,
        predicted_at=now,
    )
    served = Served(
        event_id=vector.event_id,
        entity_id=vector.entity_id,
        ts=vector.ts,
        model=model_name,
        champion=version,
        features=vector.features,
        outputs=outputs,
        predicted_at=now,
    )
    return prediction, served


class DeploymentWatcher(threading.Thread):
    """Follows the registry in a thread; `current` is the serving set to use now."""

    def __init__(self, settings: Settings, model_name: str, processor: str = "scoring") -> None:
        super().__init__(daemon=True, name=f"{processor}-deployments")
        self.settings = settings
        self.model_name = model_name
        self.processor = processor
        self.current: ServingSet | None = None
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self._loaded: dict[str, Any] = {}
        self._refused: dict[str, str] = {}
        self._producer = make_producer(settings)

    def run(self) -> None:
        try:
            registry = ModelRegistry(self.settings, name=self.processor)
            try:
                registry.catch_up()
                self._consider(registry)
                while not self.stopping.is_set():
                    # consume() returns at its timeout unless 1,000 records came: keep it short,
                    # it is most of a swap's latency.
                    registry.poll(0.02)
                    self._consider(registry)
            finally:
                registry.close()
        except BaseException as exc:  # surfaced to the agent, which stops the worker
            log.exception("deployment watcher failed")
            self.failed = exc

    def _consider(self, registry: ModelRegistry) -> None:
        """Load the wanted deployment if it differs from what is served and all has arrived."""
        wanted = registry.deployments.get(self.model_name)
        if wanted is None or (self.current is not None and self.current.deployment == wanted):
            return
        versions = [wanted.champion, *wanted.shadows]
        if any(self._refused.get(v) for v in versions):
            return  # refused once, reported once: keep serving what runs now
        try:
            models = [self._loaded[v] if v in self._loaded else registry.load(v)
                      for v in versions]
        except RegistryError:
            return  # metadata or chunks still on their way: try again after the next poll
        except ArtifactRefused as refused:
            self._refused[refused.meta.version] = refused.reason
            self._report(registry.refusal(self.processor, refused))
            log.error("%s; still serving %s", refused,
                      self.current.champion[0][:12] if self.current else "nothing")
            return
        self._loaded = dict(zip(versions, models, strict=True))
        self.current = ServingSet(wanted, (versions[0], models[0]),
                                  tuple(zip(versions[1:], models[1:], strict=True)))
        log.info("serving %s with %d shadow(s)", versions[0][:12], len(versions) - 1)

    def _report(self, letter: DeadLetter) -> None:
        produce(self._producer, self.settings.topic("dead-letters"), letter.source_topic,
                letter.to_bytes(), lambda err, _msg: err and log.error("dead letter: %s", err))
        self._producer.flush(10)

    def wait_ready(self) -> ServingSet:
        """Wait until there is something to serve (the learner deploys the first version)."""
        while self.current is None:
            if self.failed is not None:
                raise RuntimeError("the deployment watcher failed") from self.failed
            time.sleep(0.05)
        return self.current


class Scoring:
    """The scoring processor: a feature vector → the champion's prediction and what was served.

    The serving set is taken once per batch, so a swap falls between two events.
    """

    name = "scoring"

    def __init__(self, settings: Settings) -> None:
        self.explain_top = settings.processing.explain_top
        self.watcher = DeploymentWatcher(settings, settings.processing.model_name)
        self.serving: ServingSet | None = None
        self.started = 0.0

    def start(self) -> None:
        """Follow the registry, and wait for something to serve (the learner's version zero)."""
        self.watcher.start()
        self.watcher.wait_ready()

    def begin_batch(self) -> None:
        if self.watcher.failed is not None:
            raise RuntimeError("the deployment watcher failed") from self.watcher.failed
        self.serving = self.watcher.current
        self.started = time.time()

    def handle(self, record: Incoming, store: object) -> list[Out]:
        assert self.serving is not None
        vector = FeatureVector.from_bytes(record.value or b"")
        prediction, served = score_event(self.serving, vector, self.explain_top, self.started)
        return [Out("predictions", vector.entity_id, prediction.to_bytes()),
                Out("served", vector.event_id, served.to_bytes())]


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the scoring processor in the foreground (verifying artifacts with the signing key)."""
    settings = with_signing_key(settings)
    run_processor(settings, Scoring(settings), instance)

"""scoring: raw events → features → predictions, from the deployed champion and every shadow.

A raw event is validated within the input limits (a bad one is a dead letter with the reason)
and featurised (``driftway.logic.features``) with its entity's running state, kept in the
partition's changelog-backed store so that it survives a restart; then it is scored. Features
and scoring are one processor because both are keyed by entity id: no topic, hop or
transaction between them (bench/README.md measured what that hop cost).

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

from confluent_kafka import Consumer, KafkaException, TopicPartition

from driftway.io.kafka import client_config, committed_offsets, make_producer, produce
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Incoming, Out, run_processor
from driftway.io.state import Store
from driftway.logic.artifacts import ArtifactRefused, StateRefused, load_state
from driftway.logic.features import featurize
from driftway.logic.limits import decode_checked
from driftway.logic.models import predict_explained
from driftway.logic.registry import RegistryError
from driftway.schemas.events import (
    DeadLetter,
    Deployment,
    FeatureVector,
    ModelState,
    ModelVersion,
    Output,
    Prediction,
    RawEvent,
    Served,
)
from driftway.settings import LimitsSettings, Settings

log = logging.getLogger(__name__)

_DEFAULT_LIMITS = LimitsSettings()


class ServedModel(NamedTuple):
    """One deployed version as scoring serves it: a known state (DESIGN.md, invariant 7) —
    `state_version`'s artifact plus the training records in [trained_from, trained_through)."""

    slot: str  # the deployed version it serves as
    model: Any
    state_version: str
    trained_from: int
    trained_through: int

    @classmethod
    def release(cls, meta: ModelVersion, model: Any) -> ServedModel:
        """A published version as it is: it has learned up to its own end offset."""
        end = meta.training_offsets.end if meta.training_offsets else 0
        return cls(meta.version, model, meta.version, end, end)


class ServingSet(NamedTuple):
    """The models of one deployment: what scoring serves until the next swap or update."""

    deployment: Deployment
    champion: ServedModel
    shadows: tuple[ServedModel, ...]


def score_event(
    serving: ServingSet, vector: FeatureVector, explain_top: int, started: float
) -> tuple[Prediction, Served]:
    """The champion's prediction (explained) and what was served, shadows included."""
    champion = serving.champion
    version = champion.slot
    answer = predict_explained(champion.model, vector.features, explain_top)
    outputs = {version: Output(prediction=answer.prediction, score=answer.score,
                               proba=answer.proba)}
    for shadow in serving.shadows:
        s = predict_explained(shadow.model, vector.features, 0)
        outputs[shadow.slot] = Output(prediction=s.prediction, score=s.score, proba=s.proba)
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
        state_version=champion.state_version,
        trained_from=champion.trained_from,
        trained_through=champion.trained_through,
        features=vector.features,
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
        self.live = settings.processing.live_updates
        self._loaded: dict[str, ServedModel] = {}  # releases, by version
        self._served: dict[str, ServedModel] = {}  # what each slot serves now
        self._live_seen: ModelState | None = None
        self._refused: dict[str, str] = {}
        self._producer = make_producer(settings)

    def run(self) -> None:
        try:
            registry = ModelRegistry(self.settings, name=self.processor, live=self.live)
            try:
                registry.catch_up()
                self._consider(registry)
                while not self.stopping.is_set():
                    # Returns as soon as a record comes (driftway.io.kafka.take); idle, the
                    # watcher wakes 50 times a second (~1 % of a core with the whole stack idle).
                    registry.poll(0.02)
                    self._consider(registry)
            finally:
                registry.close()
        except BaseException as exc:  # surfaced to the agent, which stops the worker
            log.exception("deployment watcher failed")
            self.failed = exc

    def _consider(self, registry: ModelRegistry) -> None:
        """Serve the wanted deployment once all its versions have arrived, each slot at the
        newest state the learner has streamed for it (a live update), else as released."""
        wanted = registry.deployments.get(self.model_name)
        live = registry.live.get(self.model_name) if self.live else None
        if wanted is None or (self.current is not None and self.current.deployment == wanted
                              and live is self._live_seen):
            return
        versions = [wanted.champion, *wanted.shadows]
        if any(self._refused.get(v) for v in versions):
            return  # refused once, reported once: keep serving what runs now
        try:
            releases = [self._release(registry, v) for v in versions]
        except RegistryError:
            return  # metadata or chunks still on their way: try again after the next poll
        except ArtifactRefused as refused:
            self._refused[refused.meta.version] = refused.reason
            self._report(registry.refusal(self.processor, refused))
            log.error("%s; still serving %s", refused,
                      self.current.champion.slot[:12] if self.current else "nothing")
            return
        self._loaded = {r.slot: r for r in releases}
        self._live_seen = live
        served = [self._newest(r, live) for r in releases]
        self._served = {m.slot: m for m in served}
        swapped = self.current is None or self.current.deployment != wanted
        self.current = ServingSet(wanted, served[0], tuple(served[1:]))
        if swapped:
            log.info("serving %s with %d shadow(s)", versions[0][:12], len(versions) - 1)

    def _release(self, registry: ModelRegistry, version: str) -> ServedModel:
        if version in self._loaded:
            return self._loaded[version]
        model = registry.load(version)  # RegistryError while its metadata or chunks travel
        return ServedModel.release(registry.versions[version], model)

    def _newest(self, release: ServedModel, live: ModelState | None) -> ServedModel:
        """What a slot serves: its live state if newer than what it serves now (a learner
        replaying after a restart streams older states again: those are passed over)."""
        now = self._served.get(release.slot, release)
        line = next((ln for ln in live.lines if ln.slot == release.slot), None) if live else None
        if line is None or line.trained_through <= now.trained_through:
            return now
        try:
            model = load_state(self.model_name, line, self.settings.signing_key_bytes)
        except StateRefused as refused:
            log.error("%s; %s goes on serving its state through offset %d", refused,
                      release.slot[:12], now.trained_through)
            return now
        return ServedModel(line.slot, model, line.version, line.trained_from,
                           line.trained_through)

    def _report(self, letter: DeadLetter) -> None:
        produce(self._producer, self.settings.topic("dead-letters"), letter.source_topic,
                letter.to_bytes(), lambda err, _msg: err and log.error("dead letter: %s", err))
        self._producer.flush(10)

    def wait_ready(self, stopping: threading.Event) -> None:
        """Wait until there is something to serve (the learner deploys the first version:
        `current` is set), or until `stopping` is set."""
        while self.current is None and not stopping.wait(0.05):
            if self.failed is not None:
                raise RuntimeError("the deployment watcher failed") from self.failed


def featurize_raw(value: bytes | None, store: Store, received_at: float,
                  limits: LimitsSettings = _DEFAULT_LIMITS) -> FeatureVector:
    """A raw record's features, made with its entity's state, which it updates in ``store``;
    raises (ValidationError, LimitExceeded, ValueError) for a record that must be a dead
    letter. This is the whole check a raw record meets on entry."""
    raw = decode_checked(RawEvent, value, limits)
    vector, state = featurize(raw, store.get(raw.entity_id), received_at)
    store.set(raw.entity_id, state)
    return vector


class Scoring:
    """The scoring processor: a raw event → its features → the champion's prediction and what
    was served.

    The serving set is taken once per batch, so a swap falls between two events.
    """

    name = "scoring"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.explain_top = settings.processing.explain_top
        self.limits = settings.limits
        self.group = f"{settings.app_id}-scoring"
        #: The group whose raw offsets an upgraded stack's scoring starts from (see resume_at),
        #: and what it had committed, by raw partition (None: nothing), looked up once each:
        #: nothing runs that group any more.
        self.upgraded_from = f"{settings.app_id}-features"
        self._former: dict[int, int | None] = {}
        self.watcher = DeploymentWatcher(settings, settings.processing.model_name)
        self.serving: ServingSet | None = None
        self.started = 0.0

    def start(self, stopping: threading.Event) -> None:
        """Follow the registry, and wait for something to serve (the learner's version zero)
        or for the runtime to stop."""
        self.watcher.start()
        self.watcher.wait_ready(stopping)

    def resume_at(self, assigned: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """A stack upgraded from before features was part of scoring: where scoring's group has
        committed nothing on the raw topic yet, it goes on from where the former features
        processor's group had got to, not from the topic's beginning (which would score every
        retained event again)."""
        raw, partitions = self.settings.topic("raw"), [p for _, p in assigned]
        unknown = [p for p in partitions if p not in self._former]
        if unknown:
            found = committed_offsets(self.settings, self.upgraded_from, raw, unknown)
            self._former.update({p: found.get(p) for p in unknown})
        former = {p: o for p in partitions if (o := self._former[p]) is not None}
        if not former:  # a stack that never ran the features processor: no lookup of ours
            return {}
        ours = committed_offsets(self.settings, self.group, raw, list(former))
        before = {p: o for p, o in former.items() if p not in ours}
        if before:
            log.warning("scoring starts the raw partitions %s where the former features "
                        "processor's group %s had got to (%s)", sorted(before),
                        self.upgraded_from, before)
            self._unserved_vectors(list(before))
        return {("raw", p): offset for p, offset in before.items()}

    def _unserved_vectors(self, partitions: list[int]) -> None:
        """Say how many feature vectors the former scoring had not served when the stack was
        stopped for the upgrade: their events are not scored by this one (README, upgrade)."""
        topic = f"{self.settings.topic_prefix}features"
        served = committed_offsets(self.settings, self.group, topic, partitions)
        consumer = Consumer({**client_config(self.settings), "group.id": self.group})
        try:
            left = sum(max(0, consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                             timeout=10)[1] - offset)
                       for p, offset in served.items())
        except KafkaException:
            return  # no former features topic: nothing waited there
        finally:
            consumer.close()
        if left:
            log.error("%d feature vectors on %s were not served before the upgrade (the old "
                      "stack stopped with scoring behind): their events get no prediction "
                      "(README: stop the old stack once scoring's lag is 0)", left, topic)

    def begin_batch(self) -> None:
        if self.watcher.failed is not None:
            raise RuntimeError("the deployment watcher failed") from self.watcher.failed
        self.serving = self.watcher.current
        self.started = time.time()

    def handle(self, record: Incoming, store: Store | None) -> list[Out]:
        assert self.serving is not None and store is not None  # the topology gives it state
        vector = featurize_raw(record.value, store, record.received_at, self.limits)
        prediction, served = score_event(self.serving, vector, self.explain_top, self.started)
        return [Out("predictions", vector.entity_id, prediction.to_bytes()),
                Out("served", vector.event_id, served.to_bytes())]


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the scoring processor in the foreground (verifying artifacts with the signing key)."""
    settings = with_signing_key(settings)
    run_processor(settings, Scoring(settings), instance)

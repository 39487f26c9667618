"""learner: the one ordered consumer of the training topic, on Kafka.

The learning itself — prequential evaluation, concept drift, the policy, publication — is
``driftway.logic.learning.Learner``; this processor feeds it the training topic in order and writes
what it produces: metrics, versions, deployments, drift events, dead letters.

Recovery needs no checkpoint of its own: on start, each deployed line resumes from its latest
published version and replays the training topic from that version's end offset. Models are
deterministic functions of the examples they see, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from driftway.io.kafka import client_config, make_producer, produce
from driftway.io.registry import ModelRegistry
from driftway.logic import artifacts
from driftway.logic.learning import Learner, StepResult
from driftway.logic.registry import (
    RegistryError,
    publish_version,
    update_deployment,
    write_deployment,
)
from driftway.schemas.events import (
    DeadLetter,
    Deployment,
    ModelVersion,
    decode_training,
    failure_reason,
)
from driftway.settings import Settings

log = logging.getLogger(__name__)



class LearnerService:
    """The learner on Kafka: the training topic in; versions, metrics, drift events and
    deployments out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.learner = Learner(settings)
        self.stop_requested = threading.Event()
        self.registry = ModelRegistry(settings, name="learner")
        self.producer = make_producer(settings)
        self.applied: Deployment | None = None  # the last deployment by others that lines follow
        self.position = 0
        self.topic = settings.topic("training")
        self._errors: list[str] = []
        self.consumer = Consumer({
            **client_config(settings),
            "group.id": f"{settings.app_id}-learner",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })

    def emit(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        produce(self.producer, topic, key, value, self._on_delivery)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self) -> None:
        self.producer.flush()
        if self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"{len(errors)} records not delivered: {errors[:3]}")

    def recover(self) -> int:
        """Lines from the deployment (version zero if there is none); the offset to start at."""
        self.registry.catch_up()
        current = self.registry.deployments.get(self.learner.model_name)
        if current is None:
            meta, artifact, deployment = self.learner.bootstrap()
            publish_version(self.emit, self.settings, meta, artifact)
            self.flush()  # the version is on Kafka before any deployment names it
            write_deployment(self.emit, self.settings, deployment)
            self.flush()
            self.registry.versions[meta.version] = meta
            return 0
        self.learner.deployment = current
        self._apply_deployment(current, at=None)
        start = min((line.start for line in self.learner.lines), default=0)
        self.learner.emit_metrics_from = start
        return start

    def _lines_for(self, deployment: Deployment, at: int | None) -> None:
        """Keep the lines still deployed; start one for each newly deployed version.

        At start-up (`at` None) a line resumes from its latest published descendant, at that
        version's end offset; a version deployed while running starts learning at `at`. All or
        nothing: if a version cannot be loaded (not arrived: RegistryError; refused:
        ArtifactRefused), the lines stay as they were.
        """
        deployed = [deployment.champion, *deployment.shadows]
        kept = [line for line in self.learner.lines if line.slot in deployed]
        loaded: list[tuple[str, ModelVersion, Any]] = []
        for version in deployed:
            if any(line.slot == version for line in kept):
                continue
            meta = self.registry.versions.get(version)
            if meta is None:
                raise RegistryError(f"no version {version[:12]} in the registry yet")
            if at is None:
                meta = self.registry.latest_descendant(version)
            loaded.append((version, meta, self.registry.load(meta.version)))
        self.learner.lines = kept
        self.applied = deployment
        for version, meta, model in loaded:
            offsets = meta.training_offsets
            start = at if at is not None else (offsets.end if offsets else self.position)
            line = self.learner.add_line(version, meta, model, start)
            if meta.version != version and self.learner.auto_update:
                # Published before a crash, never deployed: deploy it now.
                current = self.learner.deployment or deployment
                updated = update_deployment(current, version, meta.version,
                                            f"{meta.reason} (auto_update, after a restart)")
                if updated is not None:
                    line.slot = meta.version
                    line.versions.add(meta.version)
                    self.learner.deployment = updated
                    write_deployment(self.emit, self.settings, updated)
            log.info("line %s from %s at offset %d", version[:12], meta.version[:12], start)

    def _apply_deployment(self, deployment: Deployment, at: int | None) -> None:
        try:
            self._lines_for(deployment, at)
        except RegistryError:
            if at is None:
                raise
            log.info("waiting for the versions of deployment %s to arrive",
                     deployment.version[:12])
        except artifacts.ArtifactRefused as refused:
            self.applied = deployment  # reported once; the lines learn on as they were
            letter = self.registry.refusal("learner", refused)
            self.emit(self.settings.topic("dead-letters"), letter.source_topic, letter.to_bytes())
            log.error("%s; the learner goes on with the lines it has", refused)

    def handle(self, msg: Message) -> None:
        """Learn from one training record; one that fails is a dead letter, not the batch's."""
        try:
            record = decode_training(msg.value() or b"")
            result = self.learner.step(msg.offset(), record)
        except Exception as exc:
            self._dead_letter(msg, failure_reason(exc))
            return
        self.apply(result, msg)

    def apply(self, result: StepResult, msg: Message | None = None) -> None:
        """Write what a step produced: metrics, versions (before the deployments naming
        them), deployments, drift events, dead letters."""
        for metric in result.metrics:
            self.emit(self.settings.topic("metrics"), f"{metric.model}@{metric.version}",
                      metric.to_bytes())
        for published in result.published:
            publish_version(self.emit, self.settings, published.meta, published.artifact)
            self.registry.versions[published.meta.version] = published.meta
            log.info("published %s (%s)", published.meta.version[:12], published.meta.reason)
        if result.published and result.deployments:
            # Versions and deployments go to different topics, delivered independently: a crash
            # between them could leave a deployment naming a version that never arrived, and a
            # learner that cannot recover. The versions are acknowledged first.
            self.flush()
        for deployment in result.deployments:
            write_deployment(self.emit, self.settings, deployment)
            log.info("deployment: %s %s (%s)", deployment.action, deployment.version[:12],
                     deployment.reason)
        for event in result.drift:
            self.emit(self.settings.topic("drift"), event.model, event.to_bytes())
        for reason in result.dead:
            if msg is not None:
                self._dead_letter(msg, reason)

    def _dead_letter(self, msg: Message, reason: str) -> None:
        letter = DeadLetter.of("learner", msg.topic(), msg.partition(), msg.offset(), msg.key(),
                               msg.value(), reason)
        self.emit(self.settings.topic("dead-letters"), letter.source_topic, letter.to_bytes())

    def follow_deployments(self) -> None:
        """Apply deployments made by others (a person, the CLI) between two training records."""
        self.registry.poll(0)
        current = self.registry.deployments.get(self.learner.model_name)
        if current is None or current.by in ("learner", "policy") or current == self.applied:
            return
        self.learner.follow(current)
        self._apply_deployment(current, at=self.position)

    def run(self, on_batch: Callable[[], None] | None = None) -> None:
        self.position = self.recover()
        self.consumer.assign([TopicPartition(self.topic, 0, self.position)])
        log.info("learner reading %s from offset %d", self.topic, self.position)
        try:
            while not self.stop_requested.is_set():
                messages = self.consumer.consume(500, timeout=0.2)
                for msg in messages:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("training consumer: %s", msg.error())
                        continue
                    self.handle(msg)
                    self.position = msg.offset() + 1
                if messages:
                    self.flush()
                    self.consumer.commit(
                        offsets=[TopicPartition(self.topic, 0, self.position)],
                        asynchronous=True)  # for lag monitoring; recovery uses versions
                self.follow_deployments()
                if on_batch is not None:
                    on_batch()
            self.flush()
        finally:
            self.consumer.close()
            self.registry.close()


def main(settings: Settings) -> None:
    """Run the learner in the foreground until SIGTERM or Ctrl-C."""
    if not artifacts.deterministic_hashing():
        log.warning("PYTHONHASHSEED is not fixed: equal models may pickle differently, so a "
                    "replayed version could get a new id (run through `driftway learner`)")
    service = LearnerService(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop_requested.set())
    service.run()

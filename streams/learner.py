"""learner: the one ordered consumer of the training topic, on the processor runtime.

The learning itself — prequential evaluation, concept drift, the policy, publication — is
``driftway.logic.learning.Learner``; this processor feeds it the training topic in order and
returns what it produces: metrics, versions, deployments, drift events, dead letters. The runtime
writes them in transactions with the training offsets, so a version and the deployment that
names it become visible together, and a crash leaves neither half of them behind.

Recovery needs no checkpoint of its own: on start, each deployed line resumes from its latest
published version, and the runtime reads the training topic from that version's end offset
(``resume_at``), not from the committed one. Models are deterministic functions of the examples
they see, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Incoming, Out, run_processor
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
    ModelState,
    ModelVersion,
    decode_training,
)
from driftway.schemas.topology import TOPIC_KEYS
from driftway.settings import Settings

log = logging.getLogger(__name__)


class Emitted:
    """Collects what the registry helpers emit (full topic names) as the runtime's records."""

    def __init__(self, settings: Settings) -> None:
        self.keys = {settings.topic(key): key for key in TOPIC_KEYS}
        self.outs: list[Out] = []

    def __call__(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        self.outs.append(Out(self.keys[topic], key, value))

    def take(self) -> list[Out]:
        outs, self.outs = self.outs, []
        return outs


class LearnerProcessor:
    """The learner on the runtime: the training topic in; versions, metrics, drift events and
    deployments out."""

    name = "learner"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.learner = Learner(settings)
        self.registry = ModelRegistry(settings, name="learner")
        self.emit = Emitted(settings)
        self.applied: Deployment | None = None  # the last deployment by others that lines follow
        self.position = 0  # the next training offset
        p = settings.processing
        self.live = p.live_updates
        self.live_every = p.live_update_seconds  # grows for models slow to serialise
        self._live_sent: tuple[object, ...] | None = None  # what the last live update showed
        self._live_at = 0.0

    # -- the runtime's hooks ------------------------------------------------------------------

    def start(self, _stopping: threading.Event) -> list[Out]:
        """Recover the lines (version zero if nothing is deployed); written before any record
        (bounded work: it does not wait on anything that may never come)."""
        self.position = self.recover()
        log.info("learner reads the training topic from offset %d", self.position)
        return self.emit.take()

    def resume_at(self, assigned: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.position for tp in assigned if tp == ("training", 0)}

    def begin_batch(self) -> list[Out]:
        """Deployments made by others apply between two training records..."""
        self.follow_deployments()
        return self.emit.take()

    def tick(self, _now: float, _stores: object) -> list[Out]:
        """...and while none come (a refused artifact is reported without waiting for one);
        a live update held back by `live_every` goes out now."""
        outs = self.begin_batch()
        return outs + self.end_batch()

    def end_batch(self) -> list[Out]:
        """After each batch: the lines' states as a live update, if they learned since the
        last one. They go out at once, before the commit: a state is a function of committed
        training records, which a replay after a crash learns again bit for bit."""
        if not self.live:
            return []
        shown = (self.position, *((ln.slot, ln.head, ln.start) for ln in self.learner.lines))
        now = time.monotonic()
        if shown == self._live_sent or now - self._live_at < self.live_every:
            return []
        states = self.learner.line_states(self.position)
        took = time.monotonic() - now
        self.live_every = max(self.settings.processing.live_update_seconds, 10 * took)
        self._live_sent, self._live_at = shown, now
        record = ModelState(model=self.learner.model_name, lines=states, at=time.time())
        return [Out("model-updates", self.learner.model_name, record.to_bytes())]

    def handle(self, record: Incoming, store: object = None) -> list[Out]:
        """Learn from one training record; whatever it raises makes it a dead letter."""
        training = decode_training(record.value or b"")
        result = self.learner.step(record.offset, training)
        self.position = record.offset + 1
        self.apply(result, record)
        return self.emit.take()

    def close(self) -> None:
        self.registry.close()

    # -- recovery and deployments -------------------------------------------------------------

    def recover(self) -> int:
        """Lines from the deployment (version zero if there is none); the offset to start at."""
        self.registry.catch_up()
        current = self.registry.deployments.get(self.learner.model_name)
        if current is None:  # the version and its deployment commit together
            meta, artifact, deployment = self.learner.bootstrap()
            publish_version(self.emit, self.settings, meta, artifact)
            write_deployment(self.emit, self.settings, deployment)
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

    def apply(self, result: StepResult, record: Incoming) -> None:
        """What a step produced: metrics, versions (before the deployments naming them),
        deployments, drift events, dead letters."""
        for metric in result.metrics:
            self.emit(self.settings.topic("metrics"), f"{metric.model}@{metric.version}",
                      metric.to_bytes())
        for published in result.published:
            publish_version(self.emit, self.settings, published.meta, published.artifact)
            self.registry.versions[published.meta.version] = published.meta
            log.info("published %s (%s)", published.meta.version[:12], published.meta.reason)
        for deployment in result.deployments:
            write_deployment(self.emit, self.settings, deployment)
            log.info("deployment: %s %s (%s)", deployment.action, deployment.version[:12],
                     deployment.reason)
        for event in result.drift:
            self.emit(self.settings.topic("drift"), event.model, event.to_bytes())
        for reason in result.dead:  # refused by the learner, not raised: its dead letter
            letter = DeadLetter.of("learner", self.settings.topic(record.topic), record.partition,
                                   record.offset, record.key, record.value, reason)
            self.emit(self.settings.topic("dead-letters"), letter.source_topic, letter.to_bytes())

    def follow_deployments(self) -> None:
        """Apply deployments made by others (a person, the CLI) between two training records."""
        self.registry.poll(0)
        current = self.registry.deployments.get(self.learner.model_name)
        if current is None or current.by in ("learner", "policy") or current == self.applied:
            return
        self.learner.follow(current)
        self._apply_deployment(current, at=self.position)


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the learner in the foreground until SIGTERM or Ctrl-C."""
    if not artifacts.deterministic_hashing():
        log.warning("PYTHONHASHSEED is not fixed: equal models may pickle differently, so a "
                    "replayed version could get a new id (run through `driftway run learner`)")
    settings = with_signing_key(settings)  # it signs what it publishes
    run_processor(settings, LearnerProcessor(settings), instance)

"""The model registry, on Kafka: versions, their signed artifacts, and deployments.

Three compacted topics hold it all: ``model-versions`` (metadata, keyed ``model@version``),
``model-artifacts`` (artifact chunks, keyed ``model@version/index``) and ``deployments`` (the
current champion and shadows, keyed by model). ``ModelRegistry`` reads them from the beginning into
memory and follows them; whoever needs a model (scoring, the learner, the CLI) loads it through
``load``, which verifies the signature before deserialising.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from driftway import artifacts
from driftway.kafka import client_config
from driftway.settings import Settings
from schemas.events import (
    ArtifactChunk,
    DeadLetter,
    DeployAction,
    Deployment,
    ModelVersion,
    failure_reason,
)

log = logging.getLogger(__name__)

#: Something that writes one record: (topic, key, value).
Emit = Callable[[str, str | bytes | None, bytes], None]

REGISTRY_TOPICS = ("model-versions", "model-artifacts", "deployments")


class RegistryError(LookupError):
    """A version or deployment that the registry cannot find; the message says what to do."""


def publish_version(emit: Emit, settings: Settings, meta: ModelVersion, artifact: bytes) -> None:
    """Write a version: its artifact chunks first, then its metadata."""
    for chunk in artifacts.chunks(meta, artifact):
        emit(settings.topic("model-artifacts"), artifacts.chunk_key(chunk), chunk.to_bytes())
    emit(settings.topic("model-versions"), f"{meta.model}@{meta.version}", meta.to_bytes())


def write_deployment(emit: Emit, settings: Settings, deployment: Deployment) -> None:
    """Write a deployment record (the model's new current state)."""
    emit(settings.topic("deployments"), deployment.model, deployment.to_bytes())


def next_deployment(
    current: Deployment | None,
    model: str,
    action: DeployAction,
    version: str,
    reason: str = "",
    by: str = "cli",
) -> Deployment:
    """The deployment that follows `current` after `action` on `version`.

    >>> d = next_deployment(None, "m", "init", "v0")
    >>> d = next_deployment(d, "m", "shadow", "v1")
    >>> d.champion, d.shadows
    ('v0', ['v1'])
    >>> d.previous is None  # a shadow change keeps the champion's history as it was
    True
    >>> d = next_deployment(d, "m", "promote", "v1")
    >>> d.champion, d.shadows, d.previous
    ('v1', [], 'v0')
    >>> next_deployment(d, "m", "rollback", "v0").champion
    'v0'
    """
    champion = current.champion if current else None
    shadows = list(current.shadows) if current else []
    if action in ("init", "deploy", "promote", "rollback"):
        new_champion = version
        shadows = [s for s in shadows if s != version]
    elif action == "shadow":
        if champion is None:
            raise RegistryError(f"model {model!r} has no champion; deploy one before a shadow")
        if version == champion:
            raise RegistryError(f"{version[:12]} is the champion of {model!r}, not a shadow")
        new_champion = champion
        shadows = [*shadows, version] if version not in shadows else shadows
    elif action == "unshadow":
        if champion is None or version not in shadows:
            raise RegistryError(f"{version[:12]} is not a shadow of {model!r}")
        new_champion = champion
        shadows = [s for s in shadows if s != version]
    else:  # "update" replaces one line's version: see update_deployment
        raise ValueError(f"use update_deployment for {action!r}")
    # `previous` is the champion before the last change of champion: shadow changes carry it
    # forward, so a rollback finds it even after compaction kept only the latest record.
    previous = champion if new_champion != champion else (current.previous if current else None)
    return Deployment(
        model=model, champion=new_champion, shadows=shadows, action=action, version=version,
        previous=previous, reason=reason, by=by, ts=datetime.now(UTC))


def update_deployment(current: Deployment, old: str, new: str, reason: str) -> Deployment | None:
    """`current` with version `old` (champion or shadow) replaced by its successor `new`.

    None when `old` is no longer deployed (someone deployed something else meanwhile).

    >>> d = next_deployment(next_deployment(None, "m", "init", "a"), "m", "shadow", "b")
    >>> update_deployment(d, "b", "b2", "1000 examples").shadows
    ['b2']
    >>> update_deployment(d, "zz", "z2", "") is None
    True
    """
    if old == current.champion:
        champion, shadows = new, list(current.shadows)
    elif old in current.shadows:
        champion, shadows = current.champion, [new if s == old else s for s in current.shadows]
    else:
        return None
    previous = current.champion if champion != current.champion else current.previous
    return Deployment(
        model=current.model, champion=champion, shadows=shadows, action="update", version=new,
        previous=previous, reason=reason, by="learner", ts=datetime.now(UTC))


class ModelRegistry:
    """Versions, artifacts and deployments, read from Kafka and kept current by ``poll``.

    Not thread-safe: one owner polls it (scoring runs it in a thread of its own).
    """

    def __init__(self, settings: Settings, name: str = "registry",
                 max_artifact_bytes: int = 512 * 1024 * 1024) -> None:
        self.settings = settings
        self.key = settings.signing_key_bytes
        self.versions: dict[str, ModelVersion] = {}
        self.coordinates: dict[str, tuple[str, int, int, bytes]] = {}
        self.deployments: dict[str, Deployment] = {}
        self.history: dict[str, list[Deployment]] = {}
        self.invalid: list[DeadLetter] = []
        self._chunks: dict[str, dict[int, bytes]] = {}
        self._artifacts: OrderedDict[str, bytes] = OrderedDict()
        self._artifact_bytes = 0
        self._max_artifact_bytes = max_artifact_bytes
        self._topics = {settings.topic(k): k for k in REGISTRY_TOPICS}
        self._consumer = Consumer({
            **client_config(settings),
            "group.id": f"{settings.app_id}-{name}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 16 * 1024 * 1024,
        })
        self._partitions = self._assign_all(self._consumer)

    def _assign_all(self, consumer: Consumer) -> list[TopicPartition]:
        meta = consumer.list_topics(timeout=30)
        partitions = []
        for topic in self._topics:
            if topic not in meta.topics or meta.topics[topic].error is not None:
                raise RegistryError(f"topic {topic} does not exist; run `driftway topics` first")
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING)
                           for p in meta.topics[topic].partitions]
        consumer.assign(partitions)
        return partitions

    def close(self) -> None:
        self._consumer.close()

    def catch_up(self, timeout: float = 30.0) -> None:
        """Read until every registry partition is at its end as of now."""
        import time

        ends = {}
        for tp in self._partitions:
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout)
            ends[(tp.topic, tp.partition)] = high
        deadline = time.monotonic() + timeout
        while True:
            positions = self._consumer.position(
                [TopicPartition(t, p) for (t, p), high in ends.items() if high > 0])
            if all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in positions):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry topics not read to their end in {timeout:.0f}s")
            self.poll(0.2)

    def poll(self, timeout: float = 0.0, max_messages: int = 1000) -> set[str]:
        """Apply what arrived; the models whose deployment changed."""
        changed: set[str] = set()
        for msg in self._consumer.consume(max_messages, timeout=timeout):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("registry consumer: %s", msg.error())
                continue
            model = self._apply(msg)
            if model is not None:
                changed.add(model)
        return changed

    def _apply(self, msg: Message) -> str | None:
        kind = self._topics[msg.topic()]
        value = msg.value()
        if value is None:  # a compaction tombstone
            return None
        try:
            if kind == "model-versions":
                meta = ModelVersion.model_validate_json(value)
                self.versions[meta.version] = meta
                self.coordinates[meta.version] = (msg.topic(), msg.partition(), msg.offset(),
                                                  value)
            elif kind == "model-artifacts":
                self._add_chunk(ArtifactChunk.model_validate_json(value))
            else:
                deployment = Deployment.model_validate_json(value)
                self.deployments[deployment.model] = deployment
                self.history.setdefault(deployment.model, []).append(deployment)
                return deployment.model
        except Exception as exc:  # one bad record is reported, never fatal to the registry
            self.invalid.append(DeadLetter.of("registry", msg.topic(), msg.partition(),
                                              msg.offset(), msg.key(), value,
                                              failure_reason(exc)))
        return None

    def _add_chunk(self, chunk: ArtifactChunk) -> None:
        if chunk.version in self._artifacts:
            return
        parts = self._chunks.setdefault(chunk.version, {})
        parts[chunk.index] = base64.b64decode(chunk.data_b64)
        if len(parts) == chunk.count:
            data = b"".join(parts[i] for i in range(chunk.count))
            del self._chunks[chunk.version]
            self._artifacts[chunk.version] = data
            self._artifact_bytes += len(data)
            while self._artifact_bytes > self._max_artifact_bytes and len(self._artifacts) > 1:
                _, evicted = self._artifacts.popitem(last=False)
                self._artifact_bytes -= len(evicted)

    def artifact(self, version: str) -> bytes | None:
        """The complete artifact of a version, if it has arrived (re-read if evicted)."""
        if version in self._artifacts:
            self._artifacts.move_to_end(version)
            return self._artifacts[version]
        meta = self.versions.get(version)
        if meta is None or version in self._chunks:
            return None
        return self._reread(meta)

    def _reread(self, meta: ModelVersion) -> bytes | None:
        """Scan the artifacts topic again for one evicted artifact (rare: a rollback far back)."""
        consumer = Consumer({**client_config(self.settings),
                             "group.id": f"{self.settings.app_id}-reread-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        topic = self.settings.topic("model-artifacts")
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            found: dict[int, bytes] = {}
            eof: set[int] = set()
            while len(eof) < len(parts):
                for msg in consumer.consume(1000, timeout=1.0):
                    if msg.error() is not None:
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            eof.add(msg.partition())
                        continue
                    chunk = ArtifactChunk.model_validate_json(msg.value() or b"{}")
                    if chunk.version == meta.version:
                        found[chunk.index] = base64.b64decode(chunk.data_b64)
                if len(found) == meta.artifact_chunks:
                    return b"".join(found[i] for i in range(meta.artifact_chunks))
            return None
        finally:
            consumer.close()

    def load(self, version: str) -> Any:
        """The model of a version, verified (raises ArtifactRefused, or RegistryError)."""
        meta = self.versions.get(version)
        if meta is None:
            raise RegistryError(f"no version {version[:12]} in the registry")
        data = self.artifact(version)
        if data is None:
            raise RegistryError(f"the artifact of {meta.model}@{version[:12]} has not arrived")
        return artifacts.load(meta, data, self.key)

    def refusal(self, processor: str, refused: artifacts.ArtifactRefused) -> DeadLetter:
        """A dead letter for a refused artifact: its metadata record, and why."""
        topic, partition, offset, value = self.coordinates.get(
            refused.meta.version,
            (self.settings.topic("model-versions"), 0, -1, refused.meta.to_bytes()))
        return DeadLetter.of(processor, topic, partition, max(offset, 0),
                             f"{refused.meta.model}@{refused.meta.version}", value, str(refused))

    def resolve(self, prefix: str, model: str | None = None) -> ModelVersion:
        """The version whose id starts with `prefix` (unique), optionally of one model."""
        hits = [v for k, v in self.versions.items()
                if k.startswith(prefix) and (model is None or v.model == model)]
        if not hits:
            raise RegistryError(f"no model version starts with {prefix!r}; "
                                "see `driftway models list`")
        if len(hits) > 1:
            raise RegistryError(f"{prefix!r} matches {len(hits)} versions; give more characters")
        return hits[0]

    def lineage(self, version: str) -> list[ModelVersion]:
        """The version, its parent, its parent's parent… back to the first."""
        chain: list[ModelVersion] = []
        seen: set[str] = set()
        current: str | None = version
        while current is not None and current in self.versions and current not in seen:
            seen.add(current)
            chain.append(self.versions[current])
            current = self.versions[current].parent
        return chain

    def children(self, version: str) -> Iterable[ModelVersion]:
        """Versions whose parent is `version`."""
        return (v for v in self.versions.values() if v.parent == version)

    def latest_descendant(self, version: str) -> ModelVersion:
        """Follow the line from `version` through the learner's later publications.

        At each step, the child that covers the most training offsets; where a line was
        published but not yet deployed (a crash in between, or auto_update off), this finds it.
        """
        current = self.versions[version]
        while True:
            kids = [c for c in self.children(current.version)
                    if c.training_offsets is not None and c.version != current.version]
            if not kids:
                return current
            current = max(kids, key=lambda c: c.training_offsets.end)  # type: ignore[union-attr]

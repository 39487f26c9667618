"""The model registry on Kafka: ``RegistryState`` fed from the three compacted registry topics.

``ModelRegistry`` reads them from the beginning into memory and follows them; whoever needs a
model (scoring, the learner, the CLI) loads it through ``load``, which verifies the signature
before deserialising.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from driftway.io.kafka import TO_THE_END, client_config, take
from driftway.logic.registry import REGISTRY_TOPICS, RegistryError, RegistryState
from driftway.schemas.events import ArtifactChunk, ModelVersion
from driftway.settings import Settings

log = logging.getLogger(__name__)


class ModelRegistry(RegistryState):
    """Versions, artifacts and deployments, read from Kafka and kept current by ``poll``."""

    def __init__(self, settings: Settings, name: str = "registry",
                 max_artifact_bytes: int = 512 * 1024 * 1024, live: bool = False) -> None:
        super().__init__(settings, max_artifact_bytes)
        # live: also the learner's live updates (scoring serves them between releases).
        kinds = (*REGISTRY_TOPICS, "model-updates") if live else REGISTRY_TOPICS
        self._topics = {settings.topic(k): k for k in kinds}
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
        for msg in take(self._consumer, max_messages, timeout):  # as soon as one comes
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("registry consumer: %s", msg.error())
                continue
            model = self.apply(self._topics[msg.topic()], msg.topic(), msg.partition(),
                               msg.offset(), msg.key(), msg.value())
            if model is not None:
                changed.add(model)
        return changed

    def _reread(self, meta: ModelVersion) -> bytes | None:
        """Scan the artifacts topic again for one evicted artifact (rare: a rollback far back)."""
        consumer = Consumer({**client_config(self.settings),
                             "group.id": f"{self.settings.app_id}-reread-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, **TO_THE_END})
        topic = self.settings.topic("model-artifacts")
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            found: dict[int, bytes] = {}
            eof: set[int] = set()
            while len(eof) < len(parts):
                for msg in take(consumer, 1000, 1.0):
                    if msg.error() is not None:
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            eof.add(msg.partition())
                        continue
                    if msg.value() is None:  # a tombstone: the retention rule pruned it
                        continue
                    chunk = ArtifactChunk.model_validate_json(msg.value())
                    if chunk.version == meta.version:
                        found[chunk.index] = base64.b64decode(chunk.data_b64)
                if len(found) == meta.artifact_chunks:
                    return b"".join(found[i] for i in range(meta.artifact_chunks))
            return None
        finally:
            consumer.close()

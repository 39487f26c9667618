"""The subscriber SDK: a typed iterator over a prediction topic.

Example (needs a broker)::

    for prediction in PredictionSubscriber(Settings(), group_id="billing"):
        print(prediction.event_id, prediction.prediction, prediction.version)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError

from driftway.io.kafka import client_config, take
from driftway.schemas.events import InvalidRecord, Prediction
from driftway.settings import Settings

log = logging.getLogger(__name__)


class PredictionSubscriber:
    """Predictions as `Prediction` objects, in a consumer group (offsets committed as you go).

    `from_beginning=True` starts a new group at the oldest prediction, else at the newest.
    Iteration ends after `idle_timeout` seconds without a record (None: never).
    """

    def __init__(self, settings: Settings, group_id: str | None = None,
                 from_beginning: bool = False, idle_timeout: float | None = None) -> None:
        self.topic = settings.topic("predictions")
        self.idle_timeout = idle_timeout
        self.skipped = 0
        self._consumer = Consumer({
            **client_config(settings),
            "group.id": group_id or f"{settings.app_id}-subscriber-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": True,
        })
        self._consumer.subscribe([self.topic])

    def __iter__(self) -> Iterator[Prediction]:
        last = time.monotonic()
        try:
            while self.idle_timeout is None or time.monotonic() - last < self.idle_timeout:
                for msg in take(self._consumer, 500, 0.2):  # as soon as one record is there
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("subscriber: %s", msg.error())
                        continue
                    last = time.monotonic()
                    try:
                        yield Prediction.from_bytes(msg.value() or b"")
                    except InvalidRecord as exc:
                        self.skipped += 1
                        log.warning("skipped a record that is not a Prediction at %s[%d]@%d: %s",
                                    msg.topic(), msg.partition(), msg.offset(), exc)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group (idempotent)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None  # type: ignore[assignment]

"""The producer SDK: typed, validated events and labels into Driftway.

Example (needs a broker)::

    producer = EventProducer(Settings())
    producer.send_event({"event_id": "e1", "entity_id": "u1", "ts": 1700000000000,
                         "data": {"amount": 12.5, "country": "NO"}})
    producer.send_label({"event_id": "e1", "label": True})
    producer.flush()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message
from pydantic import ValidationError

from driftway.io.kafka import make_producer, produce
from driftway.logic.limits import LimitExceeded, check_limits, check_size
from driftway.schemas.events import Label, RawEvent, Record, describe_invalid
from driftway.settings import LimitsSettings, Settings


class InvalidRecord(ValueError):
    """A payload that does not match its schema; nothing was sent."""


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge some records; `errors` says which and why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} record(s) not delivered: " + "; ".join(errors[:5]))
        self.errors = errors


def validate(model: type[Record], payload: Record | Mapping[str, Any] | str | bytes,
             limits: LimitsSettings | None = None) -> Record:
    """Validate a payload against a wire model, with an error that names the bad fields; raw
    events and labels also against the input limits Driftway refuses them over."""
    try:
        record = payload if isinstance(payload, model) else (
            model.model_validate_json(payload) if isinstance(payload, str | bytes)
            else model.model_validate(payload))
        if limits is not None and isinstance(record, RawEvent | Label):
            check_limits(record, limits)  # its size is checked as it is sent (EventProducer)
    except ValidationError as exc:
        raise InvalidRecord(describe_invalid(exc, limit=20)) from None
    except LimitExceeded as exc:
        raise InvalidRecord(str(exc)) from None
    return record


class EventProducer:
    """Sends raw events (keyed by entity id) and labels (keyed by event id) to Driftway.

    Idempotent producer; records are validated before they are queued, and delivery failures
    surface from `flush()` (or from the next send) as a DeliveryError.
    """

    def __init__(self, settings: Settings, **producer_config: Any) -> None:
        self._producer = make_producer(settings, **producer_config)
        self._raw = settings.topic("raw")
        self._labels = settings.topic("labels")
        self._limits = settings.limits
        self._errors: list[str] = []
        self.sent = 0

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")

    def _send(self, topic: str, key: str, record: Record) -> None:
        self._raise_errors()
        value = record.to_bytes()
        try:
            check_size(type(record).__name__, len(value), self._limits)
        except LimitExceeded as exc:
            raise InvalidRecord(str(exc)) from None
        produce(self._producer, topic, key, value, self._delivered)
        self._producer.poll(0)
        self.sent += 1

    def send_event(self, event: RawEvent | Mapping[str, Any] | str | bytes) -> RawEvent:
        """Validate and queue one raw event; returns the validated event."""
        record = validate(RawEvent, event, self._limits)
        assert isinstance(record, RawEvent)
        self._send(self._raw, record.entity_id, record)
        return record

    def send_label(self, label: Label | Mapping[str, Any] | str | bytes) -> Label:
        """Validate and queue one label; returns the validated label."""
        record = validate(Label, label, self._limits)
        assert isinstance(record, Label)
        self._send(self._labels, record.event_id, record)
        return record

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued is acknowledged; raise DeliveryError otherwise."""
        remaining = self._producer.flush(timeout)
        if remaining:
            self._errors.append(f"{remaining} record(s) still queued after {timeout:.0f}s")
        self._raise_errors()

    def _raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(errors)

    def close(self) -> None:
        """Deliver what is queued (raising DeliveryError on failure) and release the client."""
        try:
            self.flush()
        finally:
            self._producer = None  # type: ignore[assignment]

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

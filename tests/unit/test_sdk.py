"""The producer SDK, its Kafka producer replaced by a stub that records what it is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from driftway import sdk
from driftway.schemas.events import Label, RawEvent
from driftway.settings import Settings

SETTINGS = Settings(topic_prefix="sdk.")
EVENT = {"event_id": "e1", "entity_id": "u1", "ts": 1700000000000, "data": {"amount": 12.5}}


class RecordingProducer:
    """confluent-kafka's Producer as the SDK uses it; `fail` makes every delivery fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.pending: list[Callable[[Any, Any], None]] = []
        self.fail = False

    def produce(self, topic: str, value: bytes, key: str,
                on_delivery: Callable[[Any, Any], None], **_: Any) -> None:
        self.sent.append((topic, key, value))
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for deliver in self.pending:
            deliver(DeliveryFailed() if self.fail else None, FakeMessage())
        self.pending = []
        return 0


class DeliveryFailed:
    def str(self) -> str:
        return "Broker: not enough replicas"


class FakeMessage:
    def topic(self) -> str:
        return "sdk.raw"

    def key(self) -> bytes:
        return b"u1"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> RecordingProducer:
    recording = RecordingProducer()
    monkeypatch.setattr(sdk, "make_producer", lambda settings, **config: recording)
    return recording


def test_events_are_keyed_by_entity_and_labels_by_event(stub: RecordingProducer) -> None:
    producer = sdk.EventProducer(SETTINGS)
    event = producer.send_event(EVENT)
    label = producer.send_label(b'{"event_id": "e1", "label": true}')
    producer.send_event(RawEvent(event_id="e2", entity_id="u2", ts=1, data={}))
    assert [(topic, key) for topic, key, _ in stub.sent] == [
        ("sdk.raw", "u1"), ("sdk.labels", "e1"), ("sdk.raw", "u2")]
    assert RawEvent.model_validate_json(stub.sent[0][2]) == event
    assert Label.model_validate_json(stub.sent[1][2]) == label and label.label is True
    assert producer.sent == 3
    producer.close()


@pytest.mark.parametrize(("send", "payload", "field"), [
    ("send_event", {**EVENT, "entity_id": ""}, "entity_id"),
    ("send_event", {**EVENT, "data": {"nested": {"x": 1}}}, "data"),
    ("send_event", '{"event_id": "e1"', "Invalid JSON"),
    ("send_label", {"event_id": "e1"}, "label: Field required"),
    ("send_label", {"event_id": "e1", "label": True, "extra": 1}, "extra"),
])
def test_an_invalid_record_raises_and_nothing_is_sent(
        stub: RecordingProducer, send: str, payload: Any, field: str) -> None:
    producer = sdk.EventProducer(SETTINGS)
    with pytest.raises(sdk.InvalidRecord, match=field):
        getattr(producer, send)(payload)
    assert stub.sent == [] and producer.sent == 0


def test_failed_deliveries_surface_from_flush(stub: RecordingProducer) -> None:
    producer = sdk.EventProducer(SETTINGS)
    producer.send_event(EVENT)
    stub.fail = True
    with pytest.raises(sdk.DeliveryError, match="not enough replicas") as caught:
        producer.flush()
    assert len(caught.value.errors) == 1
    producer.flush()  # reported once

"""The producer SDK on the real broker: keys, what reaches the topics, what never does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from driftway import sdk
from driftway.consumers.subscriber import PredictionSubscriber
from driftway.io.kafka import ensure_topics, make_producer
from driftway.schemas.events import Label, Prediction, RawEvent
from driftway.settings import Settings
from tests.integration.helpers import read_messages

pytestmark = pytest.mark.integration

EVENT = {"event_id": "e1", "entity_id": "u1", "ts": 1700000000000, "data": {"amount": 12.5}}
INVALID: list[tuple[str, Any, str]] = [
    ("send_event", {**EVENT, "entity_id": ""}, "entity_id"),
    ("send_event", {**EVENT, "data": {"nested": {"x": 1}}}, "data"),
    ("send_event", '{"event_id": "e1"', "Invalid JSON"),
    ("send_label", {"event_id": "e1"}, "label: Field required"),
    ("send_label", {"event_id": "e1", "label": True, "extra": 1}, "extra"),
]


def test_events_are_keyed_by_entity_and_labels_by_event(stack_settings: Settings) -> None:
    settings = stack_settings
    ensure_topics(settings)
    with sdk.EventProducer(settings) as producer:
        event = producer.send_event(EVENT)
        label = producer.send_label(b'{"event_id": "e1", "label": true}')
        producer.send_event(RawEvent(event_id="e2", entity_id="u2", ts=1, data={}))
        assert producer.sent == 3
    raw = sorted(read_messages(settings, "raw", 2), key=lambda m: m.key())
    assert [m.key() for m in raw] == [b"u1", b"u2"]
    assert RawEvent.model_validate_json(raw[0].value()) == event
    [labelled] = read_messages(settings, "labels", 1)
    assert labelled.key() == b"e1"
    assert Label.model_validate_json(labelled.value()) == label and label.label is True


def test_an_invalid_record_raises_and_nothing_is_sent(stack_settings: Settings) -> None:
    settings = stack_settings
    ensure_topics(settings)
    with sdk.EventProducer(settings) as producer:
        for send, payload, field in INVALID:
            with pytest.raises(sdk.InvalidRecord, match=field):
                getattr(producer, send)(payload)
        assert producer.sent == 0
    assert read_messages(settings, "raw") == [] and read_messages(settings, "labels") == []


def test_the_subscriber_yields_predictions_and_skips_what_is_not_one(
        stack_settings: Settings) -> None:
    settings = stack_settings
    ensure_topics(settings)
    good = Prediction(event_id="p1", entity_id="u1", ts=datetime.now(UTC), model="m",
                      version="v", prediction=True, score=0.9, latency_ms=1.0,
                      received_at=1.0, predicted_at=2.0)
    producer = make_producer(settings)
    for value in (b'{"not": "a prediction"}', b"\xff", good.to_bytes()):
        producer.produce(settings.topic("predictions"), key=b"u1", value=value)
    assert producer.flush(30) == 0
    subscriber = PredictionSubscriber(settings, from_beginning=True, idle_timeout=5)
    seen = list(subscriber)
    assert seen == [good] and subscriber.skipped == 2

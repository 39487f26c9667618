"""Hostile raw events and labels on the real broker, with the whole stack running.

About two and a half thousand records drawn by hypothesis (tests/hostile.py) that Driftway refuses —
malformed, not UTF-8, oversized, deeply nested, wrongly typed, over a limit, at an edge's wrong
side — plus null values and records over limits.max_record_bytes, sent amid valid events and
their labels. Every hostile record is exactly one dead letter with a reason, no process exits,
and every valid event gets exactly one prediction. Counted on the topics, record by record:
nothing a deduplicating read could hide (ClickHouse's tables are waited on and checked too, read
through `driftway query`, which reads with FINAL).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from confluent_kafka import Producer

from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.logic.limits import decode_checked
from driftway.schemas.events import DeadLetter, Label, Prediction, RawEvent
from driftway.settings import LimitsSettings, Settings
from tests.hostile import collect, label_records, raw_records, standard_accepts, validator
from tests.integration.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration

LIMITS = LimitsSettings()


def refused(model: type[RawEvent] | type[Label], value: bytes | None) -> bool:
    """True when the processors' decode refuses `value` (their dead letter)."""
    try:
        decode_checked(model, value, LIMITS)
    except Exception:  # noqa: BLE001 - any refusal is one
        return True
    return False


def test_hostile_records_cost_one_dead_letter_each_and_valid_ones_are_served(
    stack_settings: Settings,
) -> None:
    settings = stack_settings
    rng = random.Random(12)
    oversized = b"x" * LIMITS.max_record_bytes  # within the broker's 1 MB bound, over ours
    raw_hostile: list[bytes | None] = [
        *collect(raw_records, 4_000, keep=lambda v: refused(RawEvent, v)), None,
        b'{"event_id": "big", "entity_id": "u", "ts": 1, "data": {"x": "' + oversized + b'"}}']
    label_hostile: list[bytes | None] = [
        *collect(label_records, 3_000, keep=lambda v: refused(Label, v)), None,
        b'{"event_id": "big", "label": "' + oversized + b'"}']
    raw_schema, label_schema = validator("raw.schema.json"), validator("labels.schema.json")
    assert not any(standard_accepts(v, raw_schema) for v in raw_hostile if v is not None)
    assert not any(standard_accepts(v, label_schema) for v in label_hostile if v is not None)
    assert len(raw_hostile) + len(label_hostile) > 2_000

    n = 2_000
    valid = [(f"u{i % 17}".encode(), b'{"event_id": "ev-%d", "entity_id": "u%d", "ts": %d, '
              b'"data": {"amount": %f, "kind": "%s"}}'
              % (i, i % 17, 1_767_225_600_000 + i, rng.random() * 100, rng.choice([b"a", b"b"])))
             for i in range(n)]
    raw: list[tuple[bytes, bytes | None]] = list(valid)
    for value in raw_hostile:  # spread among the valid events: inside their batches
        raw.insert(rng.randrange(len(raw) + 1), (b"poison", value))
    labels: list[tuple[bytes, bytes | None]] = [
        (f"ev-{i}".encode(), b'{"event_id": "ev-%d", "label": %s}'
         % (i, b"true" if i % 3 else b"false")) for i in range(0, n, 4)]
    for value in label_hostile:
        labels.insert(rng.randrange(len(labels) + 1), (b"poison", value))

    with Stack(settings) as stack:
        stack.wait_until_serving()
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                             "partitioner": "murmur2_random", "linger.ms": 50,
                             "message.max.bytes": 2 * LIMITS.max_record_bytes})
        label_at = iter(labels)
        for i, (key, value) in enumerate(raw):
            producer.produce(settings.topic("raw"), key=key, value=value)
            label = next(label_at, None) if i % 3 == 0 else None
            if label is not None:  # labels and their poison flow meanwhile
                producer.produce(settings.topic("labels"), key=label[0], value=label[1])
            producer.poll(0)
        for key, value in label_at:
            producer.produce(settings.topic("labels"), key=key, value=value)
        assert producer.flush(60) == 0

        expected = Counter({("scoring", settings.topic("raw")): len(raw_hostile),
                            ("feedback", settings.topic("labels")): len(label_hostile)})

        def letters() -> Counter[tuple[str, str]]:
            rows = query(settings, "SELECT processor, source_topic, count() FROM dead_letters "
                                   "GROUP BY ALL").rows
            return Counter({(p, t): int(c) for p, t, c in rows})

        def predictions() -> int:
            return int(query(settings, "SELECT count() FROM predictions").rows[0][0])

        wait_for(predictions, lambda c: c >= n, 90, "a prediction row per valid event")
        wait_for(letters, lambda c: c == expected, 60, f"dead letters {dict(expected)}")
        stack.check()  # no process exited on what it read
        assert not stack.restarts

        served = Counter(Prediction.from_bytes(v).event_id
                         for _, _, v in read_topic(settings, "predictions", n))
        assert served == Counter({f"ev-{i}": 1 for i in range(n)})
        on_topic = [DeadLetter.model_validate_json(v)
                    for _, _, v in read_topic(settings, "dead-letters",
                                              len(raw_hostile) + len(label_hostile))]
        assert Counter((d.processor, d.source_topic) for d in on_topic) == expected
        coordinates = Counter((d.source_topic, d.source_partition, d.source_offset)
                              for d in on_topic)
        assert max(coordinates.values()) == 1  # each hostile record once
        assert all(d.error.strip() for d in on_topic)
        errors = [d.error for d in on_topic]
        assert any("over limits.max_record_bytes 1000000 (DRIFTWAY_LIMITS__MAX_RECORD_BYTES)"
                   in e for e in errors)
        assert sum("DRIFTWAY_LIMITS__" in e for e in errors) > 10
        assert any("is not an RFC 3339 date-time" in e for e in errors)
        assert any("null value" in e for e in errors)
        assert letters() == expected
        assert predictions() == n

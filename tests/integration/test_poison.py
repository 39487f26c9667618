"""Poison records inside large batches: each costs one dead letter, its neighbours are served.

Every processor gets poison on the topics it reads — timestamps outside the calendar both ways,
numbers no float holds, nesting deeper than the JSON parser goes, bytes that are not UTF-8 — mixed
into thousands of valid records sent at once, so they share batches with them. Counts are taken on
the topics and with ``final=0``: nothing a deduplicating read could hide.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from confluent_kafka import Producer

from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.schemas.events import DeadLetter, Prediction
from driftway.settings import Settings
from tests.integration.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration

DEEP = b"[" * 20_000 + b"]" * 20_000
HUGE_INT = b"1" + b"0" * 400  # an integer no float holds

#: Poison for the raw topic (scoring's to dead-letter).
RAW_POISON = [
    b'{"event_id": "p1", "entity_id": "u", "ts": 100000000000000000000, "data": {}}',
    b'{"event_id": "p2", "entity_id": "u", "ts": -100000000000000000000, "data": {}}',
    b'{"event_id": "p3", "entity_id": "u", "ts": 1e300, "data": {}}',
    b'{"event_id": "p4", "entity_id": "u", "ts": 1, "data": {"x": ' + HUGE_INT + b"}}",
    b'{"event_id": "p5", "entity_id": "u", "ts": 1, "data": {"x": 1e999}}',
    b'{"event_id": "p6", "entity_id": "u", "ts": 1, "data": {"x": ' + DEEP + b"}}",
    b'{"event_id": "p7", "entity_id": "\xff\xfe", "ts": 1, "data": {}}',
]
#: Poison for the internal topics, as a broken or hostile client could write it.
INTERNAL_POISON = [
    DEEP,
    b'{"event_id": "q1", "entity_id": "u", "ts": 100000000000000000000, "features": {}}',
    b'{"event_id": "q2", "features": {"x": ' + HUGE_INT + b"}}",
    b"\xff\xfe\x00",
]
LABEL_POISON = [
    b'{"event_id": "ev-1", "label": true, "ts": 100000000000000000000}',
    b'{"event_id": "ev-2", "label": true, "ts": -1e300}',
    DEEP,
    b'{"event_id": "\xff", "label": true}',
]
#: Whose dead letter each topic's poison is (topology checked_by, else its one reader): one
#: bad record, one dead letter, whoever else reads it.
READERS = {
    "raw": ("scoring",),
    "served": ("feedback",),
    "labels": ("feedback",),
    "training": ("learner",),
}


def test_poison_records_cost_one_dead_letter_each_and_their_batches_are_served(
    stack_settings: Settings,
) -> None:
    settings = stack_settings
    rng = random.Random(7)
    n = 4_000
    valid = [(f"u{i % 23}", b'{"event_id": "ev-%d", "entity_id": "u%d", "ts": %d, '
              b'"data": {"amount": %f, "kind": "%s"}}'
              % (i, i % 23, 1_767_225_600_000 + i, rng.random() * 100, rng.choice([b"a", b"b"])))
             for i in range(n)]
    raw = list(valid)
    for poison in RAW_POISON:  # spread among the valid events: inside their batches
        for _ in range(3):
            raw.insert(rng.randrange(len(raw)), ("u", poison))
    with Stack(settings) as stack:
        stack.wait_until_serving()
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                             "partitioner": "murmur2_random", "linger.ms": 50})
        internal = {"served": INTERNAL_POISON,
                    "training": INTERNAL_POISON, "labels": LABEL_POISON}
        for i, (key, value) in enumerate(raw):
            producer.produce(settings.topic("raw"), key=key, value=value)
            if i % 1_000 == 500:  # the internal topics' poison lands amid the traffic
                for topic_key, records in internal.items():
                    for record in records:
                        producer.produce(settings.topic(topic_key), key=b"poison", value=record)
        for i in range(0, n, 4):  # labels flow too: feedback joins, the learner learns
            producer.produce(settings.topic("labels"), key=f"ev-{i}",
                             value=b'{"event_id": "ev-%d", "label": %s}'
                             % (i, b"true" if i % 3 else b"false"))
        assert producer.flush(30) == 0

        per_topic = {"raw": 3 * len(RAW_POISON), "served": 4 * len(INTERNAL_POISON),
                     "training": 4 * len(INTERNAL_POISON), "labels": 4 * len(LABEL_POISON)}
        expected = Counter({(processor, settings.topic(key)): count
                            for key, count in per_topic.items() for processor in READERS[key]})

        def letters() -> Counter[tuple[str, str]]:
            rows = query(settings, "SELECT processor, source_topic, count() FROM dead_letters "
                                   "GROUP BY ALL SETTINGS final = 0").rows
            return Counter({(p, t): int(c) for p, t, c in rows})

        def predictions() -> int:
            return int(query(settings, "SELECT count() FROM predictions "
                                       "SETTINGS final = 0").rows[0][0])

        wait_for(predictions, lambda c: c >= n, 180, "a prediction row per valid event")
        wait_for(letters, lambda c: c == expected, 120, f"dead letters {dict(expected)}")
        stack.check()  # no processor died on its poison

        served = Counter(Prediction.from_bytes(v).event_id
                         for _, _, v in read_topic(settings, "predictions", n))
        assert served == Counter({f"ev-{i}": 1 for i in range(n)})
        on_topic = [DeadLetter.model_validate_json(v)
                    for _, _, v in read_topic(settings, "dead-letters")]
        coordinates = Counter((d.processor, d.source_topic, d.source_partition, d.source_offset)
                              for d in on_topic)
        assert max(coordinates.values()) == 1  # each poison record once per processor
        assert all(d.error for d in on_topic)
        raw_letters = [d for d in on_topic if d.processor == "scoring"]
        assert any("outside the years" in d.error for d in raw_letters)
        assert any("no float can hold" in d.error for d in raw_letters)
        assert any("recursion limit" in d.error for d in raw_letters)
        assert letters() == expected
        assert predictions() == n

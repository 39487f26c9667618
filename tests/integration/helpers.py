"""Small helpers for tests on the real broker."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from driftway.io.kafka import take
from driftway.settings import Settings

T = TypeVar("T")


def linear_event(i: int) -> dict[str, Any]:
    """Raw event `i` of a small labelled stream: two numbers and a category, 31 entities."""
    rng = random.Random(i)
    return {"event_id": f"x-{i}", "entity_id": f"u{i % 31}", "ts": 1_767_225_600_000 + i,
            "data": {"amount": round(rng.uniform(0, 100), 3), "age": rng.randint(18, 80),
                     "kind": "abc"[i % 3]}}


def linear_truth(i: int) -> bool:
    """Event `i`'s label: a linear rule on its numbers."""
    data = linear_event(i)["data"]
    return data["amount"] + (data["age"] - 50) * 0.5 > 50


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], timeout: float,
             what: str) -> T:
    """Poll `probe` until `done(value)`; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last value: {value!r}")
        time.sleep(0.3)


def read_topic(settings: Settings, key: str, at_least: int = 0,
               timeout: float = 120.0) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record of a topic: see read_messages."""
    return [(m.partition(), m.offset(), m.value())
            for m in read_messages(settings, key, at_least, timeout)]


def read_messages(settings: Settings, key: str, at_least: int = 0,
                  timeout: float = 120.0) -> list[Message]:
    """Every record of a topic as a read_committed subscriber sees it, from the beginning
    until at least `at_least` came and every partition's end is reached, then a second more
    for any that come later. Counted as they are on the topic: no deduplication can hide a
    record written twice."""
    topic = settings.topic(key)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout

        def at_end() -> bool:
            for p in parts:
                try:
                    high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                          cached=False)[1]
                except KafkaException:  # a topic just created may have no leader yet
                    return False  # asked again; the deadline bounds the wait
                position = consumer.position([TopicPartition(topic, p)])[0].offset
                if high > 0 and position < high:
                    return False
            return True

        while len(out) < at_least or not at_end():
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(out)} records of {topic} in {timeout:.0f}s; "
                                     f"wanted at least {at_least} and the end")
            out += [m for m in take(consumer, 1000, 0.5) if m.error() is None]
        out += [m for m in consumer.consume(1000, timeout=1.0)  # and whatever comes after
                if m.error() is None]
        return out
    finally:
        consumer.close()

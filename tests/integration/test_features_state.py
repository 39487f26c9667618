"""Scoring's per-entity feature state survives a restart (changelog-backed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from driftway.app.supervisor import settings_env
from driftway.io.kafka import committed_offsets, ensure_topics, group_stable
from driftway.schemas.events import Prediction
from driftway.sdk import EventProducer
from driftway.settings import Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def start(settings: Settings, name: str) -> subprocess.Popen[bytes]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # for the log
    return subprocess.Popen([sys.executable, "-m", "driftway", "run", name],
                            env=settings_env(settings),
                            stdout=(settings.state_dir / f"{name}.log").open("ab"),
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_entity_aggregates_continue_after_a_restart(stack_settings: Settings) -> None:
    settings = stack_settings
    ensure_topics(settings)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": "state-check", "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.topic("predictions")])
    seen: dict[str, Prediction] = {}

    def read() -> int:
        for msg in consumer.consume(100, timeout=0.5):
            if msg.error() is None:
                prediction = Prediction.from_bytes(msg.value())
                seen[prediction.event_id] = prediction
        return len(seen)

    def send(ids: range) -> None:
        with EventProducer(settings) as producer:
            for i in ids:
                producer.send_event({"event_id": f"s{i}", "entity_id": "same-customer",
                                     "ts": 1_000 * (i + 1), "data": {"x": i}})

    # Events are sent once the worker has joined its group. (Sent while a restarted worker was
    # still starting, one event was seen to wait in faust for over 90 s in a few runs out of ten:
    # an open finding, see the closing note of the foundation issue.)
    group = f"{settings.app_id}-scoring"
    learner = start(settings, "learner")  # version zero, for scoring to serve
    worker = start(settings, "scoring")
    try:
        wait_for(lambda: group_stable(settings, group), bool, 90, "the worker to join")
        send(range(3))
        wait_for(read, lambda n: n == 3, 90, "three predictions")
    finally:
        stop(worker)
    worker = start(settings, "scoring")
    try:
        wait_for(lambda: group_stable(settings, group), bool, 90, "the restarted worker to join")
        send(range(3, 5))
        wait_for(read, lambda n: n == 5, 90,
                 f"two more predictions after the restart (have {sorted(seen)})")
    finally:
        stop(worker)
        stop(learner)
        consumer.close()
    counts = [seen[f"s{i}"].features["entity.events"] for i in range(5)]
    assert counts == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert seen["s4"].features["entity.seconds_since_last"] == 1.0


def test_an_upgraded_stack_scores_from_where_the_former_features_processor_got_to(
    stack_settings: Settings,
) -> None:
    settings = stack_settings
    ensure_topics(settings)
    raw = settings.topic("raw")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i in range(10):
        producer.produce(raw, key=b"u", partition=0, value=json.dumps(
            {"event_id": f"old{i}", "entity_id": "u", "ts": 1_000 * (i + 1),
             "data": {"x": i}}).encode())
    assert producer.flush(30) == 0
    # Before features was part of scoring, its group had read the first six.
    former = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                       "group.id": f"{settings.app_id}-features"})
    former.commit(offsets=[TopicPartition(raw, 0, 6)], asynchronous=False)
    former.close()

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": "upgrade-check", "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.topic("predictions")])
    seen: set[str] = set()
    learner, worker = start(settings, "learner"), start(settings, "scoring")
    try:
        def read() -> set[str]:
            for msg in consumer.consume(100, timeout=0.5):
                if msg.error() is None:
                    seen.add(Prediction.from_bytes(msg.value()).event_id)
            return seen

        wait_for(read, lambda ids: len(ids) >= 4, 90, "the four events not read before")
        time.sleep(2)  # anything more would come now
        assert read() == {f"old{i}" for i in range(6, 10)}
        assert committed_offsets(settings, f"{settings.app_id}-scoring", raw, [0]) == {0: 10}
    finally:
        stop(worker)
        stop(learner)
        consumer.close()

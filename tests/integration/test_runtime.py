"""The processor runtime on the real broker: output the broker refuses stops the batch
uncommitted, and the input is served again, exactly once, once the fault is gone."""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from driftway.io.kafka import ensure_topics, make_producer, produce
from driftway.io.runtime import Runtime
from driftway.schemas.events import Output, Served, decode_training
from driftway.sdk import EventProducer
from driftway.settings import Settings
from driftway.streams.feedback import Feedback
from tests.integration.helpers import read_messages, wait_for

pytestmark = pytest.mark.integration


def set_max_message_bytes(settings: Settings, topic: str, value: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    entry = ConfigEntry("max.message.bytes", str(value),
                        incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def committed(settings: Settings, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed(
            [TopicPartition(topic, p) for p in range(settings.kafka.partitions)], timeout=30)]
    finally:
        consumer.close()


def run_in_thread(runtime: Runtime) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def target() -> None:
        try:
            runtime.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, failures


def send_served_and_labels(settings: Settings, n: int) -> None:
    """What scoring would have served for n events, and their labels: n examples to join."""
    producer = make_producer(settings)
    for i in range(n):
        served = Served(event_id=f"r{i}", entity_id=f"u{i % 7}", ts=datetime.now(UTC),
                        model="m", champion="v", features={"x": float(i)}, predicted_at=1.0,
                        outputs={"v": Output(prediction=True, score=0.7,
                                             proba={"true": 0.7, "false": 0.3})})
        produce(producer, settings.topic("served"), served.event_id, served.to_bytes(), None)
    assert producer.flush(30) == 0
    with EventProducer(settings) as labels:
        for i in range(n):
            labels.send_label({"event_id": f"r{i}", "label": i % 2 == 0})


def test_refused_output_stops_the_batch_uncommitted(stack_settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = stack_settings
    ensure_topics(settings)
    training = settings.topic("training")
    # Every joined example is larger than this: the broker refuses each, and so the commit.
    set_max_message_bytes(settings, training, 100)
    send_served_and_labels(settings, 50)

    runtime = Runtime(settings, Feedback(settings), instance="refused")
    thread, failures = run_in_thread(runtime)
    thread.join(120)
    assert not thread.is_alive(), "the runtime went on after its output was refused"
    assert failures, "the runtime ended without an error"
    assert "too large" in str(failures[0]).lower(), failures[0]  # the broker's reason, said
    group = f"{settings.app_id}-feedback"
    for key in ("served", "labels"):
        assert all(offset < 0 for offset in committed(settings, group, settings.topic(key))), \
            f"{key} offsets were committed although the output was refused"
    assert read_messages(settings, "training") == []
    assert read_messages(settings, "dead-letters") == [], \
        "the broker's refusal is not the records' fault: no dead letters"

    # The fault goes; the same input is served again, each record exactly once.
    set_max_message_bytes(settings, training, 1_048_576)
    settings = settings.model_copy(update={"processing": settings.processing.model_copy(
        update={"metrics_log_seconds": 0.5})})
    caplog.set_level(logging.INFO, logger="driftway.io.runtime")
    runtime = Runtime(settings, Feedback(settings), instance="refused")
    thread, failures = run_in_thread(runtime)
    try:
        examples = wait_for(lambda: read_messages(settings, "training"),
                            lambda found: len(found) >= 50, 90, "50 joined examples")
    finally:
        runtime.stop()
        thread.join(60)
    assert not failures
    found = read_messages(settings, "training")
    assert len(found) == 50 == len(examples)
    assert sorted(decode_training(m.value()).event_id for m in found) == \
        sorted(f"r{i}" for i in range(50))
    # Its metrics lines: the 100 records (50 served, 50 labels) over the reports, and no lag
    # once caught up.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("feedback: ")]
    counted = [int(re.match(r"feedback: (\d+) records", line).group(1)) for line in lines]
    assert sum(counted) == 100 and ", lag 0, " in lines[-1], lines

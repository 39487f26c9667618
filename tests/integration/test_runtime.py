"""The processor runtime on the real broker: output the broker refuses stops the batch
uncommitted, and the input is served again, exactly once, once the fault is gone."""

from __future__ import annotations

import logging
import re
import threading

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from driftway.io.kafka import ensure_topics
from driftway.io.runtime import Runtime
from driftway.sdk import EventProducer
from driftway.settings import Settings
from driftway.streams.features import Features
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


def test_refused_output_stops_the_batch_uncommitted(stack_settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = stack_settings
    ensure_topics(settings)
    features_topic, raw_topic = settings.topic("features"), settings.topic("raw")
    # Every feature vector is larger than this: the broker refuses each, and so the commit.
    set_max_message_bytes(settings, features_topic, 100)
    with EventProducer(settings) as producer:
        for i in range(50):
            producer.send_event({"event_id": f"r{i}", "entity_id": f"u{i % 7}",
                                 "ts": 1_000 + i, "data": {"x": i}})

    runtime = Runtime(settings, Features(), instance="refused")
    thread, failures = run_in_thread(runtime)
    thread.join(120)
    assert not thread.is_alive(), "the runtime went on after its output was refused"
    assert failures, "the runtime ended without an error"
    assert "too large" in str(failures[0]).lower(), failures[0]  # the broker's reason, said
    group = f"{settings.app_id}-features"
    assert all(offset < 0 for offset in committed(settings, group, raw_topic)), \
        "input offsets were committed although the output was refused"
    assert read_messages(settings, "features") == []
    assert read_messages(settings, "dead-letters") == [], \
        "the broker's refusal is not the records' fault: no dead letters"

    # The fault goes; the same input is served again, each record exactly once.
    set_max_message_bytes(settings, features_topic, 1_048_576)
    settings = settings.model_copy(update={"processing": settings.processing.model_copy(
        update={"metrics_log_seconds": 0.5})})
    caplog.set_level(logging.INFO, logger="driftway.io.runtime")
    runtime = Runtime(settings, Features(), instance="refused")
    thread, failures = run_in_thread(runtime)
    try:
        ids = wait_for(lambda: [m.key() for m in read_messages(settings, "features")],
                       lambda keys: len(keys) >= 50, 90, "50 feature vectors")
    finally:
        runtime.stop()
        thread.join(60)
    assert not failures
    vectors = read_messages(settings, "features")
    assert len(vectors) == 50 == len(ids)
    # Its metrics lines: the 50 records over the reports, and no lag once caught up.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("features: ")]
    counted = [int(re.match(r"features: (\d+) records", line).group(1)) for line in lines]
    assert sum(counted) == 50 and ", lag 0, " in lines[-1], lines

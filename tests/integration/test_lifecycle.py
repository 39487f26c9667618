"""Starting and stopping: the broker launcher, `driftway up`, and the sink's exactly-once rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from driftway.app.supervisor import settings_env
from driftway.consumers.sink import ClickHouseSink
from driftway.io.broker import LocalBroker, free_port
from driftway.io.clickhouse import connect, ensure_schema
from driftway.io.kafka import ensure_topics
from driftway.io.runtime import Runtime
from driftway.schemas.events import Prediction
from driftway.sdk import DeliveryError, EventProducer, InvalidRecord
from driftway.settings import KafkaSettings, Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def own_broker_settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, kafka=KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", controller_port=free_port()))


def test_second_start_reuses_the_formatted_directory(tmp_path: Path) -> None:
    settings = own_broker_settings(tmp_path)
    with LocalBroker(settings) as broker:
        ensure_topics(settings)
        meta = (broker.home / "data" / "meta.properties").read_text()
    with LocalBroker(settings) as broker:
        assert (broker.home / "data" / "meta.properties").read_text() == meta
        topics = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers}) \
            .list_topics(timeout=10).topics
        assert settings.topic("training") in topics
        assert len(topics[settings.topic("raw")].partitions) == settings.kafka.partitions
    assert broker.process is None


def test_up_runs_everything_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    settings = own_broker_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    env |= {"DRIFTWAY_STATE_DIR": str(tmp_path),
            "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "DRIFTWAY_KAFKA__CONTROLLER_PORT": str(settings.kafka.controller_port)}
    up = subprocess.Popen([sys.executable, "-m", "driftway", "up"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(up.stdout.readline, "")),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        wait_for(lambda: "".join(lines),
                 lambda out: "Driftway is up" in out or up.poll() is not None,
                 180, "`driftway up` to start")
        assert up.poll() is None, "".join(lines)
        family = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "kafka.Kafka" in names and "run scoring" in names and "run feedback" in names \
            and "run sink" in names
        up.send_signal(signal.SIGTERM)
        assert up.wait(90) == 0, "".join(lines)
    finally:
        if up.poll() is None:
            up.kill()
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not (tmp_path / "query.json").exists()


def test_a_start_up_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    settings = own_broker_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    env |= {"DRIFTWAY_STATE_DIR": str(tmp_path),
            "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "DRIFTWAY_KAFKA__CONTROLLER_PORT": str(settings.kafka.controller_port),
            "DRIFTWAY_PROCESSING__MODEL": "os:system"}  # not a model: learner, feedback exit
    up = subprocess.Popen([sys.executable, "-m", "driftway", "up"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    family: dict[int, psutil.Process] = {}
    started: set[str] = set()
    try:
        while up.poll() is None:  # note everything it started while it runs
            try:
                for child in psutil.Process(up.pid).children(recursive=True):
                    if child.pid not in family:
                        family[child.pid] = child
                        started.add(" ".join(child.cmdline()))
            except psutil.Error:
                pass
            time.sleep(0.2)
        _out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 1, err
    assert "process exited" in err and "DRIFTWAY_PROCESSING__MODEL" in err, err
    # Each stopped at SIGTERM, scoring too while it waited for a first version to serve: none
    # had to be killed.
    assert "did not stop" not in err, err
    # It had started the broker and the processors before the learner failed...
    assert any("kafka.Kafka" in c for c in started) and any("scoring" in c for c in started)
    time.sleep(0.5)  # ...and stopped every one of them
    alive = [p for p in family.values()
             if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    # The ports are free again: the next `up` can start.
    with LocalBroker(settings):
        pass


def test_up_fails_clearly_when_the_broker_port_is_taken(tmp_path: Path,
                                                          kafka_broker: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWAY_")}
    env |= {"DRIFTWAY_STATE_DIR": str(tmp_path), "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS": kafka_broker}
    done = subprocess.run([sys.executable, "-m", "driftway", "up"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "already in use" in done.stderr and "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS" in done.stderr


def prediction(i: int) -> bytes:
    now = time.time()
    return Prediction(event_id=f"p-{i}", entity_id="u", ts=datetime.now(UTC), model="m",
                      version="v" * 64, prediction=True, score=0.7, latency_ms=1.0,
                      received_at=now, predicted_at=now).to_bytes()


def run_sink(sink: ClickHouseSink) -> tuple[Runtime, threading.Thread]:
    runtime = Runtime(sink.settings, sink, instance=sink.settings.app_id)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    return runtime, thread


def test_sink_writes_each_record_once_even_when_redelivered(
    stack_settings: Settings, embedded_settings: Settings
) -> None:
    # The sink runs in this process, so it uses the engine this process owns.
    settings = stack_settings.model_copy(update={"state_dir": embedded_settings.state_dir})
    ensure_topics(settings)
    topic = settings.topic("predictions")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i in range(50):
        producer.produce(topic, key=b"u", value=prediction(i))
    producer.produce(topic, key=b"u", value=b"garbage")
    producer.flush(10)
    client = connect(settings)
    ensure_schema(client, "driftway")

    def stored() -> tuple[int, int]:
        with first.lock:  # the sink's thread uses the same connection
            rows = client.query(
                "SELECT (SELECT count() FROM driftway.predictions WHERE _topic = {t:String}), "
                "(SELECT count() FROM driftway.dead_letters WHERE source_topic = {t:String})",
                parameters={"t": topic}).result_rows
        return int(rows[0][0]), int(rows[0][1])

    first = ClickHouseSink(settings, client)
    second = ClickHouseSink(settings.model_copy(update={"app_id": settings.app_id + "-again"}),
                            client)
    second.lock = first.lock
    runtime, thread = run_sink(first)
    wait_for(stored, lambda c: c == (50, 1), 60, "the first sink to store the batch")
    runtime.stop()
    thread.join(30)

    # A sink in a new consumer group has no committed offsets: Kafka redelivers everything.
    runtime, thread = run_sink(second)
    time.sleep(4)
    runtime.stop()
    thread.join(30)
    assert stored() == (50, 1)  # not even before merges or FINAL: nothing inserted twice
    letter = client.query("SELECT processor, error, payload FROM driftway.dead_letters "
                          "WHERE source_topic = {t:String}", parameters={"t": topic}).result_rows
    assert letter[0][0] == "sink" and "Prediction" in letter[0][1] and letter[0][2] == "garbage"
    client.close()


def test_producer_sdk_refuses_bad_payloads_and_surfaces_delivery_errors(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = stack_settings
    ensure_topics(settings)
    producer = EventProducer(settings)
    with pytest.raises(InvalidRecord, match="entity_id"):
        producer.send_event({"event_id": "e", "ts": 1, "data": {}})
    with pytest.raises(InvalidRecord, match="data"):
        producer.send_event({"event_id": "e", "entity_id": "u", "ts": 1, "data": {"a": [1]}})
    producer.flush()
    assert producer.sent == 0
    low, high = _watermarks(settings, settings.topic("raw"))
    assert high - low == 0, "an invalid payload reached Kafka"

    # The CLI: valid lines are sent, invalid ones reported by line number and not sent.
    lines = [json.dumps({"event_id": f"c{i}", "entity_id": "u", "ts": 1, "data": {"a": i}})
             for i in range(2)]
    source = tmp_path / "events.jsonl"
    source.write_text(f"{lines[0]}\n{{\"event_id\": \"no-entity\"}}\n{lines[1]}\n")
    done = subprocess.run([sys.executable, "-m", "driftway", "produce", str(source)],
                          env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "line 2: invalid RawEvent: entity_id" in done.stderr
    assert "sent 2 events" in done.stderr
    low, high = _watermarks(settings, settings.topic("raw"))
    assert high - low == 2

    # A topic that does not exist (and is not auto-created): delivery fails, and says so.
    missing = settings.model_copy(update={"topic_prefix": "missing-" + settings.topic_prefix})
    doomed = EventProducer(missing, **{"message.timeout.ms": 3000})
    doomed.send_event({"event_id": "e", "entity_id": "u", "ts": 1, "data": {}})
    with pytest.raises(DeliveryError, match="missing-") as caught:
        doomed.flush(15)
    assert len(caught.value.errors) == 1
    doomed.flush(15)  # reported once


def _watermarks(settings: Settings, topic: str) -> tuple[int, int]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": "watermarks"})

    def read() -> list[tuple[int, int]] | None:
        try:
            return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in range(settings.kafka.partitions)]
        except KafkaException:  # leaders of a new topic not elected yet
            return None

    try:
        total = wait_for(read, lambda t: t is not None, 30, f"watermarks of {topic}")
    finally:
        consumer.close()
    assert total is not None
    return sum(lo for lo, _ in total), sum(hi for _, hi in total)

"""`driftway models` on the real broker, and the sink's tables of what it wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from driftway.app.supervisor import settings_env
from driftway.consumers.sink import ClickHouseSink
from driftway.io.broker import free_port
from driftway.io.clickhouse import connect, ensure_schema
from driftway.io.kafka import ensure_topics, make_producer, produce
from driftway.io.keys import with_signing_key
from driftway.io.query_endpoint import query_endpoint_file
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Runtime
from driftway.logic.artifacts import build_version
from driftway.logic.models import make_model
from driftway.logic.registry import publish_version
from driftway.schemas.events import (
    Deployment,
    ModelVersion,
    Output,
    PublishRequest,
    TrainingExample,
    TrainingOffsets,
    decode_training,
)
from driftway.settings import KafkaSettings, Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

MODEL = "default"


def run_cli(settings: Settings, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "driftway", *args],
                          env=settings_env(settings), capture_output=True, text=True, timeout=90)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def cli_json(settings: Settings, *args: str) -> Any:
    return json.loads(run_cli(settings, *args, "--format", "json").stdout)


def refused(settings: Settings, *args: str) -> str:
    """The one-line error of a command that must fail."""
    done = run_cli(settings, *args, ok=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("Error: "), done.stderr
    return done.stderr


def send(settings: Settings, records: list[tuple[str, str | None, bytes]]) -> None:
    producer = make_producer(settings)
    errors: list[KafkaError] = []
    for topic, key, value in records:
        produce(producer, topic, key, value, lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0 and errors == []


def publish_versions(settings: Settings, n: int = 3) -> list[ModelVersion]:
    """`n` signed versions of one line, each trained on 5 more examples than its parent."""
    model = make_model("logistic_regression")
    versions: list[ModelVersion] = []
    records: list[tuple[str, str | None, bytes]] = []
    for i in range(n):
        for j in range(5):
            model.learn_one({"x": float(j), "y": float(i)}, j % 2 == 0)
        meta, artifact = build_version(
            MODEL, model, with_signing_key(settings).signing_key_bytes,
            versions[-1].version if versions else None,
            reason=f"step {i}", examples_seen=5 * (i + 1),
            training_offsets=TrainingOffsets(topic=settings.topic("training"), start=5 * i,
                                             end=5 * (i + 1)))
        publish_version(lambda *record: records.append(record), settings, meta, artifact)
        versions.append(meta)
    send(settings, records)
    return versions


def committed(settings: Settings, topic: str) -> int:
    """The sink group's committed offset of a one-partition topic."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"{settings.app_id}-sink"})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    except KafkaException as exc:  # a fresh broker's coordinator still loading: ask again
        if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_COORDINATOR:
            raise
        return -1
    finally:
        consumer.close()


def utc(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def millis(ts: datetime) -> datetime:
    """What a DateTime64(3) column keeps of a timestamp."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def test_models_commands_write_deployments_and_the_sink_records_them(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = stack_settings
    ensure_topics(settings)
    v0, v1, v2 = publish_versions(settings)
    ids = [v0.version, v1.version, v2.version]

    listed = cli_json(settings, "models", "list")
    assert [(r["version"], r["parent"], r["role"]) for r in listed] == [
        (v0.version, None, ""), (v1.version, v0.version, ""), (v2.version, v1.version, "")]

    deployed = cli_json(settings, "models", "deploy", v0.version[:10], "--reason", "first")
    assert (deployed["champion"], deployed["action"], deployed["reason"], deployed["by"]) == (
        v0.version, "deploy", "first", "cli")
    assert cli_json(settings, "models", "shadow", v1.version[:10])["shadows"] == [v1.version]
    assert "not a shadow" in refused(settings, "models", "promote", v2.version[:10])
    promoted = cli_json(settings, "models", "promote", v1.version, "--reason", "better")
    assert (promoted["champion"], promoted["previous"], promoted["shadows"]) == (
        v1.version, v0.version, [])
    rolled = cli_json(settings, "models", "rollback", MODEL, "--reason", "worse after all")
    assert (rolled["champion"], rolled["version"], rolled["previous"]) == (
        v0.version, v0.version, v1.version)
    assert "no model version starts with 'zzz'" in refused(settings, "models", "show", "zzz")
    assert "matches 3 versions" in refused(settings, "models", "deploy", "")
    assert "never been deployed" in refused(settings, "models", "rollback", "other")

    assert [r["role"] for r in cli_json(settings, "models", "list", "--model", MODEL)] == [
        "champion", "", ""]
    table = run_cli(settings, "models", "list").stdout
    assert v0.version[:12] in table and "champion" in table
    shown = cli_json(settings, "models", "show", v2.version[:8])
    assert (shown["version"], shown["parent"], shown["signature"]) == (
        v2.version, v1.version, v2.signature)
    assert [(v["version"], v["training_offsets"]["start"], v["training_offsets"]["end"],
             v["examples_seen"]) for v in shown["lineage"]] == [
        (v2.version, 10, 15, 15), (v1.version, 5, 10, 10), (v0.version, 0, 5, 5)]
    table = run_cli(settings, "models", "show", v2.version[:8]).stdout
    assert "lineage" in table and "[10, 15)" in table and v0.version[:12] in table

    published = cli_json(settings, "models", "publish", MODEL, "--reason", "by hand")
    assert published["topic"] == settings.topic("training")
    assert published["request"]["type"] == "publish"

    registry = ModelRegistry(settings, name="test")
    try:
        registry.catch_up()
        history = registry.history[MODEL]
    finally:
        registry.close()
    assert [(d.action, d.version, d.champion, d.reason) for d in history] == [
        ("deploy", ids[0], ids[0], "first"), ("shadow", ids[1], ids[0], ""),
        ("promote", ids[1], ids[1], "better"), ("rollback", ids[0], ids[0], "worse after all")]
    assert read_training_record(settings, published["offset"]) == msgspec.convert(
        published["request"], PublishRequest)

    log = (tmp_path / "sink.log").open("wb")
    sink = subprocess.Popen([sys.executable, "-m", "driftway", "run", "sink"],
                            env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: query_endpoint_file(settings).exists() or sink.poll() is not None,
                 bool, 60, "the sink's query endpoint")
        assert sink.poll() is None, (tmp_path / "sink.log").read_text()
        # A write refused on the query endpoint must not leave the sink's own inserts refused.
        assert "readonly" in refused(settings, "query", "DROP TABLE deployments")
        history.append(Deployment.model_validate(
            cli_json(settings, "models", "shadow", v2.version, "--reason", "later")))

        def rows(sql: str) -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = cli_json(settings, "query", sql)
            return result

        versions = wait_for(
            lambda: rows("SELECT model, version, parent, created_at, reason, training_start, "
                         "training_end, signature FROM model_versions ORDER BY training_start"),
            lambda r: len(r) == 3, 30, "three model_versions rows")
        assert [(r["model"], r["version"], r["parent"], utc(r["created_at"]), r["reason"],
                 r["training_start"], r["training_end"], r["signature"]) for r in versions] == [
            (MODEL, v.version, v.parent, millis(v.created_at), v.reason,
             v.training_offsets.start, v.training_offsets.end, v.signature)  # type: ignore[union-attr]
            for v in (v0, v1, v2)]
        stored = wait_for(
            lambda: rows("SELECT ts, model, version, action, reason, champion, previous, by "
                         "FROM deployments ORDER BY ts, _offset"),
            lambda r: len(r) == 5, 30, "five deployments rows")
        assert [(utc(r["ts"]), r["model"], r["version"], r["action"], r["reason"],
                 r["champion"], r["previous"], r["by"]) for r in stored] == [
            (millis(d.ts), d.model, d.version, d.action, d.reason, d.champion, d.previous, d.by)
            for d in history]
        # The publish request is committed past, and is neither a row nor a dead letter.
        wait_for(lambda: committed(settings, settings.topic("training")),
                 lambda offset: offset == published["offset"] + 1, 30,
                 "the sink to commit the publish request")
        assert rows("SELECT (SELECT count() FROM training) AS training, "
                    "(SELECT count() FROM dead_letters) AS dead") == [{"training": 0, "dead": 0}]
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(30) == 0, (tmp_path / "sink.log").read_text()
    finally:
        if sink.poll() is None:
            sink.kill()
        log.close()


def read_training_record(settings: Settings, offset: int) -> Any:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": f"{settings.app_id}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topic("training"), 0, offset)])
    try:
        msg: Message | None = wait_for(lambda: consumer.poll(1.0), lambda m: m is not None, 30,
                                       "the publish request")
        assert msg is not None and msg.error() is None
        return decode_training(msg.value() or b"")
    finally:
        consumer.close()


def test_sink_skips_publish_requests_and_commits_past_them(
    stack_settings: Settings, embedded_settings: Settings
) -> None:
    # The sink runs in this process, so it uses the engine this process owns.
    settings = stack_settings.model_copy(update={"state_dir": embedded_settings.state_dir})
    ensure_topics(settings)
    topic = settings.topic("training")
    request = PublishRequest(model="m", ts=datetime.now(UTC)).to_bytes()
    example = TrainingExample(event_id="t-1", model="m", version="v1", features={"x": 1.0},
                              label=True, served=False, score=0.4,
                              outputs={"v1": Output(prediction=False, score=0.4)}).to_bytes()
    send(settings, [(topic, None, request), (topic, None, example), (topic, None, request),
                    (topic, None, b'{"type": "retrain"}')])
    client = connect(settings)
    ensure_schema(client, "driftway")
    sink = ClickHouseSink(settings, client)
    runtime = Runtime(settings, sink)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()

    def stored() -> list[tuple[Any, ...]]:
        with sink.lock:  # the sink's thread uses the same connection
            # (ORDER BY after a UNION ALL binds to its last SELECT only: order the whole.)
            return client.query(
                "SELECT * FROM (SELECT 'training' AS kind, _offset AS offset, outputs AS detail "
                "FROM driftway.training WHERE _topic = {t:String} UNION ALL "
                "SELECT 'dead', source_offset, error FROM driftway.dead_letters "
                "WHERE source_topic = {t:String}) ORDER BY offset",
                parameters={"t": topic}).result_rows

    try:
        wait_for(lambda: committed(settings, topic), lambda offset: offset == 4, 60,
                 "the sink to commit all four records")
    finally:
        runtime.stop()
        thread.join(30)
    rows = stored()
    client.close()
    # The bad record is the learner's dead letter (topology checked_by): the sink passes it
    # over, and commits past it with the rest.
    assert [r[:2] for r in rows] == [("training", 1)]
    assert json.loads(rows[0][2]) == {"v1": {"prediction": False, "score": 0.4, "proba": None}}


def test_models_fails_in_one_line_without_a_broker(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka=KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", local_broker=False))
    error = refused(settings, "models", "list")
    assert error.count("\n") == 1 and "cannot reach Kafka" in error

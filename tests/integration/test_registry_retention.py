"""The registry's retention rule on the real broker: the sink, on the runtime, tombstones the
artifacts of versions nothing needs, keeps the rest, and every version's metadata; a reader of
the registry then refuses to load a pruned version, and so does `driftway models deploy`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from driftway.app.supervisor import settings_env
from driftway.consumers.sink import ClickHouseSink
from driftway.io.clickhouse import connect, ensure_schema
from driftway.io.kafka import ensure_topics, make_producer
from driftway.io.keys import with_signing_key
from driftway.io.query_endpoint import QueryEndpoint
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Runtime
from driftway.logic.artifacts import build_version
from driftway.logic.registry import (
    RegistryError,
    chunk_version,
    next_deployment,
    publish_version,
    write_deployment,
)
from driftway.schemas.events import ModelVersion, Prediction, TrainingOffsets
from driftway.settings import RegistrySettings, Settings
from tests.integration.helpers import read_messages, wait_for

pytestmark = pytest.mark.integration

OLD = datetime.now(UTC) - timedelta(days=3)


@pytest.fixture
def settings(stack_settings: Settings, embedded_settings: Settings) -> Settings:
    """This test's topics; the engine this process owns, in a database of its own; a round of
    the retention rule every second (the first when the test says), an hour's grace."""
    return with_signing_key(stack_settings.model_copy(update={
        "clickhouse_dsn": SecretStr(embedded_settings.clickhouse_dsn_resolved),
        "clickhouse_database": f"retention_{uuid.uuid4().hex[:8]}",
        "registry": RegistrySettings(prune_every_seconds=1.0, prune_grace_seconds=3600.0)}))


@pytest.fixture
def sink(settings: Settings) -> Iterator[ClickHouseSink]:
    """The sink, answering queries on its socket for the CLI's children, as `driftway run sink`."""
    ensure_topics(settings)
    client = connect(settings)
    ensure_schema(client, settings.clickhouse_database)
    sink = ClickHouseSink(settings, client)
    with QueryEndpoint(settings, sink.query):
        yield sink
    client.close()


def version(settings: Settings, name: str, parent: ModelVersion | None, end: int = 0,
            created_at: datetime = OLD, chunk_bytes: int = 512 * 1024
            ) -> tuple[ModelVersion, bytes]:
    """A signed version whose artifact is a dict named `name` (distinct content, distinct id)."""
    start = parent.training_offsets.end if parent and parent.training_offsets else 0
    meta, artifact = build_version(
        "m", {"name": name, "pad": list(range(200))}, settings.signing_key_bytes,
        parent.version if parent else None, reason=name, chunk_bytes=chunk_bytes,
        training_offsets=TrainingOffsets(topic=settings.topic("training"), start=start, end=end))
    return meta.model_copy(update={"created_at": created_at}), artifact


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftway", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120)


def test_the_sink_prunes_what_nothing_needs_and_keeps_the_rest(
        settings: Settings, sink: ClickHouseSink) -> None:
    # root ─ middle ─ champ ─ ahead   champ is deployed, ahead is its line's latest version;
    # used: a stored prediction's state_version; gone: a shadow until a minute ago;
    # fresh: published now; lonely: nothing.
    root = version(settings, "root", None, 10)
    middle = version(settings, "middle", root[0], 20, chunk_bytes=100)  # several chunks
    champ = version(settings, "champ", middle[0], 30)
    ahead = version(settings, "ahead", champ[0], 40)
    used, gone, lonely = (version(settings, n, None) for n in ("used", "gone", "lonely"))
    fresh = version(settings, "fresh", None, created_at=datetime.now(UTC))
    everything = [root, middle, champ, ahead, used, gone, lonely, fresh]
    assert middle[0].artifact_chunks > 2
    ids = {meta.reason: meta.version for meta, _ in everything}

    records: list[tuple[str, Any, bytes]] = []
    emit = lambda topic, key, value: records.append((topic, key, value))  # noqa: E731
    for meta, artifact in everything:
        publish_version(emit, settings, meta, artifact)
    first = next_deployment(None, "m", "init", ids["champ"])
    second = next_deployment(first, "m", "shadow", ids["gone"])
    for deployment in (first, second, next_deployment(second, "m", "unshadow", ids["gone"])):
        write_deployment(emit, settings, deployment)
    prediction = Prediction(event_id="e1", entity_id="u", ts=datetime.now(UTC), model="m",
                            version=ids["champ"], prediction=True, score=0.9, latency_ms=1.0,
                            received_at=0.0, predicted_at=0.0, state_version=ids["used"],
                            trained_from=5, trained_through=9)
    emit(settings.topic("predictions"), "u", prediction.to_bytes())
    producer = make_producer(settings)
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    runtime = Runtime(settings, sink)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sink.query("SELECT count() FROM predictions").rows, lambda r: r == [[1]],
                 60, "the prediction in ClickHouse")
        assert sink.next_prune is None or sink.next_prune > time.time() + 3000  # the grace
        sink.next_prune = 0.0  # the sink has caught up: the first round now
        pruned = {ids[n] for n in ("root", "middle", "lonely")}
        chunks = sum(m.artifact_chunks for m, _ in everything if m.version in pruned)

        def tombstones() -> list[str]:
            return [chunk_version(m.key()) for m in read_messages(settings, "model-artifacts")
                    if m.value() is None]

        assert sorted(wait_for(tombstones, lambda t: len(t) >= chunks, 60,
                               "the tombstones of three versions")) == sorted(
            m.version for m, _ in everything for _ in range(m.artifact_chunks)
            if m.version in pruned)
        time.sleep(3)  # rounds after the first: nothing new to prune, nothing written again
        assert len(tombstones()) == chunks
    finally:
        runtime.stop()
        thread.join(30)

    registry = ModelRegistry(settings, name="test")
    try:
        registry.catch_up()
        assert registry.pruned == pruned
        assert set(registry.versions) == set(ids.values())  # metadata and lineage all kept
        assert [v.reason for v in registry.lineage(ids["ahead"])] == [
            "ahead", "champ", "middle", "root"]
        with pytest.raises(RegistryError, match="pruned by the registry's retention rule"):
            registry.load(ids["middle"])
        for name in ("champ", "ahead", "used", "gone", "fresh"):
            assert registry.load(ids[name])["name"] == name
    finally:
        registry.close()

    deploy = run_cli(settings, "models", "deploy", ids["lonely"])
    assert deploy.returncode == 1 and "pruned by the registry's retention rule" in deploy.stderr
    shown = json.loads(run_cli(settings, "models", "show", ids["root"], "--format",
                               "json").stdout)
    assert shown["pruned"] is True and shown["reason"] == "root"
    dry = run_cli(settings, "models", "prune", "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"dry_run": True, "pruned": []}  # all done already

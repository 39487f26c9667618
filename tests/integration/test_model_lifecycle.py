"""Model lifecycle on the real broker: hot-swap, refused artifacts, the feedback loop, and
kill -9 of the learner, scoring and the sink."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from driftway.app.query import query
from driftway.app.supervisor import Stack, settings_env
from driftway.io.kafka import ensure_topics, make_producer
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.logic import artifacts
from driftway.logic.learning import Learner
from driftway.logic.models import make_model
from driftway.logic.registry import next_deployment, publish_version, write_deployment
from driftway.schemas.events import Output, Prediction, TrainingExample
from driftway.sdk import EventProducer
from driftway.settings import PolicySettings, ProcessingSettings, Settings
from tests.integration.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration


def with_processing(settings: Settings, **processing: Any) -> Settings:
    """These processing settings, and the state directory's signing key: the test signs and
    verifies artifacts as the processes do."""
    return with_signing_key(
        settings.model_copy(update={"processing": ProcessingSettings(**processing)}))


def event(i: int, tag: str = "ev") -> dict[str, Any]:
    return {"event_id": f"{tag}-{i}", "entity_id": f"u{i % 23}", "ts": 1_767_225_600_000 + i,
            "data": {"amount": float(i % 100), "kind": "abc"[i % 3]}}


class Emitting:
    """A producer as the registry functions want it, flushed on exit."""

    def __init__(self, settings: Settings) -> None:
        self.producer = make_producer(settings)

    def __call__(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        self.producer.produce(topic, key=key, value=value)

    def __enter__(self) -> Emitting:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.producer.flush(30) == 0


def trained_version(settings: Settings, parent: str | None) -> tuple[Any, bytes]:
    """A signed version that predicts differently from a fresh model."""
    model = make_model("logistic_regression")
    for i in range(300):
        model.learn_one({"amount": float(i % 100), "kind=a": float(i % 3 == 0)}, i % 100 > 50)
    return artifacts.build_version(settings.processing.model_name, model,
                                   settings.signing_key_bytes, parent,
                                   reason="trained offline")


def deployed(settings: Settings) -> str:
    registry = ModelRegistry(settings, name="test")
    try:
        def champion() -> str | None:
            registry.poll(0.5)
            d = registry.deployments.get(settings.processing.model_name)
            return d.champion if d else None
        return wait_for(champion, lambda c: c is not None, 60, "the learner's first version")
    finally:
        registry.close()


def test_hot_swap_refused_artifacts_and_the_feedback_loop(stack_settings: Settings) -> None:
    # Only this test's deployments may change the champion: no auto-updates (a drift signal
    # publishes a version at once) and no policy (it could promote a challenger).
    settings = with_processing(stack_settings, publish_every=1_000_000, metrics_every=100,
                               feedback_window_seconds=10.0, auto_update=False)
    settings = settings.model_copy(update={"policy": PolicySettings(enabled=False)})
    n = 3000
    with Stack(settings) as stack:
        stack.wait_until_serving()
        v0 = deployed(settings)
        v2_meta, v2_artifact = trained_version(settings, parent=v0)
        with Emitting(settings) as emit:
            publish_version(emit, settings, v2_meta, v2_artifact)

        sdk = EventProducer(settings)
        swapped_at: list[float] = []

        def stream() -> None:
            for i in range(n):
                sdk.send_event(event(i))
                if 50 <= i < 1050:  # labels, a little behind their events
                    sdk.send_label({"event_id": f"ev-{i - 50}", "label": (i - 50) % 100 > 50})
                if i == n // 3:
                    sdk.flush()
                    with Emitting(settings) as emit:
                        d = next_deployment(None, settings.processing.model_name, "deploy",
                                            v2_meta.version, reason="hot-swap test")
                        write_deployment(emit, settings, d)
                    swapped_at.append(time.time())
                time.sleep(0.001)
            sdk.flush()

        sender = threading.Thread(target=stream)
        sender.start()
        sender.join(120)
        records = read_topic(settings, "predictions", n)

        # Every event scored exactly once, on the topic itself (no dedup to hide a repeat).
        predictions = [(p, o, Prediction.from_bytes(v)) for p, o, v in records]
        ids = [pr.event_id for _, _, pr in predictions]
        assert len(ids) == n and set(ids) == {f"ev-{i}" for i in range(n)}
        # Each partition switches from v0 to v2 at most once, at one offset, and never back (a
        # partition whose first records were scored after the swap is all v2); the stream as a
        # whole switches.
        by_partition: dict[int, list[str]] = defaultdict(list)
        for partition, _offset, pr in sorted(predictions, key=lambda r: (r[0], r[1])):
            by_partition[partition].append(pr.version)
        for versions in by_partition.values():
            switches = [i for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
            assert len(switches) <= 1 and versions[-1] == v2_meta.version, versions
            assert set(versions) <= {v0, v2_meta.version}
        assert any(versions[0] == v0 for versions in by_partition.values())
        first_v2 = min(pr.predicted_at for _, _, pr in predictions
                       if pr.version == v2_meta.version)
        assert first_v2 > swapped_at[0] - 1.0

        # A tampered artifact is refused and reported; v2 keeps serving.
        bad_meta, bad_artifact = trained_version(settings, parent=v2_meta.version)
        bad_artifact = bad_artifact.replace(b"LogisticRegression", b"LogisticRegressiom")
        bad_meta = bad_meta.model_copy(update={"version": artifacts.version_of(bad_artifact)})
        with Emitting(settings) as emit:
            publish_version(emit, settings, bad_meta, bad_artifact)
            d = next_deployment(None, settings.processing.model_name, "deploy", bad_meta.version)
            write_deployment(emit, settings, d)
        letters = wait_for(
            lambda: query(settings, "SELECT processor, error FROM dead_letters WHERE "
                                    "error LIKE '%signature%'").rows,
            lambda rows: len(rows) >= 2, 60, "dead letters for the tampered artifact")
        # Scoring refused to serve it and the learner to learn from it: each says so, once.
        assert sorted(p for p, _ in letters) == ["learner", "scoring"]
        assert all(bad_meta.version[:12] in error for _, error in letters)
        for i in range(n, n + 50):
            sdk.send_event(event(i))
        sdk.flush()
        later = {f"ev-{i}" for i in range(n, n + 50)}
        after = [p for p in (Prediction.from_bytes(v) for _, _, v in
                             read_topic(settings, "predictions", n + 50)) if p.event_id in later]
        assert len(after) == 50 and {p.version for p in after} == {v2_meta.version}

        # A shadow: scored beside the champion, never instead of it; both evaluated on the
        # same labels.
        with Emitting(settings) as emit:
            current = next_deployment(None, settings.processing.model_name, "deploy",
                                      v2_meta.version)
            write_deployment(emit, settings, next_deployment(
                current, settings.processing.model_name, "shadow", v0, reason="test shadow"))
        time.sleep(1.0)
        shadowed = [event(i, "sh") for i in range(200)]
        for e in shadowed:
            sdk.send_event(e)
        sdk.flush()
        for e in shadowed:
            sdk.send_label({"event_id": e["event_id"], "label": True})
        sdk.flush()
        rows = wait_for(
            lambda: query(settings, "SELECT version, mapKeys(shadow_scores) FROM predictions "
                                    "WHERE event_id LIKE 'sh-%'").rows,
            lambda r: len(r) == 200, 60, "predictions of the shadowed events")
        assert {(v, tuple(k)) for v, k in rows} == {(v2_meta.version, (v0,))}
        evaluated = wait_for(
            lambda: query(settings, "SELECT DISTINCT version FROM metrics WHERE examples >= 100 "
                                    "AND metric = 'accuracy'").rows,
            lambda r: {v for (v,) in r} >= {v0, v2_meta.version}, 60,
            "metrics of champion and shadow")
        assert {v for (v,) in evaluated} <= {v0, v2_meta.version}  # no other version scored

        # Feedback: the first 1,000 were labelled; a label for an event that never was; the
        # rest wait out the window; then a late label for one of them.
        sdk.send_label({"event_id": "never-served", "label": True})
        sdk.flush()
        wait_for(lambda: query(settings, "SELECT outcome, count() FROM feedback GROUP BY outcome "
                                         "ORDER BY outcome").rows,
                 lambda rows: dict(rows).get("unlabelled", 0) == n + 50 - 1000
                 and dict(rows).get("orphan_label") == 1, 90, "unlabelled and orphan outcomes")
        # The last event sent expired last: its marker stays the longest (one more window).
        sdk.send_label({"event_id": f"ev-{n + 49}", "label": True})
        sdk.flush()
        wait_for(lambda: query(settings, "SELECT count() FROM feedback "
                                         "WHERE outcome = 'late_label'").rows[0][0],
                 lambda c: c == 1, 60, "the late label")
        training = query(settings, "SELECT count(), uniqExact(event_id) FROM training "
                                   "WHERE event_id LIKE 'ev-%' SETTINGS final = 0").rows[0]
        assert list(training) == [1000, 1000]  # rows as stored: each example joined once
        outputs = query(settings, "SELECT DISTINCT arraySort(JSONExtractKeys(outputs)) "
                                  "FROM training WHERE event_id LIKE 'sh-%'").rows
        assert outputs == [[sorted([v0, v2_meta.version])]]
        metrics = wait_for(
            lambda: query(settings, "SELECT version, metric, max(examples) FROM metrics "
                                    "GROUP BY version, metric").rows,
            lambda rows: len(rows) >= 3, 60, "prequential metrics")
        assert {m for _, m, _ in metrics} >= {"accuracy", "log_loss", "roc_auc"}
        stack.check()


def training_examples(n: int) -> list[TrainingExample]:
    out = []
    for i in range(n):
        x = {"a": float((i * 37) % 101) / 50 - 1, "b": float((i * 11) % 23) / 11 - 1}
        out.append(TrainingExample(
            event_id=f"t-{i}", model="default", version="v", features=x, label=x["a"] > x["b"],
            served=True, outputs={"v": Output(prediction=True, score=0.5,
                                              proba={"true": 0.5, "false": 0.5})}))
    return out


def test_kill_9_of_the_learner_recovers_the_model_an_uninterrupted_run_builds(
    stack_settings: Settings,
) -> None:
    settings = with_processing(stack_settings, publish_every=200, metrics_every=100)
    ensure_topics(settings)
    n = 2000
    stream = training_examples(n)
    env = settings_env(settings)
    cmd = [sys.executable, "-m", "driftway", "run", "learner"]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.state_dir / "learner.log").open("ab")
    learner = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    registry = ModelRegistry(settings, name="test")
    producer = make_producer(settings)
    try:
        def covered() -> int:
            registry.poll(0.3)
            ends = [v.training_offsets.end for v in registry.versions.values()
                    if v.training_offsets]
            return max(ends, default=-1)

        wait_for(covered, lambda end: end == 0, 60, "version zero")
        for i, example in enumerate(stream):
            producer.produce(settings.topic("training"), value=example.to_bytes())
            if i % 100 == 99:
                producer.flush()
                time.sleep(0.05)
            if i == 1100:  # mid-stream, once a few versions exist
                wait_for(covered, lambda end: end >= 600, 60, "versions before the crash")
                learner.send_signal(signal.SIGKILL)
                learner.wait()
                killed_at = covered()
                learner = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        producer.flush()
        wait_for(covered, lambda end: end == n, 90, "the version covering every example")
        assert 0 < killed_at < n
    finally:
        learner.terminate()
        learner.wait(30)
        log.close()

    # The same training data, uninterrupted, in this process.
    reference = Learner(settings)
    meta0, _, model0 = reference.first_version()
    reference.add_line(meta0.version, meta0, model0, start=0)
    published = []
    for offset, example in enumerate(stream):
        published += reference.step(offset, example).published
    chain = registry.lineage(max(registry.versions.values(),
                                 key=lambda v: v.training_offsets.end).version)
    registry_final = chain[0]
    assert [v.version for v in reversed(chain)][1:] == [p.meta.version for p in published]
    assert [(v.training_offsets.start, v.training_offsets.end) for v in reversed(chain)] == [
        (0, 0), *[(s, s + 200) for s in range(0, n, 200)]]
    recovered = registry.load(registry_final.version)
    probe = [{"a": a / 4, "b": b / 4} for a in range(-4, 5) for b in range(-4, 5)]
    assert [recovered.predict_proba_one(x) for x in probe] == [
        reference.lines[0].model.predict_proba_one(x) for x in probe]
    registry.close()


def test_kill_9_of_each_processor_leaves_every_record_exactly_once(
    stack_settings: Settings,
) -> None:
    settings = with_processing(stack_settings, publish_every=1_000_000)
    n = 3000
    kills = {n // 6: "scoring", 2 * n // 6: "feedback", 3 * n // 6: "scoring",
             4 * n // 6: "drift", 5 * n // 6: "sink"}
    with Stack(settings) as stack:
        stack.wait_until_serving()
        deployed(settings)
        sdk = EventProducer(settings)
        for i in range(n):
            sdk.send_event(event(i, "k"))
            if i >= 100 and i % 2 == 0:  # labels flow too, 100 events behind: feedback joins
                sdk.send_label({"event_id": f"k-{i - 100}", "label": i % 3 == 0})
            if i in kills:
                sdk.flush()
                stack.kill(kills[i])
                stack.spawn(kills[i])
            time.sleep(0.001)
        sdk.flush()
        stack.wait_until_serving()
        # Each processor writes in transactions with its input offsets: what a crashed one had
        # written but not committed is aborted, and its successor writes it once.
        on_topic = read_topic(settings, "predictions", n)
        served = Counter(Prediction.from_bytes(v).event_id for _, _, v in on_topic)
        assert served == Counter({f"k-{i}": 1 for i in range(n)})
        labelled = {f"k-{i - 100}" for i in range(100, n) if i % 2 == 0}
        examples = read_topic(settings, "training", len(labelled))
        joined = Counter(TrainingExample.from_bytes(v).event_id for _, _, v in examples)
        assert joined == Counter({event_id: 1 for event_id in labelled})
        # The sink, killed too, resumes after what it stored: each record is one row.
        stored = wait_for(lambda: query(settings, "SELECT count(), uniqExact(event_id) "
                                                  "FROM predictions SETTINGS final = 0").rows[0],
                          lambda row: row[1] == n, 120, "a row for every event")
        assert list(stored) == [n, n]
        stack.check()


def test_artifacts_larger_than_one_message_travel_in_chunks(stack_settings: Settings) -> None:
    settings = with_processing(stack_settings, artifact_chunk_bytes=4096)
    ensure_topics(settings)
    model = make_model("adaptive_random_forest")
    for i in range(300):
        model.learn_one({"a": float(i % 7), "b": float(i % 5)}, i % 7 > i % 5)
    key = settings.signing_key_bytes
    meta, artifact = artifacts.build_version("big", model, key, None,
                                             chunk_bytes=settings.processing.artifact_chunk_bytes)
    assert meta.artifact_chunks == -(-len(artifact) // 4096) > 10
    with Emitting(settings) as emit:
        publish_version(emit, settings, meta, artifact)
    registry = ModelRegistry(settings, name="test")
    try:
        registry.catch_up()
        loaded = registry.load(meta.version)
    finally:
        registry.close()
    probe = [{"a": float(a), "b": float(b)} for a in range(7) for b in range(5)]
    assert [loaded.predict_one(x) for x in probe] == [model.predict_one(x) for x in probe]

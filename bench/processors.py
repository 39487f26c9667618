"""CPU per event of each processor's own work, without Kafka: what the runtime hands it.

    .venv/bin/python bench/processors.py [--events N] [--label-delay D]

Runs the demo's events through each processor's `handle` (scoring, feedback, drift),
the learner's step and the sink's row building, in this process, in the pipeline's order, each
stage on the previous stage's output bytes (as the topics would carry them), and prints µs per
input record for each, beside the bare River predict + learn loop on the same events. Kafka
I/O, transactions and the broker are not in these figures (bench/pipeline.py has them); this is
the floor each processor puts under the runtime. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from driftway.app.demo import DemoPlan, loan_applications
from driftway.consumers.sink import ClickHouseSink
from driftway.io.runtime import Incoming
from driftway.io.state import Store
from driftway.logic.features import event_features
from driftway.logic.learning import Learner
from driftway.logic.models import logistic_regression
from driftway.schemas.events import decode_training
from driftway.settings import Settings
from driftway.streams.drift import DriftWatch
from driftway.streams.feedback import Feedback
from driftway.streams.scoring import Scoring, ServedModel, ServingSet, featurize_raw


def timed(name: str, records: list[Any], step: Callable[[Any], Any],
          results: dict[str, float]) -> list[Any]:
    """Run step over records; record µs per record; return what it made, flattened."""
    out: list[Any] = []
    t0 = time.perf_counter()
    for record in records:
        made = step(record)
        if made:
            out.extend(made)
    results[name] = (time.perf_counter() - t0) * 1e6 / max(1, len(records))
    return out


def bare_river(data: list[tuple[dict[str, Any], bool]]) -> float:
    model = logistic_regression()
    t0 = time.perf_counter()
    for event, label in data:
        x = event_features(event["data"])
        model.predict_proba_one(x)
        model.learn_one(x, label)
    return (time.perf_counter() - t0) * 1e6 / len(data)


def incoming(topic: str, partition: int, offset: int, key: Any, value: bytes) -> Incoming:
    return Incoming(topic, partition, offset, key, value, time.time())


def run(n: int, label_delay: int) -> dict[str, float]:
    settings = Settings(signing_key="bench-processors-key")
    data = list(loan_applications(DemoPlan(events=n, change_at=n // 2)))
    labels = {event["event_id"]: label for event, label in data}
    results = {"bare River predict_proba_one + learn_one": bare_river(data)}
    raw = [incoming("raw", 0, i, event["entity_id"].encode(), json.dumps(event).encode())
           for i, (event, _) in enumerate(data)]

    # scoring's first step alone (decode within the limits, featurise with the entity's state)
    store = Store(0)
    timed("features (scoring's first step)", raw,
          lambda r: [featurize_raw(r.value, store, r.received_at)], results)

    learner = Learner(settings)
    meta, _artifact, deployment = learner.bootstrap()
    scoring = Scoring(settings)
    scoring.serving = ServingSet(
        deployment, ServedModel.release(meta, learner.lines[0].model), ())
    scoring.started = time.time()
    store = Store(0)
    scored = timed("scoring (features, prediction)", raw, lambda r: scoring.handle(r, store),
                   results)
    store.take_changes()  # the changelog records the runtime writes at each commit
    predictions = [o for o in scored if o.topic == "predictions"]
    served = [o for o in scored if o.topic == "served"]

    # feedback: what was served, each label label_delay events later (as the demo sends them)
    feedback, fstore = Feedback(settings), Store(0)
    stream: list[Incoming] = []
    pending: deque[str] = deque()
    for i, out in enumerate(served):
        stream.append(incoming("served", 0, i, out.key, out.value))
        pending.append(json.loads(out.value)["event_id"])
        if len(pending) > label_delay:
            event_id = pending.popleft()
            stream.append(incoming("labels", 0, i, event_id.encode(), json.dumps(
                {"event_id": event_id, "label": labels[event_id]}).encode()))
    joined = timed("feedback (served + labels)", stream,
                   lambda r: feedback.handle(r, fstore), results)
    results["feedback (served + labels)"] *= len(stream) / len(served)  # per event
    fstore.take_changes()

    drift = DriftWatch(settings)
    timed("drift", [incoming("served", 0, i, o.key, o.value) for i, o in enumerate(served)],
          lambda r: drift.handle(r, None), results)

    training = [o.value for o in joined if o.topic == "training"]
    decode = decode_training
    offsets = iter(range(len(training)))
    timed("learner (decode + step)", training,
          lambda v: [learner.step(next(offsets), decode(v))], results)

    # The sink's rows (its ClickHouse inserts are not in this figure).
    sink = ClickHouseSink(settings, client=None)  # type: ignore[arg-type]  # rows only
    records = ([incoming("predictions", 0, i, o.key, o.value) for i, o in enumerate(predictions)]
               + [incoming("training", 0, i, None, v) for i, v in enumerate(training)]
               + [r for r in stream if r.topic == "labels"])
    t0 = time.perf_counter()
    for i in range(0, len(records), 5000):
        sink.rows(records[i:i + 5000])
    results["sink rows (predictions, training, labels)"] = (
        (time.perf_counter() - t0) * 1e6 / len(predictions))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--label-delay", type=int, default=200)
    a = ap.parse_args(argv)
    results = run(a.events, a.label_delay)
    bare = results["bare River predict_proba_one + learn_one"]
    print(f"{a.events:,} demo events, µs per event (one core, no Kafka):")
    for name, us in results.items():
        print(f"  {name:45s} {us:7.1f}  {us / bare:5.2f} × bare River")
    stages = sum(v for k, v in results.items()  # scoring includes its first step
                 if not k.startswith(("bare", "features")))
    print(f"  {'all processors':45s} {stages:7.1f}  {stages / bare:5.2f} × bare River")
    return 0


if __name__ == "__main__":
    sys.exit(main())

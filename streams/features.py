"""features: raw events → feature vectors.

Numeric (and boolean) fields become numeric features as they are; string fields become one-hot
categorical features named ``field=value``; no configuration needed. Each entity's running state —
how many events it has sent and when the last came — lives in a changelog-backed faust table, so it
survives a restart, and yields two aggregate features.

>>> from schemas.events import RawEvent
>>> e = RawEvent(event_id="e1", entity_id="u1", ts=1_000, data={"amount": 3, "city": "Oslo",
...              "vip": True, "note": None})
>>> fv, state = featurize(e, None, received_at=5.0)
>>> fv.features  # doctest: +NORMALIZE_WHITESPACE
{'amount': 3.0, 'city=Oslo': 1.0, 'vip': 1.0,
 'entity.events': 1.0, 'entity.seconds_since_last': 0.0}
>>> state
{'n': 1, 'last_ts': 1.0}
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from driftway.settings import Settings
from schemas.events import FeatureVector, RawEvent, failure_reason
from streams.app import (
    Emitter,
    batches,
    dead_letter,
    exit_uncommitted_on_failure,
    make_app,
    raw_topic,
    run_worker,
)

log = logging.getLogger(__name__)

EntityState = dict[str, Any]


def event_features(data: dict[str, Any]) -> dict[str, float]:
    """Flat event data → features (strings one-hot; None and non-finite numbers left out)."""
    out: dict[str, float] = {}
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[f"{name}={value}"] = 1.0
        else:
            number = float(value)
            if math.isfinite(number):
                out[name] = number
    return out


def featurize(
    event: RawEvent, state: EntityState | None, received_at: float
) -> tuple[FeatureVector, EntityState]:
    """One raw event and its entity's state → its feature vector and the entity's new state."""
    ts = event.ts.timestamp()
    features = event_features(event.data)
    n = (state or {}).get("n", 0) + 1
    last = (state or {}).get("last_ts")
    features["entity.events"] = float(n)
    features["entity.seconds_since_last"] = max(0.0, ts - last) if last is not None else 0.0
    vector = FeatureVector(
        event_id=event.event_id,
        entity_id=event.entity_id,
        ts=event.ts,
        features=features,
        received_at=received_at,
    )
    return vector, {"n": n, "last_ts": ts if last is None else max(ts, last)}


def decode_raw(value: bytes | None) -> RawEvent:
    """Validate raw bytes as a RawEvent (raises ValidationError or ValueError)."""
    if value is None:
        raise ValueError("empty message (null value)")
    return RawEvent.model_validate_json(value)


def build(settings: Settings) -> Any:
    """The features faust app, with its agent registered."""
    app = make_app(settings, "features")
    source = raw_topic(app, settings.topic("raw"))
    entities = app.Table("entity-state", default=None, partitions=settings.kafka.partitions)
    out_topic = settings.topic("features")
    dlq_topic = settings.topic("dead-letters")
    emitter = Emitter(settings)
    changelog = entities.changelog_topic.get_topic_name()

    @app.agent(source)
    @exit_uncommitted_on_failure
    async def features(stream: Any) -> None:
        async for events in batches(stream, settings):
            received_at = time.time()
            # One table write per entity and batch: each write is a changelog record.
            touched: dict[str, tuple[Any, EntityState]] = {}
            for event in events:
                try:  # whatever one record raises makes it a dead letter, never its batch
                    raw = decode_raw(event.message.value)
                    eid = raw.entity_id
                    state = touched[eid][1] if eid in touched else entities.get(eid)
                    vector, new_state = featurize(raw, state, received_at)
                    value = vector.to_bytes()
                except Exception as exc:
                    dl = dead_letter("features", event, failure_reason(exc))
                    emitter.emit(dlq_topic, dl.source_topic, dl.to_bytes())
                    continue
                touched[eid] = (event, new_state)
                emitter.emit(out_topic, eid, value)
            for eid, (event, state) in touched.items():
                # The table's changelog record goes out with the batch's output through
                # librdkafka (faust's own per-key send made this processor ~3x slower), in the
                # form faust's recovery reads back: JSON key and value, the event's partition.
                entities.data[eid] = state
                emitter.emit(changelog, json.dumps(eid).encode(), json.dumps(state).encode(),
                             partition=event.message.partition)
            await emitter.flush()

    return app


def main(settings: Settings) -> None:
    """Run the features processor in the foreground."""
    run_worker(build(settings), settings)

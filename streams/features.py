"""features: raw events → feature vectors (``driftway.logic.features``), with each entity's
running state in a changelog-backed faust table, so it survives a restart."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from driftway.io.agents import (
    Emitter,
    batches,
    dead_letter,
    exit_uncommitted_on_failure,
    make_app,
    raw_topic,
    run_worker,
)
from driftway.logic.features import EntityState, featurize
from driftway.schemas.events import RawEvent, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


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
